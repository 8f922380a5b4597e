#pragma once
// The subscription index: a trie over tag levels, with a '+' child and a '#' list per node,
// so matching a tag costs one walk over its levels (plus the '+' branches) whatever the
// number of subscriptions. Not thread-safe: the router guards it.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/session.hpp"

namespace wsagent::core {

struct subscriber {
  session* who;
  std::uint8_t qos;
  bool no_local = false;  // not the messages `who` published itself
};

class tag_index {
 public:
  tag_index();
  ~tag_index();

  // Adds or updates `who`'s subscription to `filter` (a valid filter). Returns true when new.
  bool add(std::string_view filter, session* who, std::uint8_t qos, bool no_local = false);
  // Returns true when the subscription existed.
  bool remove(std::string_view filter, session* who);
  // Appends every subscription matching `tag` (a valid tag); a session with several
  // matching filters appears once per filter (the router de-duplicates). Returns how many
  // filters' lists contributed: with one, no session can appear twice (a list holds each
  // session once), so the router can skip its de-duplication.
  std::size_t match(std::string_view tag, std::vector<subscriber>& out) const;

  std::size_t size() const noexcept { return count_; }
  // Subscriptions with no_local set: none, and the router skips looking for them.
  std::size_t no_local_count() const noexcept { return no_local_; }

 private:
  struct node;
  std::unique_ptr<node> root_;
  std::size_t count_ = 0;
  std::size_t no_local_ = 0;
};

}  // namespace wsagent::core
