#include "core/delivery.hpp"

#include <algorithm>

namespace wsagent::core {

bool delivery_window::offer(message_ptr m, std::int64_t now_ms, std::vector<message_ptr>* dropped,
                            std::uint8_t qos, bool released) {
  entry e{std::move(m), now_ms, false, qos, released};
  if (inflight_.size() < max_inflight_ && queue_.empty()) {
    inflight_.push_back(std::move(e));
    return true;
  }
  auto drop_front = [&] {
    queue_bytes_ -= queue_.front().msg->payload.size();
    if (dropped) dropped->push_back(std::move(queue_.front().msg));
    queue_.pop_front();
    ++dropped_;
  };
  if (max_queued_ == 0) {  // nothing may wait
    ++dropped_;
    if (dropped) dropped->push_back(std::move(e.msg));
    return false;
  }
  if (queue_.size() >= max_queued_) drop_front();
  queue_bytes_ += e.msg->payload.size();
  queue_.push_back(std::move(e));
  // Over the byte limit: the oldest go, but the newest message always stays.
  while (max_queued_bytes_ && queue_bytes_ > max_queued_bytes_ && queue_.size() > 1)
    drop_front();
  return false;
}

delivery_window::entries::iterator delivery_window::find(std::uint64_t seq) {
  return std::find_if(inflight_.begin(), inflight_.end(),
                      [&](const entry& e) { return e.msg->seq == seq; });
}

// Takes `it` out of flight and lets waiting messages in.
bool delivery_window::take_out(entries::iterator it, std::int64_t now_ms) {
  inflight_.erase(it);
  while (inflight_.size() < max_inflight_ && !queue_.empty()) {
    queue_bytes_ -= queue_.front().msg->payload.size();
    inflight_.push_back(std::move(queue_.front()));
    queue_.pop_front();
    inflight_.back().sent_ms = now_ms;
    ready_.push_back(inflight_.back());
  }
  return true;
}

bool delivery_window::ack(std::uint64_t seq, std::int64_t now_ms) {
  auto it = find(seq);
  if (it == inflight_.end() || it->qos != 1) return false;
  return take_out(it, now_ms);
}

bool delivery_window::release(std::uint64_t seq, std::int64_t now_ms) {
  auto it = find(seq);
  if (it == inflight_.end() || it->qos != 2 || it->released) return false;
  it->released = true;
  it->dup = false;
  it->sent_ms = now_ms;
  return true;
}

bool delivery_window::complete(std::uint64_t seq, std::int64_t now_ms) {
  auto it = find(seq);
  if (it == inflight_.end() || !it->released) return false;
  return take_out(it, now_ms);
}

bool delivery_window::discard(std::uint64_t seq, std::int64_t now_ms) {
  auto it = find(seq);
  return it != inflight_.end() && take_out(it, now_ms);
}

void delivery_window::take_ready(std::vector<entry>& out) {
  out.insert(out.end(), std::make_move_iterator(ready_.begin()),
             std::make_move_iterator(ready_.end()));
  ready_.clear();
}

void delivery_window::take_due(std::int64_t now_ms, std::int64_t retry_ms,
                               std::vector<entry>& out) {
  for (auto& e : inflight_) {
    if (now_ms - e.sent_ms < retry_ms) continue;
    e.sent_ms = now_ms;
    e.dup = true;
    out.push_back(e);
  }
}

void delivery_window::all(std::vector<message_ptr>& out) const {
  for (const auto& e : inflight_)
    out.push_back(e.msg);
  for (const auto& e : queue_)
    out.push_back(e.msg);
}

void delivery_window::unacknowledged(std::vector<message_ptr>& out) const {
  for (const auto& e : inflight_)
    if (!e.released) out.push_back(e.msg);
  for (const auto& e : queue_)
    out.push_back(e.msg);
}

void delivery_window::take_all(std::int64_t now_ms, std::vector<entry>& out) {
  for (auto& e : inflight_) {
    e.sent_ms = now_ms;
    e.dup = true;
    out.push_back(e);
  }
}

void delivery_window::absorb(delivery_window& other) {
  for (auto& e : other.inflight_)
    inflight_.push_back(std::move(e));
  for (auto& e : other.queue_) {
    queue_bytes_ += e.msg->payload.size();
    queue_.push_back(std::move(e));
  }
  other.queue_bytes_ = 0;
  dropped_ += other.dropped_;
  other.inflight_.clear();
  other.queue_.clear();
  other.ready_.clear();
}

std::optional<std::int64_t> delivery_window::next_due(std::int64_t retry_ms) const {
  if (inflight_.empty()) return std::nullopt;
  std::int64_t first = inflight_.front().sent_ms;
  for (const auto& e : inflight_)
    first = std::min(first, e.sent_ms);
  return first + retry_ms;
}

}  // namespace wsagent::core
