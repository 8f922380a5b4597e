// The publish path: validate -> retain -> number (history) -> match -> persist -> deliver.
// Sessions and subscriptions are in router_sessions.cpp.
#include "core/router.hpp"

#include <algorithm>
#include <atomic>
#include <vector>

#include "common/clock.hpp"
#include "core/store_writer.hpp"

namespace wsagent::core {

routing_role routing;

const char* to_string(route_error e) noexcept {
  switch (e) {
    case route_error::none:
      return "ok";
    case route_error::invalid_tag:
      return "invalid tag";
    case route_error::forbidden:
      return "not allowed";
    case route_error::too_many_subscriptions:
      return "too many subscriptions";
    case route_error::too_many_retained:
      return "too many retained messages";
  }
  return "error";
}

router::router(router_limits limits)
    : limits_(std::move(limits)),
      seq_(static_cast<std::uint64_t>(common::now_ms()) * 1000),
      index_(static_cast<std::size_t>(std::max(limits_.max_subscriptions, 0))),
      retained_(limits_.max_retained),
      history_(limits_.history) {}

void router::set_store(store_writer* w) noexcept {
  store_ = w;
  retained_.set_store(w);
  wills_.set_store(w);
}

// One publish on its way: what the pipeline's steps hand each other.
struct router::route_state {
  route_state(const message_ptr& m, publish_options& o) : msg(m), opts(o) {}
  route_state(message_ptr&&, publish_options&) = delete;  // it keeps a reference
  const message_ptr& msg;
  publish_options& opts;
  std::shared_ptr<session> direct;  // opts.to's session, looked up before the routing lock
  // A persistent publisher's QoS 2 message: delivered once its batch is durable.
  bool defer = false;
  std::vector<store_op> ops;      // written in the message's batch
  bool stored = false;            // ops hold its put_message
  std::shared_ptr<message> kept;  // the retained copy
  std::vector<subscriber>* matches = nullptr;
  bool pending = false;                // on_durable will run
  bool deferred = false;               // delivered from the store's completion
  bool injected = false;               // from another node (router::inject): not observed
  std::vector<std::string> elsewhere;  // shared groups the policy sent to another node
  std::vector<std::string> here;       // shared groups served here
  std::shared_ptr<ack_join> join;      // the publisher's acknowledgement, when it waits
};

route_result router::publish(const session& from, const message_ptr& msg, publish_options opts) {
  route_result r;
  if (auto e = validate_tag(msg->tag, limits_.tags); e != tag_error::none) {
    r.error = route_error::invalid_tag;
    r.tag = e;
    return r;
  }
  if (!from.rights().can_publish(msg->tag)) {
    r.error = route_error::forbidden;
    return r;
  }
  return route(&from, msg, opts);
}

std::size_t router::publish_internal(const message_ptr& msg) {
  publish_options opts;
  return route(nullptr, msg, opts).delivered;
}

bool router::apply_retained(const message& m, bool clear) {
  if (validate_tag(m.tag, limits_.tags) != tag_error::none) return false;
  // Under the routing lock, as a retained publish here: a racing subscription sees it once.
  subscription_index::shared lock(index_);
  if (clear) {
    retained_.clear(m.tag);
    return true;
  }
  return retained_.set(m, m.qos > 0 ? next_seq() : 0, nullptr) != nullptr;
}

std::vector<message_ptr> router::retained_messages() const {
  std::vector<message_ptr> out;
  retained_.match("#", out);
  std::vector<message_ptr> sys;
  retained_.match("$sys/#", sys);  // '#' does not match $ tags
  out.insert(out.end(), sys.begin(), sys.end());
  return out;
}

std::size_t router::publish_internal(const message_ptr& msg, publish_options opts) {
  return route(nullptr, msg, opts).delivered;
}

route_result router::inject(const std::shared_ptr<message>& msg, publish_options opts) {
  route_result r;
  if (msg->node == node_) return r;  // this node's own, echoed back
  if (auto e = validate_tag(msg->tag, limits_.tags); e != tag_error::none) {
    r.error = route_error::invalid_tag;
    r.tag = e;
    return r;
  }
  if (msg->qos > 0) msg->seq = next_seq();
  msg->offset = 0;  // history offsets are each node's own: numbered here if its tag has one
  const message_ptr shared = msg;  // route_state keeps a reference: not to a temporary
  route_state st(shared, opts);
  st.injected = true;
  return route_here(st);
}

// A QoS 1/2 publish's acknowledgement waiting for the store and for what an observer holds
// (ack_hold): `done` runs once every part is complete, with whether all went well, and only
// when the publish said it was pending (else the adapter acknowledged at once). The router
// holds a part of its own until the observer was asked, so that a store completion that
// comes first cannot run `done` before the observer had its say.
struct router::ack_join final : ack_hold, std::enable_shared_from_this<ack_join> {
  explicit ack_join(std::function<void(bool)> d) : done(std::move(d)) {}
  std::function<void(bool)> part() {
    parts.fetch_add(1, std::memory_order_relaxed);
    return [self = shared_from_this()](bool ok) { self->finish(ok); };
  }
  std::function<void(bool)> hold() override {
    held.store(true, std::memory_order_relaxed);
    return part();
  }
  void finish(bool ok) {
    if (!ok) failed.store(true, std::memory_order_relaxed);
    if (parts.fetch_sub(1, std::memory_order_acq_rel) == 1 && armed.load(std::memory_order_relaxed))
      done(!failed.load(std::memory_order_relaxed));
  }
  std::function<void(bool)> done;
  std::atomic<int> parts{0};
  std::atomic<bool> failed{false};
  // The observer held it; the publish is pending (`done` is its acknowledgement). Both are
  // set before the router's part is let go, and read by the last part to finish.
  std::atomic<bool> held{false};
  std::atomic<bool> armed{false};
};

route_result router::route(const session* from, const message_ptr& msg, publish_options& opts) {
  const_cast<message&>(*msg).node = node_;  // created non-const by its publisher
  std::shared_ptr<ack_join> join;
  std::function<void(bool)> router_part;
  if (observer_ && msg->qos > 0 && opts.on_durable) {
    join = std::make_shared<ack_join>(std::move(opts.on_durable));
    router_part = join->part();
    opts.on_durable = join->part();  // the store's
  }
  route_state st(msg, opts);
  st.join = join;
  st.defer = msg->qos == 2 && store_ && opts.on_durable && from && from->persistent();
  auto r = route_here(st);
  if (!join) {
    // Told after the locks are let go; a deferred one, from the store's completion.
    if (r.ok() && !st.deferred)
      tell_observer(msg, opts, st.direct != nullptr, st.elsewhere, st.here, nullptr);
    return r;
  }
  if (!r.pending_durable) {
    opts.on_durable(true);  // the store's part: nothing to wait for
    opts.on_durable = nullptr;
  }
  if (r.ok() && !st.deferred)
    tell_observer(msg, opts, st.direct != nullptr, st.elsewhere, st.here, join.get());
  // (deferred: the store's completion tells the observer, then lets its part go)
  r.pending_durable = r.pending_durable || join->held.load(std::memory_order_relaxed);
  join->armed.store(r.pending_durable, std::memory_order_relaxed);
  router_part(true);
  return r;
}

void router::tell_observer(const message_ptr& msg, const publish_options& opts, bool to_here,
                           std::span<const std::string> elsewhere,
                           std::span<const std::string> here, ack_hold* ack) {
  if (observer_)
    observer_->published(
        msg, {opts.to, opts.retain, opts.clears_retained, to_here, elsewhere, here, ack});
}

route_result router::route_here(route_state& st) {
  auto& opts = st.opts;
  const auto& msg = st.msg;
  bool to_unknown = false;
  if (!store_) opts.with.clear();
  st.ops = std::move(opts.with);
  if (!opts.to.empty()) {
    // Before the routing lock: the registry's comes first in the order.
    common::shared_lock lock(sessions_.mutex());
    st.direct = sessions_.find(opts.to);
    // Not here: perhaps on another node (a message from one was sent here for it).
    to_unknown = !st.direct && (st.injected || !ownership_->held_elsewhere(opts.to));
    if (st.direct && !st.direct->options().direct) st.direct.reset();
  }
  subscription_index::shared lock(index_);
  if (history_.covers(msg->tag)) {
    // Numbered and routed under the tag's stripe: subscribers get the tag's messages in
    // offset order, and a trim never overtakes the write of what it trims.
    common::lock order(history_.stripe(msg->tag));
    auto r = route_in_order(st);
    r.to_unknown = to_unknown;
    return r;
  }
  route_result r;
  r.to_unknown = to_unknown;
  if (!retain(st, false)) {
    r.error = route_error::too_many_retained;
    return r;
  }
  r.delivered = route_matched(st);
  r.pending_durable = st.pending;
  if (opts.retain && !opts.clears_retained && store_ && opts.on_durable && !st.pending) {
    // A retained QoS 1 publish is acknowledged once its retained copy is on disk: the writer
    // runs this once everything submitted before it (the put_retained) is durable.
    store_->submit({}, std::move(opts.on_durable));
    r.pending_durable = true;
  }
  return r;
}

// The retained step: false when a retained publish to a new tag passes max_retained. With
// `in_batch` the put_retained goes into the message's batch (its offset is set first).
bool router::retain(route_state& st, bool in_batch) {
  if (!st.opts.retain) return true;
  if (st.opts.clears_retained) {
    retained_.clear(st.msg->tag);
    return true;
  }
  st.kept = retained_.set(*st.msg, st.msg->qos > 0 ? next_seq() : 0,
                          in_batch && store_ ? &st.ops : nullptr);
  return st.kept != nullptr;
}

route_result router::route_in_order(route_state& st) {
  route_result r;
  auto& m = const_cast<message&>(*st.msg);  // created non-const by its publisher
  m.seq = next_seq();                       // in offset order; its id in the store
  if (!retain(st, true)) {
    r.error = route_error::too_many_retained;
    return r;
  }
  std::vector<store_op> history_ops;
  if (history_.append(st.msg, common::now_ms(), history_ops, refs_)) {
    // Nobody sees the retained copy yet (subscribers read it with the routing lock held
    // exclusive, the store gets it in this batch).
    if (st.kept) st.kept->offset = m.offset;
    if (store_) {
      st.ops.push_back(store_ops::put_message{{m.seq, st.msg}});
      st.stored = true;
      st.ops.insert(st.ops.end(), std::make_move_iterator(history_ops.begin()),
                    std::make_move_iterator(history_ops.end()));
    }
  }  // else past history.max_tags: routed without an offset
  r.delivered = route_matched(st);
  r.pending_durable = st.pending;
  if (st.opts.retain && !st.opts.clears_retained && store_ && st.opts.on_durable && !st.pending) {
    store_->submit({}, std::move(st.opts.on_durable));
    r.pending_durable = true;
  }
  return r;
}

std::size_t router::route_matched(route_state& st) {
  thread_local std::vector<subscriber> matches;
  matches.clear();
  static const std::vector<std::string> no_groups;
  group_choice groups;
  if (st.injected)
    groups.only = st.opts.only_groups ? st.opts.only_groups : &no_groups;
  else
    groups.policy = groups_;
  groups.elsewhere = &st.elsewhere;
  // (Only a cluster asks which groups were served here: no copies for a node alone.)
  if (!st.injected && observer_) groups.here = &st.here;
  std::size_t lists = index_.match(*st.msg, matches, groups);
  if (st.direct) {
    matches.push_back({st.direct.get(), 2});  // direct: at the publish's QoS
    ++lists;
  }
  unique_recipients(matches, lists);
  st.matches = &matches;
  if (store_) persist_matched(st);
  probe.published.fetch_add(1, std::memory_order_relaxed);
  probe.deliveries.fetch_add(matches.size(), std::memory_order_relaxed);
  if (st.deferred) return matches.size();
  std::int64_t now = 0;
  for (const auto& x : matches)
    deliver(*x.who, st.msg, std::min(st.msg->qos, x.qos), now);
  return matches.size();
}

// Persistent recipients of a QoS 1/2 message: one stored copy and one queue entry each,
// submitted before any delivery, so that whatever a delivery takes out of a window
// (acknowledged, dropped) reaches the store after the entry it takes out.
void router::persist_matched(route_state& st) {
  const auto& msg = st.msg;
  auto batch = std::move(st.ops);
  std::uint32_t entries = 0;
  if (msg->qos > 0) {
    for (const auto& x : *st.matches) {
      const auto qos = std::min(msg->qos, x.qos);
      if (qos == 0 || !x.who->persistent()) continue;
      if (!st.stored) batch.push_back(store_ops::put_message{{msg->seq, msg}});
      st.stored = true;
      batch.push_back(store_ops::enqueue{{x.who->client_id(), msg->seq, msg->seq, qos, false}});
      ++entries;
    }
  }
  if (entries) refs_.add(msg->seq, entries);
  if (batch.empty()) return;
  auto& done = st.opts.on_durable;
  if (st.defer) {
    // Delivered from the store's thread once durable, to the sessions matched now.
    std::vector<std::pair<std::shared_ptr<session>, std::uint8_t>> to_whom;
    for (const auto& x : *st.matches)
      if (auto who = x.who->weak_from_this().lock())
        to_whom.emplace_back(std::move(who), std::min(msg->qos, x.qos));
    store_->submit(
        std::move(batch), [this, msg, to_whom = std::move(to_whom), done = std::move(done),
                           to = std::string(st.opts.to), to_here = st.direct != nullptr,
                           elsewhere = st.elsewhere, here = st.here, retain = st.opts.retain,
                           clears = st.opts.clears_retained, join = st.join](bool ok) {
          if (ok) {
            {
              subscription_index::shared lock(index_);
              std::int64_t now = 0;
              for (const auto& [who, qos] : to_whom)
                deliver(*who, msg, qos, now);
            }
            if (observer_)
              observer_->published(msg, {to, retain, clears, to_here, elsewhere, here, join.get()});
          }
          done(ok);
        });
    st.pending = st.deferred = true;
    return;
  }
  if (done) {
    store_->submit(std::move(batch), std::move(done));
    st.pending = true;
  } else {
    store_->submit(std::move(batch));
  }
}

// To `s`'s connection, or, for a persistent session without one, into its window. `now` is
// read once, when first needed.
void router::deliver(session& s, const message_ptr& msg, std::uint8_t qos, std::int64_t& now) {
  // A subscription its deny patterns only overlap ("#" with "secret/#" denied): checked here,
  // per message, for the clients that have such patterns.
  if (s.rights().denies_some() && !s.rights().can_receive(msg->tag)) return;
  if (auto* sink = s.sink()) {
    sink->deliver(msg, qos);
  } else if (qos > 0 && s.persistent()) {
    if (!now) now = common::steady_ms();
    offer_offline(s, msg, qos, now);
  }
}

void router::offer_offline(session& s, const message_ptr& msg, std::uint8_t qos,
                           std::int64_t now_ms) {
  std::shared_ptr<session> next;
  std::vector<message_ptr> dropped;
  bool evicted = false;
  {
    common::lock lock(s.mutex());
    next = s.successor();
    evicted = !next && s.evicted();
    // Not sent: it goes out when the client is back (a first delivery, not a resend).
    if (!next && !evicted)
      s.window().offer(msg, now_ms, &dropped, qos, false, delivery_window::origin::offline);
  }
  if (evicted) {
    // Another node owns the client id now: its queue entry there stands; only this node's
    // count of it goes.
    if (store_ && s.persistent()) {
      std::vector<store_op> not_written;
      refs_.release(msg->seq, not_written);
    }
    return;
  }
  if (next) {
    if (auto* sink = next->sink())
      sink->deliver(msg, qos);
    else
      offer_offline(*next, msg, qos, now_ms);
    return;
  }
  probe.qos1_dropped.fetch_add(dropped.size(), std::memory_order_relaxed);
  for (const auto& d : dropped)
    forget(s, d->seq);
}

void router::redeliver(session& s, const message_ptr& msg, std::uint8_t qos) {
  subscription_index::shared lock(index_);
  offer_offline(s, msg, qos, common::steady_ms());
}

void router::persist(const session& s, std::vector<store_op> ops, std::function<void(bool)> done) {
  if (!store_ || !s.persistent()) return done(true);
  store_->submit(std::move(ops), std::move(done));
}

void router::forget(const session& s, std::uint64_t seq) {
  // An evicted session's entries are the new owner's; its count went at the eviction.
  if (!store_ || !s.persistent() || s.evicted()) return;
  std::vector<store_op> ops{store_ops::dequeue{s.client_id(), seq}};
  refs_.release(seq, ops);
  store_->submit(std::move(ops));
}

std::size_t router::reshare(const session& leaving, std::span<const std::string> shared,
                            std::span<const message_ptr> held) {
  subscription_index::shared lock(index_);
  std::size_t passed = 0;
  std::int64_t now = 0;
  for (const auto& msg : held)
    for (const auto& filter : shared) {
      std::uint8_t qos = 0;
      if (auto* who = index_.other_member(filter, *msg, leaving, qos)) {
        deliver(*who, msg, qos, now);
        ++passed;
      }
    }
  return passed;
}

void router::trim_history(std::int64_t now_ms) {
  auto ops = history_.trim(now_ms, refs_);
  if (store_ && !ops.empty()) store_->submit(std::move(ops));
}

void write_metrics(const router& r, common::metric_set& out) {
  auto load = [](const auto& a) { return static_cast<double>(a.load(std::memory_order_relaxed)); };
  out.counter("messages_published_total", "Messages published and routed (clients, wills, $sys).",
              load(r.probe.published));
  out.counter("messages_delivered_total",
              "Deliveries the router made: one per matching recipient of a message.",
              load(r.probe.deliveries));
  out.counter("messages_dropped_total", "Messages dropped, by reason.", load(r.probe.qos1_dropped),
              {{"reason", "session_queue"}});
  out.counter("session_takeovers_total", "Connections closed because another took their client id.",
              load(r.probe.takeovers));
  out.gauge("sessions", "Sessions: connected clients and persistent sessions kept offline.",
            static_cast<double>(r.session_count()));
  out.gauge("subscriptions", "Subscriptions of all sessions.",
            static_cast<double>(r.subscription_count()));
  out.gauge("retained_messages", "Tags holding a retained message.",
            static_cast<double>(r.retained_count()));
  const auto h = r.history_count();
  out.gauge("history_tags", "Tags with a history.", static_cast<double>(h.tags));
  out.gauge("history_messages", "Messages held in tag histories.", static_cast<double>(h.entries));
  out.counter("history_refused_total",
              "Messages to new tags that got no history (past history.max_tags).",
              static_cast<double>(h.refused));
}

}  // namespace wsagent::core
