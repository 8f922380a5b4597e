#pragma once
// Tags and tag filters, with MQTT's rules (MQTT 5.0 section 4.7), so that MQTT clients and
// native clients share one tag space:
//   - levels are separated by '/'; empty levels are allowed ("a//b", "/a");
//   - a filter may use '+' as a whole level (exactly one level, possibly empty) and '#' as
//     the whole last level (that level's parent and everything below it);
//   - a tag (what is published) contains no '+' or '#';
//   - tags starting with '$' are reserved for the agent ($sys/...), and a filter whose first
//     level is a wildcard does not match them.

#include <string_view>

namespace wsagent::core {

struct tag_limits {
  int max_length = 256;  // bytes
  int max_depth = 16;    // levels
};

enum class tag_error {
  none,
  empty,
  too_long,
  too_deep,
  wildcard_in_tag,  // '+' or '#' in a published tag
  bad_wildcard,     // '+' or '#' not alone in its level, '#' not last
  invalid_utf8,
  null_character,
  bad_share,  // "$share/" without a group, or a group with '+', '#' or '/'
};

const char* to_string(tag_error e) noexcept;

// A tag to publish to.
tag_error validate_tag(std::string_view tag, const tag_limits& limits) noexcept;

// A subscription filter.
tag_error validate_filter(std::string_view filter, const tag_limits& limits) noexcept;

// A subscription: a filter, or a shared subscription "$share/<group>/<filter>" (MQTT 5.0
// section 4.8.2: each message to one member of the group). The group is one level without
// '+' or '#'; the whole string is held to the limits.
tag_error validate_subscription(std::string_view filter, const tag_limits& limits) noexcept;

inline constexpr std::string_view shared_prefix = "$share/";

// A shared subscription's filter ("$share/..."; valid or not).
inline bool is_shared(std::string_view filter) noexcept {
  return filter.starts_with(shared_prefix);
}

// Splits "$share/<group>/<filter>" into its group and filter; false for any other string.
inline bool split_shared(std::string_view s, std::string_view& group,
                         std::string_view& filter) noexcept {
  if (!is_shared(s)) return false;
  s.remove_prefix(shared_prefix.size());
  const auto slash = s.find('/');
  group = s.substr(0, slash);
  filter = slash == std::string_view::npos ? std::string_view{} : s.substr(slash + 1);
  return true;
}

// Does `filter` (valid) match `tag` (valid)?
bool filter_matches(std::string_view filter, std::string_view tag) noexcept;

// Does every tag matched by `filter` also match `pattern`? Used to check a subscription
// against the filters a client is allowed to read. Both must be valid filters.
bool filter_covers(std::string_view pattern, std::string_view filter) noexcept;

// Is there a tag that both `a` and `b` (valid filters) match? ("#" and "secret/#" do, "+/x"
// and "a/y" do not, "#" and "$sys/x" do not: a first-level wildcard skips reserved tags.)
bool filters_overlap(std::string_view a, std::string_view b) noexcept;

// Splits the first level off `rest` ("a/b/c" -> "a", rest "b/c"); `more` tells whether a
// '/' followed it, so "a/" yields "a" and then one empty level.
inline std::string_view next_level(std::string_view& rest, bool& more) noexcept {
  auto slash = rest.find('/');
  std::string_view level = rest.substr(0, slash);
  more = slash != std::string_view::npos;
  rest = more ? rest.substr(slash + 1) : std::string_view{};
  return level;
}

inline bool is_reserved_tag(std::string_view tag) noexcept {
  return !tag.empty() && tag.front() == '$';
}

}  // namespace wsagent::core
