#pragma once
// A client's session: who it is, what it may do, what it is subscribed to, and the sink
// through which the router hands it messages.
//
// Lifecycle: a transport connection creates the session when the client has authenticated,
// attaches it to the router, and detaches it before the connection goes away; after
// detach() returns no thread calls the sink again. The subscription set is guarded by the
// router's lock (see router.hpp); the rest is written before attach and read-only after.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/acl.hpp"
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
  // Another connection took over this client id, or the agent wants the client gone.
  virtual void kick(std::uint16_t close_code, std::string_view reason) = 0;
};

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept {
    return std::hash<std::string_view>{}(s);
  }
};

class session {
 public:
  session(std::string client_id, std::string user, core::acl rights, session_sink* sink)
      : client_id_(std::move(client_id)),
        user_(std::move(user)),
        acl_(std::move(rights)),
        sink_(sink) {}

  const std::string& client_id() const noexcept { return client_id_; }
  const std::string& user() const noexcept { return user_; }
  const core::acl& rights() const noexcept { return acl_; }
  session_sink* sink() const noexcept { return sink_; }

  // Guarded by the router's lock.
  std::unordered_map<std::string, std::uint8_t, string_hash, std::equal_to<>> subscriptions;

 private:
  std::string client_id_;
  std::string user_;
  core::acl acl_;
  session_sink* sink_;
};

}  // namespace wsagent::core
