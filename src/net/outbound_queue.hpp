#pragma once
// The write queue of one connection: what waits to be written, bounded in bytes, and how it
// leaves in one gather write. Pure: no socket, no Asio; the connection (net/connection)
// drives it, and tests/unit/outbound_queue_test.cpp drives it without one.
//
// Items are whole frames (a WebSocket frame, an MQTT packet): the connection's own bytes
// (replies, acknowledgements), bytes shared with every other recipient of a message (a QoS 0
// delivery encoded once), or both (a QoS 1 PUBLISH: this connection's header, the message's
// payload). QoS 0 deliveries are droppable: past `max_bytes` of them waiting, the oldest
// waiting ones are dropped (never one being written), as brokers bound a client's pending
// bytes; the rest never are. A write takes up to 64 buffers and 256 KiB from the front:
// frames up to 1 KiB are copied into one staging buffer (many small messages leave as one
// contiguous buffer), larger ones are written from where they lie.
//
// Not thread-safe: its connection's thread owns it.

#include <boost/container/deque.hpp>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/message.hpp"

namespace wsagent::net {

class outbound_queue {
 public:
  struct item {
    core::message_ptr msg;                // keeps `shared` alive
    const std::string* shared = nullptr;  // bytes shared with other recipients
    std::string own;                      // bytes of this connection only
    bool droppable = false;               // a QoS 0 delivery: may be dropped past the bound
    bool tail = false;                    // `own`, then `*shared` (a header of our own)
    std::string_view first() const { return tail || !shared ? own : *shared; }
    std::string_view second() const {
      return tail ? std::string_view(*shared) : std::string_view();
    }
    std::size_t size() const { return first().size() + second().size(); }
  };

  // One buffer of a gather write.
  struct buffer {
    const char* data;
    std::size_t size;
  };

  static constexpr std::size_t max_gather = 64;  // buffers per write: Asio's limit
  static constexpr std::size_t max_gather_bytes = 256 * 1024;
  static constexpr std::size_t copy_limit = 1024;  // parts up to this size are staged

  // `max_bytes`: droppable bytes that may wait (limits.outbound_queue_bytes); `max_items`:
  // droppable items that may wait, 0 = no count bound (limits.outbound_queue).
  explicit outbound_queue(std::size_t max_bytes, std::size_t max_items = 0)
      : max_bytes_(max_bytes), max_items_(max_items) {}

  // Queues `it`. A droppable item past the bounds first drops the oldest waiting droppable
  // ones (how many: the result; the newest always stays, even alone over the bound).
  std::size_t push(item it);
  // Puts `it` in front of what waits (after what is being written): a protocol's last words.
  void push_front(item it);

  bool empty() const noexcept { return items_.empty(); }
  std::size_t size() const noexcept { return items_.size(); }
  bool writing() const noexcept { return in_flight_ > 0; }
  // Droppable bytes and items waiting (not being written).
  std::size_t waiting_bytes() const noexcept { return waiting_bytes_; }
  std::size_t waiting_messages() const noexcept { return waiting_messages_; }
  // Items the client waits for that are not droppable (replies, QoS 1/2 deliveries), not
  // being written: the connection stops reading past a number of them (backpressure).
  std::size_t pending_replies() const noexcept {
    return items_.size() - in_flight_ - waiting_messages_;
  }
  // At (or past) a bound: what comes next drops the oldest waiting message.
  bool full() const noexcept;

  // The next write: the buffers of as many items from the front as fit, valid until
  // written(). Empty when nothing waits or a write is in progress.
  std::span<const buffer> gather();
  // Those items left; returns how many (and, into `bytes`, their size).
  std::size_t written(std::size_t* bytes = nullptr);
  // The connection is closing: waiting droppable items are not worth waiting for.
  void drop_waiting_messages();
  // After a quiet spell: gives back what a burst grew (an idle connection holds no block).
  void shrink();

 private:
  void drop_oldest();

  // boost's deque allocates nothing while empty and takes its block size as an option: 64
  // items a block, 8x fewer allocations than libstdc++'s 512-byte blocks on fan-out.
  using items =
      boost::container::deque<item, void,
                              boost::container::deque_options_t<boost::container::block_size<64u>>>;
  items items_;
  std::size_t in_flight_ = 0;  // items at the front being written
  std::size_t max_bytes_;
  std::size_t max_items_;
  std::size_t waiting_bytes_ = 0;
  std::size_t waiting_messages_ = 0;
  std::vector<buffer> gather_;
  std::string stage_;  // small parts of the write in progress, copied
};

}  // namespace wsagent::net
