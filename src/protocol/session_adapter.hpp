#pragma once
// What every protocol adapter does the same way once its client has a core session: QoS 1
// and 2 deliveries through the session's window (offer, send what fits, resend what falls
// due, take out what is acknowledged or expired), the end of the session (detach, keep a
// persistent session's undelivered messages, the will, the presence event). The native and
// MQTT adapters derive from it and say how one window entry goes out on their wire.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "protocol/client_adapter.hpp"

namespace wsagent::protocol {

// The last will a client left, published when its connection ends without goodbye. At
// namespace scope, not nested: clang cannot default-construct a nested struct with member
// initializers before its enclosing class is complete.
struct session_will {
  std::string tag, payload;
  core::payload_format format = core::payload_format::json;
  std::uint8_t qos = 0;
  bool retain = false;
  std::int64_t delay_s = 0;   // MQTT 5 Will Delay Interval
  std::int64_t expiry_s = 0;  // MQTT 5 Message Expiry Interval; 0: none
  std::shared_ptr<const core::message_properties> props;
};

class session_adapter : public client_adapter {
 public:
  session_adapter(adapter_context& ctx, transport_link& link) : ctx_(ctx), link_(link) {}

  bool authenticated() const noexcept override { return session_ != nullptr; }
  const std::string& client_id() const noexcept override;
  // A QoS 1 or 2 delivery (steady clock `now_ms`): sent now when the window has room, else
  // it waits for acknowledgements.
  void deliver_acked(const core::message_ptr& m, std::uint8_t qos, std::int64_t now_ms) override;
  // After on_closed(): back to the persistent session it was for.
  void late_delivery(const core::message_ptr& m, std::uint8_t qos) override;
  void on_timer(std::int64_t now_ms) override;
  std::optional<std::int64_t> next_due() const override;
  bool take_rearm() noexcept override { return std::exchange(rearm_, false); }
  void recheck_credentials() override;

 protected:
  // One window entry going out: a delivery (e.dup: sent before), or, for a released QoS 2
  // delivery, its release. The session's lock is held.
  virtual void send_entry(const core::delivery_window::entry& e) REQUIRES(session_->mutex()) = 0;
  // Delivery `seq` left the window for good. The session's lock is held.
  virtual void forgotten(std::uint64_t /*seq*/) REQUIRES(session_->mutex()) {}
  // Whether a retained publish of `m` clears its tag's retained message instead of setting
  // it: each protocol's rule (MQTT: an empty payload).
  virtual bool clears_retained(const core::message& m) const { return m.payload.empty(); }
  // Publish options for `m` with the client's retain flag.
  core::publish_options retain_options(const core::message& m, bool retain) const {
    core::publish_options o;
    o.retain = retain;
    o.clears_retained = retain && clears_retained(m);
    return o;
  }

  // Authentication (the auth seam, core/auth.hpp). Asks the current authenticator; `then`
  // gets the answer on this connection's thread: before this returns when the authenticator
  // answers at once, else later, with the client's input held meanwhile (auth_pending();
  // nothing more the client sent is handled first). Not called if the connection ends
  // first (the auth timeout still applies while it waits).
  using auth_then = std::function<void(core::auth_result)>;
  void ask_authenticator(const core::auth_request& r, auth_then then);
  bool auth_pending() const noexcept { return auth_pending_; }
  // The client's "address:port", for the audit log.
  virtual std::string_view remote_address() const noexcept = 0;
  // An answer that came later, before the held input is handed over: an adapter that keeps
  // bytes of its own (MQTT over WebSocket) handles them here.
  virtual void auth_answered_later() {}
  // The identity's expiry (auth_result::expires_ms, wall clock; 0: none): the connection is
  // closed then, plus adapter_context::expiry_grace_ms (close_reason::auth_expired), unless
  // it is set again (the client authenticated again); expiry_notice() comes
  // refresh_notice_ms before. False when it has passed already.
  bool set_auth_expiry(std::int64_t expires_ms);
  // The identity expires at wall time `closes_ms` (the grace included) unless the client
  // sends a fresh token: said on the protocol's wire, if it has a way (the native protocol).
  virtual void expiry_notice(std::int64_t /*closes_ms*/) {}
  // When the connection closes for the identity's expiry (wall clock, the grace included);
  // 0: never.
  std::int64_t auth_closes_ms() const noexcept { return auth_closes_wall_ms_; }
  // The rights `who` grants the client named `client_id`.
  static core::acl rights_of(const core::identity& who, std::string_view client_id);
  // The identity's credential (revocation asks about it), set with each authentication.
  void set_credential(core::credential c) { credential_ = std::move(c); }
  // A fresh token on a live connection (native refresh, MQTT 5 re-authentication) whose
  // answer is `result`: when accepted, its expiry, credential and rights replace the
  // identity's, and the subscriptions the new rights no longer allow are removed (into
  // `removed`). Returns "" then, else why it is refused (the identity stays as it was): the
  // authenticator's reason, or a token that stands for another client or user.
  std::string apply_refresh(core::auth_result result, std::vector<std::string>& removed);

  // The client acknowledged QoS 1 delivery `seq` (`completed`: QoS 2's last step); false
  // when nothing in flight had it.
  bool acknowledged(std::uint64_t seq, bool completed);
  // Resends a resumed session's unacknowledged deliveries (dup), then what waited.
  void resume_window();
  // Sends what acknowledgements let into flight. The session's lock is held.
  void send_window_ready(std::int64_t now_ms) REQUIRES(session_->mutex());
  // Sends `due` again; expired ones leave the window. The session's lock is held.
  void resend(const std::vector<core::delivery_window::entry>& due, std::int64_t now_ms)
      REQUIRES(session_->mutex());
  // Takes a delivery that will never be made out of the window and the store. The
  // session's lock is held.
  void discard(std::uint64_t seq, std::int64_t now_ms) REQUIRES(session_->mutex());
  // Past its own expiry, waiting longer than limits.max_queued_age_s, or on a tag the
  // client's deny patterns refuse.
  bool undeliverable(const core::message& m, std::int64_t wall_ms) const;

  // $sys/clients/<id>/<event>: "connected" (with the remote address and, when given,
  // `protocol`) or "disconnected" (with `clean`).
  void presence(std::string_view event, bool clean, std::string_view remote,
                std::string_view protocol = {});
  // The connection is ending: leave the router (a persistent session keeps what reached
  // the connection undelivered), publish the will unless `clean`, say "disconnected".
  void end_session(bool clean, std::string_view remote);

  adapter_context& ctx_;
  transport_link& link_;
  std::shared_ptr<core::session> session_;
  std::shared_ptr<core::session> closed_persistent_;  // session_ after it ended, if persistent
  std::shared_ptr<core::session> ended_;              // session_ after it ended
  // Tells the router what another node should publish for this client should this node
  // die with it connected (its will, its presence event): after the session attached, and
  // when the will changes.
  void tell_departure();
  bool admitted_ = false;  // past admission control (core::admission), once per connection
  // The last will, published by end_session() unless the client said goodbye; on the heap:
  // most clients leave none.
  std::unique_ptr<session_will> will_;
  std::int64_t auth_expiry_ms_ = 0;       // steady clock; 0: none
  std::int64_t auth_notice_ms_ = 0;       // steady clock; 0: none (or sent)
  std::int64_t auth_closes_wall_ms_ = 0;  // wall clock of auth_expiry_ms_
  core::credential credential_;
  bool auth_pending_ = false;
  bool announced_ = false;  // $sys/clients/<id>/connected was published for session_
  bool closing_ = false;
  bool rearm_ = false;
};

}  // namespace wsagent::protocol
