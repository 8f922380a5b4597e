#pragma once
// The subscription index: a trie over tag levels, with a '+' child and a '#' list per node,
// so matching a tag costs one walk over its levels (plus the '+' branches) whatever the
// number of subscriptions. Not thread-safe: subscription_index guards it.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/session.hpp"

namespace wsagent::core {

// One subscription in the index: who (a session, or for the router's second index a shared
// subscription group), at what QoS.
template <class Who>
struct basic_subscriber {
  Who* who;
  std::uint8_t qos;
  bool no_local = false;  // not the messages `who` published itself
};
using subscriber = basic_subscriber<session>;

template <class Who>
class basic_tag_index {
 public:
  using entry = basic_subscriber<Who>;

  basic_tag_index();
  ~basic_tag_index();

  // Adds or updates `who`'s subscription to `filter` (a valid filter). Returns true when new.
  bool add(std::string_view filter, Who* who, std::uint8_t qos, bool no_local = false);
  // Returns true when the subscription existed.
  bool remove(std::string_view filter, Who* who);
  // Appends every subscription matching `tag` (a valid tag); a session with several
  // matching filters appears once per filter (the router de-duplicates). Returns how many
  // filters' lists contributed: with one, no session can appear twice (a list holds each
  // session once), so the router can skip its de-duplication.
  std::size_t match(std::string_view tag, std::vector<entry>& out) const;

  std::size_t size() const noexcept { return count_; }
  // Subscriptions with no_local set: none, and the router skips looking for them.
  std::size_t no_local_count() const noexcept { return no_local_; }

 private:
  struct node;
  std::unique_ptr<node> root_;
  std::size_t count_ = 0;
  std::size_t no_local_ = 0;
};

// Sessions' subscriptions.
using tag_index = basic_tag_index<session>;
// The router's shared subscription groups, by the filter after "$share/<group>/".
struct shared_group;
using shared_index = basic_tag_index<shared_group>;

}  // namespace wsagent::core
