#pragma once
// The MQTT codec: pure and incremental, bytes in and out, no sockets, no allocation when
// parsing (every parsed field is a view into the caller's bytes). MQTT 3.1.1 (protocol
// level 4) in full for the packets below, and MQTT 5.0 (level 5) framing: every function takes
// the version; for 5.0 encoders write an empty property block and parsers expose the raw
// properties as a span (property decoding comes with the MQTT adapter).
//
// Reading a stream, per connection:
//   loop: append received bytes to a buffer; then
//     while (true) { auto r = split(unconsumed, max_packet_size);
//                    if (r.st == need_more) break; if (r.st == error) { close; break; }
//                    switch (r.type) { case packet_type::publish: parse_publish(r.flags, r.body, v)
//                    ... } consume r.size bytes; }
// split() checks the fixed header (reserved type, the fixed flags of each type, the
// remaining length's at most four bytes, the size limit); parse_*() check the rest.
// Parsed views stay valid while the caller's bytes do.
//
// What is checked where: everything the specification calls malformed or a protocol error
// that can be seen in one packet is checked here (flags, QoS 3, zero packet ids, strings
// that are not UTF-8 or hold U+0000, truncated or trailing bytes, wildcards in a PUBLISH
// topic, an empty SUBSCRIBE). What needs a session (a second CONNECT, a packet before
// CONNECT, topic aliases, packet ids in use) is the adapter's job.
//
// Errors carry the MQTT 5.0 reason code to report (reason_codes.hpp) and a static message.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "protocol/mqtt/reason_codes.hpp"

namespace wsagent::protocol::mqtt {

enum class version : std::uint8_t { v311 = 4, v5 = 5 };

enum class packet_type : std::uint8_t {
  connect = 1,
  connack,
  publish,
  puback,
  pubrec,
  pubrel,
  pubcomp,
  subscribe,
  suback,
  unsubscribe,
  unsuback,
  pingreq,
  pingresp,
  disconnect,
  auth,  // 5.0 only
};

// The largest remaining length four bytes can encode (256 MiB - 1).
inline constexpr std::size_t max_remaining_length = 268'435'455;

struct split_result {
  enum class status { need_more, packet, error } st = status::need_more;
  packet_type type{};                  // for packet
  std::uint8_t flags = 0;              // low 4 bits of the first byte
  std::size_t size = 0;                // bytes of the whole packet (header + body) to consume
  std::span<const std::uint8_t> body;  // the variable header + payload
  std::string_view error;              // for error: what is wrong
  std::uint8_t reason = 0;             // for error: the 5.0 reason code
};

// Looks at the front of `input` (bytes not yet consumed). need_more until a whole packet is
// there; a packet larger than `max_packet_size` (whole packet) is an error as soon as its
// length is known.
split_result split(std::span<const std::uint8_t> input, std::size_t max_packet_size);

struct parse_error {
  std::uint8_t reason = reason::malformed_packet;
  std::string_view message;
};

template <class T>
struct result {
  bool ok = false;
  parse_error error;
  T value{};
};

// --- packets ----------------------------------------------------------------------------

struct will_message {
  std::string_view topic;
  std::span<const std::uint8_t> payload;
  std::uint8_t qos = 0;
  bool retain = false;
  std::span<const std::uint8_t> properties;  // 5.0
};

struct connect_options {
  version ver = version::v311;
  std::string_view client_id;
  bool clean_start = true;  // 3.1.1: clean session
  std::uint16_t keep_alive = 60;
  std::optional<std::string_view> username;
  std::optional<std::string_view> password;
  std::optional<will_message> will;
};

struct connect_request {
  version ver = version::v311;
  std::string_view client_id;
  bool clean_start = true;
  std::uint16_t keep_alive = 0;
  std::optional<will_message> will;
  std::optional<std::string_view> username;
  std::optional<std::span<const std::uint8_t>> password;  // binary data, not a string
  std::span<const std::uint8_t> properties;               // 5.0
};

struct connack {
  bool session_present = false;
  std::uint8_t code = 0;  // 3.1.1 return code or 5.0 reason code
  std::span<const std::uint8_t> properties;
};

struct publish {
  std::string_view topic;
  std::span<const std::uint8_t> payload;
  std::uint8_t qos = 0;
  bool retain = false;
  bool dup = false;
  std::uint16_t packet_id = 0;  // QoS 1 and 2 only
  std::span<const std::uint8_t> properties;
};

// PUBACK, PUBREC, PUBREL, PUBCOMP.
struct ack {
  std::uint16_t packet_id = 0;
  std::uint8_t reason = 0;
  std::span<const std::uint8_t> properties;
};

struct subscription {
  std::string_view filter;
  std::uint8_t qos = 0;
  // 5.0 subscription options
  bool no_local = false;
  bool retain_as_published = false;
  std::uint8_t retain_handling = 0;
};

// SUBSCRIBE and UNSUBSCRIBE, validated: `entries` holds `count` entries, read them with
// for_each_subscription / for_each_filter.
struct subscribe_request {
  std::uint16_t packet_id = 0;
  std::span<const std::uint8_t> properties;
  std::span<const std::uint8_t> entries;
  std::size_t count = 0;
};

// SUBACK and UNSUBACK (5.0; a 3.1.1 UNSUBACK has no codes).
struct suback {
  std::uint16_t packet_id = 0;
  std::span<const std::uint8_t> properties;
  std::span<const std::uint8_t> codes;
};

struct disconnect {
  std::uint8_t reason = 0;
  std::span<const std::uint8_t> properties;
};

// 5.0's AUTH (enhanced authentication; the agent offers re-authentication with a token).
struct auth_packet {
  std::uint8_t reason = 0;
  std::span<const std::uint8_t> properties;
};

// --- encoders: each appends one whole packet to `out` -------------------------------------

void encode_connect(std::string& out, const connect_options& o);
// 5.0: `properties` is a property block's body (without its length), as in the parsed
// packets; empty by default.
void encode_connack(std::string& out, version v, bool session_present, std::uint8_t code,
                    std::span<const std::uint8_t> properties = {});
// 5.0 writes `p.properties` (a block's body) as the packet's properties.
void encode_publish(std::string& out, version v, const publish& p);
// PUBACK, PUBREC, PUBREL (flags 0b0010), PUBCOMP. 5.0 writes the reason when it is not 0.
void encode_ack(std::string& out, version v, packet_type t, std::uint16_t packet_id,
                std::uint8_t reason = 0);
void encode_subscribe(std::string& out, version v, std::uint16_t packet_id,
                      std::span<const subscription> subs);
void encode_suback(std::string& out, version v, std::uint16_t packet_id,
                   std::span<const std::uint8_t> codes);
void encode_unsubscribe(std::string& out, version v, std::uint16_t packet_id,
                        std::span<const std::string_view> filters);
// 3.1.1 ignores `codes` (its UNSUBACK has none).
void encode_unsuback(std::string& out, version v, std::uint16_t packet_id,
                     std::span<const std::uint8_t> codes);
void encode_pingreq(std::string& out);
void encode_pingresp(std::string& out);
void encode_disconnect(std::string& out, version v, std::uint8_t reason = 0);
// 5.0 AUTH with `reason` and a property block's body.
void encode_auth(std::string& out, std::uint8_t reason, std::span<const std::uint8_t> properties);

// Bytes of a PUBLISH with no properties before its payload (fixed header, topic, packet id,
// 5.0's empty properties): a sender can write that header and a shared payload without
// copying it.
std::size_t publish_header_size(version v, std::string_view topic, std::size_t payload_size,
                                std::uint8_t qos);
// Appends only that header; the caller appends (or gathers) the payload.
void encode_publish_header(std::string& out, version v, const publish& p, std::size_t payload_size);

// --- parsers of one packet found by split() -------------------------------------------------

result<connect_request> parse_connect(std::uint8_t flags, std::span<const std::uint8_t> body);
result<connack> parse_connack(std::uint8_t flags, std::span<const std::uint8_t> body, version v);
result<publish> parse_publish(std::uint8_t flags, std::span<const std::uint8_t> body, version v);
result<ack> parse_ack(packet_type t, std::uint8_t flags, std::span<const std::uint8_t> body,
                      version v);
result<subscribe_request> parse_subscribe(std::uint8_t flags, std::span<const std::uint8_t> body,
                                          version v);
result<subscribe_request> parse_unsubscribe(std::uint8_t flags, std::span<const std::uint8_t> body,
                                            version v);
result<suback> parse_suback(std::uint8_t flags, std::span<const std::uint8_t> body, version v);
result<suback> parse_unsuback(std::uint8_t flags, std::span<const std::uint8_t> body, version v);
// PINGREQ and PINGRESP: an empty body.
result<bool> parse_empty(std::uint8_t flags, std::span<const std::uint8_t> body);
result<disconnect> parse_disconnect(std::uint8_t flags, std::span<const std::uint8_t> body,
                                    version v);
// 5.0 only (3.1.1 has no AUTH): the reason (0 when the body is empty) and properties.
result<auth_packet> parse_auth(std::uint8_t flags, std::span<const std::uint8_t> body);

// Reads the entries of a parsed SUBSCRIBE (valid by construction).
template <class F>
void for_each_subscription(const subscribe_request& r, version v, F&& f);
// Reads the filters of a parsed UNSUBSCRIBE.
template <class F>
void for_each_filter(const subscribe_request& r, F&& f);

// --- implementation of the templates -----------------------------------------------------

namespace detail {
inline std::string_view read_entry(std::span<const std::uint8_t> in, std::size_t& at) {
  const std::size_t n = (std::size_t{in[at]} << 8) | in[at + 1];
  std::string_view s(reinterpret_cast<const char*>(in.data() + at + 2), n);
  at += 2 + n;
  return s;
}
}  // namespace detail

template <class F>
void for_each_subscription(const subscribe_request& r, version v, F&& f) {
  std::size_t at = 0;
  for (std::size_t i = 0; i < r.count; ++i) {
    subscription s;
    s.filter = detail::read_entry(r.entries, at);
    const std::uint8_t o = r.entries[at++];
    s.qos = o & 0x03;
    if (v == version::v5) {
      s.no_local = (o & 0x04) != 0;
      s.retain_as_published = (o & 0x08) != 0;
      s.retain_handling = static_cast<std::uint8_t>((o >> 4) & 0x03);
    }
    f(s);
  }
}

template <class F>
void for_each_filter(const subscribe_request& r, F&& f) {
  std::size_t at = 0;
  for (std::size_t i = 0; i < r.count; ++i)
    f(detail::read_entry(r.entries, at));
}

}  // namespace wsagent::protocol::mqtt
