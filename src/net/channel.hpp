#pragma once
// What a connection's bytes mean, one piece each: an HTTP request (until it is answered or
// upgraded), WebSocket frames (RFC 6455, our own frame layer, protocol/websocket) handed to
// the route's adapter, or a raw stream (MQTT over TCP) handed to it as bytes. A connection
// has one channel at a time and swaps it on an upgrade; each runs on the connection's
// thread and acts through the connection's channel functions (connection.hpp).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "core/close_reason.hpp"
#include "net/http.hpp"
#include "net/routes.hpp"
#include "protocol/websocket/frame.hpp"

namespace wsagent::net {

class connection;

class channel {
 public:
  virtual ~channel() = default;
  // Bytes read: `len` from `data`, `capacity` readable from `data` (padding past `len`, for
  // simdjson). Returns how many it used; the rest (an unfinished request, frame or packet)
  // comes again with more.
  virtual std::size_t on_bytes(std::uint8_t* data, std::size_t len, std::size_t capacity) = 0;
  // The agent ends the connection for `why`: queues the channel's last bytes (a WebSocket
  // close frame with `code` and `reason`, after the adapter's own goodbye, if any).
  virtual void goodbye(std::uint16_t code, std::string_view reason, core::close_reason why) = 0;
  // After our goodbye is written, the peer answers it (WebSocket's close handshake): wait for
  // that, not just for the stream's end.
  virtual bool awaits_close() const noexcept = 0;
  // The agent sends keep-alive pings (the native WebSocket protocol).
  virtual bool pings() const noexcept = 0;
};

// Reads one HTTP request and answers it from the listener's routes: an endpoint's reply, or
// an upgrade to the route's WebSocket channel and adapter.
class http_channel final : public channel {
 public:
  explicit http_channel(connection& c) : c_(c) {}
  std::size_t on_bytes(std::uint8_t* data, std::size_t len, std::size_t capacity) override;
  void goodbye(std::uint16_t, std::string_view, core::close_reason) override {}
  bool awaits_close() const noexcept override { return false; }
  bool pings() const noexcept override { return false; }

 private:
  connection& c_;
  http_request_reader reader_;
};

// RFC 6455 frames to and from the route's adapter: messages to it, pings answered, the close
// handshake.
class websocket_channel final : public channel {
 public:
  websocket_channel(connection& c, const websocket_route& route, std::size_t max_message_size)
      : c_(c),
        route_(route),
        reader_(protocol::websocket::frame_reader::role::server, max_message_size) {}
  std::size_t on_bytes(std::uint8_t* data, std::size_t len, std::size_t capacity) override;
  void goodbye(std::uint16_t code, std::string_view reason, core::close_reason why) override;
  bool awaits_close() const noexcept override { return true; }
  bool pings() const noexcept override { return route_.pings; }

 private:
  // False: read no more frames (the peer closed, or the stream is unusable).
  bool handle(const protocol::websocket::frame_reader::event& ev, const std::uint8_t* base,
              std::size_t capacity);

  connection& c_;
  const websocket_route& route_;  // the listener's: outlives the connection
  protocol::websocket::frame_reader reader_;
};

// A raw stream (MQTT over TCP): the adapter takes whole packets from the bytes.
class raw_channel final : public channel {
 public:
  explicit raw_channel(connection& c) : c_(c) {}
  std::size_t on_bytes(std::uint8_t* data, std::size_t len, std::size_t capacity) override;
  void goodbye(std::uint16_t code, std::string_view reason, core::close_reason why) override;
  bool awaits_close() const noexcept override { return false; }
  bool pings() const noexcept override { return false; }

 private:
  connection& c_;
};

}  // namespace wsagent::net
