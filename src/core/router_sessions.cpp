// The router's sessions and subscriptions: attach (takeover, resume), detach, expiry, wills,
// subscribe, and the start-up restore. The publish path is in router.cpp.
#include <algorithm>
#include <unordered_map>

#include "common/clock.hpp"
#include "core/router.hpp"
#include "core/store_writer.hpp"

namespace wsagent::core {

bool router::may_subscribe(const session& s, std::string_view filter) {
  std::string_view group, inner;
  return s.rights().can_subscribe(split_shared(filter, group, inner) ? inner : filter);
}

bool router::attach(const std::shared_ptr<session>& s, bool* resumed) {
  if (resumed) *resumed = false;
  wills_.cancel(s->client_id());  // the client is back: its delayed will is not sent
  common::lock registry(sessions_.mutex());
  subscription_index::exclusive lock(index_);
  auto old = sessions_.put(s);
  // Told once `s` is registered: a cluster that asks the router then finds it.
  ownership_->claimed(s->client_id());
  if (!old) {
    save_session(*s);  // a persistent publisher's QoS 2 state needs its record too
    return false;
  }
  if (old == s) return false;
  bool took_over = false;
  if (auto* sink = old->sink()) {
    // Its connection is told to close; its later detach finds another session registered.
    sink->kick(close_reason::taken_over, "Session taken over");
    index_.set_sink(*old, nullptr);
    probe.takeovers.fetch_add(1, std::memory_order_relaxed);
    took_over = true;
  }
  const bool resume =
      old->persistent() && !s->options().fresh && (s->persistent() || s->options().resume);
  auto moved = index_.take_all(*old);
  // Resumed by a session that ends with its connection: the stored one is gone (its queue
  // entries released before the window moves).
  if (resume && !s->persistent()) drop_session(*old);
  if (resume) {
    for (const auto& [filter, options] : moved)
      if (may_subscribe(*s, filter) && index_.count_of(*s) < index_.max_subscriptions())
        index_.add_one(*s, filter, options);
    // Old, then new: `s` is not yet reachable by any other thread (its connection's is this
    // one, and deliveries need the routing lock), so the order cannot deadlock.
    common::lock old_lock(old->mutex());
    common::lock new_lock(s->mutex());
    s->window().absorb(old->window());
    s->incoming().merge(old->incoming());
    old->successor_ = s;  // QoS 1/2 deliveries still on their way to `old` go to `s`
    if (resumed) *resumed = true;
  } else if (old->persistent()) {
    drop_session(*old);  // a clean session forgets the persistent one
  }
  save_session(*s);
  return took_over;
}

bool router::detach(session& s) {
  common::lock registry(sessions_.mutex());
  subscription_index::exclusive lock(index_);
  const bool registered = sessions_.is_current(s);
  index_.set_sink(s, nullptr);
  if (registered && s.persistent() && s.expiry_s() > 0) {
    sessions_.set_disconnected(s, common::now_ms());
    save_session(s);
    return true;  // stays registered and subscribed, offline
  }
  if (registered) {
    sessions_.erase(s);
    // A persistent one here had its expiry set to 0 (MQTT 5 DISCONNECT): it ends now.
    drop_session(s);
    ownership_->released(s.client_id());
  }
  index_.take_all(s);
  return registered;
}

bool router::has_session(std::string_view client_id) const {
  common::shared_lock registry(sessions_.mutex());
  return sessions_.find(client_id) != nullptr;
}

std::vector<std::string> router::session_ids() const {
  common::shared_lock registry(sessions_.mutex());
  return sessions_.ids();
}

std::vector<std::string> router::expire_sessions(std::int64_t now_ms) {
  publish_due_wills(now_ms);
  std::vector<std::shared_ptr<session>> candidates;
  {
    // Looked for under the shared lock: the common case (nothing expired) stops nobody.
    common::shared_lock registry(sessions_.mutex());
    candidates = sessions_.expired(now_ms);
  }
  std::vector<std::string> gone;
  if (candidates.empty()) return gone;
  {
    common::lock registry(sessions_.mutex());
    subscription_index::exclusive lock(index_);
    for (const auto& s : candidates) {
      if (!sessions_.is_current(*s)) continue;  // resumed meanwhile (a new session object)
      index_.take_all(*s);
      drop_session(*s);
      sessions_.erase(*s);
      ownership_->released(s->client_id());
      gone.push_back(s->client_id());
    }
  }
  // A session that ends sends its delayed will at once (MQTT 5.0 section 3.1.3.2.2).
  for (const auto& w : wills_.take(gone))
    publish_will(w);
  return gone;
}

bool router::evict(std::string_view client_id) {
  std::shared_ptr<session> s;
  {
    common::lock registry(sessions_.mutex());
    subscription_index::exclusive lock(index_);
    s = sessions_.find(client_id);
    if (!s) return false;
    if (auto* sink = s->sink()) {
      sink->kick(close_reason::taken_over, "Session taken over");
      index_.set_sink(*s, nullptr);
      probe.takeovers.fetch_add(1, std::memory_order_relaxed);
    }
    index_.take_all(*s);
    sessions_.erase(*s);
  }
  wills_.cancel(client_id);  // the client is back, on the other node
  std::vector<message_ptr> held;
  {
    common::lock lock(s->mutex());
    s->evicted_.store(true, std::memory_order_release);
    s->window().all(held);
  }
  if (store_ && s->persistent()) {
    // Its queue entries are the new owner's (the shared store keeps them): only this node's
    // count of them goes; the operations that would delete them are not written. From now
    // on its window takes nothing (superseded), what reaches it is dropped here
    // (offer_offline), and its acknowledgements write nothing (forget).
    std::vector<store_op> not_written;
    refs_.release(held, not_written);
  }
  return true;
}

void router::set_session_expiry(session& s, std::int64_t expiry_s) {
  // Exclusive: its put_session reaches the store in order with those of subscriptions.
  subscription_index::exclusive lock(index_);
  s.expiry_s_.store(expiry_s, std::memory_order_relaxed);
  save_session(s);
}

void router::save_session(const session& s) {
  if (!store_ || !s.persistent()) return;
  stored_session rec{s.client_id(), s.expiry_s(), s.disconnected_ms(), {}};
  for (auto& [filter, options] : index_.copy_of(s))
    rec.subscriptions.push_back({std::move(filter), options});
  store_->submit({store_ops::put_session{std::move(rec)}});
}

// A persistent session is gone for good: its record and queue leave the store, and the
// messages nobody else holds with them.
void router::drop_session(session& s) {
  if (!store_ || !s.persistent()) return;
  std::vector<message_ptr> held;
  {
    common::lock lock(s.mutex());
    s.window().all(held);
  }
  std::vector<store_op> ops{store_ops::drop_session{s.client_id()}};  // and its queue
  refs_.release(held, ops);
  store_->submit(std::move(ops));
}

void router::delay_will(const std::shared_ptr<session>& from, message_ptr will, bool retain,
                        std::int64_t due_ms) {
  wills_.put({from, std::move(will), retain, due_ms});
}

void router::publish_due_wills(std::int64_t now_ms) {
  for (const auto& w : wills_.take_due(now_ms))
    publish_will(w);
}

void router::publish_will(const delayed_will& w) {
  // A copy: the stored will (put_will) may still be on its way to the store.
  auto m = w.will->copy();
  m->timestamp_ms = common::now_ms();
  if (m->qos > 0) m->seq = next_seq();
  publish_options opts;
  opts.retain = w.retain;
  opts.clears_retained = m->payload.empty();  // a will's rule in both protocols
  publish(*w.from, m, std::move(opts));
}

void router::restore_wills(const std::vector<stored_will>& wills) {
  const auto now = common::now_ms();
  std::vector<delayed_will> restored;
  {
    common::shared_lock registry(sessions_.mutex());
    for (const auto& w : wills) {
      // Checked when the client connected; published under its client id. A will whose
      // session did not outlive the restart is due at once.
      auto from = std::make_shared<session>(w.client_id, std::string(), acl::allow_all(), nullptr);
      const auto due = sessions_.find(w.client_id) ? w.due_ms : std::min(w.due_ms, now);
      restored.push_back({std::move(from), w.will, w.retain, due});
    }
  }
  wills_.restore(std::move(restored));
}

void router::restore_retained(const std::vector<message_ptr>& retained) {
  for (const auto& m : retained)
    // Numbered after every stored message (restore_sessions() ran first).
    if (m->qos > 0) const_cast<message&>(*m).seq = next_seq();  // created non-const by the store
  retained_.restore(retained);
}

void router::restore_sessions(const store_snapshot& snap, std::size_t max_inflight,
                              std::size_t max_queued, std::size_t max_queued_bytes) {
  common::lock registry(sessions_.mutex());
  subscription_index::exclusive lock(index_);
  std::unordered_map<std::uint64_t, message_ptr> messages;
  std::uint64_t top = 0;
  for (const auto& m : snap.messages) {
    messages.emplace(m.id, m.msg);
    top = std::max(top, m.id);
  }
  seq_.store(std::max<std::uint64_t>(seq_.load(), top + 1));
  const auto now_wall = common::now_ms();
  const auto now = common::steady_ms();
  std::unordered_map<std::string, session*> by_id;
  for (const auto& rec : snap.sessions) {
    auto s = std::make_shared<session>(rec.client_id, std::string(), acl(), nullptr,
                                       session_options{true, rec.expiry_s}, max_inflight,
                                       max_queued, max_queued_bytes);
    // Connected when the agent stopped: away since now.
    sessions_.set_disconnected(*s, rec.disconnected_ms ? rec.disconnected_ms : now_wall);
    for (const auto& sub : rec.subscriptions)
      index_.add_one(*s, sub.filter, sub.options);
    by_id[rec.client_id] = s.get();
    sessions_.put(s);
  }
  for (const auto& [client_id, msgid] : snap.incoming)
    if (auto it = by_id.find(client_id); it != by_id.end()) {
      common::lock slock(it->second->mutex());
      it->second->incoming().insert(msgid);
    }
  std::vector<store_op> cleanup;
  for (const auto& q : snap.queue) {
    auto sit = by_id.find(q.client_id);
    auto mit = messages.find(q.message_id);
    if (sit == by_id.end() || mit == messages.end()) {
      cleanup.push_back(store_ops::dequeue{q.client_id, q.seq});
      continue;
    }
    std::vector<message_ptr> dropped;
    {
      common::lock slock(sit->second->mutex());
      // Resent on resume, flagged dup (it may have gone out before the restart); a released
      // QoS 2 one as its `rel`.
      sit->second->window().offer(mit->second, now, &dropped, q.qos, q.qos == 2 && q.sent,
                                  delivery_window::origin::restored);
    }
    refs_.add(q.message_id);
    probe.qos1_dropped.fetch_add(dropped.size(), std::memory_order_relaxed);
    for (const auto& d : dropped) {  // the limits are lower than when it was queued
      cleanup.push_back(store_ops::dequeue{q.client_id, d->seq});
      refs_.release(d->seq, cleanup);
    }
  }
  history_.restore(snap, messages, cleanup, refs_);
  // Stored messages in no queue or history (written just before a crash, or released above:
  // dropping one twice is harmless).
  for (const auto& [id, m] : messages)
    if (!refs_.contains(id)) cleanup.push_back(store_ops::drop_message{id});
  if (store_ && !cleanup.empty()) store_->submit(std::move(cleanup));
}

// --- subscriptions ---

route_result router::subscribe(session& s, std::string_view filter,
                               const subscription_options& options,
                               std::vector<message_ptr>* retained, const recovery_request* request,
                               recovery_result* recovery, bool retained_if_new) {
  return subscribe(s, std::span<const std::string_view>(&filter, 1), options, retained, request,
                   recovery, retained_if_new);
}

route_result router::subscribe(session& s, std::span<const std::string_view> filters,
                               const subscription_options& options,
                               std::vector<message_ptr>* retained, const recovery_request* request,
                               recovery_result* recovery, bool retained_if_new) {
  route_result r;
  for (auto filter : filters) {
    if (auto e = validate_subscription(filter, limits_.tags); e != tag_error::none) {
      r.error = route_error::invalid_tag;
      r.tag = e;
      return r;
    }
    if (!may_subscribe(s, filter)) {
      r.error = route_error::forbidden;
      return r;
    }
  }
  subscription_index::exclusive lock(index_);
  if (!index_.add(s, filters, options, r.existed)) {
    r.error = route_error::too_many_subscriptions;
    return r;
  }
  save_session(s);
  // No publisher holds the routing lock now: what is retained or in a history is exactly
  // what was published before the subscriptions, and everything after reaches them live. A
  // shared subscription gets neither (MQTT 5.0 section 4.8.2: no retained messages for it).
  if (retained && !(retained_if_new && r.existed))
    for (auto filter : filters)
      if (!is_shared(filter)) retained_.match(filter, *retained);
  if (request && recovery && request->wanted())
    history_.recover(filters, *request, common::now_ms(), *recovery);
  if (s.rights().denies_some()) {  // what its deny patterns refuse is not sent either
    auto denied = [&](const message_ptr& m) { return !s.rights().can_receive(m->tag); };
    if (retained) std::erase_if(*retained, denied);
    if (recovery) std::erase_if(recovery->messages, denied);
  }
  return r;
}

route_result router::unsubscribe(session& s, std::string_view filter) {
  route_result r;
  if (auto e = validate_subscription(filter, limits_.tags); e != tag_error::none) {
    r.error = route_error::invalid_tag;
    r.tag = e;
    return r;
  }
  subscription_index::exclusive lock(index_);
  if (index_.remove(s, filter)) {
    r.existed = true;
    save_session(s);
  }
  return r;
}

std::vector<std::string> router::set_rights(session& s, acl rights) {
  std::vector<std::string> removed;
  subscription_index::exclusive lock(index_);
  s.acl_ = std::move(rights);
  for (auto& [filter, options] : index_.copy_of(s))
    if (!may_subscribe(s, filter) && index_.remove(s, filter)) removed.push_back(filter);
  if (!removed.empty()) save_session(s);
  return removed;
}

void router::set_filter_observer(filter_observer* o) {
  subscription_index::exclusive lock(index_);
  index_.set_observer(o);
}

std::vector<std::string> router::node_filters() const {
  subscription_index::shared lock(index_);
  return index_.node_filters();
}

std::size_t router::subscription_count_of(const session& s) const {
  subscription_index::shared lock(index_);
  return index_.count_of(s);
}

filter_list router::subscriptions_of(const session& s) const {
  subscription_index::shared lock(index_);
  return index_.copy_of(s);
}

std::size_t router::session_count() const {
  common::shared_lock registry(sessions_.mutex());
  return sessions_.size();
}

std::size_t router::subscription_count() const {
  subscription_index::shared lock(index_);
  return index_.size();
}

}  // namespace wsagent::core
