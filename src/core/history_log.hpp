#pragma once
// Tag history as the router uses it: the history (core/history.hpp: offsets, limits,
// recovery) under a lock of its own, the order stripes that keep each tag's messages in
// offset order from their numbering to their subscribers, and the store operations and
// message references each change makes.
//
// Locking: a publish to a history tag takes that tag's stripe (one of 16, by hash) inside the
// routing lock and holds it until the message is handed to its subscribers; the history's own
// mutex is taken briefly, inside a stripe or the routing lock held exclusive (a subscription's
// recovery), and nothing is taken inside it but message_refs' leaf lock.

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/mutex.hpp"
#include "core/history.hpp"
#include "core/message.hpp"
#include "core/message_refs.hpp"
#include "core/store.hpp"

namespace wsagent::core {

class history_log {
 public:
  explicit history_log(history_config config);

  bool enabled() const noexcept { return !filters_.empty(); }
  // Does `tag` keep a history? (The configuration only: no lock.)
  bool covers(std::string_view tag) const noexcept;

  // The stripe of `tag`: hold it from a message's numbering (next_seq, append) until it has
  // been handed to its subscribers.
  common::mutex& stripe(std::string_view tag) noexcept;

  // Appends `m` (numbered: its seq set) to its tag's history and gives it its offset; false
  // (no offset) when the tag is new and history.max_tags tags have one already. The store
  // operations (the entry, and whatever the limits trimmed) are appended to `ops`, after the
  // caller's put_message; the entry holds a reference on the stored message, the trimmed ones
  // let theirs go.
  bool append(const message_ptr& m, std::int64_t now_ms, std::vector<store_op>& ops,
              message_refs& refs) EXCLUDES(mutex_);

  // What the subscriptions `filters` (shared ones are skipped) get for `req`.
  void recover(std::span<const std::string_view> filters, const recovery_request& req,
               std::int64_t now_ms, recovery_result& out) const EXCLUDES(mutex_);

  // Entries past history.max_age (the sweep, every second): the store operations to submit.
  std::vector<store_op> trim(std::int64_t now_ms, message_refs& refs) EXCLUDES(mutex_);

  // Start-up: the tags' histories from the store, with the limits as they are now; a tag no
  // filter covers any more is dropped (`cleanup` gets the store operations). Kept entries
  // take their references.
  void restore(const store_snapshot& snap,
               const std::unordered_map<std::uint64_t, message_ptr>& messages,
               std::vector<store_op>& cleanup, message_refs& refs) EXCLUDES(mutex_);

  struct stats {
    std::size_t tags = 0, entries = 0;
    std::uint64_t refused = 0;  // messages to new tags past history.max_tags
  };
  stats count() const EXCLUDES(mutex_);

 private:
  static void release_trimmed(const std::string& tag, const history::trimmed& t,
                              std::vector<store_op>& ops, message_refs& refs);

  const std::vector<std::string> filters_;
  const std::int64_t max_age_ms_;
  mutable common::mutex mutex_;
  history history_ GUARDED_BY(mutex_);
  std::array<common::mutex, 16> order_;
};

}  // namespace wsagent::core
