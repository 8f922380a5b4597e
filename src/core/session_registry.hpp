#pragma once
// Sessions by client id: one session per id, the live connection's or a persistent one kept
// offline. The router registers, replaces (takeover, resume) and drops sessions here; what
// moves between the old and the new session on a takeover is the router's business.
//
// Locking: one shared mutex, the first lock of the agent's order (docs/architecture.md,
// "Locks"): attach and detach hold it exclusive, then the routing lock; lookups hold it
// shared and let it go before the routing lock is taken. Sessions' disconnect times are
// written under it (session::disconnected_ms() is atomic for its readers).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/mutex.hpp"
#include "core/message.hpp"
#include "core/session.hpp"

namespace wsagent::core {

// What another node publishes for a client of this one should this node die with the
// client connected (issue 14): its will, and its presence `disconnected` event when it was
// announced (a client with an id of its own).
struct departure {
  message_ptr will;  // null: none
  bool will_retain = false;
  bool announced = false;
};

// Who owns a client id when several agents share one tag space (issue 14's cluster): the
// router tells it when a connection on this node takes an id and when a session ends here.
// A cluster implementation claims the id in the shared store and asks the node that had it
// to let go (router::evict()); the local one, the default, has nobody to tell.
class client_ownership {
 public:
  virtual ~client_ownership() = default;
  // A connection on this node took `client_id` (any session it had here was replaced).
  // Called with the registry's lock and the routing lock held, the new session registered:
  // it must only take note and return.
  virtual void claimed(std::string_view client_id) = 0;
  // This node's session for `client_id` ended (a clean one at its connection's end, a
  // persistent one at its expiry or when a clean one replaced it). Called with the same
  // locks held.
  virtual void released(std::string_view client_id) = 0;
  // Another node holds a session for `client_id` (a direct message to it can reach it
  // there). Any thread, with the registry's lock held shared: it must not block.
  virtual bool held_elsewhere(std::string_view /*client_id*/) const { return false; }
  // The connection with `client_id` on this node would leave `d` behind should the node
  // die; null: nothing any more (it left, or its will was published here). Any thread, no
  // lock held.
  virtual void departing(std::string_view /*client_id*/, const departure* /*d*/) {}
};

// One agent alone: every client id is this node's.
class local_ownership final : public client_ownership {
 public:
  void claimed(std::string_view) override {}
  void released(std::string_view) override {}
};

class session_registry {
 public:
  common::shared_mutex& mutex() const RETURN_CAPABILITY(mutex_) { return mutex_; }

  // Registers `s` under its client id; returns the session it replaces (null: none).
  std::shared_ptr<session> put(const std::shared_ptr<session>& s) REQUIRES(mutex_);
  // `s` is the session registered under its id.
  bool is_current(const session& s) const REQUIRES_SHARED(mutex_);
  // Unregisters `s` if it is current; true when it was.
  bool erase(const session& s) REQUIRES(mutex_);
  std::shared_ptr<session> find(std::string_view client_id) const REQUIRES_SHARED(mutex_);
  // `s`'s connection ended at wall time `ms` (0: it has one again).
  void set_disconnected(session& s, std::int64_t ms) REQUIRES(mutex_) {
    s.disconnected_ms_.store(ms, std::memory_order_relaxed);
  }

  // Offline persistent sessions whose expiry has passed at wall time `now_ms`.
  std::vector<std::shared_ptr<session>> expired(std::int64_t now_ms) const REQUIRES_SHARED(mutex_);
  std::size_t size() const REQUIRES_SHARED(mutex_) { return sessions_.size(); }
  std::vector<std::string> ids() const REQUIRES_SHARED(mutex_) {
    std::vector<std::string> out;
    out.reserve(sessions_.size());
    for (const auto& [id, s] : sessions_)
      out.push_back(id);
    return out;
  }

 private:
  mutable common::shared_mutex mutex_;
  std::unordered_map<std::string, std::shared_ptr<session>, string_hash, std::equal_to<>> sessions_
      GUARDED_BY(mutex_);
};

}  // namespace wsagent::core
