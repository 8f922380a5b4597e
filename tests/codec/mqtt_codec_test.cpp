// The MQTT codec against the specification: byte vectors from the 3.1.1 and 5.0 texts,
// round trips of every packet in both versions (5.0 property blocks and the forms the codec
// has no encoder for are laid out by hand), framing fed one byte at a time, and every
// malformed case the codec claims to catch: fixed-header flags, remaining lengths, bodies
// cut short or running long, packet ids of 0, strings that are not UTF-8.

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "protocol/mqtt/codec.hpp"
#include "protocol/mqtt/properties.hpp"

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

using byte_vec = std::vector<std::uint8_t>;

// Lays out a packet's fields by hand, as the specification draws them: for the packets and
// forms the codec has no encoder for (5.0 property blocks, a client's view, broken input).
class builder {
 public:
  builder& u8(int v) {
    b_.push_back(static_cast<std::uint8_t>(v));
    return *this;
  }
  builder& u16(int v) { return u8((v >> 8) & 0xFF).u8(v & 0xFF); }
  builder& u32(std::uint32_t v) {
    return u16(static_cast<int>(v >> 16)).u16(static_cast<int>(v & 0xFFFF));
  }
  builder& varint(std::size_t n) {
    do {
      const auto low = static_cast<int>(n % 128);
      n /= 128;
      u8(n ? low | 0x80 : low);
    } while (n);
    return *this;
  }
  builder& raw(std::string_view s) {
    b_.insert(b_.end(), s.begin(), s.end());
    return *this;
  }
  builder& raw(const byte_vec& v) {
    b_.insert(b_.end(), v.begin(), v.end());
    return *this;
  }
  builder& str(std::string_view s) { return u16(static_cast<int>(s.size())).raw(s); }
  builder& bin(const byte_vec& v) { return u16(static_cast<int>(v.size())).raw(v); }
  // A 5.0 property block: its length, then its body.
  builder& props(const byte_vec& body) { return varint(body.size()).raw(body); }
  byte_vec get() const { return b_; }

 private:
  byte_vec b_;
};

// A whole packet: the fixed header's first byte, the remaining length, the body.
byte_vec frame(int first, const byte_vec& body) {
  return builder().u8(first).varint(body.size()).raw(body).get();
}

// What parsing one packet came to, whatever its type.
struct outcome {
  bool ok = false;
  std::uint8_t reason = 0;
  std::string_view message;
};

template <class R>
outcome outcome_of(const R& r) {
  return {r.ok, r.ok ? std::uint8_t{0} : r.error.reason, r.error.message};
}

// The parser a server (or, for CONNACK, SUBACK, UNSUBACK, PINGRESP, a client) runs on a
// packet of type `t`. AUTH has no parser in the codec: the adapter refuses it.
outcome parse_any(packet_type t, std::uint8_t flags, std::span<const std::uint8_t> body,
                  version v) {
  switch (t) {
    case packet_type::connect:
      return outcome_of(mqtt::parse_connect(flags, body));
    case packet_type::connack:
      return outcome_of(mqtt::parse_connack(flags, body, v));
    case packet_type::publish:
      return outcome_of(mqtt::parse_publish(flags, body, v));
    case packet_type::puback:
    case packet_type::pubrec:
    case packet_type::pubrel:
    case packet_type::pubcomp:
      return outcome_of(mqtt::parse_ack(t, flags, body, v));
    case packet_type::subscribe:
      return outcome_of(mqtt::parse_subscribe(flags, body, v));
    case packet_type::suback:
      return outcome_of(mqtt::parse_suback(flags, body, v));
    case packet_type::unsubscribe:
      return outcome_of(mqtt::parse_unsubscribe(flags, body, v));
    case packet_type::unsuback:
      return outcome_of(mqtt::parse_unsuback(flags, body, v));
    case packet_type::pingreq:
    case packet_type::pingresp:
      return outcome_of(mqtt::parse_empty(flags, body));
    case packet_type::disconnect:
      return outcome_of(mqtt::parse_disconnect(flags, body, v));
    case packet_type::auth:
      break;
  }
  return {false, 0, "no parser"};
}

// Splits `wire` (one whole packet) and parses it.
outcome split_and_parse(const byte_vec& wire, version v) {
  const auto r = mqtt::split(wire, 1 << 20);
  if (r.st != status::packet) return {false, r.reason, r.error};
  EXPECT_EQ(r.size, wire.size());
  return parse_any(r.type, r.flags, r.body, v);
}

// Strings that are not well-formed UTF-8 or that MQTT forbids (1.5.3 / 1.5.4): U+0000,
// surrogates, overlongs (U+0000 as C0 80 among them), code points past U+10FFFF, stray and
// missing continuation bytes.
const byte_vec bad_utf8[] = {
    {0x00},                                // U+0000
    {'a', 0x00, 'b'},                      // U+0000 inside
    {0xC0, 0x80},                          // overlong U+0000 ("modified UTF-8")
    {0xC0, 0xAF},                          // overlong '/'
    {0xE0, 0x80, 0xAF},                    // overlong '/', three bytes
    {0xF0, 0x80, 0x80, 0xAF},              // overlong '/', four bytes
    {0xED, 0xA0, 0x80},                    // U+D800, a high surrogate
    {0xED, 0xBF, 0xBF},                    // U+DFFF, a low surrogate
    {0xED, 0xA0, 0xBD, 0xED, 0xB2, 0xA9},  // a surrogate pair (CESU-8)
    {0xF4, 0x90, 0x80, 0x80},              // U+110000
    {0xF5, 0x80, 0x80, 0x80},              // lead byte past U+10FFFF
    {0x80},                                // a continuation byte alone
    {'a', 0xC3},                           // a sequence cut short
    {0xE2, 0x82, 'a'},                     // a sequence interrupted
    {0xFF},                                // never in UTF-8
    {0xFE, 0xFF},                          // a UTF-16 byte order mark
};

// Well-formed edge cases that must pass (and keep their bytes: a leading U+FEFF is not
// stripped, 3.1.1 [MQTT-1.5.3-3]).
const byte_vec good_utf8[] = {
    {0xEF, 0xBB, 0xBF, 'a'},   // U+FEFF then 'a'
    {0xC2, 0x80},              // U+0080
    {0xED, 0x9F, 0xBF},        // U+D7FF, just below the surrogates
    {0xEE, 0x80, 0x80},        // U+E000, just above them
    {0xEF, 0xBF, 0xBF},        // U+FFFF
    {0xF0, 0x9F, 0x98, 0x80},  // U+1F600
    {0xF4, 0x8F, 0xBF, 0xBF},  // U+10FFFF
};

// A CONNECT body with the given client id, will topic and user name (raw bytes).
byte_vec connect_with(version v, const byte_vec& client_id,
                      const std::optional<byte_vec>& will_topic = std::nullopt,
                      const std::optional<byte_vec>& user = std::nullopt) {
  const bool v5 = v == version::v5;
  builder b;
  b.str("MQTT").u8(static_cast<int>(v));
  b.u8(0x02 | (will_topic ? 0x04 : 0) | (user ? 0x80 : 0)).u16(60);
  if (v5) b.u8(0);
  b.bin(client_id);
  if (will_topic) {
    if (v5) b.u8(0);
    b.bin(*will_topic).str("bye");
  }
  if (user) b.bin(*user);
  return b.get();
}

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

TEST(MqttSplit, ALengthNotInItsShortestFormIsAnError) {
  // [MQTT-1.5.5-1]: 0 as 0x80 0x00, 5 as 0x85 0x00: malformed, whatever follows.
  for (const auto& wire : {bytes({0xC0, 0x80, 0x00}), bytes({0x30, 0x85, 0x00, 0, 1, 't'}),
                           bytes({0x30, 0x80, 0x80, 0x00})}) {
    const auto r = mqtt::split(wire, 1 << 20);
    EXPECT_EQ(r.st, status::error);
    EXPECT_EQ(r.reason, mqtt::reason::malformed_packet);
  }
  // 128 takes two bytes, and the shortest form of 0 is one.
  EXPECT_EQ(mqtt::split(bytes({0xC0, 0x00}), 1 << 20).st, status::packet);
  std::string big(128, 'x');
  auto wire = bytes({0x30, 0x80, 0x01});
  wire.insert(wire.end(), big.begin(), big.end());
  EXPECT_EQ(mqtt::split(wire, 1 << 20).st, status::packet);
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

namespace {

struct sample {
  packet_type type;
  byte_vec wire;
};

byte_vec of(const std::string& s) {
  return {s.begin(), s.end()};
}

// One of every packet type in version `v`, as a peer would send it: from the encoders where
// the codec has one, by hand for 5.0's property blocks and for AUTH.
std::vector<sample> every_packet(version v) {
  const bool v5 = v == version::v5;
  std::vector<sample> out;
  std::string w;
  auto take = [&](packet_type t) {
    out.push_back({t, of(w)});
    w.clear();
  };
  mqtt::connect_options o;
  o.ver = v;
  o.client_id = "c1";
  o.username = std::string_view("u");
  o.password = std::string_view("p");
  const std::uint8_t will_payload[] = {1, 2};
  o.will = mqtt::will_message{"w/t", will_payload, 2, false, {}};
  mqtt::encode_connect(w, o);
  take(packet_type::connect);
  mqtt::encode_connack(w, v, true, 0);
  take(packet_type::connack);
  const std::uint8_t payload[] = {'x', 'y', 'z'};
  for (std::uint8_t qos = 0; qos < 3; ++qos) {
    mqtt::publish p;
    p.topic = "a/b";
    p.payload = payload;
    p.qos = qos;
    p.packet_id = qos ? static_cast<std::uint16_t>(100 + qos) : 0;
    mqtt::encode_publish(w, v, p);
    take(packet_type::publish);
  }
  if (v5) {
    // QoS 1, payload format 1 and topic alias 3.
    out.push_back({packet_type::publish,
                   frame(0x32, builder()
                                   .str("a/b")
                                   .u16(9)
                                   .props(builder().u8(0x01).u8(1).u8(0x23).u16(3).get())
                                   .raw("{}")
                                   .get())});
  }
  for (auto t :
       {packet_type::puback, packet_type::pubrec, packet_type::pubrel, packet_type::pubcomp}) {
    mqtt::encode_ack(w, v, t, 0x1234);
    take(t);
    if (v5) {  // with a reason and a reason string
      const int first = (static_cast<int>(t) << 4) | (t == packet_type::pubrel ? 2 : 0);
      const int code = t == packet_type::pubrel || t == packet_type::pubcomp ? 0x92 : 0x10;
      out.push_back(
          {t, frame(first,
                    builder().u16(7).u8(code).props(builder().u8(0x1F).str("why").get()).get())});
    }
  }
  const mqtt::subscription subs[] = {{"a/#", 1}};
  mqtt::encode_subscribe(w, v, 11, subs);
  take(packet_type::subscribe);
  if (v5) {  // subscription identifier 300; QoS 2, no local, retain handling 1
    out.push_back(
        {packet_type::subscribe, frame(0x82, builder()
                                                 .u16(12)
                                                 .props(builder().u8(0x0B).varint(300).get())
                                                 .str("b/+")
                                                 .u8(0x16)
                                                 .get())});
  }
  const std::uint8_t granted[] = {1};
  mqtt::encode_suback(w, v, 11, granted);
  take(packet_type::suback);
  const std::string_view filters[] = {"a/#"};
  mqtt::encode_unsubscribe(w, v, 13, filters);
  take(packet_type::unsubscribe);
  const std::uint8_t unsub_codes[] = {0};
  mqtt::encode_unsuback(w, v, 13, unsub_codes);
  take(packet_type::unsuback);
  mqtt::encode_pingreq(w);
  take(packet_type::pingreq);
  mqtt::encode_pingresp(w);
  take(packet_type::pingresp);
  mqtt::encode_disconnect(w, v);
  take(packet_type::disconnect);
  if (v5) {
    // DISCONNECT 0x04 (with will), session expiry 0 and a reason string.
    out.push_back(
        {packet_type::disconnect,
         frame(
             0xE0,
             builder().u8(0x04).props(builder().u8(0x11).u32(0).u8(0x1F).str("bye").get()).get())});
    // AUTH 0x18 (continue authentication), method and data.
    out.push_back(
        {packet_type::auth,
         frame(0xF0, builder()
                         .u8(0x18)
                         .props(builder().u8(0x15).str("SCRAM-SHA-1").u8(0x16).bin({1, 2, 3}).get())
                         .get())});
  }
  return out;
}

}  // namespace

TEST(MqttSplit, EverySampleParses) {
  for (auto v : versions)
    for (const auto& s : every_packet(v)) {
      const auto r = mqtt::split(s.wire, 4096);
      ASSERT_EQ(r.st, status::packet) << r.error;
      EXPECT_EQ(r.type, s.type);
      EXPECT_EQ(r.size, s.wire.size());
      if (s.type == packet_type::auth) continue;  // no parser: see MqttAuth
      const auto parsed = parse_any(r.type, r.flags, r.body, v);
      EXPECT_TRUE(parsed.ok) << static_cast<int>(s.type) << ": " << parsed.message;
    }
}

TEST(MqttSplit, EveryPacketTypeFedOneByteAtATime) {
  for (auto v : versions) {
    const auto packets = every_packet(v);
    byte_vec stream;
    for (const auto& p : packets)
      stream.insert(stream.end(), p.wire.begin(), p.wire.end());
    byte_vec buffer;
    std::size_t next = 0;
    for (const auto b : stream) {
      buffer.push_back(b);
      ASSERT_LT(next, packets.size());
      const auto& want = packets[next];
      const auto r = mqtt::split(buffer, 4096);
      if (buffer.size() < want.wire.size()) {
        // Need more until the packet's last byte, whether the length is complete or not.
        ASSERT_EQ(r.st, status::need_more) << "packet " << next << " at byte " << buffer.size();
        continue;
      }
      ASSERT_EQ(r.st, status::packet) << r.error;
      EXPECT_EQ(r.type, want.type);
      EXPECT_EQ(r.size, want.wire.size());
      EXPECT_EQ(r.flags, want.wire[0] & 0x0F);
      buffer.clear();  // the buffer held exactly that packet
      ++next;
    }
    EXPECT_EQ(next, packets.size());
    EXPECT_TRUE(buffer.empty());

    // The same stream at once: split() takes the packets off the front one by one.
    std::span<const std::uint8_t> rest(stream);
    for (const auto& want : packets) {
      const auto r = mqtt::split(rest, 4096);
      ASSERT_EQ(r.st, status::packet);
      EXPECT_EQ(r.type, want.type);
      rest = rest.subspan(r.size);
    }
    EXPECT_TRUE(rest.empty());
  }
}

TEST(MqttSplit, FiveByteLengthIsRefusedWithoutWaitingForTheFifthByte) {
  // The fourth length byte still has the continuation bit: 2.2.3 / 1.5.5 allow four at most.
  for (int first : {0x10, 0x30, 0x62, 0x82, 0xC0, 0xE0, 0xF0})
    for (std::size_t n : {5, 6}) {
      byte_vec wire = {static_cast<std::uint8_t>(first), 0xFF, 0x80, 0x80, 0x80, 0x01};
      wire.resize(n);
      const auto r = mqtt::split(wire, std::size_t{1} << 30);
      EXPECT_EQ(r.st, status::error) << first << " " << n;
      EXPECT_EQ(r.reason, mqtt::reason::malformed_packet);
      EXPECT_FALSE(r.error.empty());
    }
}

TEST(MqttSplit, TruncatedRemainingLengthAsksForMore) {
  // A length whose last byte has not arrived is not an error yet: the stream is short.
  for (const auto& wire : {bytes({0x30}), bytes({0x30, 0x80}), bytes({0x30, 0xFF, 0xFF}),
                           bytes({0x30, 0x80, 0x80, 0x80})})
    EXPECT_EQ(mqtt::split(wire, std::size_t{1} << 30).st, status::need_more) << wire.size();
  // Nor is a body shorter than the length announces.
  EXPECT_EQ(mqtt::split(bytes({0x40, 0x02, 0x00}), 64).st, status::need_more);
}

TEST(MqttSplit, FixedHeaderFlagsOfEveryPacketType) {
  // 3.1.1 table 2.2 / 5.0 table 2-2: PUBREL, SUBSCRIBE and UNSUBSCRIBE carry 0b0010, PUBLISH
  // its DUP, QoS (never 3) and RETAIN, every other type 0b0000; type 0 is reserved. (Type 15
  // is AUTH in 5.0 and reserved in 3.1.1: split() has no version, the adapter refuses it.)
  for (int type = 0; type < 16; ++type)
    for (int flags = 0; flags < 16; ++flags) {
      bool valid = false;
      if (type == 3)
        valid = ((flags >> 1) & 0x03) != 3;
      else if (type == 6 || type == 8 || type == 10)
        valid = flags == 0x02;
      else if (type != 0)
        valid = flags == 0;
      const auto first = static_cast<std::uint8_t>((type << 4) | flags);
      const auto r = mqtt::split(byte_vec{first, 0x00}, 64);
      EXPECT_EQ(r.st, valid ? status::packet : status::error) << type << "/" << flags;
      if (valid) {
        EXPECT_EQ(static_cast<int>(r.type), type);
        EXPECT_EQ(r.flags, flags);
      } else {
        EXPECT_EQ(r.reason, mqtt::reason::malformed_packet);
        // Refused from the first byte alone, before the length arrives.
        EXPECT_EQ(mqtt::split(byte_vec{first}, 64).st, status::error) << type << "/" << flags;
      }
    }
}

TEST(MqttSplit, MaxPacketSizeIsEnforcedFromTheLengthField) {
  // The limit counts the whole packet (5.0 3.1.2.11.4): fixed header and remaining length.
  for (std::size_t length :
       {0, 1, 125, 126, 127, 128, 16'380, 16'383, 16'384, 2'097'151, 2'097'152, 268'435'455}) {
    const auto header = builder().u8(0x30).varint(length).get();
    const std::size_t total = header.size() + length;
    // One byte over the limit: refused with the header alone (the body need never arrive)...
    auto r = mqtt::split(header, total - 1);
    EXPECT_EQ(r.st, status::error) << length;
    EXPECT_EQ(r.reason, mqtt::reason::packet_too_large) << length;
    // ... and with some of the body there too.
    auto more = header;
    more.push_back('x');
    EXPECT_EQ(mqtt::split(more, total - 1).st, status::error) << length;
    // At the limit: need more until the body is complete, then the packet.
    r = mqtt::split(header, total);
    EXPECT_EQ(r.st, length == 0 ? status::packet : status::need_more) << length;
    if (length <= 16'384) {
      auto whole = header;
      whole.resize(total, 'x');
      r = mqtt::split(whole, total);
      ASSERT_EQ(r.st, status::packet) << length;
      EXPECT_EQ(r.size, total);
      EXPECT_EQ(mqtt::split(whole, total - 1).reason, mqtt::reason::packet_too_large);
    }
  }
  // The smallest packets against the smallest limits.
  EXPECT_EQ(mqtt::split(bytes({0xC0, 0}), 2).st, status::packet);
  EXPECT_EQ(mqtt::split(bytes({0xC0, 0}), 1).reason, mqtt::reason::packet_too_large);
  // 5.0 packets with properties count their properties.
  const auto with_props = every_packet(version::v5);
  for (const auto& s : with_props) {
    EXPECT_EQ(mqtt::split(s.wire, s.wire.size()).st, status::packet);
    EXPECT_EQ(mqtt::split(s.wire, s.wire.size() - 1).st, status::error);
  }
}

TEST(MqttSplit, BodiesCutShortOrRunningLongAreRefusedByTheParsers) {
  // A remaining length that disagrees with the fields inside: every proper prefix of every
  // body is refused, but for the forms the specification lets end early; one byte too many
  // is refused where nothing more may follow.
  for (auto v : versions) {
    const bool v5 = v == version::v5;
    for (const auto& s : every_packet(v)) {
      if (s.type == packet_type::auth) continue;
      const auto whole = mqtt::split(s.wire, 4096);
      ASSERT_EQ(whole.st, status::packet);
      const byte_vec body(whole.body.begin(), whole.body.end());
      std::size_t payload_at = body.size();
      if (s.type == packet_type::publish)
        payload_at -= mqtt::parse_publish(whole.flags, whole.body, v).value.payload.size();
      const bool ack = s.type == packet_type::puback || s.type == packet_type::pubrec ||
                       s.type == packet_type::pubrel || s.type == packet_type::pubcomp;
      for (std::size_t k = 0; k < body.size(); ++k) {
        // The short forms: a shorter payload; 5.0 acknowledgements without properties or
        // reason (3.4.2.1); 5.0 DISCONNECT likewise (3.14.2.1); a 5.0 CONNACK without
        // properties (see MqttConnack.V5WithoutPropertyLengthIsAccepted).
        const bool short_form = (s.type == packet_type::publish && k >= payload_at) ||
                                (v5 && ack && (k == 2 || k == 3)) ||
                                (v5 && s.type == packet_type::disconnect && k <= 1) ||
                                (v5 && s.type == packet_type::connack && k == 2);
        const byte_vec prefix(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(k));
        const auto r = split_and_parse(frame(s.wire[0], prefix), v);
        EXPECT_EQ(r.ok, short_form) << "type " << static_cast<int>(s.type) << " v"
                                    << static_cast<int>(v) << " prefix " << k << "/" << body.size();
        if (!r.ok) {
          EXPECT_FALSE(r.message.empty());
        }
      }
      auto longer = body;
      longer.push_back(0x00);
      const bool may_grow = s.type == packet_type::publish || s.type == packet_type::suback ||
                            (v5 && s.type == packet_type::unsuback) ||
                            (v5 && ack && body.size() < 4) ||
                            (v5 && s.type == packet_type::disconnect && body.size() < 2) ||
                            (v5 && s.type == packet_type::connack && body.size() == 2);
      EXPECT_EQ(split_and_parse(frame(s.wire[0], longer), v).ok, may_grow)
          << "type " << static_cast<int>(s.type) << " v" << static_cast<int>(v) << " + 1 byte";
    }
  }
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

TEST(MqttConnect, EveryFlagCombinationRoundTripsInBothVersions) {
  const std::uint8_t will_payload[] = {0x00, 0xFF, 'w'};
  for (auto v : versions)
    for (int will = -1; will <= 2; ++will)  // -1: no will, else its QoS
      for (bool retain : {false, true})
        for (bool user : {false, true})
          for (bool pass : {false, true})
            for (bool clean : {false, true}) {
              if (will < 0 && retain) continue;
              if (v == version::v311 && pass && !user) continue;  // see the refusal below
              mqtt::connect_options o;
              o.ver = v;
              o.client_id = "dev-42";
              o.clean_start = clean;
              o.keep_alive = 0xFFFF;
              if (user) o.username = std::string_view("alice");
              if (pass) o.password = std::string_view("s3cret");
              if (will >= 0)
                o.will = mqtt::will_message{
                    "dev-42/status", will_payload, static_cast<std::uint8_t>(will), retain, {}};
              std::string wire;
              mqtt::encode_connect(wire, o);
              // 3.1.2.3: the connect flags byte, after the fixed header, name and level.
              int flags = clean ? 0x02 : 0;
              if (will >= 0) flags |= 0x04 | (will << 3) | (retain ? 0x20 : 0);
              if (pass) flags |= 0x40;
              if (user) flags |= 0x80;
              ASSERT_LT(wire.size(), 129u);
              EXPECT_EQ(static_cast<std::uint8_t>(wire[9]), flags);
              EXPECT_EQ(static_cast<std::uint8_t>(wire[8]), static_cast<std::uint8_t>(v));
              const auto r = one(wire);
              EXPECT_EQ(r.type, packet_type::connect);
              EXPECT_EQ(r.flags, 0);
              const auto c = mqtt::parse_connect(r.flags, r.body);
              ASSERT_TRUE(c.ok) << c.error.message;
              EXPECT_EQ(c.value.ver, v);
              EXPECT_EQ(c.value.client_id, "dev-42");
              EXPECT_EQ(c.value.clean_start, clean);
              EXPECT_EQ(c.value.keep_alive, 0xFFFF);
              EXPECT_EQ(c.value.username.has_value(), user);
              if (user) {
                EXPECT_EQ(*c.value.username, "alice");
              }
              EXPECT_EQ(c.value.password.has_value(), pass);
              if (pass) {
                EXPECT_EQ(text(*c.value.password), "s3cret");
              }
              EXPECT_EQ(c.value.will.has_value(), will >= 0);
              if (will >= 0) {
                EXPECT_EQ(c.value.will->topic, "dev-42/status");
                EXPECT_EQ(text(c.value.will->payload),
                          text(byte_vec(std::begin(will_payload), std::end(will_payload))));
                EXPECT_EQ(c.value.will->qos, will);
                EXPECT_EQ(c.value.will->retain, retain);
                EXPECT_TRUE(c.value.will->properties.empty());
              }
              EXPECT_TRUE(c.value.properties.empty());
            }
}

TEST(MqttConnect, V5WithPropertiesWillPropertiesUserAndPassword) {
  const auto connect_props = builder()
                                 .u8(0x11)
                                 .u32(3600)  // session expiry
                                 .u8(0x21)
                                 .u16(20)  // receive maximum
                                 .u8(0x27)
                                 .u32(65536)  // maximum packet size
                                 .u8(0x22)
                                 .u16(10)  // topic alias maximum
                                 .u8(0x19)
                                 .u8(1)  // request response information
                                 .u8(0x17)
                                 .u8(0)  // request problem information
                                 .u8(0x26)
                                 .str("k")
                                 .str("v")  // user property
                                 .get();
  const auto will_props = builder()
                              .u8(0x18)
                              .u32(30)  // will delay
                              .u8(0x01)
                              .u8(1)  // payload format: UTF-8
                              .u8(0x02)
                              .u32(600)  // message expiry
                              .u8(0x03)
                              .str("text/plain")
                              .u8(0x08)
                              .str("replies/dev-1")
                              .u8(0x09)
                              .bin({0xCA, 0xFE})
                              .u8(0x26)
                              .str("a")
                              .str("b")
                              .get();
  // user, password, will retain, will QoS 2, will, clean start
  const auto body = builder()
                        .str("MQTT")
                        .u8(5)
                        .u8(0xF6)
                        .u16(30)
                        .props(connect_props)
                        .str("dev-1")
                        .props(will_props)
                        .str("dev-1/will")
                        .str("gone")
                        .str("alice")
                        .bin({0x00, 0xFF, 0x80})
                        .get();
  const auto wire = frame(0x10, body);
  const auto r = mqtt::split(wire, 1024);
  ASSERT_EQ(r.st, status::packet);
  const auto c = mqtt::parse_connect(r.flags, r.body);
  ASSERT_TRUE(c.ok) << c.error.message;
  EXPECT_EQ(c.value.ver, version::v5);
  EXPECT_EQ(c.value.client_id, "dev-1");
  EXPECT_EQ(c.value.keep_alive, 30);
  EXPECT_TRUE(c.value.clean_start);
  EXPECT_EQ(c.value.username, "alice");
  ASSERT_TRUE(c.value.password);
  EXPECT_EQ(text(*c.value.password), std::string("\x00\xFF\x80", 3));
  ASSERT_TRUE(c.value.will);
  EXPECT_EQ(c.value.will->topic, "dev-1/will");
  EXPECT_EQ(text(c.value.will->payload), "gone");
  EXPECT_EQ(c.value.will->qos, 2);
  EXPECT_TRUE(c.value.will->retain);
  EXPECT_EQ(text(c.value.properties), text(connect_props));
  EXPECT_EQ(text(c.value.will->properties), text(will_props));

  const auto p = mqtt::parse_properties(c.value.properties, mqtt::property_scope::connect);
  ASSERT_TRUE(p.ok) << p.error.message;
  EXPECT_EQ(p.value.session_expiry, 3600u);
  EXPECT_EQ(p.value.receive_maximum, 20);
  EXPECT_EQ(p.value.maximum_packet_size, 65536u);
  EXPECT_EQ(p.value.topic_alias_maximum, 10);
  EXPECT_EQ(p.value.request_response_info, 1);
  EXPECT_EQ(p.value.request_problem_info, 0);
  EXPECT_EQ(p.value.user_property_count, 1u);
  const auto w = mqtt::parse_properties(c.value.will->properties, mqtt::property_scope::will);
  ASSERT_TRUE(w.ok) << w.error.message;
  EXPECT_EQ(w.value.will_delay, 30u);
  EXPECT_EQ(w.value.payload_format, 1);
  EXPECT_EQ(w.value.message_expiry, 600u);
  EXPECT_EQ(w.value.content_type, "text/plain");
  EXPECT_EQ(w.value.response_topic, "replies/dev-1");
  ASSERT_TRUE(w.value.correlation_data);
  EXPECT_EQ(text(*w.value.correlation_data), "\xCA\xFE");
  // Each block belongs to its own scope: the will's properties are not CONNECT's, and back.
  EXPECT_EQ(
      mqtt::parse_properties(c.value.will->properties, mqtt::property_scope::connect).error.reason,
      mqtt::reason::malformed_packet);
  EXPECT_EQ(mqtt::parse_properties(c.value.properties, mqtt::property_scope::will).error.reason,
            mqtt::reason::malformed_packet);
}

TEST(MqttConnect, PasswordWithoutUserName) {
  // 3.1.1 [MQTT-3.1.2-22]: a password needs a user name; 5.0 (3.1.2.9) dropped that rule.
  for (auto v : versions) {
    builder b;
    b.str("MQTT").u8(static_cast<int>(v)).u8(0x42).u16(10);
    if (v == version::v5) b.u8(0);
    b.str("c").bin({'p', 'w'});
    const auto body = b.get();  // the parsed views point into it
    const auto c = mqtt::parse_connect(0, body);
    if (v == version::v5) {
      ASSERT_TRUE(c.ok) << c.error.message;
      EXPECT_FALSE(c.value.username);
      ASSERT_TRUE(c.value.password);
      EXPECT_EQ(text(*c.value.password), "pw");
    } else {
      EXPECT_FALSE(c.ok);
      EXPECT_EQ(c.error.reason, mqtt::reason::malformed_packet);
    }
  }
  // The encoder's 5.0 output for it parses.
  mqtt::connect_options o;
  o.ver = version::v5;
  o.client_id = "c";
  o.password = std::string_view("pw");
  std::string wire;
  mqtt::encode_connect(wire, o);
  const auto r = one(wire);
  EXPECT_TRUE(mqtt::parse_connect(r.flags, r.body).ok);
}

TEST(MqttConnect, BadUtf8InClientIdWillTopicAndUserName) {
  // 1.5.3 / 1.5.4: a Malformed Packet, [MQTT-1.5.3-1], [MQTT-1.5.3-2] (and 1.5.4-1/2 in 5.0).
  for (auto v : versions) {
    for (const auto& bad : bad_utf8) {
      auto r = mqtt::parse_connect(0, connect_with(v, bad));
      EXPECT_FALSE(r.ok) << "client id " << text(bad);
      EXPECT_EQ(r.error.reason, mqtt::reason::malformed_packet);
      r = mqtt::parse_connect(0, connect_with(v, bytes({'c'}), bad));
      EXPECT_FALSE(r.ok) << "will topic " << text(bad);
      EXPECT_EQ(r.error.reason, mqtt::reason::malformed_packet);
      r = mqtt::parse_connect(0, connect_with(v, bytes({'c'}), std::nullopt, bad));
      EXPECT_FALSE(r.ok) << "user name " << text(bad);
      EXPECT_EQ(r.error.reason, mqtt::reason::malformed_packet);
    }
    for (const auto& good : good_utf8) {
      const auto body = connect_with(v, good, good, good);
      const auto r = mqtt::parse_connect(0, body);
      ASSERT_TRUE(r.ok) << text(good) << ": " << r.error.message;
      EXPECT_EQ(r.value.client_id, text(good));  // U+FEFF kept, not stripped
      EXPECT_EQ(r.value.will->topic, text(good));
      EXPECT_EQ(r.value.username, text(good));
    }
  }
}

TEST(MqttConnect, WillRefusalsInBothVersions) {
  for (auto v : versions) {
    // A will topic is a topic name: not empty, no wildcard (4.7.3, [MQTT-3.1.3-11]).
    for (const char* topic : {"", "+", "#", "a/+", "a/#", "+/b"}) {
      const auto r = mqtt::parse_connect(0, connect_with(v, bytes({'c'}), of(topic)));
      EXPECT_FALSE(r.ok) << topic;
      EXPECT_EQ(r.error.reason, mqtt::reason::topic_name_invalid) << topic;
    }
    // An empty will payload is a message like any other.
    builder b;
    b.str("MQTT").u8(static_cast<int>(v)).u8(0x06).u16(10);
    if (v == version::v5) b.u8(0);
    b.str("c");
    if (v == version::v5) b.u8(0);
    b.str("t").str("");
    const auto body = b.get();
    const auto r = mqtt::parse_connect(0, body);
    ASSERT_TRUE(r.ok) << r.error.message;
    EXPECT_TRUE(r.value.will->payload.empty());
    // Flags that contradict each other: will QoS or retain without a will
    // ([MQTT-3.1.2-11], [MQTT-3.1.2-15]) and a will QoS of 3 ([MQTT-3.1.2-14]).
    for (int flags : {0x0A, 0x12, 0x1A, 0x22, 0x1E}) {
      builder f;
      f.str("MQTT").u8(static_cast<int>(v)).u8(flags).u16(10);
      if (v == version::v5) f.u8(0);
      f.str("c");
      if (flags & 0x04) {
        if (v == version::v5) f.u8(0);
        f.str("t").str("x");
      }
      const auto bad = mqtt::parse_connect(0, f.get());
      EXPECT_FALSE(bad.ok) << flags;
      EXPECT_EQ(bad.error.reason, mqtt::reason::malformed_packet) << flags;
    }
  }
}

TEST(MqttConnect, ProtocolNameLevelAndReservedFlag) {
  auto parse = [](const byte_vec& body) { return mqtt::parse_connect(0, body); };
  // 3.1.2.2: a level the server does not speak gets "unacceptable protocol version".
  for (int level : {0, 1, 2, 3, 6, 255}) {
    const auto r = parse(builder().str("MQTT").u8(level).u8(2).u16(10).str("c").get());
    EXPECT_EQ(r.error.reason, mqtt::reason::unsupported_protocol_version) << level;
  }
  // The name is case-sensitive and exact.
  for (const char* name : {"mqtt", "MQTT ", "MQT", ""}) {
    const auto r = parse(builder().str(name).u8(4).u8(2).u16(10).str("c").get());
    EXPECT_EQ(r.error.reason, mqtt::reason::malformed_packet) << name;
  }
  // The reserved flag (bit 0) set: malformed in both versions ([MQTT-3.1.2-3]).
  for (auto v : versions) {
    builder b;
    b.str("MQTT").u8(static_cast<int>(v)).u8(0x03).u16(10);
    if (v == version::v5) b.u8(0);
    b.str("c");
    EXPECT_EQ(parse(b.get()).error.reason, mqtt::reason::malformed_packet);
  }
}

TEST(MqttConnect, V5PropertyBlocksThatOverrunOrAreTooLong) {
  auto head = [] { return builder().str("MQTT").u8(5).u8(0x06).u16(10); };
  // CONNECT properties longer than the packet.
  auto r = mqtt::parse_connect(0, head().u8(20).u8(0x11).u32(1).str("c").get());
  EXPECT_EQ(r.error.reason, mqtt::reason::malformed_packet);
  // A property length of five bytes.
  r = mqtt::parse_connect(0, head().raw(bytes({0x80, 0x80, 0x80, 0x80, 0x00})).str("c").get());
  EXPECT_EQ(r.error.reason, mqtt::reason::malformed_packet);
  // An empty property block's length in two bytes.
  r = mqtt::parse_connect(0, head().raw(bytes({0x80, 0x00})).str("c").get());
  EXPECT_EQ(r.error.reason, mqtt::reason::malformed_packet);
  EXPECT_TRUE(
      mqtt::parse_connect(0, builder().str("MQTT").u8(5).u8(0x02).u16(10).u8(0).str("c").get()).ok);
  // Will properties longer than the packet.
  r = mqtt::parse_connect(0, head().u8(0).str("c").u8(30).str("t").str("x").get());
  EXPECT_EQ(r.error.reason, mqtt::reason::malformed_packet);
  // A 5.0 CONNECT without its property length reads the client id's length as one: the
  // id then runs out.
  r = mqtt::parse_connect(0, builder().str("MQTT").u8(5).u8(0x02).u16(10).str("c").get());
  EXPECT_FALSE(r.ok);
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

TEST(MqttConnack, V311EveryReturnCode) {
  // 3.1.1 3.2.2.3: return codes 0 to 5; the session present flag in bit 0 of the first byte.
  for (int code = 0; code <= 5; ++code)
    for (bool present : {false, true}) {
      std::string wire;
      mqtt::encode_connack(wire, version::v311, present, static_cast<std::uint8_t>(code));
      EXPECT_EQ(wire, text(bytes({0x20, 0x02, present ? 1 : 0, code})));
      const auto r = one(wire);
      const auto c = mqtt::parse_connack(r.flags, r.body, version::v311);
      ASSERT_TRUE(c.ok) << c.error.message;
      EXPECT_EQ(c.value.session_present, present);
      EXPECT_EQ(c.value.code, code);
      EXPECT_TRUE(c.value.properties.empty());
    }
}

TEST(MqttConnack, V5WithProperties) {
  EXPECT_EQ(
      [] {
        std::string w;
        mqtt::encode_connack(w, version::v5, false, 0);
        return w;
      }(),
      text(bytes({0x20, 0x03, 0x00, 0x00, 0x00})));
  mqtt::properties p;
  p.session_expiry = 120;
  p.receive_maximum = 100;
  p.maximum_qos = 1;
  p.retain_available = 1;
  p.maximum_packet_size = 1 << 20;
  p.assigned_client_id = "auto-7";
  p.topic_alias_maximum = 16;
  p.reason_string = "welcome";
  p.wildcard_available = 1;
  p.subscription_id_available = 1;
  p.shared_available = 0;
  p.server_keep_alive = 45;
  p.response_info = "resp/";
  p.server_reference = "other:1883";
  const std::pair<std::string_view, std::string_view> user[] = {{"region", "eu"}};
  std::string props;
  mqtt::encode_property_body(props, p, user);
  std::string wire;
  mqtt::encode_connack(wire, version::v5, true, mqtt::reason::success, span_of(props));
  const auto r = one(wire);
  const auto c = mqtt::parse_connack(r.flags, r.body, version::v5);
  ASSERT_TRUE(c.ok) << c.error.message;
  EXPECT_TRUE(c.value.session_present);
  EXPECT_EQ(c.value.code, 0);
  EXPECT_EQ(text(c.value.properties), props);
  const auto back = mqtt::parse_properties(c.value.properties, mqtt::property_scope::connack);
  ASSERT_TRUE(back.ok) << back.error.message;
  EXPECT_EQ(back.value.session_expiry, 120u);
  EXPECT_EQ(back.value.receive_maximum, 100);
  EXPECT_EQ(back.value.maximum_qos, 1);
  EXPECT_EQ(back.value.retain_available, 1);
  EXPECT_EQ(back.value.maximum_packet_size, 1u << 20);
  EXPECT_EQ(back.value.assigned_client_id, "auto-7");
  EXPECT_EQ(back.value.topic_alias_maximum, 16);
  EXPECT_EQ(back.value.reason_string, "welcome");
  EXPECT_EQ(back.value.wildcard_available, 1);
  EXPECT_EQ(back.value.subscription_id_available, 1);
  EXPECT_EQ(back.value.shared_available, 0);
  EXPECT_EQ(back.value.server_keep_alive, 45);
  EXPECT_EQ(back.value.response_info, "resp/");
  EXPECT_EQ(back.value.server_reference, "other:1883");
  EXPECT_EQ(back.value.user_property_count, 1u);
  // A refusal with a reason string, every 5.0 CONNACK reason code the agent sends.
  for (std::uint8_t code :
       {mqtt::reason::unspecified_error, mqtt::reason::malformed_packet,
        mqtt::reason::protocol_error, mqtt::reason::unsupported_protocol_version,
        mqtt::reason::client_identifier_not_valid, mqtt::reason::bad_user_name_or_password,
        mqtt::reason::not_authorized, mqtt::reason::server_unavailable, mqtt::reason::server_busy,
        mqtt::reason::bad_authentication_method, mqtt::reason::packet_too_large,
        mqtt::reason::quota_exceeded}) {
    wire.clear();
    std::string why;
    mqtt::properties q;
    q.reason_string = "no";
    mqtt::encode_property_body(why, q);
    mqtt::encode_connack(wire, version::v5, false, code, span_of(why));
    const auto s = one(wire);
    const auto d = mqtt::parse_connack(s.flags, s.body, version::v5);
    ASSERT_TRUE(d.ok);
    EXPECT_EQ(d.value.code, code);
    EXPECT_FALSE(d.value.session_present);
    EXPECT_EQ(text(d.value.properties), why);
  }
}

TEST(MqttConnack, V5WithoutPropertyLengthIsAccepted) {
  // A 3.1.1 server answers a 5.0 CONNECT with its own two-byte CONNACK (return code 1,
  // 3.1.1 3.1.2.2); a 5.0 client reading it as 5.0 must still see the refusal. Kept
  // deliberately lenient.
  const auto c = mqtt::parse_connack(0, bytes({0x00, 0x01}), version::v5);
  ASSERT_TRUE(c.ok) << c.error.message;
  EXPECT_EQ(c.value.code, 1);
  EXPECT_TRUE(c.value.properties.empty());
}

TEST(MqttConnack, Refusals) {
  for (auto v : versions) {
    const bool v5 = v == version::v5;
    // Bits 7-1 of the acknowledge flags are reserved ([MQTT-3.2.2-1] in 3.1.1).
    for (int bit = 1; bit < 8; ++bit) {
      auto body = bytes({1 << bit, 0});
      if (v5) body.push_back(0);
      const auto r = mqtt::parse_connack(0, body, v);
      EXPECT_FALSE(r.ok) << bit;
      EXPECT_EQ(r.error.reason, mqtt::reason::malformed_packet);
    }
    // Fixed header flags: 0 only.
    EXPECT_EQ(mqtt::split(bytes({0x21, 0x02, 0, 0}), 64).st, status::error);
  }
  // 5.0: properties that overrun the packet, bytes after them, a property length too long.
  EXPECT_FALSE(mqtt::parse_connack(0, bytes({0, 0, 5, 0x11, 0, 0}), version::v5).ok);
  EXPECT_FALSE(mqtt::parse_connack(0, bytes({0, 0, 0, 0}), version::v5).ok);
  EXPECT_FALSE(mqtt::parse_connack(0, bytes({0, 0, 0x80, 0x80, 0x80, 0x80, 0x01}), version::v5).ok);
  // 3.1.1: exactly two bytes.
  EXPECT_FALSE(mqtt::parse_connack(0, bytes({0, 0, 0}), version::v311).ok);
  EXPECT_FALSE(mqtt::parse_connack(0, {}, version::v311).ok);
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

TEST(MqttPublish, V5WithPropertiesExactBytes) {
  // QoS 1, topic "a/b", packet id 10, payload format 1, payload "hi".
  std::string wire;
  mqtt::publish p;
  p.topic = "a/b";
  p.qos = 1;
  p.packet_id = 10;
  const std::uint8_t props[] = {0x01, 0x01};
  p.properties = props;
  const std::uint8_t payload[] = {'h', 'i'};
  p.payload = payload;
  mqtt::encode_publish(wire, version::v5, p);
  EXPECT_EQ(wire, text(bytes({0x32, 12, 0, 3, 'a', '/', 'b', 0, 10, 2, 0x01, 0x01, 'h', 'i'})));
  // And with no properties: an empty block, one zero byte.
  wire.clear();
  p.properties = {};
  p.qos = 0;
  mqtt::encode_publish(wire, version::v5, p);
  EXPECT_EQ(wire, text(bytes({0x30, 8, 0, 3, 'a', '/', 'b', 0, 'h', 'i'})));
}

TEST(MqttPublish, V5PropertiesRoundTripAtEveryQos) {
  mqtt::properties props;
  props.payload_format = 1;
  props.message_expiry = 86'400;
  props.content_type = "application/json";
  props.response_topic = "replies/42";
  const std::uint8_t corr[] = {0, 1, 2, 0xFF};
  props.correlation_data = std::span<const std::uint8_t>(corr);
  props.topic_alias = 7;
  props.subscription_id = 268'435'455;  // the largest, four bytes
  const std::pair<std::string_view, std::string_view> user[] = {{"a", "1"}, {"a", "2"}};
  std::string block;
  mqtt::encode_property_body(block, props, user);
  // A second subscription identifier, as a server sends for two matching subscriptions.
  block += std::string("\x0B\x05", 2);
  const std::string payload = "{\"celsius\":21.5}";
  for (std::uint8_t qos = 0; qos < 3; ++qos)
    for (bool retain : {false, true}) {
      mqtt::publish p;
      p.topic = "plant1/line3/temp";
      p.qos = qos;
      p.retain = retain;
      p.dup = qos == 2;
      p.packet_id = qos ? 0xFFFF : 0;
      p.properties = span_of(block);
      p.payload = span_of(payload);
      std::string wire;
      mqtt::encode_publish(wire, version::v5, p);
      const auto r = one(wire);
      EXPECT_EQ(r.flags, (p.dup ? 8 : 0) | (qos << 1) | (retain ? 1 : 0));
      const auto got = mqtt::parse_publish(r.flags, r.body, version::v5);
      ASSERT_TRUE(got.ok) << got.error.message;
      EXPECT_EQ(got.value.topic, p.topic);
      EXPECT_EQ(got.value.qos, qos);
      EXPECT_EQ(got.value.retain, retain);
      EXPECT_EQ(got.value.dup, p.dup);
      EXPECT_EQ(got.value.packet_id, p.packet_id);
      EXPECT_EQ(text(got.value.payload), payload);
      EXPECT_EQ(text(got.value.properties), block);
      const auto back = mqtt::parse_properties(got.value.properties, mqtt::property_scope::publish);
      ASSERT_TRUE(back.ok) << back.error.message;
      EXPECT_EQ(back.value.payload_format, 1);
      EXPECT_EQ(back.value.message_expiry, 86'400u);
      EXPECT_EQ(back.value.content_type, "application/json");
      EXPECT_EQ(back.value.response_topic, "replies/42");
      ASSERT_TRUE(back.value.correlation_data);
      EXPECT_EQ(back.value.correlation_data->size(), 4u);
      EXPECT_EQ(back.value.topic_alias, 7);
      EXPECT_EQ(back.value.subscription_id, 268'435'455u);
      EXPECT_EQ(back.value.subscription_id_count, 2u);
      EXPECT_EQ(back.value.user_property_count, 2u);
    }
}

TEST(MqttPublish, HeaderThenPayloadIsTheWholePacket) {
  const std::string payload(200, 'p');
  for (auto v : versions)
    for (std::uint8_t qos = 0; qos < 3; ++qos) {
      mqtt::publish p;
      p.topic = "t/u";
      p.qos = qos;
      p.packet_id = qos ? 3 : 0;
      p.payload = span_of(payload);
      std::string whole;
      mqtt::encode_publish(whole, v, p);
      std::string split_up;
      mqtt::encode_publish_header(split_up, v, p, payload.size());
      EXPECT_EQ(split_up.size(), mqtt::publish_header_size(v, p.topic, payload.size(), qos));
      split_up += payload;
      EXPECT_EQ(split_up, whole);
    }
}

TEST(MqttPublish, QosAndDupFlags) {
  for (auto v : versions) {
    const bool v5 = v == version::v5;
    auto body = [&](bool with_id) {
      builder b;
      b.str("a");
      if (with_id) b.u16(1);
      if (v5) b.u8(0);
      return b.raw("x").get();
    };
    // QoS 3: refused by split() and by the parser ([MQTT-3.3.1-4]).
    for (int flags : {0x06, 0x07, 0x0E, 0x0F}) {
      EXPECT_EQ(mqtt::split(frame(0x30 | flags, body(true)), 64).st, status::error) << flags;
      EXPECT_EQ(mqtt::parse_publish(static_cast<std::uint8_t>(flags), body(true), v).error.reason,
                mqtt::reason::malformed_packet);
    }
    // DUP on QoS 0 ([MQTT-3.3.1-2]): framing passes (the flag is PUBLISH's), the parser refuses.
    for (int flags : {0x08, 0x09}) {
      const auto wire = frame(0x30 | flags, body(false));
      EXPECT_EQ(mqtt::split(wire, 64).st, status::packet);
      const auto r = split_and_parse(wire, v);
      EXPECT_FALSE(r.ok) << flags;
      EXPECT_EQ(r.reason, mqtt::reason::malformed_packet);
    }
    // DUP on QoS 1 and 2, RETAIN on any: fine.
    for (int flags : {0x01, 0x0A, 0x0B, 0x0C, 0x0D}) {
      const auto b = body(flags & 0x06);
      const auto r = mqtt::parse_publish(static_cast<std::uint8_t>(flags), b, v);
      ASSERT_TRUE(r.ok) << flags << ": " << r.error.message;
      EXPECT_EQ(r.value.dup, (flags & 0x08) != 0);
      EXPECT_EQ(r.value.retain, (flags & 0x01) != 0);
      EXPECT_EQ(r.value.qos, (flags >> 1) & 0x03);
      EXPECT_EQ(text(r.value.payload), "x");
    }
  }
}

TEST(MqttPublish, PacketIdZeroAtQos1And2) {
  // [MQTT-2.3.1-1] (3.1.1), [MQTT-2.2.1-3] (5.0).
  for (auto v : versions)
    for (int flags : {0x02, 0x04, 0x0A, 0x0C}) {
      builder b;
      b.str("a").u16(0);
      if (v == version::v5) b.u8(0);
      const auto r = mqtt::parse_publish(static_cast<std::uint8_t>(flags), b.get(), v);
      EXPECT_FALSE(r.ok) << flags;
      EXPECT_EQ(r.error.reason, mqtt::reason::malformed_packet);
    }
}

TEST(MqttPublish, TopicNames) {
  for (auto v : versions) {
    const bool v5 = v == version::v5;
    auto body = [&](const byte_vec& topic) {
      builder b;
      b.bin(topic);
      if (v5) b.u8(0);
      return b.get();
    };
    for (const auto& bad : bad_utf8) {
      const auto r = mqtt::parse_publish(0, body(bad), v);
      EXPECT_FALSE(r.ok) << text(bad);
      EXPECT_EQ(r.error.reason, mqtt::reason::malformed_packet) << text(bad);
    }
    for (const auto& good : good_utf8) {
      const auto b = body(good);
      const auto r = mqtt::parse_publish(0, b, v);
      ASSERT_TRUE(r.ok) << text(good) << ": " << r.error.message;
      EXPECT_EQ(r.value.topic, text(good));
    }
    // Wildcards are for filters only ([MQTT-3.3.2-2]).
    for (const char* topic : {"#", "+", "a/#", "a/+/c", "+/b", "sport+", "a#"}) {
      const auto r = mqtt::parse_publish(0, body(of(topic)), v);
      EXPECT_FALSE(r.ok) << topic;
      EXPECT_EQ(r.error.reason, mqtt::reason::topic_name_invalid) << topic;
    }
    // An empty topic: 3.1.1 refuses it ([MQTT-4.7.3-1]); 5.0 lets it through to the adapter,
    // which needs a topic alias with it (3.3.2.3.4).
    const auto empty = body({});
    const auto r = mqtt::parse_publish(0, empty, v);
    EXPECT_EQ(r.ok, v5);
    if (!v5) {
      EXPECT_EQ(r.error.reason, mqtt::reason::topic_name_invalid);
    }
    // Topics the filter syntax does not restrict: '$', spaces, empty levels.
    for (const char* topic : {"$SYS/x", "a b", "/", "a//b", "/a/"}) {
      const auto b = body(of(topic));
      EXPECT_TRUE(mqtt::parse_publish(0, b, v).ok) << topic;
    }
  }
}

TEST(MqttPublish, TruncatedAndBrokenFields) {
  for (auto v : versions) {
    EXPECT_FALSE(mqtt::parse_publish(0, {}, v).ok);
    EXPECT_FALSE(mqtt::parse_publish(0, bytes({0}), v).ok);
    EXPECT_FALSE(mqtt::parse_publish(0, bytes({0, 2, 'a'}), v).ok);        // topic cut short
    EXPECT_FALSE(mqtt::parse_publish(0x02, bytes({0, 1, 'a', 0}), v).ok);  // packet id cut
  }
  // 5.0 always carries a property length: a body that ends after the topic is truncated.
  EXPECT_FALSE(mqtt::parse_publish(0, bytes({0, 1, 'a'}), version::v5).ok);
  EXPECT_TRUE(mqtt::parse_publish(0, bytes({0, 1, 'a'}), version::v311).ok);
  const auto empty_props = bytes({0, 1, 'a', 0});
  const auto r = mqtt::parse_publish(0, empty_props, version::v5);
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(r.value.payload.empty());
  EXPECT_TRUE(r.value.properties.empty());
  // A property length of five bytes; one larger than what is left.
  EXPECT_EQ(mqtt::parse_publish(0, bytes({0, 1, 'a', 0xFF, 0xFF, 0xFF, 0xFF, 0x01}), version::v5)
                .error.reason,
            mqtt::reason::malformed_packet);
  EXPECT_EQ(
      mqtt::parse_publish(0, bytes({0, 1, 'a', 0x80, 0x01, 1, 2, 3}), version::v5).error.reason,
      mqtt::reason::malformed_packet);
}

TEST(MqttPublish, PayloadsAreOpaque) {
  // Any bytes, including none, U+0000 and invalid UTF-8: the payload is not a string.
  const std::string odd("\x00\xFF\xC0\x80\xED\xA0\x80", 7);
  for (auto v : versions)
    for (const std::string& payload : {std::string(), odd}) {
      mqtt::publish p;
      p.topic = "t";
      p.payload = span_of(payload);
      std::string wire;
      mqtt::encode_publish(wire, v, p);
      const auto r = one(wire);
      const auto got = mqtt::parse_publish(r.flags, r.body, v);
      ASSERT_TRUE(got.ok);
      EXPECT_EQ(text(got.value.payload), payload);
    }
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

namespace {
constexpr packet_type ack_types[] = {packet_type::puback, packet_type::pubrec, packet_type::pubrel,
                                     packet_type::pubcomp};

int first_byte(packet_type t) {
  return (static_cast<int>(t) << 4) | (t == packet_type::pubrel ? 0x02 : 0x00);
}
}  // namespace

TEST(MqttAck, ExactBytesInBothVersions) {
  for (auto v : versions)
    for (auto t : ack_types) {
      // 3.1.1 3.4-3.7, and 5.0's short form for Success with no properties.
      std::string wire;
      mqtt::encode_ack(wire, v, t, 0x1234);
      EXPECT_EQ(wire, text(bytes({first_byte(t), 0x02, 0x12, 0x34})));
      // A reason code: written in 5.0 only (3.1.1 has none to write).
      wire.clear();
      mqtt::encode_ack(wire, v, t, 0x1234, 0x80);
      EXPECT_EQ(wire, v == version::v5 ? text(bytes({first_byte(t), 0x03, 0x12, 0x34, 0x80}))
                                       : text(bytes({first_byte(t), 0x02, 0x12, 0x34})));
    }
}

TEST(MqttAck, V5EveryReasonCodeRoundTrips) {
  // 5.0 3.4.2.1 (PUBACK), 3.5.2.1 (PUBREC), 3.6.2.1 (PUBREL), 3.7.2.1 (PUBCOMP).
  const std::vector<int> puback_codes = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99};
  const std::vector<int> pubrel_codes = {0x00, 0x92};
  for (auto t : ack_types) {
    const bool release = t == packet_type::pubrel || t == packet_type::pubcomp;
    for (int code : release ? pubrel_codes : puback_codes) {
      std::string wire;
      mqtt::encode_ack(wire, version::v5, t, 1, static_cast<std::uint8_t>(code));
      const auto r = one(wire);
      EXPECT_EQ(r.type, t);
      const auto a = mqtt::parse_ack(t, r.flags, r.body, version::v5);
      ASSERT_TRUE(a.ok) << a.error.message;
      EXPECT_EQ(a.value.packet_id, 1);
      EXPECT_EQ(a.value.reason, code);
      EXPECT_TRUE(a.value.properties.empty());
    }
  }
}

TEST(MqttAck, V5ShortAndLongForms) {
  // "The Reason Code and Property Length can be omitted if the Reason Code is 0x00 and there
  // are no Properties"; "if the Remaining Length is less than 4 there is no Property Length".
  const auto props = builder().u8(0x1F).str("quota").u8(0x26).str("k").str("v").get();
  for (auto t : ack_types) {
    const int first = first_byte(t);
    const std::vector<std::pair<byte_vec, int>> forms = {
        {builder().u16(9).get(), 0x00},
        {builder().u16(9).u8(0x97).get(), 0x97},
        {builder().u16(9).u8(0x97).u8(0).get(), 0x97},
        {builder().u16(9).u8(0x97).props(props).get(), 0x97},
    };
    for (const auto& [body, code] : forms) {
      const auto wire = frame(first, body);
      const auto r = mqtt::split(wire, 64);
      ASSERT_EQ(r.st, status::packet);
      const auto a = mqtt::parse_ack(t, r.flags, r.body, version::v5);
      ASSERT_TRUE(a.ok) << a.error.message;
      EXPECT_EQ(a.value.packet_id, 9);
      EXPECT_EQ(a.value.reason, code);
      if (body.size() > 4) {
        EXPECT_EQ(text(a.value.properties), text(props));
        const auto p = mqtt::parse_properties(a.value.properties, mqtt::property_scope::ack);
        ASSERT_TRUE(p.ok) << p.error.message;
        EXPECT_EQ(p.value.reason_string, "quota");
        EXPECT_EQ(p.value.user_property_count, 1u);
      } else {
        EXPECT_TRUE(a.value.properties.empty());
      }
    }
  }
}

TEST(MqttAck, Refusals) {
  for (auto v : versions)
    for (auto t : ack_types) {
      // Packet id 0, truncated, and 3.1.1's exact remaining length of 2.
      EXPECT_EQ(mqtt::parse_ack(t, 0, bytes({0, 0}), v).error.reason,
                mqtt::reason::malformed_packet);
      EXPECT_FALSE(mqtt::parse_ack(t, 0, bytes({0}), v).ok);
      EXPECT_FALSE(mqtt::parse_ack(t, 0, {}, v).ok);
      if (v == version::v311) {
        EXPECT_FALSE(mqtt::parse_ack(t, 0, bytes({0, 1, 0}), v).ok);
        EXPECT_FALSE(split_and_parse(bytes({first_byte(t), 3, 0, 1, 0}), v).ok);
      } else {
        // Properties that overrun, bytes after them, a five-byte property length.
        EXPECT_FALSE(mqtt::parse_ack(t, 0, bytes({0, 1, 0, 4, 0x1F, 0, 1}), v).ok);
        EXPECT_FALSE(mqtt::parse_ack(t, 0, bytes({0, 1, 0, 0, 0}), v).ok);
        EXPECT_FALSE(mqtt::parse_ack(t, 0, bytes({0, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x01}), v).ok);
      }
      // The fixed header: PUBREL 0b0010 ([MQTT-3.6.1-1]), the others 0b0000.
      const int right = first_byte(t);
      for (int flags = 0; flags < 16; ++flags) {
        const int first = (right & 0xF0) | flags;
        if (first == right) continue;
        EXPECT_EQ(mqtt::split(bytes({first, 2, 0, 1}), 64).st, status::error) << first;
      }
    }
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

TEST(MqttSubscribe, V5EveryOptionCombination) {
  // 5.0 3.8.3.1: QoS (bits 0-1), No Local (2), Retain As Published (3), Retain Handling (4-5).
  std::vector<std::string> names;
  std::vector<mqtt::subscription> subs;
  for (std::uint8_t qos = 0; qos < 3; ++qos)
    for (bool nl : {false, true})
      for (bool rap : {false, true})
        for (std::uint8_t rh = 0; rh < 3; ++rh)
          names.push_back("f/" + std::to_string(qos) + std::to_string(nl) + std::to_string(rap) +
                          std::to_string(rh));
  std::size_t i = 0;
  for (std::uint8_t qos = 0; qos < 3; ++qos)
    for (bool nl : {false, true})
      for (bool rap : {false, true})
        for (std::uint8_t rh = 0; rh < 3; ++rh) {
          mqtt::subscription s;
          s.filter = names[i++];
          s.qos = qos;
          s.no_local = nl;
          s.retain_as_published = rap;
          s.retain_handling = rh;
          subs.push_back(s);
        }
  std::string wire;
  mqtt::encode_subscribe(wire, version::v5, 0x0102, subs);
  const auto r = one(wire);
  EXPECT_EQ(r.flags, 0x02);
  const auto s = mqtt::parse_subscribe(r.flags, r.body, version::v5);
  ASSERT_TRUE(s.ok) << s.error.message;
  EXPECT_EQ(s.value.packet_id, 0x0102);
  EXPECT_TRUE(s.value.properties.empty());
  ASSERT_EQ(s.value.count, subs.size());
  // The option bytes on the wire: each entry is a 2-byte length, the filter, the options.
  std::size_t at = 0;
  i = 0;
  mqtt::for_each_subscription(s.value, version::v5, [&](const mqtt::subscription& got) {
    const auto& want = subs[i++];
    EXPECT_EQ(got.filter, want.filter);
    EXPECT_EQ(got.qos, want.qos);
    EXPECT_EQ(got.no_local, want.no_local);
    EXPECT_EQ(got.retain_as_published, want.retain_as_published);
    EXPECT_EQ(got.retain_handling, want.retain_handling);
    at += 2 + want.filter.size();
    const int option = want.qos | (want.no_local ? 4 : 0) | (want.retain_as_published ? 8 : 0) |
                       (want.retain_handling << 4);
    EXPECT_EQ(s.value.entries[at++], option) << want.filter;
  });
  EXPECT_EQ(i, subs.size());
}

TEST(MqttSubscribe, V311OptionsAreQosOnly) {
  // 3.1.1 3.8.3.1: the upper six bits are reserved. The encoder leaves 5.0's options out.
  mqtt::subscription subs[] = {{"a", 0}, {"b", 1}, {"c", 2}};
  for (auto& s : subs) {
    s.no_local = true;
    s.retain_as_published = true;
    s.retain_handling = 2;
  }
  std::string wire;
  mqtt::encode_subscribe(wire, version::v311, 1, subs);
  EXPECT_EQ(wire, text(bytes({0x82, 14, 0, 1, 0, 1, 'a', 0, 0, 1, 'b', 1, 0, 1, 'c', 2})));
  const auto r = one(wire);
  const auto s = mqtt::parse_subscribe(r.flags, r.body, version::v311);
  ASSERT_TRUE(s.ok) << s.error.message;
  int qos = 0;
  mqtt::for_each_subscription(s.value, version::v311, [&](const mqtt::subscription& got) {
    EXPECT_EQ(got.qos, qos++);
    EXPECT_FALSE(got.no_local);
    EXPECT_FALSE(got.retain_as_published);
    EXPECT_EQ(got.retain_handling, 0);
  });
  EXPECT_EQ(qos, 3);
}

TEST(MqttSubscribe, V5WithSubscriptionIdentifierAndUserProperty) {
  const auto props = builder()
                         .u8(0x0B)
                         .raw(bytes({0xFF, 0xFF, 0xFF, 0x7F}))  // 268,435,455
                         .u8(0x26)
                         .str("client")
                         .str("dash")
                         .get();
  const auto wire =
      frame(0x82, builder().u16(42).props(props).str("a/+").u8(0x2D).str("b/#").u8(0x00).get());
  const auto r = mqtt::split(wire, 1024);
  ASSERT_EQ(r.st, status::packet);
  const auto s = mqtt::parse_subscribe(r.flags, r.body, version::v5);
  ASSERT_TRUE(s.ok) << s.error.message;
  EXPECT_EQ(s.value.packet_id, 42);
  EXPECT_EQ(s.value.count, 2u);
  EXPECT_EQ(text(s.value.properties), text(props));
  const auto p = mqtt::parse_properties(s.value.properties, mqtt::property_scope::subscribe);
  ASSERT_TRUE(p.ok) << p.error.message;
  EXPECT_EQ(p.value.subscription_id, 268'435'455u);
  EXPECT_EQ(p.value.subscription_id_count, 1u);
  EXPECT_EQ(p.value.user_property_count, 1u);
  std::vector<mqtt::subscription> got;
  mqtt::for_each_subscription(s.value, version::v5,
                              [&](const mqtt::subscription& x) { got.push_back(x); });
  ASSERT_EQ(got.size(), 2u);
  // 0x2D: QoS 1, No Local, Retain As Published, Retain Handling 2.
  EXPECT_EQ(got[0].filter, "a/+");
  EXPECT_EQ(got[0].qos, 1);
  EXPECT_TRUE(got[0].no_local);
  EXPECT_TRUE(got[0].retain_as_published);
  EXPECT_EQ(got[0].retain_handling, 2);
  EXPECT_EQ(got[1].filter, "b/#");
  EXPECT_EQ(got[1].qos, 0);
  // Property errors a SUBSCRIBE can carry, found by parse_properties on the parsed block:
  // two identifiers, an identifier of 0, a property SUBSCRIBE may not carry.
  const byte_vec bad_blocks[] = {
      builder().u8(0x0B).u8(1).u8(0x0B).u8(2).get(),
      builder().u8(0x0B).u8(0).get(),
      builder().u8(0x23).u16(1).get(),
      builder().u8(0x1F).str("no").get(),
  };
  const std::uint8_t expected[] = {mqtt::reason::protocol_error, mqtt::reason::protocol_error,
                                   mqtt::reason::malformed_packet, mqtt::reason::malformed_packet};
  for (std::size_t k = 0; k < std::size(bad_blocks); ++k) {
    const auto body = builder().u16(1).props(bad_blocks[k]).str("a").u8(0).get();
    const auto b = mqtt::parse_subscribe(2, body, version::v5);
    ASSERT_TRUE(b.ok) << k;  // the codec exposes the block; the property parser judges it
    EXPECT_EQ(
        mqtt::parse_properties(b.value.properties, mqtt::property_scope::subscribe).error.reason,
        expected[k])
        << k;
  }
}

TEST(MqttSubscribe, RefusalsInBothVersions) {
  for (auto v : versions) {
    const bool v5 = v == version::v5;
    auto body = [&](int packet_id) {
      builder b;
      b.u16(packet_id);
      if (v5) b.u8(0);
      return b;
    };
    auto reason_of = [&](const byte_vec& b) {
      const auto r = mqtt::parse_subscribe(2, b, v);
      EXPECT_FALSE(r.ok);
      EXPECT_FALSE(r.error.message.empty());
      return r.error.reason;
    };
    // No topic filter at all ([MQTT-3.8.3-3]): a protocol violation.
    EXPECT_EQ(reason_of(body(1).get()), mqtt::reason::protocol_error);
    // Packet id 0.
    EXPECT_EQ(reason_of(body(0).str("a").u8(0).get()), mqtt::reason::malformed_packet);
    // A zero-length filter ([MQTT-4.7.3-1]), first or later.
    EXPECT_EQ(reason_of(body(1).str("").u8(0).get()), mqtt::reason::topic_filter_invalid);
    EXPECT_EQ(reason_of(body(1).str("a").u8(0).str("").u8(1).get()),
              mqtt::reason::topic_filter_invalid);
    // The options byte missing, the filter cut short.
    EXPECT_EQ(reason_of(body(1).str("a").get()), mqtt::reason::malformed_packet);
    EXPECT_EQ(reason_of(body(1).u16(5).raw("ab").get()), mqtt::reason::malformed_packet);
    // Reserved option bits: 3.1.1 bits 2-7 ([MQTT-3.8.3-4]), 5.0 bits 6-7 ([MQTT-3.8.3-5]).
    for (int bit = 2; bit < 8; ++bit) {
      const bool reserved = v5 ? bit >= 6 : true;
      const auto b = body(1).str("a").u8(1 << bit).get();
      const auto r = mqtt::parse_subscribe(2, b, v);
      EXPECT_EQ(r.ok, !reserved) << bit;
      if (reserved) {
        EXPECT_EQ(r.error.reason, mqtt::reason::malformed_packet) << bit;
      }
    }
    // QoS 3: malformed in 3.1.1 ([MQTT-3-8.3-4]), a Protocol Error in 5.0 (3.8.3.1).
    EXPECT_EQ(reason_of(body(1).str("a").u8(0x03).get()),
              v5 ? mqtt::reason::protocol_error : mqtt::reason::malformed_packet);
    // Retain Handling 3: a Protocol Error in 5.0; reserved bits in 3.1.1.
    EXPECT_EQ(reason_of(body(1).str("a").u8(0x30).get()),
              v5 ? mqtt::reason::protocol_error : mqtt::reason::malformed_packet);
    // Filters that are not UTF-8 or hold U+0000.
    for (const auto& bad : bad_utf8)
      EXPECT_EQ(reason_of(body(1).bin(bad).u8(0).get()), mqtt::reason::malformed_packet)
          << text(bad);
    for (const auto& good : good_utf8) {
      const auto b = body(1).bin(good).u8(0).get();
      const auto r = mqtt::parse_subscribe(2, b, v);
      ASSERT_TRUE(r.ok) << text(good);
      mqtt::for_each_subscription(
          r.value, v, [&](const mqtt::subscription& s) { EXPECT_EQ(s.filter, text(good)); });
    }
  }
  // 5.0's property block: missing, or longer than the packet.
  EXPECT_FALSE(mqtt::parse_subscribe(2, bytes({0, 1}), version::v5).ok);
  EXPECT_FALSE(mqtt::parse_subscribe(2, bytes({0, 1, 9, 0, 1, 'a', 0}), version::v5).ok);
  // The fixed header: 0b0010 only ([MQTT-3.8.1-1]).
  for (int flags = 0; flags < 16; ++flags) {
    if (flags == 2) continue;
    EXPECT_EQ(mqtt::split(bytes({0x80 | flags, 4, 0, 1, 0, 0}), 64).st, status::error) << flags;
  }
}

TEST(MqttSuback, V311ReturnCodes) {
  // 3.1.1 3.9.3: 0x00, 0x01, 0x02 and 0x80 only.
  for (int code = 0; code < 256; ++code) {
    const auto r = mqtt::parse_suback(0, bytes({0, 9, code}), version::v311);
    const bool valid = code <= 2 || code == 0x80;
    EXPECT_EQ(r.ok, valid) << code;
    if (!valid) {
      EXPECT_EQ(r.error.reason, mqtt::reason::malformed_packet);
    }
  }
  std::string wire;
  const std::uint8_t codes[] = {1, 0x80};
  mqtt::encode_suback(wire, version::v311, 9, codes);
  EXPECT_EQ(wire, text(bytes({0x90, 4, 0, 9, 1, 0x80})));
}

TEST(MqttSuback, V5WithPropertiesAndEveryReasonCode) {
  // 5.0 3.9.3.
  const auto codes =
      bytes({0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2});
  std::string wire;
  mqtt::encode_suback(wire, version::v5, 9, codes);
  EXPECT_EQ(wire.substr(0, 5), text(bytes({0x90, 15, 0, 9, 0})));
  auto r = one(wire);
  auto s = mqtt::parse_suback(r.flags, r.body, version::v5);
  ASSERT_TRUE(s.ok) << s.error.message;
  EXPECT_EQ(text(s.value.codes), text(codes));
  // With a reason string and a user property, by hand (the encoder writes none).
  const auto props = builder().u8(0x1F).str("partly").u8(0x26).str("k").str("v").get();
  const auto with_props = frame(0x90, builder().u16(9).props(props).raw(codes).get());
  const auto split_r = mqtt::split(with_props, 1024);
  ASSERT_EQ(split_r.st, status::packet);
  s = mqtt::parse_suback(split_r.flags, split_r.body, version::v5);
  ASSERT_TRUE(s.ok) << s.error.message;
  EXPECT_EQ(s.value.packet_id, 9);
  EXPECT_EQ(text(s.value.codes), text(codes));
  const auto p = mqtt::parse_properties(s.value.properties, mqtt::property_scope::suback);
  ASSERT_TRUE(p.ok) << p.error.message;
  EXPECT_EQ(p.value.reason_string, "partly");
  // What SUBACK may not carry.
  EXPECT_EQ(mqtt::parse_properties(bytes({0x0B, 1}), mqtt::property_scope::suback).error.reason,
            mqtt::reason::malformed_packet);
}

TEST(MqttSuback, Refusals) {
  for (auto v : versions) {
    const bool v5 = v == version::v5;
    auto body = [&](int packet_id) {
      builder b;
      b.u16(packet_id);
      if (v5) b.u8(0);
      return b;
    };
    EXPECT_EQ(mqtt::parse_suback(0, body(0).u8(0).get(), v).error.reason,
              mqtt::reason::malformed_packet);
    EXPECT_FALSE(mqtt::parse_suback(0, body(1).get(), v).ok);  // no code
    EXPECT_FALSE(mqtt::parse_suback(0, bytes({0}), v).ok);
    EXPECT_EQ(mqtt::split(bytes({0x92, 3, 0, 1, 0}), 64).st, status::error);
  }
  EXPECT_FALSE(mqtt::parse_suback(0, bytes({0, 1, 7, 0}), version::v5).ok);  // overrun
}

TEST(MqttUnsubscribe, ExactBytesAndV5Properties) {
  const std::string_view filters[] = {"a"};
  std::string wire;
  mqtt::encode_unsubscribe(wire, version::v311, 5, filters);
  EXPECT_EQ(wire, text(bytes({0xA2, 5, 0, 5, 0, 1, 'a'})));
  wire.clear();
  mqtt::encode_unsubscribe(wire, version::v5, 5, filters);
  EXPECT_EQ(wire, text(bytes({0xA2, 6, 0, 5, 0, 0, 1, 'a'})));
  // 5.0 UNSUBSCRIBE carries user properties only (3.10.2.1.2).
  const auto props = builder().u8(0x26).str("k").str("v").u8(0x26).str("k").str("w").get();
  const auto hand = frame(0xA2, builder().u16(6).props(props).str("x/#").str("y").get());
  const auto r = mqtt::split(hand, 1024);
  ASSERT_EQ(r.st, status::packet);
  const auto u = mqtt::parse_unsubscribe(r.flags, r.body, version::v5);
  ASSERT_TRUE(u.ok) << u.error.message;
  EXPECT_EQ(u.value.packet_id, 6);
  std::vector<std::string_view> got;
  mqtt::for_each_filter(u.value, [&](std::string_view f) { got.push_back(f); });
  EXPECT_EQ(got, (std::vector<std::string_view>{"x/#", "y"}));
  const auto p = mqtt::parse_properties(u.value.properties, mqtt::property_scope::unsubscribe);
  ASSERT_TRUE(p.ok) << p.error.message;
  EXPECT_EQ(p.value.user_property_count, 2u);
  for (const auto& bad : {builder().u8(0x1F).str("x").get(), builder().u8(0x0B).u8(1).get()})
    EXPECT_EQ(mqtt::parse_properties(bad, mqtt::property_scope::unsubscribe).error.reason,
              mqtt::reason::malformed_packet);
}

TEST(MqttUnsubscribe, RefusalsInBothVersions) {
  for (auto v : versions) {
    const bool v5 = v == version::v5;
    auto body = [&](int packet_id) {
      builder b;
      b.u16(packet_id);
      if (v5) b.u8(0);
      return b;
    };
    auto reason_of = [&](const byte_vec& b) {
      const auto r = mqtt::parse_unsubscribe(2, b, v);
      EXPECT_FALSE(r.ok);
      return r.error.reason;
    };
    // No filter ([MQTT-3.10.3-2]), packet id 0, a zero-length filter, a cut-short filter.
    EXPECT_EQ(reason_of(body(1).get()), mqtt::reason::protocol_error);
    EXPECT_EQ(reason_of(body(0).str("a").get()), mqtt::reason::malformed_packet);
    EXPECT_EQ(reason_of(body(1).str("").get()), mqtt::reason::topic_filter_invalid);
    EXPECT_EQ(reason_of(body(1).str("a").str("").get()), mqtt::reason::topic_filter_invalid);
    EXPECT_EQ(reason_of(body(1).u16(3).raw("a").get()), mqtt::reason::malformed_packet);
    // No options byte in UNSUBSCRIBE: a stray byte after a filter is a cut-short filter.
    EXPECT_EQ(reason_of(body(1).str("a").u8(0).get()), mqtt::reason::malformed_packet);
    for (const auto& bad : bad_utf8)
      EXPECT_EQ(reason_of(body(1).bin(bad).get()), mqtt::reason::malformed_packet) << text(bad);
    for (int flags = 0; flags < 16; ++flags) {
      if (flags == 2) continue;
      EXPECT_EQ(mqtt::split(bytes({0xA0 | flags, 5, 0, 1, 0, 1, 'a'}), 64).st, status::error);
    }
  }
}

TEST(MqttUnsuback, BothVersions) {
  // 3.1.1: a packet id and nothing else ([MQTT-3.11.2]); 5.0: properties and one code per
  // filter (3.11.3).
  std::string wire;
  const std::uint8_t codes[] = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91};
  mqtt::encode_unsuback(wire, version::v311, 5, codes);
  EXPECT_EQ(wire, text(bytes({0xB0, 2, 0, 5})));
  wire.clear();
  mqtt::encode_unsuback(wire, version::v5, 5, codes);
  EXPECT_EQ(wire, text(bytes({0xB0, 10, 0, 5, 0, 0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91})));
  const auto props = builder().u8(0x1F).str("gone").get();
  const auto hand = frame(0xB0, builder().u16(5).props(props).u8(0x11).get());
  const auto r = mqtt::split(hand, 64);
  ASSERT_EQ(r.st, status::packet);
  const auto a = mqtt::parse_unsuback(r.flags, r.body, version::v5);
  ASSERT_TRUE(a.ok) << a.error.message;
  EXPECT_EQ(text(a.value.codes), "\x11");
  EXPECT_EQ(mqtt::parse_properties(a.value.properties, mqtt::property_scope::unsuback)
                .value.reason_string,
            "gone");
  // Refusals.
  EXPECT_FALSE(mqtt::parse_unsuback(0, bytes({0, 5, 0}), version::v311).ok);  // a code in 3.1.1
  EXPECT_FALSE(mqtt::parse_unsuback(0, bytes({0, 0}), version::v311).ok);     // packet id 0
  EXPECT_FALSE(mqtt::parse_unsuback(0, bytes({0, 0, 0, 0}), version::v5).ok);
  EXPECT_FALSE(mqtt::parse_unsuback(0, bytes({0, 5, 0}), version::v5).ok);  // no code
  EXPECT_FALSE(mqtt::parse_unsuback(0, bytes({0, 5, 3, 0}), version::v5).ok);
  EXPECT_EQ(mqtt::split(bytes({0xB2, 2, 0, 5}), 64).st, status::error);
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

TEST(MqttControl, PingInBothDirections) {
  for (const auto& [first, type] :
       {std::pair{0xC0, packet_type::pingreq}, std::pair{0xD0, packet_type::pingresp}}) {
    const auto r = mqtt::split(bytes({first, 0}), 64);
    ASSERT_EQ(r.st, status::packet);
    EXPECT_EQ(r.type, type);
    EXPECT_TRUE(mqtt::parse_empty(r.flags, r.body).ok);
    // A body: malformed ([MQTT-3.12.1], 3.13.1: no variable header, no payload).
    const auto with_body = bytes({first, 1, 0});
    const auto s = mqtt::split(with_body, 64);
    ASSERT_EQ(s.st, status::packet);
    EXPECT_EQ(mqtt::parse_empty(s.flags, s.body).error.reason, mqtt::reason::malformed_packet);
    for (int flags = 1; flags < 16; ++flags)
      EXPECT_EQ(mqtt::split(bytes({first | flags, 0}), 64).st, status::error);
  }
}

TEST(MqttDisconnect, EncoderInBothVersions) {
  // 3.1.1 has no reason code: whatever the caller passes, two bytes.
  for (std::uint8_t code : {0x00, 0x8E}) {
    std::string wire;
    mqtt::encode_disconnect(wire, version::v311, code);
    EXPECT_EQ(wire, text(bytes({0xE0, 0})));
  }
  // 5.0: the short form for Normal disconnection, else the reason code (3.14.2.1).
  std::string wire;
  mqtt::encode_disconnect(wire, version::v5, 0);
  EXPECT_EQ(wire, text(bytes({0xE0, 0})));
  wire.clear();
  mqtt::encode_disconnect(wire, version::v5, mqtt::reason::server_shutting_down);
  EXPECT_EQ(wire, text(bytes({0xE0, 1, 0x8B})));
}

TEST(MqttDisconnect, V5FormsWithReasonAndProperties) {
  const auto props = builder()
                         .u8(0x11)
                         .u32(0)  // session expiry
                         .u8(0x1F)
                         .str("shutting down")
                         .u8(0x1C)
                         .str("other.example:1883")  // server reference
                         .u8(0x26)
                         .str("k")
                         .str("v")
                         .get();
  const std::vector<std::pair<byte_vec, int>> forms = {
      {{}, 0x00},
      {bytes({0x04}), 0x04},
      {bytes({0x8B, 0}), 0x8B},
      {builder().u8(0x9C).props(props).get(), 0x9C},
  };
  for (const auto& [body, code] : forms) {
    const auto wire = frame(0xE0, body);
    const auto r = mqtt::split(wire, 256);
    ASSERT_EQ(r.st, status::packet);
    const auto d = mqtt::parse_disconnect(r.flags, r.body, version::v5);
    ASSERT_TRUE(d.ok) << d.error.message;
    EXPECT_EQ(d.value.reason, code);
    if (body.size() > 2) {
      const auto p = mqtt::parse_properties(d.value.properties, mqtt::property_scope::disconnect);
      ASSERT_TRUE(p.ok) << p.error.message;
      EXPECT_EQ(p.value.session_expiry, 0u);
      EXPECT_EQ(p.value.reason_string, "shutting down");
      EXPECT_EQ(p.value.server_reference, "other.example:1883");
      EXPECT_EQ(p.value.user_property_count, 1u);
    } else {
      EXPECT_TRUE(d.value.properties.empty());
    }
  }
}

TEST(MqttDisconnect, Refusals) {
  // 3.1.1: no body at all ([MQTT-3.14.1-1] for the flags, 3.14.2 for the rest).
  EXPECT_FALSE(mqtt::parse_disconnect(0, bytes({0}), version::v311).ok);
  EXPECT_FALSE(mqtt::parse_disconnect(0, bytes({0, 0}), version::v311).ok);
  for (int flags = 1; flags < 16; ++flags)
    EXPECT_EQ(mqtt::split(bytes({0xE0 | flags, 0}), 64).st, status::error);
  // 5.0: properties that overrun, bytes after them.
  const auto v = version::v5;
  EXPECT_FALSE(mqtt::parse_disconnect(0, bytes({0, 5, 0x11, 0, 0}), v).ok);
  EXPECT_FALSE(mqtt::parse_disconnect(0, bytes({0, 0, 0}), v).ok);
  EXPECT_FALSE(mqtt::parse_disconnect(0, bytes({0, 0x80, 0x80, 0x80, 0x80, 0x01}), v).ok);
  // Properties DISCONNECT may not carry, and one given twice (parse_properties' judgement).
  struct bad_case {
    byte_vec block;
    std::uint8_t reason;
  };
  const bad_case cases[] = {
      {builder().u8(0x21).u16(10).get(), mqtt::reason::malformed_packet},    // receive maximum
      {builder().u8(0x18).u32(10).get(), mqtt::reason::malformed_packet},    // will delay
      {builder().u8(0x12).str("id").get(), mqtt::reason::malformed_packet},  // assigned id
      {builder().u8(0x15).str("m").get(), mqtt::reason::malformed_packet},   // auth method
      {builder().u8(0x11).u32(1).u8(0x11).u32(2).get(), mqtt::reason::protocol_error},
      {builder().u8(0x1F).str("a").u8(0x1F).str("b").get(), mqtt::reason::protocol_error},
  };
  for (const auto& c : cases) {
    const auto body = builder().u8(0x80).props(c.block).get();
    const auto d = mqtt::parse_disconnect(0, body, v);
    ASSERT_TRUE(d.ok);
    const auto p = mqtt::parse_properties(d.value.properties, mqtt::property_scope::disconnect);
    EXPECT_FALSE(p.ok) << static_cast<int>(c.block[0]);
    EXPECT_EQ(p.error.reason, c.reason) << static_cast<int>(c.block[0]);
  }
}

TEST(MqttAuth, FramingAndProperties) {
  // 5.0 3.15: the codec frames AUTH (flags 0, [MQTT-3.15.1-1]) but parses none; the adapter
  // refuses it (no enhanced authentication is offered). Its properties are checked here.
  auto r = mqtt::split(bytes({0xF0, 0}), 64);  // remaining length 0: Success, no properties
  ASSERT_EQ(r.st, status::packet);
  EXPECT_EQ(r.type, packet_type::auth);
  EXPECT_TRUE(r.body.empty());
  for (int flags = 1; flags < 16; ++flags)
    EXPECT_EQ(mqtt::split(bytes({0xF0 | flags, 0}), 64).st, status::error);
  const auto props = builder()
                         .u8(0x15)
                         .str("SCRAM-SHA-256")
                         .u8(0x16)
                         .bin({0, 1, 2})
                         .u8(0x1F)
                         .str("continue")
                         .u8(0x26)
                         .str("k")
                         .str("v")
                         .get();
  const auto wire = frame(0xF0, builder().u8(0x18).props(props).get());
  r = mqtt::split(wire, 256);
  ASSERT_EQ(r.st, status::packet);
  EXPECT_EQ(r.type, packet_type::auth);
  EXPECT_EQ(r.body[0], 0x18);  // Continue authentication
  const auto block = r.body.subspan(2);
  ASSERT_EQ(static_cast<std::size_t>(r.body[1]), block.size());
  const auto p = mqtt::parse_properties(block, mqtt::property_scope::auth);
  ASSERT_TRUE(p.ok) << p.error.message;
  EXPECT_EQ(p.value.auth_method, "SCRAM-SHA-256");
  ASSERT_TRUE(p.value.auth_data);
  EXPECT_EQ(p.value.auth_data->size(), 3u);
  EXPECT_EQ(p.value.reason_string, "continue");
  // What AUTH may not carry, and a method given twice.
  EXPECT_EQ(mqtt::parse_properties(builder().u8(0x11).u32(1).get(), mqtt::property_scope::auth)
                .error.reason,
            mqtt::reason::malformed_packet);
  EXPECT_EQ(mqtt::parse_properties(builder().u8(0x21).u16(1).get(), mqtt::property_scope::auth)
                .error.reason,
            mqtt::reason::malformed_packet);
  EXPECT_EQ(mqtt::parse_properties(builder().u8(0x15).str("a").u8(0x15).str("b").get(),
                                   mqtt::property_scope::auth)
                .error.reason,
            mqtt::reason::protocol_error);
}

// --- rules that cut across packets ---

TEST(MqttPacketId, ZeroIsRefusedWhereverOneIsRequired) {
  // 3.1.1 2.3.1 [MQTT-2.3.1-1], 5.0 2.2.1 [MQTT-2.2.1-3]: PUBLISH at QoS 1 and 2, the
  // acknowledgements, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK carry a non-zero packet id.
  for (auto v : versions) {
    const bool v5 = v == version::v5;
    auto cases = [&](int id) {
      auto props = [&](builder b) {
        if (v5) b.u8(0);
        return b;
      };
      std::vector<byte_vec> out = {
          frame(0x32, props(builder().str("a").u16(id)).get()),
          frame(0x34, props(builder().str("a").u16(id)).get()),
          frame(0x40, builder().u16(id).get()),
          frame(0x50, builder().u16(id).get()),
          frame(0x62, builder().u16(id).get()),
          frame(0x70, builder().u16(id).get()),
          frame(0x82, props(builder().u16(id)).str("a").u8(0).get()),
          frame(0x90, props(builder().u16(id)).u8(0).get()),
          frame(0xA2, props(builder().u16(id)).str("a").get()),
          frame(0xB0, v5 ? builder().u16(id).u8(0).u8(0).get() : builder().u16(id).get()),
      };
      return out;
    };
    for (const auto& wire : cases(0)) {
      const auto r = split_and_parse(wire, v);
      EXPECT_FALSE(r.ok) << "type " << (wire[0] >> 4);
      EXPECT_EQ(r.reason, mqtt::reason::malformed_packet) << "type " << (wire[0] >> 4);
    }
    for (const auto& wire : cases(1))
      EXPECT_TRUE(split_and_parse(wire, v).ok) << "type " << (wire[0] >> 4);
    for (const auto& wire : cases(0xFFFF))
      EXPECT_TRUE(split_and_parse(wire, v).ok) << "type " << (wire[0] >> 4);
  }
  // A QoS 0 PUBLISH has no packet id: the two bytes after the topic are payload.
  const auto r = mqtt::parse_publish(0, bytes({0, 1, 'a', 0, 0}), version::v311);
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.value.packet_id, 0);
}
