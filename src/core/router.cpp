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

bool router::attach(const std::shared_ptr<session>& s, std::uint16_t takeover_code, bool* resumed) {
  if (resumed) *resumed = false;
  std::unique_lock lock(mutex_);
  auto [it, inserted] = sessions_.try_emplace(s->client_id(), s);
  if (inserted) return false;
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
  const bool resume = s->persistent() && old->persistent();
  for (auto& [filter, qos] : old->subscriptions) {
    index_.remove(filter, old.get());
    if (resume && s->rights().can_subscribe(filter) &&
        s->subscriptions.size() < static_cast<std::size_t>(limits_.max_subscriptions)) {
      s->subscriptions.emplace(filter, qos);
      index_.add(filter, s.get(), qos);
    }
  }
  old->subscriptions.clear();
  if (resume) {
    std::scoped_lock both(old->mutex_, s->mutex_);
    s->window_.absorb(old->window_);
    old->successor_ = s;  // QoS 1 deliveries still on their way to `old` go to `s`
    if (resumed) *resumed = true;
  }
  it->second = s;
  return took_over;
}

bool router::detach(session& s) {
  std::unique_lock lock(mutex_);
  auto it = sessions_.find(s.client_id());
  const bool registered = it != sessions_.end() && it->second.get() == &s;
  s.sink_ = nullptr;
  if (registered && s.persistent()) {
    s.disconnected_ms = common::now_ms();
    return true;  // stays registered and subscribed, offline
  }
  if (registered) sessions_.erase(it);
  for (auto& [filter, qos] : s.subscriptions)
    index_.remove(filter, &s);
  s.subscriptions.clear();
  return registered;
}

std::vector<std::string> router::expire_sessions(std::int64_t now_ms) {
  std::vector<std::string> gone;
  std::unique_lock lock(mutex_);
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    session& s = *it->second;
    if (s.persistent() && !s.sink_ && s.disconnected_ms &&
        s.disconnected_ms + s.options().expiry_s * 1000 <= now_ms) {
      for (auto& [filter, qos] : s.subscriptions)
        index_.remove(filter, &s);
      s.subscriptions.clear();
      gone.push_back(s.client_id());
      it = sessions_.erase(it);
    } else {
      ++it;
    }
  }
  return gone;
}

void router::restore_retained(const std::vector<message_ptr>& retained) {
  std::unique_lock lock(mutex_);
  std::lock_guard rlock(retained_mutex_);
  for (const auto& m : retained)
    retained_.set(m, SIZE_MAX);  // what was kept stays, whatever the limit is now
}

route_result router::subscribe(session& s, std::string_view filter, std::uint8_t qos,
                               std::vector<message_ptr>* retained) {
  route_result r;
  if (auto e = validate_filter(filter, limits_.tags); e != tag_error::none) {
    r.error = route_error::invalid_tag;
    r.tag = e;
    return r;
  }
  if (!s.rights().can_subscribe(filter)) {
    r.error = route_error::forbidden;
    return r;
  }
  std::unique_lock lock(mutex_);
  auto it = s.subscriptions.find(filter);
  if (it == s.subscriptions.end()) {
    if (s.subscriptions.size() >= static_cast<std::size_t>(limits_.max_subscriptions)) {
      r.error = route_error::too_many_subscriptions;
      return r;
    }
    s.subscriptions.emplace(std::string(filter), qos);
  } else {
    it->second = qos;
  }
  index_.add(filter, &s, qos);
  if (retained) retained_.match(filter, *retained);  // no publisher holds mutex_ now
  return r;
}

route_result router::unsubscribe(session& s, std::string_view filter) {
  route_result r;
  if (auto e = validate_filter(filter, limits_.tags); e != tag_error::none) {
    r.error = route_error::invalid_tag;
    r.tag = e;
    return r;
  }
  std::unique_lock lock(mutex_);
  if (auto it = s.subscriptions.find(filter); it != s.subscriptions.end()) {
    index_.remove(filter, &s);
    s.subscriptions.erase(it);
  }
  return r;
}

route_result router::publish(const session& from, const message_ptr& msg, std::string_view to,
                             bool retain) {
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
  if (retain && !retain_locked(msg)) {
    r.error = route_error::too_many_retained;
    return r;
  }
  r.delivered = route_locked(msg, to);
  return r;
}

// Payloads that clear a tag's retained message: none at all, JSON "" or null.
static bool clears_retained(const message& m) {
  return m.payload.empty() ||
         (m.format == payload_format::json && (m.payload == "\"\"" || m.payload == "null"));
}

bool router::retain_locked(const message_ptr& msg) {
  std::lock_guard lock(retained_mutex_);
  // The store is told under the same lock, so it sees a tag's changes in the order the
  // tree does.
  if (clears_retained(*msg)) {
    if (retained_.clear(msg->tag) && store_) store_->submit({store_ops::clear_retained{msg->tag}});
    return true;
  }
  auto kept = std::make_shared<message>();
  kept->tag = msg->tag;
  kept->payload = msg->payload;
  kept->from = msg->from;
  kept->msgid = msg->msgid;
  kept->timestamp_ms = msg->timestamp_ms;
  kept->format = msg->format;
  kept->typed = msg->typed;
  kept->qos = msg->qos;
  kept->expires_ms = msg->expires_ms;
  kept->retain = true;
  if (!retained_.set(kept, limits_.max_retained)) return false;
  if (store_) store_->submit({store_ops::put_retained{std::move(kept)}});
  return true;
}

std::size_t router::publish_internal(const message_ptr& msg) {
  std::shared_lock lock(mutex_);
  return route_locked(msg, {});
}

std::size_t router::route_locked(const message_ptr& msg, std::string_view to) {
  thread_local std::vector<subscriber> matches;
  matches.clear();
  std::size_t lists = index_.match(msg->tag, matches);
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
  std::int64_t now = 0;
  for (const auto& m : matches) {
    const auto qos = std::min(msg->qos, m.qos);
    if (auto* sink = m.who->sink_) {
      sink->deliver(msg, qos);
    } else if (qos > 0) {
      // A persistent session without a connection: the message waits in its window.
      if (!now) now = common::steady_ms();
      offer_offline(*m.who, msg, now);
    }
  }
  probe.published.fetch_add(1, std::memory_order_relaxed);
  probe.deliveries.fetch_add(matches.size(), std::memory_order_relaxed);
  return matches.size();
}

void router::offer_offline(session& s, const message_ptr& msg, std::int64_t now_ms) {
  std::unique_lock lock(s.mutex_);
  if (auto next = s.successor_.lock()) {
    lock.unlock();
    if (auto* sink = next->sink_)
      sink->deliver(msg, 1);
    else
      offer_offline(*next, msg, now_ms);
    return;
  }
  s.window_.offer(msg, now_ms);  // not sent: resent, flagged dup, when the client is back
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
  return index_.size();
}

}  // namespace wsagent::core
