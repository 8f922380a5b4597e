#include "cluster/engine.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <future>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <unordered_map>
#include <utility>

#include "cluster/envelope.hpp"
#include "common/clock.hpp"
#include "common/json_writer.hpp"
#include "core/store_writer.hpp"

namespace wsagent::cluster {

namespace asio = boost::asio;

namespace {

// Every script touches only the keys it is given (KEYS), so each runs on a Redis Cluster's
// shard of its key too; PUBLISH inside a script is replicated as the script's effect.

// Both scripts below write entries of this node's record, KEYS[1], through put(): a value
// '*' is a new claim, the claims counter's (KEYS[2]) next number, listed in `claims` (key,
// number) for the reply.
constexpr std::string_view put_entry = R"lua(
local function put(claims, k, val)
  if val == '*' then
    val = tostring(redis.call('INCR', KEYS[2]))
    claims[#claims + 1] = k
    claims[#claims + 1] = val
  end
  redis.call('HSET', KEYS[1], k, val)
  return val
end
)lua";

// A change of this node's record: KEYS[1] its hash, KEYS[2] the claims counter; ARGV: the
// routes channel, the node, then triplets (op '+' or '-', key, value; '*' as in put()). The
// hash's field "v" holds the version; the change goes out on the routes channel with it.
// Returns the version, then each new claim's key and number.
const std::string change_script = std::string(put_entry) + R"lua(
local v = redis.call('HINCRBY', KEYS[1], 'v', 1)
local out, claims = {ARGV[2], ' ', v, ' '}, {v}
for i = 3, #ARGV, 3 do
  local op, k, val = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  if op == '+' then
    val = put(claims, k, val)
  else
    redis.call('HDEL', KEYS[1], k)
  end
  out[#out + 1] = op .. #k .. ':' .. k .. #val .. ':' .. val
end
redis.call('PUBLISH', ARGV[1], table.concat(out))
return claims
)lua";

// This node's whole record, written again (start, reconnect): the hash replaced, its version
// moved on, and the others told to read it ('!'). ARGV: channel, node, a flag ("1": the first
// part of the record, which replaces the hash; "0": a further part), then pairs (key, value;
// '*' as in put()). Returns as the change script does.
const std::string reset_script = std::string(put_entry) + R"lua(
local v
if ARGV[3] == '1' then
  v = (tonumber(redis.call('HGET', KEYS[1], 'v')) or 0) + 1
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[1], 'v', v)
else
  v = tonumber(redis.call('HGET', KEYS[1], 'v')) or 0
end
local claims = {v}
for i = 4, #ARGV, 2 do
  put(claims, ARGV[i], ARGV[i + 1])
end
if ARGV[3] == '1' then redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. v .. ' !') end
return claims
)lua";

// A retained message set or cleared: KEYS[1] the cluster's retained hash; ARGV: the retained
// channel, the tag, the change ('+' and the envelope, or '-' and an envelope of the tag).
constexpr std::string_view retained_script = R"lua(
if string.sub(ARGV[3], 1, 1) == '+' then
  redis.call('HSET', KEYS[1], ARGV[2], string.sub(ARGV[3], 2))
else
  redis.call('HDEL', KEYS[1], ARGV[2])
end
redis.call('PUBLISH', ARGV[1], ARGV[3])
return 1
)lua";

// The heartbeat: KEYS[1] the nodes' sorted set, KEYS[2] the node's record; ARGV: the node,
// the node timeout (ms). Scored with Redis's clock (one clock for every node); returns
// whether the record is there (another node reaps a node it took for dead), then the live
// nodes.
constexpr std::string_view heartbeat_script = R"lua(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
local out = {redis.call('EXISTS', KEYS[2])}
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now - tonumber(ARGV[2]), '+inf')) do
  out[#out + 1] = n
end
return out
)lua";

// Leaving: KEYS[1] the node's hash, KEYS[2] the nodes' set, KEYS[3] its inbox, KEYS[4] its
// departures; ARGV: routes channel, node.
constexpr std::string_view leave_script = R"lua(
local v = (tonumber(redis.call('HGET', KEYS[1], 'v')) or 0) + 1
redis.call('DEL', KEYS[1], KEYS[3], KEYS[4])
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[1], ARGV[2] .. ' ' .. v .. ' ~')
return v
)lua";

constexpr std::size_t entries_per_call = 5000;

// The flags byte of a departure (<prefix>:departures:<node>).
constexpr unsigned char departure_announced = 1;
constexpr unsigned char departure_retain = 2;

std::string random_epoch() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  return buf;
}

}  // namespace

// The cluster thread's state.
struct engine::impl {
  using claims_list = std::vector<std::pair<std::string, std::uint64_t>>;

  explicit impl(engine& e)
      : self(e),
        work(asio::make_work_guard(io)),
        heartbeat_timer(io),
        reconcile_timer(io),
        retry_timer(io),
        park_timer(io),
        inbox_timer(io),
        nodes_key(e.settings_.prefix + ":nodes"),
        claims_key(e.settings_.prefix + ":claims"),
        routes_channel(e.settings_.prefix + ":routes"),
        epoch_key(e.settings_.prefix + ":epoch"),
        retained_key(e.settings_.prefix + ":retained"),
        retained_channel(e.settings_.prefix + ":retained"),
        my_channel(e.settings_.prefix + ":node:" + e.settings_.node),
        my_record(record_key(e.settings_.node)),
        clustered(!e.settings_.cluster_seeds.empty()),
        publish_cmd(clustered ? "SPUBLISH" : "PUBLISH"),
        change_lua(for_redis(change_script)),
        reset_lua(for_redis(reset_script)),
        retained_lua(for_redis(retained_script)),
        leave_lua(for_redis(leave_script)),
        my_inbox(inbox_key(e.settings_.node)),
        inbox_pos(e.settings_.inbox_position) {}

  // A script as this Redis runs it: on a Redis Cluster its PUBLISHes are sharded ones (the
  // nodes subscribe with SSUBSCRIBE; a plain PUBLISH would go to every shard, and to none of
  // those subscribers).
  std::string for_redis(std::string_view script) const {
    std::string out(script);
    if (!clustered) return out;
    for (std::size_t at = 0; (at = out.find("'PUBLISH'", at)) != std::string::npos; at += 10)
      out.replace(at, 9, "'SPUBLISH'");
    return out;
  }

  std::string departures_key(std::string_view node) const {
    return self.settings_.prefix + ":departures:" + std::string(node);
  }

  std::string inbox_key(std::string_view node) const {
    return self.settings_.prefix + ":inbox:" + std::string(node);
  }

  std::string record_key(std::string_view node) const {
    return self.settings_.prefix + ":record:" + std::string(node);
  }

  engine& self;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  asio::steady_timer heartbeat_timer;
  asio::steady_timer reconcile_timer;
  asio::steady_timer retry_timer;
  asio::steady_timer park_timer;   // QoS 1/2 publishes waiting for Redis
  asio::steady_timer inbox_timer;  // the inbox read, paused while the inbound queue is full
  const std::string nodes_key, claims_key, routes_channel, epoch_key, retained_key,
      retained_channel, my_channel, my_record;
  const bool clustered;  // a Redis Cluster
  const char* const publish_cmd;
  const std::string change_lua, reset_lua, retained_lua, leave_lua;
  const std::string my_inbox;

  // cmd: commands; sub: pub/sub; xr: the inbox read (XREAD BLOCK holds its connection);
  // dur: QoS 1/2 writes (XADD and WAIT); sentinel: the master check, with sentinels.
  std::shared_ptr<redis_connection> cmd, sub, xr, dur, sentinel;
  bool sentinel_connecting = false;
  std::size_t sentinel_index = 0;
  redis_endpoint current;  // the Redis the connections are open to
  // This node's inbox: read to (the next XREAD's start), and durable to (in the store).
  std::string inbox_pos, inbox_durable;
  // QoS 1/2 publishes waiting for Redis, each with when it was queued.
  std::deque<std::pair<outgoing, std::chrono::steady_clock::time_point>> parked;
  int subscribed = 0;   // confirmations of the pub/sub connection's SUBSCRIBE
  bool synced = false;  // this connection round has registered and read the table
  // This connection round has written the record (register_record): a change sent after it
  // on the same connection follows it, so it goes at once (before `synced`, which waits for
  // the table's read too: a change made in between was otherwise left for the next
  // reconnection).
  bool registered = false;
  bool stopping = false;
  int backoff_ms = 100;
  std::string epoch;  // the Redis data set's, as first seen
  std::set<std::string> resyncing, resync_again;
  std::vector<std::string> live;  // the nodes the last heartbeat saw
  std::string envelope;           // reused for each message sent
  std::uint64_t logged_down = 0;
  // The claim of each client id this node holds (0: claimed, the number not known yet).
  std::unordered_map<std::string, std::uint64_t> own_claims;
  // Ids a connection took while Redis was away: claimed afresh when it is back.
  std::set<std::string> claim_on_reconnect;
  // What another node publishes for each client here should this node die (flags byte,
  // then the will's envelope or nothing), as written to <prefix>:departures:<node>.
  std::unordered_map<std::string, std::string> own_departures;
  // Retained messages set or cleared here while Redis was away: the latest of each tag.
  std::map<std::string, retained_change> retained_while_away;
  // The whole set is being read (sync_retained): the tags changed meanwhile.
  bool retained_reading = false;
  std::set<std::string> retained_touched;

  // --- connecting ---

  void connect() {
    subscribed = 0;
    synced = false;
    registered = false;
    if (!self.settings_.sentinels.empty()) return find_master(0);
    if (clustered) return find_slot_owner(0);
    open(self.settings_.redis);
  }

  // Redis Cluster: the master that serves the cluster's slot (that of the hash tag {prefix}),
  // from the slot map of each seed in turn. A redirection (MOVED, ASK) or a failover later
  // ends the connections, and this asks again.
  void find_slot_owner(std::size_t i) {
    const auto& s = self.settings_;
    if (i >= s.cluster_seeds.size()) return lost("no Redis Cluster seed answered");
    auto ask = std::make_shared<std::shared_ptr<redis_connection>>();
    // The next seed, once (as in find_master).
    auto next = [this, ask, i, once = std::make_shared<bool>(false)](const std::string& why) {
      if (std::exchange(*once, true)) return;
      spdlog::debug("cluster: Redis Cluster seed {}: {}",
                    self.settings_.cluster_seeds[i].describe(), why);
      if (*ask) (*ask)->close();
      ask->reset();
      find_slot_owner(i + 1);
    };
    *ask = redis_connection::create(
        io, s.cluster_seeds[i], "wsagent:" + s.node + ":seed",
        {[this, ask, i, next] {
           (*ask)->send(
               {"CLUSTER", "KEYSLOT", nodes_key}, [this, ask, i, next](const resp_value& slot) {
                 if (!slot.is(resp_value::kind::integer))
                   return next("CLUSTER KEYSLOT: " + slot.text);
                 (*ask)->send({"CLUSTER", "SLOTS"}, [this, ask, i, next,
                                                     n = slot.integer](const resp_value& map) {
                   // [[first, last, [host, port, id...], replicas...]...]
                   for (const auto& range : map.elements) {
                     if (range.elements.size() < 3 || range.elements[0].integer > n ||
                         range.elements[1].integer < n || range.elements[2].elements.size() < 2)
                       continue;
                     auto host = range.elements[2].elements[0].text;
                     if (host.empty()) host = self.settings_.cluster_seeds[i].host;  // "that one"
                     auto where = master_endpoint(
                         host, std::to_string(range.elements[2].elements[1].integer));
                     (*ask)->close();
                     ask->reset();
                     return open(where);
                   }
                   next("no node serves slot " + std::to_string(n) +
                        (map.is(resp_value::kind::error) ? ": " + map.text : ""));
                 });
               });
         },
         next,
         {}},
        s.connection);
    (*ask)->start();
  }

  // The master's address from the sentinels, each asked in turn.
  void find_master(std::size_t i) {
    const auto& s = self.settings_;
    if (i >= s.sentinels.size()) return lost("no sentinel answered for master '" + s.master + "'");
    auto ask = std::make_shared<std::shared_ptr<redis_connection>>();
    // The next sentinel, once: a connection that fails with the question asked answers it
    // (connection lost) and then reports its end.
    auto next = [this, ask, i, once = std::make_shared<bool>(false)] {
      if (std::exchange(*once, true)) return;
      if (*ask) (*ask)->close();
      ask->reset();
      find_master(i + 1);
    };
    *ask = redis_connection::create(
        io, s.sentinels[i], "wsagent:" + s.node + ":sentinel",
        {[this, ask, next] {
           (*ask)->send({"SENTINEL", "get-master-addr-by-name", self.settings_.master},
                        [this, ask, next](const resp_value& v) {
                          if (v.is(resp_value::kind::array) && v.elements.size() == 2) {
                            (*ask)->close();
                            auto where = master_endpoint(v.elements[0].text, v.elements[1].text);
                            ask->reset();
                            return open(where);
                          }
                          next();
                        });
         },
         [next](const std::string&) { next(); },
         {}},
        s.connection);
    (*ask)->start();
  }

  // The master a sentinel named, with the credentials of cluster.redis / username /
  // password.
  redis_endpoint master_endpoint(const std::string& host, const std::string& port) const {
    redis_endpoint e = self.settings_.redis;
    e.host = host;
    e.port = static_cast<std::uint16_t>(std::strtoul(port.c_str(), nullptr, 10));
    return e;
  }

  void open(const redis_endpoint& where) {
    const auto& s = self.settings_;
    current = where;
    auto on_closed = [this](const std::string& why) { lost(why); };
    auto ready = [this] { all_ready(); };
    cmd = redis_connection::create(io, where, "wsagent:" + s.node + ":cmd", {ready, on_closed, {}},
                                   s.connection);
    sub = redis_connection::create(io, where, "wsagent:" + s.node + ":sub",
                                   {ready, on_closed, [this](const resp_value& v) { pushed(v); }},
                                   s.connection);
    xr = redis_connection::create(io, where, "wsagent:" + s.node + ":inbox", {ready, on_closed, {}},
                                  s.connection);
    // QoS 1/2 writes (XADD, then WAIT, which holds its connection while replicas catch up)
    // on a connection of their own, so that a slow WAIT delays no heartbeat.
    auto slow = s.connection;
    slow.reply_timeout_ms += s.publish_timeout_ms;
    dur = redis_connection::create(io, where, "wsagent:" + s.node + ":durable",
                                   {ready, on_closed, {}}, slow);
    cmd->start();
    sub->start();
    xr->start();
    dur->start();
  }

  void all_ready() {
    if (!cmd->is_ready() || !sub->is_ready() || !xr->is_ready() || !dur->is_ready()) return;
    // After a failover the old master comes back as a replica: only a master will do.
    cmd->send({"ROLE"}, [this, c = cmd](const resp_value& v) {
      if (c != cmd) return;
      if (!v.is(resp_value::kind::array) || v.elements.empty() || v.elements[0].text != "master") {
        if (v.text != connection_lost)
          lost(current.describe() + " is not a master" +
               (v.elements.empty() ? "" : " (" + v.elements[0].text + ")"));
        return;
      }
      sub->send(
          {clustered ? "SSUBSCRIBE" : "SUBSCRIBE", routes_channel, my_channel, retained_channel});
    });
  }

  // With sentinels: every cluster.heartbeat_ms, is the master still where this node is
  // connected? (Not only on failover events: a node that missed one follows all the same.)
  void check_master() {
    const auto& s = self.settings_;
    if (s.sentinels.empty() || stopping) return;
    if (!sentinel || !sentinel->is_ready()) {
      if (!sentinel || !sentinel_connecting) {
        sentinel_connecting = true;
        const auto i = sentinel_index++ % s.sentinels.size();
        sentinel = redis_connection::create(io, s.sentinels[i], "wsagent:" + s.node + ":sentinel",
                                            {[this] { sentinel_connecting = false; },
                                             [this](const std::string&) {
                                               sentinel_connecting = false;
                                               sentinel.reset();
                                             },
                                             {}},
                                            s.connection);
        sentinel->start();
      }
      return;
    }
    sentinel->send({"SENTINEL", "get-master-addr-by-name", s.master}, [this](const resp_value& v) {
      if (!v.is(resp_value::kind::array) || v.elements.size() != 2) return;
      const auto where = master_endpoint(v.elements[0].text, v.elements[1].text);
      if ((where.host != current.host || where.port != current.port) && cmd)
        lost("the sentinels say the master is now " + where.describe());
    });
  }

  // Either connection failed: both are dropped and made again after a backoff.
  void lost(const std::string& why) {
    const bool was = self.ready_.exchange(false, std::memory_order_acq_rel);
    if (cmd) cmd->close();
    if (sub) sub->close();
    if (xr) xr->close();
    if (dur) dur->close();
    heartbeat_timer.cancel();
    reconcile_timer.cancel();
    inbox_timer.cancel();
    if (stopping) return;
    if (was || logged_down++ == 0)
      spdlog::error("cluster: Redis {}: {}; cross-node messages stop until it is back",
                    current.describe(), why);
    else
      spdlog::debug("cluster: Redis {}: {}", current.describe(), why);
    retry_timer.expires_after(std::chrono::milliseconds(backoff_ms));
    backoff_ms = std::min(backoff_ms * 2, 2000);
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
      const bool first = epoch.empty();
      const bool lost_data = !first && v.text != epoch;
      if (lost_data) {
        spdlog::warn(
            "cluster: Redis lost its data (epoch {} is now {}): every node writes its "
            "record again",
            epoch, v.text);
        self.table_.clear();
      }
      epoch = v.text;
      sync_retained(first || lost_data);
    });
    register_record();
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
                     self.settings_.node, current.describe(), self.table_.nodes().size(),
                     self.table_.size());
        arm_heartbeat();
        arm_reconcile();
        flush_parked();
        start_inbox();
      });
    });
  }

  // This node's whole record: the filters and sessions the router holds now (changes queued
  // meanwhile follow in order, so the hash ends as the router is). An id keeps the claim it
  // had; one taken while Redis was away is claimed afresh; one restored from the store
  // claims 0, so that a session a client opened on another node meanwhile keeps its id.
  void register_record() {
    std::vector<std::pair<std::string, std::string>> all;
    for (auto& f : self.router_.node_filters())
      all.emplace_back("f:" + f, "1");
    for (auto& id : self.router_.session_ids()) {
      auto it = own_claims.find(id);
      std::string claim = claim_on_reconnect.contains(id)        ? "*"
                          : it != own_claims.end() && it->second ? std::to_string(it->second)
                                                                 : "0";
      if (claim == "0") own_claims[id] = 0;
      all.emplace_back("c:" + id, std::move(claim));
    }
    claim_on_reconnect.clear();
    registered = true;
    const auto mine = departures_key(self.settings_.node);
    cmd->send({"DEL", mine});
    for (const auto& [id, bytes] : own_departures)
      cmd->send({"HSET", mine, id, bytes});
    std::size_t i = 0;
    do {
      std::vector<std::string_view> args{"EVAL",
                                         reset_lua,
                                         "2",
                                         my_record,
                                         claims_key,
                                         routes_channel,
                                         self.settings_.node,
                                         i == 0 ? "1" : "0"};
      for (std::size_t n = 0; i < all.size() && n < entries_per_call; ++i, ++n) {
        args.push_back(all[i].first);
        args.push_back(all[i].second);
      }
      cmd->send(args, [this](const resp_value& v) { claims_made(v, "registering this node"); });
    } while (i < all.size());
  }

  // A change or reset script's reply: the version, then each new claim (key "c:<id>", number).
  void claims_made(const resp_value& v, std::string_view what) {
    if (!v.is(resp_value::kind::array)) {
      if (v.text != connection_lost) spdlog::error("cluster: {} failed: {}", what, v.text);
      return;
    }
    for (std::size_t i = 1; i + 1 < v.elements.size(); i += 2) {
      std::string_view key = v.elements[i].text;
      if (!key.starts_with("c:")) continue;
      key.remove_prefix(2);
      const auto claim = std::strtoull(v.elements[i + 1].text.c_str(), nullptr, 10);
      auto it = own_claims.find(std::string(key));
      if (it == own_claims.end()) continue;  // released meanwhile
      it->second = claim;
      std::uint64_t theirs = 0;
      if (self.table_.owner_of(key, &theirs) && theirs > claim) yield(std::string(key));
    }
  }

  // Another node claimed ids: those this node holds under an older claim are let go.
  void claimed_elsewhere(const claims_list& claims) {
    for (const auto& [id, theirs] : claims) {
      auto it = own_claims.find(id);
      if (it == own_claims.end()) continue;
      if (it->second != 0 && it->second < theirs) yield(id);
      // (0 with a claim pending: its reply compares, in claims_made)
      else if (it->second == 0 && !claim_pending(id) && theirs > 0)
        yield(id);
    }
  }

  // Claims sent and not yet answered, by id (a claim of 0 from a restore is not pending).
  std::set<std::string> pending_claims;
  bool claim_pending(const std::string& id) const { return pending_claims.contains(id); }

  void yield(const std::string& id) {
    own_claims.erase(id);
    pending_claims.erase(id);
    if (self.router_.evict(id)) {
      self.probe_.evictions.fetch_add(1, std::memory_order_relaxed);
      spdlog::info("cluster: client {} is now on another node: its session here is closed", id);
    }
    if (cmd && cmd->is_ready()) send_ops({{'-', "c:" + id, ""}});
  }

  // --- heartbeat and reconciliation ---

  void heartbeat(std::function<void()> then = {}) {
    const auto timeout = std::to_string(self.settings_.node_timeout_ms);
    cmd->send({"EVAL", heartbeat_script, "2", nodes_key, my_record, self.settings_.node, timeout},
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
                if (synced && !v.elements.empty() && v.elements[0].is(resp_value::kind::integer) &&
                    v.elements[0].integer == 0) {
                  // Taken for dead (stopped longer than the node timeout) and reaped: back.
                  spdlog::warn(
                      "cluster: this node's record was gone from Redis (the others took "
                      "it for dead): writing it again");
                  register_record();
                }
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
        reap(n);
      }
  }

  // A dead node's clients: their wills and presence events, published by one survivor (the
  // one whose SET NX wins), then the node's record and departures deleted.
  void reap(const std::string& node) {
    const auto key = self.settings_.prefix + ":reaped:" + node;
    cmd->send({"SET", key, self.settings_.node, "NX", "PX",
               std::to_string(std::int64_t{self.settings_.node_timeout_ms} * 10)},
              [this, node](const resp_value& v) {
                if (!v.is(resp_value::kind::status)) return;  // another survivor's
                cmd->send({"HGETALL", departures_key(node)},
                          [this, node](const resp_value& all) { publish_departures(node, all); });
              });
  }

  void publish_departures(const std::string& node, const resp_value& all) {
    if (!all.is(resp_value::kind::array)) return;
    std::size_t wills = 0, events = 0;
    const auto now = common::now_ms();
    for (std::size_t i = 0; i + 1 < all.elements.size(); i += 2) {
      const auto& id = all.elements[i].text;
      std::string_view bytes = all.elements[i + 1].text;
      if (bytes.empty()) continue;
      const auto flags = static_cast<unsigned char>(bytes[0]);
      bytes.remove_prefix(1);
      if (!bytes.empty()) {
        auto d = decode_envelope(bytes);
        if (d.msg) {
          d.msg->msgid = core::make_msgid();
          d.msg->timestamp_ms = now;
          core::publish_options opts;
          opts.retain = (flags & departure_retain) != 0;
          opts.clears_retained = opts.retain && d.msg->payload.empty();
          self.router_.publish_internal(d.msg, std::move(opts));
          ++wills;
        }
      }
      if (flags & departure_announced) {
        auto m = std::make_shared<core::message>();
        m->tag = "$sys/clients/" + id + "/disconnected";
        m->timestamp_ms = now;
        m->msgid = core::make_msgid();
        common::json_writer(m->payload)
            .begin_object()
            .string("clientId", id)
            .boolean("clean", false)
            .string("node", node)
            .integer("timestamp", now)
            .end_object();
        self.router_.publish_internal(m);
        ++events;
      }
    }
    spdlog::info(
        "cluster: published {} will(s) and {} disconnected event(s) for the clients of "
        "node {}",
        wills, events, node);
    cmd->send({"DEL", departures_key(node), record_key(node)});
    cmd->send({"ZREM", nodes_key, node});
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
      cmd->send({"HGET", record_key(n), "v"}, [this, n, left, done](const resp_value& v) {
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

  // Runs `tick` every `ms` while the node is connected (stopped when it is not).
  void every(asio::steady_timer& timer, int ms, void (impl::*tick)()) {
    timer.expires_after(std::chrono::milliseconds(ms));
    timer.async_wait([this, &timer, ms, tick](boost::system::error_code ec) {
      if (ec || !self.ready()) return;
      (this->*tick)();
      every(timer, ms, tick);
    });
  }
  void arm_heartbeat() { every(heartbeat_timer, self.settings_.heartbeat_ms, &impl::beat); }
  void arm_reconcile() { every(reconcile_timer, self.settings_.reconcile_ms, &impl::repair); }
  void beat() {
    heartbeat();
    check_master();
  }
  void repair() {
    reconcile();
    // What this node's store has is no longer needed in its inbox.
    if (!inbox_durable.empty()) cmd->send({"XTRIM", my_inbox, "MINID", inbox_durable});
  }

  // A node's whole record read again; a resync asked for while one is running runs after it.
  void resync(const std::string& node, std::function<void()> then = {}) {
    if (!resyncing.insert(node).second) {
      resync_again.insert(node);
      if (then) then();
      return;
    }
    self.probe_.resyncs.fetch_add(1, std::memory_order_relaxed);
    cmd->send({"HGETALL", record_key(node)},
              [this, node, then = std::move(then)](const resp_value& v) {
                resyncing.erase(node);
                if (v.is(resp_value::kind::array)) {
                  std::uint64_t version = 0;
                  std::vector<route_entry> all;
                  for (std::size_t i = 0; i + 1 < v.elements.size(); i += 2) {
                    const auto& field = v.elements[i].text;
                    if (field == "v")
                      version = std::strtoull(v.elements[i + 1].text.c_str(), nullptr, 10);
                    else
                      all.push_back({field, v.elements[i + 1].text});
                  }
                  claims_list claims;
                  if (version == 0)
                    self.table_.remove(node);  // nothing in Redis: left, or never registered
                  else
                    self.table_.replace(node, version, all, &claims);
                  claimed_elsewhere(claims);
                }
                if (resync_again.erase(node) && cmd && cmd->is_ready()) resync(node);
                if (then) then();
              });
  }

  // --- the pub/sub connection ---

  void pushed(const resp_value& v) {
    const auto kind = v.push_kind();
    if (kind == "subscribe" || kind == "ssubscribe") {
      if (++subscribed == 3) sync();
      return;
    }
    // A Redis Cluster that moved the slot away from this shard ends its sharded
    // subscriptions: connect again, to the slot's new owner.
    if (kind == "sunsubscribe") return lost("Redis Cluster moved the cluster's slot");
    if ((kind != "message" && kind != "smessage") || v.elements.size() != 3) return;
    const auto& channel = v.elements[1].text;
    if (channel == routes_channel) return route_changed(v.elements[2].text);
    if (channel == retained_channel) return retained_changed(v.elements[2].text);
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
    claims_list claims;
    if (self.table_.apply(*c, &claims) == route_table::applied::gap) resync(c->node);
    claimed_elsewhere(claims);
  }

  // --- sending ---

  struct op {
    char sign;  // '+' or '-'
    std::string key, value;
  };

  void drain() {
    std::vector<outgoing> batch;
    std::vector<std::pair<bool, std::string>> filters;
    std::unordered_map<std::string, bool> clients;
    std::unordered_map<std::string, std::optional<std::string>> departures;
    std::vector<retained_change> retained;
    {
      common::lock<common::mutex> lock(self.queue_mutex_);
      batch.swap(self.outbound_);
      filters.swap(self.filter_changes_);
      clients.swap(self.client_changes_);
      departures.swap(self.departure_changes_);
      retained.swap(self.retained_changes_);
      self.drain_posted_ = false;
    }
    const bool connected = cmd && cmd->is_ready() && registered;
    std::vector<op> ops;
    for (auto& [added, f] : filters)
      ops.push_back({added ? '+' : '-', "f:" + f, added ? "1" : ""});
    // What the router holds now decides: the events only say which ids to look at.
    for (auto& [id, fresh] : clients) {
      const bool here = self.router_.has_session(id);
      if (here && fresh) {
        own_claims[id] = 0;
        pending_claims.insert(id);
        if (connected)
          ops.push_back({'+', "c:" + id, "*"});
        else
          claim_on_reconnect.insert(id);
      } else if (!here && own_claims.erase(id)) {
        pending_claims.erase(id);
        claim_on_reconnect.erase(id);
        ops.push_back({'-', "c:" + id, ""});
        if (!departures.contains(id)) departures[id] = std::nullopt;
      }
    }
    const auto here_key = departures_key(self.settings_.node);
    for (auto& [id, bytes] : departures) {
      if (bytes && self.router_.has_session(id)) {
        if (connected) cmd->send({"HSET", here_key, id, *bytes});
        own_departures[id] = std::move(*bytes);
      } else if (own_departures.erase(id) && connected) {
        cmd->send({"HDEL", here_key, id});
      }
    }
    // Changes made while Redis was away are in the record written on reconnect.
    if (!ops.empty() && connected) send_ops(ops);
    // Retained changes wait for `synced`: by then those made while Redis was away went first
    // (sync_retained), so Redis keeps the latest of each tag.
    const bool retained_up = cmd && cmd->is_ready() && synced;
    for (auto& r : retained) {
      if (retained_up) {
        send_retained(std::move(r));
        continue;
      }
      // Redis away: the latest change of each tag goes when it is back (this node's store
      // has it meanwhile, which is what its publisher was told).
      if (r.done) r.done(true);
      r.done = nullptr;
      retained_while_away[r.msg->tag] = std::move(r);
    }
    const bool up = cmd && cmd->is_ready() && self.ready();
    for (auto& o : batch) {
      if (o.msg->qos > 0) {
        if (up)
          send_durable(std::move(o));
        else
          park(std::move(o));
        continue;
      }
      if (!up) {
        self.probe_.dropped_down.fetch_add(o.to_nodes.size(), std::memory_order_relaxed);
        continue;
      }
      each_envelope(o, [&](std::size_t i, const std::string& bytes) {
        cmd->send({publish_cmd, o.to_nodes[i]->channel, bytes}, [this](const resp_value& v) {
          if (v.is(resp_value::kind::integer) && v.integer == 0)
            self.probe_.unrouted.fetch_add(1, std::memory_order_relaxed);
          else if (v.is(resp_value::kind::error))
            self.probe_.dropped_down.fetch_add(1, std::memory_order_relaxed);
        });
        self.probe_.sent.fetch_add(1, std::memory_order_relaxed);
      });
    }
  }

  void send_ops(const std::vector<op>& ops) {
    for (std::size_t i = 0; i < ops.size();) {
      std::vector<std::string_view> args{
          "EVAL", change_lua, "2", my_record, claims_key, routes_channel, self.settings_.node};
      for (std::size_t n = 0; i < ops.size() && n < entries_per_call; ++i, ++n) {
        args.push_back(std::string_view(&ops[i].sign, 1));
        args.push_back(ops[i].key);
        args.push_back(ops[i].value);
      }
      cmd->send(args, [this](const resp_value& v) {
        claims_made(v, "recording a change of this node's record");
        // a claim answered: no longer pending
        if (v.is(resp_value::kind::array))
          for (std::size_t k = 1; k + 1 < v.elements.size(); k += 2)
            if (std::string_view(v.elements[k].text).starts_with("c:"))
              pending_claims.erase(v.elements[k].text.substr(2));
      });
    }
  }

  // --- retained messages: one set for the cluster ---

  // Every node keeps every retained message (a subscription finds them at once); Redis holds
  // the set (<prefix>:retained, tag -> envelope) and each change goes out on
  // <prefix>:retained, applied by every node (the publishing one too) in Redis's order, so
  // they all end as Redis is. At the first connection, and when Redis lost its data, this
  // node writes back what it has and Redis lacks (HSETNX); on later reconnections Redis's
  // set is the truth (a retained message cleared meanwhile is cleared here too).
  void sync_retained(bool write_back) {
    auto away = std::move(retained_while_away);
    retained_while_away.clear();
    for (auto& [tag, r] : away)
      send_retained(std::move(r));
    if (write_back) {
      std::string env;
      for (const auto& m : self.router_.retained_messages()) {
        env.clear();
        encode_envelope(*m, {}, env);
        cmd->send({"HSETNX", retained_key, m->tag, env});
      }
    }
    // A change that arrives while the read is on its way is newer than what the read says
    // of its tag (or of its tag's absence): the read leaves that tag alone.
    retained_touched.clear();
    retained_reading = true;
    cmd->send({"HGETALL", retained_key}, [this](const resp_value& v) {
      retained_reading = false;
      if (!v.is(resp_value::kind::array)) return;
      std::set<std::string> in_redis;
      for (std::size_t i = 0; i + 1 < v.elements.size(); i += 2) {
        auto d = decode_envelope(v.elements[i + 1].text);
        if (!d.msg) {
          self.probe_.malformed.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        in_redis.insert(d.msg->tag);
        if (!retained_touched.contains(d.msg->tag)) self.router_.apply_retained(*d.msg, false);
      }
      for (const auto& m : self.router_.retained_messages())
        if (!in_redis.contains(m->tag) && !retained_touched.contains(m->tag))
          self.router_.apply_retained(*m, true);
      retained_touched.clear();
    });
  }

  // A retained message set ('+' and its envelope) or cleared ('-' and an envelope of its
  // tag) on some node.
  void retained_changed(const std::string& payload) {
    if (payload.empty() || (payload[0] != '+' && payload[0] != '-')) {
      self.probe_.malformed.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    auto d = decode_envelope(std::string_view(payload).substr(1));
    if (!d.msg) {
      self.probe_.malformed.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (retained_reading) retained_touched.insert(d.msg->tag);
    self.router_.apply_retained(*d.msg, payload[0] == '-');
  }

  void send_retained(retained_change r) {
    std::string payload(1, r.clear ? '-' : '+');
    encode_envelope(*r.msg, {}, payload);
    auto done = std::move(r.done);
    cmd->send({"EVAL", retained_lua, "1", retained_key, retained_channel, r.msg->tag, payload},
              [done](const resp_value& v) {
                const bool ok = !v.is(resp_value::kind::error);
                if (!ok && v.text != connection_lost)
                  spdlog::error("cluster: recording a retained message failed: {}", v.text);
                if (done) done(ok);
              });
  }

  // --- QoS 1/2: the inbox streams ---

  // Calls f(i, bytes) with the envelope of `o` for each of its nodes: one encoding (in the
  // reused `envelope`) for every node that serves no shared group, its own for a node that
  // serves some (shared subscriptions are work queues: one copy in all).
  template <class F>
  void each_envelope(const outgoing& o, F&& f) {
    envelope.clear();
    for (std::size_t i = 0; i < o.to_nodes.size(); ++i) {
      if (i < o.groups.size() && !o.groups[i].empty()) {
        std::string mine;
        encode_envelope(*o.msg, {o.to, o.groups[i]}, mine);
        f(i, mine);
        continue;
      }
      if (envelope.empty()) encode_envelope(*o.msg, {o.to, {}}, envelope);
      f(i, envelope);
    }
  }

  using clock = std::chrono::steady_clock;

  // One XADD per interested node (and WAIT with wait_replicas); the publisher's
  // acknowledgement once every reply came, and was good. A connection lost on the way
  // (a failover) sends it all again once Redis is back, within publish_timeout_ms of when
  // it was first queued: a node's inbox may then hold it twice (QoS 1 is at least once).
  void send_durable(outgoing o, clock::time_point since = clock::now()) {
    struct pending {
      outgoing o;
      clock::time_point since;
      std::size_t left = 0;
      bool ok = true;
      bool lost = false;
    };
    auto p = std::make_shared<pending>();
    const int replicas = self.settings_.wait_replicas;
    p->left = o.to_nodes.size() + (replicas > 0 ? 1 : 0);
    p->since = since;
    p->o = std::move(o);
    auto finish = [this, p](const resp_value& v, bool good) {
      if (!good) p->ok = false;
      if (v.is(resp_value::kind::error) && v.text == connection_lost) p->lost = true;
      if (--p->left > 0) return;
      if (!p->ok && p->lost && !stopping) return park(std::move(p->o), p->since);
      if (!p->ok) self.probe_.refused.fetch_add(1, std::memory_order_relaxed);
      if (p->o.done) p->o.done(p->ok);
    };
    const auto max = std::to_string(self.settings_.inbox_max);
    each_envelope(p->o, [&](std::size_t i, const std::string& bytes) {
      dur->send({"XADD", inbox_key(p->o.to_nodes[i]->name), "MAXLEN", "~", max, "*", "m", bytes},
                [finish](const resp_value& v) { finish(v, v.is(resp_value::kind::string)); });
      self.probe_.inbox_sent.fetch_add(1, std::memory_order_relaxed);
    });
    if (replicas > 0) {
      const auto n = std::to_string(replicas);
      const auto timeout = std::to_string(self.settings_.publish_timeout_ms);
      dur->send({"WAIT", n, timeout}, [finish, replicas](const resp_value& v) {
        const bool enough = v.is(resp_value::kind::integer) && v.integer >= replicas;
        if (!enough && !v.is(resp_value::kind::integer) && v.text != connection_lost)
          spdlog::warn("cluster: WAIT failed: {}", v.text);
        finish(v, enough);
      });
    }
  }

  void park(outgoing o, clock::time_point since = clock::now()) {
    parked.emplace_back(std::move(o), since);
    if (parked.size() == 1) arm_park_timer();
  }

  void arm_park_timer() {
    park_timer.expires_after(std::chrono::milliseconds(100));
    park_timer.async_wait([this](boost::system::error_code ec) {
      if (ec) return;
      const auto limit = std::chrono::steady_clock::now() -
                         std::chrono::milliseconds(self.settings_.publish_timeout_ms);
      while (!parked.empty() && parked.front().second < limit) {
        auto o = std::move(parked.front().first);
        parked.pop_front();
        self.probe_.refused.fetch_add(1, std::memory_order_relaxed);
        if (o.done) o.done(false);
      }
      if (!parked.empty()) arm_park_timer();
    });
  }

  void flush_parked() {
    park_timer.cancel();
    auto all = std::move(parked);
    parked.clear();
    for (auto& [o, since] : all)
      send_durable(std::move(o), since);
  }

  // The inbox read: from where this node was (its store's position), or at the first start
  // from the stream's end, once that position is stored: a node killed before it stored an
  // entry's position reads on from there after a restart, not from the end again (which
  // would skip what came in while it was down).
  void start_inbox() {
    if (!inbox_pos.empty()) return read_inbox();
    auto c = cmd;
    c->send({"XREVRANGE", my_inbox, "+", "-", "COUNT", "1"}, [this, c](const resp_value& v) {
      if (c != cmd) return;  // lost: asked again when back
      if (v.is(resp_value::kind::error)) {
        if (v.text != connection_lost) spdlog::error("cluster: XREVRANGE: {}", v.text);
        return;
      }
      std::string from = "0-0";
      if (v.is(resp_value::kind::array) && !v.elements.empty() && !v.elements[0].elements.empty())
        from = v.elements[0].elements[0].text;
      auto* store = self.router_.store();
      if (!store) {  // nothing kept: nothing to read on from after a restart
        inbox_pos = from;
        return read_inbox();
      }
      store->submit({core::store_ops::put_meta{std::string(inbox_position_key), from}},
                    [this, from](bool ok) {
                      asio::post(io, [this, from, ok] {
                        if (!ok) spdlog::error("cluster: the inbox position could not be stored");
                        // A reconnection meanwhile asked too: the first answer starts the read.
                        if (!inbox_pos.empty()) return;
                        inbox_pos = from;
                        read_inbox();
                      });
                    });
    });
  }

  void read_inbox() {
    if (stopping || !xr || !xr->is_ready()) return;
    if (self.inbound_size() * 2 > self.settings_.inbound_queue) {
      inbox_timer.expires_after(std::chrono::milliseconds(10));
      inbox_timer.async_wait([this](boost::system::error_code ec) {
        if (!ec) read_inbox();
      });
      return;
    }
    auto c = xr;
    c->send({"XREAD", "COUNT", "256", "BLOCK", "1000", "STREAMS", my_inbox, inbox_pos},
            [this, c](const resp_value& v) {
              if (c != xr) return;
              if (v.is(resp_value::kind::error)) {
                if (v.text != connection_lost) spdlog::error("cluster: XREAD: {}", v.text);
                return;
              }
              // [[stream, [[id, [field, value...]]...]]]
              if (v.is(resp_value::kind::array) && !v.elements.empty() &&
                  v.elements[0].elements.size() == 2)
                for (const auto& e : v.elements[0].elements[1].elements) {
                  if (e.elements.size() != 2) continue;
                  const auto& id = e.elements[0].text;
                  const auto& fields = e.elements[1].elements;
                  for (std::size_t i = 0; i + 1 < fields.size(); i += 2)
                    if (fields[i].text == "m") self.deliver_inbound(fields[i + 1].text, id);
                  inbox_pos = id;
                  self.probe_.inbox_received.fetch_add(1, std::memory_order_relaxed);
                }
              read_inbox();
            });
  }

  // Leaving: what is queued goes out, then the leave script; `done` on its reply.
  void leave(std::function<void()> done) {
    drain();
    if (!cmd || !cmd->is_ready()) return done();
    cmd->send({"EVAL", leave_lua, "4", my_record, nodes_key, my_inbox,
               departures_key(self.settings_.node), routes_channel, self.settings_.node},
              [done](const resp_value& v) {
                if (v.is(resp_value::kind::error) && v.text != connection_lost)
                  spdlog::warn("cluster: leaving failed: {}", v.text);
                done();
              });
  }
};

namespace {
// On a Redis Cluster every key and channel shares the hash tag {prefix}.
engine_settings with_hash_tag(engine_settings s) {
  if (!s.cluster_seeds.empty()) s.prefix = "{" + s.prefix + "}";
  return s;
}
}  // namespace

engine::engine(core::router& router, engine_settings settings)
    : router_(router),
      settings_(with_hash_tag(std::move(settings))),
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
  router_.set_ownership(this);
  router_.set_group_policy(this);
  inbound_thread_ = std::thread([this] { inbound_loop(); });
  asio::post(impl_->io, [this] { impl_->connect(); });
  cluster_thread_ = std::thread([this] { impl_->io.run(); });
}

void engine::stop(int timeout_ms) {
  if (!started_) return;
  started_ = false;
  router_.set_observer(nullptr);
  router_.set_filter_observer(nullptr);
  router_.set_ownership(nullptr);
  router_.set_group_policy(nullptr);
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
    impl_->park_timer.cancel();
    impl_->inbox_timer.cancel();
    for (auto& [o, since] : impl_->parked)
      if (o.done) o.done(false);
    impl_->parked.clear();
    if (impl_->cmd) impl_->cmd->close();
    if (impl_->sub) impl_->sub->close();
    if (impl_->xr) impl_->xr->close();
    if (impl_->dur) impl_->dur->close();
    if (impl_->sentinel) impl_->sentinel->close();
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

bool engine::take_here(std::string_view whole, const core::message&) const {
  return table_.take_here(whole);
}

void engine::published(const core::message_ptr& msg, const core::observed_publish& how) {
  if (how.retain) {
    // Every node keeps the tag's retained message; a QoS 1/2 publisher is acknowledged once
    // Redis has it too.
    std::function<void(bool)> done;
    if (msg->qos > 0 && how.ack) done = how.ack->hold();
    common::lock<common::mutex> lock(queue_mutex_);
    retained_changes_.push_back({msg, how.clears_retained, std::move(done)});
    wake_cluster_thread();
  }
  thread_local std::vector<remote_node_ptr> nodes;
  thread_local std::vector<std::string> remote_groups;
  table_.match(msg->tag, nodes);
  auto add_node = [&](remote_node_ptr n) -> std::size_t {
    auto it = std::find(nodes.begin(), nodes.end(), n);
    if (it != nodes.end()) return static_cast<std::size_t>(it - nodes.begin());
    nodes.push_back(std::move(n));
    return nodes.size() - 1;
  };
  if (!how.to.empty() && !how.to_here) {
    // A direct message whose recipient is on another node: that node gets it too (once).
    if (auto owner = table_.owner_of(how.to)) add_node(std::move(owner));
  }
  // Shared groups: those the policy sent elsewhere, and those with no member here at all,
  // each to the node whose turn it is.
  std::vector<std::vector<std::string>> groups;
  auto add_group = [&](remote_node_ptr n, std::string whole) {
    const auto i = add_node(std::move(n));
    if (groups.size() < nodes.size()) groups.resize(nodes.size());
    groups[i].push_back(std::move(whole));
  };
  for (const auto& whole : how.groups_elsewhere) {
    if (auto n = table_.pick_node(whole))
      add_group(std::move(n), whole);
    else
      probe_.dropped_group.fetch_add(1, std::memory_order_relaxed);
  }
  // Those that no member here took (none here, or none that could take it) and the policy did
  // not send elsewhere already. (The router's match said which: no second look at the index.)
  table_.match_groups(msg->tag, remote_groups);
  auto among = [](std::span<const std::string> list, const std::string& g) {
    return std::find(list.begin(), list.end(), g) != list.end();
  };
  for (auto& whole : remote_groups)
    if (!among(how.groups_here, whole) && !among(how.groups_elsewhere, whole))
      if (auto n = table_.pick_node(whole)) add_group(std::move(n), std::move(whole));
  if (nodes.empty()) return;
  if (!groups.empty()) groups.resize(nodes.size());
  // QoS 0 while Redis is away: dropped. QoS 1/2: queued (the cluster thread waits for
  // Redis up to publish_timeout_ms), its publisher's acknowledgement held until it is in
  // every interested node's inbox.
  const bool durable = msg->qos > 0;
  if (!durable && !ready()) {
    probe_.dropped_down.fetch_add(nodes.size(), std::memory_order_relaxed);
    return;
  }
  std::function<void(bool)> done;
  if (durable && how.ack) done = how.ack->hold();
  common::lock<common::mutex> lock(queue_mutex_);
  if (outbound_.size() >= settings_.outbound_queue) {
    probe_.dropped_outbound.fetch_add(nodes.size(), std::memory_order_relaxed);
    if (done) done(false);
    return;
  }
  outbound_.push_back({msg, std::move(done), nodes, std::move(groups), std::string(how.to)});
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

void engine::claimed(std::string_view client_id) {
  common::lock<common::mutex> lock(queue_mutex_);
  client_changes_[std::string(client_id)] = true;
  wake_cluster_thread();
}

void engine::released(std::string_view client_id) {
  common::lock<common::mutex> lock(queue_mutex_);
  client_changes_.try_emplace(std::string(client_id), false);
  wake_cluster_thread();
}

void engine::departing(std::string_view client_id, const core::departure* d) {
  std::optional<std::string> bytes;
  if (d) {
    std::string b(1, static_cast<char>((d->announced ? departure_announced : 0) |
                                       (d->will_retain ? departure_retain : 0)));
    if (d->will) encode_envelope(*d->will, {}, b);
    if (d->will || d->announced) bytes = std::move(b);
  }
  common::lock<common::mutex> lock(queue_mutex_);
  departure_changes_[std::string(client_id)] = std::move(bytes);
  wake_cluster_thread();
}

bool engine::held_elsewhere(std::string_view client_id) const {
  return table_.owner_of(client_id) != nullptr;
}

// Called on the cluster thread by the pub/sub connection.
void engine::deliver_inbound(const std::string& bytes, std::string stream_id) {
  {
    common::lock<common::mutex> lock(inbound_mutex_);
    if (stream_id.empty() && inbound_.size() >= settings_.inbound_queue) {
      probe_.dropped_inbound.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    inbound_.push_back({bytes, std::move(stream_id)});
  }
  inbound_wake_.notify_one();
}

std::size_t engine::inbound_size() {
  common::lock<common::mutex> lock(inbound_mutex_);
  return inbound_.size();
}

void engine::inbound_loop() {
  std::deque<incoming> batch;
  std::uint64_t logged = 0;
  for (;;) {
    {
      common::unique_lock lock(inbound_mutex_);
      inbound_wake_.wait(
          lock, [this]() REQUIRES(inbound_mutex_) { return inbound_stop_ || !inbound_.empty(); });
      if (inbound_.empty() && inbound_stop_) return;
      batch.swap(inbound_);
    }
    for (auto& [bytes, stream_id] : batch) {
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
      opts.only_groups = &d.opts.groups;
      if (!stream_id.empty()) {
        // An inbox entry: its position is written with what it puts in the store (its
        // persistent recipients' queue entries), so a restart reads on from there.
        opts.with.push_back(core::store_ops::put_meta{std::string(inbox_position_key), stream_id});
        opts.on_durable = [this, id = stream_id](bool ok) {
          if (ok) asio::post(impl_->io, [this, id] { impl_->inbox_durable = id; });
        };
      }
      router_.inject(d.msg, std::move(opts));
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
  out.counter("cluster_messages_dropped_total", dropped, n(probe_.dropped_group),
              {{"reason", "group_node_gone"}});
  out.counter("cluster_inbox_sent_total",
              "QoS 1/2 messages written to other nodes' inbox streams (one per node).",
              n(probe_.inbox_sent));
  out.counter("cluster_inbox_received_total", "Entries read from this node's inbox stream.",
              n(probe_.inbox_received));
  out.counter("cluster_publishes_refused_total",
              "QoS 1/2 publishes refused: not in every interested node's inbox in time.",
              n(probe_.refused));
  out.counter("cluster_malformed_total",
              "Messages and route changes from Redis that could not be read.", n(probe_.malformed));
  out.counter("cluster_connects_total", "Connections to Redis that synced the route table.",
              n(probe_.connects));
  out.counter("cluster_resyncs_total", "Times a node's record was read again from Redis.",
              n(probe_.resyncs));
  out.gauge("cluster_remote_clients", "Client ids other nodes hold sessions for.",
            static_cast<double>(table_.clients()));
  out.counter("cluster_evictions_total",
              "Sessions here closed because the client connected to another node.",
              n(probe_.evictions));
}

}  // namespace wsagent::cluster
