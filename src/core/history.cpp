#include "core/history.hpp"

#include <algorithm>

#include "core/tag.hpp"

namespace wsagent::core {

namespace {

// The history owns a message's offset: it is set once, before the message is routed.
void set_offset(const message_ptr& m, std::uint64_t offset) {
  const_cast<message&>(*m).offset = offset;  // created non-const by its publisher
}

}  // namespace

history::history(history_config config) : config_(std::move(config)) {
  if (config_.max_count == 0) config_.max_count = 1;
}

bool history::covers(std::string_view tag) const noexcept {
  return std::any_of(config_.filters.begin(), config_.filters.end(),
                     [&](const std::string& f) { return filter_matches(f, tag); });
}

bool history::evict_one_empty(std::string& evicted) {
  for (auto it = tags_.begin(); it != tags_.end(); ++it) {
    if (!it->second.entries.empty()) continue;
    evicted = it->first;
    tags_.erase(it);
    return true;
  }
  return false;
}

std::uint64_t history::append(const message_ptr& m, std::int64_t now_ms, trimmed& out) {
  auto it = tags_.find(m->tag);
  if (it == tags_.end()) {
    if (tags_.size() >= config_.max_tags && !evict_one_empty(out.evicted)) {
      ++refused_;
      return 0;
    }
    it = tags_.emplace(m->tag, tag_history{}).first;
  }
  auto& h = it->second;
  const auto offset = ++h.last;
  set_offset(m, offset);
  h.entries.push_back(m);
  ++entries_;
  out.tag = it->first;
  trim(h, now_ms, out);
  return offset;
}

void history::trim(tag_history& h, std::int64_t now_ms, trimmed& out) {
  while (!h.entries.empty()) {
    const auto& front = *h.entries.front();
    const bool over = h.entries.size() > config_.max_count ||
                      (config_.max_age_ms && front.timestamp_ms + config_.max_age_ms <= now_ms);
    if (!over) break;
    h.trimmed_until_ms = std::max(h.trimmed_until_ms, front.timestamp_ms);
    out.gone.push_back(std::move(h.entries.front()));
    h.entries.pop_front();
    --entries_;
  }
  if (!out.gone.empty()) out.below = h.entries.empty() ? h.last : h.entries.front()->offset;
}

void history::restore(const std::string& tag, std::uint64_t offset, const message_ptr& m) {
  auto& h = tags_[tag];
  const bool contiguous = !h.entries.empty() && h.entries.back()->offset + 1 == offset;
  if (!contiguous) {  // entries before a gap (or a bare offset) cannot be recovered by offset
    entries_ -= h.entries.size();
    h.entries.clear();
  }
  h.last = std::max(h.last, offset);
  if (!m) return;
  set_offset(m, offset);
  h.entries.push_back(m);
  ++entries_;
}

void history::restored(std::int64_t now_ms) {
  // What was trimmed before the restart is not known: a tag that lost entries counts as
  // having lost them up to its first kept one (all of them: up to now).
  for (auto& [tag, h] : tags_) {
    if (h.entries.empty())
      h.trimmed_until_ms = now_ms;
    else if (h.entries.front()->offset > 1)
      h.trimmed_until_ms = h.entries.front()->timestamp_ms;
  }
}

void history::recover(std::string_view filter, const recovery_request& req, std::int64_t now_ms,
                      recovery_result& out) const {
  if (!req.wanted()) return;
  auto asked = [&](std::string_view tag) {
    return std::any_of(req.since.begin(), req.since.end(),
                       [&](const auto& s) { return s.first == tag; });
  };
  for (const auto& [tag, last_seen] : req.since) {
    if (!filter_matches(filter, tag)) continue;
    if (!covers(tag)) {
      out.incomplete.emplace_back(tag);
      continue;
    }
    out.covered.emplace_back(tag);
    auto it = tags_.find(tag);
    if (it == tags_.end()) {  // nothing published since the agent started with no record
      if (last_seen > 0) out.incomplete.emplace_back(tag);
      continue;
    }
    recover_tag(it->first, it->second, last_seen + 1, -1, now_ms, out);
  }
  if (req.since_ms < 0) return;
  // Some tags of the subscription keep no history: what they had is not recoverable.
  if (!std::any_of(config_.filters.begin(), config_.filters.end(),
                   [&](const std::string& f) { return filter_covers(f, filter); }))
    out.incomplete.emplace_back(filter);
  for (const auto& [tag, h] : tags_) {
    if (!filter_matches(filter, tag) || asked(tag)) continue;
    out.covered.push_back(tag);
    recover_tag(tag, h, 0, req.since_ms, now_ms, out);
  }
}

// From offset `from` (> 0), or else from time `since_ms`.
void history::recover_tag(const std::string& tag, const tag_history& h, std::uint64_t from,
                          std::int64_t since_ms, std::int64_t now_ms, recovery_result& out) const {
  const auto first = h.entries.empty() ? h.last + 1 : h.entries.front()->offset;
  std::size_t start = 0;
  bool missed = false;
  if (from > 0) {
    if (from > h.last + 1) {  // an offset this agent never gave (its history was lost)
      out.incomplete.push_back(tag);
      return;
    }
    missed = from < first;
    start = missed ? 0 : static_cast<std::size_t>(from - first);
  } else {
    missed = since_ms <= h.trimmed_until_ms;
    while (start < h.entries.size() && h.entries[start]->timestamp_ms < since_ms)
      ++start;
  }
  for (std::size_t i = start; i < h.entries.size(); ++i) {
    const auto& m = h.entries[i];
    if (config_.max_age_ms && m->timestamp_ms + config_.max_age_ms <= now_ms) {
      missed = true;  // due to be trimmed
      continue;
    }
    if (!m->expired_at(now_ms)) out.messages.push_back(m);
  }
  if (missed) out.incomplete.push_back(tag);
}

}  // namespace wsagent::core
