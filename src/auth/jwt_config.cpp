#include "auth/jwt_config.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace wsagent::auth {

namespace {

std::optional<std::string> read_all(const std::string& path, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = std::string("cannot read the file: ") + std::strerror(errno);
    return std::nullopt;
  }
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

std::optional<jwt_config> read_jwt_config(const toml::node& node, const std::string& path, int line,
                                          std::vector<common::config_problem>& problems) {
  auto problem = [&](int at, const std::string& key, std::string message) {
    problems.push_back({path, at, "auth.jwt" + (key.empty() ? "" : "." + key), std::move(message)});
  };
  auto* table = node.as_table();
  if (!table) {
    problem(line, "", "expected a table ([auth.jwt]), got " + common::type_of(node));
    return std::nullopt;
  }
  auto file = [&](const std::string& v) { return common::path_beside(path, v); };
  jwt_config c;
  c.source = path;
  c.line = line;
  auto& s = c.settings;
  static const std::vector<std::string> names{"keys",
                                              "key",
                                              "issuer",
                                              "audience",
                                              "client_id_claim",
                                              "user_claim",
                                              "roles_claim",
                                              "acl_claim",
                                              "require_exp",
                                              "max_age_s",
                                              "leeway_s",
                                              "one_time_claim",
                                              "revocations",
                                              "jwks_url",
                                              "jwks_ca",
                                              "jwks_refresh_s",
                                              "jwks_refetch_min_s"};
  for (auto&& entry : *table) {
    // Named, not bound: clang 14 cannot capture structured bindings in the lambdas below.
    const auto& k = entry.first;
    auto& v = entry.second;
    const std::string field(k.str());
    const int at = common::line_of(k, v) > 0 ? common::line_of(k, v) : line;
    auto text = [&](std::string& out) {
      if (auto* str = v.as_string())
        out = str->get();
      else
        problem(at, field, "expected a string, got " + common::type_of(v));
    };
    auto seconds = [&](std::int64_t& out) {
      auto* i = v.as_integer();
      if (!i || i->get() < 0 || i->get() > 10LL * 365 * 86400)
        problem(at, field, "expected a number of seconds (0 or more)");
      else
        out = i->get();
    };
    if (field == "keys") {
      text(c.jwks_file);
      c.jwks_file = file(c.jwks_file);
    } else if (field == "issuer") {
      text(s.issuer);
    } else if (field == "audience") {
      text(s.audience);
    } else if (field == "client_id_claim") {
      text(s.client_id_claim);
    } else if (field == "user_claim") {
      text(s.user_claim);
    } else if (field == "roles_claim") {
      text(s.roles_claim);
    } else if (field == "acl_claim") {
      text(s.acl_claim);
    } else if (field == "one_time_claim") {
      text(s.one_time_claim);
    } else if (field == "jwks_url") {
      text(c.jwks_url);
      if (!c.jwks_url.empty() && c.jwks_url.rfind("https://", 0) != 0)
        problem(at, field, "must be an https:// URL (keys fetched in the clear could be swapped)");
    } else if (field == "jwks_ca") {
      text(c.jwks_ca);
      c.jwks_ca = file(c.jwks_ca);
    } else if (field == "jwks_refresh_s") {
      seconds(c.jwks_refresh_s);
      if (c.jwks_refresh_s < 10) problem(at, field, "at least 10 seconds");
    } else if (field == "jwks_refetch_min_s") {
      seconds(c.jwks_refetch_min_s);
      if (c.jwks_refetch_min_s < 1) problem(at, field, "at least 1 second");
    } else if (field == "revocations") {
      text(c.revocations);
      c.revocations = file(c.revocations);
    } else if (field == "require_exp") {
      if (auto* b = v.as_boolean())
        s.require_exp = b->get();
      else
        problem(at, field, "expected true or false, got " + common::type_of(v));
    } else if (field == "max_age_s") {
      seconds(s.max_age_s);
    } else if (field == "leeway_s") {
      seconds(s.leeway_s);
    } else if (field == "key") {
      auto* keys = v.as_array();
      if (!keys || !keys->is_array_of_tables()) {
        problem(at, field, "expected an array of tables ([[auth.jwt.key]])");
        continue;
      }
      for (auto& item : *keys) {
        jwt_key_config kc;
        kc.line = common::line_of(item) > 0 ? common::line_of(item) : at;
        for (auto&& [k2, v2] : *item.as_table()) {
          const std::string f2(k2.str());
          const int at2 = common::line_of(k2, v2) > 0 ? common::line_of(k2, v2) : kc.line;
          auto* str = v2.as_string();
          if (!str) {
            problem(at2, "key." + f2, "expected a string, got " + common::type_of(v2));
            continue;
          }
          if (f2 == "file")
            kc.file = file(str->get());
          else if (f2 == "secret")
            kc.secret = str->get();
          else if (f2 == "secret_file")
            kc.secret_file = file(str->get());
          else if (f2 == "alg")
            kc.alg = str->get();
          else if (f2 == "kid")
            kc.kid = str->get();
          else
            problem(at2, "key." + f2,
                    "unknown key" +
                        common::did_you_mean(f2, {"file", "secret", "secret_file", "alg", "kid"}));
        }
        const int sources = !kc.file.empty() + !kc.secret.empty() + !kc.secret_file.empty();
        if (sources != 1)
          problem(kc.line, "key", "a key needs exactly one of file, secret and secret_file");
        if (!jwt_alg_of(kc.alg))
          problem(kc.line, "key.alg",
                  kc.alg.empty() ? "a key needs its alg (every key is pinned to one)"
                                 : common::in_quotes(kc.alg) +
                                       " is not one of HS256, HS384, HS512, RS256, RS384, RS512, "
                                       "PS256, PS384, PS512, ES256, ES384, EdDSA");
        c.keys.push_back(std::move(kc));
      }
    } else {
      problem(at, field, "unknown key" + common::did_you_mean(field, names));
    }
  }
  if (c.jwks_file.empty() && c.keys.empty() && c.jwks_url.empty())
    problem(line, "keys",
            "JWT authentication needs keys: a JWKS file (keys), a jwks_url or [[auth.jwt.key]]");
  return c;
}

jwt_key_store::key_set load_jwt_keys(const jwt_config& config, std::vector<std::string>& problems) {
  jwt_key_store::key_set out;
  if (!config.jwks_file.empty()) {
    std::string error;
    if (auto text = read_all(config.jwks_file, error)) {
      std::vector<std::string> skipped;
      if (auto keys = parse_jwks(*text, skipped)) {
        for (auto& k : *keys)
          out.push_back(std::move(k));
        for (auto& why : skipped)
          problems.push_back("auth.jwt.keys \"" + config.jwks_file + "\": " + why);
      } else {
        problems.push_back("auth.jwt.keys \"" + config.jwks_file +
                           "\": not a JWKS document (a JSON object with a \"keys\" array)");
      }
    } else {
      problems.push_back("auth.jwt.keys \"" + config.jwks_file + "\": " + error);
    }
  }
  for (const auto& kc : config.keys) {
    const auto alg = jwt_alg_of(kc.alg);
    if (!alg) continue;  // a configuration problem already
    const std::string where = config.source + ":" + std::to_string(kc.line) + ": auth.jwt.key" +
                              (kc.kid.empty() ? "" : " (kid " + kc.kid + ")");
    std::string error;
    std::optional<jwt_key> key;
    if (!kc.file.empty()) {
      if (auto pem = read_all(kc.file, error)) key = key_from_pem(*pem, *alg, kc.kid, error);
      if (!key) error = "\"" + kc.file + "\": " + error;
    } else if (!kc.secret_file.empty()) {
      if (auto bytes = read_all(kc.secret_file, error)) {
        if (!bytes->empty() && bytes->back() == '\n') bytes->pop_back();
        key = key_from_secret(std::move(*bytes), *alg, kc.kid, error);
      }
      if (!key) error = "\"" + kc.secret_file + "\": " + error;
    } else {
      key = key_from_secret(kc.secret, *alg, kc.kid, error);
    }
    if (key)
      out.push_back(std::move(*key));
    else
      problems.push_back(where + ": " + error);
  }
  return out;
}

}  // namespace wsagent::auth
