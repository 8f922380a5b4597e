#include "cluster/engine.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <future>
#include <random>
#include <set>

#include "cluster/envelope.hpp"

namespace wsagent::cluster {

namespace asio = boost::asio;

namespace {

// Every script touches only the keys it is given (KEYS), so each runs on a Redis Cluster's
// shard of its key too; PUBLISH inside a script is replicated as the script's effect.

// A change of this node's filters: KEYS[1] its hash; ARGV: the routes channel, the node,
// then each op ('+' or '-' and the filter). The hash's field "" (never a filter) holds the
// version; the change goes out on the routes channel with it.
constexpr std::string_view change_script = R"lua(
local v = redis.call('HINCRBY', KEYS[1], '', 1)
local out = {ARGV[2], ' ', v, ' '}
for i = 3, #ARGV do
  local op, f = string.sub(ARGV[i], 1, 1), string.sub(ARGV[i], 2)
  if op == '+' then redis.call('HSET', KEYS[1], f, '1') else redis.call('HDEL', KEYS[1], f) end
  out[#out + 1] = op .. #f .. ':' .. f
end
redis.call('PUBLISH', ARGV[1], table.concat(out))
return v
)lua";

// This node's whole set, written again (start, reconnect): the hash replaced, its version
// moved on, and the others told to read it ('!').
constexpr std::string_view reset_script = R"lua(
local v = (tonumber(redis.call('HGET', KEYS[1], '')) or 0) + 1
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], '', v)
for i = 3, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], '1') end
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. v .. ' !')
return v
)lua";

// More filters of the same reset (a set too large for one script call).
constexpr std::string_view add_script = R"lua(
for i = 1, #ARGV do redis.call('HSET', KEYS[1], ARGV[i], '1') end
return #ARGV
)lua";

// The heartbeat: KEYS[1] the nodes' sorted set; ARGV: the node, the node timeout (ms).
// Scored with Redis's clock (one clock for every node); returns the live nodes.
constexpr std::string_view heartbeat_script = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
return redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[2]), '+inf')
)lua";

// Leaving: KEYS[1] the node's hash, KEYS[2] the nodes' set; ARGV: routes channel, node.
constexpr std::string_view leave_script = R"lua(
local v = (tonumber(redis.call('HGET', KEYS[1], '')) or 0) + 1
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. v .. ' ~')
return v
)lua";

constexpr std::size_t filters_per_call = 5000;

std::string random_epoch() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  return buf;
}

}  // namespace

// The cluster thread's state.
struct engine::impl {
  explicit impl(engine& e)
      : self(e),
        work(asio::make_work_guard(io)),
        heartbeat_timer(io),
        reconcile_timer(io),
        retry_timer(io),
        nodes_key(e.settings_.prefix + ":nodes"),
        routes_channel(e.settings_.prefix + ":routes"),
        epoch_key(e.settings_.prefix + ":epoch"),
        my_channel(e.settings_.prefix + ":node:" + e.settings_.node),
        my_filters(filters_key(e.settings_.node)) {}

  std::string filters_key(std::string_view node) const {
    return self.settings_.prefix + ":filters:" + std::string(node);
  }

  engine& self;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  asio::steady_timer heartbeat_timer;
  asio::steady_timer reconcile_timer;
  asio::steady_timer retry_timer;
  const std::string nodes_key, routes_channel, epoch_key, my_channel, my_filters;

  std::shared_ptr<redis_connection> cmd, sub;
  int subscribed = 0;   // confirmations of the pub/sub connection's SUBSCRIBE
  bool synced = false;  // this connection round has registered and read the table
  bool stopping = false;
  int backoff_ms = 100;
  std::string epoch;  // the Redis data set's, as first seen
  std::set<std::string> resyncing, resync_again;
  std::vector<std::string> live;  // the nodes the last heartbeat saw
  std::string envelope;           // reused for each message sent
  std::uint64_t logged_down = 0;

  // --- connecting ---

  void connect() {
    subscribed = 0;
    synced = false;
    const auto& s = self.settings_;
    auto on_closed = [this](const std::string& why) { lost(why); };
    cmd = redis_connection::create(io, s.redis, "wsagent:" + s.node + ":cmd",
                                   {[this] { both_ready(); }, on_closed, {}}, s.connection);
    sub = redis_connection::create(
        io, s.redis, "wsagent:" + s.node + ":sub",
        {[this] { both_ready(); }, on_closed, [this](const resp_value& v) { pushed(v); }},
        s.connection);
    cmd->start();
    sub->start();
  }

  void both_ready() {
    if (!cmd->is_ready() || !sub->is_ready()) return;
    sub->send({"SUBSCRIBE", routes_channel, my_channel});
  }

  // Either connection failed: both are dropped and made again after a backoff.
  void lost(const std::string& why) {
    const bool was = self.ready_.exchange(false, std::memory_order_acq_rel);
    if (cmd) cmd->close();
    if (sub) sub->close();
    heartbeat_timer.cancel();
    reconcile_timer.cancel();
    if (stopping) return;
    if (was || logged_down++ == 0)
      spdlog::error("cluster: Redis {}: {}; cross-node messages stop until it is back",
                    self.settings_.redis.describe(), why);
    else
      spdlog::debug("cluster: Redis {}: {}", self.settings_.redis.describe(), why);
    retry_timer.expires_after(std::chrono::milliseconds(backoff_ms));
    backoff_ms = std::min(backoff_ms * 2, 5000);
    retry_timer.async_wait([this](boost::system::error_code ec) {
      if (!ec && !stopping) connect();
    });
  }

  // Subscribed to the routes channel and this node's: nothing of what follows is missed.
  void sync() {
    auto c = cmd;
    c->send({"SET", epoch_key, random_epoch(), "NX"});
    c->send({"GET", epoch_key}, [this](const resp_value& v) {
      if (!v.is(resp_value::kind::string)) return;
      if (!epoch.empty() && v.text != epoch) {
        spdlog::warn(
            "cluster: Redis lost its data (epoch {} is now {}): every node writes its "
            "filters again",
            epoch, v.text);
        self.table_.clear();
      }
      epoch = v.text;
    });
    register_filters();
    heartbeat([this, c] {
      if (c != cmd) return;
      reconcile([this, c] {
        if (c != cmd || synced) return;
        synced = true;
        backoff_ms = 100;
        logged_down = 0;
        self.probe_.connects.fetch_add(1, std::memory_order_relaxed);
        self.ready_.store(true, std::memory_order_release);
        spdlog::info("cluster: node {} joined through Redis {} ({} other node(s), {} filter(s))",
                     self.settings_.node, self.settings_.redis.describe(),
                     self.table_.nodes().size(), self.table_.size());
        arm_heartbeat();
        arm_reconcile();
      });
    });
  }

  // This node's filters, all of them (what the router holds now; changes queued meanwhile
  // follow in order, so the hash ends as the router is).
  void register_filters() {
    auto all = self.router_.node_filters();
    std::size_t i = 0;
    do {
      std::vector<std::string_view> args;
      const bool first = i == 0;
      args.insert(args.end(), {"EVAL", first ? reset_script : add_script, "1", my_filters});
      if (first) args.insert(args.end(), {routes_channel, self.settings_.node});
      for (std::size_t n = 0; i < all.size() && n < filters_per_call; ++i, ++n)
        args.push_back(all[i]);
      cmd->send(args, [](const resp_value& v) {
        if (v.is(resp_value::kind::error) && v.text != connection_lost)
          spdlog::error("cluster: registering this node's filters failed: {}", v.text);
      });
    } while (i < all.size());
  }

  // --- heartbeat and reconciliation ---

  void heartbeat(std::function<void()> then = {}) {
    const auto timeout = std::to_string(self.settings_.node_timeout_ms);
    cmd->send({"EVAL", heartbeat_script, "1", nodes_key, self.settings_.node, timeout},
              [this, then = std::move(then)](const resp_value& v) {
                if (!v.is(resp_value::kind::array)) {
                  if (v.text != connection_lost)
                    spdlog::warn("cluster: heartbeat failed: {}", v.text);
                  return;
                }
                live.clear();
                for (const auto& e : v.elements)
                  if (e.is(resp_value::kind::string) && e.text != self.settings_.node)
                    live.push_back(e.text);
                forget_dead();
                if (then) then();
              });
  }

  void forget_dead() {
    for (const auto& n : self.table_.nodes())
      if (std::find(live.begin(), live.end(), n) == live.end()) {
        self.table_.remove(n);
        spdlog::warn("cluster: node {} is gone (no heartbeat for {} ms)", n,
                     self.settings_.node_timeout_ms);
      }
  }

  // Each live node's version against the table's; a node unknown or behind is read again.
  // `then` after every read it asked for.
  void reconcile(std::function<void()> then = {}) {
    auto left = std::make_shared<std::size_t>(live.size());
    auto done = std::make_shared<std::function<void()>>(std::move(then));
    if (live.empty()) {
      if (*done) (*done)();
      return;
    }
    for (const auto& n : live) {
      cmd->send({"HGET", filters_key(n), ""}, [this, n, left, done](const resp_value& v) {
        const std::uint64_t redis_version =
            v.is(resp_value::kind::string) ? std::strtoull(v.text.c_str(), nullptr, 10) : 0;
        auto finish = [left, done] {
          if (--*left == 0 && *done) (*done)();
        };
        if (v.is(resp_value::kind::error)) return finish();
        const auto known = self.table_.version_of(n);
        if (!known || *known != redis_version) return resync(n, finish);
        finish();
      });
    }
  }

  void arm_heartbeat() {
    heartbeat_timer.expires_after(std::chrono::milliseconds(self.settings_.heartbeat_ms));
    heartbeat_timer.async_wait([this](boost::system::error_code ec) {
      if (ec || !self.ready()) return;
      heartbeat();
      arm_heartbeat();
    });
  }

  void arm_reconcile() {
    reconcile_timer.expires_after(std::chrono::milliseconds(self.settings_.reconcile_ms));
    reconcile_timer.async_wait([this](boost::system::error_code ec) {
      if (ec || !self.ready()) return;
      reconcile();
      arm_reconcile();
    });
  }

  // A node's whole set read again; a resync asked for while one is running runs after it.
  void resync(const std::string& node, std::function<void()> then = {}) {
    if (!resyncing.insert(node).second) {
      resync_again.insert(node);
      if (then) then();
      return;
    }
    self.probe_.resyncs.fetch_add(1, std::memory_order_relaxed);
    cmd->send({"HGETALL", filters_key(node)},
              [this, node, then = std::move(then)](const resp_value& v) {
                resyncing.erase(node);
                if (v.is(resp_value::kind::array)) {
                  std::uint64_t version = 0;
                  std::vector<std::string> filters;
                  for (std::size_t i = 0; i + 1 < v.elements.size(); i += 2) {
                    const auto& field = v.elements[i].text;
                    if (field.empty())
                      version = std::strtoull(v.elements[i + 1].text.c_str(), nullptr, 10);
                    else
                      filters.push_back(field);
                  }
                  if (version == 0)
                    self.table_.remove(node);  // nothing in Redis: left, or never registered
                  else
                    self.table_.replace(node, version, std::move(filters));
                }
                if (resync_again.erase(node) && cmd && cmd->is_ready()) resync(node);
                if (then) then();
              });
  }

  // --- the pub/sub connection ---

  void pushed(const resp_value& v) {
    const auto kind = v.push_kind();
    if (kind == "subscribe") {
      if (++subscribed == 2) sync();
      return;
    }
    if (kind != "message" || v.elements.size() != 3) return;
    const auto& channel = v.elements[1].text;
    if (channel == routes_channel) return route_changed(v.elements[2].text);
    if (channel == my_channel) self.deliver_inbound(v.elements[2].text);
  }

  void route_changed(const std::string& payload) {
    auto c = parse_route_change(payload);
    if (!c) {
      self.probe_.malformed.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (c->node == self.settings_.node) return;
    if (c->what == route_change::kind::left) spdlog::info("cluster: node {} left", c->node);
    if (self.table_.apply(*c) == route_table::applied::gap) resync(c->node);
  }

  // --- sending ---

  void drain() {
    std::vector<outgoing> batch;
    std::vector<std::pair<bool, std::string>> changes;
    {
      common::lock<common::mutex> lock(self.queue_mutex_);
      batch.swap(self.outbound_);
      changes.swap(self.filter_changes_);
      self.drain_posted_ = false;
    }
    // Changes made while Redis was away are in the set written on reconnect.
    if (!changes.empty() && cmd && cmd->is_ready() && synced) send_changes(changes);
    const bool up = cmd && cmd->is_ready() && self.ready();
    for (auto& o : batch) {
      if (!up) {
        self.probe_.dropped_down.fetch_add(o.to_nodes.size(), std::memory_order_relaxed);
        continue;
      }
      envelope.clear();
      encode_envelope(*o.msg, {o.to}, envelope);
      for (const auto& n : o.to_nodes) {
        cmd->send({"PUBLISH", n->channel, envelope}, [this](const resp_value& v) {
          if (v.is(resp_value::kind::integer) && v.integer == 0)
            self.probe_.unrouted.fetch_add(1, std::memory_order_relaxed);
          else if (v.is(resp_value::kind::error))
            self.probe_.dropped_down.fetch_add(1, std::memory_order_relaxed);
        });
        self.probe_.sent.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }

  void send_changes(const std::vector<std::pair<bool, std::string>>& changes) {
    std::vector<std::string> ops;
    ops.reserve(changes.size());
    for (const auto& [added, f] : changes)
      ops.push_back((added ? '+' : '-') + f);
    for (std::size_t i = 0; i < ops.size();) {
      std::vector<std::string_view> args{"EVAL",     change_script,  "1",
                                         my_filters, routes_channel, self.settings_.node};
      for (std::size_t n = 0; i < ops.size() && n < filters_per_call; ++i, ++n)
        args.push_back(ops[i]);
      cmd->send(args, [](const resp_value& v) {
        if (v.is(resp_value::kind::error) && v.text != connection_lost)
          spdlog::error("cluster: recording a filter change failed: {}", v.text);
      });
    }
  }

  // Leaving: what is queued goes out, then the leave script; `done` on its reply.
  void leave(std::function<void()> done) {
    drain();
    if (!cmd || !cmd->is_ready()) return done();
    cmd->send(
        {"EVAL", leave_script, "2", my_filters, nodes_key, routes_channel, self.settings_.node},
        [done](const resp_value&) { done(); });
  }
};

engine::engine(core::router& router, engine_settings settings)
    : router_(router),
      settings_(std::move(settings)),
      table_(settings_.node, settings_.prefix + ":node:"),
      impl_(std::make_unique<impl>(*this)) {}

engine::~engine() {
  stop(0);
}

void engine::start() {
  if (started_) return;
  started_ = true;
  router_.set_filter_observer(this);
  router_.set_observer(this);
  inbound_thread_ = std::thread([this] { inbound_loop(); });
  asio::post(impl_->io, [this] { impl_->connect(); });
  cluster_thread_ = std::thread([this] { impl_->io.run(); });
}

void engine::stop(int timeout_ms) {
  if (!started_) return;
  started_ = false;
  router_.set_observer(nullptr);
  router_.set_filter_observer(nullptr);
  auto left = std::make_shared<std::promise<void>>();
  auto fut = left->get_future();
  asio::post(impl_->io, [this, left] { impl_->leave([left] { left->set_value(); }); });
  if (fut.wait_for(std::chrono::milliseconds(timeout_ms)) != std::future_status::ready)
    spdlog::warn(
        "cluster: leaving timed out after {} ms (the others drop this node when its "
        "heartbeat expires)",
        timeout_ms);
  asio::post(impl_->io, [this] {
    impl_->stopping = true;
    impl_->retry_timer.cancel();
    impl_->heartbeat_timer.cancel();
    impl_->reconcile_timer.cancel();
    if (impl_->cmd) impl_->cmd->close();
    if (impl_->sub) impl_->sub->close();
    impl_->work.reset();
  });
  cluster_thread_.join();
  ready_.store(false, std::memory_order_release);
  {
    common::lock<common::mutex> lock(inbound_mutex_);
    inbound_stop_ = true;
  }
  inbound_wake_.notify_all();
  inbound_thread_.join();
}

void engine::wake_cluster_thread() {
  if (drain_posted_) return;
  drain_posted_ = true;
  asio::post(impl_->io, [this] { impl_->drain(); });
}

void engine::published(const core::message_ptr& msg, const core::observed_publish& how) {
  thread_local std::vector<remote_node_ptr> nodes;
  table_.match(msg->tag, nodes);
  if (nodes.empty()) return;
  if (!ready()) {
    probe_.dropped_down.fetch_add(nodes.size(), std::memory_order_relaxed);
    return;
  }
  common::lock<common::mutex> lock(queue_mutex_);
  if (outbound_.size() >= settings_.outbound_queue) {
    probe_.dropped_outbound.fetch_add(nodes.size(), std::memory_order_relaxed);
    return;
  }
  outbound_.push_back({msg, nodes, std::string(how.to)});
  wake_cluster_thread();
}

void engine::filter_added(std::string_view filter) {
  common::lock<common::mutex> lock(queue_mutex_);
  filter_changes_.emplace_back(true, std::string(filter));
  wake_cluster_thread();
}

void engine::filter_removed(std::string_view filter) {
  common::lock<common::mutex> lock(queue_mutex_);
  filter_changes_.emplace_back(false, std::string(filter));
  wake_cluster_thread();
}

// Called on the cluster thread by the pub/sub connection.
void engine::deliver_inbound(const std::string& bytes) {
  {
    common::lock<common::mutex> lock(inbound_mutex_);
    if (inbound_.size() >= settings_.inbound_queue) {
      probe_.dropped_inbound.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    inbound_.push_back(bytes);
  }
  inbound_wake_.notify_one();
}

void engine::inbound_loop() {
  std::deque<std::string> batch;
  std::uint64_t logged = 0;
  for (;;) {
    {
      common::unique_lock lock(inbound_mutex_);
      inbound_wake_.wait(
          lock, [this]() REQUIRES(inbound_mutex_) { return inbound_stop_ || !inbound_.empty(); });
      if (inbound_.empty() && inbound_stop_) return;
      batch.swap(inbound_);
    }
    for (const auto& bytes : batch) {
      auto d = decode_envelope(bytes);
      if (!d.msg) {
        probe_.malformed.fetch_add(1, std::memory_order_relaxed);
        if (logged++ < 10)
          spdlog::warn("cluster: a message on this node's channel is not an envelope ({})",
                       d.error);
        continue;
      }
      core::publish_options opts;
      opts.to = d.opts.to;
      router_.inject(d.msg, opts);
      probe_.received.fetch_add(1, std::memory_order_relaxed);
    }
    batch.clear();
  }
}

void engine::write_metrics(common::metric_set& out) const {
  auto n = [](const std::atomic<std::uint64_t>& a) {
    return static_cast<double>(a.load(std::memory_order_relaxed));
  };
  out.gauge("cluster_up", "1 when connected to Redis with the route table read.", ready() ? 1 : 0);
  out.gauge("cluster_nodes", "Other nodes in the route table.",
            static_cast<double>(table_.nodes().size()));
  out.gauge("cluster_route_filters", "Filters of other nodes in the route table.",
            static_cast<double>(table_.size()));
  out.counter("cluster_messages_sent_total",
              "Messages sent to other nodes (one per interested node).", n(probe_.sent));
  out.counter("cluster_messages_received_total", "Messages from other nodes routed here.",
              n(probe_.received));
  constexpr std::string_view dropped = "Cross-node messages not delivered, by reason.";
  out.counter("cluster_messages_dropped_total", dropped, n(probe_.dropped_down),
              {{"reason", "redis_down"}});
  out.counter("cluster_messages_dropped_total", dropped, n(probe_.dropped_outbound),
              {{"reason", "outbound_queue"}});
  out.counter("cluster_messages_dropped_total", dropped, n(probe_.dropped_inbound),
              {{"reason", "inbound_queue"}});
  out.counter("cluster_messages_dropped_total", dropped, n(probe_.unrouted),
              {{"reason", "node_unsubscribed"}});
  out.counter("cluster_malformed_total",
              "Messages and route changes from Redis that could not be read.", n(probe_.malformed));
  out.counter("cluster_connects_total", "Connections to Redis that synced the route table.",
              n(probe_.connects));
  out.counter("cluster_resyncs_total", "Times a node's filters were read again from Redis.",
              n(probe_.resyncs));
}

}  // namespace wsagent::cluster
