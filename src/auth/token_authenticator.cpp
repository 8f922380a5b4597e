#include "auth/token_authenticator.hpp"

#include <openssl/evp.h>

#include "common/text.hpp"

namespace wsagent::auth {

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  return common::hex(std::string_view(reinterpret_cast<const char*>(digest), len));
}

token_authenticator::token_authenticator(std::vector<token_entry> entries,
                                         std::shared_ptr<const core::grants> anonymous)
    : anonymous_(std::move(anonymous)) {
  for (auto& e : entries) {
    if (!e.client_id.empty()) owned_ids_.insert(e.client_id);
    by_digest_.emplace(e.sha256_hex, std::move(e));
  }
}

bool token_authenticator::owned_client_id(std::string_view client_id) const noexcept {
  return owned_ids_.contains(std::string(client_id));
}

core::auth_result token_authenticator::check(std::string_view token) const {
  if (token.empty()) {
    if (anonymous_) return {true, core::identity{"", "", anonymous_, {}, {}}, 0, {}};
    return {false, {}, 0, "no token"};
  }
  auto it = by_digest_.find(sha256_hex(token));
  if (it == by_digest_.end()) return {false, {}, 0, "unknown token"};
  const auto& e = it->second;
  core::auth_result r{
      true,
      core::identity{e.client_id, e.user.empty() ? e.client_id : e.user, e.rights, {}, {}},
      0,
      {}};
  r.who.from.token_digest = e.sha256_hex;
  return r;
}

std::string token_authenticator::revoked(const core::credential& c) const {
  if (c.token_digest.empty() || by_digest_.contains(c.token_digest)) return {};
  return "token removed from the configuration";
}

void token_authenticator::authenticate(const core::auth_request& r, core::auth_done done) const {
  done(check(r.token));
}

}  // namespace wsagent::auth
