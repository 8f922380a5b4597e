#include "protocol/websocket/frame.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

namespace wsagent::protocol::websocket {
namespace {

using bytes = std::vector<std::uint8_t>;
using kind = frame_reader::kind;
using role = frame_reader::role;

constexpr std::size_t default_max = 16 * 1024 * 1024;

// The RFC 6455 section 5.7 mask key.
constexpr std::array<std::uint8_t, 4> rfc_key = {0x37, 0xfa, 0x21, 0x3d};

bytes to_bytes(std::string_view s) {
  return bytes(s.begin(), s.end());
}

void append(bytes& out, const bytes& more) {
  out.insert(out.end(), more.begin(), more.end());
}

// Builds a frame by hand (independent of make_header): `b0` is FIN/RSV/opcode, the length
// uses the shortest encoding, and with a key the payload is masked as a client would.
bytes raw_frame(std::uint8_t b0, std::string_view payload,
                std::optional<std::array<std::uint8_t, 4>> key = rfc_key) {
  bytes f{b0};
  const std::uint8_t mask_bit = key ? 0x80 : 0x00;
  const std::uint64_t len = payload.size();
  if (len < 126) {
    f.push_back(static_cast<std::uint8_t>(mask_bit | len));
  } else if (len <= 0xffff) {
    f.push_back(static_cast<std::uint8_t>(mask_bit | 126));
    f.push_back(static_cast<std::uint8_t>(len >> 8));
    f.push_back(static_cast<std::uint8_t>(len));
  } else {
    f.push_back(static_cast<std::uint8_t>(mask_bit | 127));
    for (int shift = 56; shift >= 0; shift -= 8)
      f.push_back(static_cast<std::uint8_t>(len >> shift));
  }
  if (key) f.insert(f.end(), key->begin(), key->end());
  for (std::size_t i = 0; i < payload.size(); ++i) {
    auto b = static_cast<std::uint8_t>(payload[i]);
    f.push_back(key ? static_cast<std::uint8_t>(b ^ (*key)[i % 4]) : b);
  }
  return f;
}

// A masked client frame, as the server reads them.
bytes client_frame(std::uint8_t b0, std::string_view payload) {
  return raw_frame(b0, payload);
}

// An unmasked server frame, as the client reads them.
bytes server_frame(std::uint8_t b0, std::string_view payload) {
  return raw_frame(b0, payload, std::nullopt);
}

std::string close_body(std::uint16_t code, std::string_view reason = {}) {
  std::string s;
  s.push_back(static_cast<char>(code >> 8));
  s.push_back(static_cast<char>(code & 0xff));
  s.append(reason);
  return s;
}

// An event copied out of the reader, since its views die with the next call.
struct seen {
  kind what;
  opcode op;
  std::string payload;
  std::uint16_t code;
  std::string reason;

  bool operator==(const seen&) const = default;
};

std::ostream& operator<<(std::ostream& os, const seen& s) {
  return os << "{kind " << static_cast<int>(s.what) << ", op " << static_cast<int>(s.op)
            << ", payload size " << s.payload.size() << ", code " << s.code << ", reason \""
            << s.reason << "\"}";
}

// Calls next() until need_more or an error, consuming from the front of `buf` as a transport
// would; skipped events are consumed but not recorded.
void drain(frame_reader& r, bytes& buf, std::vector<seen>& out) {
  while (true) {
    const frame_reader::event ev = r.next(buf);
    if (ev.what == kind::need_more) {
      EXPECT_EQ(ev.consumed, 0u);
      return;
    }
    if (ev.what != kind::skipped) {
      out.push_back(
          {ev.what, ev.op,
           std::string(reinterpret_cast<const char*>(ev.payload.data()), ev.payload.size()),
           ev.code, std::string(ev.reason)});
    }
    if (ev.what == kind::error) return;
    EXPECT_GT(ev.consumed, 0u);
    EXPECT_LE(ev.consumed, buf.size());
    buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(ev.consumed));
  }
}

std::vector<seen> feed_all(frame_reader r, const bytes& data) {
  bytes buf = data;
  std::vector<seen> out;
  drain(r, buf, out);
  return out;
}

std::vector<seen> feed_bytewise(frame_reader r, const bytes& data) {
  bytes buf;
  std::vector<seen> out;
  for (std::uint8_t b : data) {
    buf.push_back(b);
    drain(r, buf, out);
    if (!out.empty() && out.back().what == kind::error) break;
  }
  return out;
}

// Feeds `data` both at once and one byte at a time; both must give the same events.
std::vector<seen> feed(role ro, const bytes& data, std::size_t max = default_max) {
  std::vector<seen> whole = feed_all(frame_reader(ro, max), data);
  std::vector<seen> bytewise = feed_bytewise(frame_reader(ro, max), data);
  EXPECT_EQ(whole, bytewise);
  return whole;
}

seen message(opcode op, std::string_view payload) {
  return {kind::message, op, std::string(payload), 0, {}};
}

// The last event must be an error with `code`.
void expect_error(const std::vector<seen>& events, std::uint16_t code) {
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().what, kind::error);
  EXPECT_EQ(events.back().code, code);
  EXPECT_FALSE(events.back().reason.empty());
}

// --- UTF-8 ----------------------------------------------------------------------------------

std::string encode_utf8(std::uint32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    s.push_back(static_cast<char>(0xc0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    s.push_back(static_cast<char>(0xe0 | (cp >> 12)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    s.push_back(static_cast<char>(0xf0 | (cp >> 18)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3f)));
    s.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3f)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
  return s;
}

TEST(Utf8, EveryCodePoint) {
  for (std::uint32_t cp = 0; cp <= 0x10ffff; ++cp) {
    const bool surrogate = cp >= 0xd800 && cp <= 0xdfff;
    // Padded with ASCII so the 8-byte fast path and the tail both see it.
    const std::string s = "abcdefg" + encode_utf8(cp) + "xyz";
    ASSERT_EQ(is_valid_utf8(s), !surrogate) << std::hex << cp;
  }
}

TEST(Utf8, Table) {
  struct utf8_case {
    std::string bytes;
    bool valid;
  };
  const utf8_case cases[] = {
      {"", true},
      {"Hello, world", true},
      {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true},  // κόσμε
      {"\xf4\x8f\xbf\xbf", true},                              // U+10FFFF
      {"\xef\xbf\xbf", true},                                  // U+FFFF
      {std::string("a\0b", 3), true},
      {"\x80", false},  // lone continuation
      {"\xbf", false},
      {"\xc0\x80", false},                  // overlong NUL
      {"\xc1\xbf", false},                  // overlong
      {"\xe0\x80\xaf", false},              // overlong '/'
      {"\xe0\x9f\xbf", false},              // overlong U+07FF
      {"\xf0\x8f\xbf\xbf", false},          // overlong U+FFFF
      {"\xed\xa0\x80", false},              // U+D800
      {"\xed\xbf\xbf", false},              // U+DFFF
      {"\xed\xa0\x80\xed\xb0\x80", false},  // surrogate pair
      {"\xf4\x90\x80\x80", false},          // U+110000
      {"\xf5\x80\x80\x80", false},
      {"\xf8\x88\x80\x80\x80", false},  // 5-byte form
      {"\xfe", false},
      {"\xff", false},
      {"\xc3", false},                  // truncated
      {"\xe2\x82", false},              // truncated €
      {"\xf0\x9f\x98", false},          // truncated 😀
      {"abcdefgh\xf0\x9f\x98", false},  // truncated after a fast-path word
      {"\xe2\x82\x41", false},          // continuation missing
      {"\xc3\xa9\xa9", false},          // one continuation too many
      {"abcdefghijkl\xffmnopqrstu", false},
      {"abcdefghijklmnop\xe2\x82\xac", true},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(is_valid_utf8(c.bytes), c.valid) << testing::PrintToString(c.bytes);
  }
}

TEST(CloseCode, Validity) {
  for (std::uint32_t c = 0; c <= 0xffff; ++c) {
    const auto code = static_cast<std::uint16_t>(c);
    const bool expected =
        (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);
    EXPECT_EQ(is_valid_close_code(code), expected) << c;
  }
  EXPECT_FALSE(is_valid_close_code(1004));
  EXPECT_FALSE(is_valid_close_code(1005));
  EXPECT_FALSE(is_valid_close_code(1006));
  EXPECT_FALSE(is_valid_close_code(1015));
  EXPECT_FALSE(is_valid_close_code(999));
  EXPECT_FALSE(is_valid_close_code(5000));
}

// --- Masking --------------------------------------------------------------------------------

TEST(MaskPayload, MatchesNaiveForAllOffsetsAndLengths) {
  std::uint32_t key;
  std::memcpy(&key, rfc_key.data(), 4);
  for (std::size_t offset = 0; offset < 4; ++offset) {
    for (std::size_t len = 0; len < 40; ++len) {
      bytes data(len);
      for (std::size_t i = 0; i < len; ++i)
        data[i] = static_cast<std::uint8_t>(i * 7 + 3);
      bytes expected = data;
      for (std::size_t i = 0; i < len; ++i)
        expected[i] ^= rfc_key[(i + offset) % 4];
      mask_payload(data, key, offset);
      EXPECT_EQ(data, expected) << "offset " << offset << " len " << len;
    }
  }
}

TEST(MaskPayload, UnalignedSpanAndSplitCalls) {
  std::uint32_t key;
  std::memcpy(&key, rfc_key.data(), 4);
  bytes data(1003);
  for (std::size_t i = 0; i < data.size(); ++i)
    data[i] = static_cast<std::uint8_t>(i);
  bytes whole = data;
  mask_payload(std::span(whole).subspan(1), key);
  // The same bytes masked in two pieces, the second continuing at the right key offset.
  bytes split = data;
  mask_payload(std::span(split).subspan(1, 13), key);
  mask_payload(std::span(split).subspan(14), key, 13 % 4);
  EXPECT_EQ(whole, split);
  EXPECT_EQ(whole[0], 0);
  mask_payload(std::span(whole).subspan(1), key);
  EXPECT_EQ(whole, data);
}

// --- Reader: RFC 6455 section 5.7 examples --------------------------------------------------

TEST(FrameReader, MaskedTextRoundTrip) {
  const bytes frame = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  EXPECT_EQ(client_frame(0x81, "Hello"), frame);
  const auto events = feed(role::server, frame);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], message(opcode::text, "Hello"));
}

TEST(FrameReader, PayloadIsUnmaskedInPlaceInTheInput) {
  bytes frame = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
  frame_reader r(role::server, default_max);
  const auto ev = r.next(frame);
  ASSERT_EQ(ev.what, kind::message);
  EXPECT_EQ(ev.consumed, frame.size());
  EXPECT_EQ(ev.op, opcode::text);
  EXPECT_EQ(ev.payload.data(), frame.data() + 6);
  EXPECT_EQ(std::string(frame.begin() + 6, frame.end()), "Hello");
}

TEST(FrameReader, UnmaskedTextInClientRole) {
  const bytes frame = {0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f};
  EXPECT_EQ(server_frame(0x81, "Hello"), frame);
  const auto events = feed(role::client, frame);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], message(opcode::text, "Hello"));
}

TEST(FrameReader, ServerRejectsUnmaskedFrame) {
  expect_error(feed(role::server, server_frame(0x81, "Hello")), close_code::protocol_error);
}

TEST(FrameReader, ClientRejectsMaskedFrame) {
  expect_error(feed(role::client, client_frame(0x81, "Hello")), close_code::protocol_error);
  expect_error(feed(role::client, client_frame(0x89, "")), close_code::protocol_error);
}

TEST(FrameReader, FragmentedMessageWithPingInTheMiddle) {
  // RFC 6455 5.7: "Hel" then "lo", here with a ping and a pong between the fragments.
  bytes data = client_frame(0x01, "Hel");
  append(data, client_frame(0x89, "are you there"));
  append(data, client_frame(0x8a, "pong"));
  append(data, client_frame(0x80, "lo"));
  append(data, client_frame(0x82, "next"));
  const auto events = feed(role::server, data);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0], (seen{kind::ping, opcode::text, "are you there", 0, {}}));
  EXPECT_EQ(events[1], (seen{kind::pong, opcode::text, "pong", 0, {}}));
  EXPECT_EQ(events[2], message(opcode::text, "Hello"));
  EXPECT_EQ(events[3], message(opcode::binary, "next"));
}

TEST(FrameReader, FragmentedEventsAndAssemblyLifetime) {
  bytes data = client_frame(0x02, "ab");
  append(data, client_frame(0x00, "cd"));
  append(data, client_frame(0x80, "ef"));
  append(data, client_frame(0x81, "x"));
  frame_reader r(role::server, default_max);
  std::span<std::uint8_t> in(data);

  auto ev = r.next(in);
  ASSERT_EQ(ev.what, kind::skipped);
  EXPECT_EQ(ev.consumed, 8u);
  EXPECT_EQ(r.assembling(), 2u);
  in = in.subspan(ev.consumed);

  ev = r.next(in);
  ASSERT_EQ(ev.what, kind::skipped);
  EXPECT_EQ(r.assembling(), 4u);
  in = in.subspan(ev.consumed);

  ev = r.next(in);
  ASSERT_EQ(ev.what, kind::message);
  EXPECT_EQ(ev.op, opcode::binary);
  const auto payload = ev.payload;
  // Points into the reader's buffer, not the input, and is still intact.
  EXPECT_TRUE(payload.data() < data.data() || payload.data() >= data.data() + data.size());
  EXPECT_EQ(std::string(payload.begin(), payload.end()), "abcdef");
  in = in.subspan(ev.consumed);

  ev = r.next(in);
  ASSERT_EQ(ev.what, kind::message);
  EXPECT_EQ(ev.op, opcode::text);
  EXPECT_EQ(r.assembling(), 0u);
  EXPECT_TRUE(r.next(in.subspan(ev.consumed)).what == kind::need_more);
}

TEST(FrameReader, EmptyFragmentsMakeAnEmptyMessage) {
  bytes data = client_frame(0x01, "");
  append(data, client_frame(0x00, ""));
  append(data, client_frame(0x80, ""));
  const auto events = feed(role::server, data);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], message(opcode::text, ""));
}

TEST(FrameReader, CloseBetweenFragments) {
  bytes data = client_frame(0x01, "Hel");
  append(data, client_frame(0x88, close_body(1000, "bye")));
  const auto events = feed(role::server, data);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], (seen{kind::close, opcode::text, "", 1000, "bye"}));
}

TEST(FrameReader, ContinuationWithoutMessage) {
  expect_error(feed(role::server, client_frame(0x80, "x")), close_code::protocol_error);
  expect_error(feed(role::server, client_frame(0x00, "x")), close_code::protocol_error);
  // Also right after a completed fragmented message.
  bytes data = client_frame(0x01, "a");
  append(data, client_frame(0x80, "b"));
  append(data, client_frame(0x80, "c"));
  const auto events = feed(role::server, data);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0], message(opcode::text, "ab"));
  expect_error(events, close_code::protocol_error);
}

TEST(FrameReader, NewMessageInsideFragmentedMessage) {
  bytes data = client_frame(0x01, "a");
  append(data, client_frame(0x81, "b"));
  expect_error(feed(role::server, data), close_code::protocol_error);
  data = client_frame(0x02, "a");
  append(data, client_frame(0x01, "b"));
  expect_error(feed(role::server, data), close_code::protocol_error);
}

// --- Reader: lengths ------------------------------------------------------------------------

TEST(FrameReader, SixteenBitLength) {
  // RFC 6455 5.7: 256 bytes binary message in a single unmasked frame.
  const std::string payload(256, 'z');
  bytes frame = {0x82, 0x7e, 0x01, 0x00};
  append(frame, to_bytes(payload));
  EXPECT_EQ(server_frame(0x82, payload), frame);
  auto events = feed(role::client, frame);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], message(opcode::binary, payload));

  const std::string text(65535, 'q');
  events = feed(role::server, client_frame(0x81, text));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], message(opcode::text, text));
}

TEST(FrameReader, SixtyFourBitLength) {
  // RFC 6455 5.7: 64 KiB binary message in a single unmasked frame.
  std::string payload(65536, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i)
    payload[i] = static_cast<char>(i * 31);
  bytes frame = {0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00};
  append(frame, to_bytes(payload));
  EXPECT_EQ(server_frame(0x82, payload), frame);
  const auto client_events = feed_all(frame_reader(role::client, default_max), frame);
  ASSERT_EQ(client_events.size(), 1u);
  EXPECT_EQ(client_events[0], message(opcode::binary, payload));

  const auto events = feed(role::server, client_frame(0x82, payload));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], message(opcode::binary, payload));
}

TEST(FrameReader, NonMinimalLengthAccepted) {
  bytes frame = {0x81, 0x7e, 0x00, 0x02, 'h', 'i'};
  auto events = feed(role::client, frame);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], message(opcode::text, "hi"));

  frame = {0x81, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x02, 'h', 'i'};
  events = feed(role::client, frame);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], message(opcode::text, "hi"));
}

TEST(FrameReader, SixtyFourBitLengthWithTopBitRejected) {
  const bytes frame = {0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0x01};
  frame_reader r(role::server, SIZE_MAX);
  bytes in = frame;
  const auto ev = r.next(in);
  EXPECT_EQ(ev.what, kind::error);
  EXPECT_EQ(ev.code, close_code::protocol_error);
}

TEST(FrameReader, NeedMoreForEveryPrefix) {
  bytes frame = client_frame(0x82, std::string(300, 'x'));
  for (std::size_t n = 0; n < frame.size(); ++n) {
    bytes prefix(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(n));
    frame_reader r(role::server, default_max);
    const auto ev = r.next(prefix);
    ASSERT_EQ(ev.what, kind::need_more) << n;
    ASSERT_EQ(ev.consumed, 0u) << n;
    // Nothing was unmasked: the caller may re-feed the same bytes.
    ASSERT_TRUE(std::equal(prefix.begin(), prefix.end(), frame.begin())) << n;
  }
}

TEST(FrameReader, SeveralFramesInOneBuffer) {
  bytes data = client_frame(0x81, "one");
  append(data, client_frame(0x82, "two"));
  append(data, client_frame(0x89, ""));
  append(data, client_frame(0x81, "three"));
  data.push_back(0x81);  // start of a frame that is not complete
  bytes buf = data;
  std::vector<seen> events;
  frame_reader r(role::server, default_max);
  drain(r, buf, events);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0], message(opcode::text, "one"));
  EXPECT_EQ(events[1], message(opcode::binary, "two"));
  EXPECT_EQ(events[2], (seen{kind::ping, opcode::text, "", 0, {}}));
  EXPECT_EQ(events[3], message(opcode::text, "three"));
  EXPECT_EQ(buf, bytes{0x81});
}

// --- Reader: size limits --------------------------------------------------------------------

TEST(FrameReader, OversizedHeaderRejectedBeforePayloadArrives) {
  // A client announcing 1 GiB: rejected from the 14 header bytes alone.
  bytes header = {0x82, 0xff, 0, 0, 0, 0, 0x40, 0, 0, 0};
  header.insert(header.end(), rfc_key.begin(), rfc_key.end());
  frame_reader r(role::server, 1024 * 1024);
  auto ev = r.next(header);
  EXPECT_EQ(ev.what, kind::error);
  EXPECT_EQ(ev.code, close_code::too_big);
  EXPECT_EQ(r.assembling(), 0u);

  // Even before the mask key is in.
  bytes partial(header.begin(), header.begin() + 10);
  frame_reader r2(role::server, 1024 * 1024);
  ev = r2.next(partial);
  EXPECT_EQ(ev.what, kind::error);
  EXPECT_EQ(ev.code, close_code::too_big);

  // 16-bit length above a small limit.
  bytes small = {0x81, 0xfe, 0x01, 0x00};
  frame_reader r3(role::server, 255);
  ev = r3.next(small);
  EXPECT_EQ(ev.what, kind::error);
  EXPECT_EQ(ev.code, close_code::too_big);
}

TEST(FrameReader, MessageAtTheLimitAcceptedAboveRejected) {
  auto events = feed(role::server, client_frame(0x82, std::string(100, 'a')), 100);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].what, kind::message);
  expect_error(feed(role::server, client_frame(0x82, std::string(101, 'a')), 100),
               close_code::too_big);
}

TEST(FrameReader, AssembledMessageTooBig) {
  bytes data = client_frame(0x02, std::string(60, 'a'));
  append(data, client_frame(0x00, std::string(40, 'b')));  // exactly 100 so far
  append(data, client_frame(0x80, "c"));
  const auto events = feed(role::server, data, 100);
  ASSERT_EQ(events.size(), 1u);
  expect_error(events, close_code::too_big);

  // At the limit exactly is fine.
  data = client_frame(0x02, std::string(60, 'a'));
  append(data, client_frame(0x80, std::string(40, 'b')));
  const auto ok = feed(role::server, data, 100);
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_EQ(ok[0], message(opcode::binary, std::string(60, 'a') + std::string(40, 'b')));
}

TEST(FrameReader, ControlFramesNotSubjectToMessageLimit) {
  const auto events = feed(role::server, client_frame(0x89, std::string(125, 'p')), 10);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].what, kind::ping);
}

TEST(FrameReader, OneMebibyteBinaryMessage) {
  std::string payload(1024 * 1024, '\0');
  for (std::size_t i = 0; i < payload.size(); ++i) {
    payload[i] = static_cast<char>((i * 2654435761u) >> 13);
  }
  // One frame, read at once and in uneven chunks.
  const bytes frame = client_frame(0x82, payload);
  auto events = feed_all(frame_reader(role::server, payload.size()), frame);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0] == message(opcode::binary, payload));

  frame_reader r(role::server, payload.size());
  bytes buf;
  events.clear();
  for (std::size_t pos = 0; pos < frame.size(); pos += 4093) {
    const auto end = std::min(frame.size(), pos + 4093);
    buf.insert(buf.end(), frame.begin() + static_cast<std::ptrdiff_t>(pos),
               frame.begin() + static_cast<std::ptrdiff_t>(end));
    drain(r, buf, events);
  }
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0] == message(opcode::binary, payload));

  // Four fragments.
  const std::size_t q = payload.size() / 4;
  bytes data = client_frame(0x02, std::string_view(payload).substr(0, q));
  append(data, client_frame(0x00, std::string_view(payload).substr(q, q)));
  append(data, client_frame(0x00, std::string_view(payload).substr(2 * q, q)));
  append(data, client_frame(0x80, std::string_view(payload).substr(3 * q)));
  events = feed_all(frame_reader(role::server, payload.size()), data);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_TRUE(events[0] == message(opcode::binary, payload));
}

// --- Reader: protocol errors ----------------------------------------------------------------

TEST(FrameReader, ReservedBitsRejected) {
  for (std::uint8_t rsv : {0x40, 0x20, 0x10}) {
    const auto b0 = static_cast<std::uint8_t>(0x81 | rsv);
    expect_error(feed(role::server, client_frame(b0, "x")), close_code::protocol_error);
  }
}

TEST(FrameReader, ReservedOpcodesRejected) {
  for (std::uint8_t op : {3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf}) {
    const auto b0 = static_cast<std::uint8_t>(0x80 | op);
    expect_error(feed(role::server, client_frame(b0, "")), close_code::protocol_error);
  }
}

TEST(FrameReader, ControlFrameRules) {
  expect_error(feed(role::server, client_frame(0x89, std::string(126, 'p'))),
               close_code::protocol_error);
  expect_error(feed(role::server, client_frame(0x09, "p")), close_code::protocol_error);
  expect_error(feed(role::server, client_frame(0x08, "")), close_code::protocol_error);
  // 125 bytes is the most a control frame may carry.
  const auto events = feed(role::server, client_frame(0x8a, std::string(125, 'p')));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], (seen{kind::pong, opcode::text, std::string(125, 'p'), 0, {}}));
}

TEST(FrameReader, ErrorBeforeTheWholeFrameArrives) {
  // Judged from the first two bytes; the rest never needs to arrive.
  const auto events =
      feed_bytewise(frame_reader(role::server, default_max), {0x81, 0x05, 'H', 'e', 'l', 'l', 'o'});
  ASSERT_EQ(events.size(), 1u);
  expect_error(events, close_code::protocol_error);
}

// --- Reader: UTF-8 --------------------------------------------------------------------------

TEST(FrameReader, InvalidUtf8Text) {
  expect_error(feed(role::server, client_frame(0x81, "abc\xed\xa0\x80")),
               close_code::invalid_payload);
  expect_error(feed(role::server, client_frame(0x81, "\xc3")), close_code::invalid_payload);
  // Binary messages are not checked.
  const auto events = feed(role::server, client_frame(0x82, "abc\xed\xa0\x80"));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], message(opcode::binary, "abc\xed\xa0\x80"));
}

TEST(FrameReader, FragmentedUtf8SplitAcrossFragments) {
  // "€😀" with fragment boundaries inside both sequences.
  bytes data = client_frame(0x01, "a\xe2");
  append(data, client_frame(0x00, "\x82"));
  append(data, client_frame(0x00, "\xac\xf0\x9f"));
  append(data, client_frame(0x00, "\x98"));
  append(data, client_frame(0x80, "\x80z"));
  const auto events = feed(role::server, data);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], message(opcode::text, "a\xe2\x82\xac\xf0\x9f\x98\x80z"));
}

TEST(FrameReader, FragmentedInvalidUtf8) {
  // Fails fast at the bad fragment, before the message is complete.
  bytes data = client_frame(0x01, "ok");
  append(data, client_frame(0x00, "\xc0\xaf"));
  expect_error(feed(role::server, data), close_code::invalid_payload);

  // A surrogate cut by the fragment boundary.
  data = client_frame(0x01, "\xed");
  append(data, client_frame(0x00, "\xa0\x80"));
  expect_error(feed(role::server, data), close_code::invalid_payload);

  // Valid so far but the message ends inside a sequence.
  data = client_frame(0x01, "ok");
  append(data, client_frame(0x80, "\xf0\x9f\x98"));
  expect_error(feed(role::server, data), close_code::invalid_payload);
}

// --- Reader: close frames -------------------------------------------------------------------

TEST(FrameReader, CloseWithoutBody) {
  const auto events = feed(role::server, client_frame(0x88, ""));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], (seen{kind::close, opcode::text, "", close_code::no_status, ""}));
}

TEST(FrameReader, CloseWithCodeAndReason) {
  auto events = feed(role::server, client_frame(0x88, close_body(1000, "done \xe2\x9c\x93")));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], (seen{kind::close, opcode::text, "", 1000, "done \xe2\x9c\x93"}));

  events = feed(role::client, server_frame(0x88, close_body(4321)));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], (seen{kind::close, opcode::text, "", 4321, ""}));
}

TEST(FrameReader, CloseWithOneByteBody) {
  expect_error(feed(role::server, client_frame(0x88, "\x03")), close_code::protocol_error);
}

TEST(FrameReader, CloseCodes) {
  for (std::uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    expect_error(feed(role::server, client_frame(0x88, close_body(code))),
                 close_code::protocol_error);
  }
  for (std::uint16_t code :
       {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1014, 3000, 4999}) {
    const auto events = feed(role::server, client_frame(0x88, close_body(code)));
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].what, kind::close);
    EXPECT_EQ(events[0].code, code);
  }
}

TEST(FrameReader, CloseReasonInvalidUtf8) {
  expect_error(feed(role::server, client_frame(0x88, close_body(1000, "bad \xff"))),
               close_code::invalid_payload);
  expect_error(feed(role::server, client_frame(0x88, close_body(1000, "\xce"))),
               close_code::invalid_payload);
}

// --- Writer ---------------------------------------------------------------------------------

TEST(FrameWriter, HeaderLengthEncodings) {
  struct length_case {
    std::size_t size;
    bytes header;
  };
  const length_case cases[] = {
      {0, {0x82, 0x00}},
      {125, {0x82, 125}},
      {126, {0x82, 126, 0x00, 126}},
      {256, {0x82, 126, 0x01, 0x00}},
      {65535, {0x82, 126, 0xff, 0xff}},
      {65536, {0x82, 127, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}},
      {0x123456789ull, {0x82, 127, 0, 0, 0, 0x01, 0x23, 0x45, 0x67, 0x89}},
  };
  for (const auto& c : cases) {
    const auto h = make_header(opcode::binary, static_cast<std::size_t>(c.size));
    EXPECT_EQ(bytes(h.view().begin(), h.view().end()), c.header) << c.size;
  }
  const auto h = make_header(opcode::text, 3, false);
  EXPECT_EQ(bytes(h.view().begin(), h.view().end()), (bytes{0x01, 0x03}));
  const auto c = make_header(opcode::continuation, 3, true);
  EXPECT_EQ(bytes(c.view().begin(), c.view().end()), (bytes{0x80, 0x03}));
}

TEST(FrameWriter, MaskedHeaderMatchesRfc) {
  std::uint32_t key;
  std::memcpy(&key, rfc_key.data(), 4);
  const auto h = make_header(opcode::text, 5, true, &key);
  bytes frame(h.view().begin(), h.view().end());
  bytes payload = to_bytes("Hello");
  mask_payload(payload, key);
  append(frame, payload);
  EXPECT_EQ(frame, (bytes{0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58}));
}

TEST(FrameWriter, MaskedFramesRoundTripThroughServerReader) {
  const std::uint32_t keys[] = {0, 0xdeadbeef, 0x01020304, 0xffffffff};
  for (std::uint32_t key : keys) {
    for (std::size_t size : {0u, 1u, 7u, 125u, 126u, 1000u, 65535u, 65536u, 70001u}) {
      std::string payload(size, '\0');
      for (std::size_t i = 0; i < size; ++i)
        payload[i] = static_cast<char>('a' + i % 26);
      const auto h = make_header(opcode::text, size, true, &key);
      ASSERT_EQ(h.size, (size < 126 ? 2u : size <= 65535 ? 4u : 10u) + 4u);
      bytes frame(h.view().begin(), h.view().end());
      bytes body = to_bytes(payload);
      mask_payload(body, key);
      append(frame, body);
      const auto events = feed_all(frame_reader(role::server, default_max), frame);
      ASSERT_EQ(events.size(), 1u) << size;
      EXPECT_TRUE(events[0] == message(opcode::text, payload)) << key << " " << size;
    }
  }
}

TEST(FrameWriter, AppendFrameReadByClient) {
  std::string out;
  append_frame(out, opcode::text, "Hel", false);
  append_frame(out, opcode::ping, "hi");
  append_frame(out, opcode::continuation, "lo");
  append_frame(out, opcode::binary, std::string(70000, 'b'));
  const auto events = feed_all(frame_reader(role::client, default_max), to_bytes(out));
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0], (seen{kind::ping, opcode::text, "hi", 0, {}}));
  EXPECT_EQ(events[1], message(opcode::text, "Hello"));
  EXPECT_TRUE(events[2] == message(opcode::binary, std::string(70000, 'b')));
  EXPECT_EQ(static_cast<std::uint8_t>(out[0]), 0x01);  // no FIN, no mask
  EXPECT_EQ(static_cast<std::uint8_t>(out[1]), 0x03);
}

TEST(FrameWriter, AppendClose) {
  std::string out;
  append_close(out, close_code::normal, "bye");
  EXPECT_EQ(out, std::string("\x88\x05\x03\xe8"
                             "bye"));
  const auto events = feed_all(frame_reader(role::client, default_max), to_bytes(out));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0], (seen{kind::close, opcode::text, "", 1000, "bye"}));
}

TEST(FrameWriter, AppendCloseNoStatusSendsEmptyBody) {
  std::string out;
  append_close(out, close_code::no_status, "ignored");
  EXPECT_EQ(out, std::string("\x88\x00", 2));
}

TEST(FrameWriter, AppendCloseTruncatesReasonOnCharacterBoundary) {
  std::string out;
  append_close(out, close_code::going_away, std::string(200, 'r'));
  ASSERT_EQ(out.size(), 2u + 125u);
  EXPECT_EQ(static_cast<std::uint8_t>(out[1]), 125);

  // 2-byte characters: 123 would cut one in half, so 122 bytes of reason.
  std::string accents;
  for (int i = 0; i < 100; ++i)
    accents += "\xc3\xa9";
  out.clear();
  append_close(out, close_code::policy_violation, accents);
  EXPECT_EQ(out.size(), 2u + 2u + 122u);
  // 4-byte characters after one ASCII byte: 1 + 30 * 4 = 121 fits, the 31st does not.
  std::string emoji = "x";
  for (int i = 0; i < 40; ++i)
    emoji += "\xf0\x9f\x98\x80";
  std::string out2;
  append_close(out2, close_code::internal_error, emoji);
  EXPECT_EQ(out2.size(), 2u + 2u + 121u);

  for (const std::string* frame : {&out, &out2}) {
    const auto events = feed_all(frame_reader(role::client, default_max), to_bytes(*frame));
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].what, kind::close);
    EXPECT_TRUE(is_valid_utf8(events[0].reason));
  }
}

}  // namespace
}  // namespace wsagent::protocol::websocket
