// The cluster's pure parts: the message envelope between nodes, the route table and its
// changes, Redis URLs. (The engine is tested with real redis-server processes:
// tests/integration/test_cluster.py.)
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "cluster/envelope.hpp"
#include "cluster/redis_connection.hpp"
#include "cluster/route_table.hpp"

namespace wsagent::cluster {
namespace {

TEST(Envelope, CarriesEveryFieldARecipientNodeNeeds) {
  core::message m;
  m.tag = "plant/l1/temp";
  m.payload = std::string("\0\x01bin", 5);
  m.from = "sensor-1";
  m.msgid = "abc-1";
  m.timestamp_ms = 1700000000123;
  m.expires_ms = 1700000060000;
  m.format = core::payload_format::binary;
  m.flags = 0x05;
  m.published_retain = true;
  m.qos = 2;
  m.node = 0xdeadbeef;
  auto props = std::make_shared<core::message_properties>();
  props->content_type = "application/octet-stream";
  props->user = {{"k", "v"}};
  m.props = props;
  std::string bytes;
  encode_envelope(m, {"device-9", {"$share/workers/jobs/#", "$share/b/x"}}, bytes);
  auto d = decode_envelope(bytes);
  ASSERT_TRUE(d.msg) << d.error;
  EXPECT_EQ(d.msg->tag, m.tag);
  EXPECT_EQ(d.msg->payload, m.payload);
  EXPECT_EQ(d.msg->from, m.from);
  EXPECT_EQ(d.msg->msgid, m.msgid);
  EXPECT_EQ(d.msg->timestamp_ms, m.timestamp_ms);
  EXPECT_EQ(d.msg->expires_ms, m.expires_ms);
  EXPECT_EQ(d.msg->format, m.format);
  EXPECT_EQ(d.msg->flags, m.flags);
  EXPECT_TRUE(d.msg->published_retain);
  EXPECT_EQ(d.msg->qos, 2);
  EXPECT_EQ(d.msg->node, m.node);
  ASSERT_TRUE(d.msg->props);
  EXPECT_EQ(d.msg->props->content_type, props->content_type);
  EXPECT_EQ(d.msg->props->user, props->user);
  EXPECT_EQ(d.opts.to, "device-9");
  EXPECT_EQ(d.opts.groups, (std::vector<std::string>{"$share/workers/jobs/#", "$share/b/x"}));
  EXPECT_FALSE(d.msg->retain);
  EXPECT_EQ(d.msg->seq, 0u);  // each node numbers its own
}

TEST(Envelope, EveryTruncationAndBadFieldIsRefused) {
  core::message m;
  m.tag = "a/b";
  m.payload = "1";
  m.node = 3;
  std::string bytes;
  encode_envelope(m, {}, bytes);
  ASSERT_TRUE(decode_envelope(bytes).msg);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    auto d = decode_envelope(std::string_view(bytes).substr(0, n));
    EXPECT_FALSE(d.msg) << n;
    EXPECT_FALSE(d.error.empty());
  }
  EXPECT_FALSE(decode_envelope(bytes + "x").msg);  // bytes after it
  auto bad = bytes;
  bad[0] = 2;  // another version
  EXPECT_FALSE(decode_envelope(bad).msg);
  bad = bytes;
  bad[2] = 3;  // qos 3
  EXPECT_FALSE(decode_envelope(bad).msg);
  bad = bytes;
  bad[5] = bad[6] = bad[7] = bad[8] = 0;  // node 0: no node
  EXPECT_FALSE(decode_envelope(bad).msg);
}

// A change of filters ("+a", "-b") and client claims ("+c:id=7").
route_change ops(std::string node, std::uint64_t v, std::vector<std::string> list) {
  route_change c;
  c.node = std::move(node);
  c.version = v;
  for (const auto& x : list) {
    const bool added = x[0] == '+';
    std::string rest = x.substr(1);
    if (rest.starts_with("c:")) {
      const auto eq = rest.find('=');
      c.ops.push_back(
          {added, {rest.substr(0, eq), eq == std::string::npos ? "" : rest.substr(eq + 1)}});
    } else {
      c.ops.push_back({added, {"f:" + rest, added ? "1" : ""}});
    }
  }
  return c;
}

std::vector<route_entry> filters(std::vector<std::string> list) {
  std::vector<route_entry> out;
  for (auto& f : list)
    out.push_back({"f:" + f, "1"});
  return out;
}

std::vector<std::string> names(const std::vector<remote_node_ptr>& v) {
  std::vector<std::string> out;
  for (const auto& n : v)
    out.push_back(n->name);
  std::sort(out.begin(), out.end());
  return out;
}

TEST(RouteChange, FormatsAndParsesEveryKind) {
  auto c = ops("n1", 42, {"+a/+/b", "-x y/#", "+$share/g/t", "+c:dev-1=17"});
  const auto text = format_route_change(c);
  EXPECT_EQ(text, "n1 42 +7:f:a/+/b1:1-7:f:x y/#0:+12:f:$share/g/t1:1+7:c:dev-12:17");
  auto back = parse_route_change(text);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->ops, c.ops);
  auto reset = parse_route_change("n2 7 !");
  ASSERT_TRUE(reset);
  EXPECT_EQ(reset->what, route_change::kind::reset);
  EXPECT_EQ(parse_route_change("n2 8 ~")->what, route_change::kind::left);
  for (std::string_view bad : {"", "n1", "n1 ", " 1 +1:a0:", "n1 x +1:a0:", "n1 1 +2:a0:",
                               "n1 1 *1:a0:", "n1 1 +0:0:", "n1 1 +1:a", "n1 1 +1:a1:", "n1 1"})
    EXPECT_FALSE(parse_route_change(bad)) << bad;
}

TEST(RouteTable, MatchesEachInterestedNodeOnce) {
  route_table t("me", "wsagent:node:");
  t.replace("b", 1, filters({"plant/+/temp", "plant/#", "#"}));
  t.replace("c", 1, filters({"other/#"}));
  t.replace("me", 1, filters({"plant/#"}));  // this node's own: not in the table
  std::vector<remote_node_ptr> out;
  t.match("plant/l1/temp", out);
  ASSERT_EQ(names(out), std::vector<std::string>{"b"});
  EXPECT_EQ(out[0]->channel, "wsagent:node:b");
  t.match("other/x", out);
  EXPECT_EQ(names(out), (std::vector<std::string>{"b", "c"}));
  t.match("$sys/clients/x/connected", out);  // '#' does not match $ tags
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(t.size(), 4u);
}

TEST(RouteTable, AppliesChangesInVersionOrderAndAsksForAResyncOnAGap) {
  route_table t("me", "p:");
  EXPECT_EQ(t.apply(ops("b", 1, {"+a"})), route_table::applied::gap);  // unknown node
  t.replace("b", 3, filters({"a"}));
  EXPECT_EQ(t.apply(ops("b", 3, {"+zzz"})), route_table::applied::stale);
  EXPECT_EQ(t.apply(ops("b", 4, {"+b", "-a"})), route_table::applied::ok);
  std::vector<remote_node_ptr> out;
  t.match("a", out);
  EXPECT_TRUE(out.empty());
  t.match("b", out);
  EXPECT_EQ(names(out), std::vector<std::string>{"b"});
  EXPECT_EQ(t.apply(ops("b", 6, {"+c"})), route_table::applied::gap);  // 5 missed
  EXPECT_EQ(*t.version_of("b"), 4u);
  // A resync read before change 4 arrived does not take the table back.
  t.replace("b", 2, filters({"old"}));
  t.match("old", out);
  EXPECT_TRUE(out.empty());
  route_change reset = ops("b", 5, {});
  reset.what = route_change::kind::reset;
  EXPECT_EQ(t.apply(reset), route_table::applied::gap);
  route_change left = ops("b", 6, {});
  left.what = route_change::kind::left;
  EXPECT_EQ(t.apply(left), route_table::applied::ok);
  EXPECT_FALSE(t.version_of("b"));
  EXPECT_EQ(t.size(), 0u);
}

TEST(RouteTable, KeepsFiltersItCannotMatchWithoutMatchingThem) {
  route_table t("me", "p:");
  t.replace("b", 1, filters({"$share/g/a/#", "a/#/b"}));  // a shared group; an invalid filter
  t.replace("c", 1, {{"x:later-kind", "?"}});             // a key of a later version
  EXPECT_EQ(t.size(), 2u);
  std::vector<remote_node_ptr> out;
  t.match("a/x/b", out);
  EXPECT_TRUE(out.empty());
  t.remove("b");
  EXPECT_EQ(t.size(), 0u);
}

TEST(RouteTable, SharedGroupsTakeTurnsAcrossNodes) {
  route_table t("me", "p:");
  t.replace("b", 1, filters({"$share/w/jobs/#"}));
  t.replace("c", 1, filters({"$share/w/jobs/#", "$share/other/x"}));
  std::vector<std::string> groups;
  t.match_groups("jobs/1", groups);
  EXPECT_EQ(groups, std::vector<std::string>{"$share/w/jobs/#"});
  // This node and the two others in turn: one message in three here.
  int here = 0;
  for (int i = 0; i < 30; ++i)
    here += t.take_here("$share/w/jobs/#");
  EXPECT_EQ(here, 10);
  EXPECT_TRUE(t.take_here("$share/nobody-else/x"));  // no other node has members
  std::map<std::string, int> picked;
  for (int i = 0; i < 10; ++i)
    ++picked[t.pick_node("$share/w/jobs/#")->name];
  EXPECT_EQ(picked, (std::map<std::string, int>{{"b", 5}, {"c", 5}}));
  t.remove("c");
  EXPECT_EQ(t.pick_node("$share/w/jobs/#")->name, "b");
  EXPECT_FALSE(t.pick_node("$share/other/x"));
  t.match_groups("x", groups);
  EXPECT_TRUE(groups.empty());
}

TEST(RouteTable, TheHighestClaimOwnsAClientId) {
  route_table t("me", "p:");
  std::vector<std::pair<std::string, std::uint64_t>> claims;
  t.replace("b", 1, {{"c:dev-1", "5"}, {"c:dev-2", "6"}}, &claims);
  EXPECT_EQ(claims.size(), 2u);
  std::uint64_t claim = 0;
  ASSERT_TRUE(t.owner_of("dev-1", &claim));
  EXPECT_EQ(t.owner_of("dev-1")->name, "b");
  EXPECT_EQ(claim, 5u);
  t.replace("c", 1, {});
  claims.clear();
  EXPECT_EQ(t.apply(ops("c", 2, {"+c:dev-1=9"}), &claims), route_table::applied::ok);
  EXPECT_EQ(claims, (std::vector<std::pair<std::string, std::uint64_t>>{{"dev-1", 9}}));
  EXPECT_EQ(t.owner_of("dev-1")->name, "c");  // the newer claim, while b has not let go
  EXPECT_EQ(t.apply(ops("b", 2, {"-c:dev-1"})), route_table::applied::ok);
  EXPECT_EQ(t.owner_of("dev-1")->name, "c");
  EXPECT_EQ(t.clients(), 2u);
  t.remove("c");
  EXPECT_FALSE(t.owner_of("dev-1"));
  EXPECT_EQ(t.owner_of("dev-2")->name, "b");
  EXPECT_FALSE(t.owner_of("nobody"));
}

TEST(RedisUrl, ParsesHostPortCredentialsAndDatabase) {
  redis_endpoint e;
  ASSERT_EQ(parse_redis_url("redis://127.0.0.1:6390", e), "");
  EXPECT_EQ(e.host, "127.0.0.1");
  EXPECT_EQ(e.port, 6390);
  EXPECT_TRUE(e.password.empty());
  ASSERT_EQ(parse_redis_url("redis://agent:s3cr:et@redis.local/2", e), "");
  EXPECT_EQ(e.user, "agent");
  EXPECT_EQ(e.password, "s3cr:et");
  EXPECT_EQ(e.host, "redis.local");
  EXPECT_EQ(e.port, 6379);
  EXPECT_EQ(e.db, 2);
  EXPECT_EQ(e.describe(), "redis.local:6379/2");  // no credentials in logs
  ASSERT_EQ(parse_redis_url("redis://:pw@[::1]:7000", e), "");
  EXPECT_EQ(e.host, "::1");
  EXPECT_EQ(e.user, "");
  EXPECT_EQ(e.password, "pw");
  EXPECT_EQ(e.port, 7000);
  for (std::string_view bad :
       {"http://x", "redis://", "redis://h:0", "redis://h:99999", "redis://h:x", "redis://[::1",
        "redis://h/x", "redis://u:@h", "redis://a b:1", "redis://h\x01:1", "edis://h", "rediss:/h",
        "rediss://"})
    EXPECT_NE(parse_redis_url(bad, e), "") << bad;
  EXPECT_FALSE(e.tls);
  ASSERT_EQ(parse_redis_url("rediss://u:pw@redis.local:6380", e), "");
  EXPECT_TRUE(e.tls);
  EXPECT_EQ(e.host, "redis.local");
  EXPECT_EQ(e.port, 6380);
  EXPECT_EQ(e.user, "u");
}

}  // namespace
}  // namespace wsagent::cluster
