#pragma once
// The router: publish -> match -> deliver, and the life of sessions, over its parts:
//
//   session_registry    sessions by client id (takeover, resume, expiry)
//   subscription_index  who receives what (the routing lock; every session's sink)
//   retained_store      the retained message of each tag
//   history_log         tag history: offsets, recovery, the order stripes
//   message_refs        stored entries per stored message
//   will_schedule       MQTT 5 wills waiting for their delay
//
// Protocol adapters call it from their I/O threads; it never blocks on I/O. Each part has its
// own lock; the order in which they nest is written once, in docs/architecture.md ("Locks"),
// and checked by clang's thread-safety analysis where it can be. session_sink::deliver() and
// kick() are called with the routing lock held (shared or exclusive), so they may only hand
// work to another thread and return: they may not call back into the router.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/clock.hpp"
#include "common/metrics.hpp"
#include "core/history_log.hpp"
#include "core/message.hpp"
#include "core/message_refs.hpp"
#include "core/retained_store.hpp"
#include "core/session.hpp"
#include "core/session_registry.hpp"
#include "core/store.hpp"
#include "core/subscription_index.hpp"
#include "core/tag.hpp"
#include "core/will_schedule.hpp"

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
  // For a QoS 1 publish with persistent recipients: the store is writing it, and the
  // publish's `on_durable` runs once it is on disk (else it was not called).
  bool pending_durable = false;
  // Subscribe: every filter was subscribed already (its options are updated); unsubscribe:
  // the filter was subscribed. Decided in the same critical section as the change.
  bool existed = false;
  // Publish with `to`: no session has that client id (no client is connected with it, and
  // none keeps a persistent session): the message reached only its tag's subscribers.
  bool to_unknown = false;
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

// What a publish asks for besides its message.
struct publish_options {
  // Also deliver to the session with this client id, if it takes direct messages
  // (session_options::direct); else only its subscriptions may deliver it there.
  std::string_view to;
  // The message becomes its tag's retained message (a copy flagged retain, before it is
  // routed; live recipients get it unflagged, as in MQTT), or, with `clears_retained`, the
  // tag's retained message is cleared: the adapter decides which payloads clear (MQTT: an
  // empty one).
  bool retain = false;
  bool clears_retained = false;
  // A QoS 1/2 message for persistent recipients, or a retained one, is written to the store;
  // `on_durable` then runs on the store's thread when those writes are durable, and the
  // result says pending_durable.
  std::function<void(bool)> on_durable;
  // Store operations written in the same batch (a QoS 2 publish's incoming record).
  std::vector<store_op> with;
  // router::inject: the shared groups ("$share/g/f") the other node sent it here for; the
  // others are served elsewhere (null: none).
  const std::vector<std::string>* only_groups = nullptr;
};

// A publish's acknowledgement an observer may hold back (observed_publish::ack): hold()
// returns the completion the observer calls once, later, on any thread: true when the
// message is where the observer must have it (other nodes' inboxes), false when it could not
// be put there. The publisher's acknowledgement waits for it and for the store's.
class ack_hold {
 public:
  virtual std::function<void(bool)> hold() = 0;

 protected:
  ~ack_hold() = default;
};

// The cluster seam (issue 14), publishing side: told of every message published on this node
// once it was routed here, so that a cluster can pass it to the other nodes; those hand it to
// router::inject() there. The local agent has none.
struct observed_publish {
  std::string_view to;  // publish_options::to
  bool retain = false;  // the tag's retained message is set (or, with clears_retained, cleared)
  bool clears_retained = false;
  bool to_here = false;  // the `to` recipient has a session on this node
  // Shared groups with members here that the group policy sent to another node's member.
  std::span<const std::string> groups_elsewhere;
  // Shared groups a member here took the message for (no other node's member may).
  std::span<const std::string> groups_here;
  // A QoS 1/2 publish whose publisher waits for an acknowledgement (publish_options::
  // on_durable): the observer may hold it until the message is safe elsewhere too. Null
  // otherwise; valid during the call only.
  ack_hold* ack = nullptr;
};

class publish_observer {
 public:
  virtual ~publish_observer() = default;
  // `msg` carries this node's id (message::node) and its own seq. Called on the publisher's
  // thread with no router lock held (for a QoS 2 message deferred until durable: the store's
  // thread, once it is), only for publishes the router accepted; it must not block: it hands
  // the message to another thread and returns.
  virtual void published(const message_ptr& msg, const observed_publish& how) = 0;
};

class store_writer;

class router {
 public:
  explicit router(router_limits limits);

  // Changes are written through `w` (may be null: kept in memory only). Set once, before
  // serving.
  void set_store(store_writer* w) noexcept;
  // What set_store() set (null: none): for a part of the agent that writes beside the
  // router's changes, in order with them (the cluster's inbox position).
  store_writer* store() const noexcept { return store_; }
  // Who owns client ids across nodes (null: this node alone, the default). Set once, before
  // serving.
  void set_ownership(client_ownership* o) noexcept { ownership_ = o ? o : &local_; }
  // Told of each message published here (null: none, the default). Set once, before serving.
  void set_observer(publish_observer* o) noexcept { observer_ = o; }
  // Decides which node's member of a shared group spread over nodes takes each message
  // (null: this node's, the default). Set once, before serving.
  void set_group_policy(const group_policy* p) noexcept { groups_ = p; }
  // Told of this node's filters coming and going (null: none, the default). Set before
  // serving; node_filters() then gives those held already (the restored sessions').
  void set_filter_observer(filter_observer* o);
  std::vector<std::string> node_filters() const;
  // This node's id, stamped on every message published here (message::node). Set once at
  // start-up, before serving (the default, 0, is a node alone).
  void set_node(std::uint32_t id) noexcept { node_ = id; }
  std::uint32_t node_id() const noexcept { return node_; }

  // Start-up, in this order: the persistent sessions the store held, offline, with their
  // subscriptions and queued messages (the message numbering goes on after the highest
  // stored); the retained messages; the delayed wills, each due at its time, or at once when
  // its session did not survive.
  void restore_sessions(const store_snapshot& snap, std::size_t max_inflight,
                        std::size_t max_queued, std::size_t max_queued_bytes = 0);
  void restore_retained(const std::vector<message_ptr>& retained);
  void restore_wills(const std::vector<stored_will>& wills);

  const router_limits& limits() const noexcept { return limits_; }

  // --- sessions (router_sessions.cpp) ---

  // Registers `s` under its client id. A session already registered under that id is
  // replaced: its connection, if it has one, is kicked (close_reason::taken_over; then attach
  // returns true). When both are persistent (or `s` asks to resume: session_options::resume),
  // `s` resumes the old one (`*resumed` set): it takes over its subscriptions (those `s`'s
  // rights still allow) and its QoS 1/2 window; else the old one's subscriptions are dropped.
  bool attach(const std::shared_ptr<session>& s, bool* resumed = nullptr);
  // The connection of `s` is ending; after it returns, `s`'s sink is not used. A clean
  // session is unregistered and unsubscribed; a persistent one stays, offline, collecting
  // QoS 1/2 messages in its window until resumed or expired. Returns false when `s` was no
  // longer registered (another session took its client id).
  bool detach(session& s);
  // Another node took `client_id` (the cluster's ownership): this node's session for it, if
  // any, is kicked (close_reason::taken_over) and unregistered, with its subscriptions. A
  // persistent one's stored record stays: it is the new owner's now, read there through the
  // shared store. Not told to the ownership (the id is not this node's to release). Returns
  // whether there was one.
  bool evict(std::string_view client_id);
  // A session (connected, or persistent offline) is registered under `client_id`; every id
  // registered. (The cluster records them: where a direct message's recipient is.)
  bool has_session(std::string_view client_id) const;
  std::vector<std::string> session_ids() const;
  // Drops the offline persistent sessions whose expiry has passed at wall time `now_ms`;
  // returns their client ids. A delayed will of a session that ends is published then.
  std::vector<std::string> expire_sessions(std::int64_t now_ms);
  // A persistent session's expiry, changed while it is connected (MQTT 5 DISCONNECT): kept
  // that long after it leaves; 0: dropped when its connection ends.
  void set_session_expiry(session& s, std::int64_t expiry_s);

  // A will published at wall time `due_ms` (MQTT 5 Will Delay Interval) from `from`, unless
  // a connection with `from`'s client id attaches first or the session ends (then at once).
  // Written to the store (a persistent session's): it survives a restart of the agent.
  void delay_will(const std::shared_ptr<session>& from, message_ptr will, bool retain,
                  std::int64_t due_ms);
  // Publishes the delayed wills due at `now_ms` (the sweep, every second).
  void publish_due_wills(std::int64_t now_ms);

  // --- subscriptions ---

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
  // `s`'s client authenticated again (a refreshed token) and now has `rights`: they replace
  // its old ones, and the subscriptions they no longer allow are removed, in the same
  // critical section; returns those. Called on `s`'s connection thread only.
  std::vector<std::string> set_rights(session& s, acl rights);
  // How many subscriptions `s` holds, and a copy of them, taken under the routing lock (a
  // takeover may clear them meanwhile: no thread reads a session's set without it).
  std::size_t subscription_count_of(const session& s) const;
  filter_list subscriptions_of(const session& s) const;

  // --- publishing (router.cpp) ---

  // Routes `msg` to every session with a matching subscription, each at most once, and to
  // the session with client id `opts.to` if there is one. The caller has validated nothing:
  // tag rules and the publisher's rights are checked here. A QoS 2 message from a
  // persistent session, with a store, reaches its recipients only once its batch is durable
  // (so a client never sees a message whose record a crash could take back: exactly once
  // across a kill -9), then `on_durable` runs.
  route_result publish(const session& from, const message_ptr& msg, publish_options opts = {});
  // Routes a message from the agent itself ($sys/... tags); no ACL. With `opts`: also a will
  // another node's client left, published here for it (its node checked the rights).
  std::size_t publish_internal(const message_ptr& msg);
  std::size_t publish_internal(const message_ptr& msg, publish_options opts);
  // What another node should publish for `client_id` should this node die (null: nothing);
  // passed to the ownership (client_ownership::departing).
  void set_departure(std::string_view client_id, const departure* d) {
    ownership_->departing(client_id, d);
  }

  // The cluster seam, receiving side: a message another node published (its message::node
  // names that node), routed to this node's subscribers as a local publish is, but without
  // an ACL check (its publisher's node checked it) and without telling the observer (it is
  // not passed on again). A QoS 1/2 message is numbered here (seq is each node's own); its
  // msgid stays. One that carries this node's own id is ignored (a cluster that echoes a
  // node's publishes back to it): returns delivered 0. Any thread.
  route_result inject(const std::shared_ptr<message>& msg, publish_options opts = {});

  // The cluster seam for retained messages (issue 14): another node's retained message for
  // its tag (set, or with `clear` cleared), kept here too without routing it, so that a
  // subscription on this node finds it. False when a new tag would pass max_retained. Any
  // thread.
  bool apply_retained(const message& m, bool clear);
  // Every retained message this node holds (the cluster writes them back to a Redis that
  // lost its data).
  std::vector<message_ptr> retained_messages() const;

  // Writes `ops` for persistent session `s` and runs `done` when they are durable (on the
  // store's thread); for a clean session, or without a store, runs `done(true)` at once.
  void persist(const session& s, std::vector<store_op> ops, std::function<void(bool)> done);
  // A persistent session's QoS 1/2 message left its window (acknowledged, expired or
  // dropped): its queue entry goes from the store, and the message when nobody holds it.
  void forget(const session& s, std::uint64_t seq);
  // A QoS 1/2 delivery that reached `s`'s connection as it was ending (after detach), or
  // after `s` was superseded: into its window to wait for a resume, or to its successor.
  // Any thread.
  void redeliver(session& s, const message_ptr& msg, std::uint8_t qos);
  // A clean session `leaving` (detached) held QoS 1 or 2 deliveries its client did not
  // acknowledge: each that one of its shared subscriptions (`shared`, whole filters) matched
  // goes to a connected member of that group instead (MQTT 5.0 section 4.8.2), so a worker
  // that leaves does not take its unfinished jobs with it. Returns how many were passed on.
  std::size_t reshare(const session& leaving, std::span<const std::string> shared,
                      std::span<const message_ptr> held);

  // Drops tag history entries past history.max_age (a sweep, every second).
  void trim_history(std::int64_t now_ms);

  // A fresh agent-wide number for a QoS >= 1 message (message::seq). Numbers start from the
  // wall clock (ms x 1000) or after the highest stored, whichever is higher, so they do not
  // repeat across restarts (while the agent averages under a million a second) and stay
  // below 2^53 (exact in JavaScript) until the year 2255.
  std::uint64_t next_seq() noexcept { return seq_.fetch_add(1, std::memory_order_relaxed); }

  std::size_t session_count() const;
  std::size_t subscription_count() const;
  std::size_t retained_count() const { return retained_.size(); }
  using history_stats = history_log::stats;
  history_stats history_count() const { return history_.count(); }

  router_probe probe;

 private:
  // A message on its way to its recipients (router.cpp).
  struct route_state;
  route_result route(const session* from, const message_ptr& msg, publish_options& opts);
  route_result route_here(route_state& st);
  struct ack_join;
  void tell_observer(const message_ptr& msg, const publish_options& opts, bool to_here,
                     std::span<const std::string> elsewhere, std::span<const std::string> here,
                     ack_hold* ack);
  bool retain(route_state& st, bool in_batch) REQUIRES_SHARED(index_.mutex());
  route_result route_in_order(route_state& st) REQUIRES_SHARED(index_.mutex(), core::routing);
  std::size_t route_matched(route_state& st) REQUIRES_SHARED(index_.mutex(), core::routing);
  void persist_matched(route_state& st) REQUIRES_SHARED(index_.mutex(), core::routing);
  void deliver(session& s, const message_ptr& msg, std::uint8_t qos, std::int64_t& now)
      REQUIRES_SHARED(index_.mutex(), core::routing);
  void offer_offline(session& s, const message_ptr& msg, std::uint8_t qos, std::int64_t now_ms)
      REQUIRES_SHARED(index_.mutex(), core::routing);

  // Sessions (router_sessions.cpp).
  static bool may_subscribe(const session& s, std::string_view filter);
  void save_session(const session& s) REQUIRES_SHARED(index_.mutex());
  void drop_session(session& s);
  void publish_will(const delayed_will& w);

  router_limits limits_;
  store_writer* store_ = nullptr;
  local_ownership local_;
  client_ownership* ownership_ = &local_;
  publish_observer* observer_ = nullptr;
  const group_policy* groups_ = nullptr;
  std::uint32_t node_ = 0;
  std::atomic<std::uint64_t> seq_;
  session_registry sessions_;
  subscription_index index_;
  retained_store retained_;
  history_log history_;
  message_refs refs_;
  will_schedule wills_;
};

const char* to_string(route_error e) noexcept;

// The router's figures as metrics (common/metrics.hpp): messages published and delivered,
// takeovers, QoS 1/2 drops, and the sizes of its parts.
void write_metrics(const router& r, common::metric_set& out);

}  // namespace wsagent::core
