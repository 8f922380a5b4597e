// The router's parts, each alone: the subscription index, the session registry, the retained
// store, stored-message references, the delayed wills and the history log.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/history_log.hpp"
#include "core/message_refs.hpp"
#include "core/retained_store.hpp"
#include "core/session_registry.hpp"
#include "core/store_writer.hpp"
#include "core/subscription_index.hpp"
#include "core/will_schedule.hpp"
#include "store/memory_store.hpp"

namespace wsagent::core {
namespace {

struct counting_sink : session_sink {
  std::vector<message_ptr> got;
  void deliver(message_ptr m, std::uint8_t) override { got.push_back(std::move(m)); }
  void kick(close_reason, std::string_view) override {}
};

std::shared_ptr<session> make(const std::string& id, session_sink* sink, bool persistent = false,
                              std::int64_t expiry_s = 0) {
  return std::make_shared<session>(id, id, acl::allow_all(), sink,
                                   session_options{persistent, expiry_s});
}

std::shared_ptr<message> msg(const std::string& tag, std::uint8_t qos = 0,
                             const std::string& from = "p") {
  auto m = std::make_shared<message>();
  m->tag = tag;
  m->payload = "1";
  m->qos = qos;
  m->from = from;
  return m;
}

std::vector<std::string_view> filters(std::initializer_list<std::string_view> f) {
  return f;
}

// --- subscription_index ---

TEST(SubscriptionIndex, AddIsAllOrNothingAgainstTheLimitAndSaysWhatExisted) {
  subscription_index idx(3);
  counting_sink sink;
  auto s = make("a", &sink);
  subscription_index::exclusive lock(idx);
  bool existed = true;
  EXPECT_TRUE(idx.add(*s, filters({"x", "y"}), 1, existed));
  EXPECT_FALSE(existed);
  EXPECT_FALSE(idx.add(*s, filters({"z", "w"}), 0, existed));  // 4 > 3: none of them
  EXPECT_EQ(idx.count_of(*s), 2u);
  EXPECT_FALSE(idx.has(*s, "z"));
  EXPECT_TRUE(idx.add(*s, filters({"x"}), 2, existed));  // an update, not a new one
  EXPECT_TRUE(existed);
  EXPECT_EQ(idx.copy_of(*s).size(), 2u);
  EXPECT_TRUE(idx.remove(*s, "x"));
  EXPECT_FALSE(idx.remove(*s, "x"));
  auto all = idx.take_all(*s);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].first, "y");
  EXPECT_EQ(idx.count_of(*s), 0u);
  EXPECT_EQ(idx.size(), 0u);
}

TEST(SubscriptionIndex, MatchSkipsNoLocalAndPicksOneMemberPerGroup) {
  subscription_index idx(100);
  counting_sink sa, sb, sc;
  auto a = make("a", &sa), b = make("b", &sb), c = make("c", &sc);
  {
    subscription_index::exclusive lock(idx);
    subscription_options mine(0);
    mine.no_local = true;
    idx.add_one(*a, "t/#", mine);
    idx.add_one(*b, "$share/g/t/+", 1);
    idx.add_one(*c, "$share/g/t/+", 1);
  }
  subscription_index::shared lock(idx);
  std::vector<subscriber> out;
  auto from_a = msg("t/x", 1, "a");
  idx.match(*from_a, out);  // a's own is left out; the group gives one
  ASSERT_EQ(out.size(), 1u);
  const auto* first = out[0].who;
  out.clear();
  idx.match(*from_a, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_NE(out[0].who, first);  // in turn
  out.clear();
  auto from_b = msg("t/x", 1, "b");
  EXPECT_EQ(idx.match(*from_b, out), 2u);
  EXPECT_EQ(out.size(), 2u);
  std::uint8_t qos = 0;
  auto* other = idx.other_member("$share/g/t/+", *from_b, *b, qos);
  EXPECT_EQ(other, c.get());
  EXPECT_EQ(qos, 1);
  EXPECT_EQ(idx.other_member("$share/g/t/+", *msg("u/x", 1), *b, qos), nullptr);
  EXPECT_EQ(idx.size(), 3u);
}

TEST(SubscriptionIndex, AGroupWithNobodyConnectedQueuesForAPersistentMember) {
  subscription_index idx(100);
  auto gone = make("gone", nullptr, true, 60);
  auto clean = make("clean", nullptr);
  {
    subscription_index::exclusive lock(idx);
    idx.add_one(*gone, "$share/g/j", 1);
    idx.add_one(*clean, "$share/h/j", 1);
  }
  subscription_index::shared lock(idx);
  std::vector<subscriber> out;
  idx.match(*msg("j", 1), out);
  ASSERT_EQ(out.size(), 1u);  // the persistent one keeps it; the clean one cannot
  EXPECT_EQ(out[0].who, gone.get());
  out.clear();
  idx.match(*msg("j", 0), out);  // QoS 0 is not kept offline
  EXPECT_TRUE(out.empty());
}

TEST(SubscriptionIndex, UniqueRecipientsKeepsTheHighestQos) {
  counting_sink sa, sb;
  auto a = make("a", &sa), b = make("b", &sb);
  std::vector<subscriber> v{{a.get(), 0}, {b.get(), 1}, {a.get(), 2}};
  unique_recipients(v, 1);  // one list: left as it is
  EXPECT_EQ(v.size(), 3u);
  unique_recipients(v, 2);
  ASSERT_EQ(v.size(), 2u);
  for (const auto& x : v)
    EXPECT_EQ(x.qos, x.who == a.get() ? 2 : 1);
}

// --- session_registry ---

TEST(SessionRegistry, PutReplacesAndOnlyTheCurrentOneIsErased) {
  session_registry reg;
  auto a1 = make("a", nullptr), a2 = make("a", nullptr);
  common::lock lock(reg.mutex());
  EXPECT_EQ(reg.put(a1), nullptr);
  EXPECT_EQ(reg.put(a2), a1);
  EXPECT_FALSE(reg.is_current(*a1));
  EXPECT_TRUE(reg.is_current(*a2));
  EXPECT_FALSE(reg.erase(*a1));
  EXPECT_EQ(reg.find("a"), a2);
  EXPECT_TRUE(reg.erase(*a2));
  EXPECT_EQ(reg.size(), 0u);
}

TEST(SessionRegistry, ExpiredAreTheOfflinePersistentOnesPastTheirExpiry) {
  session_registry reg;
  auto online = make("on", nullptr, true, 10);
  auto away = make("away", nullptr, true, 10);
  auto clean = make("clean", nullptr);
  common::lock lock(reg.mutex());
  reg.put(online);
  reg.put(away);
  reg.put(clean);
  reg.set_disconnected(*away, 1'000'000);
  reg.set_disconnected(*clean, 1'000'000);
  EXPECT_TRUE(reg.expired(1'009'999).empty());
  auto gone = reg.expired(1'010'000);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0], away);
}

// --- retained_store ---

TEST(RetainedStore, KeepsAFlaggedNumberedCopyWithinItsLimitAndWritesThrough) {
  wsagent::store::memory_store mem;
  store_writer writer(mem);
  retained_store r(2);
  r.set_store(&writer);
  auto m = msg("a", 1);
  auto kept = r.set(*m, 77);
  ASSERT_NE(kept, nullptr);
  EXPECT_NE(kept.get(), m.get());
  EXPECT_TRUE(kept->retain && kept->published_retain);
  EXPECT_EQ(kept->seq, 77u);
  EXPECT_NE(r.set(*msg("b"), 0), nullptr);
  EXPECT_EQ(r.set(*msg("c"), 0), nullptr);  // a third tag: refused
  EXPECT_NE(r.set(*msg("a"), 0), nullptr);  // replacing a kept one always works
  r.clear("b");
  EXPECT_EQ(r.size(), 1u);
  std::vector<store_op> ops;
  EXPECT_NE(r.set(*msg("d"), 0, &ops), nullptr);  // into the caller's batch, not the store
  EXPECT_EQ(ops.size(), 1u);
  writer.flush();
  auto snap = mem.load();
  ASSERT_EQ(snap.retained.size(), 1u);
  EXPECT_EQ(snap.retained[0]->tag, "a");
  std::vector<message_ptr> out;
  r.match("#", out);
  EXPECT_EQ(out.size(), 2u);
}

// --- message_refs ---

TEST(MessageRefs, TheLastReferenceDropsTheMessage) {
  message_refs refs;
  refs.add(5, 2);
  std::vector<store_op> ops;
  refs.release(5, ops);
  EXPECT_TRUE(ops.empty());
  EXPECT_TRUE(refs.contains(5));
  refs.release(5, ops);
  ASSERT_EQ(ops.size(), 1u);
  EXPECT_EQ(std::get<store_ops::drop_message>(ops[0]).id, 5u);
  refs.release(5, ops);  // unknown: nothing
  EXPECT_EQ(ops.size(), 1u);
  EXPECT_EQ(refs.size(), 0u);
}

// --- will_schedule ---

TEST(WillSchedule, DueCancelledAndEndedWillsAndTheStoreSeesOnlyPersistentOnes) {
  wsagent::store::memory_store mem;
  store_writer writer(mem);
  will_schedule wills;
  wills.set_store(&writer);
  auto p = make("p", nullptr, true, 60), c = make("c", nullptr);
  wills.put({p, msg("w/p"), true, 1000});
  wills.put({c, msg("w/c"), false, 2000});
  writer.flush();
  EXPECT_EQ(mem.load().wills.size(), 1u);  // the clean session's is not stored
  EXPECT_TRUE(wills.take_due(999).empty());
  auto due = wills.take_due(1000);
  ASSERT_EQ(due.size(), 1u);
  EXPECT_EQ(due[0].from, p);
  EXPECT_TRUE(due[0].retain);
  EXPECT_FALSE(wills.cancel("p"));  // already taken
  EXPECT_TRUE(wills.cancel("c"));
  wills.put({p, msg("w/p"), false, 5000});
  std::vector<std::string> ended{"p", "nobody"};
  EXPECT_EQ(wills.take(ended).size(), 1u);
  EXPECT_EQ(wills.size(), 0u);
  writer.flush();
  EXPECT_TRUE(mem.load().wills.empty());
}

// --- history_log ---

TEST(HistoryLog, AppendNumbersEntriesAndSaysWhatTheStoreAndTheReferencesGet) {
  history_config cfg;
  cfg.filters = {"h/#"};
  cfg.max_count = 2;
  history_log log(cfg);
  message_refs refs;
  EXPECT_TRUE(log.covers("h/a"));
  EXPECT_FALSE(log.covers("x"));
  std::vector<store_op> ops;
  for (std::uint64_t i = 1; i <= 3; ++i) {
    auto m = msg("h/a");
    m->seq = 100 + i;
    ops.clear();
    ASSERT_TRUE(log.append(m, 1000, ops, refs));
    EXPECT_EQ(m->offset, i);
  }
  // The third pushed the first out: its entry and its stored message go.
  ASSERT_EQ(ops.size(), 3u);
  EXPECT_EQ(std::get<store_ops::append_history>(ops[0]).e.offset, 3u);
  EXPECT_EQ(std::get<store_ops::trim_history>(ops[1]).below, 2u);
  EXPECT_EQ(std::get<store_ops::drop_message>(ops[2]).id, 101u);
  EXPECT_FALSE(refs.contains(101));
  EXPECT_TRUE(refs.contains(103));
  recovery_result got;
  const std::pair<std::string_view, std::uint64_t> since[] = {{"h/a", 0}};
  std::vector<std::string_view> f{"h/#"};
  log.recover(f, recovery_request{since, -1}, 1000, got);
  EXPECT_EQ(got.messages.size(), 2u);
  EXPECT_EQ(log.count().entries, 2u);
}

}  // namespace
}  // namespace wsagent::core
