#pragma once
// Internal to the MQTT codec (codec.cpp, properties.cpp): the primitive writers and the
// reader of a packet body's fields. Not part of the codec's interface.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/utf8.hpp"
#include "protocol/mqtt/codec.hpp"

namespace wsagent::protocol::mqtt::detail {

using bytes = std::span<const std::uint8_t>;

inline std::size_t varint_size(std::size_t n) {
  return n < 128 ? 1 : n < 16'384 ? 2 : n < 2'097'152 ? 3 : 4;
}

inline void put_varint(std::string& out, std::size_t n) {
  do {
    auto b = static_cast<std::uint8_t>(n % 128);
    n /= 128;
    if (n) b |= 0x80;
    out.push_back(static_cast<char>(b));
  } while (n);
}

inline void put_u16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v & 0xFF));
}

inline void put_str(std::string& out, std::string_view s) {
  put_u16(out, static_cast<std::uint16_t>(s.size()));
  out.append(s);
}

inline void put_bytes(std::string& out, bytes b) {
  put_u16(out, static_cast<std::uint16_t>(b.size()));
  out.append(reinterpret_cast<const char*>(b.data()), b.size());
}

inline void put_u32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

inline void put_header(std::string& out, packet_type t, std::uint8_t flags, std::size_t remaining) {
  out.push_back(static_cast<char>((static_cast<std::uint8_t>(t) << 4) | flags));
  put_varint(out, remaining);
}

// Reads the fields of a packet body in order; the first failure sticks.
class cursor {
 public:
  explicit cursor(bytes in) : in_(in) {}

  bool ok() const { return error_.message.empty(); }
  const parse_error& error() const { return error_; }
  std::size_t left() const { return in_.size() - at_; }
  bool at_end() const { return at_ == in_.size(); }

  void fail(std::uint8_t reason, std::string_view message) {
    if (ok()) error_ = {reason, message};
    at_ = in_.size();
  }

  std::uint8_t u8(std::string_view what) {
    if (left() < 1) return fail(reason::malformed_packet, what), 0;
    return in_[at_++];
  }
  std::uint16_t u16(std::string_view what) {
    if (left() < 2) return fail(reason::malformed_packet, what), 0;
    const auto v = static_cast<std::uint16_t>((in_[at_] << 8) | in_[at_ + 1]);
    at_ += 2;
    return v;
  }
  std::uint32_t u32(std::string_view what) {
    if (left() < 4) return fail(reason::malformed_packet, what), 0;
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i)
      v = (v << 8) | in_[at_ + static_cast<std::size_t>(i)];
    at_ += 4;
    return v;
  }
  // A variable byte integer (1.5.5): at most four bytes, the fewest that hold the value
  // ([MQTT-1.5.5-1]). `truncated`: the error when the input ends inside it; `too_long`: when
  // it runs past four bytes.
  std::uint32_t varint(std::string_view truncated, std::string_view too_long) {
    std::uint32_t n = 0;
    std::uint32_t mul = 1;
    for (int i = 0;; ++i) {
      if (i == 4) return fail(reason::malformed_packet, too_long), 0;
      const std::uint8_t b = u8(truncated);
      if (!ok()) return 0;
      if (i > 0 && b == 0) {  // a last byte of 0: one byte more than the value needs
        fail(reason::malformed_packet, "a variable byte integer not in its shortest form");
        return 0;
      }
      n += (b & 0x7Fu) * mul;
      mul *= 128;
      if (!(b & 0x80)) return n;
    }
  }
  std::uint32_t varint(std::string_view what) { return varint(what, what); }
  bytes binary(std::string_view what) {
    const std::size_t n = u16(what);
    if (!ok()) return {};
    if (left() < n) return fail(reason::malformed_packet, what), bytes{};
    const bytes b = in_.subspan(at_, n);
    at_ += n;
    return b;
  }
  // A UTF-8 encoded string (1.5.3 / 1.5.4): well-formed, no U+0000.
  std::string_view str(std::string_view what) {
    const bytes b = binary(what);
    if (!ok()) return {};
    const std::string_view s(reinterpret_cast<const char*>(b.data()), b.size());
    if (!common::is_valid_utf8(s) || s.find('\0') != std::string_view::npos)
      fail(reason::malformed_packet, "a string is not valid UTF-8 or holds U+0000");
    return s;
  }
  // 5.0 properties: a variable byte integer length, then that many bytes.
  bytes properties() {
    const std::size_t n = varint("truncated property length", "property length over four bytes");
    if (!ok()) return {};
    if (left() < n)
      return fail(reason::malformed_packet, "properties longer than the packet"), bytes{};
    const bytes b = in_.subspan(at_, n);
    at_ += n;
    return b;
  }
  bytes rest() {
    const bytes b = in_.subspan(at_);
    at_ = in_.size();
    return b;
  }
  std::size_t offset() const { return at_; }

 private:
  bytes in_;
  std::size_t at_ = 0;
  parse_error error_;
};

}  // namespace wsagent::protocol::mqtt::detail
