#include "protocol/mqtt/adapter.hpp"

#include <simdjson.h>

#include <algorithm>

#include "common/clock.hpp"
#include "common/json_writer.hpp"
#include "common/utf8.hpp"
#include "core/client_id.hpp"
#include "core/tag.hpp"
#include "protocol/mqtt/wire.hpp"
#include "protocol/websocket/frame.hpp"

namespace wsagent::protocol::mqtt {

namespace {

// MQTT 3.1.1 sessions have no expiry of their own; a persistent one is kept this long after
// its client leaves (Mosquitto's persistent_client_expiration is off by default: forever).
constexpr std::int64_t v311_session_expiry_s = 7 * 24 * 3600;
// The one MQTT 5 Authentication Method offered: the data is a token (docs/protocol.md, "MQTT").
constexpr std::string_view token_auth_method = "token";

// Topic aliases a 5.0 client may set up on its connection (CONNACK Topic Alias Maximum).
constexpr std::uint16_t topic_alias_maximum = 64;

std::string_view text_of(std::span<const std::uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

// The 5.0 reason of a PUBACK or PUBREC for a publish the router refused.
std::uint8_t refusal_reason(core::route_error e) {
  switch (e) {
    case core::route_error::too_many_retained:
      return reason::quota_exceeded;
    case core::route_error::invalid_tag:
      return reason::topic_name_invalid;
    default:
      return reason::not_authorized;
  }
}

// A PUBLISH's (or will's) content type, response topic, correlation data and user
// properties, as the core carries them; null when it has none.
std::shared_ptr<const core::message_properties> message_props(const properties& p) {
  if (!p.content_type && !p.response_topic && !p.correlation_data && !p.user_property_count)
    return nullptr;
  auto m = std::make_shared<core::message_properties>();
  if (p.content_type) m->content_type = *p.content_type;
  if (p.response_topic) m->response_tag = *p.response_topic;
  if (p.correlation_data) m->correlation = text_of(*p.correlation_data);
  m->user.reserve(p.user_property_count);
  for_each_user_property(
      p, [&](std::string_view k, std::string_view v) { m->user.emplace_back(k, v); });
  return m;
}

// A Response Topic is a topic name: no wildcards (5.0 section 3.3.2.3.5).
bool valid_response_topic(const properties& p, const core::tag_limits& limits) {
  return !p.response_topic ||
         core::validate_tag(*p.response_topic, limits) == core::tag_error::none;
}

}  // namespace

const adapter::wire_slots& adapter::wire() {
  static const wire_slots w = [] {
    wire_slots x{};
    x.v311 = core::wire_registry::global().reserve_slot("mqtt.v311");
    x.v5 = core::wire_registry::global().reserve_slot("mqtt.v5");
    x.v311_ws = core::wire_registry::global().reserve_slot("mqtt.v311.ws");
    x.v5_ws = core::wire_registry::global().reserve_slot("mqtt.v5.ws");
    x.payload = core::wire_registry::global().reserve_slot("mqtt.payload");
    return x;
  }();
  return w;
}

adapter::adapter(adapter_context& ctx, transport_link& link, std::string_view remote,
                 std::size_t max_packet_size, bool websocket)
    : session_adapter(ctx, link),
      remote_(remote),
      max_packet_size_(max_packet_size),
      websocket_(websocket) {}

adapter::~adapter() {
  on_closed();
}

std::optional<std::int64_t> adapter::idle_timeout_ms() const noexcept {
  if (!connected_) return std::nullopt;  // the CONNECT deadline applies
  // 0: the client asked for no keep alive; the connection is never closed for silence.
  return keep_alive_ms_ ? keep_alive_ms_ * 3 / 2 : INT64_MAX / 4;
}

// --- reading --------------------------------------------------------------------------------

void adapter::on_text(const char*, std::size_t, std::size_t) {
  violation(reason::malformed_packet, "MQTT over WebSocket uses binary frames");
}

void adapter::on_binary(std::span<const std::uint8_t> data) {
  // A packet may span WebSocket messages, and a message may hold several packets.
  if (pending_.empty()) {
    const auto used = on_stream(data);
    pending_.assign(data.begin() + static_cast<std::ptrdiff_t>(used), data.end());
    return;
  }
  pending_.insert(pending_.end(), data.begin(), data.end());
  const auto used = on_stream(pending_);
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(used));
}

std::size_t adapter::on_stream(std::span<const std::uint8_t> data) {
  std::size_t used = 0;
  // While the CONNECT's authentication is pending, what follows it waits.
  while (!closing_ && !auth_pending()) {
    const auto r = split(data.subspan(used), max_packet_size_);
    if (r.st == split_result::status::need_more) break;
    if (r.st == split_result::status::error) {
      violation(r.reason, r.error);
      return data.size();
    }
    used += r.size;
    if (!on_packet(r)) return data.size();
  }
  return closing_ ? data.size() : used;
}

bool adapter::on_packet(const split_result& r) {
  if (!connected_) {
    if (r.type != packet_type::connect) {
      violation(reason::protocol_error, "the first packet must be CONNECT");
      return false;
    }
    // Parsed from a copy of its own: the authenticator may answer after the read buffer has
    // moved on, and the request's views must stay valid until then (on_connect keeps it).
    auto body = std::make_shared<const std::vector<std::uint8_t>>(r.body.begin(), r.body.end());
    const auto c = parse_connect(r.flags, *body);
    if (!c.ok) {
      // An unknown protocol level gets its CONNACK (3.1.1 section 3.1.2.2); the rest closes.
      if (c.error.reason == reason::unsupported_protocol_version) {
        refuse_connect(connack_v311::unacceptable_protocol_version,
                       reason::unsupported_protocol_version, c.error.message);
        return false;
      }
      violation(c.error.reason, c.error.message);
      return false;
    }
    on_connect(c.value, std::move(body));
    return !closing_;
  }
  switch (r.type) {
    case packet_type::publish: {
      const auto p = parse_publish(r.flags, r.body, ver_);
      if (!p.ok) return violation(p.error.reason, p.error.message), false;
      on_publish(p.value);
      break;
    }
    case packet_type::puback:
    case packet_type::pubrec:
    case packet_type::pubrel:
    case packet_type::pubcomp: {
      const auto a = parse_ack(r.type, r.flags, r.body, ver_);
      if (!a.ok) return violation(a.error.reason, a.error.message), false;
      if (r.type == packet_type::pubrel)
        on_pubrel(a.value.packet_id);
      else
        on_puback(r.type, a.value.packet_id);
      break;
    }
    case packet_type::subscribe: {
      const auto s = parse_subscribe(r.flags, r.body, ver_);
      if (!s.ok) return violation(s.error.reason, s.error.message), false;
      on_subscribe(s.value);
      break;
    }
    case packet_type::unsubscribe: {
      const auto u = parse_unsubscribe(r.flags, r.body, ver_);
      if (!u.ok) return violation(u.error.reason, u.error.message), false;
      on_unsubscribe(u.value);
      break;
    }
    case packet_type::pingreq: {
      if (!parse_empty(r.flags, r.body).ok)
        return violation(reason::malformed_packet, "PINGREQ with a body"), false;
      std::string pong;
      encode_pingresp(pong);
      send(std::move(pong));
      break;
    }
    case packet_type::disconnect: {
      const auto d = parse_disconnect(r.flags, r.body, ver_);
      if (!d.ok) return violation(d.error.reason, d.error.message), false;
      if (ver_ == version::v5) {
        auto props = parse_properties(d.value.properties, property_scope::disconnect);
        if (!props.ok) return violation(props.error.reason, props.error.message), false;
        if (const auto expiry = props.value.session_expiry) {
          // 5.0 section 3.14.2.2.2: a session that had no expiry cannot be given one now.
          if (connect_expiry_zero_ && *expiry)
            return violation(reason::protocol_error, "a Session Expiry Interval after 0"), false;
          if (session_ && session_->persistent())
            ctx_.router.set_session_expiry(*session_, *expiry);
        }
      }
      // 5.0's "disconnect with will message" (0x04) still publishes the will.
      on_closed(d.value.reason != reason::disconnect_with_will);
      closing_ = true;
      link_.close(core::close_reason::normal, {});  // the client's goodbye: nothing more is sent
      return false;
    }
    case packet_type::connect:
      violation(reason::protocol_error, "a second CONNECT");
      return false;
    case packet_type::auth: {
      if (ver_ != version::v5) return violation(reason::protocol_error, "AUTH is MQTT 5's"), false;
      const auto a = parse_auth(r.flags, r.body);
      if (!a.ok) return violation(a.error.reason, a.error.message), false;
      auto props = parse_properties(a.value.properties, property_scope::auth);
      if (!props.ok) return violation(props.error.reason, props.error.message), false;
      // 5.0 section 4.12.1: only after a CONNECT with an Authentication Method, and the same.
      if (!token_method_)
        return violation(reason::protocol_error,
                         "AUTH after a CONNECT without an Authentication Method"),
               false;
      if (props.value.auth_method.value_or("") != token_auth_method)
        return violation(reason::protocol_error, "AUTH with another Authentication Method"), false;
      if (a.value.reason != reason::re_authenticate)
        return violation(reason::protocol_error, "only re-authentication (AUTH 0x19) is offered"),
               false;
      on_reauthenticate(props.value.auth_data ? text_of(*props.value.auth_data) : "");
      break;
    }
    default:  // CONNACK, SUBACK, UNSUBACK, PINGRESP: not for a server
      violation(reason::protocol_error, "a packet a client does not send");
      return false;
  }
  return !closing_;
}

// --- CONNECT --------------------------------------------------------------------------------

void adapter::refuse_connect(std::uint8_t v311_code, std::uint8_t v5_code, std::string_view why) {
  std::string packet;
  encode_connack(packet, ver_, false, ver_ == version::v5 ? v5_code : v311_code);
  send(std::move(packet));
  ctx_.audit.record(core::audit_event::auth_failure, {}, remote_, why);
  closing_ = true;
  link_.close(core::close_reason::auth_failed, why);
}

void adapter::on_connect(const connect_request& c,
                         std::shared_ptr<const std::vector<std::uint8_t>> body) {
  connected_ = true;
  ver_ = c.ver;
  properties props;
  properties will_props;
  if (ver_ == version::v5) {
    auto p = parse_properties(c.properties, property_scope::connect);
    if (!p.ok) return violation(p.error.reason, p.error.message);
    props = p.value;
    if (props.auth_method) {
      if (*props.auth_method != token_auth_method)
        return refuse_connect(connack_v311::not_authorized, reason::bad_authentication_method,
                              "the authentication method '" + std::string(*props.auth_method) +
                                  "' is not offered (\"token\" is)");
      token_method_ = true;
    }
    if (c.will) {
      auto w = parse_properties(c.will->properties, property_scope::will);
      if (!w.ok) return violation(w.error.reason, w.error.message);
      will_props = w.value;
      if (!valid_response_topic(will_props, ctx_.router.limits().tags))
        return violation(reason::protocol_error, "a will's Response Topic may not be a filter");
      if (will_props.payload_format == 1 && !common::is_valid_utf8(text_of(c.will->payload)))
        return refuse_connect(connack_v311::not_authorized, reason::payload_format_invalid,
                              "the will's payload is not the UTF-8 it says it is");
    }
  }
  if (c.client_id.empty()) {
    if (ver_ == version::v311 && !c.clean_start)
      return refuse_connect(connack_v311::identifier_rejected, reason::client_identifier_not_valid,
                            "an empty client id needs a clean session");
  } else if (!core::valid_client_id(c.client_id)) {
    return refuse_connect(connack_v311::identifier_rejected, reason::client_identifier_not_valid,
                          "invalid client id");
  }
  // The token: the password, or else the user name (docs/protocol.md, "MQTT").
  core::auth_request req;
  if (token_method_ && props.auth_data)
    req.token = text_of(*props.auth_data);
  else
    req.token = c.password ? text_of(*c.password) : c.username.value_or("");
  req.client_id = c.client_id;
  req.remote = remote_;
  req.protocol = websocket_ ? "mqtt-ws" : "mqtt";
  req.username = c.username.value_or("");
  req.certificate = link_.peer_certificate();
  // The views point into `body`, which the answer keeps.
  ask_authenticator(req, [this, c, props, will_props, body](core::auth_result result) {
    connect_authenticated(c, props, will_props, std::move(result));
  });
}

void adapter::auth_answered_later() {
  // MQTT over WebSocket: the packets that came after the CONNECT in its message wait here.
  if (pending_.empty()) return;
  const auto used = on_stream(pending_);
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(used));
}

void adapter::connect_authenticated(const connect_request& c, const properties& props,
                                    const properties& will_props, core::auth_result result) {
  if (result.busy) {  // counted (a reconnect storm): come back later
    std::string packet;
    // 5.0: the delay in the Reason String ("Try again later: retry in N ms").
    std::string hint;
    properties p;
    p.reason_string = result.reason;
    if (ver_ == version::v5) encode_property_body(hint, p);
    encode_connack(
        packet, ver_, false,
        ver_ == version::v5 ? reason::connection_rate_exceeded : connack_v311::server_unavailable,
        bytes_of(hint));
    send(std::move(packet));
    closing_ = true;
    return link_.close(core::close_reason::busy, result.reason);
  }
  if (result.throttled) {  // counted; its address's penalty was audited when it began
    std::string packet;
    encode_connack(
        packet, ver_, false,
        ver_ == version::v5 ? reason::connection_rate_exceeded : connack_v311::not_authorized);
    send(std::move(packet));
    closing_ = true;
    return link_.close(core::close_reason::auth_throttled, result.reason);
  }
  if (!result.ok)
    return refuse_connect(connack_v311::bad_username_or_password, reason::bad_user_name_or_password,
                          result.reason);
  if (!set_auth_expiry(result.expires_ms))
    return refuse_connect(connack_v311::bad_username_or_password, reason::bad_user_name_or_password,
                          "credentials already expired");
  const auto& who = result.who;
  std::string id(c.client_id);
  bool assigned = false;
  if (!client_id_for(who, id, assigned)) return;
  const auto options = session_options_of(c, props);
  core::acl rights = rights_of(who, id);
  set_credential(who.from);
  std::size_t inflight = ctx_.max_inflight;
  if (props.receive_maximum) inflight = std::min<std::size_t>(inflight, *props.receive_maximum);
  client_max_packet_ = props.maximum_packet_size.value_or(0);
  bool server_keep_alive = false;
  if (!take_keep_alive(c.keep_alive, server_keep_alive)) return;
  if (c.will && !accept_will(*c.will, will_props, rights, id)) return;
  session_ =
      std::make_shared<core::session>(id, who.user, std::move(rights), &link_.sink(), options,
                                      inflight, ctx_.max_queued_qos1, ctx_.max_queued_bytes);
  bool resumed = false;
  const bool took_over = ctx_.router.attach(session_, &resumed);
  send_connack(resumed, assigned, server_keep_alive);
  announced_ = !assigned;
  if (announced_)
    presence("connected", false, remote_, ver_ == version::v5 ? "mqtt5" : "mqtt3.1.1");
  tell_departure();
  ctx_.audit.record(core::audit_event::auth_success, session_->client_id(), remote_,
                    (who.user.empty() ? "anonymous (MQTT)" : who.user + " (MQTT)") +
                        (who.via.empty() ? "" : ", " + who.via));
  if (took_over)
    ctx_.audit.record(core::audit_event::takeover, session_->client_id(), remote_,
                      "an older connection with this client id was closed");
  review_subscriptions();        // a resumed session's may want identifiers
  if (resumed) resume_window();  // what it had not acknowledged goes again (dup)
}

void adapter::on_reauthenticate(std::string_view token) {
  if (!session_) return violation(reason::protocol_error, "AUTH before the CONNECT was accepted");
  core::auth_request req;
  req.token = token;
  req.client_id = session_->client_id();
  req.remote = remote_;
  req.protocol = websocket_ ? "mqtt-ws" : "mqtt";
  req.username = session_->user();
  req.certificate = link_.peer_certificate();
  ask_authenticator(req, [this](core::auth_result result) {
    std::vector<std::string> removed;
    if (auto why = apply_refresh(std::move(result), removed); !why.empty()) {
      // 5.0 section 4.12.1: a failed re-authentication ends the connection.
      ctx_.audit.record(core::audit_event::auth_failure, session_->client_id(), remote_,
                        "re-authentication refused: " + why);
      std::string bye;
      encode_disconnect(bye, ver_, reason::not_authorized);
      send(std::move(bye));
      closing_ = true;
      return link_.close(core::close_reason::auth_failed, "re-authentication refused");
    }
    if (!removed.empty()) review_subscriptions();
    // Success, with the subscriptions the new rights no longer allow as user properties.
    properties p;
    p.auth_method = token_auth_method;
    std::vector<std::pair<std::string_view, std::string_view>> user;
    for (const auto& f : removed)
      user.emplace_back("unsubscribed", f);
    std::string body, packet;
    encode_property_body(body, p, user);
    encode_auth(packet, reason::success, bytes_of(body));
    send(std::move(packet));
  });
}

bool adapter::client_id_for(const core::identity& who, std::string& id, bool& assigned) {
  if (!who.client_id.empty()) {
    if (!id.empty() && id != who.client_id)
      return refuse_connect(connack_v311::identifier_rejected, reason::client_identifier_not_valid,
                            "the token stands for another client id"),
             false;
    if (id.empty()) assigned = ver_ == version::v5;
    id = who.client_id;
  } else if (id.empty()) {
    id = "auto-" + core::make_msgid();
    assigned = true;
  } else if (ctx_.auth.get()->owned_client_id(id)) {
    return refuse_connect(connack_v311::not_authorized, reason::not_authorized,
                          "client id belongs to another token"),
           false;
  }
  return true;
}

core::session_options adapter::session_options_of(const connect_request& c,
                                                  const properties& props) {
  core::session_options options;
  if (ver_ == version::v311) {
    options.persistent = !c.clean_start;
    options.expiry_s = options.persistent ? v311_session_expiry_s : 0;
    return options;
  }
  const std::uint32_t expiry = props.session_expiry.value_or(0);
  options.persistent = expiry > 0;
  options.expiry_s = expiry;
  options.fresh = c.clean_start;
  // Clean Start 0 resumes a stored session whatever this CONNECT's expiry (5.0 section
  // 3.1.2.4); with 0 it then ends with this connection (section 3.1.2.11).
  options.resume = !c.clean_start;
  connect_expiry_zero_ = expiry == 0;
  alias_max_out_ = props.topic_alias_maximum.value_or(0);
  return options;
}

bool adapter::take_keep_alive(std::uint16_t keep_alive, bool& told) {
  if (const auto ceiling = ctx_.max_keepalive_s;
      ceiling && (keep_alive == 0 || keep_alive > ceiling)) {
    // mqtt.max_keepalive, as Mosquitto's: 5.0 is told the ceiling in CONNACK and held to
    // it; 3.1.1 has no way to be told, so it is refused.
    if (ver_ == version::v311)
      return refuse_connect(connack_v311::identifier_rejected, reason::client_identifier_not_valid,
                            "keep alive " + std::to_string(keep_alive) +
                                " is above mqtt.max_keepalive " + std::to_string(ceiling)),
             false;
    keep_alive = ceiling;
    told = true;
  }
  keep_alive_ms_ = std::int64_t{keep_alive} * 1000;
  return true;
}

void adapter::send_connack(bool resumed, bool assigned, bool server_keep_alive) {
  std::string packet;
  std::string body;
  if (ver_ == version::v5) {
    properties ack;
    if (assigned) ack.assigned_client_id = session_->client_id();
    ack.receive_maximum =
        static_cast<std::uint16_t>(std::min<std::size_t>(ctx_.max_queued_qos1, 65535));
    ack.maximum_packet_size = static_cast<std::uint32_t>(max_packet_size_);
    ack.topic_alias_maximum = topic_alias_maximum;
    if (server_keep_alive)
      ack.server_keep_alive = static_cast<std::uint16_t>(keep_alive_ms_ / 1000);
    if (token_method_) ack.auth_method = token_auth_method;
    encode_property_body(body, ack);
  }
  encode_connack(packet, ver_, resumed, reason::success, bytes_of(body));
  send(std::move(packet));
}

bool adapter::accept_will(const mqtt::will_message& w, const properties& props,
                          const core::acl& rights, std::string_view id) {
  if (core::validate_tag(w.topic, ctx_.router.limits().tags) != core::tag_error::none) {
    refuse_connect(connack_v311::not_authorized, reason::topic_name_invalid, "invalid will topic");
    return false;
  }
  if (!rights.can_publish(w.topic)) {
    ctx_.audit.record(core::audit_event::forbidden, id, remote_, "will " + std::string(w.topic));
    refuse_connect(connack_v311::not_authorized, reason::not_authorized,
                   "not allowed to publish the will");
    return false;
  }
  const auto payload = text_of(w.payload);
  will_ = std::make_unique<session_will>();
  will_->tag = w.topic;
  will_->payload = payload;
  // Described by its Payload Format Indicator, or not at all (0: unspecified bytes).
  will_->format =
      props.payload_format == 1 ? core::payload_format::text : core::payload_format::unspecified;
  will_->qos = w.qos;
  will_->retain = w.retain;
  will_->delay_s = props.will_delay.value_or(0);
  will_->expiry_s = props.message_expiry.value_or(0);
  will_->props = message_props(props);
  return true;
}

void adapter::on_closed(bool clean) {
  end_session(clean, remote_);
}

void adapter::violation(std::uint8_t reason_code, std::string_view why) {
  if (closing_) return;
  closing_ = true;
  ctx_.probe.mqtt_errors.fetch_add(1, std::memory_order_relaxed);
  if (ver_ == version::v5 && connected_) {
    std::string packet;
    encode_disconnect(packet, ver_, reason_code);
    send(std::move(packet));
  }
  ctx_.audit.record(core::audit_event::forbidden, client_id(), remote_,
                    "MQTT protocol violation: " + std::string(why));
  link_.close(core::close_reason::protocol_error, why);
}

std::string adapter::goodbye(core::close_reason why) const {
  if (ver_ != version::v5 || !connected_) return {};
  std::uint8_t code = 0;
  switch (why) {
    case core::close_reason::taken_over:
      code = reason::session_taken_over;
      break;
    case core::close_reason::heartbeat_timeout:
      code = reason::keep_alive_timeout;
      break;
    case core::close_reason::slow_consumer:
      code = reason::quota_exceeded;
      break;
    case core::close_reason::going_away:
      code = reason::server_shutting_down;
      break;
    case core::close_reason::moving:
      code = reason::use_another_server;  // 5.0 section 4.11: reconnect, to another node
      break;
    case core::close_reason::auth_expired:
      // "The maximum connection time authorized for this connection has been exceeded"
      // (5.0 section 3.14.2.1): what an identity that expires grants.
      code = reason::maximum_connect_time;
      break;
    case core::close_reason::auth_revoked:
      code = reason::not_authorized;
      break;
    default:  // the client's goodbye, or a close the adapter explained itself
      return {};
  }
  std::string packet;
  encode_disconnect(packet, ver_, code);
  return framed(std::move(packet));  // in a binary frame of its own over WebSocket
}

// --- publishing in ----------------------------------------------------------------------------

std::string adapter::framed(std::string packet) const {
  if (!websocket_) return packet;
  const auto h = websocket::make_header(websocket::opcode::binary, packet.size());
  std::string frame(reinterpret_cast<const char*>(h.bytes.data()), h.size);
  frame.append(packet);
  return frame;
}

void adapter::send(std::string packet) {
  link_.send_frame(framed(std::move(packet)));
}

std::function<void(bool)> adapter::when_durable(std::string packet, std::function<void()> failed) {
  // Runs on the store's thread, maybe after this connection is gone: only the poster is
  // touched there.
  return [post = link_.owner_poster(), this, packet = std::move(packet),
          failed = std::move(failed)](bool ok) mutable {
    post([this, packet = std::move(packet), failed = std::move(failed), ok]() mutable {
      if (ok) return send(std::move(packet));
      if (failed) failed();
      // Not acknowledged: the client sends it again (5.0: says why).
      violation(reason::server_unavailable, "the agent could not store a message");
    });
  };
}

void adapter::on_publish(const publish& p) {
  std::int64_t expiry_s = 0;
  std::uint8_t payload_format = 0;
  std::string_view topic = p.topic;
  auto m = std::make_shared<core::message>();
  if (ver_ == version::v5) {
    auto props = parse_properties(p.properties, property_scope::publish);
    if (!props.ok) return violation(props.error.reason, props.error.message);
    if (props.value.subscription_id_count)
      return violation(reason::protocol_error,
                       "a PUBLISH to the server has no Subscription "
                       "Identifier");
    expiry_s = props.value.message_expiry.value_or(0);
    if (!valid_response_topic(props.value, ctx_.router.limits().tags))
      return violation(reason::protocol_error, "a Response Topic may not be a filter");
    if (const auto alias = props.value.topic_alias) {
      if (*alias == 0 || *alias > topic_alias_maximum)
        return violation(reason::topic_alias_invalid, "topic alias out of range");
      if (aliases_in_.size() < *alias) aliases_in_.resize(*alias);
      auto& known = aliases_in_[*alias - 1];
      if (!topic.empty())
        known = topic;  // (re)defined
      else if (known.empty())
        return violation(reason::protocol_error, "a topic alias that was never set");
      else
        topic = known;
    } else if (topic.empty()) {
      return violation(reason::protocol_error, "an empty topic without a topic alias");
    }
    payload_format = props.value.payload_format.value_or(0);
    if (payload_format == 1 && !common::is_valid_utf8(text_of(p.payload))) {
      if (p.qos == 0) return;
      std::string refused;
      encode_ack(refused, ver_, p.qos == 1 ? packet_type::puback : packet_type::pubrec, p.packet_id,
                 reason::payload_format_invalid);
      return send(std::move(refused));
    }
    m->props = message_props(props.value);
  }
  m->tag = topic;
  m->payload = text_of(p.payload);
  // What the publisher said (5.0: its Payload Format Indicator, passed on unaltered); a
  // native reader looks at an unspecified payload when it first needs to.
  m->format = payload_format == 1 ? core::payload_format::text : core::payload_format::unspecified;
  m->msgid = core::make_msgid();
  m->from = session_->client_id();
  m->timestamp_ms = common::now_ms();
  m->published_retain = p.retain;
  if (expiry_s > 0) m->expires_ms = m->timestamp_ms + expiry_s * 1000;
  if (p.qos == 0) {
    ctx_.router.publish(*session_, m,
                        retain_options(*m, p.retain));  // refusals are silent at QoS 0
    return;
  }
  if (p.qos == 1) {
    m->qos = 1;
    m->seq = ctx_.router.next_seq();
    return publish_acked(m, p.packet_id, p.retain);
  }
  m->qos = 2;
  publish_qos2(m, p.packet_id, p.retain);
}

// QoS 2: the packet id is the incoming record until PUBREL.
void adapter::publish_qos2(const std::shared_ptr<core::message>& m, std::uint16_t packet_id,
                           bool retain) {
  const std::string key = "mqtt:" + std::to_string(packet_id);
  std::string rec;
  encode_ack(rec, ver_, packet_type::pubrec, packet_id);
  bool again = false, over = false;
  {
    // Only the check under the lock: what follows may end the session (a violation).
    common::lock lock(session_->mutex());
    auto& incoming = session_->incoming();
    again = incoming.contains(key);
    over = !again && incoming.size() >= ctx_.max_queued_qos1;
    if (!again && !over) incoming.insert(key);
  }
  if (again)  // sent again: answered, not routed
    return ctx_.router.persist(*session_, {}, when_durable(std::move(rec)));
  if (over)
    return violation(reason::receive_maximum_exceeded, "too many QoS 2 publishes unreleased");
  m->seq = ctx_.router.next_seq();
  std::vector<core::store_op> with;
  if (session_->persistent())
    with.push_back(core::store_ops::put_incoming{session_->client_id(), key});
  auto forget = [this, key] {
    if (!session_) return;
    common::unique_lock lock(session_->mutex());
    session_->incoming().erase(key);
  };
  auto opts = retain_options(*m, retain);
  opts.on_durable = when_durable(rec, forget);
  opts.with = std::move(with);
  auto result = ctx_.router.publish(*session_, m, std::move(opts));
  if (!result.ok()) {
    forget();
    std::string refused;
    encode_ack(refused, ver_, packet_type::pubrec, packet_id, refusal_reason(result.error));
    return send(std::move(refused));  // 3.1.1: a plain PUBREC, the message dropped
  }
  if (!result.pending_durable) send(std::move(rec));
}

void adapter::publish_acked(const std::shared_ptr<core::message>& m, std::uint16_t packet_id,
                            bool retain) {
  std::string ack;
  encode_ack(ack, ver_, packet_type::puback, packet_id);
  auto opts = retain_options(*m, retain);
  opts.on_durable = when_durable(ack);
  auto result = ctx_.router.publish(*session_, m, std::move(opts));
  if (!result.ok()) {
    if (result.error == core::route_error::forbidden)
      ctx_.audit.record(core::audit_event::forbidden, session_->client_id(), remote_,
                        "publish " + m->tag);
    std::string refused;  // 3.1.1 has no reason: a plain PUBACK, the message dropped
    encode_ack(refused, ver_, packet_type::puback, packet_id, refusal_reason(result.error));
    return send(std::move(refused));
  }
  if (!result.pending_durable) send(std::move(ack));
}

void adapter::on_pubrel(std::uint16_t packet_id) {
  const std::string key = "mqtt:" + std::to_string(packet_id);
  bool known = false;
  {
    common::unique_lock lock(session_->mutex());
    known = session_->incoming().erase(key) > 0;
  }
  std::string comp;
  encode_ack(comp, ver_, packet_type::pubcomp, packet_id,
             known ? reason::success : reason::packet_identifier_not_found);
  std::vector<core::store_op> ops;
  if (known) ops.push_back(core::store_ops::drop_incoming{session_->client_id(), key});
  ctx_.router.persist(*session_, std::move(ops), when_durable(std::move(comp)));
}

// --- subscriptions ------------------------------------------------------------------------------

void adapter::on_subscribe(const subscribe_request& r) {
  std::uint32_t sub_id = 0;
  if (ver_ == version::v5) {
    auto props = parse_properties(r.properties, property_scope::subscribe);
    if (!props.ok) return violation(props.error.reason, props.error.message);
    sub_id = props.value.subscription_id;  // 1 to 268,435,455 (the parser checks)
  }
  // 5.0 section 3.8.3.1: no local on a shared subscription is a protocol error.
  bool shared_no_local = false;
  for_each_subscription(r, ver_, [&](const subscription& s) {
    shared_no_local |= s.no_local && core::is_shared(s.filter);
  });
  if (shared_no_local)
    return violation(reason::protocol_error, "no local on a shared subscription");
  std::vector<std::uint8_t> codes;
  struct granted {
    std::vector<core::message_ptr> retained;
    std::uint8_t qos;
  };
  std::vector<granted> sends;
  const bool v5 = ver_ == version::v5;
  for_each_subscription(r, ver_, [&](const subscription& s) {
    granted g{{}, s.qos};
    core::subscription_options options(s.qos);
    options.no_local = s.no_local;
    options.retain_as_published = s.retain_as_published;
    options.id = sub_id;
    auto res = ctx_.router.subscribe(*session_, s.filter, options,
                                     s.retain_handling == 2 ? nullptr : &g.retained, nullptr,
                                     nullptr, s.retain_handling == 1);
    switch (res.error) {
      case core::route_error::none:
        codes.push_back(s.qos);
        sends.push_back(std::move(g));
        return;
      case core::route_error::invalid_tag:
        codes.push_back(v5 ? reason::topic_filter_invalid : suback_failure);
        return;
      case core::route_error::too_many_subscriptions:
        codes.push_back(v5 ? reason::quota_exceeded : suback_failure);
        return;
      default:
        ctx_.audit.record(core::audit_event::forbidden, session_->client_id(), remote_,
                          "subscribe " + std::string(s.filter));
        codes.push_back(v5 ? reason::not_authorized : suback_failure);
        return;
    }
  });
  review_subscriptions();
  std::string ack;
  encode_suback(ack, ver_, r.packet_id, codes);
  send(std::move(ack));
  // Then the retained messages, each tag once per filter, at the lower of the two QoS.
  const auto now = common::now_ms();
  const auto steady = common::steady_ms();
  for (auto& g : sends) {
    std::sort(
        g.retained.begin(), g.retained.end(),
        [](const core::message_ptr& a, const core::message_ptr& b) { return a->tag < b->tag; });
    for (const auto& m : g.retained) {
      if (m->expired_at(now)) continue;
      const auto qos = std::min(m->qos, g.qos);
      if (qos > 0) {
        deliver_acked(m, qos, steady);
      } else {
        std::string own;
        bool keep = false;
        if (const auto* shared = delivery_frame(*m, own, keep))
          link_.send_shared(m, *shared);
        else
          link_.send_frame(std::move(own));
      }
    }
  }
}

void adapter::on_unsubscribe(const subscribe_request& r) {
  if (ver_ == version::v5) {
    auto props = parse_properties(r.properties, property_scope::unsubscribe);
    if (!props.ok) return violation(props.error.reason, props.error.message);
  }
  std::vector<std::uint8_t> codes;
  for_each_filter(r, [&](std::string_view filter) {
    auto res = ctx_.router.unsubscribe(*session_, filter);
    codes.push_back(!res.ok()     ? reason::topic_filter_invalid
                    : res.existed ? reason::success
                                  : reason::no_subscription_existed);
  });
  review_subscriptions();
  std::string ack;
  encode_unsuback(ack, ver_, r.packet_id, codes);
  send(std::move(ack));
}

// --- deliveries out -----------------------------------------------------------------------------

void adapter::review_subscriptions() {
  personal_.clear();
  if (!session_ || ver_ != version::v5) return;
  for (auto& [filter, o] : ctx_.router.subscriptions_of(*session_))
    if (o.id != 0 || o.retain_as_published) personal_.emplace_back(std::move(filter), o);
}

const adapter::extras* adapter::extras_for(const core::message& m) {
  if (personal_.empty() && !alias_max_out_) return nullptr;
  extras_.ids.clear();
  extras_.retain = false;
  extras_.alias = 0;
  extras_.new_alias = false;
  if (!personal_.empty()) {
    // The subscriptions this message matched (few: clients that use identifiers have a
    // handful).
    for (const auto& [filter, o] : personal_) {
      std::string_view group, inner = filter;
      core::split_shared(filter, group, inner);
      if (!core::filter_matches(inner, m.tag)) continue;
      if (o.id) extras_.ids.push_back(o.id);
      extras_.retain |= o.retain_as_published && m.published_retain;
    }
    std::sort(extras_.ids.begin(), extras_.ids.end());
    extras_.ids.erase(std::unique(extras_.ids.begin(), extras_.ids.end()), extras_.ids.end());
  }
  if (alias_max_out_) {
    if (auto it = aliases_out_.find(m.tag); it != aliases_out_.end()) {
      extras_.alias = it->second;
    } else if (aliases_out_.size() < alias_max_out_) {
      extras_.alias = static_cast<std::uint16_t>(aliases_out_.size() + 1);
      extras_.new_alias = true;
      aliases_out_.emplace(m.tag, extras_.alias);
    }
  }
  return &extras_;
}

const std::string& adapter::encode_delivery(std::string& out, const core::message& m,
                                            std::uint8_t qos, std::uint16_t packet_id, bool dup,
                                            const extras* x, bool header_only) const {
  publish p;
  p.topic = x && x->alias && !x->new_alias ? std::string_view() : std::string_view(m.tag);
  // A JSON payload (from a native client, as it wrote it) goes out as compact JSON text,
  // compacted once per message for all MQTT recipients and their resends.
  const std::string& payload =
      m.format != core::payload_format::json
          ? m.payload
          : m.encoded(wire().payload, [&](std::string& compact) {
              compact.resize(m.payload.size());
              std::size_t n = 0;
              if (simdjson::minify(m.payload.data(), m.payload.size(), compact.data(), n))
                compact = m.payload;  // not expected of a payload the agent accepted as JSON
              else
                compact.resize(n);
            });
  p.payload = bytes_of(payload);
  p.qos = qos;
  p.retain = m.retain || (x && x->retain);
  p.dup = dup;
  p.packet_id = packet_id;
  std::string props;
  if (ver_ == version::v5) {
    properties pr;
    // 1 for what its publisher described as text (JSON included), as MQTT passes it on.
    if (m.format == core::payload_format::json || m.format == core::payload_format::text)
      pr.payload_format = 1;
    if (m.expires_ms) {
      const auto left = (m.expires_ms - common::now_ms() + 999) / 1000;
      pr.message_expiry = static_cast<std::uint32_t>(std::max<std::int64_t>(left, 1));
    }
    thread_local std::vector<std::pair<std::string_view, std::string_view>> user;
    user.clear();
    if (const auto* mp = m.props.get()) {
      if (!mp->content_type.empty()) pr.content_type = mp->content_type;
      if (!mp->response_tag.empty()) pr.response_topic = mp->response_tag;
      if (!mp->correlation.empty()) pr.correlation_data = bytes_of(mp->correlation);
      user.assign(mp->user.begin(), mp->user.end());
    }
    if (x) {
      if (x->alias) pr.topic_alias = x->alias;
      if (!x->ids.empty()) pr.subscription_id = x->ids.front();
    }
    encode_property_body(props, pr, user);
    if (x)
      for (std::size_t i = 1; i < x->ids.size(); ++i) {  // one property per identifier
        props.push_back(static_cast<char>(property::subscription_id));
        detail::put_varint(props, x->ids[i]);
      }
    p.properties = bytes_of(props);
  }
  if (header_only)
    encode_publish_header(out, ver_, p, payload.size());
  else
    encode_publish(out, ver_, p);
  return payload;
}

const std::string& adapter::frame_for(const core::message& m, int) const {
  // QoS 0: one packet per message and version, shared by every MQTT recipient.
  const auto& w = wire();
  const auto slot =
      ver_ == version::v5 ? (websocket_ ? w.v5_ws : w.v5) : (websocket_ ? w.v311_ws : w.v311);
  std::size_t size = 0;
  const auto& bytes = m.encoded(slot, [&](std::string& out) {
    std::string packet;
    encode_delivery(packet, m, 0, 0, false);
    out = framed(std::move(packet));
  });
  size = bytes.size();
  if (websocket_)  // less the frame header: 2, 4 or 10 bytes by the packet's size
    size -= size - 2 < 126 ? 2 : size - 4 < 65536 ? 4 : 10;
  // Larger than the client's 5.0 Maximum Packet Size: it may not be sent (nothing is).
  static const std::string nothing;
  return client_max_packet_ && size > client_max_packet_ ? nothing : bytes;
}

const std::string* adapter::delivery_frame(const core::message& m, std::string& own, bool& keep) {
  const auto* x = extras_for(m);
  if (!x) return &frame_for(m);
  std::string packet;
  encode_delivery(packet, m, 0, 0, false, x);
  if (client_max_packet_ && packet.size() > client_max_packet_) {
    if (x->new_alias) aliases_out_.erase(m.tag);  // never sent: not set up
    static const std::string nothing;
    return &nothing;
  }
  keep = x->new_alias;  // dropped, the client would not know the alias
  own = framed(std::move(packet));
  return nullptr;
}

std::uint16_t adapter::packet_id_for(std::uint64_t seq) {
  if (auto it = seq_packet_.find(seq); it != seq_packet_.end()) return it->second;
  // Derived from the seq, so that a resumed session resends a message with the id it had
  // (when no other in flight took it first).
  auto id = static_cast<std::uint16_t>(seq % 65535 + 1);
  while (packet_seq_.contains(id))
    id = static_cast<std::uint16_t>(id % 65535 + 1);
  packet_seq_.emplace(id, seq);
  seq_packet_.emplace(seq, id);
  return id;
}

void adapter::release_packet_id(std::uint64_t seq) {
  if (auto it = seq_packet_.find(seq); it != seq_packet_.end()) {
    packet_seq_.erase(it->second);
    seq_packet_.erase(it);
  }
}

void adapter::send_publish(const core::message_ptr& m, std::uint8_t qos, bool dup) {
  // The packet id is this connection's, so the header is encoded for it; the payload goes
  // out from the message's bytes, shared with every other recipient.
  std::string head;
  const auto* x = extras_for(*m);
  const auto& payload = encode_delivery(head, *m, qos, packet_id_for(m->seq), dup, x, true);
  const std::size_t size = head.size() + payload.size();
  // Larger than the client's 5.0 Maximum Packet Size: never deliverable to it.
  if (client_max_packet_ && size > client_max_packet_) {
    if (x && x->new_alias) aliases_out_.erase(m->tag);
    return discard(m->seq, common::steady_ms());
  }
  if (websocket_) {
    const auto h = websocket::make_header(websocket::opcode::binary, size);
    head.insert(0, reinterpret_cast<const char*>(h.bytes.data()), h.size);
  }
  link_.send_with_tail(m, std::move(head), payload);
}

// One window entry going out: the PUBLISH, or, for a released QoS 2 delivery, its PUBREL.
void adapter::send_entry(const core::delivery_window::entry& e) {
  if (e.released) {
    std::string rel;
    encode_ack(rel, ver_, packet_type::pubrel, packet_id_for(e.msg->seq));
    return send(std::move(rel));
  }
  send_publish(e.msg, e.qos, e.dup);
}

void adapter::on_puback(packet_type t, std::uint16_t packet_id) {
  const auto now = common::steady_ms();
  auto it = packet_seq_.find(packet_id);
  if (t == packet_type::pubrec) {
    // The client has it: the PUBREL is sent once that state is durable (persistent).
    bool fresh = false;
    if (it != packet_seq_.end()) {
      common::unique_lock lock(session_->mutex());
      fresh = session_->window().release(it->second, now);
    }
    rearm_ = rearm_ || fresh;
    std::string rel;
    encode_ack(rel, ver_, packet_type::pubrel, packet_id,
               it == packet_seq_.end() ? reason::packet_identifier_not_found : reason::success);
    std::vector<core::store_op> ops;
    if (fresh) ops.push_back(core::store_ops::mark_sent{session_->client_id(), it->second});
    return ctx_.router.persist(*session_, std::move(ops), when_durable(std::move(rel)));
  }
  if (it == packet_seq_.end()) return;  // late or twice
  acknowledged(it->second, t == packet_type::pubcomp);
}

}  // namespace wsagent::protocol::mqtt
