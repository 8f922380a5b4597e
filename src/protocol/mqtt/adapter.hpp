#pragma once
// The MQTT adapter: one per MQTT connection. It turns a client's packets (3.1.1 or 5.0) into
// core operations and core messages into packets, over the router, sessions, permissions and
// delivery guarantees the native protocol uses, so MQTT and native clients share one tag
// space (docs/protocol.md, "MQTT").
//
// What maps to what:
//   CONNECT            authenticate (password, else username, is the token), attach a core
//                      session: clean session / clean start and session expiry give a clean
//                      or persistent one; the will; keep alive (silence of 1.5 x it closes)
//   SUBSCRIBE          router subscriptions at the requested QoS, then retained messages
//   PUBLISH (in)       router publish; QoS 1 PUBACK and QoS 2 PUBREC once routed (and on
//                      disk for persistent recipients); a QoS 2 packet id is the session's
//                      incoming record until PUBREL
//   deliveries (out)   QoS 0: one PUBLISH per message and version, shared by all recipients;
//                      QoS 1 and 2 through the session's window, each with a packet id of
//                      this connection
//
// Threading: every member runs on the connection's I/O thread (see client_adapter.hpp).

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "protocol/client_adapter.hpp"
#include "protocol/session_adapter.hpp"

#include "protocol/mqtt/codec.hpp"
#include "protocol/mqtt/properties.hpp"

namespace wsagent::protocol::mqtt {

class adapter final : public session_adapter {
 public:
  // `max_packet_size`: the largest packet the client may send (limits.max_message_size).
  // `websocket`: the connection is MQTT over WebSocket (/mqtt): every packet goes out in a
  // binary frame of its own.
  adapter(adapter_context& ctx, transport_link& link, std::string_view remote,
          std::size_t max_packet_size, bool websocket = false);
  ~adapter() override;

  void on_open() override {}
  void on_text(const char* data, std::size_t size, std::size_t capacity) override;
  void on_binary(std::span<const std::uint8_t> data) override;
  std::size_t on_stream(std::span<const std::uint8_t> data) override;
  void on_closed(bool clean = false) override;
  const std::string& frame_for(const core::message& m, int qos = 0) const override;
  const std::string* delivery_frame(const core::message& m, std::string& own, bool& keep) override;
  std::optional<std::int64_t> idle_timeout_ms() const noexcept override;
  std::string_view remote_address() const noexcept override { return remote_; }

  // The encoding slots this protocol reserves (wire_registry), made on first use; app
  // reserves them at start-up, in the documented order.
  struct wire_slots {
    std::size_t v311, v5, v311_ws, v5_ws;  // a QoS 0 PUBLISH, as it goes on each wire
    std::size_t payload;                   // a JSON payload as MQTT readers get it (compacted)
  };
  static const wire_slots& wire();

  // MQTT 5's DISCONNECT for a connection the agent ends for `why` (taken over, keep alive,
  // slow consumer, shutdown); nothing for 3.1.1.
  std::string goodbye(core::close_reason why) const override;

 private:
  // False when the connection is ending.
  bool on_packet(const split_result& r);
  // Checks what needs no identity, then asks the authenticator. `c` points into `body`.
  void on_connect(const connect_request& c, std::shared_ptr<const std::vector<std::uint8_t>> body);
  // The rest of the CONNECT, with the authenticator's answer (now, or later: `c` and the
  // properties point into the CONNECT's body, which the answer holds).
  void connect_authenticated(const connect_request& c, const properties& props,
                             const properties& will_props, core::auth_result result);
  void auth_answered_later() override;
  // The session's client id: the token's, the CONNECT's, or one the agent makes (`assigned`);
  // false when the CONNECT was refused.
  bool client_id_for(const core::identity& who, std::string& id, bool& assigned);
  core::session_options session_options_of(const connect_request& c, const properties& props);
  // The keep alive the client asked for, under mqtt.max_keepalive (`told`: the ceiling goes
  // in CONNACK); false when the CONNECT was refused.
  bool take_keep_alive(std::uint16_t keep_alive, bool& told);
  void send_connack(bool resumed, bool assigned, bool server_keep_alive);
  // A CONNACK refusing the connection (3.1.1's code or 5.0's), then the connection ends.
  void refuse_connect(std::uint8_t v311_code, std::uint8_t v5_code, std::string_view why);
  void on_publish(const publish& p);
  void publish_acked(const std::shared_ptr<core::message>& m, std::uint16_t packet_id, bool retain);
  void publish_qos2(const std::shared_ptr<core::message>& m, std::uint16_t packet_id, bool retain);
  void on_pubrel(std::uint16_t packet_id);
  void on_puback(packet_type t, std::uint16_t packet_id);
  // 5.0 AUTH, Re-authenticate: a fresh token (its Authentication Data) for the connection.
  void on_reauthenticate(std::string_view token);
  void on_subscribe(const subscribe_request& r);
  void on_unsubscribe(const subscribe_request& r);
  // Keeps the CONNECT's will, or refuses the connection (an invalid or forbidden topic).
  bool accept_will(const mqtt::will_message& w, const properties& props, const core::acl& rights,
                   std::string_view id);
  // A protocol violation: 5.0 gets a DISCONNECT with `reason`; then the connection ends.
  void violation(std::uint8_t reason, std::string_view why);
  // A reply the client gets once what the store is writing is durable (on this thread).
  std::function<void(bool)> when_durable(std::string packet, std::function<void()> failed = {});

  void send(std::string packet);
  // A packet as it goes on this connection's wire (in a WebSocket frame, or as it is).
  std::string framed(std::string packet) const;
  std::uint16_t packet_id_for(std::uint64_t seq);
  void release_packet_id(std::uint64_t seq);
  void send_publish(const core::message_ptr& m, std::uint8_t qos, bool dup)
      REQUIRES(session_->mutex());
  // PUBLISH (DUP when sent before), or PUBREL for a released QoS 2 delivery.
  void send_entry(const core::delivery_window::entry& e) override REQUIRES(session_->mutex());
  void forgotten(std::uint64_t seq) override REQUIRES(session_->mutex()) { release_packet_id(seq); }
  // What this connection adds to one delivery: the subscription identifiers and the retain
  // flag of the subscriptions that matched, and a topic alias.
  struct extras {
    std::vector<std::uint32_t> ids;
    bool retain = false;
    std::uint16_t alias = 0;
    bool new_alias = false;  // the packet sets the alias up: it carries the topic too
  };
  // Null when nothing is added (the shared packet will do).
  const extras* extras_for(const core::message& m);
  // Appends the PUBLISH of `m` to `out` (with `header_only`, all of it but the payload);
  // returns the payload as it goes out (the message's bytes, or its compacted JSON).
  const std::string& encode_delivery(std::string& out, const core::message& m, std::uint8_t qos,
                                     std::uint16_t packet_id, bool dup, const extras* x = nullptr,
                                     bool header_only = false) const;
  // After the subscriptions changed: whether any asks for something per delivery.
  void review_subscriptions();

  std::string_view remote_;  // owned by the transport, which outlives the adapter
  std::size_t max_packet_size_;
  version ver_ = version::v311;
  bool websocket_ = false;
  bool connected_ = false;  // CONNECT handled (whatever its answer)
  // 5.0: the CONNECT named the Authentication Method "token": its Authentication Data is the
  // token, and AUTH packets may re-authenticate with a fresh one.
  bool token_method_ = false;
  std::int64_t keep_alive_ms_ = 0;
  std::size_t client_max_packet_ = 0;  // 5.0 Maximum Packet Size; 0: no limit
  // Outbound QoS 1 and 2: packet id <-> seq of the deliveries in flight on this connection.
  std::unordered_map<std::uint16_t, std::uint64_t> packet_seq_;
  std::unordered_map<std::uint64_t, std::uint16_t> seq_packet_;
  std::vector<std::uint8_t> pending_;  // WebSocket: bytes of an unfinished packet
  // Topic aliases (5.0): the client's, alias - 1 -> topic; and the agent's, up to the
  // client's Topic Alias Maximum, given to topics in the order they are first delivered.
  std::vector<std::string> aliases_in_;
  std::uint16_t alias_max_out_ = 0;
  std::unordered_map<std::string, std::uint16_t, core::string_hash, std::equal_to<>> aliases_out_;
  // The subscriptions with an identifier or retain as published (the filter, its options):
  // their deliveries are looked at. A copy: the session's set is the router's.
  std::vector<std::pair<std::string, core::subscription_options>> personal_;
  extras extras_;  // extras_for()'s result, reused
  // The CONNECT's Session Expiry Interval was 0: a DISCONNECT may not set one (5.0).
  bool connect_expiry_zero_ = true;
};

}  // namespace wsagent::protocol::mqtt
