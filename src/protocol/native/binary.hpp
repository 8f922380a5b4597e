#pragma once
// The native binary envelope, for payloads that are not JSON (Protocol Buffers, CBOR, raw
// sensor frames). One envelope per WebSocket binary frame; integers are big-endian.
//
//   publish (client -> agent)           message (agent -> client)
//   u8   kind = 0x01                    u8   kind = 0x02
//   u8   flags (bit 0: retain,          u8   flags (bit 0: retained, bit 1: QoS 1,
//        bit 1: QoS 1, bit 3: QoS 2)         bit 2: dup, bit 3: QoS 2, bit 4: offset)
//   u16  tag length, tag bytes          u16  tag length, tag bytes
//   u8   msgid length, msgid bytes      u8   from length, from bytes
//        (0: the agent assigns one)     u8   msgid length, msgid bytes
//   ...  payload: the rest of the frame u64  timestamp, ms since the Unix epoch
//                                       u64  seq, with QoS 1 or 2
//                                       u64  offset, with flag bit 4 (tag history)
//                                       ...  payload: the rest of the frame
//
// Clients that did not ask for binary frames get binary payloads inside JSON messages, as
// base64 with "encoding":"base64" (docs/protocol.md).

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "protocol/native/codec.hpp"

namespace wsagent::protocol::native {

inline constexpr std::uint8_t binary_publish = 0x01;
inline constexpr std::uint8_t binary_message = 0x02;

struct binary_publish_view {
  std::string_view tag;
  std::string_view msgid;
  std::string_view payload;
  bool retain = false;
  int qos = 0;  // flag bit 1: 1, bit 3: 2
};

// Nullopt, with `why` set, when the frame is not a well-formed publish envelope.
std::optional<binary_publish_view> decode_binary_publish(std::span<const std::uint8_t> frame,
                                                         std::string& why);

// Appends a publish envelope (the client side: `wsagent pub`, the bench).
void encode_binary_publish(std::string& out, std::string_view tag, std::string_view msgid,
                           std::string_view payload, bool retain, int qos = 0);

// Appends a whole WebSocket binary frame holding a message envelope for `m` (binary payload);
// `qos` 1 sets flag bit 1 (2: bit 3) and adds the u64 seq after the timestamp, `dup` sets
// bit 2; a message with an offset sets bit 4 and adds it after that.
void encode_binary_message_frame(const outgoing_message& m, std::string& out, int qos = 0,
                                 bool dup = false);

struct binary_message_view {
  std::string_view tag, from, msgid, payload;
  std::int64_t timestamp_ms = 0;
  bool retained = false;
  int qos = 0;
  bool dup = false;
  std::uint64_t seq = 0;
  std::uint64_t offset = 0;
};
std::optional<binary_message_view> decode_binary_message(std::string_view frame, std::string& why);

}  // namespace wsagent::protocol::native
