#include "net/origin_policy.hpp"

#include <algorithm>
#include <cctype>

#include <boost/asio/ip/address.hpp>

namespace wsagent::net {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// An origin's parts: "scheme://host[:port]" (RFC 6454's serialisation); false for anything
// else ("null", a path).
struct origin_parts {
  std::string scheme, host, port;  // port "" when the scheme's default
};

bool split_origin(std::string_view origin, origin_parts& out) {
  const auto sep = origin.find("://");
  if (sep == std::string_view::npos || sep == 0) return false;
  out.scheme = lower(origin.substr(0, sep));
  auto rest = origin.substr(sep + 3);
  if (rest.empty() || rest.find_first_of("/?#@ ") != std::string_view::npos) return false;
  std::string_view host = rest, port;
  if (rest.front() == '[') {  // an IPv6 literal
    const auto close = rest.find(']');
    if (close == std::string_view::npos) return false;
    host = rest.substr(0, close + 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') return false;
      port = rest.substr(close + 2);
    }
  } else if (const auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  }
  if (host.empty()) return false;
  out.host = lower(host);
  out.port = std::string(port);
  if ((out.scheme == "http" && out.port == "80") || (out.scheme == "https" && out.port == "443"))
    out.port.clear();
  return true;
}

bool loopback_host(std::string_view host) {
  if (host == "localhost" || (host.size() > 10 && host.ends_with(".localhost"))) return true;
  std::string bare(host);
  if (bare.size() >= 2 && bare.front() == '[' && bare.back() == ']')
    bare = bare.substr(1, bare.size() - 2);
  boost::system::error_code ec;
  const auto a = boost::asio::ip::make_address(bare, ec);
  return !ec && a.is_loopback();
}

// `pattern` "scheme://*.domain[:port|:*]" against `o`.
bool matches_pattern(std::string_view pattern, const origin_parts& o) {
  origin_parts p;
  if (!split_origin(pattern, p) || p.scheme != o.scheme) return false;
  if (p.port != "*" && p.port != o.port) return false;
  if (!p.host.starts_with("*.")) return p.host == o.host;
  const auto suffix = p.host.substr(1);  // ".domain"
  return o.host.size() > suffix.size() && o.host.ends_with(suffix);
}

}  // namespace

origin_policy::origin_policy() : entries_{"self", "loopback"} {}

origin_policy::origin_policy(std::vector<std::string> entries) : entries_(std::move(entries)) {}

std::string origin_policy::check_entry(std::string_view entry) {
  if (entry == "self" || entry == "loopback" || entry == "*") return {};
  origin_parts p;
  if (!split_origin(entry, p))
    return "'" + std::string(entry) +
           "' is not an origin (scheme://host[:port]), a pattern (https://*.example.com), "
           "\"self\", \"loopback\" or \"*\"";
  const auto star = p.host.find('*');
  if (star != std::string::npos &&
      (star != 0 || p.host.find('*', 1) != std::string::npos || !p.host.starts_with("*.")))
    return "'" + std::string(entry) +
           "': a pattern has one '*', as its first label (*.example.com)";
  return {};
}

bool origin_policy::allows(std::string_view origin, std::string_view host) const {
  origin_parts o;
  const bool parsed = split_origin(origin, o);
  for (const auto& e : entries_) {
    if (e == "*") return true;
    if (!parsed) continue;  // "null" (a file, a sandboxed frame) only with "*"
    if (e == "self") {
      // The Host header names host[:port]; the origin's port is dropped when it is its
      // scheme's default, and so is Host's.
      const auto h = lower(host);
      const auto self = o.port.empty() ? o.host : o.host + ":" + o.port;
      if (h == self || h == o.host + (o.scheme == "https" ? ":443" : ":80")) return true;
    } else if (e == "loopback") {
      if (loopback_host(o.host)) return true;
    } else if (matches_pattern(e, o)) {
      return true;
    }
  }
  return false;
}

}  // namespace wsagent::net
