#include "core/router.hpp"

#include <algorithm>
#include <mutex>
#include <vector>

#include "common/clock.hpp"
#include "core/store_writer.hpp"

namespace wsagent::core {

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
      history_(limits_.history) {}

bool router::attach(const std::shared_ptr<session>& s, std::uint16_t takeover_code, bool* resumed) {
  if (resumed) *resumed = false;
  {
    std::lock_guard wl(wills_mutex_);  // the client is back: its delayed will is not sent
    if (wills_.erase(s->client_id()) && store_)
      store_->submit({store_ops::drop_will{s->client_id()}});
  }
  std::unique_lock lock(mutex_);
  auto [it, inserted] = sessions_.try_emplace(s->client_id(), s);
  if (inserted) {
    save_session_locked(*s);  // a persistent publisher's QoS 2 state needs its record too
    return false;
  }
  std::shared_ptr<session> old = it->second;
  if (old == s) return false;
  bool took_over = false;
  if (old->sink_) {
    // Its connection is told to close; its later detach finds another session registered.
    old->sink_->kick(takeover_code, "Session taken over");
    old->sink_ = nullptr;
    probe.takeovers.fetch_add(1, std::memory_order_relaxed);
    took_over = true;
  }
  const bool resume = s->persistent() && old->persistent() && !s->options().fresh;
  for (auto& [filter, options] : old->subscriptions_) {
    unindex_locked(filter, *old);
    if (resume && may_subscribe(*s, filter) &&
        s->subscriptions_.size() < static_cast<std::size_t>(limits_.max_subscriptions)) {
      s->subscriptions_.emplace(filter, options);
      index_locked(filter, *s, options);
    }
  }
  old->subscriptions_.clear();
  if (resume) {
    std::scoped_lock both(old->mutex_, s->mutex_);
    s->window_.absorb(old->window_);
    s->incoming_.merge(old->incoming_);
    old->successor_ = s;  // QoS 1 deliveries still on their way to `old` go to `s`
    if (resumed) *resumed = true;
  } else if (old->persistent()) {
    drop_session_locked(*old);  // a clean session forgets the persistent one
  }
  it->second = s;
  save_session_locked(*s);
  return took_over;
}

void router::save_session_locked(const session& s) {
  if (!store_ || !s.persistent()) return;
  stored_session rec{s.client_id(), s.options().expiry_s, s.disconnected_ms, {}};
  rec.subscriptions.reserve(s.subscriptions_.size());
  for (const auto& [filter, options] : s.subscriptions_)
    rec.subscriptions.push_back({filter, options});
  store_->submit({store_ops::put_session{std::move(rec)}});
}

// One queue entry of message `seq` is gone; with the last one the stored message goes too
// (appended to `ops`). refs_mutex_ is held.
void router::release_ref_locked(std::uint64_t seq, std::vector<store_op>& ops) {
  auto it = refs_.find(seq);
  if (it == refs_.end() || --it->second > 0) return;
  refs_.erase(it);
  ops.push_back(store_ops::drop_message{seq});
}

void router::unsubscribe_all_locked(session& s) {
  for (auto& [filter, options] : s.subscriptions_)
    unindex_locked(filter, s);
  s.subscriptions_.clear();
}

void router::drop_session_locked(session& s) {
  if (!store_ || !s.persistent()) return;
  std::vector<message_ptr> held;
  {
    std::lock_guard lock(s.mutex_);
    s.window_.all(held);
  }
  std::vector<store_op> ops{store_ops::drop_session{s.client_id()}};  // and its queue
  {
    std::lock_guard lock(refs_mutex_);
    for (const auto& m : held)
      release_ref_locked(m->seq, ops);
  }
  store_->submit(std::move(ops));
}

void router::forget(const session& s, std::uint64_t seq) {
  if (!store_ || !s.persistent()) return;
  std::vector<store_op> ops{store_ops::dequeue{s.client_id(), seq}};
  {
    std::lock_guard lock(refs_mutex_);
    release_ref_locked(seq, ops);
  }
  store_->submit(std::move(ops));
}

void router::restore_sessions(const store_snapshot& snap, std::size_t max_inflight,
                              std::size_t max_queued, std::size_t max_queued_bytes) {
  std::unique_lock lock(mutex_);
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
    s->disconnected_ms = rec.disconnected_ms ? rec.disconnected_ms : now_wall;
    for (const auto& sub : rec.subscriptions) {
      s->subscriptions_.emplace(sub.filter, sub.options);
      index_locked(sub.filter, *s, sub.options);
    }
    by_id[rec.client_id] = s.get();
    sessions_[rec.client_id] = std::move(s);
  }
  for (const auto& [client_id, msgid] : snap.incoming)
    if (auto it = by_id.find(client_id); it != by_id.end()) it->second->incoming_.insert(msgid);
  std::vector<store_op> cleanup;
  std::lock_guard refs_lock(refs_mutex_);
  for (const auto& q : snap.queue) {
    auto sit = by_id.find(q.client_id);
    auto mit = messages.find(q.message_id);
    if (sit == by_id.end() || mit == messages.end()) {
      cleanup.push_back(store_ops::dequeue{q.client_id, q.seq});
      continue;
    }
    std::vector<message_ptr> dropped;
    std::lock_guard slock(sit->second->mutex_);
    // Resent (dup) on resume; a released QoS 2 one as its `rel`.
    sit->second->window_.offer(mit->second, now, &dropped, q.qos, q.qos == 2 && q.sent);
    ++refs_[q.message_id];
    probe.qos1_dropped.fetch_add(dropped.size(), std::memory_order_relaxed);
    for (const auto& d : dropped) {  // the limits are lower than when it was queued
      cleanup.push_back(store_ops::dequeue{q.client_id, d->seq});
      release_ref_locked(d->seq, cleanup);
    }
  }
  restore_history(snap, messages, cleanup);
  // Stored messages in no queue or history (written just before a crash, or released above:
  // dropping one twice is harmless).
  for (const auto& [id, m] : messages)
    if (!refs_.contains(id)) cleanup.push_back(store_ops::drop_message{id});
  if (store_ && !cleanup.empty()) store_->submit(std::move(cleanup));
}

bool router::detach(session& s) {
  std::unique_lock lock(mutex_);
  auto it = sessions_.find(s.client_id());
  const bool registered = it != sessions_.end() && it->second.get() == &s;
  s.sink_ = nullptr;
  if (registered && s.persistent() && s.options().expiry_s == 0) {
    drop_session_locked(s);  // its expiry was set to 0 (MQTT 5 DISCONNECT): it ends now
    sessions_.erase(it);
    unsubscribe_all_locked(s);
    return true;
  }
  if (registered && s.persistent()) {
    s.disconnected_ms = common::now_ms();
    save_session_locked(s);
    return true;  // stays registered and subscribed, offline
  }
  if (registered) sessions_.erase(it);
  unsubscribe_all_locked(s);
  return registered;
}

std::vector<std::string> router::expire_sessions(std::int64_t now_ms) {
  auto expired = [now_ms](const session& s) {
    return s.persistent() && !s.sink_ && s.disconnected_ms &&
           s.disconnected_ms + s.options().expiry_s * 1000 <= now_ms;
  };
  std::vector<std::string> gone;
  publish_due_wills(now_ms);
  {
    // Looked for under the shared lock: the common case (nothing expired) never stops
    // publishers.
    std::shared_lock lock(mutex_);
    for (const auto& [id, s] : sessions_)
      if (expired(*s)) gone.push_back(id);
  }
  if (gone.empty()) return gone;
  std::unique_lock lock(mutex_);
  std::erase_if(gone, [&](const std::string& id) {
    auto it = sessions_.find(id);
    if (it == sessions_.end() || !expired(*it->second)) return true;  // resumed meanwhile
    unsubscribe_all_locked(*it->second);
    drop_session_locked(*it->second);
    sessions_.erase(it);
    return false;
  });
  lock.unlock();
  // A session that ends sends its delayed will at once (MQTT 5.0 section 3.1.3.2.2).
  std::vector<delayed_will> ended;
  {
    std::lock_guard wl(wills_mutex_);
    for (const auto& id : gone)
      if (auto w = wills_.find(id); w != wills_.end()) {
        ended.push_back(std::move(w->second));
        wills_.erase(w);
        if (store_) store_->submit({store_ops::drop_will{id}});
      }
  }
  for (const auto& w : ended)
    publish_will(w);
  return gone;
}

void router::set_session_expiry(session& s, std::int64_t expiry_s) {
  std::unique_lock lock(mutex_);
  s.options_.expiry_s = expiry_s;
  save_session_locked(s);
}

void router::delay_will(const std::shared_ptr<session>& from, message_ptr will, bool retain,
                        std::int64_t due_ms) {
  std::lock_guard wl(wills_mutex_);
  if (store_ && from->persistent())  // under wills_mutex_: the store sees put and drop in order
    store_->submit({store_ops::put_will{{from->client_id(), will, retain, due_ms}}});
  wills_[from->client_id()] = delayed_will{from, std::move(will), retain, due_ms};
}

void router::restore_wills(const std::vector<stored_will>& wills) {
  const auto now = common::now_ms();
  std::shared_lock lock(mutex_);
  std::lock_guard wl(wills_mutex_);
  for (const auto& w : wills) {
    // Checked when the client connected; published under its client id. A will whose
    // session did not outlive the restart is due at once.
    auto from = std::make_shared<session>(w.client_id, std::string(), acl::allow_all(), nullptr);
    const auto due = sessions_.contains(w.client_id) ? w.due_ms : std::min(w.due_ms, now);
    wills_[w.client_id] = delayed_will{std::move(from), w.will, w.retain, due};
  }
}

void router::publish_due_wills(std::int64_t now_ms) {
  std::vector<delayed_will> due;
  {
    std::lock_guard wl(wills_mutex_);
    for (auto it = wills_.begin(); it != wills_.end();) {
      if (it->second.due_ms > now_ms) {
        ++it;
        continue;
      }
      if (store_) store_->submit({store_ops::drop_will{it->first}});
      due.push_back(std::move(it->second));
      it = wills_.erase(it);
    }
  }
  for (const auto& w : due)
    publish_will(w);
}

void router::publish_will(const delayed_will& w) {
  // A copy: the stored will (put_will) may still be on its way to the store.
  auto m = w.will->copy();
  m->timestamp_ms = common::now_ms();
  if (m->qos > 0) m->seq = next_seq();
  publish(*w.from, m, {}, w.retain);
}

void router::restore_retained(const std::vector<message_ptr>& retained) {
  std::unique_lock lock(mutex_);
  std::lock_guard rlock(retained_mutex_);
  for (const auto& m : retained) {
    // Numbered after every stored message (restore_sessions() ran first).
    if (m->qos > 0) const_cast<message&>(*m).seq = next_seq();  // created non-const by the store
    retained_.set(m, SIZE_MAX);  // what was kept stays, whatever the limit is now
  }
}

route_result router::subscribe(session& s, std::string_view filter,
                               const subscription_options& options,
                               std::vector<message_ptr>* retained, const recovery_request* request,
                               recovery_result* recovery, bool retained_if_new) {
  return subscribe(s, std::span<const std::string_view>(&filter, 1), options, retained, request,
                   recovery, retained_if_new);
}

bool router::may_subscribe(const session& s, std::string_view filter) {
  std::string_view group, inner;
  return s.rights().can_subscribe(split_shared(filter, group, inner) ? inner : filter);
}

void router::index_locked(std::string_view filter, session& s, const subscription_options& o) {
  std::string_view group, inner;
  if (!split_shared(filter, group, inner)) {
    index_.add(filter, &s, o.qos, o.no_local);
    return;
  }
  auto [it, fresh] = shared_.try_emplace(std::string(filter));
  auto& g = it->second;
  if (fresh) {
    g.filter = inner;
    shared_index_.add(g.filter, &g, 0);
  }
  for (auto& m : g.members)
    if (m.who == &s) {
      m.qos = o.qos;
      return;
    }
  g.members.push_back({&s, o.qos});
}

void router::unindex_locked(std::string_view filter, session& s) {
  std::string_view group, inner;
  if (!split_shared(filter, group, inner)) {
    index_.remove(filter, &s);
    return;
  }
  auto it = shared_.find(filter);
  if (it == shared_.end()) return;
  std::erase_if(it->second.members, [&](const subscriber& m) { return m.who == &s; });
  if (it->second.members.empty()) {
    shared_index_.remove(it->second.filter, &it->second);
    shared_.erase(it);
  }
}

// One member of each shared subscription group matching `tag`, appended to `out`: the
// next in turn that is connected, else (nobody is) the next in turn if it can hold the
// message offline (a persistent session, QoS >= 1). Returns how many were appended.
std::size_t router::match_shared(const message& msg, std::vector<subscriber>& out) {
  thread_local std::vector<shared_index::entry> groups;
  groups.clear();
  shared_index_.match(msg.tag, groups);
  std::size_t added = 0;
  for (const auto& e : groups) {
    auto& g = *e.who;
    const auto n = g.members.size();
    const auto first = g.next.fetch_add(1, std::memory_order_relaxed) % n;
    const subscriber* pick = nullptr;
    for (std::size_t i = 0; i < n && !pick; ++i)
      if (g.members[(first + i) % n].who->sink_) pick = &g.members[(first + i) % n];
    if (!pick) {
      const auto& m = g.members[first];
      if (!m.who->persistent() || std::min(msg.qos, m.qos) == 0) continue;
      pick = &m;
    }
    out.push_back(*pick);
    ++added;
  }
  return added;
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
  std::unique_lock lock(mutex_);
  std::size_t fresh = 0;
  for (auto filter : filters)
    if (!s.subscriptions_.contains(filter)) ++fresh;
  r.existed = fresh == 0;
  if (s.subscriptions_.size() + fresh > static_cast<std::size_t>(limits_.max_subscriptions)) {
    r.error = route_error::too_many_subscriptions;
    return r;
  }
  for (auto filter : filters) {
    if (auto it = s.subscriptions_.find(filter); it != s.subscriptions_.end())
      it->second = options;
    else
      s.subscriptions_.emplace(std::string(filter), options);
    index_locked(filter, s, options);
  }
  save_session_locked(s);
  // No publisher holds mutex_ now: what is retained or in a history is exactly what was
  // published before the subscriptions, and everything after reaches them live. A shared
  // subscription gets neither (MQTT 5.0 section 4.8.2: no retained messages for it).
  if (retained_if_new && r.existed) retained = nullptr;  // MQTT 5 retain handling 1
  for (auto filter : filters)
    if (retained && !is_shared(filter)) retained_.match(filter, *retained);
  if (request && recovery && request->wanted()) {
    std::lock_guard hlock(history_mutex_);
    const auto now = common::now_ms();
    for (auto filter : filters)
      if (!is_shared(filter)) history_.recover(filter, *request, now, *recovery);
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
  std::unique_lock lock(mutex_);
  if (auto it = s.subscriptions_.find(filter); it != s.subscriptions_.end()) {
    r.existed = true;
    unindex_locked(filter, s);
    s.subscriptions_.erase(it);
    save_session_locked(s);
  }
  return r;
}

std::size_t router::reshare(const session& leaving, std::span<const std::string> shared,
                            std::span<const message_ptr> held) {
  std::shared_lock lock(mutex_);
  std::size_t passed = 0;
  std::int64_t now = 0;
  for (const auto& msg : held) {
    for (const auto& filter : shared) {
      auto it = shared_.find(filter);
      if (it == shared_.end() || !filter_matches(it->second.filter, msg->tag)) continue;
      auto& g = it->second;
      const auto n = g.members.size();
      const auto first = g.next.fetch_add(1, std::memory_order_relaxed) % n;
      for (std::size_t i = 0; i < n; ++i) {
        const auto& m = g.members[(first + i) % n];
        if (m.who == &leaving || !m.who->sink_ || std::min(msg->qos, m.qos) == 0) continue;
        deliver_locked(*m.who, msg, std::min(msg->qos, m.qos), now);
        ++passed;
        break;
      }
    }
  }
  return passed;
}

std::size_t router::subscription_count_of(const session& s) const {
  std::shared_lock lock(mutex_);
  return s.subscriptions_.size();
}

std::vector<std::pair<std::string, subscription_options>> router::subscriptions_of(
    const session& s) const {
  std::shared_lock lock(mutex_);
  return {s.subscriptions_.begin(), s.subscriptions_.end()};
}

route_result router::publish(const session& from, const message_ptr& msg, std::string_view to,
                             bool retain, std::function<void(bool)> on_durable,
                             std::vector<store_op> with) {
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
  std::shared_lock lock(mutex_);
  std::shared_ptr<message> kept;  // the retained copy
  if (retain && !retain_locked(msg, &kept)) {
    r.error = route_error::too_many_retained;
    return r;
  }
  const bool defer = msg->qos == 2 && store_ && on_durable && from.persistent();
  r.delivered = route_recorded(msg, to, on_durable ? &on_durable : nullptr, &r.pending_durable,
                               kept.get(), &with, defer);
  if (retain && store_ && on_durable && !r.pending_durable) {
    // A retained QoS 1 publish is acknowledged once its retained copy is on disk: the
    // writer runs this once everything submitted before it (the put_retained) is durable.
    store_->submit({}, std::move(on_durable));
    r.pending_durable = true;
  }
  return r;
}

// Payloads that clear a tag's retained message: none at all, JSON "" or null.
static bool clears_retained(const message& m) {
  return m.payload.empty() ||
         (m.format == payload_format::json && (m.payload == "\"\"" || m.payload == "null"));
}

bool router::retain_locked(const message_ptr& msg, std::shared_ptr<message>* copy) {
  std::lock_guard lock(retained_mutex_);
  // The store is told under the same lock, so it sees a tag's changes in the order the
  // tree does.
  if (clears_retained(*msg)) {
    if (retained_.clear(msg->tag) && store_) store_->submit({store_ops::clear_retained{msg->tag}});
    return true;
  }
  auto kept = msg->copy();
  kept->retain = true;
  kept->published_retain = true;
  // Its own number: delivered at QoS 1 or 2 to a new subscription, it is acknowledged apart
  // from the live message.
  if (kept->qos > 0) kept->seq = next_seq();
  if (!retained_.set(kept, limits_.max_retained)) return false;
  if (copy) *copy = kept;
  if (store_) store_->submit({store_ops::put_retained{std::move(kept)}});
  return true;
}

std::size_t router::publish_internal(const message_ptr& msg) {
  std::shared_lock lock(mutex_);
  return route_recorded(msg, {}, nullptr, nullptr);
}

std::size_t router::route_recorded(const message_ptr& msg, std::string_view to,
                                   std::function<void(bool)>* on_durable, bool* pending,
                                   message* retained_copy, std::vector<store_op>* with,
                                   bool defer) {
  if (!store_ && with) with->clear();
  if (!history_.enabled() || !history_.covers(msg->tag))
    return route_locked(msg, to, on_durable, pending, with, false, defer);
  // Numbered and routed under the tag's stripe: subscribers get the tag's messages in
  // offset order, and a trim never overtakes the write of what it trims.
  std::lock_guard order(order_[std::hash<std::string_view>{}(msg->tag) % order_.size()]);
  const_cast<message&>(*msg).seq = next_seq();  // in offset order; its id in the store
  history::trimmed trimmed;
  {
    std::lock_guard lock(history_mutex_);
    if (!history_.append(msg, common::now_ms(), trimmed))  // past history.max_tags
      return route_locked(msg, to, on_durable, pending, with, false, defer);
  }
  // Subscribers read retained messages under mutex_ exclusive: none can see it yet.
  if (retained_copy) retained_copy->offset = msg->offset;
  if (!store_) return route_locked(msg, to, on_durable, pending);
  std::vector<store_op> ops;
  if (with) ops = std::move(*with);
  ops.push_back(store_ops::put_message{{msg->seq, msg}});
  ops.push_back(store_ops::append_history{{msg->tag, msg->offset, msg->seq}});
  if (!trimmed.evicted.empty())
    ops.push_back(store_ops::trim_history{std::move(trimmed.evicted), UINT64_MAX});
  {
    std::lock_guard lock(refs_mutex_);
    ++refs_[msg->seq];
    if (!trimmed.gone.empty()) release_trimmed(msg->tag, trimmed, ops);
  }
  return route_locked(msg, to, on_durable, pending, &ops, true, defer);
}

// A history's entries left (count or age): the store's go too, but the tag's last, which
// keeps its numbering across a restart. refs_mutex_ is held.
void router::release_trimmed(const std::string& tag, const history::trimmed& t,
                             std::vector<store_op>& ops) {
  ops.push_back(store_ops::trim_history{tag, t.below});
  for (const auto& m : t.gone)
    release_ref_locked(m->seq, ops);
}

void router::trim_history(std::int64_t now_ms) {
  if (!history_.enabled() || !history_.config().max_age_ms) return;
  std::vector<std::pair<std::string, history::trimmed>> all;
  {
    std::lock_guard lock(history_mutex_);
    history_.trim_all(
        now_ms, [&](history::trimmed& t) { all.emplace_back(std::string(t.tag), std::move(t)); });
  }
  if (!store_ || all.empty()) return;
  std::vector<store_op> ops;
  {
    std::lock_guard lock(refs_mutex_);
    for (const auto& [tag, t] : all)
      release_trimmed(tag, t, ops);
  }
  store_->submit(std::move(ops));
}

router::history_stats router::history_count() const {
  std::lock_guard lock(history_mutex_);
  return {history_.tag_count(), history_.entry_count(), history_.refused()};
}

// Start-up: the tags' histories from the store, with the limits as they are now; a tag no
// filter covers any more is dropped. refs_mutex_ is held.
void router::restore_history(const store_snapshot& snap,
                             const std::unordered_map<std::uint64_t, message_ptr>& messages,
                             std::vector<store_op>& cleanup) {
  std::lock_guard lock(history_mutex_);
  const std::string* dropped = nullptr;
  for (const auto& e : snap.history) {
    if (!history_.covers(e.tag)) {
      if (!dropped || *dropped != e.tag)
        cleanup.push_back(store_ops::trim_history{e.tag, UINT64_MAX});
      dropped = &e.tag;
      continue;
    }
    auto it = messages.find(e.message_id);
    history_.restore(e.tag, e.offset, it == messages.end() ? nullptr : it->second);
  }
  const auto now = common::now_ms();
  history_.restored(now);
  // Trimmed before its references are counted: the clean-up drops the messages.
  history_.trim_all(now, [&](history::trimmed& t) {
    cleanup.push_back(store_ops::trim_history{std::string(t.tag), t.below});
  });
  history_.for_each_entry([&](const message_ptr& m) { ++refs_[m->seq]; });
}

std::size_t router::route_locked(const message_ptr& msg, std::string_view to,
                                 std::function<void(bool)>* on_durable, bool* pending,
                                 std::vector<store_op>* ops, bool stored, bool defer) {
  thread_local std::vector<subscriber> matches;
  matches.clear();
  std::size_t lists = index_.match(msg->tag, matches);
  // Not to the publisher itself where it asked so (MQTT 5 no local), before the shared
  // groups choose, so a member never takes its own message from the rest of its group.
  if (index_.no_local_count())
    std::erase_if(matches, [&](const subscriber& m) {
      return m.no_local && m.who->client_id() == msg->from;
    });
  if (!shared_.empty()) lists += match_shared(*msg, matches);
  if (!to.empty()) {
    if (auto it = sessions_.find(to); it != sessions_.end()) {
      matches.push_back({it->second.get(), 2});  // direct: at the publish's QoS
      ++lists;
    }
  }
  // Each session once, whatever the number of its filters that matched, at the highest QoS
  // among them. One list holds each session once, so a single contributing list needs no
  // sort (a 1,000-subscriber fan-out on one filter skips sorting 1,000 recipients per
  // message).
  if (lists > 1 && matches.size() > 1) {
    std::sort(matches.begin(), matches.end(), [](const subscriber& a, const subscriber& b) {
      return a.who != b.who ? a.who < b.who : a.qos > b.qos;
    });
    matches.erase(
        std::unique(matches.begin(), matches.end(),
                    [](const subscriber& a, const subscriber& b) { return a.who == b.who; }),
        matches.end());
  }
  // Persistent recipients of a QoS 1 message: one stored copy and one queue entry each,
  // submitted before any delivery, so that whatever a delivery takes out of a window
  // (acknowledged, dropped) reaches the store after the entry it takes out.
  if (store_) {
    std::vector<store_op> batch;
    if (ops) batch = std::move(*ops);
    std::uint32_t entries = 0;
    if (msg->qos > 0) {
      for (const auto& m : matches) {
        const auto qos = std::min(msg->qos, m.qos);
        if (qos == 0 || !m.who->persistent()) continue;
        if (!stored) batch.push_back(store_ops::put_message{{msg->seq, msg}});
        stored = true;
        batch.push_back(store_ops::enqueue{{m.who->client_id(), msg->seq, msg->seq, qos, false}});
        ++entries;
      }
    }
    if (entries) {
      std::lock_guard lock(refs_mutex_);
      refs_[msg->seq] += entries;
    }
    if (!batch.empty() && defer) {
      // Delivered from the store's thread once durable, to the sessions matched now.
      std::vector<std::pair<std::shared_ptr<session>, std::uint8_t>> to_whom;
      for (const auto& m : matches)
        if (auto who = m.who->weak_from_this().lock())
          to_whom.emplace_back(std::move(who), std::min(msg->qos, m.qos));
      store_->submit(std::move(batch), [this, msg, to_whom = std::move(to_whom),
                                        done = std::move(*on_durable)](bool ok) {
        if (ok) {
          std::shared_lock lock(mutex_);
          std::int64_t now = 0;
          for (const auto& [who, qos] : to_whom)
            deliver_locked(*who, msg, qos, now);
        }
        done(ok);
      });
      if (pending) *pending = true;
      probe.published.fetch_add(1, std::memory_order_relaxed);
      probe.deliveries.fetch_add(matches.size(), std::memory_order_relaxed);
      return matches.size();
    }
    if (!batch.empty()) {
      if (on_durable) {
        store_->submit(std::move(batch), std::move(*on_durable));
        if (pending) *pending = true;
      } else {
        store_->submit(std::move(batch));
      }
    }
  }
  std::int64_t now = 0;
  for (const auto& m : matches)
    deliver_locked(*m.who, msg, std::min(msg->qos, m.qos), now);
  probe.published.fetch_add(1, std::memory_order_relaxed);
  probe.deliveries.fetch_add(matches.size(), std::memory_order_relaxed);
  return matches.size();
}

// To `s`'s connection, or, for a persistent session without one, into its window. Under
// mutex_ (shared or exclusive); `now` is read once, when first needed.
void router::deliver_locked(session& s, const message_ptr& msg, std::uint8_t qos,
                            std::int64_t& now) {
  if (auto* sink = s.sink_) {
    sink->deliver(msg, qos);
  } else if (qos > 0 && s.persistent()) {
    // A persistent session without a connection: the message waits in its window.
    if (!now) now = common::steady_ms();
    offer_offline(s, msg, qos, now);
  }
}

void router::persist(const session& s, std::vector<store_op> ops, std::function<void(bool)> done) {
  if (!store_ || !s.persistent()) return done(true);
  store_->submit(std::move(ops), std::move(done));
}

void router::offer_offline(session& s, const message_ptr& msg, std::uint8_t qos,
                           std::int64_t now_ms) {
  std::unique_lock lock(s.mutex_);
  if (auto next = s.successor_) {
    lock.unlock();
    if (auto* sink = next->sink_)
      sink->deliver(msg, qos);
    else
      offer_offline(*next, msg, qos, now_ms);
    return;
  }
  std::vector<message_ptr> dropped;
  s.window_.offer(msg, now_ms, &dropped, qos);  // not sent: resent, flagged dup, when it is back
  lock.unlock();
  probe.qos1_dropped.fetch_add(dropped.size(), std::memory_order_relaxed);
  for (const auto& d : dropped)
    forget(s, d->seq);
}

std::size_t router::session_count() const {
  std::shared_lock lock(mutex_);
  return sessions_.size();
}

std::size_t router::retained_count() const {
  std::lock_guard lock(retained_mutex_);
  return retained_.size();
}

std::size_t router::subscription_count() const {
  std::shared_lock lock(mutex_);
  std::size_t n = index_.size();
  for (const auto& [key, g] : shared_)
    n += g.members.size();
  return n;
}

}  // namespace wsagent::core
