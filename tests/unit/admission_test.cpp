// Admission control for reconnect storms: the rate, the pending bound, the retry delays.
#include "core/admission.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

namespace wsagent::core {
namespace {

TEST(Admission, TakesTheRateWithASecondOfBurstThenRefusesWithARetryDelay) {
  admission a({10, 0});
  std::int64_t retry = 0;
  int taken = 0;
  for (int i = 0; i < 30; ++i) {
    if (a.try_begin(1000, retry)) {
      ++taken;
      a.finish();
    }
  }
  EXPECT_EQ(taken, 10);  // the burst: one second's worth
  EXPECT_EQ(a.refused.load(), 20u);
  EXPECT_GE(retry, 100);  // the next token comes in 100 ms at 10 a second
  // Whoever comes back when told finds a place (the delay is never before the next token).
  admission one({1, 0});
  ASSERT_TRUE(one.try_begin(5000, retry));
  ASSERT_FALSE(one.try_begin(5000, retry));
  EXPECT_GE(retry, 1000);
  EXPECT_TRUE(one.try_begin(5000 + retry, retry));
  // Half a second later, five more.
  taken = 0;
  for (int i = 0; i < 30; ++i)
    if (a.try_begin(1500, retry)) ++taken;
  EXPECT_EQ(taken, 5);
}

TEST(Admission, BoundsTheAuthenticationsInProgress) {
  admission a({0, 2});
  std::int64_t retry = 0;
  EXPECT_TRUE(a.try_begin(0, retry));
  EXPECT_TRUE(a.try_begin(0, retry));
  EXPECT_FALSE(a.try_begin(0, retry));
  a.finish();
  EXPECT_TRUE(a.try_begin(0, retry));
}

TEST(Admission, RetryDelaysGrowWithTheStormAndAreSpread) {
  admission a({100, 0});
  std::int64_t retry = 0;
  for (int i = 0; i < 100; ++i)
    (void)a.try_begin(0, retry);  // the burst
  std::vector<std::int64_t> delays;
  for (int i = 0; i < 1000; ++i) {
    ASSERT_FALSE(a.try_begin(0, retry));
    delays.push_back(retry);
  }
  // 1,000 refused at 100/s: about ten seconds' worth, told to come back over that span.
  EXPECT_GE(*std::max_element(delays.begin(), delays.end()), 5000);
  EXPECT_LT(delays.front(), 1500);
  std::sort(delays.begin(), delays.end());
  EXPECT_LT(delays[100], delays[900]);  // not all the same moment
  EXPECT_FALSE(admission({0, 0}).enabled());
}

}  // namespace
}  // namespace wsagent::core
