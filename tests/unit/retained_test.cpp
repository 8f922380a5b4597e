#include "core/retained.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "core/tag.hpp"

namespace {

using namespace wsagent::core;

message_ptr make(std::string tag, std::string payload = "1") {
  auto m = std::make_shared<message>();
  m->tag = std::move(tag);
  m->payload = std::move(payload);
  return m;
}

std::set<std::string> tags_of(const retained_tree& t, std::string_view filter) {
  std::vector<message_ptr> out;
  t.match(filter, out);
  std::set<std::string> tags;
  for (const auto& m : out)
    EXPECT_TRUE(tags.insert(m->tag).second) << "twice: " << m->tag;
  return tags;
}

TEST(RetainedTree, SetReplacesClearRemoves) {
  retained_tree t;
  EXPECT_TRUE(t.set(make("a/b", "1"), 10));
  EXPECT_TRUE(t.set(make("a/b", "2"), 10));
  EXPECT_EQ(t.size(), 1u);
  std::vector<message_ptr> out;
  t.match("a/b", out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0]->payload, "2");
  EXPECT_TRUE(t.clear("a/b"));
  EXPECT_FALSE(t.clear("a/b"));
  EXPECT_FALSE(t.clear("a"));
  EXPECT_EQ(t.size(), 0u);
  EXPECT_TRUE(tags_of(t, "#").empty());
}

TEST(RetainedTree, TheLimitCountsTagsNotReplacements) {
  retained_tree t;
  EXPECT_TRUE(t.set(make("a"), 2));
  EXPECT_TRUE(t.set(make("b"), 2));
  EXPECT_FALSE(t.set(make("c"), 2));
  EXPECT_TRUE(t.set(make("a", "new"), 2));
  EXPECT_TRUE(t.clear("b"));
  EXPECT_TRUE(t.set(make("c"), 2));
  EXPECT_EQ(tags_of(t, "#"), (std::set<std::string>{"a", "c"}));
}

TEST(RetainedTree, WildcardsFollowTheTagRules) {
  retained_tree t;
  for (auto tag : {"a", "a/b", "a/b/c", "a//c", "/x", "$sys/up", "b/c"})
    t.set(make(tag), 100);
  EXPECT_EQ(tags_of(t, "a/#"), (std::set<std::string>{"a", "a/b", "a/b/c", "a//c"}));
  EXPECT_EQ(tags_of(t, "a/+/c"), (std::set<std::string>{"a/b/c", "a//c"}));
  EXPECT_EQ(tags_of(t, "+"), (std::set<std::string>{"a"}));
  EXPECT_EQ(tags_of(t, "#").count("$sys/up"), 0u);  // reserved: no first-level wildcard
  EXPECT_EQ(tags_of(t, "$sys/#"), (std::set<std::string>{"$sys/up"}));
  EXPECT_EQ(tags_of(t, "+/x"), (std::set<std::string>{"/x"}));
}

// Against filter_matches() on random tags and filters.
TEST(RetainedTree, MatchesWhatFilterMatchesSays) {
  std::mt19937 rng(3);
  const char* levels[] = {"a", "b", "", "$s", "c"};
  auto random_tag = [&] {
    std::string t;
    int n = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < n; ++i)
      t += (i ? "/" : "") + std::string(levels[rng() % 5]);
    return t;
  };
  retained_tree t;
  std::vector<std::string> all;
  for (int i = 0; i < 200; ++i) {
    auto tag = random_tag();
    if (validate_tag(tag, {}) != tag_error::none) continue;
    t.set(make(tag), 1000);
    all.push_back(tag);
  }
  for (int i = 0; i < 500; ++i) {
    std::string f = random_tag();
    // Replace some levels by wildcards.
    std::string filter;
    std::string_view rest = f;
    bool more = true;
    while (more) {
      auto level = next_level(rest, more);
      auto r = rng() % 6;
      std::string piece = r == 0 ? "+" : r == 1 && !more ? "#" : std::string(level);
      filter += piece + (more ? "/" : "");
    }
    if (validate_filter(filter, {}) != tag_error::none) continue;
    std::set<std::string> want;
    for (const auto& tag : all)
      if (filter_matches(filter, tag)) want.insert(tag);
    ASSERT_EQ(tags_of(t, filter), want) << filter;
  }
}

}  // namespace
