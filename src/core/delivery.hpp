#pragma once
// At-least-once and exactly-once delivery to one client: the window of QoS 1 and QoS 2
// messages sent and not yet acknowledged, and the queue of those waiting for room in it.
//
// A QoS 1 or 2 message carries `seq`, the agent-wide number the router gave it when it was
// published; the client acknowledges a delivery with that number. QoS 1: one `ack` takes it
// out. QoS 2 (MQTT's PUBREC/PUBREL/PUBCOMP): the client's `rec` says it has the message, which
// is then never sent again (the entry is `released`: the agent sends `rel` instead); its
// `comp` takes the entry out. The window holds at most
// `max_inflight` unacknowledged messages; more wait in order in a queue of at most
// `max_queued` and `max_queued_bytes` of payload; past either the oldest waiting messages are
// dropped and counted (as Mosquitto's max_queued_messages and max_queued_bytes do), so one
// client that never acknowledges costs a bounded amount.
// A message unacknowledged for `retry_ms` is due again, flagged duplicate.
//
// Not thread-safe: it belongs to a core::session, whose mutex guards it (the owner
// connection's thread uses it while the client is online, publishers' threads while a
// persistent session is offline). Time is passed in (milliseconds, any monotonic clock).

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include <boost/container/deque.hpp>

#include "core/message.hpp"

namespace wsagent::core {

class delivery_window {
 public:
  struct entry {
    message_ptr msg;
    std::int64_t sent_ms = 0;  // last time it was handed out for sending
    bool dup = false;          // sent before: the client may have it already
    std::uint8_t qos = 1;      // this delivery's: 1 or 2
    bool released = false;     // QoS 2: the client has it; what is due is `rel`, not the message
    // Handed out at least once (or maybe: restored from the store), so that its next sending
    // is a re-delivery, flagged dup (MQTT's DUP, 3.3.1.1). One that waited for an offline
    // session goes out the first time unflagged.
    bool sent = false;
  };

  // `max_queued_bytes`: payload bytes waiting, 0 = no limit.
  delivery_window(std::size_t max_inflight, std::size_t max_queued,
                  std::size_t max_queued_bytes = 0)
      : max_inflight_(max_inflight ? max_inflight : 1),
        max_queued_(max_queued),
        max_queued_bytes_(max_queued_bytes) {}

  // A QoS 1 delivery (m->seq set). Returns true when it may be sent now; otherwise it
  // waits (and the oldest waiting message may have been dropped: see dropped()).
  // `dropped`, when given, receives the messages dropped to make room (count or bytes).
  // `released`: a QoS 2 delivery restored in that state. `from`: who offers it (see
  // origin), which says whether its next sending is a re-delivery.
  enum class origin : std::uint8_t {
    live,      // an online client's: the caller sends it now when it fits
    offline,   // an offline session's: sent on resume, the first time
    restored,  // from the store after a restart: it may have gone out before the crash
  };
  bool offer(message_ptr m, std::int64_t now_ms, std::vector<message_ptr>* dropped = nullptr,
             std::uint8_t qos = 1, bool released = false, origin from = origin::live);

  // The client acknowledged QoS 1 delivery `seq`; false when no QoS 1 message in flight has
  // it (a duplicate or stray acknowledgement, harmless). Waiting messages that now fit are
  // moved into flight: collect them with take_ready().
  bool ack(std::uint64_t seq, std::int64_t now_ms);
  // QoS 2 `rec`: the in-flight QoS 2 delivery `seq` is released (re-stamped: its `rel` is
  // due after retry_ms). Returns true when it was released now, false when it was already
  // or is not in flight.
  bool release(std::uint64_t seq, std::int64_t now_ms);
  // QoS 2 `comp`: takes out the released delivery `seq`, as ack() does; false when none.
  bool complete(std::uint64_t seq, std::int64_t now_ms);
  // Takes out in-flight delivery `seq` whatever its state (it will never be delivered: it
  // expired); false when none.
  bool discard(std::uint64_t seq, std::int64_t now_ms);

  // Messages admitted into flight by ack(), in order, to send now.
  void take_ready(std::vector<entry>& out);

  // In-flight messages unacknowledged for `retry_ms` or more: re-stamped with `now_ms`,
  // flagged dup, appended to `out` in order (released ones: their `rel` is due).
  void take_due(std::int64_t now_ms, std::int64_t retry_ms, std::vector<entry>& out);

  // Every in-flight message, re-stamped, flagged dup when it was sent before: a client
  // resuming its session gets again what it had not acknowledged, and for the first time
  // what reached the session while it was away.
  void take_all(std::int64_t now_ms, std::vector<entry>& out);

  // Appends `other`'s in-flight and waiting messages (a resumed session's) after ours.
  void absorb(delivery_window& other);

  // When the oldest in-flight message falls due (nullopt: none in flight).
  std::optional<std::int64_t> next_due(std::int64_t retry_ms) const;

  // Every message held, in flight first (for a session that is dropped).
  void all(std::vector<message_ptr>& out) const;
  // Every message held that the client does not have for sure (all but the released QoS 2
  // ones), in order.
  void unacknowledged(std::vector<message_ptr>& out) const;

  std::size_t in_flight() const noexcept { return h_ ? h_->inflight.size() : 0; }
  std::size_t waiting() const noexcept { return h_ ? h_->queue.size() : 0; }
  std::size_t waiting_bytes() const noexcept { return h_ ? h_->queue_bytes : 0; }
  std::uint64_t dropped() const noexcept { return dropped_; }

 private:
  // boost's deque allocates nothing while empty (std::deque allocates a 512-byte block at
  // construction).
  using entries = boost::container::deque<entry>;
  struct held {
    entries inflight;  // in send order; acks usually come in order
    entries queue;
    std::vector<entry> ready;
    std::size_t queue_bytes = 0;
  };
  held& state();
  bool take_out(entries::iterator it, std::int64_t now_ms);
  entries::iterator find(std::uint64_t seq);

  std::size_t max_inflight_;
  std::size_t max_queued_;
  std::size_t max_queued_bytes_;
  std::uint64_t dropped_ = 0;
  // Made at the first QoS 1 or 2 delivery: most sessions never hold one, and an idle
  // connection's session should not carry the ~180 bytes of empty containers.
  std::unique_ptr<held> h_;
};

}  // namespace wsagent::core
