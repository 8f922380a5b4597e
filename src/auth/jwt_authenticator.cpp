#include "auth/jwt_authenticator.hpp"

#include <simdjson.h>

#include <cmath>

#include "auth/token_file.hpp"
#include "common/clock.hpp"

namespace wsagent::auth {

namespace {

// A NumericDate claim (seconds, possibly fractional): nullopt when absent, `bad` when
// present and not a number.
std::optional<std::int64_t> date_claim(simdjson::dom::object claims, std::string_view name,
                                       bool& bad) {
  simdjson::dom::element e;
  if (claims[name].get(e) != simdjson::SUCCESS) return std::nullopt;
  double v = 0;
  if (e.get(v) != simdjson::SUCCESS || !std::isfinite(v) || v < 0 || v > 1e13) {
    bad = true;
    return std::nullopt;
  }
  return static_cast<std::int64_t>(v);
}

std::optional<std::string_view> string_claim(simdjson::dom::object claims, std::string_view name) {
  std::string_view v;
  if (name.empty() || claims[name].get(v) != simdjson::SUCCESS) return std::nullopt;
  return v;
}

// A claim that is a string or an array of strings; false when it is something else.
bool strings_claim(simdjson::dom::element e, std::vector<std::string>& out) {
  std::string_view one;
  if (e.get(one) == simdjson::SUCCESS) {
    out.emplace_back(one);
    return true;
  }
  simdjson::dom::array many;
  if (e.get(many) != simdjson::SUCCESS) return false;
  for (auto item : many) {
    if (item.get(one) != simdjson::SUCCESS) return false;
    out.emplace_back(one);
  }
  return true;
}

core::auth_result refuse(std::string why) {
  core::auth_result r;
  r.reason = std::move(why);
  return r;
}

}  // namespace

jwt_authenticator::jwt_authenticator(
    jwt_settings settings, std::shared_ptr<const jwt_key_store> keys,
    std::map<std::string, std::shared_ptr<const core::grants>, std::less<>> roles,
    std::shared_ptr<const core::authenticator> next, clock now,
    std::shared_ptr<revocation_list> revocations)
    : settings_(std::move(settings)),
      keys_(std::move(keys)),
      roles_(std::move(roles)),
      next_(std::move(next)),
      now_(now ? std::move(now) : clock([] { return common::now_ms(); })),
      revocations_(std::move(revocations)) {}

std::string jwt_authenticator::revoked(const core::credential& c) const {
  if (!c.jwt) return next_ ? next_->revoked(c) : std::string();
  return revocations_ ? revocations_->check(c.jwt_id, c.subject, c.issued_s) : std::string();
}

void jwt_authenticator::authenticate(const core::auth_request& r, core::auth_done done) const {
  if (!looks_like_jwt(r.token)) {
    if (next_) return next_->authenticate(r, std::move(done));
    return done(refuse(r.token.empty() ? "no token" : "not a JWT"));
  }
  done(check(r.token));
}

const jwt_key* jwt_authenticator::find_key(const jwt_key_store::key_set& keys,
                                           const jwt_parts& parts, std::string& error) const {
  const jwt_key* found = nullptr;
  for (const auto& k : keys)
    if (k.kid == parts.kid) {
      found = &k;
      break;
    }
  // A token without a kid may use the only key there is.
  if (!found && parts.kid.empty() && keys.size() == 1) found = &keys.front();
  if (!found) {
    error =
        parts.kid.empty() ? "no kid, and no key without one" : "unknown kid \"" + parts.kid + "\"";
    if (!parts.kid.empty() && on_unknown_kid_) on_unknown_kid_();
    return nullptr;
  }
  if (parts.alg != name_of(found->alg)) {
    // `none`, or an algorithm the key is not pinned to (an HS256 token "signed" with an RSA
    // public key as its secret is refused here).
    error = "alg " + parts.alg + " is not the key's (" + name_of(found->alg) + ")";
    return nullptr;
  }
  return found;
}

core::auth_result jwt_authenticator::check(std::string_view token, jwt_claims* out) const {
  std::string error;
  auto parts = decode_jwt(token, error);
  if (!parts) return refuse("JWT: " + error);
  if (parts->alg == "none") return refuse("JWT: alg none is never accepted");
  const auto keys = keys_->get();
  const jwt_key* key = find_key(*keys, *parts, error);
  if (!key) return refuse("JWT: " + error);
  if (!verify_jwt_signature(*key, parts->signing_input, parts->signature))
    return refuse("JWT: bad signature");

  thread_local simdjson::dom::parser parser;
  simdjson::dom::object claims;
  if (parser.parse(parts->payload).get(claims) != simdjson::SUCCESS)
    return refuse("JWT: the payload is not a JSON object");
  bool bad = false;
  const auto exp = date_claim(claims, "exp", bad);
  const auto nbf = date_claim(claims, "nbf", bad);
  const auto iat = date_claim(claims, "iat", bad);
  if (bad) return refuse("JWT: exp, nbf or iat is not a number");
  const std::int64_t now_s = now_() / 1000;
  const auto leeway = settings_.leeway_s;
  if (!exp && settings_.require_exp) return refuse("JWT: no exp");
  if (exp && now_s > *exp + leeway) return refuse("JWT: expired");
  if (nbf && now_s + leeway < *nbf) return refuse("JWT: not valid yet (nbf)");
  if (iat && now_s + leeway < *iat) return refuse("JWT: issued in the future (iat)");
  if (settings_.max_age_s > 0) {
    if (!iat) return refuse("JWT: no iat (auth.jwt.max_age_s needs one)");
    if (now_s > *iat + settings_.max_age_s + leeway) return refuse("JWT: too old (iat)");
  }
  if (!settings_.issuer.empty()) {
    auto iss = string_claim(claims, "iss");
    if (!iss || *iss != settings_.issuer) return refuse("JWT: wrong iss");
  }
  if (!settings_.audience.empty()) {
    std::vector<std::string> aud;
    simdjson::dom::element e;
    if (claims["aud"].get(e) != simdjson::SUCCESS || !strings_claim(e, aud) ||
        std::find(aud.begin(), aud.end(), settings_.audience) == aud.end())
      return refuse("JWT: wrong aud");
  }

  core::identity who;
  if (auto id = string_claim(claims, settings_.client_id_claim))
    who.client_id = std::string(*id);
  else if (!settings_.client_id_claim.empty())
    return refuse("JWT: no " + settings_.client_id_claim + " claim (the client id)");
  if (auto user = string_claim(claims, settings_.user_claim))
    who.user = std::string(*user);
  else
    who.user = who.client_id;

  auto rights = std::make_shared<core::grants>();
  if (simdjson::dom::element e;
      !settings_.roles_claim.empty() && claims[settings_.roles_claim].get(e) == simdjson::SUCCESS) {
    std::vector<std::string> names;
    if (!strings_claim(e, names))
      return refuse("JWT: " + settings_.roles_claim + " is not a list of names");
    for (const auto& n : names)
      if (auto it = roles_.find(n); it != roles_.end()) rights->add(*it->second);
  }
  if (simdjson::dom::object acl;
      !settings_.acl_claim.empty() && claims[settings_.acl_claim].get(acl) == simdjson::SUCCESS) {
    const std::pair<const char*, std::vector<std::string>*> lists[] = {
        {"publish", &rights->publish},
        {"subscribe", &rights->subscribe},
        {"deny_publish", &rights->deny_publish},
        {"deny_subscribe", &rights->deny_subscribe},
    };
    for (auto [field, into] : lists) {
      simdjson::dom::element e;
      if (acl[field].get(e) != simdjson::SUCCESS) continue;
      std::vector<std::string> patterns;
      if (!strings_claim(e, patterns))
        return refuse("JWT: " + settings_.acl_claim + "." + field + " is not a list of patterns");
      for (const auto& p : patterns)
        if (auto why = check_pattern(p); !why.empty())
          return refuse("JWT: " + settings_.acl_claim + "." + field + ": " + why);
      into->insert(into->end(), patterns.begin(), patterns.end());
    }
  }
  const auto subject = string_claim(claims, "sub").value_or("");
  const auto jti = string_claim(claims, "jti").value_or("");
  if (revocations_) {
    if (auto why = revocations_->check(jti, subject, iat.value_or(0)); !why.empty())
      return refuse(std::move(why));
    if (bool once = false; !settings_.one_time_claim.empty() &&
                           claims[settings_.one_time_claim].get(once) == simdjson::SUCCESS &&
                           once) {
      if (jti.empty() || !exp) return refuse("JWT: a one-time token needs jti and exp");
      if (!revocations_->first_use(jti, *exp + leeway, now_s))
        return refuse("JWT: one-time token already used");
    }
  }
  if (out) {
    out->subject = std::string(subject);
    out->issuer = std::string(string_claim(claims, "iss").value_or(""));
    out->id = std::string(jti);
    out->expires_s = exp.value_or(0);
    out->not_before_s = nbf.value_or(0);
    out->issued_s = iat.value_or(0);
  }
  who.from.jwt = true;
  who.from.jwt_id = std::string(jti);
  who.from.subject = std::string(subject);
  who.from.issued_s = iat.value_or(0);
  core::auth_result r;
  r.ok = true;
  who.rights = std::move(rights);
  r.who = std::move(who);
  r.expires_ms = exp ? (*exp + leeway) * 1000 : 0;
  return r;
}

}  // namespace wsagent::auth
