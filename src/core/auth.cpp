#include "core/auth.hpp"

#include <openssl/evp.h>

namespace wsagent::core {

std::string sha256_hex(std::string_view data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), digest, &len, EVP_sha256(), nullptr);
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(len * 2);
  for (unsigned i = 0; i < len; ++i) {
    out.push_back(hex[digest[i] >> 4]);
    out.push_back(hex[digest[i] & 15]);
  }
  return out;
}

open_authenticator::open_authenticator(std::shared_ptr<const grants> anonymous)
    : all_(std::move(anonymous)) {
  if (all_) return;
  auto g = std::make_shared<grants>();
  g->allow_all = true;
  all_ = std::move(g);
}

auth_result open_authenticator::authenticate(std::string_view) const {
  return {true, identity{"", "", all_}, {}};
}

token_authenticator::token_authenticator(std::vector<token_entry> entries,
                                         std::shared_ptr<const grants> anonymous)
    : anonymous_(std::move(anonymous)) {
  for (auto& e : entries) {
    if (!e.client_id.empty()) owned_ids_.insert(e.client_id);
    by_digest_.emplace(e.sha256_hex, std::move(e));
  }
}

bool token_authenticator::owned_client_id(std::string_view client_id) const noexcept {
  return owned_ids_.contains(std::string(client_id));
}

auth_result token_authenticator::authenticate(std::string_view token) const {
  if (token.empty()) {
    if (anonymous_) return {true, identity{"", "", anonymous_}, {}};
    return {false, {}, "no token"};
  }
  auto it = by_digest_.find(sha256_hex(token));
  if (it == by_digest_.end()) return {false, {}, "unknown token"};
  const auto& e = it->second;
  return {true, identity{e.client_id, e.user.empty() ? e.client_id : e.user, e.rights}, {}};
}

}  // namespace wsagent::core
