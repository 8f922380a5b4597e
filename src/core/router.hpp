#pragma once
// The router: sessions by client id, subscriptions by filter, and publish -> match ->
// deliver. Protocol adapters call it from their I/O threads; it never blocks on I/O.
//
// Locking: one std::shared_mutex guards the tag index, the client-id registry and every
// session's subscription set (and, with retained_mutex_ inside it, the retained messages).
// publish() and lookups take it shared; subscribe, unsubscribe, attach and detach take it
// exclusive. session_sink::deliver() and kick() are called with the lock held (shared or
// exclusive), so they must only hand work to another thread and return: they may not call back into
// the router.

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/clock.hpp"
#include "core/history.hpp"
#include "core/message.hpp"
#include "core/retained.hpp"
#include "core/session.hpp"
#include "core/store.hpp"
#include "core/tag.hpp"
#include "core/tag_index.hpp"

namespace wsagent::core {

enum class route_error {
  none,
  invalid_tag,  // see the tag_error for the detail
  forbidden,    // the ACL does not allow it
  too_many_subscriptions,
  too_many_retained,  // a retained publish to a new tag past limits.max_retained
};

struct route_result {
  route_error error = route_error::none;
  tag_error tag = tag_error::none;
  std::size_t delivered = 0;  // for publish: recipients reached
  // Subscribe: every filter was subscribed already (its options are updated); unsubscribe:
  // the filter was subscribed. Decided in the same critical section as the change.
  bool existed = false;
  // For a QoS 1 publish with persistent recipients: the store is writing it, and the
  // publish's `on_durable` runs once it is on disk (else it was not called).
  bool pending_durable = false;
  bool ok() const noexcept { return error == route_error::none; }
};

struct router_limits {
  tag_limits tags;
  int max_subscriptions = 1000;
  std::size_t max_retained = 100000;
  history_config history;
};

// Counters read by the metrics page; relaxed atomics, written by any thread.
struct router_probe {
  std::atomic<std::uint64_t> published{0};
  std::atomic<std::uint64_t> deliveries{0};
  std::atomic<std::uint64_t> takeovers{0};
  // QoS 1 deliveries dropped from a full client queue (limits.max_queued, max_queued_bytes).
  std::atomic<std::uint64_t> qos1_dropped{0};
};

class store_writer;

// The members of one shared subscription ("$share/<group>/<filter>"): each message matching
// the filter goes to one of them. `next` turns under the router's shared lock, hence atomic.
struct shared_group {
  std::string filter;  // after "$share/<group>/"
  std::vector<subscriber> members;
  std::atomic<std::size_t> next{0};
};

class router {
 public:
  explicit router(router_limits limits);

  // Retained changes are written through `w` (may be null: kept in memory only). Set once,
  // before serving.
  void set_store(store_writer* w) noexcept { store_ = w; }
  // Start-up, after restore_sessions(): the retained messages the store held.
  void restore_retained(const std::vector<message_ptr>& retained);
  // Start-up, after restore_sessions(): the delayed wills the store held, each due at its
  // time, or at once when its session did not survive.
  void restore_wills(const std::vector<stored_will>& wills);

  const router_limits& limits() const noexcept { return limits_; }

  // Registers `s` under its client id. A session already registered under that id is
  // replaced: its connection, if it has one, is kicked with `takeover_code` (then attach
  // returns true). When both are persistent, `s` resumes the old one (`*resumed` set): it
  // takes over its subscriptions (those `s`'s rights still allow) and its QoS 1 window; else
  // the old one's subscriptions are dropped.
  bool attach(const std::shared_ptr<session>& s, std::uint16_t takeover_code,
              bool* resumed = nullptr);
  // The connection of `s` is ending; after it returns, `s`'s sink is not used. A clean
  // session is unregistered and unsubscribed; a persistent one stays, offline, collecting
  // QoS 1 messages in its window until resumed or expired. Returns false when `s` was no
  // longer registered (another session took its client id).
  bool detach(session& s);

  // Drops the offline persistent sessions whose expiry has passed at wall time `now_ms`;
  // returns their client ids. A delayed will of a session that ends is published then.
  std::vector<std::string> expire_sessions(std::int64_t now_ms);

  // A persistent session's expiry, changed while it is connected (MQTT 5 DISCONNECT): kept
  // that long after it leaves; 0: dropped at the next sweep once offline.
  void set_session_expiry(session& s, std::int64_t expiry_s);

  // A will published at wall time `due_ms` (MQTT 5 Will Delay Interval) from `from`, unless
  // a connection with `from`'s client id attaches first or the session ends (then at once).
  // Written to the store (a persistent session's): it survives a restart of the agent.
  void delay_will(const std::shared_ptr<session>& from, message_ptr will, bool retain,
                  std::int64_t due_ms);
  // Publishes the delayed wills due at `now_ms` (the sweep, every second).
  void publish_due_wills(std::int64_t now_ms);

  // Subscribes and, when `retained` is given, appends the retained messages `filter`
  // matches (each flagged retain), taken in the same critical section as the subscription:
  // a retained publish racing with it reaches the subscriber once, as retained or live.
  // With `recovery` (and a wanted request), appends to it the tag history the request asks
  // for, taken in that critical section too: the history then the live stream, with no gap
  // and no duplicate. (The adapter leaves out the retained messages of recovery->covered.)
  // A filter "$share/<group>/<filter>" is a shared subscription: each message to one
  // member of the group (the next connected one in turn), never a retained message.
  // `retained_if_new`: retained messages only when the subscription is new (MQTT 5 retain
  // handling 1).
  route_result subscribe(session& s, std::string_view filter, const subscription_options& options,
                         std::vector<message_ptr>* retained = nullptr,
                         const recovery_request* request = nullptr,
                         recovery_result* recovery = nullptr, bool retained_if_new = false);
  // Several filters in one critical section (all or none: the first problem is returned):
  // a tag two of them match is recovered once, not once live and once from history.
  route_result subscribe(session& s, std::span<const std::string_view> filters,
                         const subscription_options& options,
                         std::vector<message_ptr>* retained = nullptr,
                         const recovery_request* request = nullptr,
                         recovery_result* recovery = nullptr, bool retained_if_new = false);
  route_result unsubscribe(session& s, std::string_view filter);
  // How many subscriptions `s` holds, and a copy of them, taken under the lock (a takeover
  // may clear them meanwhile: no other thread reads a session's set without it).
  std::size_t subscription_count_of(const session& s) const;
  std::vector<std::pair<std::string, subscription_options>> subscriptions_of(
      const session& s) const;

  // Routes `msg` to every session with a matching subscription, each at most once, and to
  // the session with client id `to` if there is one. The caller has validated nothing:
  // tag rules and the publisher's rights are checked here. With `retain`, `msg` also
  // becomes its tag's retained message (a copy flagged retain; an empty payload clears it)
  // before it is routed; live recipients get it unflagged, as in MQTT.
  // A QoS 1 message for persistent recipients is written to the store (once, with one queue
  // entry per recipient), and a retained one as its tag's retained message; `on_durable`
  // then runs on the store's thread when those writes are durable, and the result says
  // pending_durable.
  // `with`: store operations written in the same batch (a QoS 2 publish's incoming record).
  // A QoS 2 message from a persistent session, with a store, reaches its recipients only
  // once that batch is durable (so a client never sees a message whose record a crash could
  // take back: exactly once across a kill -9), then `on_durable` runs.
  route_result publish(const session& from, const message_ptr& msg, std::string_view to = {},
                       bool retain = false, std::function<void(bool)> on_durable = {},
                       std::vector<store_op> with = {});

  // Writes `ops` for persistent session `s` and runs `done` when they are durable (on the
  // store's thread); for a clean session, or without a store, runs `done(true)` at once.
  void persist(const session& s, std::vector<store_op> ops, std::function<void(bool)> done);

  // A persistent session's QoS 1 message left its window (acknowledged, expired or
  // dropped): its queue entry goes from the store, and the message when nobody holds it.
  void forget(const session& s, std::uint64_t seq);

  // Start-up: the persistent sessions the store held, offline, with their subscriptions
  // and queued messages; the message numbering goes on after the highest stored.
  void restore_sessions(const store_snapshot& snap, std::size_t max_inflight,
                        std::size_t max_queued, std::size_t max_queued_bytes = 0);

  // Drops tag history entries past history.max_age (a sweep, every second).
  void trim_history(std::int64_t now_ms);

  // A clean session `leaving` (detached) held QoS 1 or 2 deliveries its client did not
  // acknowledge: each that one of its shared subscriptions (`shared`, whole filters) matched
  // goes to a connected member of that group instead (MQTT 5.0 section 4.8.2), so a worker
  // that leaves does not take its unfinished jobs with it. Returns how many were passed on.
  std::size_t reshare(const session& leaving, std::span<const std::string> shared,
                      std::span<const message_ptr> held);

  // Routes a message from the agent itself ($sys/... tags); no ACL.
  std::size_t publish_internal(const message_ptr& msg);

  // A QoS 1 delivery that reached `s`'s connection as it was ending (after detach): into
  // its window to wait for a resume, or to its successor. Any thread.
  void redeliver(session& s, const message_ptr& msg, std::uint8_t qos) {
    std::shared_lock lock(mutex_);
    offer_offline(s, msg, qos, common::steady_ms());
  }

  // A fresh agent-wide number for a QoS >= 1 message (message::seq). Numbers start from the
  // wall clock (ms x 1000) or after the highest stored, whichever is higher, so they do not
  // repeat across restarts (while the agent averages under a million a second) and stay
  // below 2^53 (exact in JavaScript) until the year 2255.
  std::uint64_t next_seq() noexcept { return seq_.fetch_add(1, std::memory_order_relaxed); }

  std::size_t session_count() const;
  std::size_t subscription_count() const;
  std::size_t retained_count() const;
  struct history_stats {
    std::size_t tags = 0, entries = 0;
    std::uint64_t refused = 0;  // messages to new tags past history.max_tags
  };
  history_stats history_count() const;

  router_probe probe;

 private:
  // `ops`: store operations that go in the same batch as the message's own (they may
  // have stored it already: `stored`).
  // `defer`: deliver once the store batch is durable (see publish()).
  std::size_t route_locked(const message_ptr& msg, std::string_view to,
                           std::function<void(bool)>* on_durable = nullptr, bool* pending = nullptr,
                           std::vector<store_op>* ops = nullptr, bool stored = false,
                           bool defer = false);
  // publish() and publish_internal() past the checks, under mutex_ shared.
  std::size_t route_recorded(const message_ptr& msg, std::string_view to,
                             std::function<void(bool)>* on_durable, bool* pending,
                             message* retained_copy = nullptr,
                             std::vector<store_op>* with = nullptr, bool defer = false);
  // A subscription into the index, or into its shared group; and out again. Under mutex_
  // exclusive.
  void index_locked(std::string_view filter, session& s, const subscription_options& o);
  void unindex_locked(std::string_view filter, session& s);
  std::size_t match_shared(const message& msg, std::vector<subscriber>& out);
  // The rights of `s` allow `filter` (a shared one's inner filter).
  static bool may_subscribe(const session& s, std::string_view filter);
  void deliver_locked(session& s, const message_ptr& msg, std::uint8_t qos, std::int64_t& now);
  void release_trimmed(const std::string& tag, const history::trimmed& t,
                       std::vector<store_op>& ops);
  void restore_history(const store_snapshot& snap,
                       const std::unordered_map<std::uint64_t, message_ptr>& messages,
                       std::vector<store_op>& cleanup);
  void save_session_locked(const session& s);
  void drop_session_locked(session& s);
  void unsubscribe_all_locked(session& s);
  void release_ref_locked(std::uint64_t seq, std::vector<store_op>& ops);
  // `copy` receives the retained copy (for its offset, given after).
  bool retain_locked(const message_ptr& msg, std::shared_ptr<message>* copy);
  void offer_offline(session& s, const message_ptr& msg, std::uint8_t qos, std::int64_t now_ms);

  router_limits limits_;
  store_writer* store_ = nullptr;
  std::atomic<std::uint64_t> seq_;
  // Persistent sessions' queue entries per stored message (seq), to drop a message from the
  // store with its last entry.
  std::mutex refs_mutex_;
  std::unordered_map<std::uint64_t, std::uint32_t> refs_;
  mutable std::shared_mutex mutex_;
  tag_index index_;
  // Shared subscription groups by their whole filter ("$share/g/f"), and indexed by f for
  // publishes (a group's address is stable: unordered_map nodes do not move).
  std::unordered_map<std::string, shared_group, string_hash, std::equal_to<>> shared_;
  shared_index shared_index_;
  // Written by publishers holding mutex_ shared, so under its own lock as well; read by
  // subscribe() under mutex_ exclusive.
  mutable std::mutex retained_mutex_;
  retained_tree retained_;
  std::unordered_map<std::string, std::shared_ptr<session>, string_hash, std::equal_to<>> sessions_;
  // Tag history. A message to a history tag is numbered, recorded and routed under its
  // tag's order_ stripe, so that every subscriber gets a tag's messages in offset order;
  // history_mutex_ (taken briefly, inside a stripe or under mutex_ exclusive) guards the
  // entries themselves.
  mutable std::mutex history_mutex_;
  history history_;
  std::array<std::mutex, 16> order_;
  struct delayed_will {
    std::shared_ptr<session> from;
    message_ptr will;
    bool retain = false;
    std::int64_t due_ms = 0;
  };
  std::mutex wills_mutex_;
  std::unordered_map<std::string, delayed_will, string_hash, std::equal_to<>> wills_;
  void publish_will(const delayed_will& w);
};

const char* to_string(route_error e) noexcept;

}  // namespace wsagent::core
