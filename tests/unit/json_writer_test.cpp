#include "common/json_writer.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace {

using wsagent::common::json_append_string;

// The escaping rule, one byte at a time, as RFC 8259 section 7 states it.
std::string reference(std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"') {
      out += "\\\"";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\b') {
      out += "\\b";
    } else if (c == '\f') {
      out += "\\f";
    } else if (c < 0x20) {
      out += "\\u00";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string escaped(std::string_view s) {
  std::string out;
  json_append_string(out, s);
  return out;
}

TEST(JsonAppendString, EscapesWhatJsonRequiresAndNothingElse) {
  EXPECT_EQ(escaped(""), "\"\"");
  EXPECT_EQ(escaped("plant1/line3/temp"), "\"plant1/line3/temp\"");
  EXPECT_EQ(escaped("a\"b\\c\nd"), "\"a\\\"b\\\\c\\nd\"");
  EXPECT_EQ(escaped(std::string("\x01\x1f\x7f", 3)), "\"\\u0001\\u001f\x7f\"");
  EXPECT_EQ(escaped("caf\xc3\xa9 \xe2\x82\xac"), "\"caf\xc3\xa9 \xe2\x82\xac\"");  // UTF-8 as is
  // A byte to escape at every position of a word and past it.
  for (std::size_t at = 0; at < 20; ++at) {
    std::string s(20, 'x');
    s[at] = '"';
    EXPECT_EQ(escaped(s), reference(s)) << at;
  }
}

TEST(JsonAppendString, MatchesTheByteRuleOnRandomInput) {
  std::mt19937 rng(7);
  // Bytes near the boundaries the word-at-a-time test checks: 0x1f/0x20, '"', '\\', 0x80+.
  const unsigned char alphabet[] = {0x00, 0x08, 0x1f, 0x20, 0x21, '"',  '#',  '[',  '\\',
                                    ']',  'a',  0x7f, 0x80, 0x9f, 0xa0, 0xa2, 0xdc, 0xff};
  for (int round = 0; round < 20000; ++round) {
    std::string s(rng() % 40, '\0');
    for (auto& c : s)
      c = static_cast<char>(rng() % 3 ? alphabet[rng() % sizeof alphabet] : 'a' + rng() % 26);
    ASSERT_EQ(escaped(s), reference(s)) << round;
  }
}

}  // namespace
