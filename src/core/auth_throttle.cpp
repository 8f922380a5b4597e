#include "core/auth_throttle.hpp"

#include <iterator>

namespace wsagent::core {

std::string_view ip_of(std::string_view remote) noexcept {
  if (!remote.empty() && remote.front() == '[') {
    const auto close = remote.find(']');
    return close == std::string_view::npos ? remote : remote.substr(1, close - 1);
  }
  const auto colon = remote.rfind(':');
  return colon == std::string_view::npos ? remote : remote.substr(0, colon);
}

std::int64_t auth_throttle::penalty_left(std::string_view ip, std::int64_t now_ms) {
  if (settings_.max_failures <= 0) return 0;
  common::lock lock(mutex_);
  auto it = by_ip_.find(std::string(ip));
  if (it == by_ip_.end() || it->second.blocked_until <= now_ms) return 0;
  refused.fetch_add(1, std::memory_order_relaxed);
  return it->second.blocked_until - now_ms;
}

bool auth_throttle::failed(std::string_view ip, std::int64_t now_ms) {
  if (settings_.max_failures <= 0) return false;
  common::lock lock(mutex_);
  purge(now_ms);
  auto& e = by_ip_[std::string(ip)];
  if (e.blocked_until > now_ms) return false;  // refused already; not a new penalty
  if (e.failures == 0 || now_ms - e.window_start >= settings_.window_ms) {
    e.failures = 0;
    e.window_start = now_ms;
  }
  if (++e.failures < settings_.max_failures) return false;
  e.failures = 0;
  e.blocked_until = now_ms + settings_.penalty_ms;
  penalties.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void auth_throttle::purge(std::int64_t now_ms) {
  if (now_ms < next_purge_ms_ && by_ip_.size() < settings_.max_addresses) return;
  next_purge_ms_ = now_ms + 1000;
  // What no longer counts: a window that ended, a penalty served.
  std::erase_if(by_ip_, [&](const auto& kv) {
    return kv.second.blocked_until <= now_ms &&
           now_ms - kv.second.window_start >= settings_.window_ms;
  });
  // Still too many (a flood from many addresses): drop entries outside a penalty first.
  for (auto it = by_ip_.begin(); by_ip_.size() >= settings_.max_addresses && it != by_ip_.end();)
    it = it->second.blocked_until > now_ms ? std::next(it) : by_ip_.erase(it);
}

}  // namespace wsagent::core
