#pragma once
#include <cstdint>

namespace wsagent::common {

// Milliseconds since the Unix epoch (wall clock): the `timestamp` of messages.
std::int64_t now_ms() noexcept;

// Milliseconds of a monotonic clock: timeouts and intervals.
std::int64_t steady_ms() noexcept;

}  // namespace wsagent::common
