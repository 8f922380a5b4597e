#pragma once
// The agent's configuration: one plain struct, filled from (lowest to highest precedence)
// built-in defaults, a TOML file, WSAGENT_* environment variables and command-line flags.
//
// Every scalar key is described once in the schema table in config.cpp; the TOML loader,
// the environment and the flags are all driven by that table, so no key can be settable in
// one place and not in another. Loading collects every error (file, line, key, what is
// wrong) instead of stopping at the first, for `wsagent serve --check-config`.

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "auth/certificate_authenticator.hpp"
#include "auth/jwt_config.hpp"
#include "auth/token_file.hpp"
#include "common/toml_read.hpp"
#include "net/tls_config.hpp"

namespace CLI {
class App;
}

namespace wsagent::app {

// The tokens and roles (auth::token_set: the token file format, read in src/auth), and where
// they come from.
struct auth_config : auth::token_set {
  std::string tokens_file;  // a TOML file with [[tokens]] and [roles.*]; reloaded on SIGHUP
  // The role of clients that present no token, where such clients are let in (open mode, or
  // with tokens when this is set); "" = open mode grants everything, tokens refuse them.
  std::string anonymous_role;
  // An identity that expires (a JWT): the native client is told this long before, and the
  // connection closed this long after, unless it refreshes its token.
  int refresh_notice_s = 60;
  int expiry_grace_s = 0;
  std::optional<auth::jwt_config> jwt;  // [auth.jwt]: JSON Web Tokens beside the static ones
  // [auth.certificates]: verified client certificates as credentials
  std::optional<auth::certificate_settings> certificates;
};

// One listener: a bind address and the protocols it serves (docs/configuration.md,
// "Listeners"): ws (the native protocol on /ws), mqtt-ws (/mqtt), echo (/echo), http (the
// HTTP endpoints only; every HTTP listener serves them), or mqtt (raw TCP, alone).
struct listener_config {
  std::string bind;
  std::vector<std::string> protocols;
  std::optional<net::tls_config> tls;  // a TLS listener's: wss, mqtts
  std::string source;                  // where it was declared, for messages
  int line = 0;
};

struct config {
  struct server_section {
    std::string listen = "127.0.0.1:8080";  // host:port; [v6]:port
    int threads = 0;                        // 0: one per core
    bool allow_anonymous = false;           // run without tokens on a non-loopback address
    bool require_tls = false;               // non-loopback listeners must have TLS
    // Pages (their Origin) that may open a WebSocket; empty: ["self", "loopback"]
    // (net/origin_policy.hpp).
    std::vector<std::string> allowed_origins;
    bool diagnostics = false;  // adds the /echo WebSocket endpoint
    int shutdown_timeout_ms = 5000;
  } server;

  struct limits_section {
    int max_connections = 10000;
    int max_connections_per_ip = 1000;
    // Failed authentications from one address within the window before it is refused for
    // the penalty (core/auth_throttle.hpp); 0: no limit.
    int max_auth_failures = 10;
    int auth_failure_window_s = 60;
    int auth_penalty_s = 30;
    int max_auth_rate = 0;      // new authentications per second (reconnect storms); 0: no limit
    int max_pending_auths = 0;  // authentications in progress at once; 0: no limit
    int max_message_size = 1024 * 1024;          // bytes, one WebSocket message
    int max_subscriptions = 1000;                // per client
    int max_tag_length = 256;                    // bytes
    int max_tag_depth = 16;                      // levels
    int outbound_queue_bytes = 8 * 1024 * 1024;  // QoS 0 bytes waiting per connection
    int outbound_queue = 0;                      // QoS 0 messages waiting; 0 = no count bound
    int slow_consumer_timeout_ms = 5000;         // queue full this long: close 4008
    int max_protocol_errors = 20;                // error frames before close 4400
    int max_batch = 1000;                        // messages in one batch frame
    int max_retained = 100000;                   // retained messages (tags) in all
    int max_inflight = 32;                       // QoS 1 deliveries unacknowledged per client
    int max_queued = 1000;                       // QoS 1 deliveries waiting per client
    int max_queued_bytes = 16 * 1024 * 1024;     // their payload bytes; 0 = no limit
    int max_queued_age_s = 0;                    // older ones are not delivered; 0 = no limit
  } limits;

  struct delivery_section {
    int retry_ms = 20000;  // resend an unacknowledged QoS 1 delivery after this long
  } delivery;

  struct mqtt_section {
    std::string listen = "127.0.0.1:1883";  // MQTT over TCP; "" = off
    int max_keepalive = 0;                  // seconds; 0 = no ceiling
  } mqtt;

  struct native_section {
    // A frame without a "type": "error" (bad_request) or "reading" (a device reading,
    // routed as a device message of type "data", as the IIoT frame of the IoT lesson).
    std::string untyped_frames = "error";
  } native;

  struct history_section {
    std::vector<std::string> tags;  // filters of the tags that keep a history
    int max_count = 1000;           // per tag
    int max_age_s = 0;              // 0 = no limit
    int max_tags = 10000;
  } history;

  struct heartbeat_section {
    int ping_interval_ms = 20000;
    int idle_timeout_ms = 60000;
    int auth_timeout_ms = 10000;
  } heartbeat;

  struct store_section {
    std::string kind = "sqlite";      // sqlite | memory
    std::string data_dir = "./data";  // the sqlite store's directory
    std::string sync = "full";        // full | normal
  } store;

  // [cluster]: several agents sharing one Redis (docs/cluster.md). Off without cluster.redis.
  struct cluster_section {
    std::string redis;  // redis://[[user]:password@]host[:port][/db]; "" = no cluster
    std::vector<std::string> sentinels;  // host:port of each sentinel (instead of redis)
    std::string master;                  // the master's name the sentinels know
    std::string sentinel_password;       // the sentinels' own (requirepass); "" = none
    // host:port of some of a Redis Cluster's nodes (instead of redis and sentinels)
    std::vector<std::string> redis_cluster;
    // TLS to Redis: on with a rediss:// URL or tls = true (sentinels, a Redis Cluster)
    bool tls = false;
    std::string tls_ca_file;    // "" = the system's trusted certificates
    std::string tls_cert_file;  // a client certificate, for tls-auth-clients
    std::string tls_key_file;
    std::string node_id;   // "" = the one kept in store.data_dir/node_id (made at first start)
    std::string username;  // an ACL user for Redis, over the URL's
    std::string password;  // over the URL's (keep it in WSAGENT_CLUSTER_PASSWORD)
    std::string prefix = "wsagent";  // of every Redis key and channel
    int heartbeat_ms = 1000;
    int node_timeout_ms = 5000;
    int reconcile_ms = 10000;
    int inbound_queue = 65536;
    int outbound_queue = 65536;
    int inbox_max = 100000;         // entries of each node's inbox stream (MAXLEN ~)
    int wait_replicas = 0;          // QoS 1/2: acknowledged once on this many replicas
    int publish_timeout_ms = 5000;  // QoS 1/2 across nodes: the longest wait for Redis
    bool enabled() const { return !redis.empty() || !sentinels.empty() || !redis_cluster.empty(); }
  } cluster;

  struct log_section {
    std::string level = "info";   // trace debug info warn error off
    std::string format = "text";  // text | json
    std::string file;             // "" = stderr
    std::string audit_file;       // "" = the main log
  } log;

  auth_config auth;

  // [[listeners]] from the file, then (after loading) the shorthands: server.listen as a
  // listener of ws, mqtt-ws and http (and echo with server.diagnostics), mqtt.listen as one of
  // mqtt. With [[listeners]] in the file, a shorthand counts only when it is set explicitly.
  std::vector<listener_config> listeners;
};

// One problem found while loading: where, which key, and what is wrong.
// file.toml:12: limits.max_connections: must be >= 1
using config_error = common::config_problem;

struct config_result {
  config value;
  std::vector<config_error> errors;
  bool ok() const { return errors.empty(); }
};

// Command-line overrides collected by add_config_flags(): dotted key -> raw text.
using config_overrides = std::map<std::string, std::string>;

// Registers one flag per scalar key (`--server.listen`, `--limits.max_connections`, ...)
// on `app`, storing what the user gave in `out`.
void add_config_flags(CLI::App& app, config_overrides& out);

// Loads defaults, then `path` (if not empty), then the environment (`envp`, as from main;
// may be null), then `overrides`. Never throws; every problem is in the result's errors.
config_result load_config(const std::string& path, const char* const* envp,
                          const config_overrides& overrides);

// Reads only the auth part again (the main file's [auth] and its tokens_file), for SIGHUP.
config_result reload_auth(const std::string& path, const config& current);

}  // namespace wsagent::app
