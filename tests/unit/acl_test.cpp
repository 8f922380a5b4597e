#include "core/acl.hpp"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace wsagent::core
