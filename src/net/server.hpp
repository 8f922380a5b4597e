#pragma once
// The listening side: N I/O threads (one io_context each), the listeners, the connections.
//
// Threading model (docs/architecture.md): a connection lives on the io_context it was
// accepted into, and every one of its handlers runs on that context's single thread, so a
// connection's state needs no lock. Other threads reach a connection only by posting to its
// executor (deliveries from the router, takeover kicks, shutdown). The acceptors live on
// context 0 and hand new sockets to the contexts in turn.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/metrics.hpp"
#include "common/mutex.hpp"
#include "common/timer_wheel.hpp"
#include "net/connection.hpp"
#include "net/listener.hpp"
#include "net/routes.hpp"

namespace wsagent::net {

struct server_settings {
  int threads = 1;
  int max_connections = 10000;
  int max_connections_per_ip = 1000;
  connection_settings connection;
  std::vector<listener_config> listeners;
};

// What the agent serves, filled by app: every HTTP endpoint and WebSocket route (a listener
// takes the WebSocket routes of its protocols, and every HTTP endpoint when it speaks HTTP),
// and the adapter factory of each raw protocol ("mqtt").
struct served_protocols {
  route_table routes;
  std::map<std::string, adapter_factory, std::less<>> raw;
};

class server final : public connection_registry {
 public:
  // `probe`: the transport's counters (the metrics page's), outlives the server.
  server(server_settings settings, served_protocols protocols, net_probe& probe);
  ~server() override;

  // Binds and listens on every listener, in order; throws listen_error naming the one that
  // cannot (none is left open then).
  void listen();
  const std::vector<std::unique_ptr<listener>>& listeners() const noexcept { return listeners_; }

  // Runs the I/O threads; returns when stop() has finished.
  void run();
  // Stops accepting, sends close 1001 to every client and waits up to `timeout_ms` for
  // them to go, then stops the I/O threads. Safe from any thread (a signal handler's post).
  // Stops accepting and closes every connection with `why` (a cluster node that leaves:
  // close_reason::moving, each told to come back after a jittered delay), waiting up to
  // `timeout_ms` for them to go.
  void stop(int timeout_ms, core::close_reason why = core::close_reason::going_away);

  // Loads the TLS listeners' certificates again (`changed_only`: those whose files changed
  // on disk). A listener whose files are broken keeps its certificate; the errors are
  // logged and returned. Any thread.
  std::vector<std::string> reload_tls(bool changed_only);

  // Every connection checks its client's credential again, on its own thread (soon after
  // this returns): those revoked or removed are closed. Any thread.
  void recheck_credentials();

  // The first context, for signal handling and reloads.
  boost::asio::io_context& main_context() { return *contexts_[0]; }

  const server_settings& settings() const noexcept { return settings_; }
  net_probe& probe;
  // The transport's figures as metrics: connections by listener and protocol, accepted and
  // refused ones, frames, writes and bytes, drops, closes, read pauses, queued bytes.
  void write_metrics(common::metric_set& out) const;

  // connection_registry (any thread)
  void add(const std::shared_ptr<connection>& c) override;
  void remove(connection* c, std::string_view ip) override;

 private:
  friend class listener;
  // A new socket from `ip`: true when it is within the connection limits (then counted).
  bool admit(const std::string& ip);
  // The context (and its wheel) the next accepted socket goes to, in turn.
  std::size_t next_worker();
  void finish_stop();
  void poll_stop(std::chrono::steady_clock::time_point deadline);
  void tick(std::size_t worker);

  server_settings settings_;
  served_protocols protocols_;

  // Declared before contexts_: connections still alive when the contexts are destroyed
  // (their handlers hold them) unregister here and leave their wheel on the way out.
  common::mutex mutex_;
  std::unordered_map<connection*, std::weak_ptr<connection>> connections_ GUARDED_BY(mutex_);
  std::unordered_map<std::string, int> per_ip_ GUARDED_BY(mutex_);
  int total_ GUARDED_BY(mutex_) = 0;  // accepted and not yet removed
  // One wheel per I/O thread holds its connections' deadlines (heartbeat, idle, auth,
  // close, slow consumer); one Asio timer per thread advances it every tick.
  std::vector<std::unique_ptr<io_thread>> threads_state_;

  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<std::unique_ptr<boost::asio::steady_timer>> tickers_;  // one per context
  std::vector<std::thread> threads_;
  std::vector<std::unique_ptr<listener>> listeners_;
  std::size_t next_context_ = 0;  // context 0's thread only (the acceptors')
  bool stopping_ = false;         // context 0's thread only
  std::unique_ptr<boost::asio::steady_timer> stop_timer_;
};

}  // namespace wsagent::net
