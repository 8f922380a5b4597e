#include "net/https_client.hpp"

#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/version.hpp>
#include <chrono>

namespace wsagent::net {

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct url_parts {
  std::string host, port = "443", target = "/";
};

bool parse_https_url(const std::string& url, url_parts& out, std::string& error) {
  constexpr std::string_view scheme = "https://";
  if (url.rfind(scheme, 0) != 0) {
    error = "not an https:// URL";
    return false;
  }
  const auto rest = std::string_view(url).substr(scheme.size());
  const auto slash = rest.find('/');
  auto authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) out.target = std::string(rest.substr(slash));
  if (authority.find('@') != std::string_view::npos) {
    error = "credentials in the URL are not supported";
    return false;
  }
  if (!authority.empty() && authority.front() == '[') {
    const auto close = authority.find(']');
    if (close == std::string_view::npos) {
      error = "unclosed IPv6 literal";
      return false;
    }
    out.host = std::string(authority.substr(1, close - 1));
    if (close + 1 < authority.size() && authority[close + 1] == ':')
      out.port = std::string(authority.substr(close + 2));
  } else if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    out.host = std::string(authority.substr(0, colon));
    out.port = std::string(authority.substr(colon + 1));
  } else {
    out.host = std::string(authority);
  }
  if (out.host.empty() || out.port.empty()) {
    error = "no host";
    return false;
  }
  return true;
}

}  // namespace

https_result https_get(const std::string& url, const https_options& options) {
  https_result out;
  url_parts u;
  if (!parse_https_url(url, u, out.error)) return out;

  asio::ssl::context tls(asio::ssl::context::tls_client);
  boost::system::error_code ec;
  tls.set_options(asio::ssl::context::no_sslv2 | asio::ssl::context::no_sslv3 |
                  asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  if (options.ca_file.empty())
    tls.set_default_verify_paths(ec);
  else
    tls.load_verify_file(options.ca_file, ec);
  if (ec) {
    out.error = "cannot load the trusted certificates" +
                (options.ca_file.empty() ? std::string() : " from " + options.ca_file) + ": " +
                ec.message();
    return out;
  }
  tls.set_verify_mode(asio::ssl::verify_peer);

  asio::io_context io;
  beast::ssl_stream<beast::tcp_stream> stream(io, tls);
  // SNI (for a name; RFC 6066 has none for an address), and the name the certificate must
  // carry (a DNS name or an IP address).
  boost::system::error_code not_ip;
  (void)asio::ip::make_address(u.host, not_ip);
  if (not_ip && !SSL_ctrl(stream.native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME,
                          TLSEXT_NAMETYPE_host_name, const_cast<char*>(u.host.c_str()))) {
    out.error = "cannot set the TLS server name";
    return out;
  }
  stream.set_verify_callback(asio::ssl::host_name_verification(u.host));

  const auto deadline = std::chrono::milliseconds(options.timeout_ms);
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(options.max_body);
  http::request<http::empty_body> request{http::verb::get, u.target, 11};
  request.set(http::field::host, u.host);
  request.set(http::field::user_agent, "wsagent");
  request.set(http::field::accept, "application/json");
  auto fail = [&](const char* what, boost::system::error_code e) {
    if (out.error.empty()) out.error = std::string(what) + ": " + e.message();
  };

  asio::ip::tcp::resolver resolver(io);
  beast::get_lowest_layer(stream).expires_after(deadline);
  resolver.async_resolve(u.host, u.port, [&](boost::system::error_code e, auto endpoints) {
    if (e) return fail("resolve", e);
    beast::get_lowest_layer(stream).async_connect(endpoints, [&](boost::system::error_code e2,
                                                                 const auto&) {
      if (e2) return fail("connect", e2);
      stream.async_handshake(asio::ssl::stream_base::client, [&](boost::system::error_code e3) {
        if (e3) return fail("TLS handshake", e3);
        http::async_write(stream, request, [&](boost::system::error_code e4, std::size_t) {
          if (e4) return fail("write", e4);
          http::async_read(stream, buffer, parser, [&](boost::system::error_code e5, std::size_t) {
            if (e5) return fail("read", e5);
            out.ok = true;
          });
        });
      });
    });
  });
  io.run();
  // An answer other than 200 whose body did not end cleanly is still that answer.
  if (!out.ok && parser.is_header_done() && parser.get().result() != http::status::ok) {
    out.error = "HTTP " + std::to_string(parser.get().result_int());
    return out;
  }
  if (!out.ok) {
    if (out.error.empty()) out.error = "timed out";
    return out;
  }
  const auto& response = parser.get();
  if (response.result() != http::status::ok) {
    out.ok = false;
    out.error = "HTTP " + std::to_string(response.result_int());
    return out;
  }
  out.body = response.body();
  return out;
}

}  // namespace wsagent::net
