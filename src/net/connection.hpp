#pragma once
// One client connection: the pump. It reads bytes from its stream and hands them to its
// channel (what the bytes mean: an HTTP request, WebSocket frames, a raw MQTT stream), keeps
// the write queue (outbound_queue: every frame queued since the last write leaves in one
// gather write), the inbox of deliveries from other threads and the deadlines, and is the
// protocol adapter's transport_link and the router's session_sink.
//
// Pieces: the stream (net/tcp_stream.hpp; the connection is instantiated over it in
// net/stream_connection.hpp), the channels (net/channel.hpp: http_channel, websocket_channel,
// raw_channel), the routes the listener serves (net/routes.hpp, filled by app), and what
// the connection needs of the agent (connection_env): nothing else of the server.
//
// Lifecycle: created by a listener for an accepted socket; kept alive by the shared_ptr its
// pending operations hold; gone when the stream is closed and the last handler has run.
// Owner thread: the io_context it was accepted into (server.hpp); deliver(), kick() and
// shutdown() may be called from any thread and post to that thread.
//
// Bounds: an idle connection holds no read buffer (read()); one holding an unfinished frame
// grows its own to at most one maximal message; the write queue holds at most
// `outbound_queue_bytes` of QoS 0 deliveries: past that the oldest waiting one is dropped
// and counted, and a queue that stays at its bound for `slow_consumer_timeout_ms` closes the
// connection (4008). Replies to the client's own requests are never dropped; when 256 of
// them wait, the connection stops reading until they are written (backpressure). Once the
// agent has said goodbye (a close frame, an MQTT DISCONNECT) it half-closes and reads and
// discards what still comes for `linger_ms` at most, so that the goodbye is read before the
// socket closes (closing with unread input would reset the connection and lose it).

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/timer_wheel.hpp"
#include "core/close_reason.hpp"
#include "core/session.hpp"
#include "net/outbound_queue.hpp"
#include "net/routes.hpp"
#include "protocol/client_adapter.hpp"

namespace wsagent::net {

class channel;
class connection;
class tls_context;

struct connection_settings {
  std::size_t max_message_size = 1 << 20;
  std::size_t outbound_queue_bytes = 8 << 20;  // waiting QoS 0 bytes per connection
  std::size_t outbound_queue = 0;              // waiting QoS 0 messages; 0: no count bound
  int slow_consumer_timeout_ms = 5000;
  int ping_interval_ms = 20000;
  int idle_timeout_ms = 60000;
  int auth_timeout_ms = 10000;
  int close_timeout_ms = 3000;  // the peer's close frame, after ours
  int linger_ms = 2000;         // reading and discarding after our goodbye, at most
};

// Counters of the transport layer (the metrics page reads them); relaxed atomics, written by
// any thread.
struct net_probe {
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> rejected{0};  // over a connection limit
  std::atomic<std::int64_t> open{0};
  std::atomic<std::uint64_t> dropped{0};  // QoS 0 messages dropped for slow consumers
  std::atomic<std::uint64_t> slow_consumer_closes{0};
  std::atomic<std::uint64_t> read_pauses{0};  // backpressure on clients that do not read
  std::atomic<std::uint64_t> frames_in{0};
  std::atomic<std::uint64_t> writes{0};      // gather writes (syscalls, roughly)
  std::atomic<std::uint64_t> frames_out{0};  // frames those writes carried
  std::atomic<std::uint64_t> bytes_in{0};
  std::atomic<std::uint64_t> bytes_out{0};
  std::atomic<std::uint64_t> protocol_errors{0};  // connections closed for a violation
};

// Where the connections of a listener come from: its address, what it serves, its
// counters. Built by the server before serving; outlives its connections.
struct listener_info {
  std::string bind;  // "host:port" as configured
  std::vector<std::string> protocols;
  route_table routes;        // an HTTP listener's (empty for a raw one)
  adapter_factory raw;       // a raw listener's (MQTT over TCP); empty for an HTTP one
  std::string raw_protocol;  // "mqtt"
  // A TLS listener's context (rotated in place: net/tls_context.hpp); null for plain TCP.
  std::shared_ptr<tls_context> tls;
  // Connections open now by protocol ("http" while a request is being read).
  struct counts {
    std::atomic<std::int64_t> http{0}, ws{0}, mqtt_ws{0}, echo{0}, mqtt{0};
    std::atomic<std::int64_t>& of(std::string_view protocol) noexcept;
  } open;
};

// What the connections of one I/O thread share (the server keeps one per thread): the wheel
// of their deadlines, and a figure of their queues. Owner: that thread.
struct io_thread {
  io_thread(std::int64_t tick_ms, std::size_t slots, std::int64_t now_ms)
      : wheel(tick_ms, slots, now_ms) {}
  common::timer_wheel wheel;
  // QoS 0 bytes waiting in this thread's write queues (a queue depth of the metrics): written
  // by the thread only (relaxed; no other writer), read by any.
  std::atomic<std::int64_t> queued_bytes{0};
};

// Where connections register (the server: connection limits, shutdown).
class connection_registry {
 public:
  virtual ~connection_registry() = default;
  virtual void add(const std::shared_ptr<connection>& c) = 0;
  virtual void remove(connection* c, std::string_view ip) = 0;
};

// What a connection needs of the agent. One per listener; outlives its connections.
struct connection_env {
  const connection_settings& settings;
  net_probe& probe;
  connection_registry& registry;
  listener_info& listener;
};

class connection : public std::enable_shared_from_this<connection>,
                   public protocol::transport_link,
                   public core::session_sink,
                   private common::timer_wheel::entry {
 public:
  using executor_type = boost::asio::io_context::executor_type;

  ~connection() override;

  // The wheel's callback: this connection's next deadline is due (owner thread).
  static void on_deadline(common::timer_wheel::entry& e);

  // Owner thread: starts reading (an HTTP request, or a raw stream's bytes).
  void start();
  // A connection limit was reached: an HTTP listener answers 503, a raw one just closes.
  void reject();

  // transport_link (owner thread)
  void send_frame(std::string frame) override;
  void send_shared(const core::message_ptr& m, const std::string& bytes) override;
  void send_with_tail(const core::message_ptr& m, std::string head,
                      const std::string& tail) override;
  void drain_pending(
      const std::function<void(const core::message_ptr&, std::uint8_t)>& take) override;
  void close(core::close_reason why, std::string_view text) override;
  core::session_sink& sink() override { return *this; }
  poster owner_poster() override;
  void pause_input() override { input_paused_ = true; }
  std::shared_ptr<void> hold() override;
  void resume_input() override;
  const core::certificate_identity* peer_certificate() override {
    return stream_peer_certificate();
  }

  // session_sink (any thread)
  void deliver(core::message_ptr msg, std::uint8_t qos) override;
  void kick(core::close_reason why, std::string_view text) override;

  // Any thread: close for `why` (going_away at shutdown).
  void shutdown(core::close_reason why, std::string text);
  // Any thread: the adapter checks its client's credential again (a reload, a revocation).
  void recheck_credentials();

  std::string_view ip() const noexcept { return std::string_view(remote_).substr(0, ip_size_); }
  executor_type get_executor() const noexcept { return executor_; }
  const std::string& remote() const noexcept { return remote_; }

  // --- for the channels (net/channel.hpp), on the owner thread ---
  const connection_env& env() const noexcept { return env_; }
  protocol::client_adapter* adapter() noexcept { return adapter_.get(); }
  // The connection is a WebSocket (or a raw stream) now: `next` reads what follows, served
  // by `adapter`; `response`, the 101, is written first.
  void upgrade(std::unique_ptr<channel> next, std::unique_ptr<protocol::client_adapter> adapter,
               std::string response, std::string_view protocol);
  // Answers an HTTP request that is not an upgrade: `response` is written, then the
  // connection ends.
  void reply_and_end(std::string response);
  // The peer's WebSocket close came: `clean` when it is the client's goodbye (its will is not
  // published); our answer, `echo`, goes out last.
  void peer_closed(bool clean, std::string echo);
  // The stream is unusable (a frame error): close with the frame reader's `code`.
  void fail(std::uint16_t code, std::string_view reason);
  // The adapter authenticated the client (its auth deadline is lifted).
  void authenticated();
  // Queues a goodbye's bytes (channel::goodbye): after everything queued, even once closing.
  void send_last(std::string bytes);
  bool closing() const noexcept { return close_sent_; }
  // The adapter holds the client's input (pause_input()): a channel stops handing it over.
  bool input_paused() const noexcept { return input_paused_; }

 protected:
  connection(const connection_env& env, executor_type executor, std::string ip, io_thread& thread);

  // --- the stream, for stream_connection<Stream> ---
  virtual void stream_start() = 0;
  virtual void stream_wait_readable() = 0;  // then readable(ec)
  virtual std::size_t stream_read(void* data, std::size_t size, boost::system::error_code& ec) = 0;
  virtual void stream_read_into(void* data, std::size_t size) = 0;  // then read_done(ec, n)
  virtual void stream_write(std::span<const outbound_queue::buffer> buffers) = 0;  // written(ec)
  virtual void stream_shutdown_send() = 0;
  virtual void stream_close() = 0;
  virtual std::string stream_remote() const = 0;
  // The client certificate a TLS stream verified (null for plain TCP, or without one).
  virtual const core::certificate_identity* stream_peer_certificate() { return nullptr; }
  // Completions the stream calls.
  void readable(boost::system::error_code ec);
  void read_done(boost::system::error_code ec, std::size_t n);
  void written(boost::system::error_code ec);

 private:
  void read();
  void on_readable();
  void on_data(std::uint8_t* data, std::size_t len, bool own);
  void keep_unread(std::uint8_t* data, std::size_t offset, std::size_t len, bool own);
  void drain_inbox();
  void on_deliver(core::message_ptr msg, std::uint8_t qos);
  void push(outbound_queue::item item);
  // The thread's queued_bytes follows this queue's waiting bytes, which were `before`.
  void account(std::size_t before) noexcept;
  void add_queued(std::int64_t delta) noexcept;
  void write();
  void after_write();
  void close_with(std::uint16_t code, std::string_view reason, core::close_reason why);
  void said_goodbye();
  void close_slow_consumer();
  void terminate();
  void arm_timer();
  void on_timer();
  std::int64_t idle_limit_ms() const noexcept;
  void lock_inbox() noexcept;
  void unlock_inbox() noexcept { inbox_lock_.store(false, std::memory_order_release); }

  const connection_env& env_;
  io_thread& thread_;  // its wheel holds this connection's next deadline (arm_timer())
  executor_type executor_;
  std::string remote_;  // "address:port"; the address is its first ip_size_ bytes
  std::uint8_t ip_size_ = 0;
  std::unique_ptr<channel> channel_;
  std::unique_ptr<channel> retired_;  // replaced while it ran (an upgrade): gone after the read
  std::unique_ptr<protocol::client_adapter> adapter_;
  std::atomic<std::int64_t>* open_count_ = nullptr;  // the listener's, by protocol

  std::vector<std::uint8_t> rbuf_;  // an unfinished frame's bytes (none while idle)
  std::size_t rlen_ = 0;

  // Deliveries from any thread wait here until the owner thread drains them in one handler.
  // A spin lock (1 byte, not std::mutex's 40): it is held for one push_back or one swap.
  std::atomic<bool> inbox_lock_{false};
  bool drain_posted_ = false;  // guarded by inbox_lock_
  struct delivery {
    core::message_ptr msg;
    std::uint8_t qos;
  };
  std::vector<delivery> inbox_;  // guarded by inbox_lock_

  outbound_queue queue_;
  bool batching_ = false;      // inside a read or a drain: their end writes
  bool write_posted_ = false;  // a flush is posted

  std::int64_t last_activity_ms_ = 0;
  std::int64_t last_ping_ms_ = 0;
  std::int64_t auth_deadline_ms_ = 0;
  std::int64_t full_since_ms_ = 0;
  std::int64_t close_deadline_ms_ = 0;
  bool started_ = false;         // past the HTTP request: a WebSocket or a raw stream
  bool reading_ = false;         // a read (or a wait for readability) is pending
  bool close_sent_ = false;      // our goodbye is queued
  bool close_received_ = false;  // the peer's close frame (the handshake is over)
  bool discarding_ = false;      // the stream is unusable, or the exchange over: input dropped
  bool lingering_ = false;       // our goodbye is written: reading and discarding until EOF
  bool terminated_ = false;
  bool registered_ = false;
  bool read_paused_ = false;   // backpressure: too many replies waiting to be written
  bool input_paused_ = false;  // the adapter holds input (an authentication in progress)
  bool more_to_read_ = false;  // the last read filled its buffer: read again before waiting
};

}  // namespace wsagent::net
