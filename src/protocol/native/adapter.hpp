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

class adapter final : public client_adapter, private request_handler {
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

  bool authenticated() const noexcept override { return session_ != nullptr; }
  const std::string& client_id() const noexcept override;
  std::string_view remote() const noexcept { return info_.remote; }

  // The frame for `m` at `qos` (0, 1 or 2) in this client's format; cached in `m`, shared
  // with other recipients.
  const std::string& frame_for(const core::message& m, int qos = 0) const override;

  // A QoS 1 or 2 delivery (steady clock `now_ms`): sent now through send_shared() when the
  // window has room, else it waits for acknowledgements.
  void deliver_acked(const core::message_ptr& m, std::uint8_t qos, std::int64_t now_ms) override;
  // A QoS 1 or 2 delivery that reached the connection after on_closed(): back to the
  // persistent session it was for (a clean one is gone, and so is the message).
  void late_delivery(const core::message_ptr& m, std::uint8_t qos) override;
  bool too_old(const core::message& m, std::int64_t wall_ms) const;
  void discard(std::uint64_t seq, std::int64_t now_ms);
  // Resends what is due; returns when the next QoS 1 delivery falls due (or nullopt).
  void on_timer(std::int64_t now_ms) override;
  std::optional<std::int64_t> next_due() const override;
  // True (once) when something went into flight, or was re-stamped, while a frame was
  // handled: the connection re-arms its deadline for next_due().
  bool take_rearm() noexcept override { return std::exchange(rearm_, false); }

 private:
  void on_auth(const auth_request& r) override;
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
  void send_window_ready(std::int64_t now_ms);
  void send_entry(const core::delivery_window::entry& e);
  void resend(const std::vector<core::delivery_window::entry>& due, std::int64_t now_ms);
  void set_will(const auth_request& r);
  void presence(std::string_view event, bool clean);
  bool authenticate(std::string_view token, std::string_view requested_id, std::string_view id);
  void establish(const core::identity& who, std::string_view requested_id);
  void finish_resume();
  void send_auth_response();
  // False when it was refused (the error is sent).
  bool route(const std::shared_ptr<core::message>& m, std::string_view to, std::string_view id,
             bool retain = false, std::function<void(bool)> on_durable = {},
             bool* pending = nullptr, std::vector<core::store_op> with = {});
  void publish_qos1(const std::shared_ptr<core::message>& m, std::string_view to,
                    std::string_view id, bool retain);
  void publish_qos2(const std::shared_ptr<core::message>& m, std::string_view to,
                    std::string_view id, bool retain);
  // A store completion (any thread) that sends `frame` on this connection's thread when the
  // write is durable, or an `unavailable` error naming `msgid` (then runs `failed` there).
  std::function<void(bool)> reply_when_durable(std::string frame, std::string msgid,
                                               std::string_view id,
                                               std::function<void()> failed = {});
  void reply_error(error_code code, std::string_view message, std::string_view id);

  adapter_context& ctx_;
  transport_link& link_;
  core::session_options wanted_;  // what the client asked for its next session
  upgrade_info info_;
  std::shared_ptr<core::session> session_;
  std::shared_ptr<core::session> closed_persistent_;  // session_ after on_closed, if persistent
  struct will_message {
    std::string tag, payload;
    int qos = 0;
    bool retain = false;
  };
  std::optional<will_message> will_;
  bool provisional_id_ = false;  // the agent chose the id; the client may still name itself
  bool announced_ = false;       // $sys/clients/<id>/connected was published for session_
  bool resumed_ = false;         // session_ resumed a persistent session
  bool pending_resume_ = false;  // its unacknowledged messages are still to be resent
  bool closing_ = false;
  bool rearm_ = false;
  int errors_ = 0;
};

// A client id the agent accepts: 1 to 128 bytes of UTF-8 with no '/', '+', '#' or control
// characters (it is substituted into tags and ACL patterns).
bool valid_client_id(std::string_view id) noexcept;

}  // namespace wsagent::protocol::native
