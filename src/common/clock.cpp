#include "common/clock.hpp"

#include <chrono>
#include <stdexcept>

namespace wsagent::common {

namespace {
std::atomic<const manual_clock*> installed{nullptr};
}  // namespace

manual_clock::manual_clock(std::int64_t wall_ms, std::int64_t steady_ms)
    : wall_(wall_ms), steady_(steady_ms) {
  const manual_clock* none = nullptr;
  if (!installed.compare_exchange_strong(none, this))
    throw std::logic_error("manual_clock: one is installed already");
}

manual_clock::~manual_clock() {
  installed.store(nullptr);
}

std::int64_t now_ms() noexcept {
  if (const auto* c = installed.load(std::memory_order_acquire)) return c->wall();
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::int64_t steady_ms() noexcept {
  if (const auto* c = installed.load(std::memory_order_acquire)) return c->steady();
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

}  // namespace wsagent::common
