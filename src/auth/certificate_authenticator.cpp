#include "auth/certificate_authenticator.hpp"

#include <algorithm>
#include <array>
#include <utility>

namespace wsagent::auth {

namespace {

constexpr std::array<std::string_view, 5> fields{"cn", "dns", "uri", "email", "fingerprint"};

// The value of one field ("" when the certificate has none).
std::string_view field_of(std::string_view name, const core::certificate_identity& c) {
  auto first = [](const std::vector<std::string>& v) -> std::string_view {
    return v.empty() ? std::string_view() : std::string_view(v.front());
  };
  if (name == "cn") return c.common_name;
  if (name == "dns") return first(c.dns);
  if (name == "uri") return first(c.uri);
  if (name == "email") return first(c.email);
  if (name == "fingerprint") return c.fingerprint;
  return {};
}

// "CN=dev-1,O=Plant (SHA-256 ab12…)": how the audit log names a certificate.
std::string describe(const core::certificate_identity& c) {
  return "certificate " + c.subject + " (SHA-256 " + c.fingerprint + ")";
}

core::auth_result refuse(std::string why) {
  core::auth_result r;
  r.reason = std::move(why);
  return r;
}

}  // namespace

std::string check_certificate_template(std::string_view t) {
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (t[i] == '}') return "a '}' without its '{'";
    if (t[i] != '{') continue;
    const auto end = t.find('}', i);
    if (end == std::string_view::npos) return "a '{' without its '}'";
    const auto name = t.substr(i + 1, end - i - 1);
    if (std::find(fields.begin(), fields.end(), name) == fields.end())
      return "unknown field {" + std::string(name) + "}: one of {cn}, {dns}, {uri}, {email}, " +
             "{fingerprint}";
    i = end;
  }
  return {};
}

std::optional<std::string> fill_certificate_template(std::string_view t,
                                                     const core::certificate_identity& cert,
                                                     std::string& missing) {
  std::string out;
  for (std::size_t i = 0; i < t.size(); ++i) {
    if (t[i] != '{') {
      out += t[i];
      continue;
    }
    const auto end = t.find('}', i);
    if (end == std::string_view::npos) return std::nullopt;
    const auto name = t.substr(i + 1, end - i - 1);
    const auto value = field_of(name, cert);
    if (value.empty()) {
      missing = std::string(name);
      return std::nullopt;
    }
    out += value;
    i = end;
  }
  return out;
}

certificate_authenticator::certificate_authenticator(
    certificate_settings settings, std::shared_ptr<const core::grants> rights,
    std::shared_ptr<const core::authenticator> next)
    : settings_(std::move(settings)), rights_(std::move(rights)), next_(std::move(next)) {}

void certificate_authenticator::authenticate(const core::auth_request& r,
                                             core::auth_done done) const {
  if (!r.certificate) return next_->authenticate(r, std::move(done));
  const auto& cert = *r.certificate;
  std::string missing;
  auto id = fill_certificate_template(settings_.client_id, cert, missing);
  if (!id)
    return done(refuse(describe(cert) + " has no " + missing + " for auth.certificates.client_id"));
  const std::string via = describe(cert);
  if (r.token.empty()) {
    // The certificate is the credential.
    if (settings_.match_client_id && !r.client_id.empty() && r.client_id != *id)
      return done(refuse(via + " is client " + *id + ", not " + std::string(r.client_id)));
    core::auth_result res;
    res.ok = true;
    res.who.client_id = *id;
    if (settings_.user.empty()) {
      res.who.user = *id;
    } else {
      auto user = fill_certificate_template(settings_.user, cert, missing);
      if (!user) return done(refuse(via + " has no " + missing + " for auth.certificates.user"));
      res.who.user = std::move(*user);
    }
    res.who.rights = rights_;
    res.who.via = via;
    return done(std::move(res));
  }
  if (!settings_.match_client_id) return next_->authenticate(r, std::move(done));
  // A token beside the certificate: the client id it ends up with must be the
  // certificate's.
  next_->authenticate(r, [done = std::move(done), id = std::move(*id), via,
                          asked = std::string(r.client_id)](core::auth_result res) {
    if (res.ok) {
      const auto& got = res.who.client_id.empty() ? asked : res.who.client_id;
      if (got != id)
        return done(refuse(via + " is client " + id + ", the token's is " +
                           (got.empty() ? "not fixed" : got)));
      res.who.via = via;
    }
    done(std::move(res));
  });
}

std::optional<certificate_settings> read_certificate_settings(
    const toml::node& node, const std::string& path, int line,
    std::vector<common::config_problem>& problems) {
  auto problem = [&](int at, const std::string& key, std::string message) {
    problems.push_back(
        {path, at, "auth.certificates" + (key.empty() ? "" : "." + key), std::move(message)});
  };
  auto* table = node.as_table();
  if (!table) {
    problem(line, "", "expected a table ([auth.certificates]), got " + common::type_of(node));
    return std::nullopt;
  }
  certificate_settings s;
  for (auto&& field : *table) {
    const auto& k = field.first;
    auto& v = field.second;
    const std::string name(k.str());
    const int at = common::line_of(k, v) > 0 ? common::line_of(k, v) : line;
    if (name == "client_id" || name == "user") {
      auto* str = v.as_string();
      if (!str) {
        problem(at, name, "expected a string, got " + common::type_of(v));
        continue;
      }
      if (auto why = check_certificate_template(str->get()); !why.empty()) problem(at, name, why);
      (name == "user" ? s.user : s.client_id) = str->get();
    } else if (name == "roles") {
      common::read_string_array(v, path, at, "auth.certificates.roles", s.roles, problems);
    } else if (name == "match_client_id") {
      if (auto* b = v.as_boolean())
        s.match_client_id = b->get();
      else
        problem(at, name, "expected true or false, got " + common::type_of(v));
    } else {
      problem(at, name,
              "unknown key" +
                  common::did_you_mean(name, {"client_id", "user", "roles", "match_client_id"}));
    }
  }
  if (s.client_id.empty()) problem(line, "client_id", "must not be empty");
  return s;
}

}  // namespace wsagent::auth
