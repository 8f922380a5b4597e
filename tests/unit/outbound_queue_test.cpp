// The connection's writer without a socket: what a write takes from the queue, how small
// frames are staged into one buffer, the byte bound on QoS 0 messages and what it drops.
#include "net/outbound_queue.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace wsagent::net {
namespace {

outbound_queue::item own(std::string bytes) {
  return {nullptr, nullptr, std::move(bytes), false};
}

// A QoS 0 delivery: bytes shared with other recipients, droppable.
outbound_queue::item message(const std::shared_ptr<std::string>& bytes) {
  auto m = std::make_shared<core::message>();
  return {m, bytes.get(), {}, true};
}

std::string concat(std::span<const outbound_queue::buffer> bufs) {
  std::string out;
  for (const auto& b : bufs)
    out.append(b.data, b.size);
  return out;
}

TEST(OutboundQueue, OneWriteTakesEverythingSmallAsOneStagedBuffer) {
  outbound_queue q(1 << 20);
  auto shared = std::make_shared<std::string>("msg|");
  q.push(own("a|"));
  q.push(message(shared));
  q.push(own("b|"));
  auto bufs = q.gather();
  ASSERT_EQ(bufs.size(), 1u);  // three small parts, one contiguous copy
  EXPECT_EQ(concat(bufs), "a|msg|b|");
  EXPECT_TRUE(q.writing());
  EXPECT_TRUE(q.gather().empty());  // one write at a time
  std::size_t bytes = 0;
  EXPECT_EQ(q.written(&bytes), 3u);
  EXPECT_EQ(bytes, 8u);
  EXPECT_TRUE(q.empty());
}

TEST(OutboundQueue, LargeFramesGoFromWhereTheyLieAndAWriteIsBounded) {
  outbound_queue q(1 << 30);
  auto big = std::make_shared<std::string>(100 * 1024, 'x');
  for (int i = 0; i < 4; ++i)
    q.push(message(big));
  auto bufs = q.gather();
  // 256 KiB per write: two of the 100 KiB frames (a third would pass it).
  ASSERT_EQ(bufs.size(), 2u);
  EXPECT_EQ(bufs[0].data, big->data());  // not copied
  EXPECT_EQ(q.written(), 2u);
  EXPECT_EQ(q.gather().size(), 2u);
  // A header of the connection's own before shared bytes: two parts, in order.
  outbound_queue h(1 << 20);
  auto tail = std::make_shared<std::string>(2000, 'p');
  h.push({std::make_shared<core::message>(), tail.get(), "HEAD", false, true});
  auto parts = h.gather();
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(std::string(parts[0].data, parts[0].size), "HEAD");
  EXPECT_EQ(parts[1].size, 2000u);
}

TEST(OutboundQueue, PastTheByteBoundTheOldestWaitingMessagesGo) {
  outbound_queue q(10);
  auto four = std::make_shared<std::string>("1234");
  q.push(own("reply"));  // never dropped, not counted
  EXPECT_EQ(q.push(message(four)), 0u);
  EXPECT_EQ(q.push(message(four)), 0u);  // 8 of 10
  EXPECT_FALSE(q.full());
  EXPECT_EQ(q.push(message(four)), 1u);  // 12 > 10: the oldest goes
  EXPECT_EQ(q.waiting_bytes(), 8u);
  EXPECT_EQ(q.waiting_messages(), 2u);
  EXPECT_EQ(q.pending_replies(), 1u);
  // What is being written is never dropped.
  auto bufs = q.gather();
  EXPECT_EQ(concat(bufs), "reply12341234");
  EXPECT_EQ(q.push(message(four)), 0u);  // nothing waits: nothing to drop
  // The newest always stays, even alone over the bound.
  auto huge = std::make_shared<std::string>(64, 'h');
  EXPECT_EQ(q.push(message(huge)), 1u);
  EXPECT_EQ(q.waiting_messages(), 1u);
  EXPECT_TRUE(q.full());
}

TEST(OutboundQueue, ACountBoundBesidesTheBytes) {
  outbound_queue q(1 << 20, 2);
  auto one = std::make_shared<std::string>("1");
  q.push(message(one));
  q.push(message(one));
  EXPECT_TRUE(q.full());
  EXPECT_EQ(q.push(message(one)), 1u);
  EXPECT_EQ(q.waiting_messages(), 2u);
}

TEST(OutboundQueue, ClosingDropsWaitingMessagesButNotRepliesAndEmptyItemsPass) {
  outbound_queue q(1 << 20);
  auto m = std::make_shared<std::string>("m");
  q.push(message(m));
  q.push(own("bye"));
  q.push(message(m));
  q.drop_waiting_messages();
  EXPECT_EQ(concat(q.gather()), "bye");
  q.written();
  // A delivery too large for its client is queued as nothing: it leaves, it is not written.
  static const std::string nothing;
  q.push({std::make_shared<core::message>(), &nothing, {}, true});
  EXPECT_TRUE(q.gather().empty());
  EXPECT_TRUE(q.empty());
  EXPECT_FALSE(q.writing());
}

}  // namespace
}  // namespace wsagent::net
