#pragma once
// One configured listener: a bind address and the protocols it serves ("ws", "mqtt-ws",
// "echo" and "http" over HTTP; "mqtt" raw over TCP, alone). Its acceptor lives on the
// server's first context and hands each accepted socket to the contexts in turn; a socket
// past a connection limit is refused (HTTP 503, or closed). A listener that cannot bind says
// which address and protocols in its error.

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "net/connection.hpp"
#include "net/tls_config.hpp"

namespace wsagent::net {

class server;

struct listener_config {
  std::string bind;                    // "host:port", "[v6]:port"
  std::vector<std::string> protocols;  // ws, mqtt-ws, echo, http | mqtt
  std::optional<tls_config> tls;       // a TLS listener's (wss, mqtts)
};

// The protocols a listener may name, and whether one speaks HTTP.
bool known_protocol(std::string_view p) noexcept;
bool http_protocol(std::string_view p) noexcept;
// "ws, mqtt-ws"
std::string join(const std::vector<std::string>& protocols);

// A listener that could not be opened: the message names its address and protocols.
class listen_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class listener {
 public:
  // `info` says what it serves (routes or a raw factory); `env` is its connections'.
  listener(server& srv, listener_config config, std::unique_ptr<listener_info> info);
  listener(const listener&) = delete;
  listener& operator=(const listener&) = delete;

  // Binds and listens; throws listen_error.
  void open();
  void start() { accept(); }
  void close();

  const listener_config& config() const noexcept { return config_; }
  const std::string& host() const noexcept { return host_; }
  std::uint16_t port() const noexcept { return port_; }  // bound (a port 0 resolved)
  const listener_info& info() const noexcept { return *info_; }
  // "host:port" ("[v6]:port"), as clients address it (a port 0 resolved).
  std::string address() const;
  // "ws://" + address() ("wss", "mqtt", "mqtts", "http", "https").
  std::string url() const;

 private:
  void accept();

  server& server_;
  listener_config config_;
  std::unique_ptr<listener_info> info_;
  connection_env env_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::string host_;
  std::uint16_t port_ = 0;
  std::uint64_t accept_failures_ = 0;
  std::chrono::steady_clock::time_point last_accept_warning_{};
};

}  // namespace wsagent::net
