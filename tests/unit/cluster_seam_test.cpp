// The router's cluster seam (issue 14 builds on it): the node id on every message, the
// publish observer, inject, client-id ownership and evict. A recording observer and
// ownership stand in for a cluster here; the Redis one is tested against real Redis.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "core/router.hpp"
#include "core/store_writer.hpp"
#include "store/memory_store.hpp"

namespace wsagent::core {
namespace {

struct recording_sink : session_sink {
  std::vector<message_ptr> got;
  std::vector<close_reason> kicks;
  void deliver(message_ptr m, std::uint8_t) override { got.push_back(std::move(m)); }
  void kick(close_reason why, std::string_view) override { kicks.push_back(why); }
};

struct recording_observer : publish_observer {
  struct seen {
    message_ptr msg;
    std::string to;
    bool retain;
    bool clears;
    std::vector<std::string> groups_here, groups_elsewhere;
  };
  std::vector<seen> published_;
  void published(const message_ptr& msg, const observed_publish& how) override {
    published_.push_back({msg,
                          std::string(how.to),
                          how.retain,
                          how.clears_retained,
                          {how.groups_here.begin(), how.groups_here.end()},
                          {how.groups_elsewhere.begin(), how.groups_elsewhere.end()}});
  }
};

struct recording_ownership : client_ownership {
  std::vector<std::string> events;
  void claimed(std::string_view id) override { events.push_back("claimed " + std::string(id)); }
  void released(std::string_view id) override { events.push_back("released " + std::string(id)); }
};

std::shared_ptr<message> make_message(const std::string& tag, std::uint8_t qos = 0) {
  auto m = std::make_shared<message>();
  m->tag = tag;
  m->payload = "1";
  m->qos = qos;
  return m;
}

std::shared_ptr<session> make_session(const std::string& id, recording_sink& sink,
                                      acl rights = acl::allow_all(), bool persistent = false) {
  return std::make_shared<session>(id, id, std::move(rights), &sink,
                                   session_options{persistent, persistent ? 3600 : 0});
}

struct ClusterSeam : ::testing::Test {
  router r{{}};
  recording_observer observer;
  recording_ownership ownership;
  ClusterSeam() {
    r.set_node(7);
    r.set_observer(&observer);
    r.set_ownership(&ownership);
  }
};

TEST_F(ClusterSeam, LocalPublishesCarryTheNodeIdAndAreObservedAfterRouting) {
  recording_sink ssink, psink;
  auto sub = make_session("sub", ssink), pub = make_session("pub", psink);
  r.attach(sub);
  r.attach(pub);
  ASSERT_TRUE(r.subscribe(*sub, "a/#", 0).ok());
  auto m = make_message("a/b");
  publish_options opts;
  opts.to = "sub";
  opts.retain = true;
  ASSERT_TRUE(r.publish(*pub, m, std::move(opts)).ok());
  ASSERT_EQ(ssink.got.size(), 1u);
  EXPECT_EQ(ssink.got[0]->node, 7u);
  ASSERT_EQ(observer.published_.size(), 1u);
  EXPECT_EQ(observer.published_[0].msg, m);
  EXPECT_EQ(observer.published_[0].to, "sub");
  EXPECT_TRUE(observer.published_[0].retain);
  EXPECT_FALSE(observer.published_[0].clears);
  // The agent's own messages are the node's publishes too.
  r.publish_internal(make_message("$sys/x"));
  EXPECT_EQ(observer.published_.size(), 2u);
}

TEST_F(ClusterSeam, AQoS2MessageHeldUntilDurableIsObservedOnceItIs) {
  wsagent::store::memory_store mem;
  store_writer writer(mem);
  r.set_store(&writer);
  recording_sink ssink, psink;
  auto sub = make_session("sub", ssink, acl::allow_all(), true);
  auto pub = make_session("pub", psink, acl::allow_all(), true);
  r.attach(sub);
  r.attach(pub);
  ASSERT_TRUE(r.subscribe(*sub, "q", 2).ok());
  bool durable = false;
  publish_options opts;
  opts.on_durable = [&](bool ok) { durable = ok; };
  auto res = r.publish(*pub, make_message("q", 2), std::move(opts));
  ASSERT_TRUE(res.pending_durable);
  writer.flush();
  EXPECT_TRUE(durable);
  EXPECT_EQ(ssink.got.size(), 1u);
  ASSERT_EQ(observer.published_.size(), 1u);
  EXPECT_EQ(observer.published_[0].msg->qos, 2u);
  r.set_store(nullptr);
}

TEST_F(ClusterSeam, RefusedPublishesAreNotObserved) {
  recording_sink psink;
  grants g;
  g.publish = {"mine/#"};
  auto pub = make_session("pub", psink, acl(g, "pub", "pub"));
  r.attach(pub);
  EXPECT_EQ(r.publish(*pub, make_message("theirs/x")).error, route_error::forbidden);
  EXPECT_EQ(r.publish(*pub, make_message("bad/+")).error, route_error::invalid_tag);
  EXPECT_TRUE(observer.published_.empty());
}

TEST_F(ClusterSeam, InjectRoutesAnotherNodesMessageWithoutACLOrObserver) {
  recording_sink ssink;
  auto sub = make_session("sub", ssink);
  r.attach(sub);
  ASSERT_TRUE(r.subscribe(*sub, "a/#", 1).ok());
  auto m = make_message("a/b", 1);
  m->node = 9;
  m->seq = 12345;  // the other node's number
  m->msgid = "their-id";
  publish_options opts;
  opts.retain = true;
  auto res = r.inject(m, std::move(opts));
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res.delivered, 1u);
  ASSERT_EQ(ssink.got.size(), 1u);
  EXPECT_EQ(ssink.got[0]->node, 9u);  // still the publisher's node
  EXPECT_EQ(ssink.got[0]->msgid, "their-id");
  EXPECT_NE(ssink.got[0]->seq, 12345u);  // numbered here
  EXPECT_TRUE(observer.published_.empty());
  EXPECT_EQ(r.retained_count(), 1u);  // retained here as well
  // An invalid tag is refused; this node's own message (echoed back) is ignored.
  EXPECT_EQ(r.inject(make_message("x/#")).error, route_error::invalid_tag);
  auto own = make_message("a/c");
  own->node = 7;
  auto echoed = r.inject(own);
  EXPECT_TRUE(echoed.ok());
  EXPECT_EQ(echoed.delivered, 0u);
  EXPECT_EQ(ssink.got.size(), 1u);
}

TEST_F(ClusterSeam, OwnershipIsToldWhenIdsAreTakenAndReleased) {
  recording_sink s1, s2, s3;
  auto a = make_session("a", s1);
  r.attach(a);
  r.detach(*a);  // a clean session ends
  auto p = make_session("p", s2, acl::allow_all(), true);
  r.attach(p);
  r.detach(*p);  // a persistent one stays, offline
  auto fresh = make_session("p", s3);
  r.attach(fresh);  // a clean session replaces it: the id stays this node's
  r.detach(*fresh);
  EXPECT_EQ(ownership.events, (std::vector<std::string>{"claimed a", "released a", "claimed p",
                                                        "claimed p", "released p"}));
}

TEST_F(ClusterSeam, EvictKicksTheConnectionAndDropsTheSessionHere) {
  wsagent::store::memory_store mem;
  store_writer writer(mem);
  r.set_store(&writer);
  recording_sink csink, psink;
  auto c = make_session("c", csink, acl::allow_all(), true);
  auto pub = make_session("pub", psink);
  r.attach(c);
  r.attach(pub);
  ASSERT_TRUE(r.subscribe(*c, "t", 1).ok());
  r.detach(*c);  // offline: a QoS 1 message waits in its window and in the store
  ASSERT_TRUE(r.publish(*pub, make_message("t", 1)).ok());
  writer.flush();
  ASSERT_EQ(mem.load().queue.size(), 1u);

  auto c2 = make_session("c", csink, acl::allow_all(), true);
  r.attach(c2);  // connected again here, then taken by another node
  ownership.events.clear();
  EXPECT_TRUE(r.evict("c"));
  ASSERT_EQ(csink.kicks.size(), 1u);
  EXPECT_EQ(csink.kicks[0], close_reason::taken_over);
  EXPECT_FALSE(r.detach(*c2));  // its connection finds the id gone
  EXPECT_EQ(r.session_count(), 1u);
  EXPECT_EQ(r.subscription_count(), 0u);
  EXPECT_TRUE(ownership.events.empty());  // not this node's to release
  // What its connection still does (an acknowledgement already read, a delivery handed
  // back) writes nothing: the queue entry is the new owner's. (The store is read once its
  // writer is idle: the memory store is read and written by one thread at a time.)
  writer.flush();
  const auto seq = mem.load().queue.at(0).seq;
  r.forget(*c2, seq);
  auto late = make_message("t", 1);
  late->seq = r.next_seq();
  r.redeliver(*c2, late, 1);
  // Its state stays in the store, for the new owner.
  writer.flush();
  auto held = mem.load_client("c");
  ASSERT_TRUE(held);
  EXPECT_EQ(held->queue.size(), 1u);
  EXPECT_EQ(held->messages.size(), 1u);
  EXPECT_EQ(held->session.subscriptions.size(), 1u);
  EXPECT_FALSE(r.evict("c"));
  r.set_store(nullptr);
}

TEST(MessageIds, CarryTheNodeIdAndDoNotRepeat) {
  set_msgid_node(0xabc);
  const auto a = make_msgid(), b = make_msgid();
  EXPECT_EQ(a.substr(0, 9), "00000abc-");
  EXPECT_EQ(b.substr(0, 9), "00000abc-");
  EXPECT_NE(a, b);
  set_msgid_node(0xdef);
  EXPECT_EQ(make_msgid().substr(0, 9), "00000def-");
}

// The other node takes every second message of each group.
struct alternating_policy : group_policy {
  mutable int turn = 0;
  bool take_here(std::string_view, const message&) const override { return turn++ % 2 == 0; }
};

TEST_F(ClusterSeam, TheGroupPolicyDecidesWhichNodeServesASharedGroup) {
  alternating_policy policy;
  r.set_group_policy(&policy);
  recording_sink w1, w2, pubsink;
  auto a = make_session("w1", w1), b = make_session("w2", w2), pub = make_session("pub", pubsink);
  r.attach(a);
  r.attach(b);
  r.attach(pub);
  ASSERT_TRUE(r.subscribe(*a, "$share/g/jobs/#", 0).ok());
  ASSERT_TRUE(r.subscribe(*b, "$share/g/jobs/#", 0).ok());
  for (int i = 0; i < 4; ++i)
    ASSERT_TRUE(r.publish(*pub, make_message("jobs/1")).ok());
  EXPECT_EQ(w1.got.size() + w2.got.size(), 2u);  // two here, one member each time
  ASSERT_EQ(observer.published_.size(), 4u);
  // The cluster is told which turn was served here and which the policy sent elsewhere.
  const std::vector<std::string> g{"$share/g/jobs/#"}, none;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(observer.published_[i].groups_here, i % 2 == 0 ? g : none) << i;
    EXPECT_EQ(observer.published_[i].groups_elsewhere, i % 2 == 0 ? none : g) << i;
  }
  // An injected message serves only the groups it was sent for.
  const std::vector<std::string> mine{"$share/g/jobs/#"}, other{"$share/h/jobs/#"};
  auto in = make_message("jobs/2");
  in->node = 9;
  publish_options o;
  o.only_groups = &mine;
  EXPECT_EQ(r.inject(in, std::move(o)).delivered, 1u);
  auto in2 = make_message("jobs/3");
  in2->node = 9;
  publish_options o2;
  o2.only_groups = &other;
  EXPECT_EQ(r.inject(in2, std::move(o2)).delivered, 0u);
  auto in3 = make_message("jobs/4");
  in3->node = 9;
  EXPECT_EQ(r.inject(in3, {}).delivered, 0u);  // for no group: none
}

struct recording_filters : filter_observer {
  std::vector<std::string> events;
  void filter_added(std::string_view f) override { events.push_back("+" + std::string(f)); }
  void filter_removed(std::string_view f) override { events.push_back("-" + std::string(f)); }
};

TEST_F(ClusterSeam, TheFilterObserverHearsOfANodesFirstAndLastSubscriberOfEachFilter) {
  recording_filters filters;
  recording_sink s1, s2;
  auto a = make_session("a", s1), b = make_session("b", s2, acl::allow_all(), true);
  r.attach(a);
  r.attach(b);
  ASSERT_TRUE(r.subscribe(*a, "x/#", 0).ok());  // before the observer: node_filters() has it
  r.set_filter_observer(&filters);
  EXPECT_EQ(r.node_filters(), std::vector<std::string>{"x/#"});
  ASSERT_TRUE(r.subscribe(*b, "x/#", 0).ok());  // a second subscriber: no event
  ASSERT_TRUE(r.subscribe(*b, "$share/g/y", 0).ok());
  ASSERT_TRUE(r.subscribe(*b, "$share/g/y", 1).ok());  // the same again: no event
  EXPECT_TRUE(r.unsubscribe(*a, "x/#").ok());          // b still holds it
  EXPECT_EQ(filters.events, (std::vector<std::string>{"+$share/g/y"}));
  r.detach(*a);
  r.detach(*b);  // persistent: offline, its subscriptions stay
  EXPECT_EQ(filters.events.size(), 1u);
  auto c = make_session("b", s1);
  r.attach(c);  // a clean session takes b's id: b's subscriptions go
  std::sort(filters.events.begin() + 1, filters.events.end());  // in the set's order
  EXPECT_EQ(filters.events, (std::vector<std::string>{"+$share/g/y", "-$share/g/y", "-x/#"}));
  EXPECT_TRUE(r.node_filters().empty());
}

}  // namespace
}  // namespace wsagent::core
