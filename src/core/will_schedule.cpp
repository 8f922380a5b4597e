#include "core/will_schedule.hpp"

#include "core/store_writer.hpp"

namespace wsagent::core {

void will_schedule::put(delayed_will w) {
  common::lock lock(mutex_);
  const auto& id = w.from->client_id();
  if (store_ && w.from->persistent())
    store_->submit({store_ops::put_will{{id, w.will, w.retain, w.due_ms}}});
  wills_[id] = std::move(w);
}

bool will_schedule::cancel(std::string_view client_id) {
  common::lock lock(mutex_);
  auto it = wills_.find(client_id);
  if (it == wills_.end()) return false;
  wills_.erase(it);
  if (store_) store_->submit({store_ops::drop_will{std::string(client_id)}});
  return true;
}

std::vector<delayed_will> will_schedule::take_due(std::int64_t now_ms) {
  std::vector<delayed_will> due;
  common::lock lock(mutex_);
  for (auto it = wills_.begin(); it != wills_.end();) {
    if (it->second.due_ms > now_ms) {
      ++it;
      continue;
    }
    if (store_) store_->submit({store_ops::drop_will{it->first}});
    due.push_back(std::move(it->second));
    it = wills_.erase(it);
  }
  return due;
}

std::vector<delayed_will> will_schedule::take(std::span<const std::string> client_ids) {
  std::vector<delayed_will> out;
  common::lock lock(mutex_);
  for (const auto& id : client_ids)
    if (auto it = wills_.find(id); it != wills_.end()) {
      out.push_back(std::move(it->second));
      wills_.erase(it);
      if (store_) store_->submit({store_ops::drop_will{id}});
    }
  return out;
}

void will_schedule::restore(std::vector<delayed_will> wills) {
  common::lock lock(mutex_);
  for (auto& w : wills) {
    auto id = w.from->client_id();
    wills_[id] = std::move(w);
  }
}

std::size_t will_schedule::size() const {
  common::lock lock(mutex_);
  return wills_.size();
}

}  // namespace wsagent::core
