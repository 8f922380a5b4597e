#pragma once
// MQTT 5.0 properties (section 2.2.2): the block of identifier-value pairs that 5.0 packets
// carry after their variable header. parse_properties() reads the raw block a packet parser
// exposed (connect_request::properties, publish::properties, ...), checks it against the
// packet it came in (which identifiers may appear there, once or many times, and each
// value's range), and returns views into it; encode_properties() writes one.
//
// Errors follow the specification: an identifier unknown or not allowed in the packet, a
// truncated value or a string that is not UTF-8 is a Malformed Packet (0x81); a property
// given twice that may appear once, or a value out of its range (a Receive Maximum of 0, a
// Payload Format Indicator of 2), is a Protocol Error (0x82).

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "protocol/mqtt/codec.hpp"

namespace wsagent::protocol::mqtt {

enum class property : std::uint8_t {
  payload_format = 0x01,
  message_expiry = 0x02,
  content_type = 0x03,
  response_topic = 0x08,
  correlation_data = 0x09,
  subscription_id = 0x0B,
  session_expiry = 0x11,
  assigned_client_id = 0x12,
  server_keep_alive = 0x13,
  auth_method = 0x15,
  auth_data = 0x16,
  request_problem_info = 0x17,
  will_delay = 0x18,
  request_response_info = 0x19,
  response_info = 0x1A,
  server_reference = 0x1C,
  reason_string = 0x1F,
  receive_maximum = 0x21,
  topic_alias_maximum = 0x22,
  topic_alias = 0x23,
  maximum_qos = 0x24,
  retain_available = 0x25,
  user_property = 0x26,
  maximum_packet_size = 0x27,
  wildcard_available = 0x28,
  subscription_id_available = 0x29,
  shared_available = 0x2A,
};

// The packet (or the will inside a CONNECT) a property block belongs to.
enum class property_scope {
  connect,
  will,
  connack,
  publish,
  ack,  // PUBACK, PUBREC, PUBREL, PUBCOMP
  subscribe,
  suback,
  unsubscribe,
  unsuback,
  disconnect,
  auth,
};

struct properties {
  std::optional<std::uint8_t> payload_format;  // 0: bytes, 1: UTF-8
  std::optional<std::uint32_t> message_expiry;
  std::optional<std::string_view> content_type;
  std::optional<std::string_view> response_topic;
  std::optional<std::span<const std::uint8_t>> correlation_data;
  // SUBSCRIBE: at most one; a PUBLISH from the server: one per matching subscription.
  std::uint32_t subscription_id = 0;  // the first (0: none)
  std::size_t subscription_id_count = 0;
  std::optional<std::uint32_t> session_expiry;
  std::optional<std::string_view> assigned_client_id;
  std::optional<std::uint16_t> server_keep_alive;
  std::optional<std::string_view> auth_method;
  std::optional<std::span<const std::uint8_t>> auth_data;
  std::optional<std::uint8_t> request_problem_info;
  std::optional<std::uint32_t> will_delay;
  std::optional<std::uint8_t> request_response_info;
  std::optional<std::string_view> response_info;
  std::optional<std::string_view> server_reference;
  std::optional<std::string_view> reason_string;
  std::optional<std::uint16_t> receive_maximum;
  std::optional<std::uint16_t> topic_alias_maximum;
  std::optional<std::uint16_t> topic_alias;
  std::optional<std::uint8_t> maximum_qos;
  std::optional<std::uint8_t> retain_available;
  std::optional<std::uint32_t> maximum_packet_size;
  std::optional<std::uint8_t> wildcard_available;
  std::optional<std::uint8_t> subscription_id_available;
  std::optional<std::uint8_t> shared_available;
  // User properties, in order: read them with for_each_user_property().
  std::size_t user_property_count = 0;
  std::span<const std::uint8_t> raw;  // the whole block
};

result<properties> parse_properties(std::span<const std::uint8_t> raw, property_scope where);

// Calls f(name, value) for each user property of a block parse_properties() accepted.
template <class F>
void for_each_user_property(const properties& p, F&& f);

// Appends a property block (its length, then the properties set in `p`, then `user`, in
// order); `p.raw` and the counts are ignored. Strings and binary values must fit in 65,535
// bytes (the caller's values come from parsed packets or the agent's own).
void encode_properties(std::string& out, const properties& p,
                       std::span<const std::pair<std::string_view, std::string_view>> user = {});
// The same without the length: a block's body, as the packet encoders take it.
void encode_property_body(std::string& out, const properties& p,
                          std::span<const std::pair<std::string_view, std::string_view>> user = {});

// --- implementation of the template ---------------------------------------------------------

namespace detail {
// The size of the value of property `id` at `at` in `raw` (valid by construction).
std::size_t property_value_size(std::span<const std::uint8_t> raw, std::size_t at, std::uint8_t id);
}  // namespace detail

template <class F>
void for_each_user_property(const properties& p, F&& f) {
  const auto& raw = p.raw;
  std::size_t at = 0;
  auto str = [&](std::size_t where) {
    const std::size_t n = (std::size_t{raw[where]} << 8) | raw[where + 1];
    return std::string_view(reinterpret_cast<const char*>(raw.data() + where + 2), n);
  };
  while (at < raw.size()) {
    // The identifier is a variable byte integer; every defined one fits in one byte.
    const std::uint8_t id = raw[at++];
    if (id == static_cast<std::uint8_t>(property::user_property)) {
      const auto name = str(at);
      const auto value = str(at + 2 + name.size());
      f(name, value);
    }
    at += detail::property_value_size(raw, at, id);
  }
}

}  // namespace wsagent::protocol::mqtt
