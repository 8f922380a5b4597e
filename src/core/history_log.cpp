#include "core/history_log.hpp"

#include <algorithm>
#include <functional>
#include <string>

#include "common/clock.hpp"
#include "core/tag.hpp"

namespace wsagent::core {

history_log::history_log(history_config config)
    : filters_(config.filters), max_age_ms_(config.max_age_ms), history_(std::move(config)) {}

bool history_log::covers(std::string_view tag) const noexcept {
  return std::any_of(filters_.begin(), filters_.end(),
                     [&](const std::string& f) { return filter_matches(f, tag); });
}

common::mutex& history_log::stripe(std::string_view tag) noexcept {
  return order_[std::hash<std::string_view>{}(tag) % order_.size()];
}

// A tag's entries left (count or age): the store's go too, but the tag's last, which keeps
// its numbering across a restart.
void history_log::release_trimmed(const std::string& tag, const history::trimmed& t,
                                  std::vector<store_op>& ops, message_refs& refs) {
  ops.push_back(store_ops::trim_history{tag, t.below});
  refs.release(t.gone, ops);
}

bool history_log::append(const message_ptr& m, std::int64_t now_ms, std::vector<store_op>& ops,
                         message_refs& refs) {
  history::trimmed trimmed;
  {
    common::lock lock(mutex_);
    if (!history_.append(m, now_ms, trimmed)) return false;  // past history.max_tags
  }
  ops.push_back(store_ops::append_history{{m->tag, m->offset, m->seq}});
  if (!trimmed.evicted.empty())
    ops.push_back(store_ops::trim_history{std::move(trimmed.evicted), UINT64_MAX});
  refs.add(m->seq);
  if (!trimmed.gone.empty()) release_trimmed(m->tag, trimmed, ops, refs);
  return true;
}

void history_log::recover(std::span<const std::string_view> filters, const recovery_request& req,
                          std::int64_t now_ms, recovery_result& out) const {
  common::lock lock(mutex_);
  for (auto filter : filters)
    if (!is_shared(filter)) history_.recover(filter, req, now_ms, out);
}

std::vector<store_op> history_log::trim(std::int64_t now_ms, message_refs& refs) {
  std::vector<store_op> ops;
  if (!enabled() || !max_age_ms_) return ops;
  std::vector<std::pair<std::string, history::trimmed>> all;
  {
    common::lock lock(mutex_);
    history_.trim_all(
        now_ms, [&](history::trimmed& t) { all.emplace_back(std::string(t.tag), std::move(t)); });
  }
  for (const auto& [tag, t] : all)
    release_trimmed(tag, t, ops, refs);
  return ops;
}

void history_log::restore(const store_snapshot& snap,
                          const std::unordered_map<std::uint64_t, message_ptr>& messages,
                          std::vector<store_op>& cleanup, message_refs& refs) {
  common::lock lock(mutex_);
  const std::string* dropped = nullptr;
  for (const auto& e : snap.history) {
    if (!covers(e.tag)) {
      if (!dropped || *dropped != e.tag)
        cleanup.push_back(store_ops::trim_history{e.tag, UINT64_MAX});
      dropped = &e.tag;
      continue;
    }
    auto it = messages.find(e.message_id);
    history_.restore(e.tag, e.offset, it == messages.end() ? nullptr : it->second);
  }
  const auto now = common::now_ms();
  history_.restored(now);
  // Trimmed before its references are counted: the clean-up drops the messages.
  history_.trim_all(now, [&](history::trimmed& t) {
    cleanup.push_back(store_ops::trim_history{std::string(t.tag), t.below});
  });
  history_.for_each_entry([&](const message_ptr& m) { refs.add(m->seq); });
}

history_log::stats history_log::count() const {
  common::lock lock(mutex_);
  return {history_.tag_count(), history_.entry_count(), history_.refused()};
}

}  // namespace wsagent::core
