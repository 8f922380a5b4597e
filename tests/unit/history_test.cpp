#include "core/history.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using namespace wsagent::core;

std::shared_ptr<message> make(std::string tag, std::int64_t ts, std::string payload = "1") {
  auto m = std::make_shared<message>();
  m->tag = std::move(tag);
  m->payload = std::move(payload);
  m->timestamp_ms = ts;
  return m;
}

history_config config(std::vector<std::string> filters, std::size_t count = 100,
                      std::int64_t age_ms = 0, std::size_t tags = 100) {
  history_config c;
  c.filters = std::move(filters);
  c.max_count = count;
  c.max_age_ms = age_ms;
  c.max_tags = tags;
  return c;
}

std::vector<std::uint64_t> offsets(const recovery_result& r) {
  std::vector<std::uint64_t> out;
  for (const auto& m : r.messages)
    out.push_back(m->offset);
  return out;
}

using since_list = std::vector<std::pair<std::string_view, std::uint64_t>>;

recovery_result recover(const history& h, std::string_view filter, const since_list& since,
                        std::int64_t since_ms = -1, std::int64_t now = 1000) {
  recovery_result r;
  h.recover(filter, recovery_request{since, since_ms}, now, r);
  return r;
}

TEST(History, OffsetsIncreaseByOnePerTag) {
  history h(config({"a/#"}));
  EXPECT_TRUE(h.covers("a/x"));
  EXPECT_FALSE(h.covers("b/x"));
  history::trimmed t;
  EXPECT_EQ(h.append(make("a/x", 1), 1, t), 1u);
  EXPECT_EQ(h.append(make("a/y", 2), 2, t), 1u);
  auto m = make("a/x", 3);
  EXPECT_EQ(h.append(m, 3, t), 2u);
  EXPECT_EQ(m->offset, 2u);  // the message carries it
  EXPECT_TRUE(t.gone.empty());
  EXPECT_EQ(h.tag_count(), 2u);
  EXPECT_EQ(h.entry_count(), 3u);
}

TEST(History, RecoversAfterAnOffsetAndReportsWhatWasTrimmed) {
  history h(config({"a/#"}, 3));
  for (int i = 1; i <= 5; ++i) {
    history::trimmed t;
    h.append(make("a/x", i), i, t);
    if (i > 3) {  // past max_count: the oldest goes, the store keeps from the new first
      ASSERT_EQ(t.gone.size(), 1u);
      EXPECT_EQ(t.gone[0]->offset, static_cast<std::uint64_t>(i - 3));
      EXPECT_EQ(t.below, static_cast<std::uint64_t>(i - 2));
    }
  }
  auto r = recover(h, "a/#", {{"a/x", 3}});
  EXPECT_EQ(offsets(r), (std::vector<std::uint64_t>{4, 5}));
  EXPECT_TRUE(r.incomplete.empty());
  EXPECT_EQ(r.covered, (std::vector<std::string>{"a/x"}));
  r = recover(h, "a/#", {{"a/x", 5}});  // up to date
  EXPECT_TRUE(r.messages.empty());
  EXPECT_TRUE(r.incomplete.empty());
  r = recover(h, "a/#", {{"a/x", 1}});  // 2 was trimmed
  EXPECT_EQ(offsets(r), (std::vector<std::uint64_t>{3, 4, 5}));
  EXPECT_EQ(r.incomplete, (std::vector<std::string>{"a/x"}));
  r = recover(h, "a/#", {{"a/x", 9}});  // an offset never given: history was lost
  EXPECT_TRUE(r.messages.empty());
  EXPECT_EQ(r.incomplete, (std::vector<std::string>{"a/x"}));
  r = recover(h, "b/#", {{"a/x", 1}});  // not this filter's tag
  EXPECT_TRUE(r.messages.empty() && r.incomplete.empty() && r.covered.empty());
  r = recover(h, "a/#", {{"a/new", 0}});  // nothing published there yet: complete
  EXPECT_TRUE(r.messages.empty() && r.incomplete.empty());
  r = recover(h, "#", {{"b/x", 0}});  // a tag that keeps no history
  EXPECT_EQ(r.incomplete, (std::vector<std::string>{"b/x"}));
}

TEST(History, RecoversSinceATime) {
  history h(config({"a/#"}, 3));
  history::trimmed t;
  for (int i = 1; i <= 4; ++i)  // a/x at 10, 20, 30, 40 (10 trimmed)
    h.append(make("a/x", i * 10), i * 10, t);
  h.append(make("a/y", 25), 25, t);
  h.append(make("b/z", 26), 26, t);  // not covered by a filter, but the history takes what
                                     // it is given: the router checks covers() first
  auto r = recover(h, "a/+", {}, 25);
  EXPECT_EQ(r.messages.size(), 3u);  // a/x 30, 40 and a/y 25
  EXPECT_TRUE(r.incomplete.empty());
  r = recover(h, "a/+", {}, 10);  // a/x's 10 was trimmed
  EXPECT_EQ(r.incomplete, (std::vector<std::string>{"a/x"}));
  // An offset given for a tag wins over the time for that tag.
  r = recover(h, "a/+", {{"a/x", 3}}, 0);
  EXPECT_EQ(offsets(r), (std::vector<std::uint64_t>{4, 1}));  // a/x 4, then a/y from 0
  // A subscription that history filters do not wholly cover cannot be wholly recovered.
  r = recover(h, "#", {}, 0);
  EXPECT_NE(std::find(r.incomplete.begin(), r.incomplete.end(), "#"), r.incomplete.end());
}

TEST(History, AgeTrimsButKeepsTheOffset) {
  history h(config({"a/#"}, 100, 1000));
  history::trimmed t;
  h.append(make("a/x", 0), 0, t);
  h.append(make("a/x", 500), 500, t);
  std::vector<std::uint64_t> below;
  h.trim_all(1200, [&](history::trimmed& tt) {
    EXPECT_EQ(tt.tag, "a/x");
    EXPECT_EQ(tt.gone.size(), 1u);
    below.push_back(tt.below);
  });
  EXPECT_EQ(below, (std::vector<std::uint64_t>{2}));
  below.clear();
  h.trim_all(1600, [&](history::trimmed& tt) { below.push_back(tt.below); });
  EXPECT_EQ(below, (std::vector<std::uint64_t>{2}));  // the last offset stays in the store
  EXPECT_EQ(h.entry_count(), 0u);
  history::trimmed t2;
  EXPECT_EQ(h.append(make("a/x", 1700), 1700, t2), 3u);  // numbering goes on
  auto r = recover(h, "a/x", {{"a/x", 1}}, -1, 1700);
  EXPECT_EQ(offsets(r), (std::vector<std::uint64_t>{3}));
  EXPECT_EQ(r.incomplete, (std::vector<std::string>{"a/x"}));  // 2 aged out
}

TEST(History, MaxTagsEvictsAnEmptyTagOrRefuses) {
  history h(config({"#"}, 100, 1000, 2));
  history::trimmed t;
  EXPECT_EQ(h.append(make("a", 0), 0, t), 1u);
  EXPECT_EQ(h.append(make("b", 900), 900, t), 1u);
  EXPECT_EQ(h.append(make("c", 900), 900, t), 0u);  // full, none empty: not kept
  EXPECT_EQ(h.refused(), 1u);
  h.trim_all(1500, [](history::trimmed&) {});  // "a" aged out: empty
  history::trimmed t2;
  EXPECT_EQ(h.append(make("c", 1500), 1500, t2), 1u);
  EXPECT_EQ(t2.evicted, "a");
  EXPECT_EQ(h.tag_count(), 2u);
}

TEST(History, ExpiredMessagesAreNotRecovered) {
  history h(config({"a"}));
  history::trimmed t;
  auto m = make("a", 10);
  m->expires_ms = 500;
  h.append(m, 10, t);
  h.append(make("a", 20), 20, t);
  auto r = recover(h, "a", {{"a", 0}}, -1, 1000);
  EXPECT_EQ(offsets(r), (std::vector<std::uint64_t>{2}));
  EXPECT_TRUE(r.incomplete.empty());  // expired is not missed: it is never delivered
}

TEST(History, RestoreKeepsNumberingAndDropsEntriesBeforeAGap) {
  history h(config({"a/#"}));
  h.restore("a/x", 4, nullptr);  // only its offset was kept
  h.restore("a/x", 5, make("a/x", 50));
  h.restore("a/x", 6, make("a/x", 60));
  h.restore("a/y", 1, make("a/y", 10));
  h.restore("a/y", 3, make("a/y", 30));  // 2 missing: 1 cannot be recovered by offset
  h.restored(100);
  EXPECT_EQ(h.entry_count(), 3u);
  history::trimmed t;
  EXPECT_EQ(h.append(make("a/x", 70), 70, t), 7u);
  auto r = recover(h, "a/x", {{"a/x", 4}}, -1, 100);
  EXPECT_EQ(offsets(r), (std::vector<std::uint64_t>{5, 6, 7}));
  EXPECT_TRUE(r.incomplete.empty());
  r = recover(h, "a/y", {{"a/y", 0}}, -1, 100);
  EXPECT_EQ(offsets(r), (std::vector<std::uint64_t>{3}));
  EXPECT_EQ(r.incomplete, (std::vector<std::string>{"a/y"}));
}

}  // namespace
