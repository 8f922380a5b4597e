#include "core/acl.hpp"

#include "core/tag.hpp"

namespace wsagent::core {
namespace {

bool safe_value(std::string_view v) {
  return !v.empty() && v.find_first_of("/+#") == std::string_view::npos;
}

void compile(const std::vector<std::string>& patterns, std::string_view client_id,
             std::string_view user, std::vector<std::string>& out) {
  // Patterns are trusted configuration but still checked, so a typo grants nothing
  // rather than something unexpected.
  tag_limits no_limits{65535, 65535};
  for (const auto& p : patterns) {
    std::string s;
    if (!substitute_pattern(p, client_id, user, s)) continue;
    if (validate_filter(s, no_limits) != tag_error::none) continue;
    out.push_back(std::move(s));
  }
}

// A deny pattern is never dropped: a level whose substitution fails becomes '+', so the
// pattern denies that level for every value rather than for none.
void compile_deny(const std::vector<std::string>& patterns, std::string_view client_id,
                  std::string_view user, std::vector<std::string>& out) {
  tag_limits no_limits{65535, 65535};
  for (const auto& p : patterns) {
    std::string s, one;
    bool more = true, first = true;
    std::string_view rest = p;
    while (more) {
      const auto raw = next_level(rest, more);
      if (!substitute_pattern(raw, client_id, user, one)) one = "+";
      if (!first) s.push_back('/');
      first = false;
      s.append(one);
    }
    if (validate_filter(s, no_limits) != tag_error::none) s = "#";  // a typo denies all
    out.push_back(std::move(s));
  }
}

}  // namespace

bool substitute_pattern(std::string_view pattern, std::string_view client_id, std::string_view user,
                        std::string& out) {
  out.clear();
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '%' && i + 1 < pattern.size() &&
        (pattern[i + 1] == 'c' || pattern[i + 1] == 'u')) {
      auto value = pattern[i + 1] == 'c' ? client_id : user;
      if (!safe_value(value)) return false;
      out.append(value);
      ++i;
    } else {
      out.push_back(pattern[i]);
    }
  }
  return true;
}

acl acl::allow_all() {
  acl a;
  a.all_ = true;
  return a;
}

acl::acl(const grants& g, std::string_view client_id, std::string_view user) : all_(g.allow_all) {
  compile(g.publish, client_id, user, publish_);
  compile(g.subscribe, client_id, user, subscribe_);
  compile_deny(g.deny_publish, client_id, user, deny_publish_);
  compile_deny(g.deny_subscribe, client_id, user, deny_subscribe_);
}

bool acl::can_publish(std::string_view tag) const noexcept {
  if (is_reserved_tag(tag)) return false;
  for (const auto& p : deny_publish_)
    if (filter_matches(p, tag)) return false;
  if (all_) return true;
  for (const auto& p : publish_)
    if (filter_matches(p, tag)) return true;
  return false;
}

bool acl::can_subscribe(std::string_view filter) const noexcept {
  for (const auto& p : deny_subscribe_)
    if (filter_covers(p, filter)) return false;  // it could only ever deliver denied tags
  if (all_) return true;
  for (const auto& p : subscribe_)
    if (filter_covers(p, filter)) return true;
  return false;
}

bool acl::can_receive(std::string_view tag) const noexcept {
  for (const auto& p : deny_subscribe_)
    if (filter_matches(p, tag)) return false;
  return true;
}

void grants::add(const grants& other) {
  auto append = [](std::vector<std::string>& to, const std::vector<std::string>& from) {
    to.insert(to.end(), from.begin(), from.end());
  };
  append(publish, other.publish);
  append(subscribe, other.subscribe);
  append(deny_publish, other.deny_publish);
  append(deny_subscribe, other.deny_subscribe);
  allow_all = allow_all || other.allow_all;
}

}  // namespace wsagent::core
