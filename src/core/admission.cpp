#include "core/admission.hpp"

#include <algorithm>

namespace wsagent::core {

bool admission::try_begin(std::int64_t now_ms, std::int64_t& retry_ms) {
  common::lock lock(mutex_);
  if (settings_.max_rate > 0) {
    if (last_ms_ == 0) last_ms_ = now_ms;
    const auto elapsed = static_cast<double>(std::max<std::int64_t>(0, now_ms - last_ms_));
    tokens_ = std::min(static_cast<double>(settings_.max_rate),
                       tokens_ + elapsed * settings_.max_rate / 1000.0);
    // The storm's size decays by half a second's worth of refusals per second.
    refused_recently_ = std::max<std::int64_t>(
        0, refused_recently_ - static_cast<std::int64_t>(elapsed * settings_.max_rate / 2000.0));
    last_ms_ = now_ms;
  }
  const bool rate_ok = settings_.max_rate <= 0 || tokens_ >= 1.0;
  const bool pending_ok = settings_.max_pending <= 0 || pending_ < settings_.max_pending;
  if (rate_ok && pending_ok) {
    if (settings_.max_rate > 0) tokens_ -= 1.0;
    ++pending_;
    return true;
  }
  ++refused_recently_;
  refused.fetch_add(1, std::memory_order_relaxed);
  // Not before the next token (or, waiting on the pending bound, a tenth of a second), then
  // spread over the time the refused so far need at the admitted rate (at least a second):
  // clients told to come back then arrive about as fast as they can be taken.
  const std::int64_t rate = std::max(1, settings_.max_rate > 0 ? settings_.max_rate : 100);
  const std::int64_t next_token =
      settings_.max_rate > 0 && tokens_ < 1.0
          ? static_cast<std::int64_t>((1.0 - tokens_) * 1000.0 / settings_.max_rate) + 1
          : 100;
  const std::int64_t span = std::max<std::int64_t>(1000, refused_recently_ * 1000 / rate);
  retry_ms = next_token + static_cast<std::int64_t>(jitter_() % static_cast<unsigned>(span));
  return false;
}

void admission::finish() {
  common::lock lock(mutex_);
  if (pending_ > 0) --pending_;
}

}  // namespace wsagent::core
