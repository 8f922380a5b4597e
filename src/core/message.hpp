#pragma once
// A routed message, shared read-only by every recipient (std::shared_ptr<const message>).
//
// Protocol adapters encode a message at most once per wire format: encoded() computes the
// bytes on first use by any thread and caches them in the message, so a fan-out to 10,000
// native subscribers builds one frame and queues the same bytes 10,000 times.

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsagent::core {

enum class payload_format : std::uint8_t {
  json,    // `payload` is JSON text (any JSON value), compact and valid
  binary,  // `payload` is opaque bytes
  text,    // `payload` is UTF-8 text (an MQTT payload that is not JSON); native clients get
           // it as a JSON string, MQTT clients as it is
};

// Cache slots, one per wire format. The core only reserves the numbers; adapters own them.
enum class wire_format : std::uint8_t {
  native_json = 0,
  native_binary = 1,
  native_json_qos1 = 2,  // with "qos":1 and "seq": a delivery the client acknowledges
  native_binary_qos1 = 3,
  mqtt = 4,   // MQTT 3.1.1 PUBLISH at QoS 0
  mqtt5 = 5,  // MQTT 5.0 PUBLISH at QoS 0
  native_json_qos2 = 6,
  native_binary_qos2 = 7,
  mqtt_ws = 8,        // MQTT 3.1.1 PUBLISH at QoS 0 in a WebSocket binary frame
  mqtt5_ws = 9,       // MQTT 5.0, the same
  mqtt_payload = 10,  // the payload as MQTT clients get it (JSON compacted)
};
inline constexpr std::size_t wire_format_count = 11;

// Metadata a message carries across protocols: MQTT 5's request/response and descriptive
// properties, which native clients read and write as fields of the message frame
// (docs/protocol.md, "Message properties"). Most messages have none: message::props is null.
struct message_properties {
  std::string content_type;  // MQTT Content Type; native "content_type"
  std::string response_tag;  // MQTT Response Topic; native "response_tag"
  std::string correlation;   // MQTT Correlation Data (any bytes); native "correlation"
  std::vector<std::pair<std::string, std::string>> user;  // MQTT User Properties, in order

  bool empty() const noexcept {
    return content_type.empty() && response_tag.empty() && correlation.empty() && user.empty();
  }
  // A compact byte form for the store: each string with a 32-bit length.
  std::string serialize() const;
  // Null for "" (no properties) and for bytes that are not a serialize() result.
  static std::shared_ptr<const message_properties> parse(std::string_view bytes);
};

class message {
 public:
  std::string tag;
  std::string payload;
  std::string from;   // client id of the publisher ("" for the agent itself)
  std::string msgid;  // unique per publisher; the agent assigns one if the client did not
  std::int64_t timestamp_ms = 0;
  payload_format format = payload_format::json;
  // The payload is a whole native application object ({"type":"status",...}) that is
  // delivered as it is, rather than wrapped in a {"type":"message"} envelope.
  bool typed = false;
  // Delivered as a retained message (sent because of a new subscription), not live.
  bool retain = false;
  // The publisher set the retain flag (MQTT's Retain As Published shows it on live copies).
  bool published_retain = false;
  std::uint8_t qos = 0;         // as published (0, 1 or 2)
  std::int64_t expires_ms = 0;  // wall clock after which it is not delivered; 0: never
  std::uint64_t seq = 0;        // QoS >= 1: agent-wide number, what subscribers acknowledge
  // Tag history (core/history.hpp): the message's number on its tag, set before it is
  // routed; 0: its tag keeps no history.
  std::uint64_t offset = 0;
  std::shared_ptr<const message_properties> props;  // null: none

  // Past its expiry at wall time `now_ms` (never, without one).
  bool expired_at(std::int64_t now_ms) const noexcept { return expires_ms && expires_ms <= now_ms; }

  message() = default;
  message(const message&) = delete;
  message& operator=(const message&) = delete;
  ~message();

  // A new message with this one's content (everything but the encoded bytes; `seq` and
  // `offset` not set): a retained copy, a will published again.
  std::shared_ptr<message> copy() const;

  // The bytes of this message in `format`, computed by `encode(std::string&)` the first time.
  // Safe to call from several threads at once; every caller gets the same string.
  template <class Encoder>
  const std::string& encoded(wire_format wire, Encoder&& encode) const {
    auto& slot = cache_[static_cast<std::size_t>(wire)];
    if (const std::string* s = slot.load(std::memory_order_acquire)) return *s;
    auto fresh = std::make_unique<std::string>();
    encode(*fresh);
    const std::string* expected = nullptr;
    if (slot.compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel))
      return *fresh.release();
    return *expected;  // another thread won; ours is dropped
  }

 private:
  mutable std::array<std::atomic<const std::string*>, wire_format_count> cache_{};
};

using message_ptr = std::shared_ptr<const message>;

// A fresh message id, unique within this process run and unlikely to repeat across runs:
// a random prefix drawn at start-up and a counter.
std::string make_msgid();

}  // namespace wsagent::core
