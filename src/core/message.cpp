#include "core/message.hpp"

#include <random>

namespace wsagent::core {

message::~message() {
  for (auto& slot : cache_)
    delete slot.load(std::memory_order_relaxed);
}

std::string make_msgid() {
  static const std::uint32_t prefix = [] {
    std::random_device rd;
    return static_cast<std::uint32_t>(rd());
  }();
  static std::atomic<std::uint64_t> counter{0};
  std::uint64_t n = counter.fetch_add(1, std::memory_order_relaxed);
  // Base 32 (shifts, not divisions). With the 9-character prefix an id fits std::string's
  // 15-byte inline buffer (no allocation) for the first 2^30 ids of a run.
  static constexpr char digits[] = "0123456789abcdefghijklmnopqrstuv";
  char buf[32];
  char* p = buf + sizeof buf;
  do {
    *--p = digits[n & 31];
    n >>= 5;
  } while (n);
  *--p = '-';
  for (int i = 0; i < 8; ++i)
    *--p = digits[(prefix >> (i * 4)) & 15];
  return std::string(p, buf + sizeof buf);
}

}  // namespace wsagent::core
