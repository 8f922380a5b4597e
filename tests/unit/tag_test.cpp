#include "core/tag.hpp"

#include <gtest/gtest.h>

namespace wsagent::core {
namespace {

struct match_case {
  const char* filter;
  const char* tag;
  bool matches;
};

// MQTT 5.0 section 4.7 and its non-normative examples, plus the edge cases brokers get wrong.
const match_case match_table[] = {
    {"a/b/c", "a/b/c", true},
    {"a/b/c", "a/b", false},
    {"a/b", "a/b/c", false},
    {"a/b/c", "a/b/d", false},
    {"A/b", "a/b", false},  // case matters
    // '#' matches the parent level and everything below
    {"sport/tennis/player1/#", "sport/tennis/player1", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
    {"sport/#", "sport", true},
    {"#", "sport/tennis", true},
    {"#", "/", true},
    {"a/#", "a/", true},
    {"a/#", "ab", false},
    // '+' matches exactly one level, possibly empty
    {"sport/tennis/+", "sport/tennis/player1", true},
    {"sport/tennis/+", "sport/tennis/player1/ranking", false},
    {"sport/+", "sport", false},
    {"sport/+", "sport/", true},
    {"+/+", "/finance", true},
    {"/+", "/finance", true},
    {"+", "/finance", false},
    {"+", "a", true},
    {"+/b/+", "a/b/c", true},
    {"+/b/+", "a/x/c", false},
    {"a/+/#", "a/b", true},
    {"a/+/#", "a", false},
    {"+/#", "a", true},
    // empty levels
    {"a//b", "a//b", true},
    {"a/+/b", "a//b", true},
    {"a/b", "a//b", false},
    {"/", "/", true},
    {"+/+", "/", true},
    // reserved ($) tags: no first-level wildcard reaches them
    {"#", "$sys/clients", false},
    {"+/clients", "$sys/clients", false},
    {"+", "$sys", false},
    {"$sys/#", "$sys/clients/x", true},
    {"$sys/+/x", "$sys/clients/x", true},
    {"a/#", "a/$b", true},  // only the first level is special
    {"a/+", "a/$b", true},
};

TEST(TagMatch, Table) {
  tag_limits limits;
  for (const auto& c : match_table) {
    ASSERT_EQ(validate_filter(c.filter, limits), tag_error::none) << c.filter;
    ASSERT_EQ(validate_tag(c.tag, limits), tag_error::none) << c.tag;
    EXPECT_EQ(filter_matches(c.filter, c.tag), c.matches) << c.filter << " ~ " << c.tag;
  }
}

TEST(TagValidate, Tags) {
  tag_limits limits{16, 3};
  EXPECT_EQ(validate_tag("a/b/c", limits), tag_error::none);
  EXPECT_EQ(validate_tag("", limits), tag_error::empty);
  EXPECT_EQ(validate_tag("a/+/c", limits), tag_error::wildcard_in_tag);
  EXPECT_EQ(validate_tag("a/#", limits), tag_error::wildcard_in_tag);
  EXPECT_EQ(validate_tag("a/b+", limits), tag_error::wildcard_in_tag);
  EXPECT_EQ(validate_tag("a/b/c/d", limits), tag_error::too_deep);
  EXPECT_EQ(validate_tag("0123456789abcdefg", limits), tag_error::too_long);
  EXPECT_EQ(validate_tag(std::string_view("a\0b", 3), limits), tag_error::null_character);
  EXPECT_EQ(validate_tag("\xc3\x28", limits), tag_error::invalid_utf8);
  EXPECT_EQ(validate_tag("\xed\xa0\x80", limits), tag_error::invalid_utf8);  // surrogate
  EXPECT_EQ(validate_tag("\xc0\xaf", limits), tag_error::invalid_utf8);      // overlong
  EXPECT_EQ(validate_tag("caf\xc3\xa9", limits), tag_error::none);
}

TEST(TagValidate, Filters) {
  tag_limits limits;
  EXPECT_EQ(validate_filter("#", limits), tag_error::none);
  EXPECT_EQ(validate_filter("+", limits), tag_error::none);
  EXPECT_EQ(validate_filter("a/+/b/#", limits), tag_error::none);
  EXPECT_EQ(validate_filter("a/#/b", limits), tag_error::bad_wildcard);
  EXPECT_EQ(validate_filter("a/b#", limits), tag_error::bad_wildcard);
  EXPECT_EQ(validate_filter("a/+b", limits), tag_error::bad_wildcard);
  EXPECT_EQ(validate_filter("a/++", limits), tag_error::bad_wildcard);
  EXPECT_EQ(validate_filter("", limits), tag_error::empty);
}

struct cover_case {
  const char* pattern;
  const char* filter;
  bool covers;
};

const cover_case cover_table[] = {
    {"#", "a/b", true},
    {"#", "#", true},
    {"#", "$sys/x", false},
    {"a/#", "a", true},
    {"a/#", "a/#", true},
    {"a/#", "a/+/c", true},
    {"a/#", "b/#", false},
    {"a/+", "a/b", true},
    {"a/+", "a/+", true},
    {"a/+", "a/#", false},
    {"a/+", "a/b/c", false},
    {"a/b", "a/+", false},
    {"a/b", "a/b", true},
    {"+/b", "x/b", true},
    {"+/b", "+/b", true},
    {"+/b", "#", false},
    {"devices/x/#", "devices/+/status", false},
};

TEST(TagCovers, Table) {
  for (const auto& c : cover_table)
    EXPECT_EQ(filter_covers(c.pattern, c.filter), c.covers) << c.pattern << " covers " << c.filter;
}

// Coverage must agree with matching: if a pattern covers a filter, every tag the filter
// matches is matched by the pattern.
TEST(TagCovers, ConsistentWithMatching) {
  const char* patterns[] = {"#", "a/#", "a/+", "+/b", "a/b", "+/+/c", "a/+/#"};
  const char* filters[] = {"a", "a/b", "a/+", "a/#", "+/b", "#", "a/b/c", "+/+/c", "x/b"};
  const char* tags[] = {"a", "a/b", "a/c", "x/b", "a/b/c", "q/r/c", "a/", "x"};
  for (auto p : patterns)
    for (auto f : filters) {
      if (!filter_covers(p, f)) continue;
      for (auto t : tags) {
        if (filter_matches(f, t)) {
          EXPECT_TRUE(filter_matches(p, t)) << p << " " << f << " " << t;
        }
      }
    }
}

// Two filters overlap when some tag matches both; checked against matching over a set of
// tags (an overlap the tags show must be found; one found must be shown or be a deeper tag).
TEST(TagOverlap, TableAndConsistentWithMatching) {
  struct row {
    const char *a, *b;
    bool overlap;
  };
  const row table[] = {
      {"#", "secret/#", true},  {"+/x", "a/y", false},      {"a/+", "+/b", true},
      {"a", "a/#", true},       {"a", "a/+", false},        {"a/#", "b/#", false},
      {"#", "$sys/x", false},   {"$sys/#", "$sys/x", true}, {"+/+", "a/b/c", false},
      {"a/+/c", "a/b/#", true}, {"+", "$sys", false}};
  for (const auto& r : table) {
    EXPECT_EQ(filters_overlap(r.a, r.b), r.overlap) << r.a << " ~ " << r.b;
    EXPECT_EQ(filters_overlap(r.b, r.a), r.overlap) << r.b << " ~ " << r.a;
  }
  const char* filters[] = {"#", "a/#", "a/+", "+/b", "a/b", "+/+/c", "a/+/#", "x", "$s/#", "+"};
  const char* tags[] = {"a", "a/b", "a/c", "x/b", "a/b/c", "q/r/c", "a/", "x", "$s/a", "b"};
  for (auto f : filters)
    for (auto g : filters) {
      bool shown = false;
      for (auto t : tags)
        shown |= filter_matches(f, t) && filter_matches(g, t);
      if (shown) {
        EXPECT_TRUE(filters_overlap(f, g)) << f << " ~ " << g;
      }
    }
}

}  // namespace
}  // namespace wsagent::core
