#include "core/retained.hpp"

#include "core/tag.hpp"

namespace wsagent::core {

struct retained_tree::node {
  std::unordered_map<std::string, std::unique_ptr<node>, string_hash, std::equal_to<>> children;
  message_ptr msg;
};

retained_tree::retained_tree() : root_(std::make_unique<node>()) {}
retained_tree::~retained_tree() = default;

bool retained_tree::set(message_ptr m, std::size_t limit) {
  std::string_view rest = m->tag;
  node* n = root_.get();
  // Walk without creating first: replacing a tag's message never hits the limit.
  bool more = true;
  std::string_view walk = rest;
  node* found = n;
  while (found && more) {
    auto level = next_level(walk, more);
    auto it = found->children.find(level);
    found = it == found->children.end() ? nullptr : it->second.get();
  }
  if (found && found->msg) {
    found->msg = std::move(m);
    return true;
  }
  if (count_ >= limit) return false;
  more = true;
  while (more) {
    auto level = next_level(rest, more);
    auto it = n->children.find(level);
    if (it == n->children.end())
      it = n->children.emplace(std::string(level), std::make_unique<node>()).first;
    n = it->second.get();
  }
  n->msg = std::move(m);
  ++count_;
  return true;
}

bool retained_tree::clear(std::string_view tag) {
  // Remember the path to prune nodes left empty.
  std::vector<std::pair<node*, std::string_view>> path;
  node* n = root_.get();
  bool more = true;
  while (more) {
    auto level = next_level(tag, more);
    auto it = n->children.find(level);
    if (it == n->children.end()) return false;
    path.emplace_back(n, level);
    n = it->second.get();
  }
  if (!n->msg) return false;
  n->msg.reset();
  --count_;
  while (!path.empty()) {
    auto [parent, level] = path.back();
    path.pop_back();
    auto it = parent->children.find(level);
    if (it->second->msg || !it->second->children.empty()) break;
    parent->children.erase(it);
  }
  return true;
}

namespace {

void collect_all(const auto& n, std::vector<message_ptr>& out) {
  if (n.msg) out.push_back(n.msg);
  for (const auto& [level, child] : n.children)
    collect_all(*child, out);
}

void walk(const auto& n, std::string_view filter, bool first, std::vector<message_ptr>& out) {
  bool more = true;
  auto level = next_level(filter, more);
  if (level == "#") {
    // This node's own message ("a/#" matches "a"; not at the root) and everything below.
    if (!first && n.msg) out.push_back(n.msg);
    for (const auto& [name, child] : n.children) {
      if (first && is_reserved_tag(name)) continue;
      collect_all(*child, out);
    }
    return;
  }
  auto visit = [&](const auto& child) {
    if (more)
      walk(child, filter, false, out);
    else if (child.msg)
      out.push_back(child.msg);
  };
  if (level == "+") {
    for (const auto& [name, child] : n.children) {
      if (first && is_reserved_tag(name)) continue;
      visit(*child);
    }
  } else if (auto it = n.children.find(level); it != n.children.end()) {
    visit(*it->second);
  }
}

}  // namespace

void retained_tree::match(std::string_view filter, std::vector<message_ptr>& out) const {
  walk(*root_, filter, true, out);
}

}  // namespace wsagent::core
