#pragma once
// The [auth.jwt] table (docs/configuration.md, "JSON Web Tokens"): where the keys are and
// what the claims must say. The reader collects every problem with its file, line and key;
// load_jwt_keys() reads the key files it names.

#include <optional>
#include <string>
#include <vector>

#include "auth/jwt_authenticator.hpp"
#include "common/toml_read.hpp"

namespace wsagent::auth {

// One key of [[auth.jwt.key]]: a PEM file or an HMAC secret, pinned to `alg`.
struct jwt_key_config {
  std::string file;         // PEM: a public key, a certificate or a private key
  std::string secret;       // an HMAC secret, as text
  std::string secret_file;  // or the file that holds it (its bytes, a final newline dropped)
  std::string alg;
  std::string kid;
  int line = 0;
};

struct jwt_config {
  jwt_settings settings;
  std::string jwks_file;    // `keys`: a JWKS document
  std::string revocations;  // a revocation file (auth/revocation.hpp); "" none
  std::string jwks_url;     // https://…: keys fetched (auth/jwks_refresher.hpp); "" none
  std::string jwks_ca;      // PEM CA file for jwks_url's server; "" = the system's
  std::int64_t jwks_refresh_s = 300;
  std::int64_t jwks_refetch_min_s = 30;
  std::vector<jwt_key_config> keys;
  std::string source;  // the file that declared it, for messages
  int line = 0;
};

// Reads the table at `node` (declared in `path` at `line`); relative paths are taken from
// `path`'s directory.
std::optional<jwt_config> read_jwt_config(const toml::node& node, const std::string& path, int line,
                                          std::vector<common::config_problem>& problems);

// The keys `config` names, read now. Every key that cannot be read or used is a problem
// (its file and what is wrong); the rest are returned.
jwt_key_store::key_set load_jwt_keys(const jwt_config& config, std::vector<std::string>& problems);

}  // namespace wsagent::auth
