#pragma once
// The definitions of basic_tag_index's members, for the translation units that instantiate
// it: core's (sessions, shared groups) and the cluster's route table (other nodes). Include
// it in a .cpp only.

#include <algorithm>

#include "core/tag.hpp"
#include "core/tag_index.hpp"

namespace wsagent::core {

template <class Who>
struct basic_tag_index<Who>::node {
  std::unordered_map<std::string, std::unique_ptr<node>, string_hash, std::equal_to<>> children;
  std::unique_ptr<node> plus;
  std::vector<entry> exact;  // filters ending at this node
  std::vector<entry> hash;   // filters "<this node>/#"

  bool empty() const { return children.empty() && !plus && exact.empty() && hash.empty(); }
};

namespace {

// Returns 1 when `from` contributed, for match()'s count.
template <class Entry>
std::size_t append_all(const std::vector<Entry>& from, std::vector<Entry>& out) {
  if (from.empty()) return 0;
  out.insert(out.end(), from.begin(), from.end());
  return 1;
}

}  // namespace

template <class Who>
basic_tag_index<Who>::basic_tag_index() : root_(std::make_unique<node>()) {}
template <class Who>
basic_tag_index<Who>::~basic_tag_index() = default;

template <class Who>
bool basic_tag_index<Who>::add(std::string_view filter, Who* who, std::uint8_t qos, bool no_local) {
  node* n = root_.get();
  bool more = true;
  std::vector<entry>* list = nullptr;
  while (more) {
    auto level = next_level(filter, more);
    if (level == "#") {
      list = &n->hash;
      break;
    }
    if (level == "+") {
      if (!n->plus) n->plus = std::make_unique<node>();
      n = n->plus.get();
    } else {
      auto it = n->children.find(level);
      if (it == n->children.end())
        it = n->children.emplace(std::string(level), std::make_unique<node>()).first;
      n = it->second.get();
    }
  }
  if (!list) list = &n->exact;
  for (auto& s : *list) {
    if (s.who == who) {
      no_local_ += no_local - s.no_local;
      s.qos = qos;
      s.no_local = no_local;
      return false;
    }
  }
  list->push_back({who, qos, no_local});
  ++count_;
  no_local_ += no_local;
  return true;
}

template <class Who>
bool basic_tag_index<Who>::remove(std::string_view filter, Who* who) {
  // Walk down remembering the path, so emptied nodes can be pruned on the way back.
  struct step {
    node* parent;
    node* child;
    std::string_view level;
  };
  std::vector<step> path;
  node* n = root_.get();
  bool more = true;
  std::vector<entry>* list = nullptr;
  while (more) {
    auto level = next_level(filter, more);
    if (level == "#") {
      list = &n->hash;
      break;
    }
    node* child = nullptr;
    if (level == "+") {
      child = n->plus.get();
    } else if (auto it = n->children.find(level); it != n->children.end()) {
      child = it->second.get();
    }
    if (!child) return false;
    path.push_back({n, child, level});
    n = child;
  }
  if (!list) list = &n->exact;
  auto it = std::find_if(list->begin(), list->end(), [&](auto& s) { return s.who == who; });
  if (it == list->end()) return false;
  no_local_ -= it->no_local;
  *it = list->back();
  list->pop_back();
  --count_;
  for (auto p = path.rbegin(); p != path.rend(); ++p) {
    if (!p->child->empty()) break;
    if (p->level == "+")
      p->parent->plus.reset();
    else
      p->parent->children.erase(p->parent->children.find(p->level));
  }
  return true;
}

template <class Who>
std::size_t basic_tag_index<Who>::match(std::string_view tag, std::vector<entry>& out) const {
  std::size_t lists = 0;
  // Iterative walk with an explicit stack of (node, rest of tag, more levels?).
  struct frame {
    const node* n;
    std::string_view rest;
    bool more;
  };
  // Depth-first; the stack never holds more than (levels + 1) frames.
  thread_local std::vector<frame> stack;
  stack.clear();
  const bool reserved = is_reserved_tag(tag);
  // The root is special: a first-level wildcard does not match a reserved tag.
  {
    const node* r = root_.get();
    if (!reserved) lists += append_all(r->hash, out);
    std::string_view rest = tag;
    bool more;
    auto level = next_level(rest, more);
    if (auto it = r->children.find(level); it != r->children.end())
      stack.push_back({it->second.get(), rest, more});
    if (!reserved && r->plus) stack.push_back({r->plus.get(), rest, more});
  }
  while (!stack.empty()) {
    frame f = stack.back();
    stack.pop_back();
    lists += append_all(f.n->hash, out);  // "<here>/#": deeper levels and this level itself
    if (!f.more) {
      lists += append_all(f.n->exact, out);
      continue;
    }
    std::string_view rest = f.rest;
    bool more;
    auto level = next_level(rest, more);
    if (auto it = f.n->children.find(level); it != f.n->children.end())
      stack.push_back({it->second.get(), rest, more});
    if (f.n->plus) stack.push_back({f.n->plus.get(), rest, more});
  }
  return lists;
}

}  // namespace wsagent::core
