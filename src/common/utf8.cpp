#include "common/utf8.hpp"

#include <cstring>

namespace wsagent::common {
namespace {

constexpr bool is_cont(std::uint8_t b) noexcept {
  return (b & 0xc0) == 0x80;
}

}  // namespace

utf8_status check_utf8(const std::uint8_t* p, std::size_t n) noexcept {
  std::size_t i = 0;
  while (i < n) {
    // ASCII fast path, 8 bytes at a time.
    while (n - i >= 8) {
      std::uint64_t v;
      std::memcpy(&v, p + i, 8);
      if ((v & 0x8080808080808080ULL) != 0) break;
      i += 8;
    }
    if (i == n) break;
    const std::uint8_t c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    // Unicode 15, table 3-7: the allowed range of the second byte depends on the lead byte,
    // which rules out overlongs, surrogates and code points above U+10FFFF.
    std::size_t len;
    std::uint8_t lo = 0x80, hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;
      if (c == 0xed) hi = 0x9f;
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;
      if (c == 0xf4) hi = 0x8f;
    } else {
      return utf8_status::invalid;
    }
    const std::size_t avail = n - i;
    if (avail >= 2 && (p[i + 1] < lo || p[i + 1] > hi)) return utf8_status::invalid;
    for (std::size_t k = 2; k < len && k < avail; ++k) {
      if (!is_cont(p[i + k])) return utf8_status::invalid;
    }
    if (avail < len) return utf8_status::truncated;
    i += len;
  }
  return utf8_status::valid;
}

bool is_valid_utf8(std::string_view bytes) noexcept {
  return check_utf8(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()) ==
         utf8_status::valid;
}

}  // namespace wsagent::common
