// The built-in authenticators (open mode, static tokens) and the token file format.
#include <gtest/gtest.h>

#include <optional>

#include "auth/certificate_authenticator.hpp"
#include "auth/token_authenticator.hpp"
#include "auth/token_file.hpp"

namespace wsagent::auth {
namespace {

using core::grants;

// The answer of `a` for `token`, which the built-in authenticators give before returning.
core::auth_result ask(const core::authenticator& a, std::string_view token) {
  std::optional<core::auth_result> got;
  core::auth_request r;
  r.token = token;
  a.authenticate(r, [&](core::auth_result res) { got = std::move(res); });
  EXPECT_TRUE(got.has_value()) << "answered later";
  return got.value_or(core::auth_result{});
}

TEST(Auth, TokensByDigest) {
  auto g = std::make_shared<grants>();
  g->publish = {"x/#"};
  token_authenticator t({token_entry{sha256_hex("secret-1"), "dev-1", "", g}});
  auto ok = ask(t, "secret-1");
  ASSERT_TRUE(ok.ok);
  EXPECT_EQ(ok.who.client_id, "dev-1");
  EXPECT_EQ(ok.who.user, "dev-1");  // the user defaults to the identity
  EXPECT_EQ(ok.expires_ms, 0);      // static tokens do not expire
  EXPECT_FALSE(ask(t, "secret-2").ok);
  EXPECT_EQ(ask(t, "secret-2").reason, "unknown token");
  EXPECT_FALSE(ask(t, "").ok);
  EXPECT_FALSE(t.open());
  EXPECT_TRUE(t.owned_client_id("dev-1"));
  EXPECT_FALSE(t.owned_client_id("dev-2"));
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Auth, OpenAcceptsAnyone) {
  core::open_authenticator o;
  EXPECT_TRUE(o.open());
  auto r = ask(o, "");
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(r.who.rights->allow_all);
}

TEST(Auth, AnAnonymousRoleRestrictsOpenModeAndLetsTokenlessClientsIn) {
  auto role = std::make_shared<grants>();
  role->subscribe = {"public/#"};
  core::open_authenticator o(role);
  auto r = ask(o, "");
  ASSERT_TRUE(r.ok);
  EXPECT_FALSE(r.who.rights->allow_all);
  EXPECT_EQ(r.who.rights->subscribe, role->subscribe);
  token_authenticator t({token_entry{sha256_hex("s"), "", "u", std::make_shared<grants>()}}, role);
  auto anon = ask(t, "");
  ASSERT_TRUE(anon.ok);
  EXPECT_EQ(anon.who.rights, role);
  EXPECT_FALSE(ask(t, "wrong").ok);  // a wrong token is still refused
}

toml::table parse(std::string_view text) {
  return toml::parse(text, std::string_view("tokens.toml"));
}

TEST(TokenFile, ReadsTokensAndRolesAndBuildsTheirAuthenticator) {
  std::vector<common::config_problem> problems;
  token_file_reader reader(problems);
  reader.read_file(parse(R"([[tokens]]
token = "dev-secret"
identity = "sensor-1"
roles = ["device", "reader"]

[[tokens]]
token_sha256 = ")" + sha256_hex("ops-secret") +
                         R"("
user = "ops"
roles = ["reader"]

[roles.device]
publish = ["devices/%c/#"]

[roles.reader]
subscribe = ["#"]
deny_subscribe = ["secret/#"]
)"),
                   "tokens.toml");
  auto set = reader.finish("", "", 0);
  ASSERT_TRUE(problems.empty()) << problems[0].to_string();
  ASSERT_EQ(set.tokens.size(), 2u);
  EXPECT_EQ(set.tokens[0].line, 1);
  EXPECT_EQ(set.roles.size(), 2u);
  auto a = make_authenticator(set, "");
  EXPECT_FALSE(a->open());
  auto dev = ask(*a, "dev-secret");
  ASSERT_TRUE(dev.ok);
  EXPECT_EQ(dev.who.client_id, "sensor-1");
  // Several roles: the union of their patterns.
  EXPECT_EQ(dev.who.rights->publish, std::vector<std::string>{"devices/%c/#"});
  EXPECT_EQ(dev.who.rights->subscribe, std::vector<std::string>{"#"});
  EXPECT_EQ(dev.who.rights->deny_subscribe, std::vector<std::string>{"secret/#"});
  auto ops = ask(*a, "ops-secret");
  ASSERT_TRUE(ops.ok);
  EXPECT_EQ(ops.who.user, "ops");
  EXPECT_TRUE(ops.who.client_id.empty());
}

TEST(TokenFile, ProblemsNameTheFileLineAndKey) {
  std::vector<common::config_problem> problems;
  token_file_reader reader(problems);
  reader.read_file(parse(R"([[tokens]]
token = "a"
roles = ["nobody"]

[[tokens]]
token = "a"

[[tokens]]
colour = "red"

[roles.r]
publish = ["a/#/b"]

[extra]
)"),
                   "tokens.toml");
  reader.finish("ghost", "wsagent.toml", 4);
  std::vector<std::string> got;
  for (const auto& p : problems)
    got.push_back(p.to_string());
  auto has = [&](std::string_view text) {
    return std::any_of(got.begin(), got.end(),
                       [&](const std::string& g) { return g.find(text) != std::string::npos; });
  };
  EXPECT_TRUE(has("tokens.toml:9: tokens.colour: unknown key"));
  EXPECT_TRUE(has("tokens.toml:8: tokens: needs a token or a token_sha256"));
  EXPECT_TRUE(has("tokens.toml:12: roles.r.publish: 'a/#/b': '#' must be the last level"));
  EXPECT_TRUE(has("tokens.toml:14: extra: unknown key: a tokens file holds only"));
  EXPECT_TRUE(has("tokens.toml:5: tokens: duplicate token (the same one is at tokens.toml:1)"));
  EXPECT_TRUE(has("tokens.toml:1: tokens.roles: no role 'nobody' is defined"));
  EXPECT_TRUE(has("wsagent.toml:4: auth.anonymous_role: no role 'ghost' is defined"));
}

TEST(TokenFile, WithoutTokensTheAuthenticatorIsOpenModeWithTheAnonymousRole) {
  std::vector<common::config_problem> problems;
  token_file_reader reader(problems);
  reader.read_file(parse("[roles.guest]\nsubscribe = [\"public/#\"]\n"), "tokens.toml");
  auto set = reader.finish("guest", "", 0);
  ASSERT_TRUE(problems.empty());
  auto a = make_authenticator(set, "guest");
  EXPECT_TRUE(a->open());
  auto r = ask(*a, "");
  ASSERT_TRUE(r.ok);
  EXPECT_EQ(r.who.rights->subscribe, std::vector<std::string>{"public/#"});
}

// --- client certificates ---

core::certificate_identity device_certificate() {
  core::certificate_identity c;
  c.subject = "CN=dev-1,O=Plant";
  c.common_name = "dev-1";
  c.dns = {"dev-1.devices.example"};
  c.email = {"dev-1@devices.example"};
  c.fingerprint = "ab12";
  return c;
}

TEST(CertificateTemplates, FillFromTheCertificateAndNameWhatIsMissing) {
  const auto c = device_certificate();
  std::string missing;
  EXPECT_EQ(fill_certificate_template("{cn}", c, missing), "dev-1");
  EXPECT_EQ(fill_certificate_template("site-{dns}/{fingerprint}", c, missing),
            "site-dev-1.devices.example/ab12");
  EXPECT_FALSE(fill_certificate_template("{uri}", c, missing));
  EXPECT_EQ(missing, "uri");
  EXPECT_EQ(check_certificate_template("{cn}-{email}"), "");
  EXPECT_NE(check_certificate_template("{serial}").find("unknown field {serial}"),
            std::string::npos);
  EXPECT_NE(check_certificate_template("{cn"), "");
  EXPECT_NE(check_certificate_template("cn}"), "");
}

TEST(CertificateAuthenticator, TheCertificateStandsForAClientWithoutAToken) {
  auto rights = std::make_shared<grants>();
  rights->publish = {"devices/%c/#"};
  auto tokens = std::make_shared<token_authenticator>(
      std::vector<token_entry>{{sha256_hex("t-dev-2"), "dev-2", "", rights}});
  certificate_settings s;
  s.client_id = "{cn}";
  s.user = "{email}";
  s.match_client_id = true;
  certificate_authenticator a(s, rights, tokens);
  const auto cert = device_certificate();
  auto ask_with = [&](std::string_view token, std::string_view client_id,
                      const core::certificate_identity* c) {
    std::optional<core::auth_result> got;
    core::auth_request r;
    r.token = token;
    r.client_id = client_id;
    r.certificate = c;
    a.authenticate(r, [&](core::auth_result res) { got = std::move(res); });
    return got.value();
  };
  auto r = ask_with("", "", &cert);
  ASSERT_TRUE(r.ok) << r.reason;
  EXPECT_EQ(r.who.client_id, "dev-1");
  EXPECT_EQ(r.who.user, "dev-1@devices.example");
  EXPECT_EQ(r.who.via, "certificate CN=dev-1,O=Plant (SHA-256 ab12)");
  // Another id asked for, or another device's token beside this certificate: refused.
  EXPECT_FALSE(ask_with("", "dev-2", &cert).ok);
  r = ask_with("t-dev-2", "", &cert);
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.reason.find("is client dev-1, the token's is dev-2"), std::string::npos);
  // Without a certificate, tokens as before.
  EXPECT_TRUE(ask_with("t-dev-2", "", nullptr).ok);
  EXPECT_FALSE(ask_with("", "", nullptr).ok);
}

}  // namespace
}  // namespace wsagent::auth
