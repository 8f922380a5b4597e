#include "net/listener.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <boost/asio/post.hpp>

#include "net/server.hpp"
#include "net/stream_connection.hpp"
#include "net/tcp_stream.hpp"
#include "net/tls_stream.hpp"

namespace wsagent::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {

constexpr std::array<std::string_view, 5> protocol_names = {"ws", "mqtt-ws", "echo", "http",
                                                            "mqtt"};

// "host:port" or "[v6]:port"; false when malformed.
bool split(const std::string& bind, std::string& host, std::uint16_t& port) {
  const auto colon = bind.rfind(':');
  if (colon == std::string::npos || colon + 1 == bind.size()) return false;
  host = bind.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  int p = 0;
  for (char c : bind.substr(colon + 1)) {
    if (c < '0' || c > '9') return false;
    p = p * 10 + (c - '0');
    if (p > 65535) return false;
  }
  port = static_cast<std::uint16_t>(p);
  return !host.empty();
}

}  // namespace

bool known_protocol(std::string_view p) noexcept {
  return std::find(protocol_names.begin(), protocol_names.end(), p) != protocol_names.end();
}

bool http_protocol(std::string_view p) noexcept {
  return p == "ws" || p == "mqtt-ws" || p == "echo" || p == "http";
}

std::string join(const std::vector<std::string>& protocols) {
  std::string out;
  for (const auto& p : protocols) {
    if (!out.empty()) out += ", ";
    out += p;
  }
  return out;
}

listener::listener(server& srv, listener_config config, std::unique_ptr<listener_info> info)
    : server_(srv),
      config_(std::move(config)),
      info_(std::move(info)),
      env_{srv.settings().connection, srv.probe, srv, *info_},
      acceptor_(*srv.contexts_[0]) {}

void listener::open() {
  const auto where = config_.bind + " (" + join(config_.protocols) + ")";
  std::uint16_t port = 0;
  if (!split(config_.bind, host_, port))
    throw listen_error("cannot listen on " + where + ": not host:port");
  try {
    auto address = asio::ip::make_address(host_ == "localhost" ? "127.0.0.1" : host_);
    tcp::endpoint ep(address, port);
    acceptor_.open(ep.protocol());
    acceptor_.set_option(asio::socket_base::reuse_address(true));
    acceptor_.bind(ep);
    acceptor_.listen(asio::socket_base::max_listen_connections);
    port_ = acceptor_.local_endpoint().port();
  } catch (const boost::system::system_error& e) {
    boost::system::error_code ec;
    acceptor_.close(ec);
    throw listen_error("cannot listen on " + where + ": " + e.code().message());
  }
}

std::string listener::url() const {
  const bool tls = info_->tls != nullptr;
  const auto& ps = config_.protocols;
  auto has = [&](const char* p) { return std::find(ps.begin(), ps.end(), p) != ps.end(); };
  const char* scheme = has("mqtt")                                  ? (tls ? "mqtts" : "mqtt")
                       : has("ws") || has("mqtt-ws") || has("echo") ? (tls ? "wss" : "ws")
                                                                    : (tls ? "https" : "http");
  return std::string(scheme) + "://" + address();
}

std::string listener::address() const {
  const auto shown = host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_;
  return shown + ":" + std::to_string(port_);
}

void listener::close() {
  boost::system::error_code ec;
  acceptor_.close(ec);
}

void listener::accept() {
  const std::size_t worker = server_.next_worker();
  acceptor_.async_accept(
      *server_.contexts_[worker],
      [this, worker](boost::system::error_code ec, tcp_stream::socket_type socket) {
        if (ec) {
          if (ec == asio::error::operation_aborted || server_.stopping_) return;
          // Out of file descriptors and the like: say so (once per 10 s, with the count), and
          // keep accepting after a pause.
          ++accept_failures_;
          const auto now = std::chrono::steady_clock::now();
          if (now - last_accept_warning_ >= std::chrono::seconds(10)) {
            spdlog::warn("accept on {} failed {} time(s): {}{}", config_.bind, accept_failures_,
                         ec.message(),
                         ec == asio::error::no_descriptors
                             ? " (the process file limit is reached: raise `ulimit -Hn` or lower "
                               "limits.max_connections)"
                             : "");
            accept_failures_ = 0;
            last_accept_warning_ = now;
          }
          auto timer = std::make_shared<asio::steady_timer>(acceptor_.get_executor(),
                                                            std::chrono::milliseconds(100));
          timer->async_wait([this, timer](boost::system::error_code) {
            if (!server_.stopping_) accept();
          });
          return;
        }
        boost::system::error_code ep_ec;
        auto ip = socket.remote_endpoint(ep_ec).address().to_string();
        const bool admitted = server_.admit(ip);
        auto& thread = *server_.threads_state_[worker];
        std::shared_ptr<connection> c;
        if (info_->tls)
          c = std::make_shared<stream_connection<tls_stream>>(
              env_, tls_stream(std::move(socket), *info_->tls), std::move(ip), thread);
        else
          c = std::make_shared<stream_connection<tcp_stream>>(env_, tcp_stream(std::move(socket)),
                                                              std::move(ip), thread);
        if (!admitted) {
          server_.probe.rejected.fetch_add(1, std::memory_order_relaxed);
          spdlog::warn("connection from {} to {} refused: connection limit reached", c->ip(),
                       config_.bind);
          asio::post(c->get_executor(), [c] { c->reject(); });
        } else {
          server_.probe.accepted.fetch_add(1, std::memory_order_relaxed);
          asio::post(c->get_executor(), [c] { c->start(); });
        }
        if (!server_.stopping_) accept();
      });
}

}  // namespace wsagent::net
