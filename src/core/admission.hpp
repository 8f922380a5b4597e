#pragma once
// Admission control for reconnect storms (issue 14): when a node dies its clients reconnect
// to the survivors at once, and each authentication costs (a token or a JWT checked, a
// session claimed in the cluster). The survivors take at most limits.max_auth_rate new
// authentications per second (a token bucket, one second of burst) and at most
// limits.max_pending_auths at once; the others are refused at once with a retry delay that
// grows with the overload and is spread at random, so the storm settles instead of coming
// back all together (native: close 1013 "Try again later: retry in N ms"; MQTT 5: CONNACK
// 0x9F; 3.1.1: CONNACK 3). docs/configuration.md, docs/cluster.md.
//
// Thread rule: everything is under the admission's mutex; any thread.

#include <atomic>
#include <cstdint>
#include <random>

#include "common/mutex.hpp"

namespace wsagent::core {

struct admission_settings {
  int max_rate = 0;     // authentications per second; 0: no limit
  int max_pending = 0;  // authentications in progress at once; 0: no limit
};

class admission {
 public:
  explicit admission(admission_settings s) : settings_(s), tokens_(s.max_rate) {}

  bool enabled() const noexcept { return settings_.max_rate > 0 || settings_.max_pending > 0; }
  // One more authentication at steady time `now_ms`: true and counted as pending (finish()
  // it), or false with the delay the client should wait, in `retry_ms`.
  bool try_begin(std::int64_t now_ms, std::int64_t& retry_ms) EXCLUDES(mutex_);
  void finish() EXCLUDES(mutex_);

  std::atomic<std::uint64_t> refused{0};

 private:
  const admission_settings settings_;
  common::mutex mutex_;
  double tokens_ GUARDED_BY(mutex_);
  std::int64_t last_ms_ GUARDED_BY(mutex_) = 0;
  int pending_ GUARDED_BY(mutex_) = 0;
  std::int64_t refused_recently_ GUARDED_BY(mutex_) = 0;  // decays: the storm's size
  std::minstd_rand jitter_ GUARDED_BY(mutex_){std::random_device{}()};
};

}  // namespace wsagent::core
