#pragma once
// The cluster's route table as one node sees it (docs/cluster.md, "The route table"): which
// filters every other node's clients hold, so that a publish is sent to exactly the nodes
// that have a subscriber for it, one copy each; and which client ids they hold sessions for
// (a direct message's recipient, a takeover across nodes).
//
// Each node records its own filters in Redis (a hash per node, reference-counted in the
// node's memory: a filter is written when its first local subscriber appears and removed
// with its last), with a version that grows with every change, and publishes each change
// on the routes channel. Every node applies those changes to this table in version order;
// a change that skips a version, or a node it has not seen, asks for that node's whole hash
// again (resync), and a periodic reconciliation compares versions with what Redis holds.
//
// Thread: written by the cluster's thread; matched by publishers on any I/O thread, under
// the table's shared mutex (a match holds it shared; a change, exclusive).

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/mutex.hpp"
#include "core/tag_index.hpp"

namespace wsagent::cluster {

// Another node: its name and the channel its messages go to. Immutable; a publish in flight
// holds it (shared_ptr) past the node's removal from the table.
struct remote_node {
  std::string name;
  std::string channel;
};
using remote_node_ptr = std::shared_ptr<const remote_node>;

// One entry of a node's record in Redis (a field of its hash): a filter its clients hold
// (key "f:<filter>", value "1"), or a client id it holds a session for (key "c:<id>", value
// the claim: a cluster-wide number that grows with every claim, so that when two nodes hold
// one id for a moment the higher claim is the owner and the other lets go).
struct route_entry {
  std::string key;
  std::string value;
  bool operator==(const route_entry&) const = default;
};

// One change of a node's record, as published on the routes channel.
struct route_change {
  enum class kind {
    ops,    // entries added and removed
    reset,  // the node wrote its whole record again (it started, or reconnected): read it
    left,   // the node left the cluster: drop it
  };
  std::string node;
  std::uint64_t version = 0;
  kind what = kind::ops;
  std::vector<std::pair<bool, route_entry>> ops;  // (added?, entry), in order
};

// The routes channel's payload: "<node> <version> " then either '!' (reset), '~' (left), or
// each op: '+' or '-', then the key and the value, each as its length in decimal, ':' and
// its bytes. Null when malformed.
std::optional<route_change> parse_route_change(std::string_view payload);
std::string format_route_change(const route_change& c);

class route_table {
 public:
  // `self`: this node's name (its own changes are ignored); a node's channel is
  // `channel_prefix` + its name.
  route_table(std::string self, std::string channel_prefix);
  ~route_table();
  route_table(const route_table&) = delete;
  route_table& operator=(const route_table&) = delete;

  enum class applied { ok, stale, gap };
  // A change from the routes channel. `gap`: the node is unknown or a version was missed;
  // nothing was applied and the caller resyncs that node. `stale`: already seen (or this
  // node's own): ignored. The client ids it claimed are appended to `claims`, when given.
  applied apply(const route_change& c,
                std::vector<std::pair<std::string, std::uint64_t>>* claims = nullptr);
  // A node's whole record at `version`, read from Redis (a resync or the reconciliation):
  // replaces what the table had, unless the table is already past it. Its claims are
  // appended to `claims`, when given.
  void replace(std::string_view node, std::uint64_t version, const std::vector<route_entry>& all,
               std::vector<std::pair<std::string, std::uint64_t>>* claims = nullptr);
  // A node that is gone (its heartbeat expired, or it left): its filters are dropped.
  void remove(std::string_view node);

  // Every node dropped (Redis lost its data: each node writes its set again).
  void clear();

  // The version the table holds for `node` (nullopt: unknown).
  std::optional<std::uint64_t> version_of(std::string_view node) const;
  std::vector<std::string> nodes() const;

  // The nodes with a subscriber for `tag` (a valid tag), each once, appended to `out`
  // (cleared first). Shared subscriptions ("$share/g/f") are not matched here.
  void match(std::string_view tag, std::vector<remote_node_ptr>& out) const;

  // Shared groups ("$share/g/f") with members on several nodes take each message on one of
  // them, the nodes in turn. take_here(): of this node (which has members of `whole`) and
  // the others that have some, is it this node's turn? pick_node(): the next other node
  // that has members of `whole` (null: none). match_groups(): every group other nodes have
  // members of that `tag` matches (cleared first).
  bool take_here(std::string_view whole) const;
  remote_node_ptr pick_node(std::string_view whole) const;
  void match_groups(std::string_view tag, std::vector<std::string>& out) const;

  // The node that holds a session for `client_id` (the highest claim), and that claim;
  // null when no other node does.
  remote_node_ptr owner_of(std::string_view client_id, std::uint64_t* claim = nullptr) const;

  // Filters in the table, all nodes together; client ids other nodes hold.
  std::size_t size() const;
  std::size_t clients() const;

 private:
  struct node_state;
  struct group_state;
  node_state& node_locked(std::string_view name) REQUIRES(mutex_);
  void add_locked(node_state& n, const route_entry& e,
                  std::vector<std::pair<std::string, std::uint64_t>>* claims) REQUIRES(mutex_);
  void drop_locked(node_state& n, std::string_view key) REQUIRES(mutex_);
  void drop_all_locked(node_state& n) REQUIRES(mutex_);

  const std::string self_;
  const std::string channel_prefix_;
  mutable common::shared_mutex mutex_;
  // The trie points at node states: stable (unique_ptr), removed from the trie before they
  // are destroyed.
  std::unordered_map<std::string, std::unique_ptr<node_state>, core::string_hash, std::equal_to<>>
      nodes_ GUARDED_BY(mutex_);
  core::basic_tag_index<node_state> trie_ GUARDED_BY(mutex_);
  std::size_t filters_ GUARDED_BY(mutex_) = 0;
  // Shared groups by their whole filter, and by the filter after "$share/<g>/" for matching
  // (a group's address is stable: unordered_map nodes do not move).
  std::unordered_map<std::string, group_state, core::string_hash, std::equal_to<>> groups_
      GUARDED_BY(mutex_);
  core::basic_tag_index<group_state> group_trie_ GUARDED_BY(mutex_);
  // Client id -> the nodes that hold it, with their claims (more than one only for a moment).
  std::unordered_map<std::string, std::vector<std::pair<node_state*, std::uint64_t>>,
                     core::string_hash, std::equal_to<>>
      clients_ GUARDED_BY(mutex_);
};

}  // namespace wsagent::cluster
