#include "core/subscription_index.hpp"

#include <algorithm>

#include "core/tag.hpp"

namespace wsagent::core {

bool subscription_index::add(session& s, std::span<const std::string_view> filters,
                             const subscription_options& o, bool& existed) {
  auto& mine = by_session_[&s];
  std::size_t fresh = 0;
  for (auto filter : filters)
    if (!mine.contains(filter)) ++fresh;
  existed = fresh == 0;
  if (mine.size() + fresh > max_subscriptions_) {
    if (mine.empty()) by_session_.erase(&s);
    return false;
  }
  for (auto filter : filters) {
    if (auto it = mine.find(filter); it != mine.end()) {
      it->second = o;
    } else {
      mine.emplace(std::string(filter), o);
      count_up(filter);
    }
    index_locked(filter, s, o);
  }
  return true;
}

void subscription_index::add_one(session& s, std::string_view filter,
                                 const subscription_options& o) {
  auto& mine = by_session_[&s];
  if (auto it = mine.find(filter); it != mine.end()) {
    it->second = o;
  } else {
    mine.emplace(std::string(filter), o);
    count_up(filter);
  }
  index_locked(filter, s, o);
}

bool subscription_index::remove(session& s, std::string_view filter) {
  auto mine = by_session_.find(&s);
  if (mine == by_session_.end()) return false;
  auto it = mine->second.find(filter);
  if (it == mine->second.end()) return false;
  unindex_locked(filter, s);
  count_down(filter);
  mine->second.erase(it);
  if (mine->second.empty()) by_session_.erase(mine);
  return true;
}

filter_list subscription_index::take_all(session& s) {
  filter_list out;
  auto mine = by_session_.find(&s);
  if (mine == by_session_.end()) return out;
  out.reserve(mine->second.size());
  for (auto& [filter, o] : mine->second) {
    unindex_locked(filter, s);
    count_down(filter);
    out.emplace_back(filter, o);
  }
  by_session_.erase(mine);
  return out;
}

void subscription_index::count_up(std::string_view filter) {
  auto it = node_counts_.find(filter);
  if (it != node_counts_.end()) {
    ++it->second;
    return;
  }
  node_counts_.emplace(std::string(filter), 1);
  if (observer_) observer_->filter_added(filter);
}

void subscription_index::count_down(std::string_view filter) {
  auto it = node_counts_.find(filter);
  if (it == node_counts_.end()) return;
  if (--it->second > 0) return;
  node_counts_.erase(it);
  if (observer_) observer_->filter_removed(filter);
}

std::vector<std::string> subscription_index::node_filters() const {
  std::vector<std::string> out;
  out.reserve(node_counts_.size());
  for (const auto& [filter, n] : node_counts_)
    out.push_back(filter);
  return out;
}

std::size_t subscription_index::count_of(const session& s) const {
  auto mine = by_session_.find(&s);
  return mine == by_session_.end() ? 0 : mine->second.size();
}

filter_list subscription_index::copy_of(const session& s) const {
  auto mine = by_session_.find(&s);
  if (mine == by_session_.end()) return {};
  return {mine->second.begin(), mine->second.end()};
}

bool subscription_index::has(const session& s, std::string_view filter) const {
  auto mine = by_session_.find(&s);
  return mine != by_session_.end() && mine->second.contains(filter);
}

void subscription_index::index_locked(std::string_view filter, session& s,
                                      const subscription_options& o) {
  std::string_view group, inner;
  if (!split_shared(filter, group, inner)) {
    trie_.add(filter, &s, o.qos, o.no_local);
    return;
  }
  auto [it, fresh] = groups_.try_emplace(std::string(filter));
  auto& g = it->second;
  if (fresh) {
    g.whole = filter;
    g.filter = inner;
    group_index_.add(g.filter, &g, 0);
  }
  for (auto& m : g.members)
    if (m.who == &s) {
      m.qos = o.qos;
      return;
    }
  g.members.push_back({&s, o.qos});
}

void subscription_index::unindex_locked(std::string_view filter, session& s) {
  std::string_view group, inner;
  if (!split_shared(filter, group, inner)) {
    trie_.remove(filter, &s);
    return;
  }
  auto it = groups_.find(filter);
  if (it == groups_.end()) return;
  std::erase_if(it->second.members, [&](const subscriber& m) { return m.who == &s; });
  if (it->second.members.empty()) {
    group_index_.remove(it->second.filter, &it->second);
    groups_.erase(it);
  }
}

std::size_t subscription_index::match(const message& m, std::vector<subscriber>& out,
                                      const group_choice& choice) const {
  const auto first = out.size();
  std::size_t lists = trie_.match(m.tag, out);
  // Not to the publisher itself where it asked so (MQTT 5 No Local), before the shared groups
  // choose, so that a member never takes its own message from the rest of its group.
  if (trie_.no_local_count())
    out.erase(std::remove_if(
                  out.begin() + static_cast<std::ptrdiff_t>(first), out.end(),
                  [&](const subscriber& x) { return x.no_local && x.who->client_id() == m.from; }),
              out.end());
  if (groups_.empty()) return lists;
  thread_local std::vector<shared_index::entry> groups;
  groups.clear();
  group_index_.match(m.tag, groups);
  for (const auto& e : groups) {
    const auto& g = *e.who;
    if (choice.only &&
        std::find(choice.only->begin(), choice.only->end(), g.whole) == choice.only->end())
      continue;
    if (!choice.only && choice.policy && !choice.policy->take_here(g.whole, m)) {
      if (choice.elsewhere) choice.elsewhere->push_back(g.whole);
      continue;
    }
    const auto n = g.members.size();
    const auto start = g.next.fetch_add(1, std::memory_order_relaxed) % n;
    const subscriber* pick = nullptr;
    // A member whose deny patterns refuse the tag is not a candidate for it.
    auto may = [&](const subscriber& x) {
      return !x.who->rights().denies_some() || x.who->rights().can_receive(m.tag);
    };
    for (std::size_t i = 0; i < n && !pick; ++i) {
      const auto& x = g.members[(start + i) % n];
      if (x.who->sink() && may(x)) pick = &x;
    }
    if (!pick) {  // nobody connected: the next in turn, if it holds QoS 1/2 offline
      const auto& x = g.members[start];
      if (!x.who->persistent() || std::min(m.qos, x.qos) == 0 || !may(x)) continue;
      pick = &x;
    }
    out.push_back(*pick);
    if (choice.here) choice.here->push_back(g.whole);
    ++lists;
  }
  return lists;
}

session* subscription_index::other_member(std::string_view whole, const message& m,
                                          const session& leaving, std::uint8_t& qos) const {
  auto it = groups_.find(whole);
  if (it == groups_.end() || !filter_matches(it->second.filter, m.tag)) return nullptr;
  const auto& g = it->second;
  const auto n = g.members.size();
  const auto start = g.next.fetch_add(1, std::memory_order_relaxed) % n;
  for (std::size_t i = 0; i < n; ++i) {
    const auto& x = g.members[(start + i) % n];
    if (x.who == &leaving || !x.who->sink() || std::min(m.qos, x.qos) == 0) continue;
    qos = std::min(m.qos, x.qos);
    return x.who;
  }
  return nullptr;
}

std::size_t subscription_index::size() const {
  std::size_t n = trie_.size();
  for (const auto& [key, g] : groups_)
    n += g.members.size();
  return n;
}

void unique_recipients(std::vector<subscriber>& v, std::size_t lists) {
  if (lists <= 1 || v.size() <= 1) return;
  std::sort(v.begin(), v.end(), [](const subscriber& a, const subscriber& b) {
    return a.who != b.who ? a.who < b.who : a.qos > b.qos;
  });
  v.erase(std::unique(v.begin(), v.end(),
                      [](const subscriber& a, const subscriber& b) { return a.who == b.who; }),
          v.end());
}

}  // namespace wsagent::core
