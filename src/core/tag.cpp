#include "core/tag.hpp"

#include "common/utf8.hpp"

namespace wsagent::core {
namespace {

// One pass over the bytes; `wildcards` says whether a '+' or '#' was seen.
tag_error common_checks(std::string_view s, const tag_limits& limits, bool& wildcards) noexcept {
  if (s.empty()) return tag_error::empty;
  if (s.size() > static_cast<std::size_t>(limits.max_length)) return tag_error::too_long;
  int depth = 1;
  bool special = false;
  for (char c : s) {
    depth += c == '/';
    special |= c == '+' || c == '#';
    if (c == '\0') return tag_error::null_character;
  }
  wildcards = special;
  if (depth > limits.max_depth) return tag_error::too_deep;
  if (!common::is_valid_utf8(s)) return tag_error::invalid_utf8;
  return tag_error::none;
}

}  // namespace

const char* to_string(tag_error e) noexcept {
  switch (e) {
    case tag_error::none:
      return "valid";
    case tag_error::empty:
      return "tag is empty";
    case tag_error::too_long:
      return "tag is too long";
    case tag_error::too_deep:
      return "tag has too many levels";
    case tag_error::wildcard_in_tag:
      return "a published tag may not contain '+' or '#'";
    case tag_error::bad_wildcard:
      return "'+' and '#' must be a whole level, and '#' only the last level";
    case tag_error::invalid_utf8:
      return "tag is not valid UTF-8";
    case tag_error::null_character:
      return "tag contains a NUL character";
    case tag_error::bad_share:
      return "a shared subscription is $share/<group>/<filter>, the group without '+' or '#'";
  }
  return "invalid tag";
}

tag_error validate_tag(std::string_view tag, const tag_limits& limits) noexcept {
  bool wildcards = false;
  if (auto e = common_checks(tag, limits, wildcards); e != tag_error::none) return e;
  return wildcards ? tag_error::wildcard_in_tag : tag_error::none;
}

tag_error validate_filter(std::string_view filter, const tag_limits& limits) noexcept {
  bool wildcards = false;
  if (auto e = common_checks(filter, limits, wildcards); e != tag_error::none) return e;
  if (!wildcards) return tag_error::none;
  std::string_view rest = filter;
  bool more = true;
  while (more) {
    auto level = next_level(rest, more);
    if (level.find_first_of("+#") == std::string_view::npos) continue;
    if (level.size() != 1) return tag_error::bad_wildcard;
    if (level == "#" && more) return tag_error::bad_wildcard;
  }
  return tag_error::none;
}

bool filter_matches(std::string_view filter, std::string_view tag) noexcept {
  // A wildcard first level never matches a reserved ($) tag.
  if (is_reserved_tag(tag) && !filter.empty() && (filter.front() == '+' || filter.front() == '#'))
    return false;
  bool fmore = true, tmore = true;
  while (true) {
    auto f = next_level(filter, fmore);
    if (f == "#") return true;  // matches this level, below it, and the parent ("a/#" ~ "a")
    auto t = next_level(tag, tmore);
    if (f != "+" && f != t) return false;
    if (!fmore && !tmore) return true;
    if (!tmore) {  // tag ended: only a trailing "#" can still match the parent
      return fmore && filter == "#";
    }
    if (!fmore) return false;  // filter ended, tag goes on
  }
}

bool filter_covers(std::string_view pattern, std::string_view filter) noexcept {
  if (is_reserved_tag(filter) && !pattern.empty() &&
      (pattern.front() == '+' || pattern.front() == '#'))
    return false;
  bool pmore = true, fmore = true;
  while (true) {
    auto p = next_level(pattern, pmore);
    if (p == "#") return true;
    auto f = next_level(filter, fmore);
    if (f == "#") return false;  // "#" reaches deeper than anything but "#"
    if (p == "+") {
      // "+" covers any single level, literal or "+".
    } else if (f == "+" || p != f) {
      return false;
    }
    if (!pmore && !fmore) return true;
    if (!fmore) return pmore && pattern == "#";  // "a/#" covers "a"
    if (!pmore) return false;
  }
}

namespace {
bool first_level_wild(std::string_view f) noexcept {
  return !f.empty() && (f.front() == '+' || f.front() == '#');  // whole levels in a valid filter
}
}  // namespace

bool filters_overlap(std::string_view a, std::string_view b) noexcept {
  if ((is_reserved_tag(a) && first_level_wild(b)) || (is_reserved_tag(b) && first_level_wild(a)))
    return false;
  bool amore = true, bmore = true;
  while (true) {
    const auto x = next_level(a, amore);
    const auto y = next_level(b, bmore);
    if (x == "#" || y == "#") return true;
    if (x != "+" && y != "+" && x != y) return false;
    if (!amore && !bmore) return true;
    if (!amore) return b == "#";  // "a" and "a/#" share the tag "a"
    if (!bmore) return a == "#";
  }
}

tag_error validate_subscription(std::string_view filter, const tag_limits& limits) noexcept {
  std::string_view group, inner;
  if (!split_shared(filter, group, inner)) return validate_filter(filter, limits);
  if (filter.size() > static_cast<std::size_t>(limits.max_length)) return tag_error::too_long;
  if (group.empty() || group.find_first_of("+#") != std::string_view::npos ||
      filter.size() == shared_prefix.size() + group.size())
    return tag_error::bad_share;
  return validate_filter(inner, limits);
}

}  // namespace wsagent::core
