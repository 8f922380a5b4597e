#include "app/serve.hpp"

#include <sys/resource.h>

#include <pthread.h>

#include <csignal>

#include <spdlog/spdlog.h>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <random>
#include <thread>

#include "app/endpoints.hpp"
#include "app/logging.hpp"
#include "app/protocols.hpp"
#include "auth/certificate_authenticator.hpp"
#include "auth/jwks_refresher.hpp"
#include "auth/jwt_authenticator.hpp"
#include "auth/jwt_config.hpp"
#include "cluster/engine.hpp"
#include "common/clock.hpp"
#include "core/router.hpp"
#include "core/store_writer.hpp"
#include "net/https_client.hpp"
#include "net/server.hpp"
#include "net/tls_context.hpp"
#include "protocol/wire_formats.hpp"
#include "store/memory_store.hpp"
#include "store/sqlite_store.hpp"

namespace wsagent::app {

bool split_listen(const std::string& listen, std::string& host, std::uint16_t& port) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon + 1 == listen.size()) return false;
  host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  try {
    int p = std::stoi(listen.substr(colon + 1));
    if (p < 0 || p > 65535) return false;
    port = static_cast<std::uint16_t>(p);
  } catch (...) {
    return false;
  }
  return !host.empty();
}

bool is_loopback(const std::string& host) {
  if (host == "localhost") return true;
  boost::system::error_code ec;
  auto a = boost::asio::ip::make_address(host, ec);
  return !ec && a.is_loopback();
}

// The static tokens (or open mode), with JWT in front when [auth.jwt] is configured and
// client certificates in front of that with [auth.certificates]; null when a JWT key or the
// revocation file cannot be used (`problems` say which and why). The revocation file's
// entries go into `revocations` (which outlives every authenticator: what was revoked at
// run time, and the one-time tokens used, survive a reload) only when all is well.
std::shared_ptr<const core::authenticator> make_authenticator(
    const auth_config& auth, const std::shared_ptr<auth::revocation_list>& revocations,
    auth::jwks_refresher* refresher, std::vector<std::string>& problems) {
  const bool closed = auth.jwt || auth.certificates;
  std::shared_ptr<const core::authenticator> a =
      auth::make_authenticator(auth, auth.anonymous_role, closed);
  const auto roles = auth::role_grants(auth);
  if (auth.jwt) {
    auto keys = auth::load_jwt_keys(*auth.jwt, problems);
    auth::revocation_entries revoked;
    if (!auth.jwt->revocations.empty()) {
      std::vector<common::config_problem> found;
      if (auto entries = auth::read_revocation_file(auth.jwt->revocations, found))
        revoked = std::move(*entries);
      for (const auto& p : found)
        problems.push_back("auth.jwt.revocations: " + p.to_string());
    }
    if (!problems.empty()) return nullptr;
    revocations->set_file_entries(std::move(revoked));
    auto store = std::make_shared<auth::jwt_key_store>(keys);
    auto jwt = std::make_shared<auth::jwt_authenticator>(
        auth.jwt->settings, store, roles, a, auth::jwt_authenticator::clock{}, revocations);
    if (refresher) {
      const auto& j = *auth.jwt;
      refresher->use(store, std::move(keys),
                     {j.jwks_url, j.jwks_ca, std::chrono::seconds(j.jwks_refresh_s),
                      std::chrono::seconds(j.jwks_refetch_min_s)});
      if (!j.jwks_url.empty()) jwt->on_unknown_kid([refresher] { refresher->unknown_kid(); });
    }
    a = std::move(jwt);
  } else if (refresher) {
    refresher->use(std::make_shared<auth::jwt_key_store>(), {}, {});  // nothing to fetch
  }
  if (auth.certificates) {
    auto rights = std::make_shared<core::grants>();
    for (const auto& r : auth.certificates->roles)
      if (auto it = roles.find(r); it != roles.end()) rights->add(*it->second);
    a = std::make_shared<auth::certificate_authenticator>(*auth.certificates, std::move(rights),
                                                          std::move(a));
  }
  return a;
}

std::string open_access_problem(const config& cfg) {
  // Anonymous clients are let in without tokens, or with tokens and an anonymous role.
  const bool anonymous = (cfg.auth.tokens.empty() && !cfg.auth.jwt && !cfg.auth.certificates) ||
                         !cfg.auth.anonymous_role.empty();
  if (!anonymous || cfg.server.allow_anonymous) return {};
  for (const auto& l : cfg.listeners) {
    std::string host;
    std::uint16_t port = 0;
    if (split_listen(l.bind, host, port) && !is_loopback(host))
      return "refusing to listen on " + l.bind + " (" + net::join(l.protocols) +
             ") without authentication: configure tokens ([auth] in the config file), listen "
             "on a loopback address, or set server.allow_anonymous = true to accept anyone on "
             "the network";
  }
  return {};
}

// A listener beyond loopback without TLS: a warning that names it, or the error of
// server.require_tls.
std::string plaintext_problem(const config& cfg) {
  for (const auto& l : cfg.listeners) {
    std::string host;
    std::uint16_t port = 0;
    if (l.tls || !split_listen(l.bind, host, port) || is_loopback(host)) continue;
    const auto what = l.bind + " (" + net::join(l.protocols) + ")";
    if (cfg.server.require_tls)
      return "refusing to listen on " + what +
             " without TLS (server.require_tls): give the listener a tls table, or bind it to "
             "a loopback address";
    spdlog::warn(
        "listener {} is not encrypted: tokens and messages cross the network in clear "
        "(give it a tls table; server.require_tls = true makes this an error)",
        what);
  }
  return {};
}

// Every connection is a file descriptor. Raise the soft limit to the hard one and say what
// it allows, so that an operator sees the ceiling before clients hit it.
static void check_file_limit(const config& cfg) {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    getrlimit(RLIMIT_NOFILE, &lim);
  }
  // A few descriptors go to the listener, epoll, timers, logs and the store.
  constexpr rlim_t reserved = 32;
  const auto usable = lim.rlim_cur > reserved ? lim.rlim_cur - reserved : 0;
  if (static_cast<rlim_t>(cfg.limits.max_connections) > usable)
    spdlog::warn(
        "file limit (RLIMIT_NOFILE) is {}: at most about {} connections, fewer than "
        "limits.max_connections = {}; raise the hard limit (ulimit -Hn, LimitNOFILE=) "
        "to serve more",
        lim.rlim_cur, usable, cfg.limits.max_connections);
  else
    spdlog::debug("file limit (RLIMIT_NOFILE) is {}", lim.rlim_cur);
}

namespace {

// Says, once at start-up, who may come in.
void say_who_may_connect(const config& cfg, const core::authenticator& auth) {
  bool loopback = true;
  for (const auto& l : cfg.listeners) {
    std::string host;
    std::uint16_t port = 0;
    loopback = loopback && split_listen(l.bind, host, port) && is_loopback(host);
  }
  const char* where = loopback ? " (loopback only)" : " (server.allow_anonymous is set)";
  if (auth.open() && cfg.auth.anonymous_role.empty())
    spdlog::warn("no tokens configured: OPEN ACCESS, every client may publish and subscribe{}",
                 where);
  else if (auth.open())
    spdlog::warn("no tokens configured: OPEN ACCESS with the rights of role '{}'{}",
                 cfg.auth.anonymous_role, where);
  else if (!cfg.auth.anonymous_role.empty())
    spdlog::warn("clients without a token are let in with the rights of role '{}'{}",
                 cfg.auth.anonymous_role, where);
}

// The store: opened and read before anything listens, so that a damaged or busy data file
// stops the agent with its path and cause instead of serving without its data. Null (said
// on the log) when it cannot be opened.
std::unique_ptr<core::store> open_store(const config& cfg, core::store_snapshot& restored) {
  std::unique_ptr<core::store> store;
  try {
    if (cfg.store.kind == "memory")
      store = std::make_unique<store::memory_store>();
    else
      store = std::make_unique<store::sqlite_store>(
          cfg.store.data_dir,
          cfg.store.sync == "normal" ? store::sync_mode::normal : store::sync_mode::full);
    restored = store->load();
  } catch (const core::store_error& e) {
    spdlog::critical("store: {}", e.what());
    return nullptr;
  }
  if (auto* sq = dynamic_cast<store::sqlite_store*>(store.get()))
    spdlog::info("store: {} (sync {}): {} retained message(s)", sq->path(), cfg.store.sync,
                 restored.retained.size());
  else
    spdlog::warn("store: memory: retained messages are lost when the agent stops");
  return store;
}

core::router_limits router_limits_of(const config& cfg) {
  core::router_limits rl;
  rl.tags.max_length = cfg.limits.max_tag_length;
  rl.tags.max_depth = cfg.limits.max_tag_depth;
  rl.max_subscriptions = cfg.limits.max_subscriptions;
  rl.max_retained = static_cast<std::size_t>(cfg.limits.max_retained);
  rl.history.filters = cfg.history.tags;
  rl.history.max_count = static_cast<std::size_t>(cfg.history.max_count);
  rl.history.max_age_ms = std::int64_t{cfg.history.max_age_s} * 1000;
  rl.history.max_tags = static_cast<std::size_t>(cfg.history.max_tags);
  return rl;
}

// This node's id (core::message::node, the prefix of the msgids it makes): drawn at random
// each run; a cluster configures it (issue 14). Never 0, the id of "no node".
std::uint32_t draw_node_id() {
  std::random_device rd;
  std::uint32_t id = 0;
  while (id == 0)
    id = static_cast<std::uint32_t>(rd());
  return id;
}

// This node's name in the cluster: cluster.node_id, or the one kept in store.data_dir/node_id,
// made at the first start ("wsagent-" and 12 random hex digits) so that a restarted node is
// the same node to the others. Empty, with `error` set, when it can be neither read nor made.
std::string cluster_node_name(const config& cfg, std::string& error) {
  if (!cfg.cluster.node_id.empty()) return cfg.cluster.node_id;
  namespace fs = std::filesystem;
  const fs::path path = fs::path(cfg.store.data_dir) / "node_id";
  std::error_code ec;
  fs::create_directories(cfg.store.data_dir, ec);
  if (std::ifstream in(path); in) {
    std::string name;
    std::getline(in, name);
    if (!name.empty()) return name;
  }
  std::random_device rd;
  char buf[32];
  std::snprintf(buf, sizeof buf, "wsagent-%06x%06x", rd() & 0xffffff, rd() & 0xffffff);
  std::ofstream out(path);
  if (!(out << buf << "\n") || !out.flush()) {
    error = "cannot write the cluster node id to " + path.string() +
            " (set cluster.node_id, or a writable store.data_dir)";
    return {};
  }
  return buf;
}

// `base` (its credentials and TLS) at `where`, a host:port checked when the file was loaded.
cluster::redis_endpoint endpoint_at(const std::string& where, cluster::redis_endpoint base) {
  cluster::redis_endpoint at;
  (void)cluster::parse_redis_url("redis://" + where, at);
  base.host = at.host;
  base.port = at.port;
  return base;
}

cluster::engine_settings cluster_settings_of(const config& cfg, std::string node) {
  cluster::engine_settings s;
  s.node = std::move(node);
  if (!cfg.cluster.redis.empty())
    (void)cluster::parse_redis_url(cfg.cluster.redis, s.redis);  // checked when loaded
  cluster::redis_endpoint sentinel;
  sentinel.password = cfg.cluster.sentinel_password;
  sentinel.tls = cfg.cluster.tls;
  for (const auto& where : cfg.cluster.sentinels)
    s.sentinels.push_back(endpoint_at(where, sentinel));
  s.master = cfg.cluster.master;
  if (!cfg.cluster.username.empty()) s.redis.user = cfg.cluster.username;
  if (!cfg.cluster.password.empty()) s.redis.password = cfg.cluster.password;
  s.redis.tls = s.redis.tls || cfg.cluster.tls;        // (the master and the seeds copy it)
  for (const auto& where : cfg.cluster.redis_cluster)  // with cluster.username / password
    s.cluster_seeds.push_back(endpoint_at(where, s.redis));
  s.prefix = cfg.cluster.prefix;
  s.heartbeat_ms = cfg.cluster.heartbeat_ms;
  s.node_timeout_ms = cfg.cluster.node_timeout_ms;
  s.reconcile_ms = cfg.cluster.reconcile_ms;
  s.inbound_queue = static_cast<std::size_t>(cfg.cluster.inbound_queue);
  s.outbound_queue = static_cast<std::size_t>(cfg.cluster.outbound_queue);
  s.inbox_max = static_cast<std::size_t>(cfg.cluster.inbox_max);
  s.wait_replicas = cfg.cluster.wait_replicas;
  s.publish_timeout_ms = cfg.cluster.publish_timeout_ms;
  return s;
}

// Each module's figures, read by one registry (/healthz, /metrics).
void add_collectors(common::metrics_registry& metrics, std::int64_t started_ms,
                    const net::server& srv, const core::router& router,
                    const protocol::adapter_probe& adapters, const core::store_writer& writer) {
  metrics.add([started_ms](common::metric_set& out) { write_process_metrics(out, started_ms); });
  metrics.add([&srv](common::metric_set& out) { srv.write_metrics(out); });
  metrics.add([&router](common::metric_set& out) { core::write_metrics(router, out); });
  metrics.add([&adapters](common::metric_set& out) { protocol::write_metrics(adapters, out); });
  metrics.add([&writer](common::metric_set& out) { writer.write_metrics(out); });
}

// Offline persistent sessions past their expiry, and history entries past
// history.max_age_s, are dropped: now, then every second.
// Once a second: expired sessions, history past its age, and TLS certificates whose files
// changed on disk (rotation without a signal).
void sweep(boost::asio::steady_timer& timer, core::router& router, net::server& srv) {
  const auto now = common::now_ms();
  for (const auto& id : router.expire_sessions(now))
    spdlog::debug("session {} expired", id);
  router.trim_history(now);
  srv.reload_tls(true);
  timer.expires_after(std::chrono::seconds(1));
  timer.async_wait([&timer, &router, &srv](boost::system::error_code ec) {
    if (!ec) sweep(timer, router, srv);
  });
}

// The router's state from the store, as the agent stopped.
void restore(core::router& router, core::store_snapshot& restored, const config& cfg) {
  router.restore_sessions(restored, static_cast<std::size_t>(cfg.limits.max_inflight),
                          static_cast<std::size_t>(cfg.limits.max_queued),
                          static_cast<std::size_t>(cfg.limits.max_queued_bytes));
  router.restore_retained(restored.retained);
  router.restore_wills(restored.wills);
  if (!cfg.history.tags.empty()) {
    const auto h = router.history_count();
    spdlog::info("history: {} tag(s), {} message(s) kept", h.tags, h.entries);
  }
  if (!restored.sessions.empty() || !restored.wills.empty())
    spdlog::info("store: {} persistent session(s), {} queued message(s), {} delayed will(s)",
                 restored.sessions.size(), restored.queue.size(), restored.wills.size());
  restored = {};
}

void set_adapter_limits(protocol::adapter_context& actx, const config& cfg) {
  actx.max_inflight = static_cast<std::size_t>(cfg.limits.max_inflight);
  actx.max_queued_qos1 = static_cast<std::size_t>(cfg.limits.max_queued);
  actx.max_queued_bytes = static_cast<std::size_t>(cfg.limits.max_queued_bytes);
  actx.max_queued_age_ms = std::int64_t{cfg.limits.max_queued_age_s} * 1000;
  actx.retry_ms = cfg.delivery.retry_ms;
  actx.max_keepalive_s = static_cast<std::uint16_t>(cfg.mqtt.max_keepalive);
  actx.untyped_readings = cfg.native.untyped_frames == "reading";
  actx.refresh_notice_ms = std::int64_t{cfg.auth.refresh_notice_s} * 1000;
  actx.expiry_grace_ms = std::int64_t{cfg.auth.expiry_grace_s} * 1000;
}

net::server_settings server_settings_of(const config& cfg) {
  net::server_settings s;
  s.threads = cfg.server.threads > 0
                  ? cfg.server.threads
                  : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  s.max_connections = cfg.limits.max_connections;
  s.max_connections_per_ip = cfg.limits.max_connections_per_ip;
  auto& c = s.connection;
  c.max_message_size = static_cast<std::size_t>(cfg.limits.max_message_size);
  c.outbound_queue_bytes = static_cast<std::size_t>(cfg.limits.outbound_queue_bytes);
  c.outbound_queue = static_cast<std::size_t>(cfg.limits.outbound_queue);
  c.slow_consumer_timeout_ms = cfg.limits.slow_consumer_timeout_ms;
  c.ping_interval_ms = cfg.heartbeat.ping_interval_ms;
  c.idle_timeout_ms = cfg.heartbeat.idle_timeout_ms;
  c.auth_timeout_ms = cfg.heartbeat.auth_timeout_ms;
  for (const auto& l : cfg.listeners)
    s.listeners.push_back({l.bind, l.protocols, l.tls});
  return s;
}

// One line per listener, as clients address it (the tests read the first two shapes).
void say_listening(const net::server& srv, int threads) {
  for (const auto& l : srv.listeners()) {
    const auto& ps = l->config().protocols;
    auto has = [&](const char* p) { return std::find(ps.begin(), ps.end(), p) != ps.end(); };
    const auto url = l->url();
    if (has("mqtt"))
      spdlog::info("MQTT (3.1.1, 5.0) listening on {}", url);
    else if (has("ws"))
      spdlog::info("wsagent {} listening on {}/ws ({}; {} I/O threads)", WSAGENT_VERSION_STRING,
                   url, net::join(ps), threads);
    else
      spdlog::info("listening on {} ({})", url, net::join(ps));
    if (const auto& tls = l->info().tls) spdlog::info("TLS on {}: {}", url, tls->describe());
  }
}

// SIGHUP: the tokens again; a broken file, or one that would turn authentication off,
// leaves the previous ones.
void reload(const std::string& config_path, const config& cfg, core::auth_holder& holder,
            const std::shared_ptr<auth::revocation_list>& revocations,
            auth::jwks_refresher& refresher, audit_writer& audit) {
  auto reloaded = reload_auth(config_path, cfg);
  if (!reloaded.ok()) {
    for (const auto& e : reloaded.errors)
      spdlog::error("reload: {}", e.to_string());
    spdlog::error("reload failed: keeping the previous tokens");
    audit.record(core::audit_event::admin, {}, "signal", "SIGHUP reload failed");
    return;
  }
  std::vector<std::string> problems;
  auto fresh = make_authenticator(reloaded.value.auth, revocations, &refresher, problems);
  if (!fresh) {
    for (const auto& p : problems)
      spdlog::error("reload: {}", p);
    spdlog::error("reload failed: keeping the previous tokens and keys");
    audit.record(core::audit_event::admin, {}, "signal", "SIGHUP reload failed");
    return;
  }
  if (fresh->open() && !holder.get()->open()) {
    spdlog::error("reload: the new configuration has no tokens; keeping the previous ones");
    return;
  }
  holder.set(fresh);
  spdlog::info("reload: {} token(s) active{}", reloaded.value.auth.tokens.size(),
               reloaded.value.auth.jwt ? ", JWT keys loaded again" : "");
  audit.record(core::audit_event::admin, {}, "signal", "SIGHUP: tokens reloaded");
}

}  // namespace

std::vector<std::string> check_files(const config& cfg) {
  std::vector<std::string> problems;
  if (auto p = open_access_problem(cfg); !p.empty()) problems.push_back(p);
  if (auto p = plaintext_problem(cfg); !p.empty() && cfg.server.require_tls) problems.push_back(p);
  for (const auto& l : cfg.listeners) {
    if (!l.tls) continue;
    try {
      net::tls_context ctx(
          *l.tls, l.tls->alpn.empty() ? std::vector<std::string>{"http/1.1"} : l.tls->alpn);
    } catch (const net::tls_error& e) {
      problems.push_back(l.source + ":" + std::to_string(l.line) + ": listener " + l.bind + " (" +
                         net::join(l.protocols) + "): " + e.what());
    }
  }
  auto revocations = std::make_shared<auth::revocation_list>();
  std::vector<std::string> key_problems;
  (void)make_authenticator(cfg.auth, revocations, nullptr, key_problems);
  problems.insert(problems.end(), key_problems.begin(), key_problems.end());
  return problems;
}

int serve(const config& cfg, const std::string& config_path) {
  // A write to a socket its peer closed is an error to handle, not a reason to die: OpenSSL
  // writes TLS sockets with write(2), which raises SIGPIPE (Asio's sends do not).
  std::signal(SIGPIPE, SIG_IGN);
  // SIGINT, SIGTERM and SIGHUP are for the main thread alone: blocked here, before any thread
  // starts (each inherits the mask), and unblocked on the main thread once it serves (below).
  // A signal sent meanwhile waits; a signal the kernel could hand to any thread would reach
  // one that may not see it soon (ThreadSanitizer holds a signal until its thread makes a
  // call it intercepts: a SIGHUP was seen waiting seconds in CI).
  sigset_t handled;
  sigemptyset(&handled);
  for (int sig : {SIGINT, SIGTERM, SIGHUP})
    sigaddset(&handled, sig);
  pthread_sigmask(SIG_BLOCK, &handled, nullptr);
  try {
    setup_logging(cfg.log);
  } catch (const std::exception& e) {
    std::cerr << "wsagent: cannot open the log: " << e.what() << "\n";
    return 1;
  }
  std::vector<std::string> key_problems;
  auto revocations = std::make_shared<auth::revocation_list>();
  // Keys from auth.jwt.jwks_url, fetched over HTTPS on the refresher's own thread.
  auth::jwks_refresher refresher([](const auth::jwks_url_settings& from) {
    auto r = net::https_get(from.url, {from.ca_file});
    return auth::jwks_fetch_result{r.ok, std::move(r.body), std::move(r.error)};
  });
  auto auth = make_authenticator(cfg.auth, revocations, &refresher, key_problems);
  if (!auth) {
    for (const auto& p : key_problems)
      spdlog::critical("{}", p);
    return 1;
  }
  if (auto problem = open_access_problem(cfg); !problem.empty()) {
    spdlog::critical("{}", problem);
    return 1;
  }
  if (auto problem = plaintext_problem(cfg); !problem.empty()) {
    spdlog::critical("{}", problem);
    return 1;
  }
  say_who_may_connect(cfg, *auth);
  // The first fetch before serving (its failure is logged: the agent serves on, and tokens
  // of that issuer are refused until a fetch succeeds), then the refresher's thread.
  refresher.fetch_now();
  refresher.start();
  check_file_limit(cfg);
  // Encoding slots and message flags, in their documented order, before any message exists
  // (the store's messages carry the flags).
  protocol::reserve_wire_formats();

  core::store_snapshot restored;
  auto store = open_store(cfg, restored);
  if (!store) return 1;
  core::store_writer writer(
      *store, [](const std::string& what) { spdlog::error("store: a write failed: {}", what); });
  core::auth_holder auth_holder(auth);
  audit_writer audit(cfg.log);
  core::router router(router_limits_of(cfg));
  const auto node = draw_node_id();
  router.set_node(node);
  core::set_msgid_node(node);
  router.set_store(&writer);
  std::string inbox_position;  // where the cluster's inbox was read to (restore clears it)
  for (const auto& [key, value] : restored.meta)
    if (key == cluster::inbox_position_key) inbox_position = value;
  restore(router, restored, cfg);
  // The cluster, when configured: joins in the background (its log line says when), so a
  // Redis that is down does not keep this node from serving its own clients.
  std::unique_ptr<cluster::engine> cluster;
  if (cfg.cluster.enabled()) {
    std::string error;
    auto name = cluster_node_name(cfg, error);
    if (name.empty()) {
      spdlog::critical("cluster: {}", error);
      return 1;
    }
    auto settings = cluster_settings_of(cfg, name);
    settings.inbox_position = inbox_position;
    if (settings.redis.tls) {
      std::string problem;
      settings.connection.tls = cluster::make_redis_tls(
          cfg.cluster.tls_ca_file, cfg.cluster.tls_cert_file, cfg.cluster.tls_key_file, problem);
      if (!settings.connection.tls) {
        spdlog::critical("cluster: TLS to Redis: {}", problem);
        return 2;  // a configuration that names files it cannot use
      }
    }
    cluster = std::make_unique<cluster::engine>(router, std::move(settings));
    const auto& cs = cluster->settings();
    const std::string redis =
        !cs.cluster_seeds.empty()
            ? "Cluster through " + cs.cluster_seeds.front().describe() +
                  (cs.cluster_seeds.size() > 1
                       ? " (+" + std::to_string(cs.cluster_seeds.size() - 1) + " seeds)"
                       : "")
        : !cs.sentinels.empty() ? "master '" + cs.master + "' through Sentinel"
                                : cs.redis.describe();
    spdlog::info("cluster: node {}, Redis {}{} (prefix {})", name, redis,
                 cs.redis.tls ? " over TLS" : "", cs.prefix);
    cluster->start();
  }
  protocol::adapter_context actx{router, auth_holder, audit,
                                 static_cast<std::size_t>(cfg.limits.max_batch),
                                 cfg.limits.max_protocol_errors};
  set_adapter_limits(actx, cfg);
  core::auth_throttle throttle({cfg.limits.max_auth_failures,
                                std::int64_t{cfg.limits.auth_failure_window_s} * 1000,
                                std::int64_t{cfg.limits.auth_penalty_s} * 1000});
  actx.throttle = &throttle;
  core::admission admission({cfg.limits.max_auth_rate, cfg.limits.max_pending_auths});
  actx.admission = &admission;

  // One registry reads every module's probe: /healthz and /metrics.
  common::metrics_registry metrics;
  const auto started_ms = common::now_ms();
  net::net_probe net_probe;
  auto protocols = make_protocols(actx, cfg, [&](net::route_table& routes) {
    routes.http("/healthz", health_handler(metrics));
    routes.http("/metrics", metrics_handler(metrics));
    routes.http("/readyz", ready_handler([&cluster] {
                  return !cluster ? "off" : cluster->ready() ? "connected" : "connecting";
                }));
  });
  auto settings = server_settings_of(cfg);
  std::unique_ptr<net::server> srv;
  try {
    srv = std::make_unique<net::server>(settings, std::move(protocols), net_probe);
  } catch (const net::listen_error& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
  add_collectors(metrics, started_ms, *srv, router, actx.probe, writer);
  if (cluster) metrics.add([&cluster](common::metric_set& out) { cluster->write_metrics(out); });
  metrics.add([&throttle](common::metric_set& out) {
    out.counter("auth_penalties_total",
                "Addresses refused for limits.auth_penalty_s after limits.max_auth_failures "
                "failed authentications.",
                static_cast<double>(throttle.penalties.load(std::memory_order_relaxed)));
  });
  metrics.add([&refresher](common::metric_set& out) {
    const auto all = refresher.fetches.load(std::memory_order_relaxed);
    const auto failed = refresher.failures.load(std::memory_order_relaxed);
    constexpr std::string_view help = "Fetches of auth.jwt.jwks_url, by result.";
    out.counter("jwks_fetches_total", help, static_cast<double>(all - failed), {{"result", "ok"}});
    out.counter("jwks_fetches_total", help, static_cast<double>(failed), {{"result", "failed"}});
  });
  // Signals first: a SIGHUP or SIGTERM that arrives while starting must not kill the process.
  boost::asio::signal_set signals(srv->main_context(), SIGINT, SIGTERM, SIGHUP);
  try {
    srv->listen();
  } catch (const net::listen_error& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
  say_listening(*srv, settings.threads);

  boost::asio::steady_timer expiry_timer(srv->main_context());
  sweep(expiry_timer, router, *srv);

  std::function<void(boost::system::error_code, int)> on_signal;
  on_signal = [&](boost::system::error_code ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      reload(config_path, cfg, auth_holder, revocations, refresher, audit);
      // Tokens removed and revoked close their connections now.
      srv->recheck_credentials();
      const auto failed = srv->reload_tls(false);
      audit.record(core::audit_event::admin, {}, "signal",
                   failed.empty() ? "SIGHUP: certificates reloaded"
                                  : "SIGHUP: certificate reload failed: " + failed.front());
      return signals.async_wait(on_signal);
    }
    spdlog::info("received {}: shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    audit.record(core::audit_event::admin, {}, "signal",
                 sig == SIGINT ? "SIGINT: shutdown" : "SIGTERM: shutdown");
    expiry_timer.cancel();
    // A node of a cluster drains: its clients are asked to reconnect (to the other nodes).
    srv->stop(cfg.server.shutdown_timeout_ms,
              cluster ? core::close_reason::moving : core::close_reason::going_away);
  };
  signals.async_wait(on_signal);
  // Run by the main thread once it serves, after the I/O threads started with the mask.
  boost::asio::post(srv->main_context(),
                    [&handled] { pthread_sigmask(SIG_UNBLOCK, &handled, nullptr); });
  srv->run();
  // The server's connections are closed: their last publishes and filter removals go out,
  // then this node leaves the cluster.
  if (cluster) cluster->stop();
  writer.stop();  // what was submitted is written before the process ends
  spdlog::info("stopped");
  spdlog::default_logger()->flush();
  return 0;
}

}  // namespace wsagent::app
