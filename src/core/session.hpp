#pragma once
// A client's session: who it is, what it may do, what it is subscribed to, and the sink
// through which the router hands it messages.
//
// Lifecycle: a transport connection creates the session when the client has authenticated,
// attaches it to the router, and detaches it before the connection goes away; after
// detach() returns no thread calls the sink again. A clean session ends there. A persistent
// one stays registered, subscribed and collecting QoS 1 messages until a new connection
// with its client id resumes it (attach moves its state into the new session object) or
// its expiry passes. Each field says what guards it; its subscriptions are the router's
// (subscription_index), not the session's.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include "common/mutex.hpp"
#include "core/acl.hpp"
#include "core/close_reason.hpp"
#include "core/delivery.hpp"
#include "core/message.hpp"

namespace wsagent::core {

// Implemented by the transport. Called from any thread: implementations hand the work to
// the thread that owns the connection and return at once.
class session_sink {
 public:
  virtual ~session_sink() = default;
  // `qos`: what this recipient gets it at, the lower of the publish's and the
  // subscription's (the higher subscription's when several filters matched).
  virtual void deliver(message_ptr msg, std::uint8_t qos) = 0;
  // Another connection took over this client id, or the agent wants the client gone: the
  // connection closes, saying why in its protocol's words.
  virtual void kick(close_reason why, std::string_view text) = 0;
};

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

// What a subscription asks for besides its filter: MQTT 5's subscription options (the
// native protocol sets the QoS only).
struct subscription_options {
  std::uint8_t qos = 0;
  bool no_local = false;             // not the messages this session published itself
  bool retain_as_published = false;  // live deliveries keep the publisher's retain flag
  std::uint32_t id = 0;              // MQTT 5 Subscription Identifier; 0: none

  subscription_options() = default;
  subscription_options(std::uint8_t q) : qos(q) {}  // NOLINT: a plain subscription at QoS q
  friend bool operator==(const subscription_options&, const subscription_options&) = default;
};

// How long a persistent session outlives its connection, and what the client asked for.
struct session_options {
  bool persistent = false;
  std::int64_t expiry_s = 0;  // persistent: kept this long after the connection ends
  // Start afresh (MQTT 5 clean start with a session expiry): a persistent session under the
  // same client id is dropped, not resumed.
  bool fresh = false;
  // Resume a persistent session under the same client id even though this one does not
  // outlive its connection (MQTT 5 Clean Start 0 with no Session Expiry Interval, 5.0
  // section 3.1.2.4): its subscriptions and QoS 1/2 messages are taken over, and the session
  // ends with this connection.
  bool resume = false;
  // Receives the messages sent `to` its client id whether or not it subscribed (the native
  // protocol's device messages); false: only through its subscriptions (MQTT).
  bool direct = false;
};

// A role, not a lock: whoever holds a router's routing lock (subscription_index::mutex())
// holds it, shared or exclusive alike. What every session's sink and the router's delivery
// path read is guarded by it, so clang's analysis can check the rule across objects.
class CAPABILITY("role") routing_role {};
extern routing_role routing;

class session : public std::enable_shared_from_this<session> {
 public:
  session(std::string client_id, std::string user, core::acl rights, session_sink* sink,
          session_options options = {}, std::size_t max_inflight = 32,
          std::size_t max_queued = 1000, std::size_t max_queued_bytes = 0)
      : client_id_(std::move(client_id)),
        user_(std::move(user)),
        acl_(std::move(rights)),
        options_(options),
        expiry_s_(options.expiry_s),
        sink_(sink),
        window_(max_inflight, max_queued, max_queued_bytes) {}

  // Read-only after construction: any thread.
  const std::string& client_id() const noexcept { return client_id_; }
  const std::string& user() const noexcept { return user_; }
  // The client's rights. Replaced only by router::set_rights (a refreshed token), on the
  // session's connection thread and with the routing lock held exclusive: that thread reads
  // them freely, every other thread with the routing lock held (the fan-out does).
  const core::acl& rights() const noexcept { return acl_; }
  const session_options& options() const noexcept { return options_; }
  bool persistent() const noexcept { return options_.persistent; }

  // A persistent session's expiry, seconds after its connection ends. Changed while it is
  // connected (MQTT 5 DISCONNECT, router::set_session_expiry); atomic: any thread reads it.
  std::int64_t expiry_s() const noexcept { return expiry_s_.load(std::memory_order_relaxed); }
  // Wall clock of the end of its last connection; 0 while connected. Written by the router
  // under the session registry's lock; atomic: any thread reads it.
  std::int64_t disconnected_ms() const noexcept {
    return disconnected_ms_.load(std::memory_order_relaxed);
  }

  // The connection's sink; null while a persistent session has no connection. Changed only
  // with the routing lock held exclusive (attach, detach), read with it held: after
  // router::detach() returns, no thread calls the old sink again.
  session_sink* sink() const noexcept REQUIRES_SHARED(routing) { return sink_; }

  // The session's own lock. Guards what follows: the QoS 1/2 window (its owner connection's
  // thread uses it while the session is online, publishers' threads while a persistent
  // session is offline), the QoS 2 incoming set and the successor. Taken after the routing
  // lock, never before it (docs/architecture.md, "Locks").
  common::mutex& mutex() const RETURN_CAPABILITY(mutex_) { return mutex_; }
  delivery_window& window() REQUIRES(mutex_) { return window_; }
  // QoS 2 publishes received from the client and not yet released by its `rel`: their
  // msgids. A publish whose msgid is here is not routed again.
  std::unordered_set<std::string, string_hash, std::equal_to<>>& incoming() REQUIRES(mutex_) {
    return incoming_;
  }
  // A newer session took this one's place (its window moved there): a delivery that reaches
  // this one now belongs to the successor (router::redeliver).
  // Or another node took its client id (router::evict): a delivery that reaches it is
  // dropped there, its queue being the new owner's.
  bool superseded() const REQUIRES(mutex_) { return successor_ != nullptr || evicted(); }
  const std::shared_ptr<session>& successor() const REQUIRES(mutex_) { return successor_; }
  bool evicted() const noexcept { return evicted_.load(std::memory_order_acquire); }

 private:
  friend class router;
  friend class subscription_index;
  friend class session_registry;
  std::string client_id_;
  std::string user_;
  core::acl acl_;  // see rights()
  session_options options_;
  std::atomic<std::int64_t> expiry_s_;
  std::atomic<std::int64_t> disconnected_ms_{0};
  session_sink* sink_ GUARDED_BY(routing);
  mutable common::mutex mutex_;
  // Set once, by router::evict, under mutex_; read by any thread without it (forget() runs
  // with and without the session's lock).
  std::atomic<bool> evicted_{false};
  delivery_window window_ GUARDED_BY(mutex_);
  std::unordered_set<std::string, string_hash, std::equal_to<>> incoming_ GUARDED_BY(mutex_);
  // Set by the router when a newer session took this one's place (takeover or resume).
  // Held, not weak: a chain A -> B -> C must not break when B's connection is gone first
  // while A's still hands deliveries back (it lives no longer than A's connection).
  std::shared_ptr<session> successor_ GUARDED_BY(mutex_);
};

}  // namespace wsagent::core
