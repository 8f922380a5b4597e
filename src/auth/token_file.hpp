#pragma once
// The token file format: [[tokens]] entries and [roles.<name>] tables, in a tokens file
// (auth.tokens_file, re-read on SIGHUP) or in the main configuration file's [auth] section
// ([[auth.tokens]], [auth.roles.<name>]); docs/configuration.md, "Tokens and roles". The
// reader collects every problem with its file, line and key; make_authenticator() turns
// what it read into the authenticator the agent runs with.

#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/toml_read.hpp"
#include "core/auth.hpp"

namespace wsagent::auth {

struct role_config {
  std::vector<std::string> publish;         // tag filters, with %c (client id) and %u (user)
  std::vector<std::string> subscribe;       // tag filters, with %c and %u
  std::vector<std::string> deny_publish;    // checked before the allow lists
  std::vector<std::string> deny_subscribe;  // checked before the allow lists, and per delivery
};

struct token_config {
  std::string token;         // the secret itself, or
  std::string token_sha256;  // its SHA-256, lowercase hex (preferred in files)
  std::string identity;      // client id this token stands for ("" = client chooses)
  std::string user;          // %u in ACL patterns ("" = identity)
  std::vector<std::string> roles;
  int line = 0;  // where it was declared, for messages
};

// The tokens and roles of every file read, in the order they were declared.
struct token_set {
  std::vector<token_config> tokens;
  std::map<std::string, role_config> roles;
};

class token_file_reader {
 public:
  explicit token_file_reader(std::vector<common::config_problem>& problems) : problems_(problems) {}

  // An array of token tables at `key` ("tokens", "auth.tokens"), declared at `line`.
  void read_tokens(const toml::node& node, const std::string& path, int line,
                   const std::string& key);
  // A table of roles at `key` ("roles", "auth.roles").
  void read_roles(const toml::node& node, const std::string& path, int line,
                  const std::string& key);
  // A whole tokens file: nothing but tokens and roles.
  void read_file(const toml::table& root, const std::string& path);

  // The checks across files (a token given twice, a role nobody defined, the anonymous role
  // `anonymous_role`, set at `anonymous_source`:`anonymous_line`), then what was read.
  token_set finish(std::string_view anonymous_role, const std::string& anonymous_source,
                   int anonymous_line);

 private:
  struct located_token {
    token_config token;
    std::string source;
    std::string key;  // "auth.tokens" or "tokens"
  };
  struct origin {
    std::string source;
    int line = 0;
  };
  void problem(const std::string& source, int line, std::string key, std::string message) {
    problems_.push_back({source, line, std::move(key), std::move(message)});
  }

  std::vector<common::config_problem>& problems_;
  std::vector<located_token> tokens_;
  std::map<std::string, role_config> roles_;
  std::map<std::string, origin> role_origins_;
};

// What is wrong with an ACL pattern (a tag filter with %c and %u), or "".
std::string check_pattern(std::string_view pattern);

// The rights of each role of `set`, by name.
std::map<std::string, std::shared_ptr<const core::grants>, std::less<>> role_grants(
    const token_set& set);

// Open mode (with the anonymous role's rights, when one is named) for a set without tokens,
// unless `closed` (another authenticator, JWT, stands in front: then an empty set refuses
// every token); else the tokens', with `anonymous_role`'s rights for clients that present
// none.
std::shared_ptr<const core::authenticator> make_authenticator(const token_set& set,
                                                              std::string_view anonymous_role,
                                                              bool closed = false);

}  // namespace wsagent::auth
