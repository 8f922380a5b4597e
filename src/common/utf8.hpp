#pragma once
// UTF-8 validation (Unicode 15, table 3-7): no overlongs, no surrogates, nothing above
// U+10FFFF. Used for WebSocket text frames and for tags.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace wsagent::common {

enum class utf8_status {
  valid,
  invalid,
  truncated,  // valid so far, but the input ends inside a sequence that could still complete
};

// Validates p[0..n); `truncated` is what fragment-by-fragment checking needs.
utf8_status check_utf8(const std::uint8_t* p, std::size_t n) noexcept;

bool is_valid_utf8(std::string_view bytes) noexcept;

}  // namespace wsagent::common
