#pragma once
// The cluster on Redis (docs/cluster.md): this node's part of it. The engine
// - records in Redis the filters this node's clients hold (router::set_filter_observer), and
//   keeps the route table of every other node's filters current;
// - sends each message published here to the nodes with a subscriber for it, one PUBLISH to
//   each such node's channel (router::set_observer), and injects into the router what other
//   nodes send to this node's channel;
// - refreshes this node's heartbeat, and drops from the route table the nodes whose
//   heartbeat stopped;
// - records the client ids this node holds sessions for, each with a claim (a cluster-wide
//   number: the newest claim owns the id), so that a direct message finds its recipient's
//   node and a client that connects to another node takes its id over from this one
//   (router::set_ownership; router::evict() here when another node's claim is newer);
// - reconnects when Redis goes away, then writes its record again and reads the others'.
//
// Threads: the engine runs two of its own. The cluster thread holds both Redis connections
// (commands; pub/sub), the timers and the route table's writes: every private member not
// said otherwise is its own. The inbound thread decodes and routes what arrives, behind a
// bounded queue, so that the Redis read loop never waits on this node's routing or clients
// (what does not fit is dropped and counted: a subscriber connection Redis cuts off for
// its output buffer would lose more). Publishers call published() on their own threads: it
// matches the route table (its shared lock) and queues; it never waits on Redis.
//
// Lifecycle: constructed and start()ed after the router's store and before serving;
// stop()ped after the server stopped (the last publishes and filter removals go out, then
// the node leaves: its filters and heartbeat are deleted and the others told), before the
// router is destroyed.

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cluster/redis_connection.hpp"
#include "cluster/route_table.hpp"
#include "common/metrics.hpp"
#include "common/mutex.hpp"
#include "core/router.hpp"

namespace wsagent::cluster {

// The store's meta key (store_ops::put_meta) under which a node keeps its inbox position.
inline constexpr std::string_view inbox_position_key = "cluster.inbox";

struct engine_settings {
  std::string node;      // this node's name (cluster.node_id)
  redis_endpoint redis;  // standalone; with sentinels, the master's credentials only
  // Redis with Sentinel: the sentinels, asked in turn for `master`'s address (and every
  // heartbeat whether it moved).
  std::vector<redis_endpoint> sentinels;
  std::string master;
  // Redis Cluster: its seed nodes, asked in turn for the slot map. Every key and channel of
  // the cluster then carries the hash tag {prefix}: one slot, so that each script's keys are
  // on one shard; node channels use sharded pub/sub (SSUBSCRIBE, SPUBLISH).
  std::vector<redis_endpoint> cluster_seeds;
  std::string prefix = "wsagent";  // of every key and channel (several clusters, one Redis)
  int heartbeat_ms = 1000;
  int node_timeout_ms = 5000;          // a node whose heartbeat is older is gone
  int reconcile_ms = 10000;            // every node's version compared with Redis's
  std::size_t inbound_queue = 65536;   // messages from other nodes waiting to be routed here
  std::size_t outbound_queue = 65536;  // messages waiting to go to Redis
  // QoS 1/2 across nodes: each node's inbox stream keeps about this many entries at most;
  // the publisher is acknowledged once its message is in every interested node's inbox
  // (and, with wait_replicas, on that many replicas: WAIT); while Redis is away it waits
  // up to publish_timeout_ms, then is refused.
  std::size_t inbox_max = 100000;
  int wait_replicas = 0;
  int publish_timeout_ms = 5000;
  // Where this node's inbox was read to, durably (the store's meta inbox_position_key;
  // "" at the first start: from the stream's end, which is then written to the router's
  // store before anything is read).
  std::string inbox_position;
  redis_settings connection;
};

// The engine's figures, read by /metrics from any thread.
struct engine_probe {
  std::atomic<std::uint64_t> sent{0};      // PUBLISHes to other nodes' channels
  std::atomic<std::uint64_t> received{0};  // messages from other nodes routed here
  // Not sent: Redis unreachable (per interested node), the outbound queue full.
  std::atomic<std::uint64_t> dropped_down{0};
  std::atomic<std::uint64_t> dropped_outbound{0};
  // Sent, but the node's channel had no subscriber (it was reconnecting, or gone).
  std::atomic<std::uint64_t> unrouted{0};
  std::atomic<std::uint64_t> dropped_inbound{0};  // the inbound queue full
  std::atomic<std::uint64_t> malformed{0};        // not an envelope, or a bad route change
  std::atomic<std::uint64_t> connects{0};         // (re)connections to Redis that synced
  std::atomic<std::uint64_t> resyncs{0};          // a node's filters read again
  std::atomic<std::uint64_t> evictions{0};        // sessions here a newer claim elsewhere took
  // A shared group's turn went to a node that had left by the time it was sent.
  std::atomic<std::uint64_t> dropped_group{0};
  std::atomic<std::uint64_t> inbox_sent{0};      // QoS 1/2: XADDs to other nodes' inboxes
  std::atomic<std::uint64_t> inbox_received{0};  // entries read from this node's inbox
  std::atomic<std::uint64_t> refused{0};         // QoS 1/2 publishes refused (no Redis in time)
};

class engine final : public core::publish_observer,
                     public core::filter_observer,
                     public core::client_ownership,
                     public core::group_policy {
 public:
  engine(core::router& router, engine_settings settings);
  ~engine() override;
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  // Registers with the router and starts the threads; connecting goes on in the background
  // (ready() once synced).
  void start();
  // Sends what is queued, leaves the cluster (bounded: `timeout_ms`), joins the threads.
  void stop(int timeout_ms = 2000);

  // Connected to Redis with the route table read: cross-node messages flow.
  bool ready() const noexcept { return ready_.load(std::memory_order_acquire); }
  const engine_settings& settings() const noexcept { return settings_; }
  const route_table& routes() const noexcept { return table_; }
  const engine_probe& probe() const noexcept { return probe_; }
  void write_metrics(common::metric_set& out) const;

  // core::publish_observer: any publisher's thread.
  void published(const core::message_ptr& msg, const core::observed_publish& how) override;
  // core::filter_observer: with the routing lock held.
  void filter_added(std::string_view filter) override;
  void filter_removed(std::string_view filter) override;
  // core::client_ownership: a session here took or let go an id (any thread, router locks
  // held); another node holds one (a direct message's recipient).
  void claimed(std::string_view client_id) override;
  void released(std::string_view client_id) override;
  bool held_elsewhere(std::string_view client_id) const override;
  void departing(std::string_view client_id, const core::departure* d) override;
  // core::group_policy: a publisher's thread, the routing lock held shared.
  bool take_here(std::string_view whole, const core::message& m) const override;

 private:
  struct impl;
  struct outgoing {
    core::message_ptr msg;
    std::function<void(bool)> done;  // a QoS 1/2 publisher's acknowledgement, held
    std::vector<remote_node_ptr> to_nodes;
    // Per node (same index; empty when no node is sent shared groups): the groups it serves.
    std::vector<std::vector<std::string>> groups;
    std::string to;
  };

  void wake_cluster_thread() REQUIRES(queue_mutex_);
  // What arrived on this node's channel (`stream_id` empty) or inbox stream, into the
  // inbound queue (the cluster thread). An inbox entry is never dropped: the inbox is read
  // only while the queue has room.
  void deliver_inbound(const std::string& bytes, std::string stream_id = {});
  std::size_t inbound_size();
  void inbound_loop();

  core::router& router_;
  const engine_settings settings_;
  route_table table_;
  engine_probe probe_;
  std::atomic<bool> ready_{false};
  std::unique_ptr<impl> impl_;  // the cluster thread's state (Asio, connections, timers)

  // Handed from publishers and the router to the cluster thread.
  common::mutex queue_mutex_;
  std::vector<outgoing> outbound_ GUARDED_BY(queue_mutex_);
  std::vector<std::pair<bool, std::string>> filter_changes_ GUARDED_BY(queue_mutex_);
  // Client ids whose session here came or went since the last drain; true: a connection
  // took it (a fresh claim). The drain asks the router what is true now.
  std::unordered_map<std::string, bool> client_changes_ GUARDED_BY(queue_mutex_);
  // Retained messages set or cleared here, for Redis and the other nodes.
  struct retained_change {
    core::message_ptr msg;
    bool clear = false;
    std::function<void(bool)> done;  // a QoS 1/2 publisher's acknowledgement, held
  };
  std::vector<retained_change> retained_changes_ GUARDED_BY(queue_mutex_);
  // What another node publishes for a client here should this node die (nullopt: nothing
  // any more), encoded on the caller's thread.
  std::unordered_map<std::string, std::optional<std::string>> departure_changes_
      GUARDED_BY(queue_mutex_);
  bool drain_posted_ GUARDED_BY(queue_mutex_) = false;

  // Handed from the cluster thread to the inbound thread.
  common::mutex inbound_mutex_;
  std::condition_variable_any inbound_wake_;
  struct incoming {
    std::string bytes;
    std::string stream_id;  // an inbox entry's id; "" for pub/sub
  };
  std::deque<incoming> inbound_ GUARDED_BY(inbound_mutex_);
  bool inbound_stop_ GUARDED_BY(inbound_mutex_) = false;

  std::thread cluster_thread_;
  std::thread inbound_thread_;
  bool started_ = false;  // start()/stop()'s caller's
};

}  // namespace wsagent::cluster
