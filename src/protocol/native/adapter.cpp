#include "protocol/native/adapter.hpp"

#include <algorithm>

#include <simdjson.h>

#include "common/base64.hpp"
#include "common/clock.hpp"
#include "common/json_writer.hpp"
#include "common/utf8.hpp"
#include "core/client_id.hpp"
#include "core/tag.hpp"
#include "protocol/native/binary.hpp"

namespace wsagent::protocol::native {

namespace {

constexpr std::int64_t default_session_expiry_s = 3600;

std::string generated_client_id() {
  return "anon-" + core::make_msgid();
}

bool valid_segment(std::string_view s) {
  return !s.empty() && s.find_first_of("/+#") == std::string_view::npos;
}

// What a native reader makes of a payload nobody described as JSON: a JSON value when it is
// valid JSON, a string when it is UTF-8 (or vouched for as text), else base64.
payload_kind classify(std::string_view payload, bool text) {
  if (payload.empty()) return text ? payload_kind::text : payload_kind::bytes;
  // simdjson checks the UTF-8 as it parses: JSON (the common case) costs one pass. The copy
  // goes to a buffer of this thread's with simdjson's padding, allocated once.
  thread_local simdjson::dom::parser parser;
  thread_local std::string padded;
  padded.reserve(payload.size() + simdjson::SIMDJSON_PADDING);
  padded.assign(payload);
  simdjson::dom::element doc;
  if (!parser.parse(padded.data(), padded.size(), false).get(doc)) return payload_kind::json;
  return text || common::is_valid_utf8(payload) ? payload_kind::text : payload_kind::bytes;
}

}  // namespace

const adapter::wire_slots& adapter::wire() {
  static const wire_slots w = [] {
    wire_slots x{};
    x.json[0] = core::wire_registry::global().reserve_slot("native.json");
    x.json[1] = core::wire_registry::global().reserve_slot("native.json.qos1");
    x.json[2] = core::wire_registry::global().reserve_slot("native.json.qos2");
    x.binary[0] = core::wire_registry::global().reserve_slot("native.binary");
    x.binary[1] = core::wire_registry::global().reserve_slot("native.binary.qos1");
    x.binary[2] = core::wire_registry::global().reserve_slot("native.binary.qos2");
    x.kind = core::wire_registry::global().reserve_slot("native.payload_kind");
    x.device = core::wire_registry::global().reserve_flag("native.device");
    return x;
  }();
  return w;
}

payload_kind adapter::kind_of(const core::message& m) {
  switch (m.format) {
    case core::payload_format::json:
      return payload_kind::json;
    case core::payload_format::binary:
      return payload_kind::bytes;
    case core::payload_format::text:
    case core::payload_format::unspecified:
      break;
  }
  // Looked at once per message, when a native reader first needs it (MQTT publishes are
  // not classified for nobody).
  const auto& k = m.encoded(wire().kind, [&](std::string& out) {
    out.push_back(static_cast<char>(classify(m.payload, m.format == core::payload_format::text)));
  });
  return static_cast<payload_kind>(k[0]);
}

adapter::adapter(adapter_context& ctx, transport_link& link, upgrade_info info)
    : session_adapter(ctx, link), wanted_(info.session), info_(std::move(info)) {}

adapter::~adapter() {
  on_closed();
}

void adapter::on_open() {
  auto auth = ctx_.auth.get();
  if (!info_.token.empty() || auth->open())
    authenticate(info_.token, info_.client_id, {}, [this] { finish_resume(); });
}

// A resumed session's unacknowledged messages go again (flagged dup), then what waited.
void adapter::finish_resume() {
  if (!pending_resume_ || !session_) return;
  pending_resume_ = false;
  resume_window();
}

void adapter::on_closed(bool clean) {
  end_session(clean, info_.remote);
}

core::auth_request adapter::auth_request_for(std::string_view token, std::string_view client_id) {
  core::auth_request req;
  req.token = token;
  req.client_id = client_id;
  req.remote = info_.remote;
  req.protocol = "ws";
  req.certificate = link_.peer_certificate();
  return req;
}

void adapter::authenticate(std::string_view token, std::string_view requested_id,
                           std::string_view id, std::function<void()> then) {
  if (!requested_id.empty() && !core::valid_client_id(requested_id))
    return reply_error(error_code::bad_request,
                       "invalid client id: 1 to 128 bytes, no '/', '+', '#' or control characters",
                       id);
  // The answer may come after the frame is gone: what it needs is copied.
  ask_authenticator(
      auth_request_for(token, requested_id),
      [this, requested = std::string(requested_id), id = std::string(id),
       then = std::move(then)](core::auth_result result) {
        if (result.throttled) {  // counted; its address's penalty was audited when it began
          closing_ = true;
          return link_.close(core::close_reason::auth_throttled, "Too many failed authentications");
        }
        if (result.busy) {  // counted (a reconnect storm): come back later
          closing_ = true;
          return link_.close(core::close_reason::busy, result.reason);
        }
        if (!result.ok || !set_auth_expiry(result.expires_ms)) {
          ctx_.audit.record(core::audit_event::auth_failure, requested, info_.remote,
                            result.ok ? "credentials already expired" : result.reason);
          closing_ = true;
          return link_.close(core::close_reason::auth_failed, "Authentication failed");
        }
        if (result.who.client_id.empty() && !requested.empty() &&
            ctx_.auth.get()->owned_client_id(requested)) {
          ctx_.audit.record(core::audit_event::forbidden, requested, info_.remote,
                            "client id belongs to another token");
          return reply_error(error_code::forbidden,
                             "client id '" + requested + "' belongs to another token", id);
        }
        establish(result.who, requested);
        set_credential(std::move(result.who.from));
        if (then) then();
      });
}

void adapter::establish(const core::identity& who, std::string_view requested_id) {
  std::string id;
  if (!who.client_id.empty())
    id = who.client_id;
  else if (!requested_id.empty())
    id = requested_id;
  else
    id = generated_client_id();
  provisional_id_ = who.client_id.empty() && requested_id.empty();
  core::session_options options = wanted_;
  if (provisional_id_) options.persistent = false;  // a session to resume needs a known id
  if (options.persistent && options.expiry_s <= 0) options.expiry_s = default_session_expiry_s;
  options.direct = true;  // device messages sent `to` it reach it, subscribed or not
  core::acl rights = rights_of(who, id);
  if (session_ && ctx_.router.detach(*session_) && announced_)
    presence("disconnected", true, info_.remote);  // renamed
  session_ =
      std::make_shared<core::session>(std::move(id), who.user, std::move(rights), &link_.sink(),
                                      options, ctx_.max_inflight, ctx_.max_queued_qos1);
  bool took_over = ctx_.router.attach(session_, &resumed_);
  pending_resume_ = resumed_;
  // Presence is for clients with an id of their own, not for the agent's provisional ones.
  announced_ = !provisional_id_;
  if (announced_) presence("connected", false, info_.remote);
  tell_departure();
  ctx_.audit.record(
      core::audit_event::auth_success, session_->client_id(), info_.remote,
      (who.user.empty() ? "anonymous" : who.user) + (who.via.empty() ? "" : ", " + who.via));
  if (took_over)
    ctx_.audit.record(core::audit_event::takeover, session_->client_id(), info_.remote,
                      "an older connection with this client id was closed");
}

bool adapter::require_auth() {
  if (session_) return true;
  if (!closing_) {
    closing_ = true;
    link_.close(core::close_reason::auth_required, "Authentication required");
  }
  return false;
}

void adapter::on_text(const char* data, std::size_t size, std::size_t capacity) {
  if (closing_) return;
  parser::for_this_thread().parse(data, size, capacity, *this, ctx_.max_batch,
                                  ctx_.untyped_readings);
}

void adapter::on_binary(std::span<const std::uint8_t> data) {
  if (closing_ || !require_auth()) return;
  std::string why;
  auto pub = decode_binary_publish(data, why);
  if (!pub) return reply_error(error_code::bad_request, why, {});
  if (pub->msgid.size() > 128)
    return reply_error(error_code::bad_request, "msgid is longer than 128 bytes", {});
  auto m = std::make_shared<core::message>();
  m->tag = pub->tag;
  m->payload = pub->payload;
  m->format = core::payload_format::binary;
  m->msgid = pub->msgid.empty() ? core::make_msgid() : std::string(pub->msgid);
  if (pub->qos == 0) {
    route(m, {}, {}, pub->retain);
    return;
  }
  if (pub->qos == 2) {
    if (pub->msgid.empty())
      return reply_error(error_code::bad_request, "a QoS 2 publish needs a msgid", {});
    return publish_qos2(m, {}, {}, pub->retain);
  }
  publish_qos1(m, {}, {}, pub->retain);
}

// What an auth request leaves to do once the authenticator answers, copied from the frame
// (the answer may come after the frame is gone).
struct adapter::auth_step {
  std::string request_id;
  std::string token;
  std::string client_id;
  bool binary = false;
  bool persistent = false;
  std::shared_ptr<const session_will> will;  // null: none asked for
};

void adapter::on_auth(const auth_request& r) {
  if (closing_) return;
  if (r.will) {
    if (auto e = core::validate_tag(r.will->tag, ctx_.router.limits().tags);
        e != core::tag_error::none)
      return reply_error(
          error_code::invalid_tag,
          "will: " + std::string(core::to_string(e)) + ": '" + std::string(r.will->tag) + "'",
          r.id);
  }
  if (r.persistent) wanted_ = core::session_options{true, r.expiry_s};
  auto step = std::make_shared<auth_step>();
  step->request_id = r.id;
  step->token = r.token;
  step->client_id = r.client_id;
  step->binary = r.binary;
  step->persistent = r.persistent;
  if (r.will) {
    auto w = std::make_shared<session_will>();
    w->tag = r.will->tag;
    w->payload = r.will->payload;
    w->qos = static_cast<std::uint8_t>(r.will->qos);
    w->retain = r.will->retain;
    step->will = std::move(w);
  }
  if (!session_)
    return authenticate(step->token, step->client_id, step->request_id,
                        [this, step] { complete_auth(*step); });
  // Already authenticated (by the upgrade request, or open mode): a token given now must
  // still be valid (and its expiry replaces the one before: a refresh), and a client that
  // the agent had to name may name itself.
  if (ctx_.auth.get()->open() || step->token.empty()) return reauthenticated(step);
  ask_authenticator(
      auth_request_for(step->token, session_->client_id()), [this, step](core::auth_result result) {
        // A client the agent had to name, naming itself: authenticated again below, as itself.
        const bool renaming =
            provisional_id_ && !step->client_id.empty() && step->client_id != session_->client_id();
        std::vector<std::string> removed;
        std::string why;
        if (!renaming)
          why = apply_refresh(std::move(result), removed);
        else if (!result.ok)
          why = result.reason;
        if (!why.empty()) {
          ctx_.audit.record(core::audit_event::auth_failure, session_->client_id(), info_.remote,
                            why);
          closing_ = true;
          return link_.close(core::close_reason::auth_failed, "Authentication failed");
        }
        if (!removed.empty()) {
          std::vector<std::string_view> tags(removed.begin(), removed.end());
          std::string frame;
          encode_subscribed(frame, step->request_id, tags, true);
          link_.send_frame(std::move(frame));
        }
        reauthenticated(step);
      });
}

void adapter::on_refresh(std::string_view id, std::string_view token) {
  if (closing_ || !require_auth()) return;
  ask_authenticator(auth_request_for(token, session_->client_id()),
                    [this, id = std::string(id)](core::auth_result result) {
                      std::vector<std::string> removed;
                      if (auto why = apply_refresh(std::move(result), removed); !why.empty()) {
                        ctx_.audit.record(core::audit_event::auth_failure, session_->client_id(),
                                          info_.remote, "refresh refused: " + why);
                        return reply_error(error_code::unauthorized, "refresh refused: " + why, id);
                      }
                      std::string frame;
                      encode_refreshed(frame, id, auth_closes_ms(), removed);
                      link_.send_frame(std::move(frame));
                    });
}

void adapter::expiry_notice(std::int64_t closes_ms) {
  std::string frame;
  encode_token_expiring(frame, closes_ms, common::now_ms());
  link_.send_frame(std::move(frame));
}

void adapter::reauthenticated(const std::shared_ptr<auth_step>& step) {
  info_.binary = info_.binary || step->binary;
  const bool rename = !step->client_id.empty() && step->client_id != session_->client_id();
  const bool make_persistent = step->persistent && !session_->persistent();
  if (!rename && !make_persistent) return complete_auth(*step);
  const auto& id = step->request_id;
  if (rename && !provisional_id_)
    return reply_error(error_code::bad_request, "the client id is already set for this connection",
                       id);
  if (ctx_.router.subscription_count_of(*session_) != 0)
    return reply_error(error_code::bad_request,
                       rename ? "name the client before subscribing: it already has subscriptions"
                              : "ask for a persistent session before subscribing",
                       id);
  const std::string name = rename ? step->client_id : session_->client_id();
  authenticate(step->token.empty() ? std::string_view(info_.token) : step->token,
               provisional_id_ && !rename ? std::string_view() : std::string_view(name), id,
               [this, step] { complete_auth(*step); });
}

void adapter::complete_auth(const auth_step& step) {
  info_.binary = info_.binary || step.binary;
  if (step.will) set_will(*step.will, step.request_id);
  send_auth_response();
}

void adapter::send_auth_response() {
  std::string frame;
  encode_auth_response(frame, session_->client_id(), common::now_ms(), session_->persistent(),
                       resumed_, auth_closes_ms());
  link_.send_frame(std::move(frame));
  finish_resume();
}

// Registers the will; one the client may not publish is refused with an error and the
// authentication stands.
void adapter::set_will(const session_will& w, std::string_view id) {
  if (!session_) return;
  if (!session_->rights().can_publish(w.tag)) {
    ctx_.audit.record(core::audit_event::forbidden, session_->client_id(), info_.remote,
                      "will " + w.tag);
    return reply_error(error_code::forbidden, "will: not allowed to publish to '" + w.tag + "'",
                       id);
  }
  will_ = std::make_unique<session_will>(w);
  tell_departure();
}

void adapter::on_subscribe(const subscribe_request& r) {
  if (closing_ || !require_auth()) return;
  // All or nothing: check every filter before subscribing any (the router checks the
  // subscription limit in the same critical section as the change).
  for (auto tag : r.tags) {
    if (auto e = core::validate_subscription(tag, ctx_.router.limits().tags);
        e != core::tag_error::none)
      return reply_error(error_code::invalid_tag,
                         std::string(core::to_string(e)) + ": '" + std::string(tag) + "'", r.id);
    if (r.unsubscribe) continue;
    if (!session_->rights().can_subscribe(tag)) {
      ctx_.audit.record(core::audit_event::forbidden, session_->client_id(), info_.remote,
                        "subscribe " + std::string(tag));
      return reply_error(error_code::forbidden,
                         "not allowed to subscribe to '" + std::string(tag) + "'", r.id);
    }
  }
  if (r.unsubscribe) {
    for (auto tag : r.tags)
      ctx_.router.unsubscribe(*session_, tag);
    std::string frame;
    encode_subscribed(frame, r.id, r.tags, true);
    return link_.send_frame(std::move(frame));
  }
  // Recovery offsets name tags (not filters) that the request's filters match.
  for (const auto& asked : r.since) {
    const std::string_view tag = asked.first;  // (a lambda may not capture a binding in clang 14)
    if (auto e = core::validate_tag(tag, ctx_.router.limits().tags); e != core::tag_error::none)
      return reply_error(
          error_code::invalid_tag,
          "since: " + std::string(core::to_string(e)) + ": '" + std::string(tag) + "'", r.id);
    if (std::none_of(r.tags.begin(), r.tags.end(),
                     [&](std::string_view f) { return core::filter_matches(f, tag); }))
      return reply_error(error_code::bad_request,
                         "since: '" + std::string(tag) + "' is not matched by the tags subscribed",
                         r.id);
  }
  std::vector<core::message_ptr> retained;
  const core::recovery_request request{r.since, r.since_ms};
  core::recovery_result recovery;
  const auto result = ctx_.router.subscribe(*session_, r.tags, static_cast<std::uint8_t>(r.qos),
                                            &retained, &request, &recovery);
  if (result.error == core::route_error::too_many_subscriptions)
    return reply_error(error_code::limit_exceeded,
                       "at most " + std::to_string(ctx_.router.limits().max_subscriptions) +
                           " subscriptions per client",
                       r.id);
  auto& incomplete = recovery.incomplete;
  std::sort(incomplete.begin(), incomplete.end());
  incomplete.erase(std::unique(incomplete.begin(), incomplete.end()), incomplete.end());
  std::string frame;
  encode_subscribed(frame, r.id, r.tags, false, {request.wanted(), incomplete});
  link_.send_frame(std::move(frame));
  // Then the retained messages the new filters match, each tag once, in tag order, but for
  // the tags whose history answers...
  std::sort(retained.begin(), retained.end(),
            [](const core::message_ptr& a, const core::message_ptr& b) { return a->tag < b->tag; });
  retained.erase(std::unique(retained.begin(), retained.end(),
                             [](const core::message_ptr& a, const core::message_ptr& b) {
                               return a->tag == b->tag;
                             }),
                 retained.end());
  const auto now = common::now_ms();
  const auto steady = common::steady_ms();
  for (const auto& m : retained) {
    if (m->expired_at(now) || std::find(recovery.covered.begin(), recovery.covered.end(), m->tag) !=
                                  recovery.covered.end())
      continue;
    // As in MQTT: at the lower of the retained message's QoS and the subscription's.
    const auto qos = std::min<std::uint8_t>(m->qos, static_cast<std::uint8_t>(r.qos));
    if (qos > 0)
      deliver_acked(m, qos, steady);
    else
      link_.send_shared(m, frame_for(*m));
  }
  // ...then the history asked for, in publish order, each message once, before anything
  // live (which reaches this connection's thread after this handler).
  auto& missed = recovery.messages;
  std::sort(missed.begin(), missed.end(),
            [](const core::message_ptr& a, const core::message_ptr& b) { return a->seq < b->seq; });
  missed.erase(std::unique(missed.begin(), missed.end()), missed.end());
  for (const auto& m : missed)
    link_.send_shared(m, frame_for(*m));
}

void adapter::on_publish(const publish_request& r) {
  if (closing_ || !require_auth()) return;
  if (r.qos == 2 && r.msgid.empty())
    return reply_error(error_code::bad_request, "a QoS 2 publish needs a msgid", r.id);

  auto m = std::make_shared<core::message>();
  m->tag = r.tag;
  m->payload = r.payload;
  m->msgid = r.msgid.empty() ? core::make_msgid() : std::string(r.msgid);
  if (r.expiry_s > 0) m->expires_ms = common::now_ms() + r.expiry_s * 1000;
  m->published_retain = r.retain;
  if (!r.props.empty()) {
    // MQTT 5 carries each in at most 65,535 bytes.
    bool too_long = r.props.content_type.size() > 65535 || r.props.response_tag.size() > 65535 ||
                    r.props.correlation.size() > 65535;
    for (const auto& [k, v] : r.props.user)
      too_long |= k.size() > 65535 || v.size() > 65535;
    if (too_long)
      return reply_error(error_code::bad_request, "a message property is over 65,535 bytes", r.id);
    auto props = std::make_shared<core::message_properties>();
    props->content_type = r.props.content_type;
    if (!r.props.response_tag.empty()) {
      if (auto e = core::validate_tag(r.props.response_tag, ctx_.router.limits().tags);
          e != core::tag_error::none)
        return reply_error(error_code::invalid_tag,
                           std::string("response_tag: ") + core::to_string(e), r.id);
      props->response_tag = r.props.response_tag;
    }
    if (r.props.correlation_base64) {
      auto bytes = common::base64_decode(r.props.correlation);
      if (!bytes)
        return reply_error(error_code::bad_request, "field 'correlation' is not valid base64",
                           r.id);
      props->correlation = std::move(*bytes);
    } else {
      props->correlation = r.props.correlation;
    }
    props->user.assign(r.props.user.begin(), r.props.user.end());
    m->props = std::move(props);
  }
  if (r.qos == 0) {
    route(m, r.to, r.id, r.retain);
    return;
  }
  if (r.qos == 2) return publish_qos2(m, r.to, r.id, r.retain);
  publish_qos1(m, r.to, r.id, r.retain);
}

// A QoS 1 publish is acknowledged once routed, or, when persistent sessions receive it,
// once the store has it on disk (the store thread's completion comes back here).
void adapter::publish_qos1(const std::shared_ptr<core::message>& m, std::string_view to,
                           std::string_view id, bool retain) {
  m->qos = 1;
  m->seq = ctx_.router.next_seq();
  std::string ack;
  encode_publish_ack(ack, m->msgid, id);
  // A `to` that names nobody: an error in place of the ack (the client may publish again).
  auto nobody = std::make_shared<bool>(false);
  auto missing = unknown_client(to, m->msgid, id);
  bool pending = false;
  if (!route(m, to, id, retain, reply_when_durable(ack, m->msgid, id, {}, missing, nobody),
             &pending, {}, nobody.get()))
    return;
  if (!pending) link_.send_frame(*nobody ? std::move(missing) : std::move(ack));
}

std::string adapter::unknown_client(std::string_view to, std::string_view msgid,
                                    std::string_view id) {
  std::string frame;
  if (!to.empty())
    encode_error(frame, error_code::unknown_client,
                 "no client '" + std::string(to) +
                     "' is connected or keeps a persistent session: the message reached only "
                     "the subscribers of its tag",
                 id, msgid);
  return frame;
}

std::function<void(bool)> adapter::reply_when_durable(std::string frame, std::string msgid,
                                                      std::string_view id,
                                                      std::function<void()> failed,
                                                      std::string instead,
                                                      std::shared_ptr<const bool> use_instead) {
  // Runs on the store's thread, maybe after this connection is gone: only the poster is
  // touched there. What it posts runs on this connection's thread after the handler that
  // published (which sets `use_instead`).
  return [post = link_.owner_poster(), this, frame = std::move(frame), msgid = std::move(msgid),
          id = std::string(id), failed = std::move(failed), instead = std::move(instead),
          use_instead = std::move(use_instead)](bool ok) mutable {
    post([this, frame = std::move(frame), msgid = std::move(msgid), id = std::move(id),
          failed = std::move(failed), instead = std::move(instead), use_instead, ok]() mutable {
      if (ok && use_instead && *use_instead) return link_.send_frame(std::move(instead));
      if (ok) return link_.send_frame(std::move(frame));
      if (failed) failed();
      // Not the client's error: it carries the msgid and does not count towards
      // max_protocol_errors (a long Redis outage refuses many publishes of a good client).
      if (closing_) return;
      std::string refused;
      encode_error(refused, error_code::unavailable,
                   "message '" + msgid +
                       "' could not be made durable (the store, or the cluster's Redis, is "
                       "unavailable): publish it again",
                   id, msgid);
      link_.send_frame(std::move(refused));
    });
  };
}

// QoS 2, the publisher's side: the msgid is remembered from the publish until the client's
// pubrel, so a publish sent again (after a lost pubrec) is answered, not routed twice. For a
// persistent session the record is written with the message (and survives a restart).
void adapter::publish_qos2(const std::shared_ptr<core::message>& m, std::string_view to,
                           std::string_view id, bool retain) {
  std::string rec;
  encode_publish_ack(rec, m->msgid, id, "pubrec");
  bool again = false, over = false;
  {
    // Only the check under the lock: an error reply may end the session (too many errors).
    common::lock lock(session_->mutex());
    auto& incoming = session_->incoming();
    again = incoming.contains(m->msgid);
    over = !again && incoming.size() >= ctx_.max_queued_qos1;
    if (!again && !over) incoming.insert(m->msgid);
  }
  if (again)  // routed before: answered again once what was written for it is durable
    return ctx_.router.persist(*session_, {}, reply_when_durable(rec, m->msgid, id));
  if (over)
    return reply_error(error_code::limit_exceeded,
                       "at most " + std::to_string(ctx_.max_queued_qos1) +
                           " QoS 2 publishes may wait for their pubrel",
                       id);
  m->qos = 2;
  m->seq = ctx_.router.next_seq();
  std::vector<core::store_op> with;
  if (session_->persistent())
    with.push_back(core::store_ops::put_incoming{session_->client_id(), m->msgid});
  auto forget = [this, msgid = m->msgid] {
    if (!session_) return;
    common::unique_lock lock(session_->mutex());
    session_->incoming().erase(msgid);
  };
  bool pending = false, nobody = false;
  if (!route(m, to, id, retain, reply_when_durable(rec, m->msgid, id, forget), &pending,
             std::move(with), &nobody))
    return forget();
  // A `to` that names nobody is said first; the exchange still completes (pubrec, pubrel).
  if (nobody) link_.send_frame(unknown_client(to, m->msgid, id));
  if (!pending) link_.send_frame(std::move(rec));
}

void adapter::on_pubrel(std::string_view id, std::string_view msgid) {
  if (closing_ || !require_auth()) return;
  bool known = false;
  {
    common::unique_lock lock(session_->mutex());
    if (auto it = session_->incoming().find(msgid); it != session_->incoming().end()) {
      session_->incoming().erase(it);
      known = true;
    }
  }
  std::string comp;
  encode_publish_ack(comp, msgid, id, "pubcomp");
  std::vector<core::store_op> ops;
  if (known)
    ops.push_back(core::store_ops::drop_incoming{session_->client_id(), std::string(msgid)});
  // An unknown msgid (a pubrel sent again) is completed too: the client can finish.
  ctx_.router.persist(*session_, std::move(ops),
                      reply_when_durable(std::move(comp), std::string(msgid), id));
}

void adapter::on_typed(const typed_request& r) {
  if (closing_ || !require_auth()) return;
  if (r.qos == 2 && r.msgid.empty())
    return reply_error(error_code::bad_request, "a QoS 2 message needs a msgid", r.id);
  // A deviceId that is not the sender's own would let one client speak as another to the
  // dashboards that key on it: only a client that may publish on that device's tags (a
  // gateway whose role grants devices/plc-101/#, or devices/+/data) may name it.
  if (!r.device_id.empty() && r.device_id != session_->client_id()) {
    const bool may = valid_segment(r.device_id) &&
                     session_->rights().can_publish("devices/" + std::string(r.device_id) + "/" +
                                                    std::string(r.type));
    if (!may) {
      ctx_.audit.record(core::audit_event::forbidden, session_->client_id(), info_.remote,
                        "deviceId " + std::string(r.device_id));
      return reply_error(error_code::forbidden,
                         "deviceId '" + std::string(r.device_id) + "' is not this client ('" +
                             session_->client_id() + "'), and it may not publish on devices/" +
                             std::string(r.device_id) + "/" + std::string(r.type),
                         r.id);
    }
  }
  std::string tag;
  if (!r.tag.empty()) {
    tag = r.tag;
  } else {
    std::string_view device = r.to.empty() ? std::string_view(session_->client_id()) : r.to;
    if (!valid_segment(device))
      return reply_error(error_code::invalid_tag, "'to' may not contain '/', '+' or '#'", r.id);
    tag.reserve(9 + device.size() + r.type.size());
    tag.append("devices/").append(device).append("/").append(r.type);
  }
  auto m = std::make_shared<core::message>();
  m->msgid = r.msgid.empty() ? core::make_msgid() : std::string(r.msgid);
  m->timestamp_ms = common::now_ms();
  m->payload = build_typed_payload(r, tag, session_->client_id(), m->msgid, m->timestamp_ms);
  m->tag = std::move(tag);
  m->flags |= wire().device;
  // The IoT message format's qos and retain: acknowledged (the ack names its msgid, which
  // the device's sendWithAck waits for) and delivered like a publish, and kept as the tag's
  // retained message.
  if (r.qos == 1) return publish_qos1(m, r.to, r.id, r.retain);
  if (r.qos == 2) return publish_qos2(m, r.to, r.id, r.retain);
  route(m, r.to, r.id, r.retain);
}

// No payload at all, JSON "" or null: a retained publish of it clears the tag's.
bool adapter::clears_retained(const core::message& m) const {
  return m.payload.empty() ||
         (m.format == core::payload_format::json && (m.payload == "\"\"" || m.payload == "null"));
}

bool adapter::route(const std::shared_ptr<core::message>& m, std::string_view to,
                    std::string_view id, bool retain, std::function<void(bool)> on_durable,
                    bool* pending, std::vector<core::store_op> with, bool* to_unknown) {
  m->from = session_->client_id();
  if (m->timestamp_ms == 0) m->timestamp_ms = common::now_ms();
  auto opts = retain_options(*m, retain);
  opts.to = to;
  opts.on_durable = std::move(on_durable);
  opts.with = std::move(with);
  auto result = ctx_.router.publish(*session_, m, std::move(opts));
  if (pending) *pending = result.pending_durable;
  if (to_unknown) *to_unknown = result.to_unknown;
  switch (result.error) {
    case core::route_error::none:
    case core::route_error::too_many_subscriptions:
      return true;
    case core::route_error::too_many_retained:
      reply_error(error_code::limit_exceeded,
                  "the agent keeps at most " + std::to_string(ctx_.router.limits().max_retained) +
                      " retained messages; '" + m->tag + "' was not published",
                  id);
      return false;
    case core::route_error::invalid_tag:
      reply_error(error_code::invalid_tag,
                  std::string(core::to_string(result.tag)) + ": '" + m->tag + "'", id);
      return false;
    case core::route_error::forbidden:
      ctx_.audit.record(core::audit_event::forbidden, session_->client_id(), info_.remote,
                        "publish " + m->tag);
      reply_error(error_code::forbidden, "not allowed to publish to '" + m->tag + "'", id);
      return false;
  }
  return false;
}

void adapter::on_ping(std::string_view id) {
  if (closing_) return;
  std::string frame;
  encode_pong(frame, id, common::now_ms());
  link_.send_frame(std::move(frame));
}

void adapter::on_error(error_code code, std::string_view message, std::string_view id) {
  reply_error(code, message, id);
}

void adapter::reply_error(error_code code, std::string_view message, std::string_view id) {
  if (closing_) return;
  std::string frame;
  encode_error(frame, code, message, id);
  link_.send_frame(std::move(frame));
  ctx_.probe.native_errors.fetch_add(1, std::memory_order_relaxed);
  if (++errors_ > ctx_.max_protocol_errors) {
    closing_ = true;
    link_.close(core::close_reason::protocol_error, "Too many protocol errors");
  }
}

const std::string& adapter::frame_for(const core::message& m, int qos) const {
  const auto& w = wire();
  const bool binary = info_.binary && kind_of(m) == payload_kind::bytes;
  const auto q = static_cast<std::size_t>(std::clamp(qos, 0, 2));
  return m.encoded(binary ? w.binary[q] : w.json[q],
                   [&](std::string& out) { encode(m, out, binary, qos, false); });
}

void adapter::encode(const core::message& m, std::string& out, bool binary, int qos, bool dup) {
  outgoing_properties props;
  outgoing_message v;
  v.tag = m.tag;
  v.payload = m.payload;
  v.from = m.from;
  v.msgid = m.msgid;
  v.kind = kind_of(m);
  v.device = (m.flags & wire().device) != 0;
  v.retained = m.retain;
  v.timestamp_ms = m.timestamp_ms;
  v.seq = m.seq;
  v.offset = m.offset;
  if (const auto* p = m.props.get()) {
    props.content_type = p->content_type;
    props.response_tag = p->response_tag;
    props.correlation = p->correlation;
    props.user = p->user;
    v.props = &props;
  }
  if (binary)
    encode_binary_message_frame(v, out, qos, dup);
  else
    encode_message_frame(v, out, qos, dup);
}

void adapter::on_ack(std::string_view, std::uint64_t seq) {
  if (closing_ || !require_auth()) return;
  acknowledged(seq, false);  // a late duplicate ack: nothing to do
}

// QoS 2, the subscriber's side: the client has delivery `seq`, which is never sent again; the
// agent answers pubrel (once that state is durable, for a persistent session), the client
// then pubcomp. A pubrec for a delivery not in flight is answered too (sent again).
void adapter::on_pubrec(std::string_view id, std::uint64_t seq) {
  if (closing_ || !require_auth()) return;
  bool fresh = false;
  {
    common::unique_lock lock(session_->mutex());
    fresh = session_->window().release(seq, common::steady_ms());
  }
  rearm_ = rearm_ || fresh;  // the pubrel's own resend deadline
  std::string rel;
  encode_pubrel(rel, seq);
  std::vector<core::store_op> ops;
  if (fresh) ops.push_back(core::store_ops::mark_sent{session_->client_id(), seq});
  ctx_.router.persist(*session_, std::move(ops),
                      reply_when_durable(std::move(rel), std::to_string(seq), id));
}

void adapter::on_pubcomp(std::string_view, std::uint64_t seq) {
  if (closing_ || !require_auth()) return;
  acknowledged(seq, true);  // late or twice: nothing to do
}

void adapter::send_entry(const core::delivery_window::entry& e) {
  if (e.released) {
    std::string rel;
    encode_pubrel(rel, e.msg->seq);
    return link_.send_frame(std::move(rel));
  }
  if (!e.dup) return link_.send_shared(e.msg, frame_for(*e.msg, e.qos));
  std::string frame;  // sent before: this client's own bytes, flagged dup
  encode(*e.msg, frame, info_.binary && kind_of(*e.msg) == payload_kind::bytes, e.qos, true);
  link_.send_frame(std::move(frame));
}

}  // namespace wsagent::protocol::native
