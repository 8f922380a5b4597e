#pragma once
// RFC 6455 framing: a pure, incremental frame reader and a frame writer. Bytes in, events
// out; no sockets. The transport (src/net) owns the buffer and the socket.
//
// Reader use, per connection:
//   frame_reader r(frame_reader::role::server, max_message_size);
//   loop: append received bytes to a buffer; then
//     while (true) { auto ev = r.next(buf_span); if (ev.kind == need_more) break;
//                    handle ev; consume ev.consumed bytes from the front of the buffer; }
// The payload of a message, ping or pong event stays valid until the next call to next()
// or until the caller changes the buffer, whichever comes first: for an unfragmented frame
// it points into the caller's buffer (unmasked in place), for a fragmented message into the
// reader's own assembly buffer.
//
// Every violation is reported as an error event carrying the close code the RFC asks for
// (1002 protocol error, 1007 invalid UTF-8, 1009 too big) and a reason; after an error the
// reader must not be used again.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/utf8.hpp"

namespace wsagent::protocol::websocket {

enum class opcode : std::uint8_t {
  continuation = 0x0,
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

namespace close_code {
inline constexpr std::uint16_t normal = 1000;
inline constexpr std::uint16_t going_away = 1001;
inline constexpr std::uint16_t protocol_error = 1002;
inline constexpr std::uint16_t unsupported_data = 1003;
inline constexpr std::uint16_t no_status = 1005;  // never sent on the wire
inline constexpr std::uint16_t abnormal = 1006;   // never sent on the wire
inline constexpr std::uint16_t invalid_payload = 1007;
inline constexpr std::uint16_t policy_violation = 1008;
inline constexpr std::uint16_t too_big = 1009;
inline constexpr std::uint16_t internal_error = 1011;
}  // namespace close_code

// True for codes a peer may send in a close frame (RFC 6455 7.4, IANA registry).
bool is_valid_close_code(std::uint16_t code) noexcept;

// True when `bytes` is well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF).
using common::is_valid_utf8;

class frame_reader {
 public:
  enum class role {
    server,  // reads a client's frames: they must be masked
    client,  // reads a server's frames: they must not be masked
  };

  enum class kind {
    need_more,  // not a whole frame yet; `consumed` is 0
    message,    // a whole text or binary message (`op`, `payload`)
    ping,       // `payload` is the application data to echo in a pong
    pong,
    close,    // `code` (1005 if the frame had no body) and `reason`
    error,    // `code` is the close code to send, `reason` says why
    skipped,  // a frame that completed nothing yet (a non-final fragment): just consume it
  };

  struct event {
    kind what = kind::need_more;
    std::size_t consumed = 0;  // bytes of the input this event used up
    opcode op = opcode::text;  // for message: text or binary
    std::span<const std::uint8_t> payload;
    std::uint16_t code = 0;   // for close and error
    std::string_view reason;  // for close and error
  };

  frame_reader(role r, std::size_t max_message_size);

  // Looks at the front of `input` (bytes the caller has not consumed yet). May unmask the
  // frame's payload in place, which is why the span is mutable.
  event next(std::span<std::uint8_t> input);

  // Bytes the reader holds for a message still being assembled from fragments.
  std::size_t assembling() const noexcept { return assembly_.size(); }

 private:
  role role_;
  std::size_t max_message_size_;
  bool in_fragmented_message_ = false;
  opcode fragmented_op_ = opcode::text;
  std::string assembly_;      // fragments of the current message
  std::string error_reason_;  // storage for event::reason
};

// Largest header: 2 bytes + 8 bytes of extended length + 4 bytes of mask.
inline constexpr std::size_t max_header_size = 14;

struct frame_header {
  std::array<std::uint8_t, max_header_size> bytes{};
  std::size_t size = 0;
  std::span<const std::uint8_t> view() const { return {bytes.data(), size}; }
};

// Header of one frame. With a mask key (client role) the caller must mask the payload with
// mask_payload() using the same key.
frame_header make_header(opcode op, std::size_t payload_size, bool fin = true,
                         const std::uint32_t* mask_key = nullptr) noexcept;

// XORs `data` with the 4-byte key, starting at key offset `offset` (0..3).
void mask_payload(std::span<std::uint8_t> data, std::uint32_t mask_key,
                  std::size_t offset = 0) noexcept;

// Appends one whole unmasked frame (server role) to `out`.
void append_frame(std::string& out, opcode op, std::string_view payload, bool fin = true);

// Appends a close frame with `code` and `reason` (truncated to fit 125 bytes).
void append_close(std::string& out, std::uint16_t code, std::string_view reason);

}  // namespace wsagent::protocol::websocket
