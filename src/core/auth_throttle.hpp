#pragma once
// Failed authentications per remote address (limits.max_auth_failures): an address with that
// many failures within limits.auth_failure_window_s is refused for limits.auth_penalty_s
// without its credentials being looked at, so a client guessing passwords or tokens cannot
// run unbounded (at most max_auth_failures guesses per window and penalty). Counted and
// audited by the adapters (protocol/session_adapter.cpp); docs/configuration.md.
//
// Thread rule: everything is under the throttle's mutex; any thread (an authenticator may
// answer on its own).

#include <atomic>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/mutex.hpp"

namespace wsagent::core {

struct auth_throttle_settings {
  int max_failures = 10;  // 0: no limit
  std::int64_t window_ms = 60'000;
  std::int64_t penalty_ms = 30'000;
  std::size_t max_addresses = 100'000;  // tracked at once; past it the oldest entries go
};

class auth_throttle {
 public:
  explicit auth_throttle(auth_throttle_settings s = {}) : settings_(s) {}
  const auth_throttle_settings& settings() const noexcept { return settings_; }

  // How long `ip` is still refused at steady time `now_ms` (0: it is not).
  std::int64_t penalty_left(std::string_view ip, std::int64_t now_ms) EXCLUDES(mutex_);
  // A failed authentication from `ip`: true when it starts a penalty.
  bool failed(std::string_view ip, std::int64_t now_ms) EXCLUDES(mutex_);

  std::atomic<std::uint64_t> penalties{0};  // penalties begun
  std::atomic<std::uint64_t> refused{0};    // attempts refused during one

 private:
  struct entry {
    int failures = 0;
    std::int64_t window_start = 0, blocked_until = 0;
  };
  void purge(std::int64_t now_ms) REQUIRES(mutex_);

  auth_throttle_settings settings_;
  common::mutex mutex_;
  std::unordered_map<std::string, entry> by_ip_ GUARDED_BY(mutex_);
  std::int64_t next_purge_ms_ GUARDED_BY(mutex_) = 0;
};

// The address part of "address:port" ("[v6]:port" gives "v6").
std::string_view ip_of(std::string_view remote) noexcept;

}  // namespace wsagent::core
