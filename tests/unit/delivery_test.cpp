#include "core/delivery.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace {

using namespace wsagent::core;

message_ptr msg(std::uint64_t seq) {
  auto m = std::make_shared<message>();
  m->tag = "t";
  m->qos = 1;
  m->seq = seq;
  return m;
}

std::vector<std::uint64_t> seqs(const std::vector<delivery_window::entry>& es) {
  std::vector<std::uint64_t> out;
  for (const auto& e : es)
    out.push_back(e.msg->seq);
  return out;
}

TEST(DeliveryWindow, AtMostMaxInflightUnacknowledgedTheRestWaitInOrder) {
  delivery_window w(2, 10);
  EXPECT_TRUE(w.offer(msg(1), 0));
  EXPECT_TRUE(w.offer(msg(2), 0));
  EXPECT_FALSE(w.offer(msg(3), 0));
  EXPECT_FALSE(w.offer(msg(4), 0));
  EXPECT_EQ(w.in_flight(), 2u);
  EXPECT_EQ(w.waiting(), 2u);
  EXPECT_TRUE(w.ack(2, 5));  // out of order is fine
  std::vector<delivery_window::entry> ready;
  w.take_ready(ready);
  EXPECT_EQ(seqs(ready), std::vector<std::uint64_t>{3});
  EXPECT_FALSE(w.ack(2, 5));  // twice: stray
  EXPECT_FALSE(w.ack(99, 5));
  EXPECT_TRUE(w.ack(1, 6));
  ready.clear();
  w.take_ready(ready);
  EXPECT_EQ(seqs(ready), std::vector<std::uint64_t>{4});
  EXPECT_EQ(w.waiting(), 0u);
}

TEST(DeliveryWindow, ANewMessageDoesNotOvertakeWaitingOnes) {
  delivery_window w(1, 10);
  EXPECT_TRUE(w.offer(msg(1), 0));
  EXPECT_FALSE(w.offer(msg(2), 0));
  EXPECT_TRUE(w.ack(1, 0));  // 2 moves into flight
  std::vector<delivery_window::entry> ready;
  w.take_ready(ready);
  EXPECT_EQ(seqs(ready), std::vector<std::uint64_t>{2});
  EXPECT_FALSE(w.offer(msg(3), 0));  // the window is full again
}

TEST(DeliveryWindow, AFullQueueDropsItsOldestAndCountsIt) {
  delivery_window w(1, 2);
  w.offer(msg(1), 0);
  w.offer(msg(2), 0);
  w.offer(msg(3), 0);
  w.offer(msg(4), 0);  // drops 2
  EXPECT_EQ(w.dropped(), 1u);
  w.ack(1, 0);
  w.ack(3, 0);
  std::vector<delivery_window::entry> ready;
  w.take_ready(ready);
  EXPECT_EQ(seqs(ready), (std::vector<std::uint64_t>{3, 4}));
}

TEST(DeliveryWindow, TheByteLimitDropsTheOldestWaitingButKeepsTheNewest) {
  auto sized = [](std::uint64_t seq, std::size_t bytes) {
    auto m = std::const_pointer_cast<message>(msg(seq));
    m->payload.assign(bytes, 'x');
    return message_ptr(m);
  };
  delivery_window w(1, 100, 250);
  std::vector<message_ptr> dropped;
  w.offer(sized(1, 500), 0, &dropped);  // in flight: not counted
  w.offer(sized(2, 100), 0, &dropped);
  w.offer(sized(3, 100), 0, &dropped);
  EXPECT_TRUE(dropped.empty());
  EXPECT_EQ(w.waiting_bytes(), 200u);
  w.offer(sized(4, 100), 0, &dropped);  // 300 > 250: 2 goes
  ASSERT_EQ(dropped.size(), 1u);
  EXPECT_EQ(dropped[0]->seq, 2u);
  w.offer(sized(5, 1000), 0, &dropped);  // alone over the limit: it stays, the others go
  EXPECT_EQ(dropped.size(), 3u);
  EXPECT_EQ(w.waiting(), 1u);
  EXPECT_EQ(w.waiting_bytes(), 1000u);
  EXPECT_EQ(w.dropped(), 3u);
  w.ack(1, 0);
  EXPECT_EQ(w.waiting_bytes(), 0u);
}

TEST(DeliveryWindow, UnacknowledgedMessagesFallDueAgainFlaggedDup) {
  delivery_window w(4, 10);
  w.offer(msg(1), 1000);
  w.offer(msg(2), 1500);
  EXPECT_EQ(w.next_due(100), 1100);
  std::vector<delivery_window::entry> due;
  w.take_due(1099, 100, due);
  EXPECT_TRUE(due.empty());
  w.take_due(1100, 100, due);
  ASSERT_EQ(seqs(due), std::vector<std::uint64_t>{1});
  EXPECT_TRUE(due[0].dup);
  EXPECT_EQ(w.next_due(100), 1200);  // 1 again, re-stamped at 1100
  due.clear();
  w.take_due(1600, 100, due);
  EXPECT_EQ(seqs(due), (std::vector<std::uint64_t>{1, 2}));
  w.ack(1, 1600);
  w.ack(2, 1600);
  EXPECT_FALSE(w.next_due(100).has_value());
}

}  // namespace

namespace {

TEST(DeliveryWindowQoS2, RecReleasesCompTakesOutAndAckDoesNot) {
  delivery_window w(1, 10);
  EXPECT_TRUE(w.offer(msg(1), 0, nullptr, 2));
  EXPECT_FALSE(w.offer(msg(2), 0, nullptr, 1));  // waits behind the QoS 2 one
  EXPECT_FALSE(w.ack(1, 1));                     // a QoS 2 delivery is not acknowledged with ack
  EXPECT_FALSE(w.complete(1, 1));                // nor completed before it is released
  EXPECT_TRUE(w.release(1, 10));
  EXPECT_FALSE(w.release(1, 11));  // a pubrec sent again: already released
  EXPECT_FALSE(w.release(7, 11));  // not in flight
  EXPECT_EQ(w.in_flight(), 1u);    // still holds its slot until pubcomp
  std::vector<delivery_window::entry> ready;
  w.take_ready(ready);
  EXPECT_TRUE(ready.empty());
  EXPECT_TRUE(w.complete(1, 12));
  EXPECT_FALSE(w.complete(1, 12));  // twice
  w.take_ready(ready);
  ASSERT_EQ(seqs(ready), std::vector<std::uint64_t>{2});
  EXPECT_EQ(ready[0].qos, 1);
}

TEST(DeliveryWindowQoS2, WhatFallsDueIsTheMessageBeforeRecAndTheRelAfter) {
  delivery_window w(4, 10);
  w.offer(msg(1), 0, nullptr, 2);
  w.offer(msg(2), 0, nullptr, 2);
  EXPECT_TRUE(w.release(2, 50));  // re-stamped: its pubrel falls due from 50
  std::vector<delivery_window::entry> due;
  w.take_due(100, 100, due);
  ASSERT_EQ(seqs(due), std::vector<std::uint64_t>{1});
  EXPECT_FALSE(due[0].released);
  EXPECT_TRUE(due[0].dup);
  due.clear();
  w.take_due(150, 100, due);
  ASSERT_EQ(seqs(due), std::vector<std::uint64_t>{2});
  EXPECT_TRUE(due[0].released);
  // A resumed session: everything in flight, each in its state.
  due.clear();
  w.take_all(200, due);
  ASSERT_EQ(due.size(), 2u);
  EXPECT_FALSE(due[0].released);
  EXPECT_TRUE(due[1].released);
}

TEST(DeliveryWindowQoS2, ARestoredReleasedDeliveryWaitsAndComesOutReleased) {
  delivery_window w(1, 10);
  w.offer(msg(1), 0, nullptr, 1);
  EXPECT_FALSE(w.offer(msg(2), 0, nullptr, 2, true));
  EXPECT_TRUE(w.ack(1, 5));
  std::vector<delivery_window::entry> ready;
  w.take_ready(ready);
  ASSERT_EQ(ready.size(), 1u);
  EXPECT_TRUE(ready[0].released);
  EXPECT_TRUE(w.complete(2, 6));
  // discard takes out any state (an expired message).
  w.offer(msg(3), 7, nullptr, 2);
  EXPECT_TRUE(w.discard(3, 8));
  EXPECT_EQ(w.in_flight(), 0u);
}

// MQTT 3.3.1.1: DUP only on a re-delivery. What waited for an offline session goes out the
// first time unflagged; what was sent (or may have been: restored) comes again flagged.
TEST(DeliveryWindow, DupOnlyOnARedelivery) {
  using o = delivery_window::origin;
  delivery_window w(3, 10);
  w.offer(msg(1), 0);                                 // sent to the client, then it left
  w.offer(msg(2), 0, nullptr, 1, false, o::offline);  // arrived while it was away
  w.offer(msg(3), 0, nullptr, 1, false, o::restored);
  w.offer(msg(4), 0, nullptr, 1, false, o::offline);  // waits: the window holds 3
  std::vector<delivery_window::entry> out;
  w.take_all(10, out);
  ASSERT_EQ(seqs(out), (std::vector<std::uint64_t>{1, 2, 3}));
  EXPECT_TRUE(out[0].dup);
  EXPECT_FALSE(out[1].dup);
  EXPECT_TRUE(out[2].dup);
  EXPECT_TRUE(w.ack(1, 20));
  out.clear();
  w.take_ready(out);
  ASSERT_EQ(seqs(out), (std::vector<std::uint64_t>{4}));
  EXPECT_FALSE(out[0].dup);  // in flight for the first time
  out.clear();
  w.take_all(30, out);  // a second resume: now everything was sent once
  for (const auto& e : out)
    EXPECT_TRUE(e.dup) << e.msg->seq;
}

}  // namespace
