#pragma once
// One client connection: the HTTP request (Beast), then, on an upgrade, WebSocket frames
// read and written by the project's own RFC 6455 layer (protocol/websocket), so that every
// frame queued since the last write leaves in one gather write. Paths: /ws (the native
// protocol), /mqtt (MQTT over WebSocket), /echo (diagnostics). A connection from the MQTT
// listener skips HTTP and WebSocket: its bytes go to the MQTT adapter as they come, and its
// packets leave through the same write queue.
//
// Lifecycle: created by the server for an accepted socket; kept alive by the shared_ptr
// its pending operations hold; gone when the socket is closed and the last handler has
// run. Owner thread: the io_context it was accepted into (see server.hpp); deliver(),
// kick() and shutdown() may be called from any thread and post to that thread.
//
// Bounds: an idle connection holds no read buffer (see read_frames()); one holding an
// unfinished frame grows its own to at most one maximal message; the outbound queue holds at
// most `outbound_queue` messages: past that the oldest queued message is dropped and
// counted, and a queue that stays full for `slow_consumer_timeout_ms` closes with 4008.
// Replies to the client's own requests are never dropped; when 256 of them wait, the
// connection stops reading until they are written (backpressure).

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/container/deque.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/timer_wheel.hpp"
#include "core/session.hpp"
#include "protocol/native/adapter.hpp"
#include "protocol/websocket/frame.hpp"

namespace wsagent::net {

class server;

class connection final : public std::enable_shared_from_this<connection>,
                         public protocol::native::transport_link,
                         public core::session_sink,
                         private common::timer_wheel::entry {
 public:
  // The socket's executor is the concrete io_context one, not any_io_executor: 48 bytes
  // less in the socket and in every pending operation (an idle connection holds one).
  using socket_type = boost::asio::basic_stream_socket<boost::asio::ip::tcp,
                                                       boost::asio::io_context::executor_type>;

  // `wheel` belongs to the I/O thread of `socket`'s io_context.
  connection(server& srv, socket_type socket, const std::string& ip, common::timer_wheel& wheel);
  ~connection() override;

  // The wheel's callback: this connection's next deadline is due (owner thread).
  static void on_deadline(common::timer_wheel::entry& e);

  // `mqtt`: the socket speaks MQTT over TCP (from the MQTT listener), not HTTP/WebSocket.
  void start(bool mqtt = false);
  // Answers 503 without reading the request (a connection limit was reached); an MQTT
  // socket is just closed.
  void reject(bool mqtt = false);

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

  // session_sink (any thread)
  void deliver(core::message_ptr msg, std::uint8_t qos) override;
  void kick(core::close_reason why, std::string_view text) override;

  // Any thread: close for `why` (going_away at shutdown).
  void shutdown(core::close_reason why, std::string text);

  std::string_view ip() const noexcept { return std::string_view(remote_).substr(0, ip_size_); }
  boost::asio::any_io_executor executor() { return socket_.get_executor(); }

 private:
  // mqtt: MQTT over TCP (no HTTP, no WebSocket); mqtt_ws: MQTT over WebSocket (/mqtt).
  enum class mode { http, native, echo, mqtt, mqtt_ws };

  struct out_item {
    core::message_ptr msg;                // keeps `shared` alive
    const std::string* shared = nullptr;  // bytes shared with other recipients
    std::string own;                      // bytes of this connection only
    bool droppable = false;               // a QoS-0 message: may be dropped when full
    bool tail = false;                    // `own`, then `*shared` (see send_with_tail)
    std::string_view first() const { return tail || !shared ? own : *shared; }
    std::string_view second() const {
      return tail ? std::string_view(*shared) : std::string_view();
    }
    std::size_t size() const { return first().size() + second().size(); }
  };

  void read_request();
  void on_request();
  void upgrade(mode m, protocol::native::upgrade_info info, const std::string& accept_key,
               std::string_view subprotocol = {});
  void http_reply(unsigned status, std::string body, const char* content_type = "text/plain");

  void read_frames();
  void on_readable();
  void on_read(std::size_t n);
  void on_data(std::uint8_t* data, std::size_t len, bool own);
  bool handle(const protocol::websocket::frame_reader::event& ev);
  void drain_inbox();
  void on_deliver(core::message_ptr msg, std::uint8_t qos);

  void push(out_item item);
  void write();
  void on_written(std::size_t items);

  void arm_timer();
  void on_timer();
  void terminate();
  void close_slow_consumer();
  void close_with(std::uint16_t code, std::string_view reason, core::close_reason why);

  server& server_;
  common::timer_wheel& wheel_;  // holds this connection's next deadline (see arm_timer())
  socket_type socket_;
  std::string remote_;  // "address:port"; the address is its first ip_size_ bytes
  std::uint8_t ip_size_ = 0;
  mode mode_ = mode::http;

  // HTTP phase (Beast); released after the upgrade.
  struct http_state;
  std::unique_ptr<http_state> http_;

  // WebSocket phase (and the MQTT stream: no frames, bytes to the adapter).
  std::int64_t idle_limit_ms() const noexcept;
  // MQTT keeps itself alive (PINGREQ within 1.5 x keep alive): no WebSocket pings, whose
  // pongs would count as the client's activity.
  bool is_mqtt() const noexcept { return mode_ == mode::mqtt || mode_ == mode::mqtt_ws; }
  std::optional<protocol::websocket::frame_reader> reader_;
  std::unique_ptr<protocol::client_adapter> adapter_;
  std::vector<std::uint8_t> rbuf_;
  std::size_t rlen_ = 0;

  // Deliveries from any thread wait here until the owner thread drains them in one handler.
  // A spin lock (1 byte, not std::mutex's 40): it is held for one push_back or one swap.
  void lock_inbox() noexcept;
  void unlock_inbox() noexcept { inbox_lock_.store(false, std::memory_order_release); }
  std::atomic<bool> inbox_lock_{false};
  bool drain_posted_ = false;  // guarded by inbox_lock_
  struct delivery {
    core::message_ptr msg;
    std::uint8_t qos;
  };
  std::vector<delivery> inbox_;  // guarded by inbox_lock_

  // boost's deque allocates nothing while empty (an idle connection costs no block) and
  // takes its block size as an option: 64 items a block, 8x fewer allocations than
  // libstdc++'s 512-byte blocks on the fan-out path.
  using out_queue =
      boost::container::deque<out_item, void,
                              boost::container::deque_options_t<boost::container::block_size<64u>>>;
  out_queue queue_;
  std::size_t in_flight_ = 0;        // items at the front of queue_ being written
  std::size_t queued_messages_ = 0;  // droppable items not in flight
  bool writing_ = false;
  bool batching_ = false;      // inside a read or a drain: their end writes
  bool write_posted_ = false;  // a flush is posted
  std::vector<boost::asio::const_buffer> gather_;
  std::string stage_;  // small frames of the write in progress, copied

  std::int64_t last_activity_ms_ = 0;
  std::int64_t last_ping_ms_ = 0;
  std::int64_t auth_deadline_ms_ = 0;
  std::int64_t full_since_ms_ = 0;
  std::int64_t close_deadline_ms_ = 0;
  bool close_sent_ = false;
  bool close_received_ = false;
  bool terminated_ = false;
  bool registered_ = false;
  bool read_paused_ = false;  // backpressure: too many replies waiting to be written
};

}  // namespace wsagent::net
