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

}  // namespace
}  // namespace wsagent::core
