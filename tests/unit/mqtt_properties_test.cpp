#include "protocol/mqtt/properties.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace wsagent::protocol::mqtt {
namespace {

using bytes = std::vector<std::uint8_t>;

std::span<const std::uint8_t> view(const bytes& b) {
  return {b.data(), b.size()};
}

// The block without its length prefix, as packet parsers expose it.
bytes body_of(const std::string& encoded) {
  std::size_t at = 0;
  while (static_cast<std::uint8_t>(encoded[at]) & 0x80)
    ++at;
  return bytes(encoded.begin() + static_cast<std::ptrdiff_t>(at) + 1, encoded.end());
}

TEST(MqttProperties, PublishPropertiesRoundTrip) {
  properties p;
  p.payload_format = 1;
  p.message_expiry = 3600;
  p.content_type = "application/json";
  p.response_topic = "replies/7";
  const std::uint8_t corr[] = {0x00, 0xFF, 0x10};
  p.correlation_data = std::span<const std::uint8_t>(corr);
  p.topic_alias = 4;
  const std::pair<std::string_view, std::string_view> user[] = {{"site", "plant1"},
                                                                {"site", "plant2"}};
  std::string out;
  encode_properties(out, p, user);
  const auto body = body_of(out);
  EXPECT_EQ(static_cast<std::size_t>(static_cast<std::uint8_t>(out[0])), body.size());
  auto r = parse_properties(view(body), property_scope::publish);
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_EQ(r.value.payload_format, 1);
  EXPECT_EQ(r.value.message_expiry, 3600u);
  EXPECT_EQ(r.value.content_type, "application/json");
  EXPECT_EQ(r.value.response_topic, "replies/7");
  ASSERT_TRUE(r.value.correlation_data);
  EXPECT_EQ(bytes(r.value.correlation_data->begin(), r.value.correlation_data->end()),
            bytes({0x00, 0xFF, 0x10}));
  EXPECT_EQ(r.value.topic_alias, 4);
  // User properties keep their order, repeated names included.
  std::vector<std::string> seen;
  for_each_user_property(r.value, [&](std::string_view n, std::string_view v) {
    seen.push_back(std::string(n) + "=" + std::string(v));
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"site=plant1", "site=plant2"}));
  EXPECT_EQ(r.value.user_property_count, 2u);
}

TEST(MqttProperties, ConnectAndConnack) {
  // CONNECT: session expiry 0x11, receive maximum 0x21, maximum packet size 0x27.
  const bytes connect = {0x11, 0, 0, 0x0E, 0x10, 0x21, 0, 20, 0x27, 0, 1, 0, 0};
  auto r = parse_properties(view(connect), property_scope::connect);
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_EQ(r.value.session_expiry, 3600u);
  EXPECT_EQ(r.value.receive_maximum, 20);
  EXPECT_EQ(r.value.maximum_packet_size, 65536u);
  // What the agent says back: round trip in CONNACK's scope.
  properties ack;
  ack.assigned_client_id = "auto-1";
  ack.topic_alias_maximum = 0;
  ack.maximum_qos = 1;
  ack.retain_available = 1;
  ack.shared_available = 1;
  ack.server_keep_alive = 30;
  std::string out;
  encode_properties(out, ack);
  const auto ack_body = body_of(out);  // the parsed views point into it
  auto back = parse_properties(view(ack_body), property_scope::connack);
  ASSERT_TRUE(back.ok) << back.error.message;
  EXPECT_EQ(back.value.assigned_client_id, "auto-1");
  EXPECT_EQ(back.value.topic_alias_maximum, 0);
  EXPECT_EQ(back.value.server_keep_alive, 30);
  EXPECT_EQ(back.value.shared_available, 1);
  // An empty block.
  out.clear();
  encode_properties(out, properties{});
  EXPECT_EQ(out, std::string(1, '\0'));
}

TEST(MqttProperties, SubscriptionIdentifiers) {
  const bytes one = {0x0B, 0x80, 0x01};  // 128, two-byte variable integer
  auto r = parse_properties(view(one), property_scope::subscribe);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.value.subscription_id, 128u);
  // A PUBLISH from the server may carry several; a SUBSCRIBE only one.
  const bytes two = {0x0B, 0x05, 0x0B, 0x07};
  r = parse_properties(view(two), property_scope::publish);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.value.subscription_id, 5u);
  EXPECT_EQ(r.value.subscription_id_count, 2u);
  r = parse_properties(view(two), property_scope::subscribe);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error.reason, reason::protocol_error);
}

TEST(MqttProperties, Refusals) {
  struct bad_case {
    bytes raw;
    property_scope where;
    std::uint8_t reason;
  };
  const bad_case cases[] = {
      {{0x02, 0, 0, 0, 1}, property_scope::subscribe, reason::malformed_packet},      // not here
      {{0x7F, 0}, property_scope::publish, reason::malformed_packet},                 // unknown id
      {{0x02, 0, 0}, property_scope::publish, reason::malformed_packet},              // truncated
      {{0x03, 0, 2, 0xC3, 0x28}, property_scope::publish, reason::malformed_packet},  // bad UTF-8
      {{0x03, 0, 1, 0x00}, property_scope::publish, reason::malformed_packet},        // U+0000
      {{0x02, 0, 0, 0, 1, 0x02, 0, 0, 0, 2}, property_scope::publish, reason::protocol_error},
      {{0x01, 2}, property_scope::publish, reason::protocol_error},           // format 2
      {{0x21, 0, 0}, property_scope::connect, reason::protocol_error},        // receive max 0
      {{0x27, 0, 0, 0, 0}, property_scope::connect, reason::protocol_error},  // max size 0
      {{0x23, 0, 0}, property_scope::publish, reason::protocol_error},        // topic alias 0
      {{0x0B, 0x00}, property_scope::subscribe, reason::protocol_error},      // sub id 0
      {{0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x01},
       property_scope::subscribe,
       reason::malformed_packet},                                               // 5-byte varint
      {{0x26, 0, 1, 'a'}, property_scope::publish, reason::malformed_packet},   // half a pair
      {{0x12, 0, 1, 'x'}, property_scope::connect, reason::malformed_packet},   // CONNACK's
      {{0x18, 0, 0, 0, 5}, property_scope::connect, reason::malformed_packet},  // will's only
      {{0x81, 0x00, 1}, property_scope::publish, reason::malformed_packet},     // 2-byte identifier
  };
  for (const auto& c : cases) {
    auto r = parse_properties(view(c.raw), c.where);
    EXPECT_FALSE(r.ok) << static_cast<int>(c.raw[0]);
    EXPECT_EQ(r.error.reason, c.reason) << static_cast<int>(c.raw[0]) << ": " << r.error.message;
    EXPECT_FALSE(r.error.message.empty());
  }
  // The same will-delay is fine inside a will.
  const bytes delay = {0x18, 0, 0, 0, 5};
  EXPECT_TRUE(parse_properties(view(delay), property_scope::will).ok);
}

}  // namespace
}  // namespace wsagent::protocol::mqtt
