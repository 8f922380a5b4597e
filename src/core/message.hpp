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
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsagent::core {

// What the publisher said its payload is. Protocols render it for their readers: MQTT sends
// the Payload Format Indicator for json and text (and nothing else), the native protocol
// writes json as it is, text as a JSON string, binary in base64 (or a binary frame), and
// looks at an `unspecified` payload when one of its readers first needs it.
enum class payload_format : std::uint8_t {
  json = 0,         // JSON text (any JSON value), compact and valid: a native publish
  binary = 1,       // opaque bytes the publisher said are binary (a native binary frame)
  text = 2,         // UTF-8 text the publisher vouched for (MQTT 5 Payload Format Indicator 1)
  unspecified = 3,  // bytes nobody described (MQTT with no format indicator)
};

// The cache slots of message::encoded() and the bits of message::flags are the adapters':
// each reserves what it needs by name, once, at start-up (before any message is encoded),
// and the core only counts them. A name reserved twice gets the same slot.
class wire_registry {
 public:
  static constexpr std::size_t max_slots = 12;
  static constexpr std::size_t max_flags = 8;
  // The process's: every message's slots and flags are its.
  static wire_registry& global();

  // A slot for one wire format ("native.json", "mqtt.v5"); throws std::length_error past
  // max_slots (a later protocol raises it).
  std::size_t reserve_slot(std::string_view name);
  // A bit of message::flags ("native.device"). The bits are stored with messages, so they
  // are reserved in a fixed order (protocol::reserve_wire_formats): new names go at the end.
  std::uint8_t reserve_flag(std::string_view name);
  std::size_t slots_in_use() const;

 private:
  // Reserved at start-up, read when a protocol looks its slots up (once, into statics).
  mutable std::mutex mutex_;
  std::vector<std::string> slots_;
  std::vector<std::string> flags_;
};

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
  // Bits the adapters reserve (wire_registry::reserve_flag) to tell their own readers how
  // the message was made; the core and the stores carry them and never read them.
  std::uint8_t flags = 0;
  // Delivered as a retained message (sent because of a new subscription), not live.
  bool retain = false;
  // The publisher set the retain flag (MQTT's Retain As Published shows it on live copies).
  bool published_retain = false;
  std::uint8_t qos = 0;  // as published (0, 1 or 2)
  // The node it was published on (router::node_id()), set when it is routed there: several
  // agents sharing one tag space (issue 14) tell local messages from injected ones by it.
  std::uint32_t node = 0;
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

  // The bytes of this message in the wire format of `slot` (wire_registry::reserve_slot),
  // computed by `encode(std::string&)` the first time. Safe to call from several threads at
  // once; every caller gets the same string.
  template <class Encoder>
  const std::string& encoded(std::size_t slot_index, Encoder&& encode) const {
    auto& slot = cache_[slot_index];
    if (const std::string* s = slot.load(std::memory_order_acquire)) return *s;
    auto fresh = std::make_unique<std::string>();
    encode(*fresh);
    const std::string* expected = nullptr;
    if (slot.compare_exchange_strong(expected, fresh.get(), std::memory_order_acq_rel))
      return *fresh.release();
    return *expected;  // another thread won; ours is dropped
  }

 private:
  mutable std::array<std::atomic<const std::string*>, wire_registry::max_slots> cache_{};
};

using message_ptr = std::shared_ptr<const message>;

// A fresh message id: the node's id (set_msgid_node) in hex, then a counter. Unique among the
// ids of one node's run; across nodes and runs as unique as the node ids are, which is why a
// node draws its id afresh each run (a cluster that names its nodes maps each start of a
// node to a fresh id: the name alone would repeat the ids of its last run).
std::string make_msgid();
// Called once at start-up (before any id is made); without it the node part is random.
void set_msgid_node(std::uint32_t node);

}  // namespace wsagent::core
