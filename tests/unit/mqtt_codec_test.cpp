// The MQTT codec against the specification: byte vectors from the 3.1.1 and 5.0 texts,
// round trips of every packet in both versions, framing fed one byte at a time, and every
// malformed case the codec claims to catch.

#include <gtest/gtest.h>

#include <vector>

#include "protocol/mqtt/codec.hpp"

namespace mqtt = wsagent::protocol::mqtt;
using mqtt::packet_type;
using mqtt::version;
using status = mqtt::split_result::status;

namespace {

std::vector<std::uint8_t> bytes(std::initializer_list<int> list) {
  std::vector<std::uint8_t> v;
  for (int b : list)
    v.push_back(static_cast<std::uint8_t>(b));
  return v;
}

std::span<const std::uint8_t> span_of(const std::string& s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string text(std::span<const std::uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

std::string text(const std::vector<std::uint8_t>& b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// Splits one whole packet out of `wire`, checking that it is exactly the whole input.
mqtt::split_result one(const std::string& wire) {
  auto r = mqtt::split(span_of(wire), 1 << 20);
  EXPECT_EQ(r.st, status::packet) << r.error;
  EXPECT_EQ(r.size, wire.size());
  return r;
}

constexpr version versions[] = {version::v311, version::v5};

}  // namespace

// --- framing ---

TEST(MqttSplit, RemainingLengthBoundaries) {
  // 3.1.1 table 2.4 / 5.0 table 1.1: the encodings at the edges of 1, 2, 3 and 4 bytes.
  const std::pair<std::size_t, std::vector<std::uint8_t>> cases[] = {
      {0, bytes({0x00})},
      {127, bytes({0x7F})},
      {128, bytes({0x80, 0x01})},
      {16'383, bytes({0xFF, 0x7F})},
      {16'384, bytes({0x80, 0x80, 0x01})},
      {2'097'151, bytes({0xFF, 0xFF, 0x7F})},
      {2'097'152, bytes({0x80, 0x80, 0x80, 0x01})},
      {268'435'455, bytes({0xFF, 0xFF, 0xFF, 0x7F})},
  };
  for (const auto& [length, encoded] : cases) {
    std::vector<std::uint8_t> wire{0x30};
    wire.insert(wire.end(), encoded.begin(), encoded.end());
    const std::size_t header = wire.size();
    // Only the header: the split knows the length and asks for more (or refuses the size).
    auto r = mqtt::split(wire, mqtt::max_remaining_length + 5);
    EXPECT_EQ(r.st, length == 0 ? status::packet : status::need_more) << length;
    if (length <= 16'384) {
      wire.resize(header + length, 'x');
      r = mqtt::split(wire, 1 << 20);
      ASSERT_EQ(r.st, status::packet) << length;
      EXPECT_EQ(r.body.size(), length);
      EXPECT_EQ(r.size, header + length);
    }
    // The encoder writes the same bytes.
    std::string out;
    mqtt::publish p;
    p.topic = "t";
    const std::size_t payload = length >= 3 ? length - 3 : 0;
    if (length >= 3) {
      mqtt::encode_publish_header(out, version::v311, p, payload);
      EXPECT_EQ(text(encoded), out.substr(1, encoded.size())) << length;
      EXPECT_EQ(mqtt::publish_header_size(version::v311, "t", payload, 0), out.size());
    }
  }
}

TEST(MqttSplit, FiveByteLengthIsAnError) {
  const auto wire = bytes({0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01});
  const auto r = mqtt::split(wire, 1 << 30);
  EXPECT_EQ(r.st, status::error);
  EXPECT_EQ(r.reason, mqtt::reason::malformed_packet);
}

TEST(MqttSplit, OneByteAtATime) {
  std::string wire;
  const std::uint8_t payload[] = {1, 2, 3, 4, 5};
  mqtt::publish p;
  p.topic = "a/b";
  p.payload = payload;
  p.qos = 1;
  p.packet_id = 7;
  mqtt::encode_publish(wire, version::v311, p);
  mqtt::encode_pingreq(wire);
  std::vector<std::uint8_t> buffer;
  std::vector<packet_type> seen;
  for (char ch : wire) {
    buffer.push_back(static_cast<std::uint8_t>(ch));
    auto r = mqtt::split(buffer, 1024);
    ASSERT_NE(r.st, status::error);
    if (r.st == status::packet) {
      seen.push_back(r.type);
      buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(r.size));
    }
  }
  EXPECT_TRUE(buffer.empty());
  EXPECT_EQ(seen, (std::vector{packet_type::publish, packet_type::pingreq}));
}

TEST(MqttSplit, TooLargeIsRefusedAsSoonAsTheLengthIsKnown) {
  const auto wire = bytes({0x30, 0x80, 0x08});  // 1024 bytes announced, none sent
  const auto r = mqtt::split(wire, 512);
  EXPECT_EQ(r.st, status::error);
  EXPECT_EQ(r.reason, mqtt::reason::packet_too_large);
}

TEST(MqttSplit, FixedHeaderFlags) {
  EXPECT_EQ(mqtt::split(bytes({0x00, 0x00}), 64).st, status::error);        // reserved type 0
  EXPECT_EQ(mqtt::split(bytes({0x36, 0x00}), 64).st, status::error);        // PUBLISH QoS 3
  EXPECT_EQ(mqtt::split(bytes({0x80, 0x00}), 64).st, status::error);        // SUBSCRIBE flags 0
  EXPECT_EQ(mqtt::split(bytes({0x60, 0x02, 0, 1}), 64).st, status::error);  // PUBREL flags 0
  EXPECT_EQ(mqtt::split(bytes({0xC1, 0x00}), 64).st, status::error);        // PINGREQ flags 1
  EXPECT_EQ(mqtt::split(bytes({0xC0, 0x00}), 64).st, status::packet);
  EXPECT_EQ(mqtt::split(bytes({0x62, 0x02, 0, 1}), 64).st, status::packet);
  EXPECT_EQ(mqtt::split({}, 64).st, status::need_more);
}

// --- CONNECT ---

TEST(MqttConnect, SpecificationExample) {
  // 3.1.1 figure 3.6 + 3.7: protocol name, level 4, flags (user, password, clean session),
  // keep alive 10, then the client id.
  std::string wire;
  mqtt::connect_options o;
  o.client_id = "c";
  o.keep_alive = 10;
  o.username = std::string_view("u");
  o.password = std::string_view("p");
  mqtt::encode_connect(wire, o);
  const auto expected =
      bytes({0x10, 19, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 10, 0, 1, 'c', 0, 1, 'u', 0, 1, 'p'});
  EXPECT_EQ(wire, text(expected));
  const auto r = one(wire);
  const auto c = mqtt::parse_connect(r.flags, r.body);
  ASSERT_TRUE(c.ok) << c.error.message;
  EXPECT_EQ(c.value.ver, version::v311);
  EXPECT_EQ(c.value.client_id, "c");
  EXPECT_EQ(c.value.keep_alive, 10);
  EXPECT_TRUE(c.value.clean_start);
  EXPECT_EQ(c.value.username, "u");
  ASSERT_TRUE(c.value.password);
  EXPECT_EQ(text(*c.value.password), "p");
}

TEST(MqttConnect, RoundTripWithWillInBothVersions) {
  const std::uint8_t will_payload[] = {'b', 'y', 'e'};
  for (auto v : versions) {
    std::string wire;
    mqtt::connect_options o;
    o.ver = v;
    o.client_id = "sensor-001";
    o.clean_start = false;
    o.keep_alive = 60;
    o.will = mqtt::will_message{"devices/sensor-001/status", will_payload, 1, true, {}};
    mqtt::encode_connect(wire, o);
    const auto r = one(wire);
    const auto c = mqtt::parse_connect(r.flags, r.body);
    ASSERT_TRUE(c.ok) << c.error.message;
    EXPECT_EQ(c.value.ver, v);
    EXPECT_FALSE(c.value.clean_start);
    ASSERT_TRUE(c.value.will);
    EXPECT_EQ(c.value.will->topic, "devices/sensor-001/status");
    EXPECT_EQ(text(c.value.will->payload), "bye");
    EXPECT_EQ(c.value.will->qos, 1);
    EXPECT_TRUE(c.value.will->retain);
    EXPECT_FALSE(c.value.username);
    EXPECT_TRUE(c.value.properties.empty());
  }
}

TEST(MqttConnect, Refusals) {
  auto parse = [](std::vector<std::uint8_t> body) { return mqtt::parse_connect(0, body); };
  // MQTT 3.1's name: unsupported version, so that the agent answers CONNACK 0x01.
  auto r = parse(bytes({0, 6, 'M', 'Q', 'I', 's', 'd', 'p', 3, 2, 0, 10, 0, 0}));
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error.reason, mqtt::reason::unsupported_protocol_version);
  r = parse(bytes({0, 4, 'M', 'Q', 'T', 'T', 6, 2, 0, 10, 0, 0}));
  EXPECT_EQ(r.error.reason, mqtt::reason::unsupported_protocol_version);
  r = parse(bytes({0, 4, 'M', 'Q', 'T', 'X', 4, 2, 0, 10, 0, 0}));
  EXPECT_EQ(r.error.reason, mqtt::reason::malformed_packet);
  r = parse(bytes({0, 4, 'M', 'Q', 'T', 'T', 4, 3, 0, 10, 0, 0}));  // reserved flag
  EXPECT_FALSE(r.ok);
  r = parse(bytes({0, 4, 'M', 'Q', 'T', 'T', 4, 0x0A, 0, 10, 0, 0}));  // will QoS, no will
  EXPECT_FALSE(r.ok);
  r = parse(bytes({0, 4, 'M', 'Q', 'T', 'T', 4, 0x42, 0, 10, 0, 0, 0, 0}));  // password, no user
  EXPECT_FALSE(r.ok);
  r = parse(bytes({0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 10, 0, 3, 'a'}));  // truncated client id
  EXPECT_FALSE(r.ok);
  r = parse(bytes({0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 10, 0, 1, 'a', 9}));  // trailing byte
  EXPECT_FALSE(r.ok);
  r = parse(bytes({0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 10, 0, 2, 0xC3, 0x28}));  // bad UTF-8
  EXPECT_FALSE(r.ok);
  r = parse(bytes({0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 10, 0, 1, 0}));  // U+0000
  EXPECT_FALSE(r.ok);
  r = parse(bytes({0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 10, 0, 0}));  // empty id: valid here
  EXPECT_TRUE(r.ok);
}

// --- CONNACK ---

TEST(MqttConnack, RoundTrip) {
  for (auto v : versions) {
    std::string wire;
    mqtt::encode_connack(
        wire, v, true,
        v == version::v5 ? mqtt::reason::not_authorized : mqtt::connack_v311::not_authorized);
    const auto r = one(wire);
    EXPECT_EQ(r.type, packet_type::connack);
    const auto c = mqtt::parse_connack(r.flags, r.body, v);
    ASSERT_TRUE(c.ok) << c.error.message;
    EXPECT_TRUE(c.value.session_present);
    EXPECT_EQ(c.value.code, v == version::v5 ? 0x87 : 0x05);
  }
  EXPECT_EQ(std::string("\x20\x02\x00\x00", 4), [] {
    std::string w;
    mqtt::encode_connack(w, version::v311, false, 0);
    return w;
  }());
  EXPECT_FALSE(mqtt::parse_connack(0, bytes({2, 0}), version::v311).ok);  // reserved ack flag
  EXPECT_FALSE(mqtt::parse_connack(0, bytes({0}), version::v311).ok);
  EXPECT_FALSE(mqtt::parse_connack(0, bytes({0, 0, 0}), version::v311).ok);
}

// --- PUBLISH ---

TEST(MqttPublish, SpecificationExample) {
  // 3.1.1 figure 3.11: topic "a/b", packet id 10, QoS 1.
  std::string wire;
  mqtt::publish p;
  p.topic = "a/b";
  p.qos = 1;
  p.packet_id = 10;
  mqtt::encode_publish(wire, version::v311, p);
  EXPECT_EQ(wire, text((bytes({0x32, 7, 0, 3, 'a', '/', 'b', 0, 10}))));
}

TEST(MqttPublish, RoundTripInBothVersions) {
  const std::string payload(300, 'z');
  for (auto v : versions)
    for (std::uint8_t qos : {0, 1, 2}) {
      std::string wire;
      mqtt::publish p;
      p.topic = "plant1/line3/temp";
      p.payload = span_of(payload);
      p.qos = qos;
      p.retain = true;
      p.dup = qos > 0;
      p.packet_id = qos ? 513 : 0;
      mqtt::encode_publish(wire, v, p);
      EXPECT_EQ(mqtt::publish_header_size(v, p.topic, payload.size(), qos) + payload.size(),
                wire.size());
      const auto r = one(wire);
      const auto got = mqtt::parse_publish(r.flags, r.body, v);
      ASSERT_TRUE(got.ok) << got.error.message;
      EXPECT_EQ(got.value.topic, p.topic);
      EXPECT_EQ(text(got.value.payload), payload);
      EXPECT_EQ(got.value.qos, qos);
      EXPECT_TRUE(got.value.retain);
      EXPECT_EQ(got.value.dup, qos > 0);
      EXPECT_EQ(got.value.packet_id, p.packet_id);
    }
}

TEST(MqttPublish, Refusals) {
  const auto v = version::v311;
  // Wildcards in a topic name (3.3.2-2), for any sender.
  auto r = mqtt::parse_publish(0, bytes({0, 3, 'a', '/', '#'}), v);
  EXPECT_EQ(r.error.reason, mqtt::reason::topic_name_invalid);
  r = mqtt::parse_publish(0, bytes({0, 3, 'a', '/', '+'}), v);
  EXPECT_FALSE(r.ok);
  r = mqtt::parse_publish(0, bytes({0, 0}), v);  // empty topic (3.1.1)
  EXPECT_FALSE(r.ok);
  r = mqtt::parse_publish(0x02, bytes({0, 1, 'a', 0, 0}), v);  // QoS 1, packet id 0
  EXPECT_FALSE(r.ok);
  r = mqtt::parse_publish(0x08, bytes({0, 1, 'a'}), v);  // DUP on QoS 0
  EXPECT_FALSE(r.ok);
  r = mqtt::parse_publish(0x06, bytes({0, 1, 'a', 0, 1}), v);  // QoS 3
  EXPECT_FALSE(r.ok);
  r = mqtt::parse_publish(0, bytes({0, 5, 'a'}), v);  // truncated topic
  EXPECT_FALSE(r.ok);
  r = mqtt::parse_publish(0, bytes({0, 1, 0xFF}), v);  // not UTF-8
  EXPECT_FALSE(r.ok);
  // 5.0: empty topic allowed at this layer (topic alias), properties exposed.
  const auto aliased = bytes({0, 0, 3, 0x23, 0, 1, 'x'});  // parsed views point into it
  auto r5 = mqtt::parse_publish(0, aliased, version::v5);
  ASSERT_TRUE(r5.ok) << r5.error.message;
  EXPECT_EQ(r5.value.properties.size(), 3u);
  EXPECT_EQ(text(r5.value.payload), "x");
  r5 = mqtt::parse_publish(0, bytes({0, 1, 'a', 9, 1}), version::v5);  // properties overrun
  EXPECT_FALSE(r5.ok);
}

// --- acknowledgements ---

TEST(MqttAck, RoundTripEveryKind) {
  for (auto v : versions)
    for (auto t :
         {packet_type::puback, packet_type::pubrec, packet_type::pubrel, packet_type::pubcomp}) {
      std::string wire;
      const std::uint8_t reason_code = v == version::v5 ? mqtt::reason::no_matching_subscribers : 0;
      mqtt::encode_ack(wire, v, t, 0xBEEF, reason_code);
      const auto r = one(wire);
      EXPECT_EQ(r.type, t);
      const auto a = mqtt::parse_ack(t, r.flags, r.body, v);
      ASSERT_TRUE(a.ok) << a.error.message;
      EXPECT_EQ(a.value.packet_id, 0xBEEF);
      EXPECT_EQ(a.value.reason, reason_code);
    }
  EXPECT_FALSE(mqtt::parse_ack(packet_type::puback, 0, bytes({0, 0}), version::v311).ok);
  EXPECT_FALSE(mqtt::parse_ack(packet_type::puback, 0, bytes({0, 1, 0}), version::v311).ok);
  EXPECT_FALSE(mqtt::parse_ack(packet_type::puback, 0, bytes({0}), version::v311).ok);
  EXPECT_TRUE(mqtt::parse_ack(packet_type::puback, 0, bytes({0, 1, 0x10, 0}), version::v5).ok);
}

// --- SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK ---

TEST(MqttSubscribe, SpecificationExample) {
  // 3.1.1 figure 3.21 (two of its filters): "a/b" QoS 1, "c/d" QoS 2, packet id 10.
  std::string wire;
  const mqtt::subscription subs[] = {{"a/b", 1}, {"c/d", 2}};
  mqtt::encode_subscribe(wire, version::v311, 10, subs);
  EXPECT_EQ(wire, text((bytes({0x82, 14, 0, 10, 0, 3, 'a', '/', 'b', 1, 0, 3, 'c', '/', 'd', 2}))));
}

TEST(MqttSubscribe, RoundTripInBothVersions) {
  for (auto v : versions) {
    std::string wire;
    mqtt::subscription subs[] = {{"a/+/c", 1}, {"d/#", 2}, {"$sys/x", 0}};
    subs[0].no_local = true;
    subs[1].retain_handling = 2;
    mqtt::encode_subscribe(wire, v, 77, subs);
    const auto r = one(wire);
    const auto s = mqtt::parse_subscribe(r.flags, r.body, v);
    ASSERT_TRUE(s.ok) << s.error.message;
    EXPECT_EQ(s.value.packet_id, 77);
    EXPECT_EQ(s.value.count, 3u);
    std::vector<mqtt::subscription> got;
    mqtt::for_each_subscription(s.value, v, [&](const mqtt::subscription& x) { got.push_back(x); });
    ASSERT_EQ(got.size(), 3u);
    EXPECT_EQ(got[0].filter, "a/+/c");
    EXPECT_EQ(got[1].qos, 2);
    EXPECT_EQ(got[2].filter, "$sys/x");
    EXPECT_EQ(got[0].no_local, v == version::v5);
    EXPECT_EQ(got[1].retain_handling, v == version::v5 ? 2 : 0);
  }
}

TEST(MqttSubscribe, Refusals) {
  const auto v = version::v311;
  EXPECT_EQ(mqtt::parse_subscribe(2, bytes({0, 1}), v).error.reason, mqtt::reason::protocol_error);
  EXPECT_FALSE(mqtt::parse_subscribe(2, bytes({0, 0, 0, 1, 'a', 0}), v).ok);  // id 0
  EXPECT_FALSE(mqtt::parse_subscribe(2, bytes({0, 1, 0, 1, 'a', 3}), v).ok);  // QoS 3
  EXPECT_FALSE(mqtt::parse_subscribe(2, bytes({0, 1, 0, 1, 'a', 4}), v).ok);  // reserved bits
  EXPECT_FALSE(mqtt::parse_subscribe(2, bytes({0, 1, 0, 1, 'a'}), v).ok);     // no options
  EXPECT_FALSE(mqtt::parse_subscribe(2, bytes({0, 1, 0, 0, 0}), v).ok);       // empty filter
  EXPECT_FALSE(mqtt::parse_subscribe(2, bytes({0, 1, 0, 4, 'a'}), v).ok);     // truncated
  // 5.0 puts a property length before the entries: a 3.1.1 body does not parse as 5.0.
  EXPECT_FALSE(mqtt::parse_subscribe(2, bytes({0, 1, 0, 1, 'a', 0x04}), version::v5).ok);
  EXPECT_TRUE(mqtt::parse_subscribe(2, bytes({0, 1, 0, 0, 1, 'a', 0x04}), version::v5).ok);
  EXPECT_FALSE(mqtt::parse_subscribe(2, bytes({0, 1, 0, 0, 1, 'a', 0x30}), version::v5).ok);
}

TEST(MqttSuback, RoundTripAndCodes) {
  const std::uint8_t codes[] = {0, 1, 2, mqtt::suback_failure};
  for (auto v : versions) {
    std::string wire;
    mqtt::encode_suback(wire, v, 9, codes);
    const auto r = one(wire);
    const auto s = mqtt::parse_suback(r.flags, r.body, v);
    ASSERT_TRUE(s.ok) << s.error.message;
    EXPECT_EQ(s.value.packet_id, 9);
    EXPECT_EQ(std::vector(s.value.codes.begin(), s.value.codes.end()),
              std::vector(std::begin(codes), std::end(codes)));
  }
  EXPECT_FALSE(mqtt::parse_suback(0, bytes({0, 9, 3}), version::v311).ok);  // code 3
  EXPECT_FALSE(mqtt::parse_suback(0, bytes({0, 9}), version::v311).ok);     // no code
}

TEST(MqttUnsubscribe, RoundTripInBothVersions) {
  for (auto v : versions) {
    std::string wire;
    const std::string_view filters[] = {"a/b", "c/#"};
    mqtt::encode_unsubscribe(wire, v, 5, filters);
    auto r = one(wire);
    EXPECT_EQ(r.flags, 0x02);
    const auto u = mqtt::parse_unsubscribe(r.flags, r.body, v);
    ASSERT_TRUE(u.ok) << u.error.message;
    std::vector<std::string_view> got;
    mqtt::for_each_filter(u.value, [&](std::string_view f) { got.push_back(f); });
    EXPECT_EQ(got, (std::vector<std::string_view>{"a/b", "c/#"}));

    wire.clear();
    const std::uint8_t codes[] = {0, mqtt::reason::no_subscription_existed};
    mqtt::encode_unsuback(wire, v, 5, codes);
    r = one(wire);
    const auto a = mqtt::parse_unsuback(r.flags, r.body, v);
    ASSERT_TRUE(a.ok) << a.error.message;
    EXPECT_EQ(a.value.packet_id, 5);
    EXPECT_EQ(a.value.codes.size(), v == version::v5 ? 2u : 0u);
  }
  EXPECT_FALSE(mqtt::parse_unsubscribe(2, bytes({0, 5}), version::v311).ok);
  EXPECT_FALSE(mqtt::parse_unsuback(0, bytes({0, 5, 0}), version::v311).ok);
}

// --- PINGREQ, PINGRESP, DISCONNECT ---

TEST(MqttControl, PingAndDisconnect) {
  std::string wire;
  mqtt::encode_pingreq(wire);
  EXPECT_EQ(wire, std::string("\xC0\x00", 2));
  wire.clear();
  mqtt::encode_pingresp(wire);
  EXPECT_EQ(wire, std::string("\xD0\x00", 2));
  EXPECT_TRUE(mqtt::parse_empty(0, {}).ok);
  EXPECT_FALSE(mqtt::parse_empty(0, bytes({0})).ok);

  wire.clear();
  mqtt::encode_disconnect(wire, version::v311);
  EXPECT_EQ(wire, std::string("\xE0\x00", 2));
  wire.clear();
  mqtt::encode_disconnect(wire, version::v5, mqtt::reason::session_taken_over);
  auto r = one(wire);
  auto d = mqtt::parse_disconnect(r.flags, r.body, version::v5);
  ASSERT_TRUE(d.ok);
  EXPECT_EQ(d.value.reason, mqtt::reason::session_taken_over);
  EXPECT_FALSE(mqtt::parse_disconnect(0, bytes({0}), version::v311).ok);
  EXPECT_TRUE(mqtt::parse_disconnect(0, bytes({0x04, 0}), version::v5).ok);
}
