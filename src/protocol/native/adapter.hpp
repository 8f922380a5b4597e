#pragma once
// The native protocol adapter: one per WebSocket connection on /ws. It turns the client's
// frames into core operations (authenticate, subscribe, publish) and core messages into
// frames. It owns the connection's core::session.
//
// Threading: every member function runs on the connection's I/O thread. The transport
// implements transport_link and hands deliveries from other threads to that thread before
// calling frame_for().

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "core/audit.hpp"
#include "core/auth.hpp"
#include "core/delivery.hpp"
#include "core/router.hpp"
#include "core/session.hpp"
#include "protocol/client_adapter.hpp"
#include "protocol/session_adapter.hpp"

#include "protocol/native/codec.hpp"

namespace wsagent::protocol::native {

using protocol::adapter_context;
using protocol::transport_link;

// What the HTTP upgrade request said.
struct upgrade_info {
  std::string token;              // Authorization: Bearer ..., or ?token=
  std::string client_id;          // ?clientId= or ?deviceId=
  bool binary = false;            // ?binary=1: binary payloads arrive as binary frames
  core::session_options session;  // ?session=persistent&expiry=N
  std::string_view remote;  // "address:port", owned by the transport, which outlives the adapter
};

class adapter final : public session_adapter, private request_handler {
 public:
  adapter(adapter_context& ctx, transport_link& link, upgrade_info info);
  ~adapter() override;

  // Authenticates from the upgrade request when it carried a token, or in open mode.
  void on_open() override;
  // One text message; `capacity` as for parser::parse.
  void on_text(const char* data, std::size_t size, std::size_t capacity) override;
  void on_binary(std::span<const std::uint8_t> data) override;
  // The connection is ending: leave the router. `clean`: the client said goodbye (close
  // code 1000), so its will is not published.
  void on_closed(bool clean = false) override;

  std::string_view remote() const noexcept { return info_.remote; }
  std::string_view remote_address() const noexcept override { return info_.remote; }

  // The frame for `m` at `qos` (0, 1 or 2) in this client's format; cached in `m`, shared
  // with other recipients.
  const std::string& frame_for(const core::message& m, int qos = 0) const override;

  // The encoding slots and the message flag this protocol reserves (wire_registry), made
  // on first use; app reserves them at start-up, in the documented order.
  struct wire_slots {
    std::size_t json[3], binary[3];  // by QoS
    std::size_t kind;                // what a native reader makes of an undescribed payload
    std::uint8_t device;             // message::flags: a device message (on_typed)
  };
  static const wire_slots& wire();
  // How the native protocol writes `m`'s payload (looked at once per message for MQTT's).
  static payload_kind kind_of(const core::message& m);
  // Appends `m`'s frame: a message envelope (binary or JSON), at `qos`, flagged dup or not.
  static void encode(const core::message& m, std::string& out, bool binary, int qos, bool dup);

 private:
  void on_auth(const auth_request& r) override;
  void on_refresh(std::string_view id, std::string_view token) override;
  void expiry_notice(std::int64_t closes_ms) override;
  void on_subscribe(const subscribe_request& r) override;
  void on_publish(const publish_request& r) override;
  void on_typed(const typed_request& r) override;
  void on_ping(std::string_view id) override;
  void on_ack(std::string_view id, std::uint64_t seq) override;
  void on_pubrec(std::string_view id, std::uint64_t seq) override;
  void on_pubcomp(std::string_view id, std::uint64_t seq) override;
  void on_pubrel(std::string_view id, std::string_view msgid) override;
  void on_error(error_code code, std::string_view message, std::string_view id) override;

  bool require_auth();
  // The shared frame; resent, this client's own frame flagged dup; released, its pubrel.
  void send_entry(const core::delivery_window::entry& e) override REQUIRES(session_->mutex());
  bool clears_retained(const core::message& m) const override;
  void set_will(const session_will& w, std::string_view id);
  // Asks the authenticator (protocol/session_adapter.hpp); once it accepts, the session is
  // established and `then` runs. A refusal closes the connection (4403); a client id that
  // belongs to another token is an error to request `id`.
  void authenticate(std::string_view token, std::string_view requested_id, std::string_view id,
                    std::function<void()> then);
  // What this client presents with `token` for `client_id` (views: valid while they are).
  core::auth_request auth_request_for(std::string_view token, std::string_view client_id);
  struct auth_step;
  // An auth request from a client that is authenticated already: a rename, a persistent
  // session asked for, or nothing more.
  void reauthenticated(const std::shared_ptr<auth_step>& step);
  // The will and the auth response.
  void complete_auth(const auth_step& step);
  void establish(const core::identity& who, std::string_view requested_id);
  void finish_resume();
  void send_auth_response();
  // False when it was refused (the error is sent). `to_unknown`: set when `to` named nobody.
  bool route(const std::shared_ptr<core::message>& m, std::string_view to, std::string_view id,
             bool retain = false, std::function<void(bool)> on_durable = {},
             bool* pending = nullptr, std::vector<core::store_op> with = {},
             bool* to_unknown = nullptr);
  // The unknown_client error for a message sent `to` nobody ("" when `to` is empty).
  static std::string unknown_client(std::string_view to, std::string_view msgid,
                                    std::string_view id);
  void publish_qos1(const std::shared_ptr<core::message>& m, std::string_view to,
                    std::string_view id, bool retain);
  void publish_qos2(const std::shared_ptr<core::message>& m, std::string_view to,
                    std::string_view id, bool retain);
  // A store completion (any thread) that sends `frame` on this connection's thread when the
  // write is durable (or `instead`, when `*use_instead` is set by then), or an
  // `unavailable` error naming `msgid` (then runs `failed` there).
  std::function<void(bool)> reply_when_durable(std::string frame, std::string msgid,
                                               std::string_view id,
                                               std::function<void()> failed = {},
                                               std::string instead = {},
                                               std::shared_ptr<const bool> use_instead = {});
  void reply_error(error_code code, std::string_view message, std::string_view id);

  core::session_options wanted_;  // what the client asked for its next session
  upgrade_info info_;
  bool provisional_id_ = false;  // the agent chose the id; the client may still name itself
  bool resumed_ = false;         // session_ resumed a persistent session
  bool pending_resume_ = false;  // its unacknowledged messages are still to be resent
  int errors_ = 0;
};

}  // namespace wsagent::protocol::native
