#pragma once
// The JWT authenticator: a token that looks like a JWT (auth/jwt.hpp, looks_like_jwt) is
// verified against the configured keys and its claims checked; any other token goes to the
// authenticator beside it (the static tokens, or open mode). docs/configuration.md, "JSON
// Web Tokens", and docs/operations.md, "Tokens".
//
// Claims: `exp` (required unless configured otherwise), `nbf`, `iat` (with a maximum age
// when configured), `iss` and `aud` compared exactly, all with a leeway. The identity (client
// id and user) comes from configured claims; the rights from the roles a claim names (mapped
// by the configuration's roles) and from inline patterns in an `acl` claim, with %c / %u
// substituted as the roles' are.
//
// The keys live in a jwt_key_store shared with whatever refreshes them (a reload, a changed
// JWKS file); the authenticator reads the current set on every token.
//
// Thread rule: immutable after construction but for the key store, which is under its mutex.

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "auth/jwt.hpp"
#include "auth/revocation.hpp"
#include "common/mutex.hpp"
#include "core/auth.hpp"

namespace wsagent::auth {

struct jwt_settings {
  std::string issuer;    // `iss` must equal it ("" not checked)
  std::string audience;  // `aud` (a string, or an array) must hold it ("" not checked)
  std::string client_id_claim = "sub";  // the client id the token stands for
  std::string user_claim;               // %u; "" = the client id
  std::string roles_claim = "roles";    // an array of role names (or one name)
  std::string acl_claim = "acl";        // {publish, subscribe, deny_publish, deny_subscribe}
  bool require_exp = true;
  std::int64_t max_age_s = 0;  // `iat` at most this old (0: not checked)
  std::int64_t leeway_s = 30;  // clock skew allowed on exp, nbf and iat
  // A token whose claim of this name is true is used once (its jti is remembered until it
  // expires; auth/revocation.hpp); "" none.
  std::string one_time_claim = "once";
};

class jwt_key_store {
 public:
  using key_set = std::vector<jwt_key>;
  explicit jwt_key_store(key_set keys = {})
      : keys_(std::make_shared<const key_set>(std::move(keys))) {}
  std::shared_ptr<const key_set> get() const EXCLUDES(mutex_) {
    common::lock lock(mutex_);
    return keys_;
  }
  void set(key_set keys) EXCLUDES(mutex_) {
    auto fresh = std::make_shared<const key_set>(std::move(keys));
    common::lock lock(mutex_);
    keys_ = std::move(fresh);
  }

 private:
  mutable common::mutex mutex_;
  std::shared_ptr<const key_set> keys_ GUARDED_BY(mutex_);
};

// What a verified token says, beyond the identity (revocation reads it).
struct jwt_claims {
  std::string subject, issuer, id;  // sub, iss, jti
  std::int64_t expires_s = 0, not_before_s = 0, issued_s = 0;
};

class jwt_authenticator final : public core::authenticator {
 public:
  using clock = std::function<std::int64_t()>;  // wall clock, ms since the epoch
  // `roles`: the configuration's, by name; `next`: what checks tokens that are not JWTs;
  // `revocations`: revoked tokens and used one-time ones (null: none are).
  jwt_authenticator(jwt_settings settings, std::shared_ptr<const jwt_key_store> keys,
                    std::map<std::string, std::shared_ptr<const core::grants>, std::less<>> roles,
                    std::shared_ptr<const core::authenticator> next, clock now = {},
                    std::shared_ptr<revocation_list> revocations = nullptr);

  void authenticate(const core::auth_request& r, core::auth_done done) const override;
  bool open() const noexcept override { return false; }
  bool owned_client_id(std::string_view client_id) const noexcept override {
    return next_ && next_->owned_client_id(client_id);
  }
  // A JWT's credential: revoked by the revocation list; any other: the next one's answer.
  std::string revoked(const core::credential& c) const override;

  // Called (on the asking thread) when a token names a kid no key has: a JWKS URL's keys
  // may have rotated. Set before the authenticator is shared.
  void on_unknown_kid(std::function<void()> hook) { on_unknown_kid_ = std::move(hook); }

  // The answer for a JWT (`claims`, when given, gets what it said).
  core::auth_result check(std::string_view token, jwt_claims* claims = nullptr) const;

 private:
  const jwt_key* find_key(const jwt_key_store::key_set& keys, const jwt_parts& parts,
                          std::string& error) const;

  jwt_settings settings_;
  std::shared_ptr<const jwt_key_store> keys_;
  std::map<std::string, std::shared_ptr<const core::grants>, std::less<>> roles_;
  std::shared_ptr<const core::authenticator> next_;
  clock now_;
  std::shared_ptr<revocation_list> revocations_;
  std::function<void()> on_unknown_kid_;
};

}  // namespace wsagent::auth
