#include "common/timer_wheel.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <random>
#include <vector>

namespace {

using wsagent::common::timer_wheel;

struct timer : timer_wheel::entry {
  int id = 0;
};

std::vector<int> fired(timer_wheel& w, std::int64_t now) {
  std::vector<int> out;
  w.advance(now, [&](timer_wheel::entry& e) { out.push_back(static_cast<timer&>(e).id); });
  return out;
}

TEST(TimerWheel, FiresOnTheFirstTickAtOrAfterTheDeadlineNeverBefore) {
  timer_wheel w(10, 8, 1000);
  timer a;
  a.id = 1;
  w.schedule(a, 1025);
  EXPECT_TRUE(fired(w, 1020).empty());
  EXPECT_TRUE(fired(w, 1029).empty());  // tick 102 holds 1025 but it is not due yet
  EXPECT_EQ(fired(w, 1030), std::vector<int>{1});
  EXPECT_FALSE(a.scheduled());
  EXPECT_TRUE(fired(w, 2000).empty());  // fired once
}

TEST(TimerWheel, APastDeadlineFiresOnTheNextTick) {
  timer_wheel w(10, 8, 1000);
  timer a;
  a.id = 7;
  w.schedule(a, 500);
  EXPECT_TRUE(fired(w, 1005).empty());
  EXPECT_EQ(fired(w, 1010), std::vector<int>{7});
}

TEST(TimerWheel, DeadlinesBeyondOneTurnWaitForTheirTurn) {
  timer_wheel w(10, 4, 0);  // one turn is 40 ms
  timer a;
  a.id = 1;
  w.schedule(a, 130);  // slot 13 % 4 = 1, visited at 10, 50, 90 before 130
  for (std::int64_t now = 10; now < 130; now += 10)
    EXPECT_TRUE(fired(w, now).empty()) << now;
  EXPECT_EQ(fired(w, 130), std::vector<int>{1});
}

TEST(TimerWheel, CancelAndRescheduleAndDestroyUnlink) {
  timer_wheel w(10, 8, 0);
  timer a, b;
  a.id = 1;
  b.id = 2;
  w.schedule(a, 20);
  w.schedule(b, 20);
  a.cancel();
  {
    timer c;
    c.id = 3;
    w.schedule(c, 20);
  }                   // destroyed while scheduled: gone from the wheel
  w.schedule(b, 50);  // moved later
  EXPECT_TRUE(fired(w, 40).empty());
  EXPECT_EQ(fired(w, 50), std::vector<int>{2});
}

TEST(TimerWheel, FireMayRescheduleItselfAndOthers) {
  timer_wheel w(10, 8, 0);
  timer a, b;
  a.id = 1;
  b.id = 2;
  w.schedule(a, 10);
  w.schedule(b, 10);
  int runs = 0;
  // a re-arms itself 10 ms later each time; b is cancelled by a's first run.
  auto fire = [&](timer_wheel::entry& e) {
    ++runs;
    auto& t = static_cast<timer&>(e);
    if (t.id == 1) {
      b.cancel();
      w.schedule(a, 10 * (runs + 1));
    }
  };
  w.advance(10, fire);
  EXPECT_EQ(runs, 1);
  EXPECT_FALSE(b.scheduled());
  EXPECT_TRUE(a.scheduled());
  w.advance(20, fire);
  w.advance(30, fire);
  EXPECT_EQ(runs, 3);
}

TEST(TimerWheel, ALongPauseFiresEverythingDueOnce) {
  timer_wheel w(10, 4, 0);
  std::vector<std::unique_ptr<timer>> ts;
  for (int i = 0; i < 20; ++i) {
    ts.push_back(std::make_unique<timer>());
    ts.back()->id = i;
    w.schedule(*ts.back(), 10 + i * 7);
  }
  auto out = fired(w, 100);  // 10 ticks later: more than a turn of 4 slots
  std::sort(out.begin(), out.end());
  std::vector<int> want;
  for (int i = 0; i < 20; ++i)
    if (10 + i * 7 <= 100) want.push_back(i);
  EXPECT_EQ(out, want);
  auto rest = fired(w, 1000);
  EXPECT_EQ(out.size() + rest.size(), 20u);
}

// Against a reference model: random schedules, cancels and advances; every entry fires
// exactly when the model says (first advance at or after its deadline, on a tick).
TEST(TimerWheel, MatchesAReferenceModel) {
  std::mt19937 rng(42);
  timer_wheel w(5, 16, 0);
  constexpr int n = 200;
  std::vector<timer> ts(n);
  std::map<int, std::int64_t> due;  // the model: scheduled entries
  for (int i = 0; i < n; ++i)
    ts[static_cast<std::size_t>(i)].id = i;
  std::int64_t now = 0;
  for (int step = 0; step < 2000; ++step) {
    const int i = static_cast<int>(rng() % n);
    auto& t = ts[static_cast<std::size_t>(i)];
    switch (rng() % 3) {
      case 0: {
        const std::int64_t d = now + 1 + static_cast<std::int64_t>(rng() % 300);
        w.schedule(t, d);
        due[i] = d;
        break;
      }
      case 1:
        t.cancel();
        due.erase(i);
        break;
      default: {
        now += static_cast<std::int64_t>(rng() % 40);
        const std::int64_t tick_time = now / 5 * 5;
        auto out = fired(w, now);
        std::sort(out.begin(), out.end());
        std::vector<int> want;
        for (auto it = due.begin(); it != due.end();)
          if (it->second <= tick_time) {
            want.push_back(it->first);
            it = due.erase(it);
          } else {
            ++it;
          }
        ASSERT_EQ(out, want) << "step " << step << " now " << now;
      }
    }
  }
}

}  // namespace
