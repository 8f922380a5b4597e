#pragma once
// Authentication: a token in, an identity (or a refusal) out. The authenticator is an
// interface so later issues can add JWT or an external service; this file has the two the
// agent ships with: open (no tokens configured, loopback only) and static tokens.
//
// Authenticators are immutable once built. A reload (SIGHUP) builds a new one and swaps it
// into the auth_holder; connections already authenticated keep what they were granted.

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/mutex.hpp"
#include "core/acl.hpp"

namespace wsagent::core {

struct identity {
  std::string client_id;  // "" when the token does not fix one: the client chooses
  std::string user;       // %u in patterns
  std::shared_ptr<const grants> rights;
};

struct auth_result {
  bool ok = false;
  identity who;
  std::string reason;  // for the audit log when !ok
};

class authenticator {
 public:
  virtual ~authenticator() = default;
  virtual auth_result authenticate(std::string_view token) const = 0;
  // True when connections need no token at all.
  virtual bool open() const noexcept = 0;
  // True when `client_id` is the fixed identity of some token: only that token may use it,
  // so no other client can take its session over.
  virtual bool owned_client_id(std::string_view client_id) const noexcept {
    (void)client_id;
    return false;
  }
};

// Everyone is welcome, with every right but publishing to reserved tags, or with the rights
// of `anonymous` (auth.anonymous_role) when given.
class open_authenticator final : public authenticator {
 public:
  explicit open_authenticator(std::shared_ptr<const grants> anonymous = nullptr);
  auth_result authenticate(std::string_view token) const override;
  bool open() const noexcept override { return true; }

 private:
  std::shared_ptr<const grants> all_;
};

struct token_entry {
  std::string sha256_hex;  // lowercase hex of SHA-256(token)
  std::string client_id;
  std::string user;
  std::shared_ptr<const grants> rights;
};

// Tokens are kept only as SHA-256 digests and looked up by digest, so the comparison time
// does not depend on how much of a guess was right.
class token_authenticator final : public authenticator {
 public:
  // `anonymous`: the rights of a client that presents no token (auth.anonymous_role); null:
  // such a client is refused.
  explicit token_authenticator(std::vector<token_entry> entries,
                               std::shared_ptr<const grants> anonymous = nullptr);
  auth_result authenticate(std::string_view token) const override;
  bool open() const noexcept override { return false; }
  bool owned_client_id(std::string_view client_id) const noexcept override;
  std::size_t size() const noexcept { return by_digest_.size(); }

 private:
  std::unordered_map<std::string, token_entry> by_digest_;
  std::unordered_set<std::string> owned_ids_;
  std::shared_ptr<const grants> anonymous_;
};

std::string sha256_hex(std::string_view data);

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
