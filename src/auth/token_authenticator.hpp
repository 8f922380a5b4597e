#pragma once
// Static tokens: each one a secret that stands for a client (or lets it choose its id), with
// the rights of its roles. Tokens are kept only as SHA-256 digests and looked up by digest,
// so the comparison time does not depend on how much of a guess was right. The file format
// that declares them is in token_file.hpp.

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/auth.hpp"

namespace wsagent::auth {

struct token_entry {
  std::string sha256_hex;  // lowercase hex of SHA-256(token)
  std::string client_id;   // "" when the client chooses its id
  std::string user;
  std::shared_ptr<const core::grants> rights;
};

class token_authenticator final : public core::authenticator {
 public:
  // `anonymous`: the rights of a client that presents no token (auth.anonymous_role); null:
  // such a client is refused.
  explicit token_authenticator(std::vector<token_entry> entries,
                               std::shared_ptr<const core::grants> anonymous = nullptr);
  // Answers at once.
  void authenticate(const core::auth_request& r, core::auth_done done) const override;
  core::auth_result check(std::string_view token) const;
  bool open() const noexcept override { return false; }
  bool owned_client_id(std::string_view client_id) const noexcept override;
  // "token removed" when the token is no longer in the configuration.
  std::string revoked(const core::credential& c) const override;
  std::size_t size() const noexcept { return by_digest_.size(); }

 private:
  std::unordered_map<std::string, token_entry> by_digest_;
  std::unordered_set<std::string> owned_ids_;
  std::shared_ptr<const core::grants> anonymous_;
};

std::string sha256_hex(std::string_view data);

}  // namespace wsagent::auth
