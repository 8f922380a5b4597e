#include "protocol/mqtt/properties.hpp"

#include <gtest/gtest.h>

#include <algorithm>
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
  // A Topic Alias of 0 ([MQTT-3.3.2-8]): the specification names no reason code for it; the
  // codec says Topic Alias invalid, as for an alias out of range.
  const bytes alias0 = {0x23, 0, 0};
  const auto r = parse_properties(view(alias0), property_scope::publish);
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.error.reason, reason::topic_alias_invalid);
}

// --- the whole of 5.0 table 2-4, property by property ---

constexpr property_scope all_scopes[] = {
    property_scope::connect,    property_scope::will,        property_scope::connack,
    property_scope::publish,    property_scope::ack,         property_scope::subscribe,
    property_scope::suback,     property_scope::unsubscribe, property_scope::unsuback,
    property_scope::disconnect, property_scope::auth,
};

const char* name_of(property_scope s) {
  switch (s) {
    case property_scope::connect:
      return "CONNECT";
    case property_scope::will:
      return "will";
    case property_scope::connack:
      return "CONNACK";
    case property_scope::publish:
      return "PUBLISH";
    case property_scope::ack:
      return "PUBACK/PUBREC/PUBREL/PUBCOMP";
    case property_scope::subscribe:
      return "SUBSCRIBE";
    case property_scope::suback:
      return "SUBACK";
    case property_scope::unsubscribe:
      return "UNSUBSCRIBE";
    case property_scope::unsuback:
      return "UNSUBACK";
    case property_scope::disconnect:
      return "DISCONNECT";
    case property_scope::auth:
      return "AUTH";
  }
  return "?";
}

struct table_row {
  int id;
  bytes value;  // a valid value, without the identifier
  std::vector<property_scope> where;
};

// 5.0 section 2.2.2.2, table 2-4, written out independently of properties.cpp.
std::vector<table_row> spec_table() {
  using s = property_scope;
  const std::vector<s> message = {s::publish, s::will};
  const std::vector<s> all(std::begin(all_scopes), std::end(all_scopes));
  return {
      {0x01, {1}, message},                                            // Payload Format Indicator
      {0x02, {0, 0, 0x0E, 0x10}, message},                             // Message Expiry Interval
      {0x03, {0, 1, 't'}, message},                                    // Content Type
      {0x08, {0, 1, 'r'}, message},                                    // Response Topic
      {0x09, {0, 2, 0x00, 0xFF}, message},                             // Correlation Data
      {0x0B, {0x80, 0x01}, {s::publish, s::subscribe}},                // Subscription Identifier
      {0x11, {0, 0, 0, 60}, {s::connect, s::connack, s::disconnect}},  // Session Expiry
      {0x12, {0, 2, 'i', 'd'}, {s::connack}},                          // Assigned Client Identifier
      {0x13, {0, 30}, {s::connack}},                                   // Server Keep Alive
      {0x15, {0, 1, 'm'}, {s::connect, s::connack, s::auth}},          // Authentication Method
      {0x16, {0, 1, 0xFF}, {s::connect, s::connack, s::auth}},         // Authentication Data
      {0x17, {1}, {s::connect}},                         // Request Problem Information
      {0x18, {0, 0, 0, 5}, {s::will}},                   // Will Delay Interval
      {0x19, {1}, {s::connect}},                         // Request Response Information
      {0x1A, {0, 1, 'x'}, {s::connack}},                 // Response Information
      {0x1C, {0, 1, 'h'}, {s::connack, s::disconnect}},  // Server Reference
      {0x1F,
       {0, 2, 'n', 'o'},
       {s::connack, s::ack, s::suback, s::unsuback, s::disconnect, s::auth}},  // Reason String
      {0x21, {0, 10}, {s::connect, s::connack}},                               // Receive Maximum
      {0x22, {0, 10}, {s::connect, s::connack}},       // Topic Alias Maximum
      {0x23, {0, 1}, {s::publish}},                    // Topic Alias
      {0x24, {1}, {s::connack}},                       // Maximum QoS
      {0x25, {1}, {s::connack}},                       // Retain Available
      {0x26, {0, 1, 'k', 0, 1, 'v'}, all},             // User Property
      {0x27, {0, 0, 4, 0}, {s::connect, s::connack}},  // Maximum Packet Size
      {0x28, {1}, {s::connack}},                       // Wildcard Subscription Available
      {0x29, {1}, {s::connack}},                       // Subscription Identifier Available
      {0x2A, {1}, {s::connack}},                       // Shared Subscription Available
  };
}

bool allowed(const table_row& row, property_scope s) {
  return std::find(row.where.begin(), row.where.end(), s) != row.where.end();
}

// One property: its identifier, then its value. Authentication Data comes after a method,
// without which it may not appear (3.1.2.11.10).
bytes block_of(const table_row& row, int times = 1) {
  bytes b;
  if (row.id == 0x16) b = {0x15, 0, 1, 'm'};
  for (int i = 0; i < times; ++i) {
    b.push_back(static_cast<std::uint8_t>(row.id));
    b.insert(b.end(), row.value.begin(), row.value.end());
  }
  return b;
}

TEST(MqttProperties, EveryIdentifierInEveryPacketMatchesTable2_4) {
  const auto table = spec_table();
  for (int id = 0; id < 0x80; ++id) {
    const auto row =
        std::find_if(table.begin(), table.end(), [&](const table_row& t) { return t.id == id; });
    for (auto scope : all_scopes) {
      bytes raw;
      bool ok = false;
      if (row == table.end()) {
        raw = {static_cast<std::uint8_t>(id), 0, 0, 0, 0};  // not a property at all
      } else {
        raw = block_of(*row);
        ok = allowed(*row, scope);
      }
      const auto r = parse_properties(view(raw), scope);
      EXPECT_EQ(r.ok, ok) << "property 0x" << std::hex << id << " in " << name_of(scope);
      if (!ok) {
        // Not defined, or not for this packet: Malformed Packet (2.2.2.2).
        EXPECT_EQ(r.error.reason, reason::malformed_packet)
            << "property 0x" << std::hex << id << " in " << name_of(scope);
      }
    }
  }
  // An identifier in more than one byte (0x80 0x01 would be 128): none is defined.
  for (auto scope : all_scopes) {
    const bytes two_bytes = {0x80, 0x01, 0};
    EXPECT_EQ(parse_properties(view(two_bytes), scope).error.reason, reason::malformed_packet);
  }
}

TEST(MqttProperties, EveryPropertyGivenTwice) {
  // "It is a Protocol Error to include ... more than once", for each but User Property
  // (any number, everywhere) and Subscription Identifier (several in a PUBLISH to a client,
  // 3.3.2.3.8; one in a SUBSCRIBE, 3.8.2.1.2).
  for (const auto& row : spec_table()) {
    for (auto scope : row.where) {
      const auto raw = block_of(row, 2);
      const auto r = parse_properties(view(raw), scope);
      const bool repeatable =
          row.id == 0x26 || (row.id == 0x0B && scope == property_scope::publish);
      EXPECT_EQ(r.ok, repeatable) << "property 0x" << std::hex << row.id << " in "
                                  << name_of(scope);
      if (!repeatable) {
        EXPECT_EQ(r.error.reason, reason::protocol_error)
            << "property 0x" << std::hex << row.id << " in " << name_of(scope);
      }
    }
  }
  // Repeated user properties keep every pair, in order; repeated identifiers count.
  const bytes users = {0x26, 0, 1, 'a', 0,    1, '1', 0x26, 0, 1,
                       'a',  0, 1, '2', 0x26, 0, 1,   'b',  0, 0};
  auto r = parse_properties(view(users), property_scope::disconnect);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.value.user_property_count, 3u);
  std::string seen;
  for_each_user_property(r.value, [&](std::string_view n, std::string_view v) {
    seen += std::string(n) + "=" + std::string(v) + ";";
  });
  EXPECT_EQ(seen, "a=1;a=2;b=;");
}

TEST(MqttProperties, ValueRanges) {
  // Bytes that must be 0 or 1: Protocol Error otherwise.
  for (int id : {0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A}) {
    const auto scope = id == 0x01   ? property_scope::publish
                       : id == 0x17 ? property_scope::connect
                       : id == 0x19 ? property_scope::connect
                                    : property_scope::connack;
    for (int value = 0; value < 256; ++value) {
      const bytes raw = {static_cast<std::uint8_t>(id), static_cast<std::uint8_t>(value)};
      const auto r = parse_properties(view(raw), scope);
      EXPECT_EQ(r.ok, value <= 1) << std::hex << id << " = " << value;
      if (value > 1) {
        EXPECT_EQ(r.error.reason, reason::protocol_error) << std::hex << id << " = " << value;
      }
    }
  }
  struct range_case {
    bytes raw;
    property_scope where;
    bool ok;
  };
  const range_case cases[] = {
      {{0x21, 0, 0}, property_scope::connect, false},        // Receive Maximum 0
      {{0x21, 0, 0}, property_scope::connack, false},        // ... from the server too
      {{0x21, 0, 1}, property_scope::connect, true},         //
      {{0x21, 0xFF, 0xFF}, property_scope::connect, true},   //
      {{0x27, 0, 0, 0, 0}, property_scope::connack, false},  // Maximum Packet Size 0
      {{0x27, 0, 0, 0, 1}, property_scope::connect, true},   //
      {{0x22, 0, 0}, property_scope::connect, true},         // Topic Alias Maximum 0: none
      {{0x13, 0, 0}, property_scope::connack, true},         // Server Keep Alive 0: off
      {{0x11, 0, 0, 0, 0}, property_scope::connect, true},   // Session Expiry 0
      {{0x11, 0xFF, 0xFF, 0xFF, 0xFF}, property_scope::connect, true},  // never expires
      {{0x18, 0, 0, 0, 0}, property_scope::will, true},                 // Will Delay 0
      {{0x02, 0, 0, 0, 0}, property_scope::publish, true},              // Message Expiry 0
      {{0x0B, 0x01}, property_scope::subscribe, true},                  // Subscription Identifier 1
      {{0x0B, 0xFF, 0xFF, 0xFF, 0x7F}, property_scope::subscribe, true},  // 268,435,455
      {{0x0B, 0x00}, property_scope::publish, false},                     // 0 ([MQTT-3.8.2.1.2])
      {{0x0B, 0x80, 0x80, 0x80, 0x80, 0x01}, property_scope::publish, false},  // five bytes
      {{0x0B, 0x81, 0x00}, property_scope::subscribe, false},  // 1 in two bytes ([MQTT-1.5.5-1])
      {{0x23, 0xFF, 0xFF}, property_scope::publish, true},     // Topic Alias 65,535
  };
  for (const auto& c : cases) {
    const auto r = parse_properties(view(c.raw), c.where);
    EXPECT_EQ(r.ok, c.ok) << std::hex << static_cast<int>(c.raw[0]) << " " << r.error.message;
  }
  const bytes id128 = {0x0B, 0x80, 0x01};
  EXPECT_EQ(parse_properties(view(id128), property_scope::subscribe).value.subscription_id, 128u);
  const bytes id_max = {0x0B, 0xFF, 0xFF, 0xFF, 0x7F};
  EXPECT_EQ(parse_properties(view(id_max), property_scope::subscribe).value.subscription_id,
            268'435'455u);
}

TEST(MqttProperties, EveryValueCutShort) {
  // A block that ends inside a value (or right after an identifier): Malformed Packet.
  for (const auto& row : spec_table()) {
    const auto raw = block_of(row);
    const std::size_t start = row.id == 0x16 ? 4 : 0;  // after the method that must precede
    for (std::size_t k = start + 1; k < raw.size(); ++k) {
      const bytes cut(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(k));
      const auto r = parse_properties(view(cut), row.where.front());
      EXPECT_FALSE(r.ok) << std::hex << row.id << " cut at " << k;
      EXPECT_EQ(r.error.reason, reason::malformed_packet) << std::hex << row.id << " cut at " << k;
    }
  }
  EXPECT_TRUE(parse_properties({}, property_scope::connect).ok);  // an empty block
}

TEST(MqttProperties, StringsMustBeUtf8AndBinaryMayBeAnything) {
  // UTF-8 string properties and both halves of a user property (1.5.4, 1.5.7).
  const bytes bad[] = {{0x00},
                       {0xC0, 0x80},
                       {0xED, 0xA0, 0x80},
                       {0xED, 0xBF, 0xBF},
                       {0xF4, 0x90, 0x80, 0x80},
                       {0x80},
                       {'a', 0xE2, 0x82},
                       {0xFF}};
  auto with_string = [](int id, const bytes& s) {
    bytes b = {static_cast<std::uint8_t>(id), 0, static_cast<std::uint8_t>(s.size())};
    b.insert(b.end(), s.begin(), s.end());
    return b;
  };
  for (const auto& row : spec_table()) {
    const bool is_string = row.id == 0x03 || row.id == 0x08 || row.id == 0x12 || row.id == 0x15 ||
                           row.id == 0x1A || row.id == 0x1C || row.id == 0x1F;
    const bool is_binary = row.id == 0x09 || row.id == 0x16;
    if (!is_string && !is_binary) continue;
    for (const auto& s : bad) {
      bytes raw = row.id == 0x16 ? bytes{0x15, 0, 1, 'm'} : bytes{};
      const auto one = with_string(row.id, s);
      raw.insert(raw.end(), one.begin(), one.end());
      const auto r = parse_properties(view(raw), row.where.front());
      EXPECT_EQ(r.ok, is_binary) << std::hex << row.id;
      if (is_string) {
        EXPECT_EQ(r.error.reason, reason::malformed_packet) << std::hex << row.id;
      }
    }
  }
  for (const auto& s : bad) {
    bytes name = {0x26};
    const auto n = with_string(0, s), v = with_string(0, {'v'});
    name.insert(name.end(), n.begin() + 1, n.end());
    name.insert(name.end(), v.begin() + 1, v.end());
    EXPECT_EQ(parse_properties(view(name), property_scope::publish).error.reason,
              reason::malformed_packet);
    bytes value = {0x26};
    const auto k = with_string(0, {'k'});
    value.insert(value.end(), k.begin() + 1, k.end());
    value.insert(value.end(), n.begin() + 1, n.end());
    EXPECT_EQ(parse_properties(view(value), property_scope::publish).error.reason,
              reason::malformed_packet);
  }
}

TEST(MqttProperties, AuthenticationDataNeedsAMethod) {
  // 3.1.2.11.10 / 3.2.2.3.18 / 3.15.2.2.3: "It is a Protocol Error to include Authentication
  // Data if there is no Authentication Method."
  for (auto scope : {property_scope::connect, property_scope::connack, property_scope::auth}) {
    const bytes data_only = {0x16, 0, 2, 1, 2};
    auto r = parse_properties(view(data_only), scope);
    EXPECT_FALSE(r.ok) << name_of(scope);
    EXPECT_EQ(r.error.reason, reason::protocol_error) << name_of(scope);
    // In either order with a method, fine.
    const bytes data_then_method = {0x16, 0, 2, 1, 2, 0x15, 0, 1, 'm'};
    r = parse_properties(view(data_then_method), scope);
    ASSERT_TRUE(r.ok) << name_of(scope) << ": " << r.error.message;
    EXPECT_EQ(r.value.auth_method, "m");
    EXPECT_EQ(r.value.auth_data->size(), 2u);
    const bytes method_only = {0x15, 0, 1, 'm'};
    EXPECT_TRUE(parse_properties(view(method_only), scope).ok);
  }
}

TEST(MqttProperties, EncodeEveryFieldAndReadItBack) {
  // Every field the encoder writes, in the scopes that take them; user properties are read
  // back across values of every kind (for_each_user_property skips them by size).
  const std::uint8_t corr[] = {9, 8, 7};
  properties msg;
  msg.payload_format = 0;
  msg.message_expiry = 1;
  msg.content_type = "c";
  msg.response_topic = "r/t";
  msg.correlation_data = std::span<const std::uint8_t>(corr);
  msg.subscription_id = 16'384;  // three bytes
  msg.topic_alias = 2;
  const std::pair<std::string_view, std::string_view> user[] = {{"x", "1"}, {"", ""}};
  std::string out;
  encode_properties(out, msg, user);
  auto body = body_of(out);
  auto r = parse_properties(view(body), property_scope::publish);
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_EQ(r.value.payload_format, 0);
  EXPECT_EQ(r.value.message_expiry, 1u);
  EXPECT_EQ(r.value.content_type, "c");
  EXPECT_EQ(r.value.response_topic, "r/t");
  EXPECT_EQ(r.value.correlation_data->size(), 3u);
  EXPECT_EQ(r.value.subscription_id, 16'384u);
  EXPECT_EQ(r.value.topic_alias, 2);
  std::vector<std::string> seen;
  for_each_user_property(r.value, [&](std::string_view n, std::string_view v) {
    seen.push_back(std::string(n) + "=" + std::string(v));
  });
  EXPECT_EQ(seen, (std::vector<std::string>{"x=1", "="}));

  properties conn;
  conn.session_expiry = 7;
  conn.auth_method = "SCRAM";
  conn.auth_data = std::span<const std::uint8_t>(corr);
  conn.request_problem_info = 0;
  conn.request_response_info = 1;
  conn.receive_maximum = 5;
  conn.topic_alias_maximum = 6;
  conn.maximum_packet_size = 1000;
  out.clear();
  encode_properties(out, conn, user);
  body = body_of(out);
  r = parse_properties(view(body), property_scope::connect);
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_EQ(r.value.session_expiry, 7u);
  EXPECT_EQ(r.value.auth_method, "SCRAM");
  EXPECT_EQ(r.value.auth_data->size(), 3u);
  EXPECT_EQ(r.value.request_problem_info, 0);
  EXPECT_EQ(r.value.request_response_info, 1);
  EXPECT_EQ(r.value.receive_maximum, 5);
  EXPECT_EQ(r.value.topic_alias_maximum, 6);
  EXPECT_EQ(r.value.maximum_packet_size, 1000u);
  EXPECT_EQ(r.value.user_property_count, 2u);

  properties will;
  will.will_delay = 9;
  will.payload_format = 1;
  out.clear();
  encode_properties(out, will);
  body = body_of(out);
  r = parse_properties(view(body), property_scope::will);
  ASSERT_TRUE(r.ok) << r.error.message;
  EXPECT_EQ(r.value.will_delay, 9u);

  // A block longer than 127 bytes: a two-byte length.
  properties big;
  const std::string reason_text(200, 'r');
  big.reason_string = reason_text;
  out.clear();
  encode_properties(out, big);
  ASSERT_EQ(out.size(), 2u + 1 + 2 + 200);
  EXPECT_EQ(static_cast<std::uint8_t>(out[0]), 0x80 | (203 % 128));
  EXPECT_EQ(static_cast<std::uint8_t>(out[1]), 203 / 128);
  body = body_of(out);
  r = parse_properties(view(body), property_scope::disconnect);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.value.reason_string, reason_text);
}

}  // namespace
}  // namespace wsagent::protocol::mqtt
