#pragma once
// The listening side: one acceptor, N I/O threads (one io_context each), the connections.
//
// Threading model (docs/architecture.md): a connection lives on the io_context it was
// accepted into, and every one of its handlers runs on that context's single thread, so a
// connection's state needs no lock. Other threads reach a connection only by posting to its
// executor (deliveries from the router, takeover kicks, shutdown). The acceptor lives on
// context 0 and hands new sockets to the contexts in turn.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>

#include "common/timer_wheel.hpp"
#include "protocol/native/adapter.hpp"

namespace wsagent::net {

struct server_settings {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8080;
  int threads = 1;
  int max_connections = 10000;
  int max_connections_per_ip = 1000;
  std::size_t max_message_size = 1 << 20;
  std::size_t outbound_queue = 1024;
  int slow_consumer_timeout_ms = 5000;
  int ping_interval_ms = 20000;
  int idle_timeout_ms = 60000;
  int auth_timeout_ms = 10000;
  int close_timeout_ms = 3000;
  bool diagnostics = false;  // the /echo endpoint
  // MQTT over TCP on a listener of its own (mqtt.listen); off when mqtt_host is empty.
  std::string mqtt_host;
  std::uint16_t mqtt_port = 1883;
};

// Counters for the metrics page; written by any thread.
struct server_probe {
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> rejected{0};  // over a connection limit
  std::atomic<std::int64_t> open{0};
  std::atomic<std::uint64_t> dropped{0};  // QoS-0 messages dropped for slow consumers
  std::atomic<std::uint64_t> slow_consumer_closes{0};
  std::atomic<std::uint64_t> read_pauses{0};  // backpressure on clients that do not read
  std::atomic<std::uint64_t> frames_in{0};
  std::atomic<std::uint64_t> writes{0};      // gather writes (syscalls, roughly)
  std::atomic<std::uint64_t> frames_out{0};  // frames those writes carried
};

class connection;

class server {
 public:
  server(server_settings settings, protocol::native::adapter_context& ctx);
  ~server();

  // Binds and listens (the WebSocket port, and MQTT's when configured); throws
  // boost::system::system_error when it cannot.
  void listen();
  std::uint16_t bound_port() const noexcept { return bound_port_; }
  std::uint16_t bound_mqtt_port() const noexcept { return bound_mqtt_port_; }

  // Runs the I/O threads; returns when stop() has finished.
  void run();
  // Stops accepting, sends close 1001 to every client and waits up to `timeout_ms` for
  // them to go, then stops the I/O threads. Safe from any thread (a signal handler's post).
  void stop(int timeout_ms);

  // The acceptor's context, for signal handling and reloads.
  boost::asio::io_context& main_context() { return *contexts_[0]; }

  const server_settings& settings() const noexcept { return settings_; }
  protocol::native::adapter_context& adapter_ctx() noexcept { return ctx_; }
  server_probe probe;

  // Called by connections.
  void add(const std::shared_ptr<connection>& c);
  void remove(connection* c, const std::string& ip);

 private:
  // `mqtt`: connections accepted there speak MQTT over TCP.
  void accept(boost::asio::ip::tcp::acceptor& acceptor, bool mqtt);
  void finish_stop();
  void poll_stop(std::chrono::steady_clock::time_point deadline);
  void tick(std::size_t worker);

  server_settings settings_;
  protocol::native::adapter_context& ctx_;

  // Declared before contexts_: connections still alive when the contexts are destroyed
  // (their handlers hold them) unregister here and leave their wheel on the way out.
  std::mutex mutex_;  // guards connections_ and per_ip_
  std::unordered_map<connection*, std::weak_ptr<connection>> connections_;
  std::unordered_map<std::string, int> per_ip_;
  int total_ = 0;  // accepted and not yet removed
  // One wheel per I/O thread holds its connections' deadlines (heartbeat, idle, auth,
  // close, slow consumer); one Asio timer per thread advances it every tick.
  std::vector<std::unique_ptr<common::timer_wheel>> wheels_;

  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<std::unique_ptr<boost::asio::steady_timer>> tickers_;  // one per context
  std::vector<std::thread> threads_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::ip::tcp::acceptor mqtt_acceptor_;
  std::size_t next_context_ = 0;
  std::uint64_t accept_failures_ = 0;
  std::chrono::steady_clock::time_point last_accept_warning_{};
  std::uint16_t bound_port_ = 0;
  std::uint16_t bound_mqtt_port_ = 0;
  bool stopping_ = false;
  std::unique_ptr<boost::asio::steady_timer> stop_timer_;
};

}  // namespace wsagent::net
