#include "cluster/route_table.hpp"

#include <algorithm>
#include <atomic>
#include <charconv>

#include "core/tag.hpp"
#include "core/tag_index_impl.hpp"

namespace wsagent::cluster {

struct route_table::node_state {
  remote_node_ptr id;
  std::uint64_t version = 0;  // the last change applied
  std::set<std::string, std::less<>> filters;
  std::unordered_map<std::string, std::uint64_t, core::string_hash, std::equal_to<>> clients;
};

struct route_table::group_state {
  std::string whole;  // "$share/<g>/<f>"
  std::string inner;  // <f>
  std::vector<node_state*> nodes;
  mutable std::atomic<std::size_t> turn{0};  // take_here(): this node and the others
  mutable std::atomic<std::size_t> next{0};  // pick_node(): the others
};

}  // namespace wsagent::cluster

namespace wsagent::core {
template class basic_tag_index<cluster::route_table::node_state>;
template class basic_tag_index<cluster::route_table::group_state>;
}  // namespace wsagent::core

namespace wsagent::cluster {

namespace {

bool is_shared(std::string_view filter) {
  return filter.starts_with("$share/");
}

// "$share/<g>/<f>" -> <f>; "" when malformed.
std::string_view inner_of(std::string_view whole) {
  whole.remove_prefix(7);
  const auto slash = whole.find('/');
  if (slash == 0 || slash == std::string_view::npos) return {};
  return whole.substr(slash + 1);
}

bool valid_filter(std::string_view f) {
  return !f.empty() && core::validate_filter(f, {1 << 16, 1 << 10}) == core::tag_error::none;
}

bool read_number(std::string_view& s, std::uint64_t& out) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), out);
  if (r.ec != std::errc() || r.ptr == s.data()) return false;
  s.remove_prefix(static_cast<std::size_t>(r.ptr - s.data()));
  return true;
}

// "<len>:<bytes>"
bool read_counted(std::string_view& s, std::string& out) {
  std::uint64_t n = 0;
  if (!read_number(s, n) || s.empty() || s.front() != ':') return false;
  s.remove_prefix(1);
  if (n > s.size()) return false;
  out.assign(s.substr(0, n));
  s.remove_prefix(n);
  return true;
}

void put_counted(std::string& out, std::string_view s) {
  out += std::to_string(s.size());
  out += ':';
  out += s;
}

std::uint64_t claim_of(std::string_view v) {
  std::uint64_t n = 0;
  std::from_chars(v.data(), v.data() + v.size(), n);
  return n;
}

}  // namespace

std::optional<route_change> parse_route_change(std::string_view s) {
  route_change c;
  const auto space = s.find(' ');
  if (space == 0 || space == std::string_view::npos) return std::nullopt;
  c.node.assign(s.substr(0, space));
  s.remove_prefix(space + 1);
  if (!read_number(s, c.version) || s.empty() || s.front() != ' ') return std::nullopt;
  s.remove_prefix(1);
  if (s == "!" || s == "~") {
    c.what = s == "!" ? route_change::kind::reset : route_change::kind::left;
    return c;
  }
  while (!s.empty()) {
    const char op = s.front();
    if (op != '+' && op != '-') return std::nullopt;
    s.remove_prefix(1);
    route_entry e;
    if (!read_counted(s, e.key) || e.key.empty() || !read_counted(s, e.value)) return std::nullopt;
    c.ops.emplace_back(op == '+', std::move(e));
  }
  return c;
}

std::string format_route_change(const route_change& c) {
  std::string out = c.node + ' ' + std::to_string(c.version) + ' ';
  if (c.what != route_change::kind::ops)
    return out + (c.what == route_change::kind::reset ? '!' : '~');
  for (const auto& [added, e] : c.ops) {
    out += added ? '+' : '-';
    put_counted(out, e.key);
    put_counted(out, e.value);
  }
  return out;
}

route_table::route_table(std::string self, std::string channel_prefix)
    : self_(std::move(self)), channel_prefix_(std::move(channel_prefix)) {}

route_table::~route_table() = default;

route_table::node_state& route_table::node_locked(std::string_view name) {
  auto it = nodes_.find(name);
  if (it != nodes_.end()) return *it->second;
  auto n = std::make_unique<node_state>();
  n->id = std::make_shared<remote_node>(
      remote_node{std::string(name), channel_prefix_ + std::string(name)});
  return *nodes_.emplace(std::string(name), std::move(n)).first->second;
}

// A filter another node published that is not a valid filter here (another version's rules,
// other limits) is kept in the node's set but not matched; a key of another kind is ignored
// (a later version's).
void route_table::add_locked(node_state& n, const route_entry& e,
                             std::vector<std::pair<std::string, std::uint64_t>>* claims) {
  std::string_view key = e.key;
  if (key.starts_with("f:")) {
    key.remove_prefix(2);
    if (!n.filters.emplace(key).second) return;
    ++filters_;
    if (!is_shared(key)) {
      if (valid_filter(key)) trie_.add(key, &n, 0);
      return;
    }
    const auto inner = inner_of(key);
    if (!valid_filter(inner) || is_shared(inner)) return;
    auto [it, fresh] = groups_.try_emplace(std::string(key));
    auto& g = it->second;
    if (fresh) {
      g.whole = key;
      g.inner = inner;
      group_trie_.add(g.inner, &g, 0);
    }
    g.nodes.push_back(&n);
  } else if (key.starts_with("c:")) {
    key.remove_prefix(2);
    const auto claim = claim_of(e.value);
    n.clients[std::string(key)] = claim;
    auto& holders = clients_[std::string(key)];
    auto it =
        std::find_if(holders.begin(), holders.end(), [&](const auto& h) { return h.first == &n; });
    if (it != holders.end())
      it->second = claim;
    else
      holders.emplace_back(&n, claim);
    if (claims) claims->emplace_back(std::string(key), claim);
  }
}

void route_table::drop_locked(node_state& n, std::string_view key) {
  if (key.starts_with("f:")) {
    key.remove_prefix(2);
    auto it = n.filters.find(key);
    if (it == n.filters.end()) return;
    --filters_;
    if (!is_shared(key)) {
      trie_.remove(key, &n);
    } else if (auto g = groups_.find(key); g != groups_.end()) {
      std::erase(g->second.nodes, &n);
      if (g->second.nodes.empty()) {
        group_trie_.remove(g->second.inner, &g->second);
        groups_.erase(g);
      }
    }
    n.filters.erase(it);
  } else if (key.starts_with("c:")) {
    key.remove_prefix(2);
    auto it = n.clients.find(key);
    if (it == n.clients.end()) return;
    n.clients.erase(it);
    if (auto h = clients_.find(key); h != clients_.end()) {
      std::erase_if(h->second, [&](const auto& x) { return x.first == &n; });
      if (h->second.empty()) clients_.erase(h);
    }
  }
}

void route_table::drop_all_locked(node_state& n) {
  std::vector<std::string> keys;
  for (const auto& f : n.filters)
    keys.push_back("f:" + f);
  for (const auto& [c, claim] : n.clients)
    keys.push_back("c:" + c);
  for (const auto& k : keys)
    drop_locked(n, k);
}

route_table::applied route_table::apply(
    const route_change& c, std::vector<std::pair<std::string, std::uint64_t>>* claims) {
  if (c.node == self_) return applied::stale;
  if (c.what == route_change::kind::left) {
    remove(c.node);
    return applied::ok;
  }
  common::lock<common::shared_mutex> lock(mutex_);
  auto it = nodes_.find(c.node);
  if (it == nodes_.end()) return applied::gap;
  auto& n = *it->second;
  if (c.version <= n.version) return applied::stale;
  if (c.version != n.version + 1 || c.what == route_change::kind::reset) return applied::gap;
  for (const auto& [added, e] : c.ops) {
    if (added)
      add_locked(n, e, claims);
    else
      drop_locked(n, e.key);
  }
  n.version = c.version;
  return applied::ok;
}

void route_table::replace(std::string_view node, std::uint64_t version,
                          const std::vector<route_entry>& all,
                          std::vector<std::pair<std::string, std::uint64_t>>* claims) {
  if (node == self_) return;
  common::lock<common::shared_mutex> lock(mutex_);
  auto& n = node_locked(node);
  if (version < n.version) return;  // a change newer than the read was applied meanwhile
  drop_all_locked(n);
  for (const auto& e : all)
    add_locked(n, e, claims);
  n.version = version;
}

void route_table::remove(std::string_view node) {
  common::lock<common::shared_mutex> lock(mutex_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return;
  drop_all_locked(*it->second);
  nodes_.erase(it);
}

void route_table::clear() {
  for (const auto& n : nodes())
    remove(n);
}

std::optional<std::uint64_t> route_table::version_of(std::string_view node) const {
  common::shared_lock lock(mutex_);
  auto it = nodes_.find(node);
  if (it == nodes_.end()) return std::nullopt;
  return it->second->version;
}

std::vector<std::string> route_table::nodes() const {
  common::shared_lock lock(mutex_);
  std::vector<std::string> out;
  for (const auto& [name, n] : nodes_)
    out.push_back(name);
  return out;
}

void route_table::match(std::string_view tag, std::vector<remote_node_ptr>& out) const {
  out.clear();
  thread_local std::vector<core::basic_subscriber<node_state>> hits;
  hits.clear();
  common::shared_lock lock(mutex_);
  if (filters_ == 0) return;
  const auto lists = trie_.match(tag, hits);
  if (lists > 1) {
    std::sort(hits.begin(), hits.end(), [](const auto& a, const auto& b) { return a.who < b.who; });
    hits.erase(std::unique(hits.begin(), hits.end(),
                           [](const auto& a, const auto& b) { return a.who == b.who; }),
               hits.end());
  }
  out.reserve(hits.size());
  for (const auto& h : hits)
    out.push_back(h.who->id);
}

bool route_table::take_here(std::string_view whole) const {
  common::shared_lock lock(mutex_);
  auto it = groups_.find(whole);
  if (it == groups_.end()) return true;
  const auto& g = it->second;
  return g.turn.fetch_add(1, std::memory_order_relaxed) % (g.nodes.size() + 1) == 0;
}

remote_node_ptr route_table::pick_node(std::string_view whole) const {
  common::shared_lock lock(mutex_);
  auto it = groups_.find(whole);
  if (it == groups_.end() || it->second.nodes.empty()) return nullptr;
  const auto& g = it->second;
  return g.nodes[g.next.fetch_add(1, std::memory_order_relaxed) % g.nodes.size()]->id;
}

void route_table::match_groups(std::string_view tag, std::vector<std::string>& out) const {
  out.clear();
  thread_local std::vector<core::basic_subscriber<group_state>> hits;
  hits.clear();
  common::shared_lock lock(mutex_);
  if (groups_.empty()) return;
  group_trie_.match(tag, hits);
  for (const auto& h : hits)
    out.push_back(h.who->whole);
}

remote_node_ptr route_table::owner_of(std::string_view client_id, std::uint64_t* claim) const {
  common::shared_lock lock(mutex_);
  auto it = clients_.find(client_id);
  if (it == clients_.end() || it->second.empty()) return nullptr;
  const auto best =
      std::max_element(it->second.begin(), it->second.end(),
                       [](const auto& a, const auto& b) { return a.second < b.second; });
  if (claim) *claim = best->second;
  return best->first->id;
}

std::size_t route_table::size() const {
  common::shared_lock lock(mutex_);
  return filters_;
}

std::size_t route_table::clients() const {
  common::shared_lock lock(mutex_);
  return clients_.size();
}

}  // namespace wsagent::cluster
