#include "core/router.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "common/clock.hpp"
#include "core/store_writer.hpp"
#include "store/memory_store.hpp"

namespace wsagent::core {
namespace {

struct recording_sink : session_sink {
  std::vector<message_ptr> got;
  std::vector<std::uint8_t> qos_got;
  std::vector<close_reason> kicks;
  void deliver(message_ptr m, std::uint8_t qos) override {
    got.push_back(std::move(m));
    qos_got.push_back(qos);
  }
  void kick(close_reason why, std::string_view) override { kicks.push_back(why); }
};

std::shared_ptr<session> make_session(const std::string& id, recording_sink& sink) {
  return std::make_shared<session>(id, id, acl::allow_all(), &sink);
}

publish_options to(std::string_view id) {
  publish_options o;
  o.to = id;
  return o;
}
publish_options retained() {
  publish_options o;
  o.retain = true;
  return o;
}
publish_options when_durable(std::function<void(bool)> done) {
  publish_options o;
  o.on_durable = std::move(done);
  return o;
}

message_ptr make_message(const std::string& tag, std::uint8_t qos = 0) {
  auto m = std::make_shared<message>();
  m->tag = tag;
  m->payload = "1";
  m->qos = qos;
  return m;
}

TEST(TagIndex, AddMatchRemove) {
  recording_sink s1, s2;
  auto a = make_session("a", s1), b = make_session("b", s2);
  tag_index idx;
  EXPECT_TRUE(idx.add("x/+/z", a.get(), 0));
  EXPECT_FALSE(idx.add("x/+/z", a.get(), 1));  // update, not a second entry
  EXPECT_TRUE(idx.add("x/#", b.get(), 0));
  EXPECT_TRUE(idx.add("#", b.get(), 0));
  EXPECT_EQ(idx.size(), 3u);
  std::vector<subscriber> out;
  EXPECT_EQ(idx.match("x/y/z", out), 3u);  // three filters' lists contributed
  EXPECT_EQ(out.size(), 3u);
  out.clear();
  idx.match("$sys/x", out);
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(idx.remove("x/+/z", a.get()));
  EXPECT_FALSE(idx.remove("x/+/z", a.get()));
  EXPECT_FALSE(idx.remove("nope/x", a.get()));
  out.clear();
  EXPECT_EQ(idx.match("x/y/z", out), 2u);
  EXPECT_EQ(out.size(), 2u);
  out.clear();
  EXPECT_EQ(idx.match("q", out), 1u);  // only "#"
  EXPECT_EQ(out.size(), 1u);
  EXPECT_TRUE(idx.remove("x/#", b.get()));
  EXPECT_TRUE(idx.remove("#", b.get()));
  EXPECT_EQ(idx.size(), 0u);
}

// The index must agree with filter_matches for every filter and tag.
TEST(TagIndex, AgreesWithFilterMatches) {
  const char* filters[] = {"#",   "+",     "a",   "a/#", "a/+",  "+/b",    "a/b",
                           "+/+", "a/+/c", "+/#", "/+",  "a//c", "$sys/#", "a/b/c/#"};
  const char* tags[] = {"a", "a/b", "a/b/c", "x/b", "/b", "a//c", "$sys/x", "a/", "b", "a/b/c/d"};
  std::vector<recording_sink> sinks(std::size(filters));
  std::vector<std::shared_ptr<session>> sessions;
  tag_index idx;
  for (std::size_t i = 0; i < std::size(filters); ++i) {
    sessions.push_back(make_session("s" + std::to_string(i), sinks[i]));
    idx.add(filters[i], sessions.back().get(), 0);
  }
  for (auto t : tags) {
    std::vector<subscriber> out;
    idx.match(t, out);
    for (std::size_t i = 0; i < std::size(filters); ++i) {
      bool in =
          std::any_of(out.begin(), out.end(), [&](auto& s) { return s.who == sessions[i].get(); });
      EXPECT_EQ(in, filter_matches(filters[i], t)) << filters[i] << " ~ " << t;
    }
  }
}

TEST(Router, OverlappingSubscriptionsDeliverOnce) {
  router r({});
  recording_sink sink, psink;
  auto s = make_session("sub", sink);
  auto p = make_session("pub", psink);
  r.attach(s);
  r.attach(p);
  ASSERT_TRUE(r.subscribe(*s, "a/+/c", 0).ok());
  ASSERT_TRUE(r.subscribe(*s, "a/#", 0).ok());
  ASSERT_TRUE(r.subscribe(*s, "#", 0).ok());
  auto res = r.publish(*p, make_message("a/b/c"));
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res.delivered, 1u);
  EXPECT_EQ(sink.got.size(), 1u);
}

TEST(Router, OneFilterFanOutReachesEachSubscriberOnce) {
  // One contributing filter: the router skips its de-duplication, and must still be right.
  router r({});
  std::vector<recording_sink> sinks(3);
  recording_sink psink;
  std::vector<std::shared_ptr<session>> subs;
  for (std::size_t i = 0; i < sinks.size(); ++i) {
    subs.push_back(make_session("s" + std::to_string(i), sinks[i]));
    r.attach(subs.back());
    ASSERT_TRUE(r.subscribe(*subs.back(), "plant/line", 0).ok());
  }
  auto p = make_session("pub", psink);
  r.attach(p);
  auto res = r.publish(*p, make_message("plant/line"));
  EXPECT_EQ(res.delivered, 3u);
  for (auto& sk : sinks)
    EXPECT_EQ(sk.got.size(), 1u);
}

TEST(Router, ToAndOneSubscriptionDeliverOnce) {
  // The addressed client also subscribes to the tag, through the only matching filter.
  router r({});
  recording_sink dev_sink, psink;
  auto dev = make_session("sensor-001", dev_sink);
  auto p = make_session("ctl", psink);
  r.attach(dev);
  r.attach(p);
  ASSERT_TRUE(r.subscribe(*dev, "devices/sensor-001/control", 0).ok());
  auto res = r.publish(*p, make_message("devices/sensor-001/control"), to("sensor-001"));
  EXPECT_EQ(res.delivered, 1u);
  EXPECT_EQ(dev_sink.got.size(), 1u);
}

TEST(Router, DirectDeliveryWithTo) {
  router r({});
  recording_sink dev_sink, dash_sink;
  auto dev = make_session("sensor-001", dev_sink);
  auto dash = make_session("dash", dash_sink);
  r.attach(dev);
  r.attach(dash);
  ASSERT_TRUE(r.subscribe(*dash, "devices/#", 0).ok());
  ASSERT_TRUE(r.subscribe(*dev, "devices/sensor-001/control", 0).ok());
  auto res = r.publish(*dash, make_message("devices/sensor-001/control"), to("sensor-001"));
  EXPECT_EQ(res.delivered, 2u);  // dashboard (its own subscription) and the device, once
  EXPECT_EQ(dev_sink.got.size(), 1u);
}

TEST(Router, TakeoverKicksTheOldSession) {
  router r({});
  recording_sink old_sink, new_sink;
  auto old_s = make_session("dev", old_sink);
  auto new_s = make_session("dev", new_sink);
  EXPECT_FALSE(r.attach(old_s));
  ASSERT_TRUE(r.subscribe(*old_s, "t", 0).ok());
  EXPECT_TRUE(r.attach(new_s));
  ASSERT_EQ(old_sink.kicks.size(), 1u);
  EXPECT_EQ(old_sink.kicks[0], close_reason::taken_over);
  r.detach(*old_s);  // the old connection goes; the new one stays registered
  EXPECT_EQ(r.session_count(), 1u);
  EXPECT_EQ(r.subscription_count(), 0u);
}

// Takeovers in a chain (A by B, B by C): a QoS 1 delivery that reaches A's connection late is
// handed back to A's session and must reach C, even when B is already gone.
TEST(RouterSessions, ALateDeliveryFollowsAChainOfTakeovers) {
  router r({});
  recording_sink sa, sb, sc;
  auto persistent = [](const std::string& id, recording_sink& sink) {
    return std::make_shared<session>(id, id, acl::allow_all(), &sink, session_options{true, 3600});
  };
  auto a = persistent("dev", sa);
  r.attach(a);
  ASSERT_TRUE(r.subscribe(*a, "t", 1).ok());
  auto b = persistent("dev", sb);
  bool resumed = false;
  r.attach(b, &resumed);
  EXPECT_TRUE(resumed);
  EXPECT_TRUE(a->superseded());
  auto c = persistent("dev", sc);
  r.attach(c, &resumed);
  EXPECT_TRUE(resumed);
  r.detach(*b);
  b.reset();  // B's connection is gone first
  auto m = make_message("t", 1);
  const_cast<message&>(*m).seq = r.next_seq();
  r.redeliver(*a, m, 1);  // what reached A's connection after it was taken over
  ASSERT_EQ(sc.got.size(), 1u);
  EXPECT_EQ(sc.got[0], m);
  EXPECT_TRUE(sa.got.empty());
  EXPECT_EQ(r.subscription_count_of(*c), 1u);
  EXPECT_EQ(r.subscription_count_of(*a), 0u);
}

// Deny rules on the routing path: "#" is allowed, "secret/#" denied, so a secret message
// reaches neither the plain subscription nor the group member whose role denies it, and a
// retained secret message is not handed to a new subscription.
TEST(Router, DeniedTagsAreNeverDelivered) {
  router r({});
  grants g;
  g.publish = {"#"};
  g.subscribe = {"#"};
  g.deny_subscribe = {"secret/#"};
  recording_sink staff_sink, other_sink, pub_sink;
  auto staff = std::make_shared<session>("staff", "staff", acl(g, "staff", "staff"), &staff_sink);
  auto other = make_session("other", other_sink);
  auto pub = make_session("pub", pub_sink);
  r.attach(staff);
  r.attach(other);
  r.attach(pub);
  ASSERT_TRUE(r.subscribe(*staff, "#", 0).ok());
  EXPECT_EQ(r.subscribe(*staff, "secret/#", 0).error, route_error::forbidden);
  ASSERT_TRUE(r.subscribe(*staff, "$share/g/#", 0).ok());
  ASSERT_TRUE(r.subscribe(*other, "$share/g/#", 0).ok());
  for (int i = 0; i < 4; ++i)
    r.publish(*pub, make_message("secret/x"));
  EXPECT_TRUE(staff_sink.got.empty());
  EXPECT_EQ(other_sink.got.size(), 4u);  // every one, the group never picks the staff member
  r.publish(*pub, make_message("public/x"));
  EXPECT_FALSE(staff_sink.got.empty());
  r.publish(*pub, make_message("secret/kept"), retained());
  std::vector<message_ptr> kept;
  ASSERT_TRUE(r.subscribe(*staff, "+/kept", 0, &kept).ok());
  EXPECT_TRUE(kept.empty());
}

TEST(Router, RefusesWhatTheAclForbids) {
  router r({});
  recording_sink sink;
  grants g;
  g.publish = {"devices/%c/#"};
  g.subscribe = {"devices/%c/control"};
  auto s = std::make_shared<session>("d1", "d1", acl(g, "d1", "d1"), &sink);
  r.attach(s);
  EXPECT_EQ(r.subscribe(*s, "devices/+/control", 0).error, route_error::forbidden);
  EXPECT_TRUE(r.subscribe(*s, "devices/d1/control", 0).ok());
  EXPECT_EQ(r.publish(*s, make_message("devices/d2/status")).error, route_error::forbidden);
  EXPECT_TRUE(r.publish(*s, make_message("devices/d1/status")).ok());
  EXPECT_EQ(r.publish(*s, make_message("$sys/x")).error, route_error::forbidden);
}

TEST(Router, LimitsAndValidation) {
  router_limits limits;
  limits.max_subscriptions = 2;
  limits.tags.max_depth = 3;
  router r(limits);
  recording_sink sink;
  auto s = make_session("c", sink);
  r.attach(s);
  EXPECT_TRUE(r.subscribe(*s, "a", 0).ok());
  EXPECT_TRUE(r.subscribe(*s, "b", 0).ok());
  EXPECT_TRUE(r.subscribe(*s, "b", 0).ok());  // again: not a new one
  EXPECT_EQ(r.subscribe(*s, "c", 0).error, route_error::too_many_subscriptions);
  auto bad = r.subscribe(*s, "a/#/b", 0);
  EXPECT_EQ(bad.error, route_error::invalid_tag);
  EXPECT_EQ(bad.tag, tag_error::bad_wildcard);
  EXPECT_EQ(r.publish(*s, make_message("a/b/c/d")).tag, tag_error::too_deep);
  EXPECT_TRUE(r.unsubscribe(*s, "a").ok());
  EXPECT_TRUE(r.subscribe(*s, "c", 0).ok());
}

TEST(RouterShared, EachMessageGoesToOneMemberInTurn) {
  router r({});
  std::vector<recording_sink> sinks(3);
  recording_sink psink, other;
  std::vector<std::shared_ptr<session>> members;
  for (std::size_t i = 0; i < sinks.size(); ++i) {
    members.push_back(make_session("m" + std::to_string(i), sinks[i]));
    r.attach(members.back());
    ASSERT_TRUE(r.subscribe(*members.back(), "$share/g/plant/+/temp", 0).ok());
  }
  auto plain = make_session("plain", other);  // a plain subscriber gets every message
  r.attach(plain);
  ASSERT_TRUE(r.subscribe(*plain, "plant/#", 0).ok());
  auto p = make_session("pub", psink);
  r.attach(p);
  for (int i = 0; i < 30; ++i)
    ASSERT_EQ(r.publish(*p, make_message("plant/l1/temp")).delivered, 2u);
  for (auto& sk : sinks)
    EXPECT_EQ(sk.got.size(), 10u);  // round robin: an even spread
  EXPECT_EQ(other.got.size(), 30u);
  EXPECT_EQ(r.publish(*p, make_message("plant/l1/other")).delivered, 1u);  // only "plant/#"
  EXPECT_EQ(r.subscription_count(), 4u);
  // A member that leaves is not chosen; the group ends with its last member.
  r.detach(*members[0]);
  for (int i = 0; i < 10; ++i)
    r.publish(*p, make_message("plant/l1/temp"));
  EXPECT_EQ(sinks[0].got.size(), 10u);
  EXPECT_EQ(sinks[1].got.size() + sinks[2].got.size(), 30u);
  ASSERT_TRUE(r.unsubscribe(*members[1], "$share/g/plant/+/temp").ok());
  ASSERT_TRUE(r.unsubscribe(*members[2], "$share/g/plant/+/temp").ok());
  EXPECT_EQ(r.publish(*p, make_message("plant/l1/temp")).delivered, 1u);
  EXPECT_EQ(r.subscription_count(), 1u);
}

TEST(RouterShared, TwoGroupsEachGetTheMessageAndNoRetained) {
  router r({});
  recording_sink a, b, psink;
  auto sa = make_session("a", a), sb = make_session("b", b), p = make_session("p", psink);
  r.attach(sa);
  r.attach(sb);
  r.attach(p);
  ASSERT_TRUE(r.publish(*p, make_message("t"), retained()).ok());  // retained
  std::vector<message_ptr> retained;
  ASSERT_TRUE(r.subscribe(*sa, "$share/one/t", 0, &retained).ok());
  ASSERT_TRUE(r.subscribe(*sb, "$share/two/#", 0, &retained).ok());
  EXPECT_TRUE(retained.empty());
  EXPECT_EQ(r.publish(*p, make_message("t")).delivered, 2u);
  EXPECT_EQ(a.got.size(), 1u);
  EXPECT_EQ(b.got.size(), 1u);
}

TEST(RouterShared, ManyGroupsOnlyTheMatchingOnesGetTheMessage) {
  // Groups are indexed by their filter: a publish reaches the groups whose filter matches,
  // however many others there are, and a group that empties leaves the index.
  router r({});
  std::vector<recording_sink> sinks(100);
  std::vector<std::shared_ptr<session>> members;
  for (std::size_t i = 0; i < sinks.size(); ++i) {
    members.push_back(make_session("w" + std::to_string(i), sinks[i]));
    r.attach(members.back());
    const auto filter = "$share/g" + std::to_string(i) + "/site/" + std::to_string(i) + "/#";
    ASSERT_TRUE(r.subscribe(*members.back(), filter, 0).ok());
  }
  recording_sink wild_sink, psink;
  auto wild = make_session("wild", wild_sink);
  r.attach(wild);
  ASSERT_TRUE(r.subscribe(*wild, "$share/all/site/+/x", 0).ok());
  auto p = make_session("pub", psink);
  r.attach(p);
  EXPECT_EQ(r.publish(*p, make_message("site/7/x")).delivered, 2u);
  EXPECT_EQ(r.publish(*p, make_message("site/42/y/z")).delivered, 1u);
  EXPECT_EQ(r.publish(*p, make_message("other/7/x")).delivered, 0u);
  for (std::size_t i = 0; i < sinks.size(); ++i)
    EXPECT_EQ(sinks[i].got.size(), i == 7 || i == 42 ? 1u : 0u) << i;
  EXPECT_EQ(wild_sink.got.size(), 1u);
  ASSERT_TRUE(r.unsubscribe(*members[7], "$share/g7/site/7/#").ok());
  EXPECT_EQ(r.publish(*p, make_message("site/7/x")).delivered, 1u);     // the "+" group only
  ASSERT_TRUE(r.subscribe(*members[8], "$share/g7/site/7/#", 0).ok());  // the group anew
  EXPECT_EQ(r.publish(*p, make_message("site/7/q")).delivered, 1u);
  EXPECT_EQ(sinks[8].got.size(), 1u);
}

TEST(RouterShared, ValidationAndRights) {
  router r({});
  recording_sink sink;
  for (const char* bad :
       {"$share/", "$share/g", "$share/g/", "$share//a", "$share/g+/a", "$share/g/a/#/b"}) {
    auto s = make_session(std::string("c") + bad, sink);
    auto res = r.subscribe(*s, bad, 0);
    EXPECT_EQ(res.error, route_error::invalid_tag) << bad;
  }
  grants g;
  g.subscribe = {"devices/%c/#"};
  auto s = std::make_shared<session>("d1", "d1", acl(g, "d1", "d1"), &sink);
  r.attach(s);
  EXPECT_TRUE(r.subscribe(*s, "$share/g/devices/d1/x", 0).ok());  // the inner filter is checked
  EXPECT_EQ(r.subscribe(*s, "$share/g/devices/+/x", 0).error, route_error::forbidden);
}

TEST(RouterShared, ALeavingMembersUnacknowledgedMessagesGoToTheRest) {
  router r({});
  recording_sink a, b, c, psink;
  auto sa = make_session("a", a), sb = make_session("b", b), sc = make_session("c", c);
  auto p = make_session("p", psink);
  for (auto* s : {&sa, &sb, &sc, &p})
    r.attach(*s);
  ASSERT_TRUE(r.subscribe(*sa, "$share/g/t/#", 1).ok());
  ASSERT_TRUE(r.subscribe(*sb, "$share/g/t/#", 1).ok());
  ASSERT_TRUE(r.subscribe(*sc, "$share/other/t/#", 0).ok());  // QoS 0: not a taker
  std::vector<message_ptr> held{make_message("t/1", 1), make_message("u/1", 1)};
  r.detach(*sa);
  const std::string filters[] = {"$share/g/t/#"};
  EXPECT_EQ(r.reshare(*sa, filters, held), 1u);  // u/1 is not the group's
  ASSERT_EQ(b.got.size(), 1u);
  EXPECT_EQ(b.got[0]->tag, "t/1");
  EXPECT_TRUE(a.got.empty());
  EXPECT_TRUE(c.got.empty());
}

TEST(Router, NoLocalKeepsAPublishersOwnMessagesFromIt) {
  router r({});
  recording_sink me_sink, other_sink;
  auto me = make_session("me", me_sink), other = make_session("other", other_sink);
  r.attach(me);
  r.attach(other);
  subscription_options nl(1);
  nl.no_local = true;
  ASSERT_TRUE(r.subscribe(*me, "t/#", nl).ok());
  ASSERT_TRUE(r.subscribe(*other, "t/#", nl).ok());
  auto mine = std::make_shared<message>();
  mine->tag = "t/x";
  mine->from = "me";
  EXPECT_EQ(r.publish(*me, mine).delivered, 1u);
  EXPECT_TRUE(me_sink.got.empty());
  EXPECT_EQ(other_sink.got.size(), 1u);
  // Another filter without no local still brings it.
  ASSERT_TRUE(r.subscribe(*me, "t/x", 0).ok());
  EXPECT_EQ(r.publish(*me, mine).delivered, 2u);
  EXPECT_EQ(me_sink.got.size(), 1u);
}

TEST(Message, EncodedOncePerFormat) {
  wire_registry reg;
  const auto one = reg.reserve_slot("test.one");
  const auto two = reg.reserve_slot("test.two");
  EXPECT_NE(one, two);
  EXPECT_EQ(reg.reserve_slot("test.one"), one);  // a name keeps its slot
  message m;
  int calls = 0;
  auto enc = [&](std::string& out) {
    ++calls;
    out = "frame";
  };
  const std::string& a = m.encoded(one, enc);
  const std::string& b = m.encoded(one, enc);
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(calls, 1);
  m.encoded(two, enc);
  EXPECT_EQ(calls, 2);
}

TEST(Message, SlotsAndFlagsAreBounded) {
  // Slots past the capacity are refused with a message naming the format (at start-up).
  wire_registry reg;
  for (std::size_t i = 0; i < wire_registry::max_slots; ++i)
    EXPECT_EQ(reg.reserve_slot("test.fill." + std::to_string(i)), i);
  EXPECT_THROW(reg.reserve_slot("one.too.many"), std::length_error);
  const auto f1 = reg.reserve_flag("test.flag.a");
  const auto f2 = reg.reserve_flag("test.flag.b");
  EXPECT_EQ(f1, 1);  // in the order reserved: the stored bits depend on it
  EXPECT_EQ(f2, 2);
  EXPECT_EQ(reg.reserve_flag("test.flag.a"), f1);
}

TEST(Message, MsgidsAreUnique) {
  auto a = make_msgid(), b = make_msgid();
  EXPECT_NE(a, b);
  EXPECT_FALSE(a.empty());
}

TEST(Router, DeliversAtTheLowerQosAndTheHighestOfOverlappingFilters) {
  router r({});
  recording_sink low, high, both, pub_sink;
  auto a = make_session("low", low), b = make_session("high", high);
  auto c = make_session("both", both), p = make_session("pub", pub_sink);
  for (const auto& s : {a, b, c, p})
    ASSERT_FALSE(r.attach(s));
  ASSERT_TRUE(r.subscribe(*a, "q/#", 0).ok());
  ASSERT_TRUE(r.subscribe(*b, "q/#", 2).ok());
  ASSERT_TRUE(r.subscribe(*c, "q/+", 0).ok());
  ASSERT_TRUE(r.subscribe(*c, "q/x", 1).ok());
  ASSERT_TRUE(r.publish(*p, make_message("q/x", 1)).ok());
  ASSERT_TRUE(r.publish(*p, make_message("q/x", 0)).ok());
  EXPECT_EQ(low.qos_got, (std::vector<std::uint8_t>{0, 0}));
  EXPECT_EQ(high.qos_got, (std::vector<std::uint8_t>{1, 0}));
  EXPECT_EQ(both.qos_got, (std::vector<std::uint8_t>{1, 0}));  // once each, at the higher
}

// The real memory store behind a gate the test holds: writes wait until it is opened.
class gated_store : public store {
 public:
  std::mutex gate;
  const char* kind() const noexcept override { return "gated"; }
  store_snapshot load() override { return inner_.load(); }
  void write(std::span<const store_op> batch) override {
    std::lock_guard lock(gate);
    inner_.write(batch);
  }
  std::optional<stored_client> load_client(std::string_view id) override {
    return inner_.load_client(id);
  }
  std::vector<message_ptr> load_retained(std::string_view f) override {
    return inner_.load_retained(f);
  }

 private:
  wsagent::store::memory_store inner_;
};

TEST(RouterQoS2, APersistentPublishersQoS2MessageIsDeliveredOnlyOnceDurable) {
  gated_store st;
  store_writer writer(st);
  router r(router_limits{});
  r.set_store(&writer);
  recording_sink sub_sink, pub_sink;
  auto sub = make_session("sub", sub_sink);
  r.attach(sub);
  ASSERT_TRUE(r.subscribe(*sub, "t", 2).ok());
  auto pub = std::make_shared<session>("pub", "pub", acl::allow_all(), &pub_sink,
                                       session_options{true, 60});
  r.attach(pub);
  std::unique_lock gate(st.gate);  // nothing becomes durable
  auto m2 = std::make_shared<message>();
  m2->tag = "t";
  m2->qos = 2;
  m2->seq = r.next_seq();
  std::atomic<bool> durable{false};
  publish_options o2;
  o2.on_durable = [&](bool ok) { durable = ok; };
  o2.with.push_back(store_ops::put_incoming{"pub", "m-1"});
  auto res = r.publish(*pub, m2, std::move(o2));
  EXPECT_TRUE(res.pending_durable);
  // A QoS 1 message is not held back (no persistent recipient: acked once routed).
  auto m1 = std::make_shared<message>();
  m1->tag = "t";
  m1->qos = 1;
  m1->seq = r.next_seq();
  EXPECT_FALSE(r.publish(*pub, m1, when_durable([](bool) {})).pending_durable);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_EQ(sub_sink.got.size(), 1u);  // only the QoS 1 one: the QoS 2 one waits for the disk
  EXPECT_EQ(sub_sink.got[0], m1);
  gate.unlock();
  for (int i = 0; i < 200 && !durable; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_TRUE(durable);
  ASSERT_EQ(sub_sink.got.size(), 2u);  // delivered before the publisher's completion ran
  EXPECT_EQ(sub_sink.got[1], m2);
  EXPECT_EQ(sub_sink.qos_got[1], 2);
}

// One start of the agent over `st`: a router with its store writer, restored from `snap`.
struct agent_start {
  store_writer writer;
  router r{router_limits{}};
  agent_start(store& st, const store_snapshot& snap) : writer(st) {
    r.set_store(&writer);
    r.restore_sessions(snap, 32, 1000);
    r.restore_wills(snap.wills);
  }
};

TEST(RouterWills, ADelayedWillIsStoredRestoredAndDroppedWhenTheClientReturns) {
  wsagent::store::memory_store st;
  auto will = std::make_shared<message>();
  will->tag = "wills/dev";
  will->payload = "\"offline\"";
  will->from = "dev";
  const auto due = wsagent::common::now_ms() + 60'000;
  recording_sink dev_sink;
  auto dev = [&] {
    return std::make_shared<session>("dev", "", acl::allow_all(), &dev_sink,
                                     session_options{true, 3600});
  };
  {
    agent_start a(st, {});
    auto s = dev();
    a.r.attach(s);
    a.r.detach(*s);
    a.r.delay_will(s, will, true, due);
    a.writer.flush();
  }
  auto snap = st.load();
  ASSERT_EQ(snap.wills.size(), 1u);
  EXPECT_EQ(snap.wills[0].client_id, "dev");
  EXPECT_EQ(snap.wills[0].due_ms, due);
  EXPECT_TRUE(snap.wills[0].retain);
  // A later start: the will waits for its time, then goes (published as its client, whose
  // restored session holds no rights of its own), retained, and leaves the store.
  {
    agent_start a(st, snap);
    recording_sink watch_sink;
    auto watch = make_session("watch", watch_sink);
    a.r.attach(watch);
    ASSERT_TRUE(a.r.subscribe(*watch, "wills/#", 0).ok());
    a.r.publish_due_wills(due - 1);
    EXPECT_TRUE(watch_sink.got.empty());
    a.r.publish_due_wills(due);
    ASSERT_EQ(watch_sink.got.size(), 1u);
    EXPECT_EQ(watch_sink.got[0]->payload, "\"offline\"");
    EXPECT_EQ(a.r.retained_count(), 1u);
    a.writer.flush();
    EXPECT_TRUE(st.load().wills.empty());
  }
  // Stored again, then the client is back before its time: cancelled, on disk too.
  std::vector<store_op> again{store_ops::put_will{snap.wills[0]}};
  st.write(again);
  snap = st.load();
  ASSERT_EQ(snap.wills.size(), 1u);
  {
    agent_start a(st, snap);
    a.r.attach(dev());
    a.writer.flush();
    EXPECT_TRUE(st.load().wills.empty());
  }
}

}  // namespace
}  // namespace wsagent::core
