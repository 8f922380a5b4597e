#include "net/http.hpp"

#include <algorithm>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <optional>

namespace wsagent::net {

namespace http = boost::beast::http;
using beast_request = http::request<http::empty_body>;

namespace {

const beast_request& beast(const void* impl) {
  return *static_cast<const beast_request*>(impl);
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

const char* reason_of(unsigned status) {
  switch (status) {
    case 101:
      return "Switching Protocols";
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 426:
      return "Upgrade Required";
    case 503:
      return "Service Unavailable";
    default:
      return "";
  }
}

}  // namespace

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::string_view http_request::header(std::string_view name) const {
  if (!impl_) return {};
  const auto& r = beast(impl_);
  auto it = r.find(name);
  return it == r.end() ? std::string_view() : std::string_view(it->value());
}

std::string http_request::param(std::string_view name) const {
  std::string_view q = query;
  while (!q.empty()) {
    auto amp = q.find('&');
    auto pair = q.substr(0, amp);
    q = amp == std::string_view::npos ? std::string_view{} : q.substr(amp + 1);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) == name)
      return eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1));
  }
  return {};
}

bool http_request::is_websocket_upgrade() const {
  return impl_ && boost::beast::websocket::is_upgrade(beast(impl_));
}

std::string serialize(const http_response& r) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason_of(r.status) + "\r\n";
  if (r.status != 101) {
    out.append("Server: wsagent\r\nContent-Type: ").append(r.content_type).append("\r\n");
    out.append("Content-Length: ").append(std::to_string(r.body.size())).append("\r\n");
    out.append("Connection: close\r\n");
    // What browsers should do with an answer of the agent's (an endpoint's JSON or text, an
    // error): not sniff it, not cache it, not run or frame it. A handler that serves pages
    // (a dashboard) names its own.
    static constexpr std::pair<std::string_view, std::string_view> defaults[] = {
        {"X-Content-Type-Options", "nosniff"},
        {"Cache-Control", "no-store"},
        {"Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"},
        {"Referrer-Policy", "no-referrer"},
    };
    for (const auto& [name, value] : defaults) {
      const bool named = std::any_of(r.headers.begin(), r.headers.end(), [&](const auto& h) {
        return boost::beast::iequals(h.first, name);
      });
      if (!named) out.append(name).append(": ").append(value).append("\r\n");
    }
  }
  for (const auto& [k, v] : r.headers)
    out.append(k).append(": ").append(v).append("\r\n");
  out.append("\r\n").append(r.body);
  return out;
}

struct http_request_reader::impl {
  std::optional<http::request_parser<http::empty_body>> parser;
};

http_request_reader::http_request_reader() : impl_(std::make_unique<impl>()) {
  impl_->parser.emplace();
  impl_->parser->header_limit(8192);
  impl_->parser->body_limit(0);
  impl_->parser->eager(true);
}

http_request_reader::~http_request_reader() = default;

http_request_reader::state http_request_reader::feed(const std::uint8_t* data, std::size_t size,
                                                     std::size_t& used) {
  used = 0;
  auto& p = *impl_->parser;
  while (!p.is_done() && used < size) {
    boost::system::error_code ec;
    const auto n = p.put(boost::asio::buffer(data + used, size - used), ec);
    used += n;
    if (ec == http::error::need_more) return state::need_more;
    if (ec) {
      error_ = ec.message();
      return state::error;
    }
    if (n == 0) break;
  }
  if (!p.is_done()) return state::need_more;
  const auto& r = p.get();
  request_.impl_ = &r;
  request_.method = r.method_string();
  request_.target = r.target();
  const auto q = request_.target.find('?');
  request_.path = request_.target.substr(0, q);
  request_.query = q == std::string_view::npos ? std::string_view() : request_.target.substr(q + 1);
  return state::done;
}

}  // namespace wsagent::net
