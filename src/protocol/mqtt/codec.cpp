#include "protocol/mqtt/codec.hpp"

#include "common/utf8.hpp"
#include "protocol/mqtt/wire.hpp"

namespace wsagent::protocol::mqtt {

namespace {

using detail::bytes;
using detail::cursor;
using detail::put_bytes;
using detail::put_header;
using detail::put_str;
using detail::put_u16;
using detail::put_varint;
using detail::varint_size;

template <class T>
result<T> fail(std::uint8_t reason, std::string_view message) {
  result<T> r;
  r.error = {reason, message};
  return r;
}

template <class T>
result<T> done(T value) {
  result<T> r;
  r.ok = true;
  r.value = value;
  return r;
}

// The fixed flags of every type but PUBLISH (3.1.1 table 2.2, 5.0 table 2-2).
constexpr std::uint8_t fixed_flags(packet_type t) {
  switch (t) {
    case packet_type::pubrel:
    case packet_type::subscribe:
    case packet_type::unsubscribe:
      return 0x02;
    default:
      return 0x00;
  }
}

bool has_wildcard(std::string_view topic) {
  return topic.find_first_of("+#") != std::string_view::npos;
}

}  // namespace

// --- framing ------------------------------------------------------------------------------

split_result split(std::span<const std::uint8_t> input, std::size_t max_packet_size) {
  split_result r;
  auto error = [&r](std::uint8_t reason_code, std::string_view what) {
    r.st = split_result::status::error;
    r.reason = reason_code;
    r.error = what;
    return r;
  };
  if (input.empty()) return r;
  const std::uint8_t first = input[0];
  const auto type = static_cast<packet_type>(first >> 4);
  const auto flags = static_cast<std::uint8_t>(first & 0x0F);
  if (first >> 4 == 0) return error(reason::malformed_packet, "reserved packet type 0");
  if (type == packet_type::publish) {
    if (((flags >> 1) & 0x03) == 3) return error(reason::malformed_packet, "PUBLISH with QoS 3");
  } else if (flags != fixed_flags(type)) {
    return error(reason::malformed_packet, "wrong fixed-header flags for the packet type");
  }
  std::size_t length = 0;
  std::size_t mul = 1;
  std::size_t i = 1;
  for (;; ++i) {
    if (i == 5) return error(reason::malformed_packet, "remaining length over four bytes");
    if (i >= input.size()) return r;  // need more
    // [MQTT-1.5.5-1]: the fewest bytes; a last byte of 0 after a continuation is one too many.
    if (i > 1 && input[i] == 0)
      return error(reason::malformed_packet, "remaining length not in its shortest form");
    length += (input[i] & 0x7F) * mul;
    mul *= 128;
    if (!(input[i] & 0x80)) break;
  }
  const std::size_t header = i + 1;
  if (header + length > max_packet_size)
    return error(reason::packet_too_large, "packet larger than the maximum packet size");
  if (input.size() < header + length) return r;  // need more
  r.st = split_result::status::packet;
  r.type = type;
  r.flags = flags;
  r.size = header + length;
  r.body = input.subspan(header, length);
  return r;
}

// --- encoders -----------------------------------------------------------------------------

void encode_connect(std::string& out, const connect_options& o) {
  const bool v5 = o.ver == version::v5;
  std::size_t n = 6 + 1 + 1 + 2 + (v5 ? 1 : 0) + 2 + o.client_id.size();
  if (o.will) n += (v5 ? 1 : 0) + 2 + o.will->topic.size() + 2 + o.will->payload.size();
  if (o.username) n += 2 + o.username->size();
  if (o.password) n += 2 + o.password->size();
  std::uint8_t flags = o.clean_start ? 0x02 : 0x00;
  if (o.will) {
    flags |= 0x04 | static_cast<std::uint8_t>(o.will->qos << 3);
    if (o.will->retain) flags |= 0x20;
  }
  if (o.password) flags |= 0x40;
  if (o.username) flags |= 0x80;
  put_header(out, packet_type::connect, 0, n);
  put_str(out, "MQTT");
  out.push_back(static_cast<char>(o.ver));
  out.push_back(static_cast<char>(flags));
  put_u16(out, o.keep_alive);
  if (v5) out.push_back(0);  // no properties
  put_str(out, o.client_id);
  if (o.will) {
    if (v5) out.push_back(0);
    put_str(out, o.will->topic);
    put_bytes(out, o.will->payload);
  }
  if (o.username) put_str(out, *o.username);
  if (o.password) put_str(out, *o.password);
}

void encode_connack(std::string& out, version v, bool session_present, std::uint8_t code,
                    std::span<const std::uint8_t> properties) {
  const bool v5 = v == version::v5;
  const std::size_t props = properties.size();
  put_header(out, packet_type::connack, 0, 2 + (v5 ? varint_size(props) + props : 0));
  out.push_back(session_present ? 1 : 0);
  out.push_back(static_cast<char>(code));
  if (v5) {
    put_varint(out, props);
    out.append(reinterpret_cast<const char*>(properties.data()), props);
  }
}

std::size_t publish_header_size(version v, std::string_view topic, std::size_t payload_size,
                                std::uint8_t qos) {
  const std::size_t variable = 2 + topic.size() + (qos ? 2 : 0) + (v == version::v5 ? 1 : 0);
  return 1 + varint_size(variable + payload_size) + variable;
}

void encode_publish_header(std::string& out, version v, const publish& p,
                           std::size_t payload_size) {
  const bool v5 = v == version::v5;
  const std::size_t props = p.properties.size();
  const std::size_t variable =
      2 + p.topic.size() + (p.qos ? 2 : 0) + (v5 ? varint_size(props) + props : 0);
  std::uint8_t flags = static_cast<std::uint8_t>(p.qos << 1);
  if (p.dup) flags |= 0x08;
  if (p.retain) flags |= 0x01;
  put_header(out, packet_type::publish, flags, variable + payload_size);
  put_str(out, p.topic);
  if (p.qos) put_u16(out, p.packet_id);
  if (v5) {
    put_varint(out, props);
    out.append(reinterpret_cast<const char*>(p.properties.data()), props);
  }
}

void encode_publish(std::string& out, version v, const publish& p) {
  out.reserve(out.size() + publish_header_size(v, p.topic, p.payload.size(), p.qos) +
              p.payload.size());
  encode_publish_header(out, v, p, p.payload.size());
  out.append(reinterpret_cast<const char*>(p.payload.data()), p.payload.size());
}

void encode_ack(std::string& out, version v, packet_type t, std::uint16_t packet_id,
                std::uint8_t reason_code) {
  const bool with_reason = v == version::v5 && reason_code != 0;
  put_header(out, t, fixed_flags(t), with_reason ? 3 : 2);
  put_u16(out, packet_id);
  if (with_reason) out.push_back(static_cast<char>(reason_code));
}

void encode_subscribe(std::string& out, version v, std::uint16_t packet_id,
                      std::span<const subscription> subs) {
  const bool v5 = v == version::v5;
  std::size_t n = 2 + (v5 ? 1 : 0);
  for (const auto& s : subs)
    n += 2 + s.filter.size() + 1;
  put_header(out, packet_type::subscribe, 0x02, n);
  put_u16(out, packet_id);
  if (v5) out.push_back(0);
  for (const auto& s : subs) {
    put_str(out, s.filter);
    std::uint8_t o = s.qos & 0x03;
    if (v5) {
      if (s.no_local) o |= 0x04;
      if (s.retain_as_published) o |= 0x08;
      o |= static_cast<std::uint8_t>((s.retain_handling & 0x03) << 4);
    }
    out.push_back(static_cast<char>(o));
  }
}

void encode_suback(std::string& out, version v, std::uint16_t packet_id,
                   std::span<const std::uint8_t> codes) {
  const bool v5 = v == version::v5;
  put_header(out, packet_type::suback, 0, 2 + (v5 ? 1 : 0) + codes.size());
  put_u16(out, packet_id);
  if (v5) out.push_back(0);
  out.append(reinterpret_cast<const char*>(codes.data()), codes.size());
}

void encode_unsubscribe(std::string& out, version v, std::uint16_t packet_id,
                        std::span<const std::string_view> filters) {
  const bool v5 = v == version::v5;
  std::size_t n = 2 + (v5 ? 1 : 0);
  for (const auto f : filters)
    n += 2 + f.size();
  put_header(out, packet_type::unsubscribe, 0x02, n);
  put_u16(out, packet_id);
  if (v5) out.push_back(0);
  for (const auto f : filters)
    put_str(out, f);
}

void encode_unsuback(std::string& out, version v, std::uint16_t packet_id,
                     std::span<const std::uint8_t> codes) {
  if (v != version::v5) {
    put_header(out, packet_type::unsuback, 0, 2);
    put_u16(out, packet_id);
    return;
  }
  put_header(out, packet_type::unsuback, 0, 3 + codes.size());
  put_u16(out, packet_id);
  out.push_back(0);
  out.append(reinterpret_cast<const char*>(codes.data()), codes.size());
}

void encode_pingreq(std::string& out) {
  put_header(out, packet_type::pingreq, 0, 0);
}

void encode_pingresp(std::string& out) {
  put_header(out, packet_type::pingresp, 0, 0);
}

void encode_disconnect(std::string& out, version v, std::uint8_t reason_code) {
  if (v == version::v5 && reason_code != 0) {
    put_header(out, packet_type::disconnect, 0, 1);
    out.push_back(static_cast<char>(reason_code));
    return;
  }
  put_header(out, packet_type::disconnect, 0, 0);
}

void encode_auth(std::string& out, std::uint8_t reason_code,
                 std::span<const std::uint8_t> properties) {
  const auto props = properties.size();
  put_header(out, packet_type::auth, 0, 1 + varint_size(props) + props);
  out.push_back(static_cast<char>(reason_code));
  put_varint(out, props);
  out.append(reinterpret_cast<const char*>(properties.data()), props);
}

// --- parsers ------------------------------------------------------------------------------

result<connect_request> parse_connect(std::uint8_t, std::span<const std::uint8_t> body) {
  cursor c(body);
  connect_request r;
  const auto name = c.binary("truncated protocol name");
  const std::uint8_t level = c.u8("truncated protocol level");
  if (!c.ok()) return fail<connect_request>(c.error().reason, c.error().message);
  const std::string_view name_s(reinterpret_cast<const char*>(name.data()), name.size());
  if (name_s == "MQIsdp")
    return fail<connect_request>(reason::unsupported_protocol_version,
                                 "MQTT 3.1 (MQIsdp) is not supported: use 3.1.1 or 5.0");
  if (name_s != "MQTT")
    return fail<connect_request>(reason::malformed_packet, "protocol name is not MQTT");
  if (level != 4 && level != 5)
    return fail<connect_request>(reason::unsupported_protocol_version,
                                 "unsupported protocol level (4 and 5 are)");
  r.ver = static_cast<version>(level);
  const bool v5 = r.ver == version::v5;
  const std::uint8_t flags = c.u8("truncated connect flags");
  r.keep_alive = c.u16("truncated keep alive");
  if (!c.ok()) return fail<connect_request>(c.error().reason, c.error().message);
  if (flags & 0x01)
    return fail<connect_request>(reason::malformed_packet, "reserved connect flag set");
  r.clean_start = (flags & 0x02) != 0;
  const bool will = (flags & 0x04) != 0;
  const auto will_qos = static_cast<std::uint8_t>((flags >> 3) & 0x03);
  const bool will_retain = (flags & 0x20) != 0;
  const bool password = (flags & 0x40) != 0;
  const bool username = (flags & 0x80) != 0;
  if (!will && (will_qos || will_retain))
    return fail<connect_request>(reason::malformed_packet, "will QoS or retain without a will");
  if (will_qos == 3) return fail<connect_request>(reason::malformed_packet, "will QoS 3");
  if (!v5 && password && !username)
    return fail<connect_request>(reason::malformed_packet, "password without a user name");
  if (v5) r.properties = c.properties();
  r.client_id = c.str("truncated client id");
  if (will) {
    will_message w;
    w.qos = will_qos;
    w.retain = will_retain;
    if (v5) w.properties = c.properties();
    w.topic = c.str("truncated will topic");
    w.payload = c.binary("truncated will payload");
    if (c.ok() && (w.topic.empty() || has_wildcard(w.topic)))
      return fail<connect_request>(reason::topic_name_invalid,
                                   "will topic is empty or has a wildcard");
    r.will = w;
  }
  if (username) r.username = c.str("truncated user name");
  if (password) r.password = c.binary("truncated password");
  if (!c.ok()) return fail<connect_request>(c.error().reason, c.error().message);
  if (!c.at_end())
    return fail<connect_request>(reason::malformed_packet, "bytes after the CONNECT payload");
  return done(r);
}

result<connack> parse_connack(std::uint8_t, std::span<const std::uint8_t> body, version v) {
  cursor c(body);
  connack r;
  const std::uint8_t ack_flags = c.u8("truncated CONNACK");
  r.code = c.u8("truncated CONNACK");
  if (v == version::v5 && c.ok() && !c.at_end()) r.properties = c.properties();
  if (!c.ok()) return fail<connack>(c.error().reason, c.error().message);
  if (ack_flags & 0xFE)
    return fail<connack>(reason::malformed_packet, "reserved CONNACK flags set");
  if (!c.at_end()) return fail<connack>(reason::malformed_packet, "bytes after the CONNACK");
  r.session_present = (ack_flags & 0x01) != 0;
  return done(r);
}

result<publish> parse_publish(std::uint8_t flags, std::span<const std::uint8_t> body, version v) {
  cursor c(body);
  publish r;
  r.qos = static_cast<std::uint8_t>((flags >> 1) & 0x03);
  r.dup = (flags & 0x08) != 0;
  r.retain = (flags & 0x01) != 0;
  if (r.qos == 3) return fail<publish>(reason::malformed_packet, "PUBLISH with QoS 3");
  if (r.qos == 0 && r.dup)
    return fail<publish>(reason::malformed_packet, "DUP set on a QoS 0 PUBLISH");
  r.topic = c.str("truncated topic");
  if (r.qos) r.packet_id = c.u16("truncated packet id");
  if (v == version::v5) r.properties = c.properties();
  if (!c.ok()) return fail<publish>(c.error().reason, c.error().message);
  if (r.qos && r.packet_id == 0) return fail<publish>(reason::malformed_packet, "packet id 0");
  // 5.0 allows an empty topic with a topic alias (the adapter checks the alias).
  if (r.topic.empty() && v != version::v5)
    return fail<publish>(reason::topic_name_invalid, "empty topic");
  if (has_wildcard(r.topic))
    return fail<publish>(reason::topic_name_invalid, "a PUBLISH topic may not hold + or #");
  r.payload = c.rest();
  return done(r);
}

result<ack> parse_ack(packet_type, std::uint8_t, std::span<const std::uint8_t> body, version v) {
  cursor c(body);
  ack r;
  r.packet_id = c.u16("truncated packet id");
  if (v == version::v5) {
    if (c.ok() && !c.at_end()) r.reason = c.u8("truncated reason");
    if (c.ok() && !c.at_end()) r.properties = c.properties();
  }
  if (!c.ok()) return fail<ack>(c.error().reason, c.error().message);
  if (!c.at_end()) return fail<ack>(reason::malformed_packet, "bytes after the acknowledgement");
  if (r.packet_id == 0) return fail<ack>(reason::malformed_packet, "packet id 0");
  return done(r);
}

namespace {

result<subscribe_request> parse_entries(std::span<const std::uint8_t> body, version v,
                                        bool with_options) {
  cursor c(body);
  subscribe_request r;
  r.packet_id = c.u16("truncated packet id");
  if (v == version::v5) r.properties = c.properties();
  if (!c.ok()) return fail<subscribe_request>(c.error().reason, c.error().message);
  if (r.packet_id == 0) return fail<subscribe_request>(reason::malformed_packet, "packet id 0");
  const std::size_t start = c.offset();
  while (!c.at_end()) {
    const auto filter = c.str("truncated topic filter");
    if (!c.ok()) return fail<subscribe_request>(c.error().reason, c.error().message);
    if (filter.empty())
      return fail<subscribe_request>(reason::topic_filter_invalid, "empty topic filter");
    if (with_options) {
      const std::uint8_t o = c.u8("truncated subscription options");
      if (!c.ok()) return fail<subscribe_request>(c.error().reason, c.error().message);
      const std::uint8_t reserved = v == version::v5 ? 0xC0 : 0xFC;
      if (o & reserved)
        return fail<subscribe_request>(reason::malformed_packet,
                                       "reserved subscription option bits set");
      // 3.1.1 [MQTT-3-8.3-4]: malformed; 5.0 section 3.8.3.1: a Protocol Error.
      if ((o & 0x03) == 3)
        return fail<subscribe_request>(
            v == version::v5 ? reason::protocol_error : reason::malformed_packet,
            "subscription QoS 3");
      if (((o >> 4) & 0x03) == 3)
        return fail<subscribe_request>(reason::protocol_error, "retain handling 3");
    }
    ++r.count;
  }
  if (r.count == 0)
    return fail<subscribe_request>(reason::protocol_error, "no topic filter in the packet");
  r.entries = body.subspan(start);
  return done(r);
}

result<suback> parse_codes(std::span<const std::uint8_t> body, version v, bool codes_in_v311) {
  cursor c(body);
  suback r;
  r.packet_id = c.u16("truncated packet id");
  if (v == version::v5) r.properties = c.properties();
  if (!c.ok()) return fail<suback>(c.error().reason, c.error().message);
  if (r.packet_id == 0) return fail<suback>(reason::malformed_packet, "packet id 0");
  r.codes = c.rest();
  if (v != version::v5 && !codes_in_v311 && !r.codes.empty())
    return fail<suback>(reason::malformed_packet, "bytes after the UNSUBACK");
  if ((v == version::v5 || codes_in_v311) && r.codes.empty())
    return fail<suback>(reason::protocol_error, "no return code in the packet");
  return done(r);
}

}  // namespace

result<subscribe_request> parse_subscribe(std::uint8_t, std::span<const std::uint8_t> body,
                                          version v) {
  return parse_entries(body, v, true);
}

result<subscribe_request> parse_unsubscribe(std::uint8_t, std::span<const std::uint8_t> body,
                                            version v) {
  return parse_entries(body, v, false);
}

result<suback> parse_suback(std::uint8_t, std::span<const std::uint8_t> body, version v) {
  auto r = parse_codes(body, v, true);
  if (r.ok && v != version::v5)
    for (const auto code : r.value.codes)
      if (code > 2 && code != suback_failure)
        return fail<suback>(reason::malformed_packet, "SUBACK return code not 0, 1, 2 or 0x80");
  return r;
}

result<suback> parse_unsuback(std::uint8_t, std::span<const std::uint8_t> body, version v) {
  return parse_codes(body, v, false);
}

result<bool> parse_empty(std::uint8_t, std::span<const std::uint8_t> body) {
  if (!body.empty()) return fail<bool>(reason::malformed_packet, "bytes in a packet that has none");
  return done(true);
}

result<disconnect> parse_disconnect(std::uint8_t, std::span<const std::uint8_t> body, version v) {
  if (v != version::v5) {
    if (!body.empty())
      return fail<disconnect>(reason::malformed_packet, "bytes in a 3.1.1 DISCONNECT");
    return done(disconnect{});
  }
  cursor c(body);
  disconnect r;
  if (!c.at_end()) r.reason = c.u8("truncated reason");
  if (c.ok() && !c.at_end()) r.properties = c.properties();
  if (!c.ok()) return fail<disconnect>(c.error().reason, c.error().message);
  if (!c.at_end()) return fail<disconnect>(reason::malformed_packet, "bytes after the DISCONNECT");
  return done(r);
}

result<auth_packet> parse_auth(std::uint8_t, std::span<const std::uint8_t> body) {
  cursor c(body);
  auth_packet r;
  if (!c.at_end()) r.reason = c.u8("truncated reason");
  if (c.ok() && !c.at_end()) r.properties = c.properties();
  if (!c.ok()) return fail<auth_packet>(c.error().reason, c.error().message);
  if (!c.at_end()) return fail<auth_packet>(reason::malformed_packet, "bytes after the AUTH");
  if (r.reason != reason::success && r.reason != reason::continue_authentication &&
      r.reason != reason::re_authenticate)
    return fail<auth_packet>(reason::protocol_error, "an AUTH reason code that does not exist");
  return done(r);
}

}  // namespace wsagent::protocol::mqtt
