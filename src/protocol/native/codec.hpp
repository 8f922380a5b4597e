#pragma once
// The native protocol's wire format (docs/protocol.md): JSON text frames in, requests out;
// messages and responses in, JSON out. Pure code: no sockets, no session state.
//
// Parsing is a single pass of simdjson On-Demand over each object's fields. Every value is
// visited, so malformed JSON anywhere in the frame is caught, and values that are forwarded
// as they are (payload, fields of device messages) are returned as slices of the input.
// Requests point into the input frame and into the parser: they are valid only during the
// request_handler call.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsagent::protocol::native {

// Error codes of {"type":"error"} frames; the table in docs/protocol.md lists them.
enum class error_code {
  bad_request,     // not JSON, missing or mistyped field, unknown protocol word
  invalid_tag,     // a tag or filter that breaks the tag rules
  forbidden,       // the client's rights do not allow it
  limit_exceeded,  // a configured limit (subscriptions, batch size)
  unsupported,     // valid but not offered by this agent (yet)
  unavailable,     // the agent could not do it now (its store failed); try again
  unknown_client,  // a 'to' names no client that is connected or keeps a persistent session
  unauthorized,    // a refresh whose token was refused (the connection keeps its identity)
};
const char* to_string(error_code c) noexcept;

// A last will: published by the agent when the connection ends without a clean goodbye.
struct will_request {
  std::string_view tag;
  std::string_view payload;  // raw JSON text
  int qos = 0;
  bool retain = false;
};

struct auth_request {
  std::string_view id;
  std::string_view token;
  std::string_view client_id;          // "deviceId" or "clientId"
  bool binary = false;                 // the client reads binary frames
  const will_request* will = nullptr;  // "will": {...}
  bool persistent = false;             // "session":"persistent"
  std::int64_t expiry_s = 0;           // "expiry": the persistent session's, in seconds
};

struct subscribe_request {
  std::string_view id;
  std::vector<std::string_view> tags;
  bool unsubscribe = false;
  int qos = 0;
  // Tag history recovery: tag -> last offset the client has, and/or a time (ms, -1: none).
  std::span<const std::pair<std::string_view, std::uint64_t>> since;
  std::int64_t since_ms = -1;
};

// Message properties a publish may carry (docs/protocol.md, "Message properties"): MQTT 5's,
// so that MQTT clients get them.
struct publish_properties {
  std::string_view content_type;
  std::string_view response_tag;
  std::string_view correlation;
  bool correlation_base64 = false;  // "correlation_encoding":"base64"
  std::span<const std::pair<std::string_view, std::string_view>> user;  // "user_properties"
  bool empty() const noexcept {
    return content_type.empty() && response_tag.empty() && correlation.empty() && user.empty();
  }
};

struct publish_request {
  std::string_view id;
  std::string_view tag;
  std::string_view payload;  // raw JSON text of the payload value
  std::string_view msgid;
  std::string_view to;
  bool retain = false;
  int qos = 0;
  std::int64_t expiry_s = 0;  // "expiry": seconds to live; 0 = forever
  publish_properties props;
};

// A frame whose type is not a protocol word: a device's status, event, command... Or a
// device reading, an object without a type (a batch's element, or any frame with
// native.untyped_frames = "reading"): routed as a device message of type "data".
struct typed_request {
  std::string_view id;
  std::string_view type;
  std::string_view tag;    // may be empty
  std::string_view to;     // may be empty
  std::string_view msgid;  // may be empty
  bool has_timestamp = false;
  // Every field of the object except tag, from, msgid, qos and retain, already written as
  // JSON members ("k":v,"k2":v2), without the braces. The agent adds tag, from, msgid and
  // timestamp (and, for a reading, its type).
  std::string_view members;
  int qos = 0;           // the IoT message format's: acknowledged and delivered like a publish
  bool retain = false;   // kept as its tag's retained message
  bool reading = false;  // it had no type
  // "deviceId" (or "clientId"): the device the message says it is about; kept in members.
  std::string_view device_id = {};
};

// The type a reading is routed as (devices/<client id>/data).
inline constexpr std::string_view reading_type = "data";

class request_handler {
 public:
  virtual ~request_handler() = default;
  virtual void on_auth(const auth_request& r) = 0;
  // {"type":"refresh","token":...}: a fresh token for the live connection.
  virtual void on_refresh(std::string_view id, std::string_view token) = 0;
  virtual void on_subscribe(const subscribe_request& r) = 0;
  virtual void on_publish(const publish_request& r) = 0;
  virtual void on_typed(const typed_request& r) = 0;
  virtual void on_ping(std::string_view id) = 0;
  // {"type":"ack","seq":N}: the client has a QoS 1 delivery.
  virtual void on_ack(std::string_view id, std::uint64_t seq) = 0;
  // QoS 2: {"type":"pubrec","seq":N}, the client has delivery N; {"type":"pubcomp","seq":N},
  // it has forgotten it; {"type":"pubrel","msgid":...}, the publisher releases its publish.
  virtual void on_pubrec(std::string_view id, std::uint64_t seq) = 0;
  virtual void on_pubcomp(std::string_view id, std::uint64_t seq) = 0;
  virtual void on_pubrel(std::string_view id, std::string_view msgid) = 0;
  virtual void on_error(error_code code, std::string_view message, std::string_view id) = 0;
};

// Holds simdjson's buffers; reused, parsing is allocation-free once warm. Parsing is
// synchronous, so one parser per I/O thread serves all of that thread's connections.
class parser {
 public:
  parser();
  ~parser();
  parser(const parser&) = delete;
  parser& operator=(const parser&) = delete;

  // Parses one text frame and calls `h` once per request in it (several for a batch).
  // `capacity` is how many bytes starting at `data` may be read (>= size); when fewer than
  // simdjson's padding follow the frame, the frame is copied to a padded buffer first.
  // A batch with more than `max_batch` messages is refused whole. `untyped_readings`: a
  // frame without a type is a device reading (native.untyped_frames = "reading"), not an
  // error; a batch's elements without one always are.
  void parse(const char* data, std::size_t size, std::size_t capacity, request_handler& h,
             std::size_t max_batch, bool untyped_readings = false);

  static parser& for_this_thread();

 private:
  struct impl;
  impl* impl_;
};

// --- outgoing: each function appends a whole WebSocket text frame (header included) ---

// How a delivered payload is written: as the JSON value it is, as a JSON string, or in
// base64 (with "encoding":"base64").
enum class payload_kind : std::uint8_t { json, text, bytes };

// A message's properties as they go out (docs/protocol.md, "Message properties").
struct outgoing_properties {
  std::string_view content_type;
  std::string_view response_tag;
  std::string_view correlation;  // any bytes; base64 when not UTF-8
  std::span<const std::pair<std::string, std::string>> user;
};

// A message as the native protocol delivers it; the adapter fills it from the core's.
struct outgoing_message {
  std::string_view tag, payload, from, msgid;
  payload_kind kind = payload_kind::json;
  // The payload is a whole device message object (build_typed_payload): sent as it is, with
  // the delivery's own fields (offset, qos, seq, dup) added to it.
  bool device = false;
  bool retained = false;
  std::int64_t timestamp_ms = 0;
  std::uint64_t seq = 0;  // a QoS 1/2 delivery's
  std::uint64_t offset = 0;
  const outgoing_properties* props = nullptr;
};

// {"type":"message",...} for a message; a device message's object is sent as it is. With
// `qos` 1 or 2 the frame also carries "qos" and "seq" (the client acknowledges it), and with
// `dup` "dup":true (sent before).
void encode_message_frame(const outgoing_message& m, std::string& out, int qos = 0,
                          bool dup = false);
// {"type":"ack","msgid":...}: the agent has a QoS 1 publish; with `type` "pubrec" it has a
// QoS 2 publish, with "pubcomp" the publish is released.
void encode_publish_ack(std::string& out, std::string_view msgid, std::string_view id,
                        std::string_view type = "ack");
// {"type":"pubrel","seq":N}: QoS 2 delivery N is released; the client answers pubcomp.
void encode_pubrel(std::string& out, std::uint64_t seq);
// `persistent`: adds "session":"persistent" and "resumed"; `expires_ms` (wall clock, 0 none):
// "expiresAt", when the connection closes unless the client refreshes its token.
void encode_auth_response(std::string& out, std::string_view client_id, std::int64_t now_ms,
                          bool persistent = false, bool resumed = false,
                          std::int64_t expires_ms = 0);
// {"type":"refreshed","id":...,"expiresAt":...,"unsubscribed":[...]}: a refresh was accepted;
// the subscriptions the new rights no longer allow were removed.
void encode_refreshed(std::string& out, std::string_view id, std::int64_t expires_ms,
                      std::span<const std::string> unsubscribed);
// {"type":"token_expiring","expiresAt":...,"timestamp":...}: send a refresh before then.
void encode_token_expiring(std::string& out, std::int64_t expires_ms, std::int64_t now_ms);
// With `recovery` (the subscribe asked for history): "recovered" and, when false, the tags
// for which something may be missing ("incomplete").
struct recovery_report {
  bool asked = false;
  std::span<const std::string> incomplete;
};
void encode_subscribed(std::string& out, std::string_view id,
                       std::span<const std::string_view> tags, bool unsubscribed,
                       const recovery_report& recovery = {});
// `msgid`: the message the error is about (a publish that asked for an ack), "" none.
void encode_error(std::string& out, error_code code, std::string_view message, std::string_view id,
                  std::string_view msgid = {});
void encode_pong(std::string& out, std::string_view id, std::int64_t now_ms);

// Builds the delivered object of a typed message from its members and the agent's fields.
std::string build_typed_payload(const typed_request& r, std::string_view tag, std::string_view from,
                                std::string_view msgid, std::int64_t timestamp_ms);

}  // namespace wsagent::protocol::native
