#pragma once
// Retained messages: the last retained message of each tag, in a trie over tag levels so
// that a new subscription finds the messages its filter matches by walking the filter
// ('+' visits every child, '#' a whole subtree), not by testing every retained tag.
//
// Not thread-safe: retained_store guards it.

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/message.hpp"
#include "core/session.hpp"

namespace wsagent::core {

class retained_tree {
 public:
  retained_tree();
  ~retained_tree();
  retained_tree(const retained_tree&) = delete;
  retained_tree& operator=(const retained_tree&) = delete;

  // Sets `m` (its tag a valid tag) as its tag's retained message; returns false (and keeps
  // nothing) when that would make more than `limit` retained tags.
  bool set(message_ptr m, std::size_t limit);
  // Clears the tag's retained message; returns true when there was one.
  bool clear(std::string_view tag);
  // Appends the retained messages whose tags `filter` (a valid filter) matches, with the
  // rules of filter_matches() (a first-level wildcard skips reserved tags).
  void match(std::string_view filter, std::vector<message_ptr>& out) const;

  std::size_t size() const noexcept { return count_; }

 private:
  struct node;
  std::unique_ptr<node> root_;
  std::size_t count_ = 0;
};

}  // namespace wsagent::core
