#include "protocol/session_adapter.hpp"

#include <algorithm>
#include <atomic>

#include "common/clock.hpp"
#include "common/json_writer.hpp"
#include "core/tag.hpp"

namespace wsagent::protocol {

namespace {
const std::string empty_string;
}  // namespace

void write_metrics(const adapter_probe& p, common::metric_set& out) {
  auto load = [](const auto& a) { return static_cast<double>(a.load(std::memory_order_relaxed)); };
  constexpr std::string_view help =
      "Authentications, by result (refreshed: a fresh token on a live connection; expired, "
      "revoked: live connections closed for it; throttled: refused, their address having "
      "failed too often).";
  out.counter("authentications_total", help, load(p.auth_accepted), {{"result", "accepted"}});
  out.counter("authentications_total", help, load(p.auth_refused), {{"result", "refused"}});
  out.counter("authentications_total", help, load(p.auth_expired), {{"result", "expired"}});
  out.counter("authentications_total", help, load(p.auth_refreshed), {{"result", "refreshed"}});
  out.counter("authentications_total", help, load(p.auth_revoked), {{"result", "revoked"}});
  out.counter("authentications_total", help, load(p.auth_throttled), {{"result", "throttled"}});
  out.counter("authentications_total", help, load(p.auth_busy), {{"result", "busy"}});
  out.counter("protocol_errors_total", "Protocol errors, by protocol.", load(p.native_errors),
              {{"protocol", "native"}});
  out.counter("protocol_errors_total", "Protocol errors, by protocol.", load(p.mqtt_errors),
              {{"protocol", "mqtt"}});
}

const std::string& session_adapter::client_id() const noexcept {
  return session_ ? session_->client_id() : empty_string;
}

void session_adapter::deliver_acked(const core::message_ptr& m, std::uint8_t qos,
                                    std::int64_t now_ms) {
  if (!session_) return;
  rearm_ = true;
  common::unique_lock lock(session_->mutex());
  if (session_->superseded()) {
    // Taken over while this delivery was on its way: the window moved to the new session.
    lock.unlock();
    return ctx_.router.redeliver(*session_, m, qos);
  }
  std::vector<core::message_ptr> dropped;
  if (session_->window().offer(m, now_ms, &dropped, qos))
    send_entry({m, now_ms, false, qos, false, true});
  lock.unlock();
  ctx_.router.probe.qos1_dropped.fetch_add(dropped.size(), std::memory_order_relaxed);
  for (const auto& d : dropped)
    ctx_.router.forget(*session_, d->seq);
}

void session_adapter::late_delivery(const core::message_ptr& m, std::uint8_t qos) {
  if (closed_persistent_) ctx_.router.redeliver(*closed_persistent_, m, qos);
}

bool session_adapter::acknowledged(std::uint64_t seq, bool completed) {
  const auto now = common::steady_ms();
  common::unique_lock lock(session_->mutex());
  auto& window = session_->window();
  if (!(completed ? window.complete(seq, now) : window.ack(seq, now))) return false;
  forgotten(seq);
  ctx_.router.forget(*session_, seq);
  send_window_ready(now);
  return true;
}

void session_adapter::resume_window() {
  const auto now = common::steady_ms();
  std::vector<core::delivery_window::entry> again;
  rearm_ = true;
  common::unique_lock lock(session_->mutex());
  session_->window().take_all(now, again);
  resend(again, now);
}

bool session_adapter::undeliverable(const core::message& m, std::int64_t wall_ms) const {
  if (m.expired_at(wall_ms) ||
      (ctx_.max_queued_age_ms && m.timestamp_ms + ctx_.max_queued_age_ms <= wall_ms))
    return true;
  // Queued before this client's rights were known (a session restored after a restart, then
  // resumed): its deny patterns are checked now.
  const auto& rights = session_->rights();
  return rights.denies_some() && !rights.can_receive(m.tag);
}

void session_adapter::discard(std::uint64_t seq, std::int64_t now_ms) {
  session_->window().discard(seq, now_ms);
  forgotten(seq);
  ctx_.router.forget(*session_, seq);
}

void session_adapter::send_window_ready(std::int64_t now_ms) {
  thread_local std::vector<core::delivery_window::entry> ready;
  auto& window = session_->window();
  const auto wall = common::now_ms();
  while (true) {
    ready.clear();
    window.take_ready(ready);
    if (ready.empty()) return;
    for (const auto& e : ready) {
      if (!e.released && undeliverable(*e.msg, wall))
        discard(e.msg->seq, now_ms);  // may let the next one in
      else
        send_entry(e);
    }
  }
}

void session_adapter::resend(const std::vector<core::delivery_window::entry>& due,
                             std::int64_t now_ms) {
  const auto wall = common::now_ms();
  for (const auto& e : due) {
    if (!e.released && undeliverable(*e.msg, wall))  // expired: never delivered again
      discard(e.msg->seq, now_ms);
    else
      send_entry(e);  // flagged dup, or the release of a QoS 2 one the client has
  }
  send_window_ready(now_ms);
}

namespace {

// One question to the authenticator: who takes the answer, the asker (it came before
// authenticate() returned) or a handler posted to the connection (it came later).
struct auth_call {
  std::atomic<int> state{0};  // 0: asking; 1: answered while asking; 2: the asker returned
  core::auth_result result;
};

}  // namespace

void session_adapter::ask_authenticator(const core::auth_request& r, auth_then then) {
  const auto ip = std::string(core::ip_of(r.remote));
  if (ctx_.throttle)
    if (const auto left = ctx_.throttle->penalty_left(ip, common::steady_ms())) {
      ctx_.probe.auth_throttled.fetch_add(1, std::memory_order_relaxed);
      core::auth_result refused;
      refused.throttled = true;
      refused.reason = "too many failed authentications from " + ip + ": refused for " +
                       std::to_string((left + 999) / 1000) + " s more";
      return then(std::move(refused));
    }
  // Once per connection (a refresh, a rename, or an auth frame that follows the open mode's
  // anonymous one is a client already let in).
  core::admission* admitted = nullptr;
  if (ctx_.admission && ctx_.admission->enabled() && !session_ && !admitted_) {
    std::int64_t retry_ms = 0;
    if (!ctx_.admission->try_begin(common::steady_ms(), retry_ms)) {
      ctx_.probe.auth_busy.fetch_add(1, std::memory_order_relaxed);
      core::auth_result refused;
      refused.busy = true;
      refused.retry_ms = retry_ms;
      refused.reason = "Try again later: retry in " + std::to_string(retry_ms) + " ms";
      return then(std::move(refused));
    }
    admitted = ctx_.admission;
    admitted_ = true;
  }
  auto call = std::make_shared<auth_call>();
  auto post = link_.owner_poster();
  auto auth = ctx_.auth.get();
  // The question holds the connection until it is answered (an authenticator answers
  // every question once, so nothing is held for ever).
  // Counted once per connection that gets in (a rename or a refresh asks again), and for
  // every refusal.
  const bool first = !session_;
  auth->authenticate(r, [this, call, post = std::move(post), then, first, ip, admitted,
                         held = link_.hold()](core::auth_result res) mutable {
    if (admitted) admitted->finish();
    if (!res.ok) {
      ctx_.probe.auth_refused.fetch_add(1, std::memory_order_relaxed);
      if (ctx_.throttle && ctx_.throttle->failed(ip, common::steady_ms()))
        ctx_.audit.record(core::audit_event::auth_failure, {}, ip,
                          std::to_string(ctx_.throttle->settings().max_failures) +
                              " failed authentications: refused for " +
                              std::to_string(ctx_.throttle->settings().penalty_ms / 1000) +
                              " s (limits.max_auth_failures)");
    } else if (first)
      ctx_.probe.auth_accepted.fetch_add(1, std::memory_order_relaxed);
    call->result = std::move(res);
    int asking = 0;
    if (call->state.compare_exchange_strong(asking, 1)) return;  // the asker takes it
    // Later, on any thread: to the connection's (if it is still there; this adapter lives
    // as long as it does).
    post([this, call, then = std::move(then)] {
      auth_pending_ = false;
      if (closing_) return;
      then(std::move(call->result));
      // Ended, or asking again (a rename after a refresh): the input stays held.
      if (closing_ || auth_pending_) return;
      auth_answered_later();
      link_.resume_input();
    });
  });
  int asking = 0;
  if (call->state.compare_exchange_strong(asking, 2)) {
    auth_pending_ = true;  // the answer comes later
    link_.pause_input();
    return;
  }
  then(std::move(call->result));
}

bool session_adapter::set_auth_expiry(std::int64_t expires_ms) {
  if (!expires_ms) {
    auth_expiry_ms_ = auth_notice_ms_ = auth_closes_wall_ms_ = 0;
    return true;
  }
  const auto wall = common::now_ms();
  const auto left = expires_ms - wall;
  if (left <= 0) return false;
  const auto steady = common::steady_ms();
  auth_expiry_ms_ = steady + left + ctx_.expiry_grace_ms;
  auth_closes_wall_ms_ = expires_ms + ctx_.expiry_grace_ms;
  // Told ahead by refresh_notice_ms, or at half its life when that is shorter.
  auth_notice_ms_ = steady + left - std::min(ctx_.refresh_notice_ms, left / 2);
  rearm_ = true;  // the connection's next deadline may be this one
  return true;
}

core::acl session_adapter::rights_of(const core::identity& who, std::string_view client_id) {
  if (!who.rights) return core::acl();
  if (who.rights->allow_all) return core::acl::allow_all();
  return core::acl(*who.rights, client_id, who.user);
}

std::string session_adapter::apply_refresh(core::auth_result result,
                                           std::vector<std::string>& removed) {
  if (!result.ok) return result.reason;
  const auto& id = session_->client_id();
  if (!result.who.client_id.empty() && result.who.client_id != id)
    return "the token stands for client '" + result.who.client_id + "', not '" + id + "'";
  if (result.who.user != session_->user())
    return "the token names another user ('" + result.who.user + "')";
  if (!set_auth_expiry(result.expires_ms)) return "credentials already expired";
  credential_ = std::move(result.who.from);
  removed = ctx_.router.set_rights(*session_, rights_of(result.who, id));
  ctx_.probe.auth_refreshed.fetch_add(1, std::memory_order_relaxed);
  std::string detail = "refreshed";
  for (const auto& f : removed)
    detail += (&f == &removed.front() ? "; no longer allowed, unsubscribed: " : ", ") + f;
  ctx_.audit.record(core::audit_event::auth_success, id, remote_address(), detail);
  return {};
}

void session_adapter::recheck_credentials() {
  if (closing_ || !session_) return;
  auto why = ctx_.auth.get()->revoked(credential_);
  if (why.empty()) return;
  closing_ = true;
  ctx_.probe.auth_revoked.fetch_add(1, std::memory_order_relaxed);
  ctx_.audit.record(core::audit_event::auth_failure, client_id(), remote_address(),
                    "closed: " + why);
  link_.close(core::close_reason::auth_revoked, "Authentication revoked");
}

void session_adapter::on_timer(std::int64_t now_ms) {
  if (closing_) return;
  if (auth_notice_ms_ && now_ms >= auth_notice_ms_ &&
      (!auth_expiry_ms_ || now_ms < auth_expiry_ms_)) {
    auth_notice_ms_ = 0;
    expiry_notice(auth_closes_wall_ms_);
  }
  if (auth_expiry_ms_ && now_ms >= auth_expiry_ms_) {
    auth_expiry_ms_ = 0;
    closing_ = true;
    ctx_.probe.auth_expired.fetch_add(1, std::memory_order_relaxed);
    ctx_.audit.record(core::audit_event::auth_failure, client_id(), remote_address(),
                      "credentials expired");
    return link_.close(core::close_reason::auth_expired, "Authentication expired");
  }
  if (!session_) return;
  thread_local std::vector<core::delivery_window::entry> due;
  due.clear();
  common::unique_lock lock(session_->mutex());
  session_->window().take_due(now_ms, ctx_.retry_ms, due);
  resend(due, now_ms);
}

std::optional<std::int64_t> session_adapter::next_due() const {
  std::optional<std::int64_t> due;
  if (session_) {
    common::unique_lock lock(session_->mutex());
    due = session_->window().next_due(ctx_.retry_ms);
  }
  if (auth_expiry_ms_ && (!due || auth_expiry_ms_ < *due)) due = auth_expiry_ms_;
  if (auth_notice_ms_ && (!due || auth_notice_ms_ < *due)) due = auth_notice_ms_;
  return due;
}

void session_adapter::presence(std::string_view event, bool clean, std::string_view remote,
                               std::string_view protocol) {
  auto m = std::make_shared<core::message>();
  const auto& id = session_->client_id();
  m->tag.append("$sys/clients/").append(id).append("/").append(event);
  m->timestamp_ms = common::now_ms();
  m->msgid = core::make_msgid();
  common::json_writer w(m->payload);
  w.begin_object().string("clientId", id);
  if (event == "connected") {
    w.string("remote", remote);
    if (!protocol.empty()) w.string("protocol", protocol);
  } else {
    w.boolean("clean", clean);
  }
  w.integer("timestamp", m->timestamp_ms).end_object();
  ctx_.router.publish_internal(m);
}

void session_adapter::tell_departure() {
  if (!session_) return;
  core::departure d;
  d.announced = announced_;
  if (will_) {
    auto m = std::make_shared<core::message>();
    m->tag = will_->tag;
    m->payload = will_->payload;
    m->format = will_->format;
    m->qos = will_->qos;
    m->from = session_->client_id();
    m->node = ctx_.router.node_id();
    m->published_retain = will_->retain;
    m->props = will_->props;
    d.will = std::move(m);
    d.will_retain = will_->retain;
  }
  ctx_.router.set_departure(session_->client_id(), &d);
}

void session_adapter::end_session(bool clean, std::string_view remote) {
  closing_ = true;  // (an authentication that answers later finds the connection gone)
  if (!session_) return;
  // A clean session's shared subscriptions: what it did not acknowledge goes to the rest of
  // their groups once it is gone.
  std::vector<std::string> shared;
  if (!session_->persistent())
    for (auto& [filter, options] : ctx_.router.subscriptions_of(*session_))
      if (core::is_shared(filter)) shared.push_back(std::move(filter));
  // Taken over by a new connection with the same client id: the client is back, so neither
  // its will nor a 'disconnected' event would be true.
  const bool registered = ctx_.router.detach(*session_);
  if (!shared.empty()) {
    std::vector<core::message_ptr> held;
    {
      common::unique_lock lock(session_->mutex());
      session_->window().unacknowledged(held);
    }
    link_.drain_pending([&](const core::message_ptr& m, std::uint8_t qos) {
      if (qos > 0) held.push_back(m);
    });
    ctx_.router.reshare(*session_, shared, held);
  }
  if (session_->persistent()) {
    // QoS 1 and 2 messages that reached this connection but were not handled wait for the
    // client.
    closed_persistent_ = session_;
    link_.drain_pending([&](const core::message_ptr& m, std::uint8_t qos) {
      if (qos > 0) ctx_.router.redeliver(*session_, m, qos);
    });
  }
  if (registered && !clean && will_) {
    auto m = std::make_shared<core::message>();
    m->tag = will_->tag;
    m->payload = will_->payload;
    m->format = will_->format;
    m->msgid = core::make_msgid();
    if (will_->qos > 0) {
      m->qos = will_->qos;
      m->seq = ctx_.router.next_seq();
    }
    m->from = session_->client_id();
    m->timestamp_ms = common::now_ms();
    m->published_retain = will_->retain;
    m->props = will_->props;
    // Delayed (MQTT 5) no longer than the session lives: a clean one ends now.
    const auto delay_s = session_->persistent()
                             ? std::min(will_->delay_s, session_->options().expiry_s)
                             : std::int64_t{0};
    if (will_->expiry_s > 0) m->expires_ms = m->timestamp_ms + (delay_s + will_->expiry_s) * 1000;
    if (delay_s > 0)
      ctx_.router.delay_will(session_, m, will_->retain, m->timestamp_ms + delay_s * 1000);
    else
      ctx_.router.publish(*session_, m, retain_options(*m, will_->retain));
  }
  if (registered && announced_) presence("disconnected", clean, remote);
  // Said here: nothing is left for another node to say (a connection taken over leaves
  // what its successor said).
  if (registered) ctx_.router.set_departure(session_->client_id(), nullptr);
  will_.reset();
  // Kept (not destroyed) until the adapter goes: a caller up the stack may still hold the
  // session's lock (a reply that ended the connection).
  ended_ = std::move(session_);
}

}  // namespace wsagent::protocol
