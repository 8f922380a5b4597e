// libFuzzer target: the MQTT codec. The input is split into packets in chunks of varying
// size (as a socket would deliver them), and every parser runs on every packet in both
// versions. Nothing may crash, read out of bounds or leak.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/mqtt/codec.hpp"
#include "protocol/mqtt/properties.hpp"

namespace mqtt = wsagent::protocol::mqtt;

namespace {

// Every property block, in every scope: what is accepted re-encodes to a block that
// parses to the same values.
void parse_properties(std::span<const std::uint8_t> raw) {
  for (int s = 0; s <= static_cast<int>(mqtt::property_scope::auth); ++s) {
    const auto scope = static_cast<mqtt::property_scope>(s);
    auto p = mqtt::parse_properties(raw, scope);
    if (!p.ok) continue;
    std::vector<std::pair<std::string_view, std::string_view>> user;
    mqtt::for_each_user_property(
        p.value, [&](std::string_view n, std::string_view v) { user.emplace_back(n, v); });
    if (user.size() != p.value.user_property_count) __builtin_trap();
    std::string again;
    auto first = p.value;
    if (first.subscription_id_count > 1) continue;  // only the first is kept
    mqtt::encode_properties(again, first, user);
    // Skip the block's length, then parse the body.
    std::size_t at = 0;
    while (static_cast<std::uint8_t>(again[at]) & 0x80)
      ++at;
    const std::span<const std::uint8_t> body(
        reinterpret_cast<const std::uint8_t*>(again.data()) + at + 1, again.size() - at - 1);
    auto q = mqtt::parse_properties(body, scope);
    if (!q.ok || q.value.user_property_count != p.value.user_property_count ||
        q.value.message_expiry != p.value.message_expiry ||
        q.value.content_type != p.value.content_type ||
        q.value.receive_maximum != p.value.receive_maximum)
      __builtin_trap();
  }
}

void parse_all(const mqtt::split_result& r) {
  for (auto v : {mqtt::version::v311, mqtt::version::v5}) {
    if (auto c = mqtt::parse_connect(r.flags, r.body); c.ok) {
      parse_properties(c.value.properties);
      if (c.value.will) parse_properties(c.value.will->properties);
    }
    (void)mqtt::parse_connack(r.flags, r.body, v);
    if (auto p = mqtt::parse_publish(r.flags, r.body, v); p.ok) {
      parse_properties(p.value.properties);
      // Re-encoding what was parsed must give a packet that parses the same way.
      std::string again;
      mqtt::encode_publish(again, v, p.value);
      const auto s =
          mqtt::split({reinterpret_cast<const std::uint8_t*>(again.data()), again.size()}, 1 << 30);
      if (s.st != mqtt::split_result::status::packet) __builtin_trap();
      const auto q = mqtt::parse_publish(s.flags, s.body, v);
      if (!q.ok || q.value.topic != p.value.topic ||
          q.value.payload.size() != p.value.payload.size())
        __builtin_trap();
    }
    (void)mqtt::parse_ack(r.type, r.flags, r.body, v);
    if (auto s = mqtt::parse_subscribe(r.flags, r.body, v); s.ok) {
      std::size_t n = 0;
      mqtt::for_each_subscription(s.value, v, [&](const mqtt::subscription&) { ++n; });
      if (n != s.value.count) __builtin_trap();
    }
    if (auto u = mqtt::parse_unsubscribe(r.flags, r.body, v); u.ok) {
      std::size_t n = 0;
      mqtt::for_each_filter(u.value, [&](std::string_view) { ++n; });
      if (n != u.value.count) __builtin_trap();
    }
    (void)mqtt::parse_suback(r.flags, r.body, v);
    (void)mqtt::parse_unsuback(r.flags, r.body, v);
    (void)mqtt::parse_empty(r.flags, r.body);
    (void)mqtt::parse_disconnect(r.flags, r.body, v);
    if (auto a = mqtt::parse_auth(r.flags, r.body); a.ok)
      (void)mqtt::parse_properties(a.value.properties, mqtt::property_scope::auth);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte picks the chunk size, the rest is the stream.
  const std::size_t chunk = 1 + data[0] % 64;
  std::vector<std::uint8_t> buffer;
  for (std::size_t at = 1; at < size; at += chunk) {
    const std::size_t n = std::min(chunk, size - at);
    buffer.insert(buffer.end(), data + at, data + at + n);
    while (true) {
      const auto r = mqtt::split(buffer, 64 * 1024);
      if (r.st == mqtt::split_result::status::error) return 0;
      if (r.st == mqtt::split_result::status::need_more) break;
      parse_all(r);
      buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(r.size));
    }
  }
  return 0;
}
