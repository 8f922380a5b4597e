#include "cli/client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <stdexcept>

namespace wsagent::cli {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

std::optional<endpoint> parse_url(const std::string& url) {
  constexpr std::string_view scheme = "ws://";
  if (url.rfind(scheme, 0) != 0) return std::nullopt;
  std::string rest = url.substr(scheme.size());
  endpoint ep;
  auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  ep.target = slash == std::string::npos ? "/ws" : rest.substr(slash);
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string::npos) return std::nullopt;
    ep.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size()) {
      if (authority[close + 1] != ':') return std::nullopt;
      ep.port = authority.substr(close + 2);
    } else {
      ep.port = "80";
    }
  } else {
    auto colon = authority.rfind(':');
    ep.host = authority.substr(0, colon);
    ep.port = colon == std::string::npos ? "80" : authority.substr(colon + 1);
  }
  if (ep.host.empty() || ep.port.empty()) return std::nullopt;
  return ep;
}

struct ws_client::impl {
  asio::io_context ioc;
  websocket::stream<beast::tcp_stream> ws{ioc};
  beast::flat_buffer buffer;
};

ws_client::ws_client() : impl_(std::make_unique<impl>()) {}
ws_client::~ws_client() = default;

void ws_client::connect(const endpoint& ep, const std::string& bearer_token) {
  try {
    tcp::resolver resolver(impl_->ioc);
    auto results = resolver.resolve(ep.host, ep.port);
    beast::get_lowest_layer(impl_->ws).connect(results);
    std::string token = bearer_token;
    impl_->ws.set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
      req.set(beast::http::field::user_agent, "wsagent-cli");
      if (!token.empty()) req.set(beast::http::field::authorization, "Bearer " + token);
    }));
    impl_->ws.read_message_max(64u << 20);
    impl_->ws.handshake(ep.host + ":" + ep.port, ep.target);
  } catch (const boost::system::system_error& e) {
    throw std::runtime_error("cannot connect to ws://" + ep.host + ":" + ep.port + ep.target +
                             ": " + e.code().message());
  }
}

void ws_client::send_text(const std::string& text) {
  impl_->ws.text(true);
  impl_->ws.write(asio::buffer(text));
}

void ws_client::send_binary(const std::string& bytes) {
  impl_->ws.binary(true);
  impl_->ws.write(asio::buffer(bytes));
}

std::optional<received> ws_client::read(std::optional<std::chrono::milliseconds> timeout) {
  impl_->buffer.clear();
  boost::system::error_code result = asio::error::would_block;
  bool timed_out = false;
  asio::steady_timer timer(impl_->ioc);
  impl_->ws.async_read(impl_->buffer, [&](boost::system::error_code ec, std::size_t) {
    result = ec;
    timer.cancel();
  });
  if (timeout) {
    timer.expires_after(*timeout);
    timer.async_wait([&](boost::system::error_code ec) {
      if (ec) return;
      timed_out = true;
      beast::get_lowest_layer(impl_->ws).cancel();
    });
  }
  impl_->ioc.restart();
  impl_->ioc.run();
  if (timed_out) return std::nullopt;
  if (result == websocket::error::closed) {
    auto reason = impl_->ws.reason();
    throw closed_error(reason.code, std::string(reason.reason.data(), reason.reason.size()));
  }
  if (result) throw std::runtime_error("connection lost: " + result.message());
  received r;
  r.binary = impl_->ws.got_binary();
  r.data = beast::buffers_to_string(impl_->buffer.data());
  return r;
}

void ws_client::close() {
  boost::system::error_code ec;
  impl_->ws.close(websocket::close_code::normal, ec);
}

}  // namespace wsagent::cli
