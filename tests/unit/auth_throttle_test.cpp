// Failed authentications per address (core/auth_throttle.hpp).
#include <gtest/gtest.h>

#include "core/auth_throttle.hpp"

namespace wsagent::core {
namespace {

TEST(AuthThrottle, AnAddressIsRefusedForThePenaltyAfterTooManyFailuresInTheWindow) {
  auth_throttle t({3, 60'000, 30'000});
  EXPECT_FALSE(t.failed("192.0.2.1", 1000));
  EXPECT_FALSE(t.failed("192.0.2.1", 2000));
  EXPECT_EQ(t.penalty_left("192.0.2.1", 2000), 0);
  EXPECT_TRUE(t.failed("192.0.2.1", 3000));  // the third: a penalty begins
  EXPECT_EQ(t.penalty_left("192.0.2.1", 3000), 30'000);
  EXPECT_EQ(t.penalty_left("192.0.2.1", 20'000), 13'000);
  EXPECT_EQ(t.penalty_left("192.0.2.2", 20'000), 0);  // another address is not affected
  EXPECT_FALSE(t.failed("192.0.2.1", 20'000));        // during it: no new penalty
  EXPECT_EQ(t.penalty_left("192.0.2.1", 33'000), 0);  // served
  EXPECT_EQ(t.penalties.load(), 1u);
  EXPECT_EQ(t.refused.load(), 2u);
}

TEST(AuthThrottle, FailuresOutsideTheWindowDoNotAddUp) {
  auth_throttle t({3, 10'000, 30'000});
  EXPECT_FALSE(t.failed("a", 0));
  EXPECT_FALSE(t.failed("a", 5'000));
  EXPECT_FALSE(t.failed("a", 10'000));  // a new window: 1
  EXPECT_FALSE(t.failed("a", 12'000));
  EXPECT_TRUE(t.failed("a", 13'000));
}

TEST(AuthThrottle, ZeroMeansNoLimit) {
  auth_throttle t({0, 60'000, 30'000});
  for (int i = 0; i < 100; ++i)
    EXPECT_FALSE(t.failed("a", i));
  EXPECT_EQ(t.penalty_left("a", 100), 0);
}

TEST(AuthThrottle, AFloodFromManyAddressesStaysBounded) {
  auth_throttle t({2, 60'000, 30'000, 1000});
  EXPECT_FALSE(t.failed("blocked", 0));
  EXPECT_TRUE(t.failed("blocked", 0));
  for (int i = 0; i < 5000; ++i)
    t.failed("10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256), 1);
  EXPECT_GT(t.penalty_left("blocked", 2), 0);  // a penalty is kept through the flood
}

TEST(AuthThrottle, TheAddressOfARemote) {
  EXPECT_EQ(ip_of("192.0.2.1:5000"), "192.0.2.1");
  EXPECT_EQ(ip_of("[2001:db8::1]:5000"), "2001:db8::1");
  EXPECT_EQ(ip_of("nothing"), "nothing");
}

}  // namespace
}  // namespace wsagent::core
