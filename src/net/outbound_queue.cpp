#include "net/outbound_queue.hpp"

#include <algorithm>

namespace wsagent::net {

bool outbound_queue::full() const noexcept {
  return waiting_bytes_ >= max_bytes_ || (max_items_ && waiting_messages_ >= max_items_);
}

void outbound_queue::drop_oldest() {
  auto it = std::find_if(items_.begin() + static_cast<std::ptrdiff_t>(in_flight_), items_.end(),
                         [](const item& i) { return i.droppable; });
  if (it == items_.end()) return;
  waiting_bytes_ -= it->size();
  --waiting_messages_;
  items_.erase(it);
}

std::size_t outbound_queue::push(item it) {
  std::size_t dropped = 0;
  if (it.droppable) {
    const auto size = it.size();
    while (waiting_messages_ > 0 && (waiting_bytes_ + size > max_bytes_ ||
                                     (max_items_ && waiting_messages_ + 1 > max_items_))) {
      drop_oldest();
      ++dropped;
    }
    waiting_bytes_ += size;
    ++waiting_messages_;
  }
  items_.push_back(std::move(it));
  return dropped;
}

void outbound_queue::push_front(item it) {
  if (it.droppable) {
    waiting_bytes_ += it.size();
    ++waiting_messages_;
  }
  items_.insert(items_.begin() + static_cast<std::ptrdiff_t>(in_flight_), std::move(it));
}

std::span<const outbound_queue::buffer> outbound_queue::gather() {
  gather_.clear();
  if (in_flight_ > 0 || items_.empty()) return {};
  stage_.clear();
  // First pass: how many items fit (bytes, buffers), and how many bytes are staged.
  std::size_t bytes = 0, n = 0, staged = 0, segments = 0;
  bool last_small = false;
  for (const auto& i : items_) {
    const std::size_t size = i.size();
    if (n > 0 && bytes + size > max_gather_bytes) break;
    // An item is one or two parts (a header of its own before shared bytes).
    std::size_t more = 0, copied = 0;
    bool small_end = last_small;
    for (const auto part : {i.first(), i.second()}) {
      if (part.empty()) continue;
      const bool small = part.size() <= copy_limit;
      more += small && small_end ? 0 : 1;
      small_end = small;
      copied += small ? part.size() : 0;
    }
    if (segments + more > max_gather) break;
    segments += more;
    last_small = small_end;
    staged += copied;
    bytes += size;
    ++n;
  }
  // Second pass: small parts are copied into stage_ (reserved once, so pointers into it
  // stay valid), consecutive ones as one buffer; large parts go from their own bytes.
  stage_.reserve(staged);
  last_small = false;
  auto it = items_.begin();
  for (std::size_t k = 0; k < n; ++k, ++it) {
    for (const auto b : {it->first(), it->second()}) {
      if (b.empty()) continue;
      if (b.size() <= copy_limit) {
        const char* at = stage_.data() + stage_.size();
        stage_.append(b);
        if (last_small)
          gather_.back().size += b.size();
        else
          gather_.push_back({at, b.size()});
        last_small = true;
      } else {
        gather_.push_back({b.data(), b.size()});
        last_small = false;
      }
    }
    if (it->droppable) {
      waiting_bytes_ -= it->size();
      --waiting_messages_;
    }
  }
  in_flight_ = n;
  if (gather_.empty()) {  // nothing but empty items (deliveries too large to send): gone
    written();
    return empty() ? std::span<const buffer>() : gather();
  }
  return gather_;
}

std::size_t outbound_queue::written(std::size_t* bytes) {
  const auto n = in_flight_;
  for (std::size_t i = 0; i < n; ++i) {
    if (bytes) *bytes += items_.front().size();
    items_.pop_front();
  }
  in_flight_ = 0;
  // A small write left the queue empty: not a burst, so give its block back (an idle
  // connection then holds none); a connection in a burst keeps it.
  if (items_.empty() && n <= 4) items().swap(items_);
  return n;
}

void outbound_queue::drop_waiting_messages() {
  for (auto it = items_.begin() + static_cast<std::ptrdiff_t>(in_flight_); it != items_.end();) {
    if (it->droppable) {
      waiting_bytes_ -= it->size();
      --waiting_messages_;
      it = items_.erase(it);
    } else {
      ++it;
    }
  }
}

void outbound_queue::shrink() {
  if (in_flight_ || !items_.empty()) return;
  items().swap(items_);
  std::string().swap(stage_);
  std::vector<buffer>().swap(gather_);
}

}  // namespace wsagent::net
