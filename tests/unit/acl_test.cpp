#include "core/acl.hpp"

#include <gtest/gtest.h>

#include "core/auth.hpp"

namespace wsagent::core {
namespace {

TEST(Acl, Substitution) {
  std::string out;
  EXPECT_TRUE(substitute_pattern("devices/%c/#", "sensor-1", "bob", out));
  EXPECT_EQ(out, "devices/sensor-1/#");
  EXPECT_TRUE(substitute_pattern("users/%u/%c", "c1", "bob", out));
  EXPECT_EQ(out, "users/bob/c1");
  EXPECT_TRUE(substitute_pattern("100%/x", "c", "u", out));  // a lone % stays
  EXPECT_EQ(out, "100%/x");
  // A client id that would widen the pattern grants nothing.
  EXPECT_FALSE(substitute_pattern("devices/%c/#", "a/b", "u", out));
  EXPECT_FALSE(substitute_pattern("devices/%c/#", "#", "u", out));
  EXPECT_FALSE(substitute_pattern("devices/%c/#", "+", "u", out));
  EXPECT_FALSE(substitute_pattern("users/%u", "c", "", out));
}

TEST(Acl, DeviceRole) {
  grants g;
  g.publish = {"devices/%c/#"};
  g.subscribe = {"devices/%c/control", "broadcast/#"};
  acl a(g, "sensor-001", "sensor-001");
  EXPECT_TRUE(a.can_publish("devices/sensor-001/status"));
  EXPECT_TRUE(a.can_publish("devices/sensor-001"));
  EXPECT_FALSE(a.can_publish("devices/sensor-002/status"));
  EXPECT_TRUE(a.can_subscribe("devices/sensor-001/control"));
  EXPECT_FALSE(a.can_subscribe("devices/+/control"));
  EXPECT_FALSE(a.can_subscribe("devices/sensor-001/#"));
  EXPECT_TRUE(a.can_subscribe("broadcast/#"));
  EXPECT_TRUE(a.can_subscribe("broadcast/+/x"));
  EXPECT_FALSE(a.can_subscribe("#"));
}

TEST(Acl, HostileClientIdGrantsNothing) {
  grants g;
  g.publish = {"devices/%c/#"};
  acl a(g, "#", "u");
  EXPECT_FALSE(a.can_publish("devices/x/status"));
}

TEST(Acl, AllowAllStillGuardsReservedTags) {
  auto a = acl::allow_all();
  EXPECT_TRUE(a.can_publish("anything/at/all"));
  EXPECT_FALSE(a.can_publish("$sys/clients"));
  EXPECT_TRUE(a.can_subscribe("$sys/#"));
  EXPECT_TRUE(a.can_subscribe("#"));
}

TEST(Acl, EmptyGrantsNothing) {
  acl a;
  EXPECT_FALSE(a.can_publish("a"));
  EXPECT_FALSE(a.can_subscribe("a"));
}

TEST(Auth, TokensByDigest) {
  auto g = std::make_shared<grants>();
  g->publish = {"x/#"};
  token_authenticator t({token_entry{sha256_hex("secret-1"), "dev-1", "", g}});
  auto ok = t.authenticate("secret-1");
  ASSERT_TRUE(ok.ok);
  EXPECT_EQ(ok.who.client_id, "dev-1");
  EXPECT_EQ(ok.who.user, "dev-1");  // the user defaults to the identity
  EXPECT_FALSE(t.authenticate("secret-2").ok);
  EXPECT_FALSE(t.authenticate("").ok);
  EXPECT_FALSE(t.open());
  EXPECT_TRUE(t.owned_client_id("dev-1"));
  EXPECT_FALSE(t.owned_client_id("dev-2"));
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Auth, OpenAcceptsAnyone) {
  open_authenticator o;
  EXPECT_TRUE(o.open());
  auto r = o.authenticate("");
  ASSERT_TRUE(r.ok);
  EXPECT_TRUE(r.who.rights->allow_all);
}

// Deny patterns come first: a role that allows "#" but denies "secret/#" works as it reads.
TEST(Acl, DenyPatternsComeBeforeTheAllowLists) {
  grants g;
  g.publish = {"#"};
  g.subscribe = {"#"};
  g.deny_publish = {"secret/#"};
  g.deny_subscribe = {"secret/#", "users/%u/private"};
  acl a(g, "dev-1", "ann");
  EXPECT_TRUE(a.can_publish("public/x"));
  EXPECT_FALSE(a.can_publish("secret/x"));
  EXPECT_FALSE(a.can_publish("secret"));  // "secret/#" covers its parent
  EXPECT_TRUE(a.can_subscribe("#"));      // only overlaps: allowed, deliveries checked
  EXPECT_TRUE(a.can_subscribe("+/x"));
  EXPECT_FALSE(a.can_subscribe("secret/#"));
  EXPECT_FALSE(a.can_subscribe("secret/+/x"));
  EXPECT_TRUE(a.denies_some());
  EXPECT_FALSE(a.can_receive("secret/x"));
  EXPECT_TRUE(a.can_receive("public/x"));
  EXPECT_FALSE(a.can_receive("users/ann/private"));
  EXPECT_TRUE(a.can_receive("users/bob/private"));
  // Open mode's "everything" still yields to a deny pattern.
  grants open;
  open.allow_all = true;
  open.deny_publish = {"plant/#"};
  acl o(open, "x", "");
  EXPECT_FALSE(o.can_publish("plant/1"));
  EXPECT_TRUE(o.can_publish("other"));
}

// A deny pattern whose substitution fails (an empty user) is not dropped: that level is
// denied for every value.
TEST(Acl, ADenyPatternThatCannotBeFilledInDeniesTheWholeLevel) {
  grants g;
  g.subscribe = {"users/#"};
  g.deny_subscribe = {"users/%u/private"};
  acl a(g, "c", "");  // no user
  EXPECT_FALSE(a.can_receive("users/ann/private"));
  EXPECT_FALSE(a.can_subscribe("users/+/private"));
  EXPECT_TRUE(a.can_receive("users/ann/public"));
}

TEST(Auth, AnAnonymousRoleRestrictsOpenModeAndLetsTokenlessClientsIn) {
  auto role = std::make_shared<grants>();
  role->subscribe = {"public/#"};
  open_authenticator o(role);
  auto r = o.authenticate("");
  ASSERT_TRUE(r.ok);
  EXPECT_FALSE(r.who.rights->allow_all);
  EXPECT_EQ(r.who.rights->subscribe, role->subscribe);
  token_authenticator t({token_entry{sha256_hex("s"), "", "u", std::make_shared<grants>()}}, role);
  auto anon = t.authenticate("");
  ASSERT_TRUE(anon.ok);
  EXPECT_EQ(anon.who.rights, role);
  EXPECT_FALSE(t.authenticate("wrong").ok);  // a wrong token is still refused
}

}  // namespace
}  // namespace wsagent::core
