#include "common/json_writer.hpp"

#include <charconv>
#include <cstdint>
#include <cstring>

#include "common/base64.hpp"

namespace wsagent::common {

namespace {

// True when one of the 8 bytes of `w` must be escaped in a JSON string: a control character
// (< 0x20), '"' or '\\'. Word-at-a-time tests, exact for the word as a whole (which byte is
// found by the byte loop).
inline bool needs_escape(std::uint64_t w) noexcept {
  constexpr std::uint64_t ones = 0x0101010101010101ull;
  constexpr std::uint64_t high = 0x8080808080808080ull;
  const std::uint64_t quote = w ^ (ones * '"');
  const std::uint64_t slash = w ^ (ones * '\\');
  const std::uint64_t below_space = (w - ones * 0x20) & ~w;
  return ((below_space | ((quote - ones) & ~quote) | ((slash - ones) & ~slash)) & high) != 0;
}

inline bool needs_escape(unsigned char c) noexcept {
  return c < 0x20 || c == '"' || c == '\\';
}

}  // namespace

void json_append_string(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out.push_back('"');
  std::size_t run = 0;  // start of the current run of bytes that need no escape
  std::size_t i = 0;
  const std::size_t n = s.size();
  while (i < n) {
    // Skip clean words, then find the byte.
    if (n - i >= 8) {
      std::uint64_t w;
      std::memcpy(&w, s.data() + i, 8);
      if (!needs_escape(w)) {
        i += 8;
        continue;
      }
    }
    const auto c = static_cast<unsigned char>(s[i]);
    if (!needs_escape(c)) {
      ++i;
      continue;
    }
    out.append(s.data() + run, i - run);
    run = ++i;
    switch (c) {
      case '"':
        out.append("\\\"");
        break;
      case '\\':
        out.append("\\\\");
        break;
      case '\n':
        out.append("\\n");
        break;
      case '\r':
        out.append("\\r");
        break;
      case '\t':
        out.append("\\t");
        break;
      case '\b':
        out.append("\\b");
        break;
      case '\f':
        out.append("\\f");
        break;
      default:
        out.append("\\u00");
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 15]);
    }
  }
  out.append(s.data() + run, n - run);
  out.push_back('"');
}

json_writer& json_writer::base64(std::string_view k, std::string_view bytes) {
  key(k);
  out_.push_back('"');
  base64_append(out_, bytes);
  out_.push_back('"');
  first_ = false;
  return *this;
}

json_writer& json_writer::integer(std::string_view k, std::int64_t v) {
  key(k);
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out_.append(buf, r.ptr);
  first_ = false;
  return *this;
}

}  // namespace wsagent::common
