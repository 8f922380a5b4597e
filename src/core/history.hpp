#pragma once
// Tag history: the last messages of the tags that match configured filters, each numbered
// with an offset that increases by one per message on its tag, so that a client that
// reconnects (or a dashboard that reloads) asks for what followed the last offset it saw, or
// for everything since a time, and gets exactly what it missed.
//
// A tag's entries are bounded by count (max_count) and age (max_age_ms); the number of tags
// with a history by max_tags (a message to a new tag past it gets no offset and is not kept).
// A tag whose entries have all gone keeps its last offset, so numbering never starts again.
//
// Not thread-safe: history_log guards it. Time is wall-clock milliseconds,
// passed in.

#include <cstddef>
#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/message.hpp"
#include "core/session.hpp"

namespace wsagent::core {

struct history_config {
  std::vector<std::string> filters;  // tags matching one of these keep a history
  std::size_t max_count = 1000;      // entries per tag
  std::int64_t max_age_ms = 0;       // 0: no age limit
  std::size_t max_tags = 10000;      // tags with a history
};

// What a new subscription asks to catch up on; `since` wins over `since_ms` for its tags.
struct recovery_request {
  // Tag -> the last offset the client has; it gets the entries after it.
  std::span<const std::pair<std::string_view, std::uint64_t>> since;
  std::int64_t since_ms = -1;  // >= 0: every kept entry published at or after this time
  bool wanted() const noexcept { return !since.empty() || since_ms >= 0; }
};

// What recover() found, accumulated over the filters of one subscribe request.
struct recovery_result {
  std::vector<message_ptr> messages;  // in no particular order across tags
  // Tags for which the client may have missed something the history no longer holds (or
  // never held: a tag without history, an offset the agent does not know).
  std::vector<std::string> incomplete;
  // Tags whose history answered the request: their retained message is not sent as well.
  std::vector<std::string> covered;
};

class history {
 public:
  explicit history(history_config config);

  bool enabled() const noexcept { return !config_.filters.empty(); }
  const history_config& config() const noexcept { return config_; }
  // Does `tag` keep a history?
  bool covers(std::string_view tag) const noexcept;

  // A message left a tag's history (count or age): the router releases its stored copy and
  // trims the store's entries below `below` (the tag's last offset is always kept there).
  struct trimmed {
    std::string_view tag;
    std::uint64_t below = 0;
    std::vector<message_ptr> gone;
    // append(): a tag whose entries had all gone was forgotten to make room for a new one
    // (its numbering starts again); the store drops what it kept of it.
    std::string evicted;
  };

  // Appends `m` (its tag covered), gives it its offset (m->offset, set before anyone else
  // sees the message) and returns it; 0 when the tag is new and max_tags tags have a
  // history already. Entries past max_count or max_age_ms go into
  // `out` (out.gone may be empty: nothing trimmed).
  std::uint64_t append(const message_ptr& m, std::int64_t now_ms, trimmed& out);

  // Applies the limits to every tag: entries past max_age_ms (a periodic sweep), and after
  // restore() the limits as they are now (they may have changed). `f(trimmed&)` per tag
  // that lost entries.
  template <class F>
  void trim_all(std::int64_t now_ms, F&& f) {
    for (auto& [tag, h] : tags_) {
      trimmed t{tag, 0, {}, {}};
      trim(h, now_ms, t);
      if (!t.gone.empty()) f(t);
    }
  }

  // Start-up, in offset order per tag: an entry from the store (`m` null when only its
  // offset was kept). Then restored(), then trim_all() for the limits as they are now.
  void restore(const std::string& tag, std::uint64_t offset, const message_ptr& m);
  void restored(std::int64_t now_ms);
  // Every kept message, to count the store references to it.
  template <class F>
  void for_each_entry(F&& f) const {
    for (const auto& [tag, h] : tags_)
      for (const auto& m : h.entries)
        f(m);
  }
  // What the subscription `filter` gets for `req`, appended to `out`. Messages expired at
  // `now_ms` are left out (they are never delivered).
  void recover(std::string_view filter, const recovery_request& req, std::int64_t now_ms,
               recovery_result& out) const;

  std::size_t tag_count() const noexcept { return tags_.size(); }
  std::size_t entry_count() const noexcept { return entries_; }
  // Messages not kept because max_tags was reached.
  std::uint64_t refused() const noexcept { return refused_; }

 private:
  struct tag_history {
    std::uint64_t last = 0;           // the offset of the newest message, kept or not
    std::deque<message_ptr> entries;  // contiguous offsets, oldest first
    // Newest timestamp among trimmed entries: a since_ms at or before it may have missed
    // something.
    std::int64_t trimmed_until_ms = -1;
  };
  void trim(tag_history& h, std::int64_t now_ms, trimmed& out);
  void recover_tag(const std::string& tag, const tag_history& h, std::uint64_t from,
                   std::int64_t since_ms, std::int64_t now_ms, recovery_result& out) const;
  bool evict_one_empty(std::string& evicted);

  history_config config_;
  std::unordered_map<std::string, tag_history, string_hash, std::equal_to<>> tags_;
  std::size_t entries_ = 0;
  std::uint64_t refused_ = 0;
};

}  // namespace wsagent::core
