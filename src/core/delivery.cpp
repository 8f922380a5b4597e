#include "core/delivery.hpp"

#include <algorithm>

namespace wsagent::core {

delivery_window::held& delivery_window::state() {
  if (!h_) h_ = std::make_unique<held>();
  return *h_;
}

bool delivery_window::offer(message_ptr m, std::int64_t now_ms, std::vector<message_ptr>* dropped,
                            std::uint8_t qos, bool released, origin from) {
  auto& h = state();
  entry e{std::move(m), now_ms, false, qos, released, released || from == origin::restored};
  if (h.inflight.size() < max_inflight_ && h.queue.empty()) {
    e.sent = e.sent || from == origin::live;
    h.inflight.push_back(std::move(e));
    return true;
  }
  auto drop_front = [&] {
    h.queue_bytes -= h.queue.front().msg->payload.size();
    if (dropped) dropped->push_back(std::move(h.queue.front().msg));
    h.queue.pop_front();
    ++dropped_;
  };
  if (max_queued_ == 0) {  // nothing may wait
    ++dropped_;
    if (dropped) dropped->push_back(std::move(e.msg));
    return false;
  }
  if (h.queue.size() >= max_queued_) drop_front();
  h.queue_bytes += e.msg->payload.size();
  h.queue.push_back(std::move(e));
  // Over the byte limit: the oldest go, but the newest message always stays.
  while (max_queued_bytes_ && h.queue_bytes > max_queued_bytes_ && h.queue.size() > 1)
    drop_front();
  return false;
}

// Only called with h_ set (find() found an entry).
delivery_window::entries::iterator delivery_window::find(std::uint64_t seq) {
  return std::find_if(h_->inflight.begin(), h_->inflight.end(),
                      [&](const entry& e) { return e.msg->seq == seq; });
}

// Takes `it` out of flight and lets waiting messages in.
bool delivery_window::take_out(entries::iterator it, std::int64_t now_ms) {
  auto& h = *h_;
  h.inflight.erase(it);
  while (h.inflight.size() < max_inflight_ && !h.queue.empty()) {
    h.queue_bytes -= h.queue.front().msg->payload.size();
    h.inflight.push_back(std::move(h.queue.front()));
    h.queue.pop_front();
    h.inflight.back().sent_ms = now_ms;
    h.ready.push_back(h.inflight.back());  // its owner sends it now (the first time)
    h.inflight.back().sent = true;
  }
  return true;
}

bool delivery_window::ack(std::uint64_t seq, std::int64_t now_ms) {
  if (!h_) return false;
  auto it = find(seq);
  if (it == h_->inflight.end() || it->qos != 1) return false;
  return take_out(it, now_ms);
}

bool delivery_window::release(std::uint64_t seq, std::int64_t now_ms) {
  if (!h_) return false;
  auto it = find(seq);
  if (it == h_->inflight.end() || it->qos != 2 || it->released) return false;
  it->released = true;
  it->dup = false;
  it->sent_ms = now_ms;
  return true;
}

bool delivery_window::complete(std::uint64_t seq, std::int64_t now_ms) {
  if (!h_) return false;
  auto it = find(seq);
  if (it == h_->inflight.end() || !it->released) return false;
  return take_out(it, now_ms);
}

bool delivery_window::discard(std::uint64_t seq, std::int64_t now_ms) {
  if (!h_) return false;
  auto it = find(seq);
  return it != h_->inflight.end() && take_out(it, now_ms);
}

void delivery_window::take_ready(std::vector<entry>& out) {
  if (!h_) return;
  out.insert(out.end(), std::make_move_iterator(h_->ready.begin()),
             std::make_move_iterator(h_->ready.end()));
  h_->ready.clear();
}

void delivery_window::take_due(std::int64_t now_ms, std::int64_t retry_ms,
                               std::vector<entry>& out) {
  if (!h_) return;
  for (auto& e : h_->inflight) {
    if (now_ms - e.sent_ms < retry_ms) continue;
    e.sent_ms = now_ms;
    e.dup = e.sent;
    e.sent = true;
    out.push_back(e);
  }
}

void delivery_window::all(std::vector<message_ptr>& out) const {
  if (!h_) return;
  for (const auto& e : h_->inflight)
    out.push_back(e.msg);
  for (const auto& e : h_->queue)
    out.push_back(e.msg);
}

void delivery_window::unacknowledged(std::vector<message_ptr>& out) const {
  if (!h_) return;
  for (const auto& e : h_->inflight)
    if (!e.released) out.push_back(e.msg);
  for (const auto& e : h_->queue)
    out.push_back(e.msg);
}

void delivery_window::take_all(std::int64_t now_ms, std::vector<entry>& out) {
  if (!h_) return;
  for (auto& e : h_->inflight) {
    e.sent_ms = now_ms;
    e.dup = e.sent;  // a re-delivery, or the first time for what came while it was away
    e.sent = true;
    out.push_back(e);
  }
}

void delivery_window::absorb(delivery_window& other) {
  dropped_ += other.dropped_;
  if (!other.h_) return;
  if (!h_) {  // nothing of ours to keep in front: take other's containers whole
    h_ = std::move(other.h_);
    h_->ready.clear();
    return;
  }
  auto& o = *other.h_;
  for (auto& e : o.inflight)
    h_->inflight.push_back(std::move(e));
  for (auto& e : o.queue) {
    h_->queue_bytes += e.msg->payload.size();
    h_->queue.push_back(std::move(e));
  }
  other.h_.reset();
}

std::optional<std::int64_t> delivery_window::next_due(std::int64_t retry_ms) const {
  if (!h_ || h_->inflight.empty()) return std::nullopt;
  std::int64_t first = h_->inflight.front().sent_ms;
  for (const auto& e : h_->inflight)
    first = std::min(first, e.sent_ms);
  return first + retry_ms;
}

}  // namespace wsagent::core
