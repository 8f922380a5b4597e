#include "protocol/mqtt/properties.hpp"

#include <array>

#include "protocol/mqtt/wire.hpp"

namespace wsagent::protocol::mqtt {

namespace {

using detail::bytes;
using detail::cursor;

enum class kind : std::uint8_t { none, byte, u16, u32, varint, string, binary, pair };

constexpr std::uint16_t in(property_scope s) {
  return static_cast<std::uint16_t>(1u << static_cast<unsigned>(s));
}
constexpr std::uint16_t message_scopes = in(property_scope::publish) | in(property_scope::will);
constexpr std::uint16_t reason_scopes = in(property_scope::connack) | in(property_scope::ack) |
                                        in(property_scope::suback) | in(property_scope::unsuback) |
                                        in(property_scope::disconnect) | in(property_scope::auth);
constexpr std::uint16_t everywhere = 0x7FF;

struct spec {
  kind k = kind::none;
  std::uint16_t scopes = 0;  // where it may appear
  bool flag = false;         // a byte that must be 0 or 1
};

// 5.0 table 2-4, by identifier.
constexpr std::array<spec, 0x2B> specs = [] {
  std::array<spec, 0x2B> t{};
  auto set = [&](property p, kind k, std::uint16_t scopes, bool flag = false) {
    t[static_cast<std::size_t>(p)] = {k, scopes, flag};
  };
  const auto connect = in(property_scope::connect), connack = in(property_scope::connack);
  set(property::payload_format, kind::byte, message_scopes, true);
  set(property::message_expiry, kind::u32, message_scopes);
  set(property::content_type, kind::string, message_scopes);
  set(property::response_topic, kind::string, message_scopes);
  set(property::correlation_data, kind::binary, message_scopes);
  set(property::subscription_id, kind::varint,
      in(property_scope::publish) | in(property_scope::subscribe));
  set(property::session_expiry, kind::u32, connect | connack | in(property_scope::disconnect));
  set(property::assigned_client_id, kind::string, connack);
  set(property::server_keep_alive, kind::u16, connack);
  set(property::auth_method, kind::string, connect | connack | in(property_scope::auth));
  set(property::auth_data, kind::binary, connect | connack | in(property_scope::auth));
  set(property::request_problem_info, kind::byte, connect, true);
  set(property::will_delay, kind::u32, in(property_scope::will));
  set(property::request_response_info, kind::byte, connect, true);
  set(property::response_info, kind::string, connack);
  set(property::server_reference, kind::string, connack | in(property_scope::disconnect));
  set(property::reason_string, kind::string, reason_scopes);
  set(property::receive_maximum, kind::u16, connect | connack);
  set(property::topic_alias_maximum, kind::u16, connect | connack);
  set(property::topic_alias, kind::u16, in(property_scope::publish));
  set(property::maximum_qos, kind::byte, connack, true);
  set(property::retain_available, kind::byte, connack, true);
  set(property::user_property, kind::pair, everywhere);
  set(property::maximum_packet_size, kind::u32, connect | connack);
  set(property::wildcard_available, kind::byte, connack, true);
  set(property::subscription_id_available, kind::byte, connack, true);
  set(property::shared_available, kind::byte, connack, true);
  return t;
}();

const spec* find(std::uint8_t id) {
  if (id >= specs.size() || specs[id].k == kind::none) return nullptr;
  return &specs[id];
}

template <class T>
result<T> failed(std::uint8_t reason_code, std::string_view message) {
  result<T> r;
  r.error = {reason_code, message};
  return r;
}

}  // namespace

std::size_t detail::property_value_size(std::span<const std::uint8_t> raw, std::size_t at,
                                        std::uint8_t id) {
  auto str_size = [&](std::size_t where) {
    return 2 + ((std::size_t{raw[where]} << 8) | raw[where + 1]);
  };
  switch (specs[id].k) {
    case kind::byte:
      return 1;
    case kind::u16:
      return 2;
    case kind::u32:
      return 4;
    case kind::varint: {
      std::size_t n = 1;
      while (raw[at + n - 1] & 0x80)
        ++n;
      return n;
    }
    case kind::string:
    case kind::binary:
      return str_size(at);
    case kind::pair: {
      const std::size_t name = str_size(at);
      return name + str_size(at + name);
    }
    case kind::none:
      break;
  }
  return 0;
}

result<properties> parse_properties(std::span<const std::uint8_t> raw, property_scope where) {
  properties p;
  p.raw = raw;
  cursor c(raw);
  std::uint64_t seen = 0;  // identifiers met, for "at most once"
  auto once = [&](std::uint8_t id) {
    const auto bit = std::uint64_t{1} << id;
    const bool first = !(seen & bit);
    seen |= bit;
    return first;
  };
  while (c.ok() && !c.at_end()) {
    // A variable byte integer in the specification, and every defined one is under 128: in
    // its one-byte (minimal) encoding, the only one allowed (1.5.5).
    const std::uint8_t id = c.u8("truncated property identifier");
    if (!c.ok()) break;
    const spec* s = find(id);
    if (!s || !(s->scopes & in(where)))
      return failed<properties>(reason::malformed_packet,
                                "a property that this packet may not carry");
    const auto prop = static_cast<property>(id);
    const bool repeatable = prop == property::user_property ||
                            (prop == property::subscription_id && where == property_scope::publish);
    if (!once(id) && !repeatable)
      return failed<properties>(reason::protocol_error, "a property given twice");
    switch (s->k) {
      case kind::byte: {
        const std::uint8_t v = c.u8("truncated property");
        if (s->flag && v > 1)
          return failed<properties>(reason::protocol_error, "a property value other than 0 or 1");
        switch (prop) {
          case property::payload_format:
            p.payload_format = v;
            break;
          case property::request_problem_info:
            p.request_problem_info = v;
            break;
          case property::request_response_info:
            p.request_response_info = v;
            break;
          case property::maximum_qos:
            p.maximum_qos = v;
            break;
          case property::retain_available:
            p.retain_available = v;
            break;
          case property::wildcard_available:
            p.wildcard_available = v;
            break;
          case property::subscription_id_available:
            p.subscription_id_available = v;
            break;
          default:
            p.shared_available = v;
            break;
        }
        break;
      }
      case kind::u16: {
        const std::uint16_t v = c.u16("truncated property");
        if (c.ok() && v == 0 && prop == property::topic_alias)  // 5.0 section 3.3.2.3.4
          return failed<properties>(reason::topic_alias_invalid, "a Topic Alias of 0");
        if (c.ok() && v == 0 && prop == property::receive_maximum)
          return failed<properties>(reason::protocol_error, "a Receive Maximum of 0");
        switch (prop) {
          case property::server_keep_alive:
            p.server_keep_alive = v;
            break;
          case property::receive_maximum:
            p.receive_maximum = v;
            break;
          case property::topic_alias_maximum:
            p.topic_alias_maximum = v;
            break;
          default:
            p.topic_alias = v;
            break;
        }
        break;
      }
      case kind::u32: {
        const std::uint32_t v = c.u32("truncated property");
        if (c.ok() && v == 0 && prop == property::maximum_packet_size)
          return failed<properties>(reason::protocol_error, "a Maximum Packet Size of 0");
        switch (prop) {
          case property::message_expiry:
            p.message_expiry = v;
            break;
          case property::session_expiry:
            p.session_expiry = v;
            break;
          case property::will_delay:
            p.will_delay = v;
            break;
          default:
            p.maximum_packet_size = v;
            break;
        }
        break;
      }
      case kind::varint: {  // subscription identifier
        const std::uint32_t v = c.varint("truncated Subscription Identifier");
        if (c.ok() && v == 0)
          return failed<properties>(reason::protocol_error, "a Subscription Identifier of 0");
        if (!p.subscription_id_count++) p.subscription_id = v;
        break;
      }
      case kind::string: {
        const std::string_view v = c.str("truncated property");
        switch (prop) {
          case property::content_type:
            p.content_type = v;
            break;
          case property::response_topic:
            p.response_topic = v;
            break;
          case property::assigned_client_id:
            p.assigned_client_id = v;
            break;
          case property::auth_method:
            p.auth_method = v;
            break;
          case property::response_info:
            p.response_info = v;
            break;
          case property::server_reference:
            p.server_reference = v;
            break;
          default:
            p.reason_string = v;
            break;
        }
        break;
      }
      case kind::binary: {
        const bytes v = c.binary("truncated property");
        if (prop == property::correlation_data)
          p.correlation_data = v;
        else
          p.auth_data = v;
        break;
      }
      case kind::pair:
        c.str("truncated User Property");
        c.str("truncated User Property");
        ++p.user_property_count;
        break;
      case kind::none:
        break;
    }
  }
  if (!c.ok()) return failed<properties>(c.error().reason, c.error().message);
  // 3.1.2.11.10, 3.2.2.3.18, 3.15.2.2.3: Authentication Data needs an Authentication Method.
  if (p.auth_data && !p.auth_method)
    return failed<properties>(reason::protocol_error, "Authentication Data without a method");
  result<properties> r;
  r.ok = true;
  r.value = p;
  return r;
}

void encode_properties(std::string& out, const properties& p,
                       std::span<const std::pair<std::string_view, std::string_view>> user) {
  std::string body;
  encode_property_body(body, p, user);
  detail::put_varint(out, body.size());
  out.append(body);
}

void encode_property_body(std::string& body, const properties& p,
                          std::span<const std::pair<std::string_view, std::string_view>> user) {
  auto id = [&](property k) { body.push_back(static_cast<char>(k)); };
  auto byte = [&](property k, const std::optional<std::uint8_t>& v) {
    if (!v) return;
    id(k);
    body.push_back(static_cast<char>(*v));
  };
  auto u16 = [&](property k, const std::optional<std::uint16_t>& v) {
    if (!v) return;
    id(k);
    detail::put_u16(body, *v);
  };
  auto u32 = [&](property k, const std::optional<std::uint32_t>& v) {
    if (!v) return;
    id(k);
    detail::put_u32(body, *v);
  };
  auto str = [&](property k, const std::optional<std::string_view>& v) {
    if (!v) return;
    id(k);
    detail::put_str(body, *v);
  };
  auto bin = [&](property k, const std::optional<std::span<const std::uint8_t>>& v) {
    if (!v) return;
    id(k);
    detail::put_bytes(body, *v);
  };
  byte(property::payload_format, p.payload_format);
  u32(property::message_expiry, p.message_expiry);
  str(property::content_type, p.content_type);
  str(property::response_topic, p.response_topic);
  bin(property::correlation_data, p.correlation_data);
  if (p.subscription_id) {
    id(property::subscription_id);
    detail::put_varint(body, p.subscription_id);
  }
  u32(property::session_expiry, p.session_expiry);
  str(property::assigned_client_id, p.assigned_client_id);
  u16(property::server_keep_alive, p.server_keep_alive);
  str(property::auth_method, p.auth_method);
  bin(property::auth_data, p.auth_data);
  byte(property::request_problem_info, p.request_problem_info);
  u32(property::will_delay, p.will_delay);
  byte(property::request_response_info, p.request_response_info);
  str(property::response_info, p.response_info);
  str(property::server_reference, p.server_reference);
  str(property::reason_string, p.reason_string);
  u16(property::receive_maximum, p.receive_maximum);
  u16(property::topic_alias_maximum, p.topic_alias_maximum);
  u16(property::topic_alias, p.topic_alias);
  byte(property::maximum_qos, p.maximum_qos);
  byte(property::retain_available, p.retain_available);
  u32(property::maximum_packet_size, p.maximum_packet_size);
  byte(property::wildcard_available, p.wildcard_available);
  byte(property::subscription_id_available, p.subscription_id_available);
  byte(property::shared_available, p.shared_available);
  for (const auto& [name, value] : user) {
    id(property::user_property);
    detail::put_str(body, name);
    detail::put_str(body, value);
  }
}

}  // namespace wsagent::protocol::mqtt
