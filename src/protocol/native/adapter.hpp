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
#include "protocol/native/codec.hpp"

namespace wsagent::protocol::native {

// What the adapter needs from the connection.
class transport_link {
 public:
  virtual ~transport_link() = default;
  // Queues one whole WebSocket frame for this connection only.
  virtual void send_frame(std::string frame) = 0;
  // Queues `bytes`, a frame cached in `m` and shared with other recipients; never dropped.
  virtual void send_shared(const core::message_ptr& m, const std::string& bytes) = 0;
  // Sends a close frame with `code` and `reason`, then ends the connection.
  virtual void close(std::uint16_t code, std::string_view reason) = 0;
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
};

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
};

// What the HTTP upgrade request said.
struct upgrade_info {
  std::string token;              // Authorization: Bearer ..., or ?token=
  std::string client_id;          // ?clientId= or ?deviceId=
  bool binary = false;            // ?binary=1: binary payloads arrive as binary frames
  core::session_options session;  // ?session=persistent&expiry=N
  std::string_view remote;  // "address:port", owned by the transport, which outlives the adapter
};

class adapter final : private request_handler {
 public:
  adapter(adapter_context& ctx, transport_link& link, upgrade_info info);
  ~adapter() override;

  // Authenticates from the upgrade request when it carried a token, or in open mode.
  void on_open();
  // One text message; `capacity` as for parser::parse.
  void on_text(const char* data, std::size_t size, std::size_t capacity);
  void on_binary(std::span<const std::uint8_t> data);
  // The connection is ending: leave the router. `clean`: the client said goodbye (close
  // code 1000), so its will is not published.
  void on_closed(bool clean = false);

  bool authenticated() const noexcept { return session_ != nullptr; }
  const std::string& client_id() const noexcept;
  std::string_view remote() const noexcept { return info_.remote; }

  // The frame for `m` at `qos` (0, 1 or 2) in this client's format; cached in `m`, shared
  // with other recipients.
  const std::string& frame_for(const core::message& m, int qos = 0) const;

  // A QoS 1 or 2 delivery (steady clock `now_ms`): sent now through send_shared() when the
  // window has room, else it waits for acknowledgements.
  void deliver_acked(const core::message_ptr& m, std::uint8_t qos, std::int64_t now_ms);
  // A QoS 1 or 2 delivery that reached the connection after on_closed(): back to the
  // persistent session it was for (a clean one is gone, and so is the message).
  void late_delivery(const core::message_ptr& m, std::uint8_t qos);
  bool too_old(const core::message& m, std::int64_t wall_ms) const;
  void discard(std::uint64_t seq, std::int64_t now_ms);
  // Resends what is due; returns when the next QoS 1 delivery falls due (or nullopt).
  void on_timer(std::int64_t now_ms);
  std::optional<std::int64_t> next_due() const;
  // True (once) when something went into flight, or was re-stamped, while a frame was
  // handled: the connection re-arms its deadline for next_due().
  bool take_rearm() noexcept { return std::exchange(rearm_, false); }

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
