#pragma once
// The agent's two clocks, and a manual one the tests put in their place.

#include <atomic>
#include <cstdint>

namespace wsagent::common {

// Milliseconds since the Unix epoch (wall clock): the `timestamp` of messages.
std::int64_t now_ms() noexcept;

// Milliseconds of a monotonic clock: timeouts and intervals.
std::int64_t steady_ms() noexcept;

// A clock that moves only when told: while one exists, now_ms() and steady_ms() read it
// (the real path pays one atomic load). For tests of timing without sleeps; at most one at a
// time, created and destroyed on the test's thread.
class manual_clock {
 public:
  explicit manual_clock(std::int64_t wall_ms = 1'800'000'000'000,
                        std::int64_t steady_ms = 1'000'000);
  ~manual_clock();
  manual_clock(const manual_clock&) = delete;
  manual_clock& operator=(const manual_clock&) = delete;

  void advance(std::int64_t ms) noexcept {
    wall_.fetch_add(ms, std::memory_order_relaxed);
    steady_.fetch_add(ms, std::memory_order_relaxed);
  }
  std::int64_t wall() const noexcept { return wall_.load(std::memory_order_relaxed); }
  std::int64_t steady() const noexcept { return steady_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> wall_, steady_;
};

}  // namespace wsagent::common
