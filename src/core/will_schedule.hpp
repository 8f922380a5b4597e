#pragma once
// MQTT 5 wills waiting for their Will Delay Interval: published at their time unless their
// client comes back first, or at once when their session ends. A persistent session's is
// written to the store, so it survives a restart of the agent.
//
// Locking: a mutex of its own, under which the store is told of every change (so the store
// sees a client's put and drop in order); nothing else is taken inside it.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/mutex.hpp"
#include "core/message.hpp"
#include "core/session.hpp"

namespace wsagent::core {

class store_writer;

struct delayed_will {
  std::shared_ptr<const session> from;  // published with its rights, under its client id
  message_ptr will;
  bool retain = false;
  std::int64_t due_ms = 0;  // wall clock
};

class will_schedule {
 public:
  // Set once, before serving (null: kept in memory only).
  void set_store(store_writer* w) noexcept { store_ = w; }

  // Replaces the client's waiting will (`w.from`'s client id).
  void put(delayed_will w) EXCLUDES(mutex_);
  // The client is back: its will is not published. True when one was waiting.
  bool cancel(std::string_view client_id) EXCLUDES(mutex_);
  // Takes out the wills due at `now_ms`.
  std::vector<delayed_will> take_due(std::int64_t now_ms) EXCLUDES(mutex_);
  // Takes out the wills of sessions that ended (due now).
  std::vector<delayed_will> take(std::span<const std::string> client_ids) EXCLUDES(mutex_);
  // Start-up: what the store held (not written again).
  void restore(std::vector<delayed_will> wills) EXCLUDES(mutex_);
  std::size_t size() const EXCLUDES(mutex_);

 private:
  store_writer* store_ = nullptr;
  mutable common::mutex mutex_;
  std::unordered_map<std::string, delayed_will, string_hash, std::equal_to<>> wills_
      GUARDED_BY(mutex_);
};

}  // namespace wsagent::core
