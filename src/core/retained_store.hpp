#pragma once
// The retained messages (MQTT's retain flag, the native `retain`): the last retained message
// of each tag, in a trie (retained_tree) under a lock of its own, written through to the
// store in the order the tree changes.
//
// Locking: its own mutex, taken inside the routing lock (a publisher holds that shared, a
// subscription exclusive) and, for a tag with history, inside that tag's history stripe.
// So a subscription sees a racing retained publish either as retained or live, never both,
// and the store sees a tag's changes in the order subscribers do.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "common/mutex.hpp"
#include "core/message.hpp"
#include "core/retained.hpp"
#include "core/store.hpp"

namespace wsagent::core {

class store_writer;

class retained_store {
 public:
  explicit retained_store(std::size_t max_retained) : max_(max_retained) {}
  // Set once, before serving (null: kept in memory only).
  void set_store(store_writer* w) noexcept { store_ = w; }

  // Keeps a copy of `m` as its tag's retained message (flagged retain and published_retain,
  // numbered `seq` when its QoS is 1 or 2, so that it is acknowledged apart from the live
  // message) and returns it; null when it would be a new tag past max_retained. The store
  // op is submitted now, or, with `ops`, appended there for the caller to submit in its batch
  // (a message with an offset: the caller holds the tag's history stripe and sets the offset
  // first).
  std::shared_ptr<message> set(const message& m, std::uint64_t seq,
                               std::vector<store_op>* ops = nullptr) EXCLUDES(mutex_);
  // Clears the tag's retained message (and the store's).
  void clear(std::string_view tag) EXCLUDES(mutex_);
  // Appends the retained messages `filter` (a valid filter) matches.
  void match(std::string_view filter, std::vector<message_ptr>& out) const EXCLUDES(mutex_);
  // Start-up: what the store held, kept whatever the limit is now.
  void restore(const std::vector<message_ptr>& retained) EXCLUDES(mutex_);

  std::size_t size() const EXCLUDES(mutex_);
  std::size_t max() const noexcept { return max_; }

 private:
  const std::size_t max_;
  store_writer* store_ = nullptr;
  mutable common::mutex mutex_;
  retained_tree tree_ GUARDED_BY(mutex_);
};

}  // namespace wsagent::core
