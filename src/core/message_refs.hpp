#pragma once
// How many stored entries (persistent sessions' queue entries, tag history entries) refer to
// each stored message, by its seq: the message leaves the store with its last reference.
//
// Locking: a leaf mutex of its own, held only inside these calls (nothing is called with it
// held), so any thread may call them holding any other lock.

#include <cstdint>
#include <span>
#include <unordered_map>
#include <vector>

#include "common/mutex.hpp"
#include "core/message.hpp"
#include "core/store.hpp"

namespace wsagent::core {

class message_refs {
 public:
  void add(std::uint64_t seq, std::uint32_t n = 1) EXCLUDES(mutex_);
  // One reference to each of `seqs` is gone; for each message that lost its last,
  // drop_message goes into `ops`.
  void release(std::uint64_t seq, std::vector<store_op>& ops) EXCLUDES(mutex_);
  void release(std::span<const message_ptr> msgs, std::vector<store_op>& ops) EXCLUDES(mutex_);
  bool contains(std::uint64_t seq) const EXCLUDES(mutex_);
  std::size_t size() const EXCLUDES(mutex_);

 private:
  void release_locked(std::uint64_t seq, std::vector<store_op>& ops) REQUIRES(mutex_);

  mutable common::mutex mutex_;
  std::unordered_map<std::uint64_t, std::uint32_t> refs_ GUARDED_BY(mutex_);
};

}  // namespace wsagent::core
