#include "auth/token_file.hpp"

#include <algorithm>

#include "auth/token_authenticator.hpp"

namespace wsagent::auth {

using common::did_you_mean;
using common::in_quotes;
using common::line_of;
using common::type_of;

namespace {

bool is_sha256_hex(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char ch) {
           return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
         });
}

}  // namespace

std::string check_pattern(std::string_view pattern) {
  if (pattern.empty()) return "an empty pattern matches nothing";
  if (pattern.find('\0') != std::string_view::npos) return "a pattern may not contain NUL";
  std::string p;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size() &&
        (pattern[i + 1] == 'c' || pattern[i + 1] == 'u')) {
      p += "x";
      ++i;
    } else {
      p.push_back(pattern[i]);
    }
  }
  std::size_t start = 0;
  while (true) {
    auto slash = p.find('/', start);
    std::string_view level = std::string_view(p).substr(
        start, slash == std::string::npos ? std::string::npos : slash - start);
    bool last = slash == std::string::npos;
    if (level.find_first_of("+#") != std::string_view::npos) {
      if (level.size() != 1) return in_quotes(pattern) + ": '+' and '#' must be a whole level";
      if (level == "#" && !last) return in_quotes(pattern) + ": '#' must be the last level";
    }
    if (last) break;
    start = slash + 1;
  }
  return {};
}

void token_file_reader::read_file(const toml::table& root, const std::string& path) {
  for (auto&& [k, node] : root) {
    std::string name(k.str());
    if (name == "tokens")
      read_tokens(node, path, line_of(k, node), "tokens");
    else if (name == "roles")
      read_roles(node, path, line_of(k, node), "roles");
    else
      problem(path, line_of(k, node), name,
              "unknown key: a tokens file holds only [[tokens]] and [roles.<name>]" +
                  did_you_mean(name, {"tokens", "roles"}));
  }
}

void token_file_reader::read_tokens(const toml::node& node, const std::string& path, int line,
                                    const std::string& key) {
  auto* array = node.as_array();
  if (!array) {
    problem(path, line, key,
            "expected an array of tables ([[" + key + "]] entries), got " + type_of(node));
    return;
  }
  for (const auto& entry : *array) {
    int entry_line = line_of(entry) > 0 ? line_of(entry) : line;
    auto* table = entry.as_table();
    if (!table) {
      problem(path, entry_line, key,
              "expected a table ([[" + key + "]] entry), got " + type_of(entry));
      continue;
    }
    located_token t{token_config{}, path, key};
    t.token.line = entry_line;
    bool has_token = false;
    bool has_sha256 = false;
    bool ok = true;
    for (auto&& field : *table) {
      // Named, not bound: clang 14 cannot capture structured bindings in the lambdas below.
      const auto& k = field.first;
      auto& v = field.second;
      std::string name(k.str());
      std::string full = key + "." + name;
      int kl = line_of(k, v);
      auto text = [&](std::string& out) {
        if (auto* s = v.as_string()) {
          out = s->get();
          return true;
        }
        problem(path, kl, full, "expected a string, got " + type_of(v));
        ok = false;
        return false;
      };
      if (name == "token") {
        has_token = true;
        if (text(t.token.token) && t.token.token.empty()) {
          problem(path, kl, full, "must not be empty");
          ok = false;
        }
      } else if (name == "token_sha256") {
        has_sha256 = true;
        if (text(t.token.token_sha256) && !is_sha256_hex(t.token.token_sha256)) {
          problem(path, kl, full, "must be a SHA-256 digest: 64 lowercase hexadecimal characters");
          ok = false;
        }
      } else if (name == "identity") {
        text(t.token.identity);
      } else if (name == "user") {
        text(t.token.user);
      } else if (name == "roles") {
        if (!common::read_string_array(v, path, kl, full, t.token.roles, problems_)) ok = false;
      } else {
        problem(path, kl, full,
                "unknown key" +
                    did_you_mean(name, {"token", "token_sha256", "identity", "user", "roles"}));
        ok = false;
      }
    }
    if (has_token && has_sha256) {
      problem(path, entry_line, key, "give either token or token_sha256, not both");
      ok = false;
    } else if (!has_token && !has_sha256) {
      problem(path, entry_line, key, "needs a token or a token_sha256");
      ok = false;
    }
    if (ok) tokens_.push_back(std::move(t));  // a broken entry is left out of the checks
  }
}

void token_file_reader::read_roles(const toml::node& node, const std::string& path, int line,
                                   const std::string& key) {
  auto* table = node.as_table();
  if (!table) {
    problem(path, line, key,
            "expected a table of roles ([" + key + ".<name>]), got " + type_of(node));
    return;
  }
  for (auto&& [k, v] : *table) {
    std::string name(k.str());
    std::string full = key + "." + name;
    int role_line = line_of(k, v);
    auto* role = v.as_table();
    if (!role) {
      problem(path, role_line, full, "expected a table ([" + full + "]), got " + type_of(v));
      continue;
    }
    role_config rc;
    for (auto&& [k2, v2] : *role) {
      std::string field(k2.str());
      std::string field_key = full + "." + field;
      int field_line = line_of(k2, v2);
      std::vector<std::string>* target = field == "publish"          ? &rc.publish
                                         : field == "subscribe"      ? &rc.subscribe
                                         : field == "deny_publish"   ? &rc.deny_publish
                                         : field == "deny_subscribe" ? &rc.deny_subscribe
                                                                     : nullptr;
      if (!target) {
        problem(path, field_line, field_key,
                "unknown key" + did_you_mean(field, {"publish", "subscribe", "deny_publish",
                                                     "deny_subscribe"}));
        continue;
      }
      common::read_string_array(v2, path, field_line, field_key, *target, problems_);
      for (const auto& pattern : *target)
        if (auto bad = check_pattern(pattern); !bad.empty())
          problem(path, field_line, field_key, bad);
    }
    if (auto it = role_origins_.find(name); it != role_origins_.end()) {
      problem(path, role_line, full,
              "role " + in_quotes(name) + " is defined twice (also at " + it->second.source + ":" +
                  std::to_string(it->second.line) + ")");
      continue;
    }
    role_origins_[name] = origin{path, role_line};
    roles_[name] = std::move(rc);
  }
}

token_set token_file_reader::finish(std::string_view anonymous_role,
                                    const std::string& anonymous_source, int anonymous_line) {
  std::map<std::string, const located_token*> seen;
  for (const auto& t : tokens_) {
    const auto& tc = t.token;
    std::string id = tc.token.empty() ? "sha256:" + tc.token_sha256 : "plain:" + tc.token;
    auto [it, fresh] = seen.emplace(id, &t);
    if (!fresh)
      problem(t.source, tc.line, t.key,
              "duplicate token (the same one is at " + it->second->source + ":" +
                  std::to_string(it->second->token.line) + ")");
    for (const auto& r : tc.roles)
      if (!roles_.count(r))
        problem(t.source, tc.line, t.key + ".roles", "no role " + in_quotes(r) + " is defined");
  }
  if (!anonymous_role.empty() && !roles_.count(std::string(anonymous_role)))
    problem(anonymous_source, anonymous_line, "auth.anonymous_role",
            "no role " + in_quotes(anonymous_role) + " is defined");
  token_set out;
  for (auto& t : tokens_)
    out.tokens.push_back(std::move(t.token));
  out.roles = std::move(roles_);
  tokens_.clear();
  role_origins_.clear();
  return out;
}

std::map<std::string, std::shared_ptr<const core::grants>, std::less<>> role_grants(
    const token_set& set) {
  std::map<std::string, std::shared_ptr<const core::grants>, std::less<>> roles;
  for (const auto& [name, role] : set.roles) {
    auto g = std::make_shared<core::grants>();
    g->publish = role.publish;
    g->subscribe = role.subscribe;
    g->deny_publish = role.deny_publish;
    g->deny_subscribe = role.deny_subscribe;
    roles.emplace(name, std::move(g));
  }
  return roles;
}

std::shared_ptr<const core::authenticator> make_authenticator(const token_set& set,
                                                              std::string_view anonymous_role,
                                                              bool closed) {
  const auto roles = role_grants(set);
  std::shared_ptr<const core::grants> anonymous;
  if (auto it = roles.find(anonymous_role); it != roles.end()) anonymous = it->second;
  if (set.tokens.empty() && !closed) return std::make_shared<core::open_authenticator>(anonymous);
  std::vector<token_entry> entries;
  for (const auto& t : set.tokens) {
    auto g = std::make_shared<core::grants>();
    for (const auto& r : t.roles)
      if (auto it = roles.find(r); it != roles.end()) g->add(*it->second);
    entries.push_back(token_entry{t.token_sha256.empty() ? sha256_hex(t.token) : t.token_sha256,
                                  t.identity, t.user, std::move(g)});
  }
  return std::make_shared<token_authenticator>(std::move(entries), anonymous);
}

}  // namespace wsagent::auth
