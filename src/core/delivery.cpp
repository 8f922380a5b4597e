#include "core/delivery.hpp"

#include <algorithm>

namespace wsagent::core {

bool delivery_window::offer(message_ptr m, std::int64_t now_ms, std::vector<message_ptr>* dropped) {
  if (inflight_.size() < max_inflight_ && queue_.empty()) {
    inflight_.push_back({std::move(m), now_ms, false});
    return true;
  }
  auto drop_front = [&] {
    queue_bytes_ -= queue_.front()->payload.size();
    if (dropped) dropped->push_back(std::move(queue_.front()));
    queue_.pop_front();
    ++dropped_;
  };
  if (max_queued_ == 0) {  // nothing may wait
    ++dropped_;
    if (dropped) dropped->push_back(std::move(m));
    return false;
  }
  if (queue_.size() >= max_queued_) drop_front();
  queue_bytes_ += m->payload.size();
  queue_.push_back(std::move(m));
  // Over the byte limit: the oldest go, but the newest message always stays.
  while (max_queued_bytes_ && queue_bytes_ > max_queued_bytes_ && queue_.size() > 1)
    drop_front();
  return false;
}

bool delivery_window::ack(std::uint64_t seq, std::int64_t now_ms) {
  auto it = std::find_if(inflight_.begin(), inflight_.end(),
                         [&](const entry& e) { return e.msg->seq == seq; });
  if (it == inflight_.end()) return false;
  inflight_.erase(it);
  while (inflight_.size() < max_inflight_ && !queue_.empty()) {
    queue_bytes_ -= queue_.front()->payload.size();
    inflight_.push_back({std::move(queue_.front()), now_ms, false});
    queue_.pop_front();
    ready_.push_back(inflight_.back());
  }
  return true;
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
  out.insert(out.end(), queue_.begin(), queue_.end());
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
  for (auto& m : other.queue_) {
    queue_bytes_ += m->payload.size();
    queue_.push_back(std::move(m));
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
