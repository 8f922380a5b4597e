#pragma once
// The durable store: what the agent keeps across restarts (retained messages, persistent
// sessions with their subscriptions and queued messages, tag history, QoS 2 state), behind
// one interface. Implementations live in src/store: `memory` (nothing survives the process:
// tests, and users who want no disk) and `sqlite` (the default, on disk); Redis comes later.
//
// The core keeps the live state in memory and writes every change through the store; the
// store is read once, at start-up, by load(). A change is a list of operations applied in
// order; write() applies a batch atomically and returns when it is durable. The
// store_writer (store_writer.hpp) calls write() on a thread of its own with everything the
// I/O threads queued meanwhile: one transaction and one sync for many changes (group commit).
//
// A message kept for queues or histories is stored once under its id and referenced by
// them; the core drops it (drop_message) when the last reference goes. A retained message
// is stored whole under its tag.
//
// Thread-safety: load() and write() are called from one thread at a time (the store_writer's
// after start-up); implementations need no lock of their own.

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/message.hpp"
#include "core/session.hpp"

namespace wsagent::core {

struct stored_subscription {
  std::string filter;
  subscription_options options;
  friend bool operator==(const stored_subscription&, const stored_subscription&) = default;
};

struct stored_session {
  std::string client_id;
  std::int64_t expiry_s = 0;         // kept this long after the client disconnects
  std::int64_t disconnected_ms = 0;  // wall clock; 0 while connected
  std::vector<stored_subscription> subscriptions;
};

// A message waiting for, or in flight to, a persistent session.
struct queued_message {
  std::string client_id;
  std::uint64_t seq = 0;  // per session, increasing: the delivery order
  std::uint64_t message_id = 0;
  std::uint8_t qos = 1;
  // QoS 2: the client has it (its pubrec came): what is resent is the pubrel, not the message.
  bool sent = false;
};

struct history_entry {
  std::string tag;
  std::uint64_t offset = 0;  // per tag, increasing from 1
  std::uint64_t message_id = 0;
};

struct stored_message {
  std::uint64_t id = 0;  // assigned by the core, increasing
  message_ptr msg;
};

// An MQTT 5 will waiting for its delay (Will Delay Interval) after its persistent session's
// connection ended: published at wall time `due_ms` unless the client comes back first.
struct stored_will {
  std::string client_id;
  message_ptr will;
  bool retain = false;
  std::int64_t due_ms = 0;
};

namespace store_ops {
struct put_message {
  stored_message m;
};
struct drop_message {
  std::uint64_t id = 0;
};
struct put_retained {  // replaces the tag's retained message
  message_ptr msg;
};
struct clear_retained {
  std::string tag;
};
struct put_session {  // inserts or replaces, subscriptions included
  stored_session s;
};
struct drop_session {  // and its queue and QoS 2 state
  std::string client_id;
};
struct enqueue {
  queued_message q;
};
struct mark_sent {  // QoS 2: the queued message was received (pubrec)
  std::string client_id;
  std::uint64_t seq = 0;
};
struct dequeue {
  std::string client_id;
  std::uint64_t seq = 0;
};
struct append_history {
  history_entry e;
};
struct trim_history {  // drops the tag's entries below `below`
  std::string tag;
  std::uint64_t below = 0;
};
struct put_incoming {  // QoS 2: received from the client, not yet released
  std::string client_id;
  std::string msgid;
};
struct drop_incoming {
  std::string client_id;
  std::string msgid;
};
struct put_will {  // replaces the client's delayed will
  stored_will w;
};
struct drop_will {
  std::string client_id;
};
struct put_meta {  // a value of the agent's own, by key (the cluster's inbox position)
  std::string key;
  std::string value;
};
}  // namespace store_ops

using store_op =
    std::variant<store_ops::put_message, store_ops::drop_message, store_ops::put_retained,
                 store_ops::clear_retained, store_ops::put_session, store_ops::drop_session,
                 store_ops::enqueue, store_ops::mark_sent, store_ops::dequeue,
                 store_ops::append_history, store_ops::trim_history, store_ops::put_incoming,
                 store_ops::drop_incoming, store_ops::put_will, store_ops::drop_will,
                 store_ops::put_meta>;

// Everything a store holds, as load() returns it. Each list is in a fixed order: retained
// and sessions by tag and client id, the queue by client id then seq, the history by tag
// then offset, messages by id, incoming by client id then msgid, wills by client id.
struct store_snapshot {
  std::vector<message_ptr> retained;
  std::vector<stored_session> sessions;
  std::vector<queued_message> queue;
  std::vector<history_entry> history;
  std::vector<stored_message> messages;
  std::vector<std::pair<std::string, std::string>> incoming;  // client id, msgid
  std::vector<stored_will> wills;                             // by client id
  std::vector<std::pair<std::string, std::string>> meta;      // put_meta's, by key
};

// One client's persistent state, as load() holds it for that client alone.
struct stored_client {
  stored_session session;
  std::vector<queued_message> queue;     // by seq
  std::vector<stored_message> messages;  // those its queue refers to, by id
  std::vector<std::string> incoming;     // QoS 2 msgids received, not yet released
  std::optional<stored_will> will;
};

// A store that cannot be opened, read or written: the message names the file and the cause.
class store_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class store {
 public:
  virtual ~store() = default;
  virtual const char* kind() const noexcept = 0;  // "memory", "sqlite"
  // Everything stored. Throws store_error.
  virtual store_snapshot load() = 0;
  // Applies `batch` in order, all or nothing; durable when it returns. Throws store_error
  // (and then none of the batch is applied).
  virtual void write(std::span<const store_op> batch) = 0;

  // The reads a store that several agents share needs (issue 14: a client connects to any
  // node, whose memory does not hold its session; a subscription on a node finds the
  // retained messages another node wrote). The embedded stores answer them from what they
  // hold; the core reads them once at start-up today. Throw store_error.
  // One client's state; nullopt when it has no persistent session.
  virtual std::optional<stored_client> load_client(std::string_view client_id) = 0;
  // The retained messages of the tags `filter` (a valid filter) matches, by tag.
  virtual std::vector<message_ptr> load_retained(std::string_view filter) = 0;
};

}  // namespace wsagent::core
