#pragma once
// Who receives what: the trie of plain subscriptions (tag_index), the shared subscription
// groups ("$share/<group>/<filter>") in a second trie keyed by the filter after the group,
// and each session's own set of filters with their options.
//
// Locking: one shared mutex, the routing lock. A publish holds it shared while it matches a
// message and hands it to its recipients' sinks; whatever changes who receives what
// (subscribe, unsubscribe, attach, detach) holds it exclusive. Holding it, either way, grants
// the `routing` role (session.hpp), which guards every session's sink: take it with the
// `exclusive` and `shared` guards below, which acquire both. Lock order: after the session
// registry's lock, before everything else (docs/architecture.md, "Locks").
//
// Lifecycle: a session is in the index from its first subscription until take_all() (its
// session ended or was taken over); a session must not be destroyed while it is in it.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/mutex.hpp"
#include "core/message.hpp"
#include "core/session.hpp"
#include "core/tag_index.hpp"

namespace wsagent::core {

// The members of one shared subscription: each message matching `filter` goes to one of
// them. `next` turns under the routing lock held shared, hence atomic.
struct shared_group {
  std::string whole;   // "$share/<group>/<filter>"
  std::string filter;  // after "$share/<group>/"
  std::vector<subscriber> members;
  mutable std::atomic<std::size_t> next{0};
};

using filter_list = std::vector<std::pair<std::string, subscription_options>>;

// The cluster seam for shared subscriptions (issue 14): a group whose members are spread
// over several nodes takes each message on one of them. For a message matching a group
// that has members here, take_here() says whether this node's member takes it (true) or
// the cluster sends it to a member on another node. Called by publishers under the routing
// lock held shared, on any thread: it must be quick and must not block.
class group_policy {
 public:
  virtual ~group_policy() = default;
  virtual bool take_here(std::string_view whole, const message& m) const = 0;
};

// What a match is told about shared groups beyond the message.
struct group_choice {
  // The groups this match may serve (a message from another node names those it was sent
  // here for); null: every group, as the policy decides.
  const std::vector<std::string>* only = nullptr;
  const group_policy* policy = nullptr;
  // Appended: the groups matched here that the policy sent elsewhere.
  std::vector<std::string>* elsewhere = nullptr;
  // Appended: the groups a member here takes the message for.
  std::vector<std::string>* here = nullptr;
};

// The cluster seam, subscribing side (issue 14): told when this node's first subscription
// to a whole filter ("a/+/b", "$share/g/a/#") appears and when its last one goes, so that a
// cluster can record in its route table which filters each node holds. Called with the
// routing lock held exclusive: it must only take note (a queue) and return, never call back
// into the router.
class filter_observer {
 public:
  virtual ~filter_observer() = default;
  virtual void filter_added(std::string_view filter) = 0;
  virtual void filter_removed(std::string_view filter) = 0;
};

class subscription_index {
 public:
  explicit subscription_index(std::size_t max_subscriptions)
      : max_subscriptions_(max_subscriptions) {}

  // The routing lock itself, for annotations (REQUIRES(index.mutex())); take it with the
  // guards, which grant the role too.
  common::shared_mutex& mutex() const RETURN_CAPABILITY(mutex_) { return mutex_; }

  class SCOPED_CAPABILITY exclusive {
   public:
    explicit exclusive(subscription_index& i) ACQUIRE(i.mutex_, routing) : m_(i.mutex_) {
      m_.lock();
    }
    ~exclusive() RELEASE() { m_.unlock(); }
    exclusive(const exclusive&) = delete;
    exclusive& operator=(const exclusive&) = delete;

   private:
    common::shared_mutex& m_;
  };
  class SCOPED_CAPABILITY shared {
   public:
    explicit shared(const subscription_index& i) ACQUIRE_SHARED(i.mutex_, routing) : m_(i.mutex_) {
      m_.lock_shared();
    }
    ~shared() RELEASE() { m_.unlock_shared(); }
    shared(const shared&) = delete;
    shared& operator=(const shared&) = delete;

   private:
    common::shared_mutex& m_;
  };

  // --- held exclusive ---

  // `s` subscribes to every filter (valid ones, "$share/..." included) with `o`, or to none
  // when that would take it past max_subscriptions (false). `existed`: every one of them was
  // subscribed already (its options are replaced).
  bool add(session& s, std::span<const std::string_view> filters, const subscription_options& o,
           bool& existed) REQUIRES(mutex_);
  // One filter, whatever the limit (start-up, a resumed session's).
  void add_one(session& s, std::string_view filter, const subscription_options& o) REQUIRES(mutex_);
  // True when `s` had `filter`.
  bool remove(session& s, std::string_view filter) REQUIRES(mutex_);
  // Every subscription of `s`, taken out of the index (its session ended or was taken over).
  filter_list take_all(session& s) REQUIRES(mutex_);
  // Told of the node's filters coming and going (null: nobody). Set before serving.
  void set_observer(filter_observer* o) REQUIRES(mutex_) { observer_ = o; }
  // Points `s` at `sink` (null: it has no connection).
  void set_sink(session& s, session_sink* sink) REQUIRES(mutex_, routing) { s.sink_ = sink; }

  // --- held shared (or exclusive) ---

  std::size_t count_of(const session& s) const REQUIRES_SHARED(mutex_);
  filter_list copy_of(const session& s) const REQUIRES_SHARED(mutex_);
  bool has(const session& s, std::string_view filter) const REQUIRES_SHARED(mutex_);

  // Appends the recipients of `m`: every plain subscription its tag matches (a session once
  // per matching filter) but the No Local ones of its publisher, and one member of each
  // matching shared group (the next connected one in turn; when none is connected, the next
  // one in turn if it keeps QoS 1/2 messages offline). Returns how many lists contributed:
  // with one, nobody appears twice (see unique_recipients()).
  std::size_t match(const message& m, std::vector<subscriber>& out,
                    const group_choice& groups = {}) const REQUIRES_SHARED(mutex_, routing);
  // A connected member of the group `whole` ("$share/g/f") but `leaving` that takes `m` at
  // QoS 1 or 2 (at that QoS, into `qos`); null when none.
  session* other_member(std::string_view whole, const message& m, const session& leaving,
                        std::uint8_t& qos) const REQUIRES_SHARED(mutex_, routing);

  // Every whole filter some session of this node holds, once each.
  std::vector<std::string> node_filters() const REQUIRES_SHARED(mutex_);

  // Subscriptions in all (each shared group member counts one).
  std::size_t size() const REQUIRES_SHARED(mutex_);
  std::size_t max_subscriptions() const noexcept { return max_subscriptions_; }

 private:
  using filter_map =
      std::unordered_map<std::string, subscription_options, string_hash, std::equal_to<>>;
  void index_locked(std::string_view filter, session& s, const subscription_options& o)
      REQUIRES(mutex_);
  void unindex_locked(std::string_view filter, session& s) REQUIRES(mutex_);
  // A session took `filter` / let it go: the node's count of it, the observer told at 0.
  void count_up(std::string_view filter) REQUIRES(mutex_);
  void count_down(std::string_view filter) REQUIRES(mutex_);

  const std::size_t max_subscriptions_;
  mutable common::shared_mutex mutex_;
  tag_index trie_ GUARDED_BY(mutex_);
  // Shared groups by their whole filter ("$share/g/f"), and indexed by f for publishes (a
  // group's address is stable: unordered_map nodes do not move).
  std::unordered_map<std::string, shared_group, string_hash, std::equal_to<>> groups_
      GUARDED_BY(mutex_);
  shared_index group_index_ GUARDED_BY(mutex_);
  std::unordered_map<const session*, filter_map> by_session_ GUARDED_BY(mutex_);
  // How many sessions hold each whole filter.
  std::unordered_map<std::string, std::size_t, string_hash, std::equal_to<>> node_counts_
      GUARDED_BY(mutex_);
  filter_observer* observer_ GUARDED_BY(mutex_) = nullptr;
};

// Sorts `v` so that each session appears once, at the highest QoS it matched with; a single
// contributing list (`lists` <= 1) needs nothing (a 1,000-subscriber fan-out on one filter
// skips sorting 1,000 recipients per message).
void unique_recipients(std::vector<subscriber>& v, std::size_t lists);

}  // namespace wsagent::core
