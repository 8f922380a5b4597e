#include "net/channel.hpp"

#include "net/connection.hpp"
#include "net/websocket_upgrade.hpp"

namespace wsagent::net {

namespace ws = protocol::websocket;

// --- HTTP: one request, answered or upgraded ---

std::size_t http_channel::on_bytes(std::uint8_t* data, std::size_t len, std::size_t) {
  std::size_t used = 0;
  switch (reader_.feed(data, len, used)) {
    case http_request_reader::state::need_more:
      return used;
    case http_request_reader::state::error: {
      http_response r;
      r.status = 400;
      r.body = "bad request: " + reader_.error() + "\n";
      c_.reply_and_end(serialize(r));
      return len;
    }
    case http_request_reader::state::done:
      break;
  }
  auto& request = reader_.request();
  request.remote = c_.remote();
  auto answer = answer_request(request, c_.env().listener.routes);
  if (answer.origin_refused) c_.env().listener.routes.origin_refused(request);
  if (!answer.route) {
    c_.reply_and_end(std::move(answer.response));
    return len;
  }
  const auto& route = *answer.route;
  auto next = std::make_unique<websocket_channel>(c_, route, c_.env().settings.max_message_size);
  // The request (this channel's) stays valid until the connection is done with this read.
  auto adapter = route.factory(c_, &request, c_.remote());
  c_.upgrade(std::move(next), std::move(adapter), std::move(answer.response), route.protocol);
  return used;  // what follows the request is the first frames: the new channel's
}

// --- WebSocket ---

std::size_t websocket_channel::on_bytes(std::uint8_t* data, std::size_t len, std::size_t capacity) {
  std::size_t offset = 0;
  while (true) {
    auto ev = reader_.next(std::span<std::uint8_t>(data + offset, len - offset));
    if (ev.what == ws::frame_reader::kind::need_more) break;
    offset += ev.consumed;
    c_.env().probe.frames_in.fetch_add(1, std::memory_order_relaxed);
    if (!handle(ev, data, capacity) || c_.input_paused()) break;
  }
  return offset;
}

bool websocket_channel::handle(const ws::frame_reader::event& ev, const std::uint8_t* base,
                               std::size_t capacity) {
  using kind = ws::frame_reader::kind;
  switch (ev.what) {
    case kind::need_more:
    case kind::skipped:
      return true;
    case kind::message: {
      auto* adapter = c_.adapter();
      if (c_.closing() || !adapter) return true;  // closing: data is discarded
      if (ev.op == ws::opcode::text) {
        auto* p = reinterpret_cast<const char*>(ev.payload.data());
        // Inside the read buffer the bytes up to its end may be read (simdjson's padding);
        // a message assembled from fragments lies in the reader's buffer: none.
        std::size_t room = ev.payload.size();
        auto* b = reinterpret_cast<const char*>(base);
        if (p >= b && p < b + capacity) room = static_cast<std::size_t>(b + capacity - p);
        adapter->on_text(p, ev.payload.size(), room);
      } else {
        adapter->on_binary(ev.payload);
      }
      if (c_.adapter() && c_.adapter()->authenticated()) c_.authenticated();
      return true;
    }
    case kind::ping: {
      std::string frame;
      ws::append_frame(
          frame, ws::opcode::pong,
          std::string_view(reinterpret_cast<const char*>(ev.payload.data()), ev.payload.size()));
      c_.send_frame(std::move(frame));
      return true;
    }
    case kind::pong:
      return true;
    case kind::close: {
      // Echo the peer's code (RFC 6455 5.5.1), then end once it is written. A close with
      // 1000 is the client's clean goodbye where the protocol says so (MQTT says goodbye
      // with DISCONNECT, not with the WebSocket close).
      std::string echo;
      if (ev.code == ws::close_code::no_status)
        ws::append_frame(echo, ws::opcode::close, {});
      else
        ws::append_close(echo, ev.code, {});
      c_.peer_closed(ev.code == ws::close_code::normal && route_.close_1000_is_goodbye,
                     std::move(echo));
      return false;
    }
    case kind::error:
      c_.fail(ev.code, ev.reason);
      return false;
  }
  return true;
}

void websocket_channel::goodbye(std::uint16_t code, std::string_view reason,
                                core::close_reason why) {
  if (auto* a = c_.adapter())  // MQTT 5's DISCONNECT first, then the WebSocket close
    if (auto bye = a->goodbye(why); !bye.empty()) c_.send_last(std::move(bye));
  std::string frame;
  ws::append_close(frame, code, reason);
  c_.send_last(std::move(frame));
}

// --- a raw stream ---

std::size_t raw_channel::on_bytes(std::uint8_t* data, std::size_t len, std::size_t) {
  auto* adapter = c_.adapter();
  if (!adapter) return len;
  const auto used = adapter->on_stream(std::span<const std::uint8_t>(data, len));
  if (c_.adapter() && c_.adapter()->authenticated()) c_.authenticated();
  return used;
}

void raw_channel::goodbye(std::uint16_t, std::string_view, core::close_reason why) {
  if (auto* a = c_.adapter())  // MQTT 5: a DISCONNECT with the reason, then the stream ends
    if (auto bye = a->goodbye(why); !bye.empty()) c_.send_last(std::move(bye));
}

}  // namespace wsagent::net
