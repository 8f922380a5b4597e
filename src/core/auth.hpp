#pragma once
// Authentication: what a connecting client presents in, an identity (or a refusal) out. The
// authenticator is an interface, the auth seam: the agent ships open mode (here) and static
// tokens (src/auth/token_authenticator.hpp); JWT and external services (later issues)
// implement the same interface, and may answer later, from another thread.
//
// Authenticators are immutable once built. A reload (SIGHUP) builds a new one and swaps it
// into the auth_holder; connections already authenticated keep what they were granted.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/mutex.hpp"
#include "core/acl.hpp"

namespace wsagent::core {

// A client certificate the TLS handshake verified (net/tls_context.hpp reads it).
struct certificate_identity {
  std::string subject;  // RFC 2253, "CN=dev1,O=Plant"
  std::string common_name;
  std::vector<std::string> dns, uri, email;  // subject alternative names
  std::string fingerprint;                   // SHA-256 of the DER, lowercase hex
};

// What a client presents. The views are valid during authenticate() only: an authenticator
// that answers later copies what it keeps.
struct auth_request {
  std::string_view token;      // the native protocol's token; MQTT's password, else user name
  std::string_view client_id;  // the client id it asks for ("" none)
  std::string_view remote;     // "address:port"
  std::string_view protocol;   // "ws" (the native protocol), "mqtt", "mqtt-ws"
  std::string_view username;   // MQTT's CONNECT User Name ("" none)
  // The client certificate the TLS handshake verified; null when there is none.
  const certificate_identity* certificate = nullptr;
};

// What an identity was granted on, kept by the connection so that a reload or a revocation
// can ask whether it still stands (authenticator::revoked).
struct credential {
  std::string token_digest;   // a static token's SHA-256, lowercase hex ("" none)
  bool jwt = false;           // a JWT's, with what revocation reads:
  std::string jwt_id;         // jti ("" none)
  std::string subject;        // sub
  std::int64_t issued_s = 0;  // iat (0 none)
};

struct identity {
  std::string client_id;  // "" when the token does not fix one: the client chooses
  std::string user;       // %u in patterns
  std::shared_ptr<const grants> rights;
  std::string via;  // for the audit log: the credential beside the token ("certificate …")
  credential from;
};

struct auth_result {
  bool ok = false;
  identity who;
  // Wall clock (ms since the epoch) after which the identity is no longer valid (a JWT's
  // exp): the connection is then closed (close_reason::auth_expired) unless the client
  // authenticated again meanwhile; 0: never.
  std::int64_t expires_ms = 0;
  std::string reason;  // for the audit log when !ok
  // Refused without a look at the credential: the address failed too often (auth_throttle).
  bool throttled = false;
  // Refused without a look at the credential: too many authentications at once (admission);
  // the client may come back after `retry_ms`.
  bool busy = false;
  std::int64_t retry_ms = 0;
};

using auth_done = std::function<void(auth_result)>;

class authenticator {
 public:
  virtual ~authenticator() = default;
  // Calls `done` exactly once with the answer: before returning (the built-in
  // authenticators), or later, from any thread (one that asks a service). The adapters hold
  // the client's input until it comes (protocol/session_adapter.hpp), and `done` holds the
  // connection: one that answers later answers (or drops its questions) before the agent's
  // server is destroyed, that is, it is stopped before serve() returns.
  virtual void authenticate(const auth_request& r, auth_done done) const = 0;
  // True when connections need no token at all.
  virtual bool open() const noexcept = 0;
  // True when `client_id` is the fixed identity of some token: only that token may use it,
  // so no other client can take its session over.
  virtual bool owned_client_id(std::string_view client_id) const noexcept {
    (void)client_id;
    return false;
  }
  // Why an identity granted on `c` (by this authenticator or an earlier one) no longer
  // stands: its static token is gone from the configuration, its JWT was revoked; "" when
  // it still does. Asked of every live connection after a reload or a revocation.
  virtual std::string revoked(const credential& c) const {
    (void)c;
    return {};
  }
};

// Everyone is welcome, with every right but publishing to reserved tags, or with the rights
// of `anonymous` (auth.anonymous_role) when given.
class open_authenticator final : public authenticator {
 public:
  explicit open_authenticator(std::shared_ptr<const grants> anonymous = nullptr);
  void authenticate(const auth_request& r, auth_done done) const override;
  bool open() const noexcept override { return true; }

 private:
  std::shared_ptr<const grants> all_;
};

// The current authenticator, swappable at run time.
class auth_holder {
 public:
  explicit auth_holder(std::shared_ptr<const authenticator> a) : current_(std::move(a)) {}
  std::shared_ptr<const authenticator> get() const EXCLUDES(mutex_) {
    common::lock lock(mutex_);
    return current_;
  }
  void set(std::shared_ptr<const authenticator> a) EXCLUDES(mutex_) {
    common::lock lock(mutex_);
    current_ = std::move(a);
  }

 private:
  mutable common::mutex mutex_;
  std::shared_ptr<const authenticator> current_ GUARDED_BY(mutex_);
};

}  // namespace wsagent::core
