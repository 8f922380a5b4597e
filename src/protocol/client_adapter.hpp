#pragma once
// What a protocol adapter and its transport connection see of each other. An adapter (the
// native JSON protocol, MQTT) turns a client's bytes into core operations and core messages
// into bytes; the connection (net/connection) owns the socket, the write queue, the inbox of
// deliveries and the deadlines, and drives the adapter through client_adapter. Both run on
// the connection's I/O thread; see net/connection.hpp.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/metrics.hpp"
#include "core/admission.hpp"
#include "core/audit.hpp"
#include "core/auth.hpp"
#include "core/auth_throttle.hpp"
#include "core/close_reason.hpp"
#include "core/message.hpp"
#include "core/router.hpp"
#include "core/session.hpp"

namespace wsagent::protocol {

// What the adapter needs from the connection.
class transport_link {
 public:
  virtual ~transport_link() = default;
  // Queues one whole frame (a WebSocket frame, or an MQTT packet on a raw stream) for this
  // connection only.
  virtual void send_frame(std::string frame) = 0;
  // Queues `bytes`, a frame cached in `m` and shared with other recipients; never dropped.
  virtual void send_shared(const core::message_ptr& m, const std::string& bytes) = 0;
  // Queues one frame made of `head`, this connection's, then `tail`, bytes held by `m` and
  // shared (an MQTT QoS 1 PUBLISH: the packet id is the connection's, the payload the
  // message's, written from where it lies); never dropped.
  virtual void send_with_tail(const core::message_ptr& m, std::string head,
                              const std::string& tail) = 0;
  // Ends the connection for `why`: over WebSocket a close frame with its code
  // (protocol/close_codes.hpp) and `text`; a raw stream (MQTT over TCP) once what is queued
  // is written. Either way after the adapter's goodbye(), if it has one.
  virtual void close(core::close_reason why, std::string_view text) = 0;
  // Hands over the deliveries that reached the connection and were not yet handled (the
  // connection is ending), so that a persistent session keeps its QoS 1 messages.
  virtual void drain_pending(
      const std::function<void(const core::message_ptr&, std::uint8_t qos)>& take) = 0;
  // The sink the router delivers this connection's messages to.
  virtual core::session_sink& sink() = 0;
  // A callable, safe to keep and call from any thread, that runs a function on the
  // connection's thread if the connection (and so its adapter) is still there.
  using poster = std::function<void(std::function<void()>)>;
  virtual poster owner_poster() = 0;
  // Keeps the connection (and so its adapter) in existence while the result is held, closed
  // or not: what waits for an answer from elsewhere holds it (an idle connection with held
  // input has no pending read to keep it).
  virtual std::shared_ptr<void> hold() = 0;
  // Holds the client's input: nothing more it sent reaches the adapter (what is read waits,
  // within the read buffer's bound) until resume_input(), which hands it over, in order, from
  // a handler of its own. An authentication that answers later holds input this way.
  virtual void pause_input() = 0;
  virtual void resume_input() = 0;
  // The client certificate the TLS handshake verified (null over plain TCP, or when the
  // client sent none); valid as long as the connection.
  virtual const core::certificate_identity* peer_certificate() { return nullptr; }
};

// The adapters' counters (the metrics page's); relaxed atomics, written by any I/O thread.
struct adapter_probe {
  // The authenticator's answers, and identities closed at their expiry.
  std::atomic<std::uint64_t> auth_accepted{0}, auth_refused{0}, auth_expired{0};
  // Fresh tokens accepted on live connections, and connections closed for a revocation.
  std::atomic<std::uint64_t> auth_refreshed{0}, auth_revoked{0};
  // Attempts refused because their address failed too often (limits.max_auth_failures).
  std::atomic<std::uint64_t> auth_throttled{0};
  std::atomic<std::uint64_t> auth_busy{0};
  // Native: error frames sent (what limits.max_protocol_errors counts); MQTT: violations.
  std::atomic<std::uint64_t> native_errors{0}, mqtt_errors{0};
};

// The counters as metrics (authentications by result, protocol errors by protocol).
void write_metrics(const adapter_probe& p, common::metric_set& out);

struct adapter_context {
  core::router& router;
  core::auth_holder& auth;
  core::audit_log& audit;
  std::size_t max_batch = 1000;
  int max_protocol_errors = 20;
  // QoS 1 deliveries (core::delivery_window): unacknowledged at once, waiting, resend delay.
  std::size_t max_inflight = 32;
  std::size_t max_queued_qos1 = 1000;
  std::size_t max_queued_bytes = 0;    // payload bytes waiting per client; 0: no limit
  std::int64_t max_queued_age_ms = 0;  // older waiting messages are not delivered; 0: none
  std::int64_t retry_ms = 20000;
  // An identity that expires: the client is told this long before (native: a token_expiring
  // frame; at most half its life), and closed this long after (auth.refresh_notice_s,
  // auth.expiry_grace_s).
  std::int64_t refresh_notice_ms = 60000;
  std::int64_t expiry_grace_ms = 0;
  // Failed authentications per address; null: not limited.
  core::auth_throttle* throttle = nullptr;
  core::admission* admission = nullptr;  // reconnect storms (null: no limit)
  // MQTT: the longest keep alive a client may ask for, in seconds (mqtt.max_keepalive); 0:
  // no ceiling.
  std::uint16_t max_keepalive_s = 0;
  // Native: a frame without a type is a device reading (native.untyped_frames = "reading").
  bool untyped_readings = false;
  adapter_probe probe{};
};

// The connection's side of an adapter.
class client_adapter {
 public:
  virtual ~client_adapter() = default;
  // The connection is open (upgraded, or accepted for a raw stream).
  virtual void on_open() = 0;
  // One whole WebSocket message; `capacity` bytes from `data` may be read (padding).
  virtual void on_text(const char* data, std::size_t size, std::size_t capacity) = 0;
  virtual void on_binary(std::span<const std::uint8_t> data) = 0;
  // A raw stream (MQTT over TCP): the bytes not yet used; returns how many it used (the rest,
  // an unfinished packet, comes again with more).
  virtual std::size_t on_stream(std::span<const std::uint8_t> data) { return data.size(); }
  // The connection is ending. `clean`: the client said goodbye, so its will is not published.
  virtual void on_closed(bool clean = false) = 0;
  virtual bool authenticated() const noexcept = 0;
  virtual const std::string& client_id() const noexcept = 0;
  // The bytes of a QoS 0 delivery of `m`, cached in it and shared with other recipients.
  virtual const std::string& frame_for(const core::message& m, int qos = 0) const = 0;
  // A QoS 0 delivery of `m` as this connection sends it: the shared frame_for() bytes, or
  // (nullptr returned) bytes of this connection's only, written to `own` (an MQTT client
  // with topic aliases or subscription identifiers). `keep`: set when the bytes must not be
  // dropped from a full queue (they set up state the client needs for what follows).
  virtual const std::string* delivery_frame(const core::message& m, std::string& /*own*/,
                                            bool& /*keep*/) {
    return &frame_for(m);
  }
  // A QoS 1 or 2 delivery, through the session's window.
  virtual void deliver_acked(const core::message_ptr& m, std::uint8_t qos, std::int64_t now_ms) = 0;
  // A QoS 1 or 2 delivery that reached the connection after on_closed().
  virtual void late_delivery(const core::message_ptr& m, std::uint8_t qos) = 0;
  // Resends what fell due; next_due() says when the next one does.
  virtual void on_timer(std::int64_t now_ms) = 0;
  virtual std::optional<std::int64_t> next_due() const = 0;
  // True (once) when something went into flight while a frame was handled.
  virtual bool take_rearm() noexcept = 0;
  // The silence after which the client is gone (MQTT: 1.5 x its keep alive); nullopt: the
  // server's heartbeat settings apply.
  virtual std::optional<std::int64_t> idle_timeout_ms() const noexcept { return std::nullopt; }
  // The protocol's last words when the agent ends the connection for `why` (MQTT 5: a
  // DISCONNECT with the matching reason code), as they go on the wire (in a WebSocket frame
  // of their own over WebSocket), sent before the transport's close; empty: none.
  virtual std::string goodbye(core::close_reason /*why*/) const { return {}; }
  // The authenticator changed (a reload) or a revocation was made: a connection whose
  // credential no longer stands is closed (close_reason::auth_revoked).
  virtual void recheck_credentials() {}
};

}  // namespace wsagent::protocol
