#include "app/config.hpp"

#include <arpa/inet.h>

#include <toml++/toml.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string_view>
#include <utility>
#include <variant>

#include "cluster/redis_connection.hpp"
#include "common/text.hpp"
#include "core/tag.hpp"
#include "net/origin_policy.hpp"

namespace wsagent::app {
namespace {

using common::did_you_mean;
using common::in_quotes;
using common::line_of;
using common::type_of;

// --- the schema: every scalar key, once ---

enum class value_kind { string, integer, boolean, list };

using string_field = std::string& (*)(config&);
using int_field = int& (*)(config&);
using bool_field = bool& (*)(config&);
using list_field = std::vector<std::string>& (*)(config&);
// Returns what is wrong with a string value, or "" when it is fine.
using string_check = std::string (*)(std::string_view);

struct key_spec {
  std::string_view name;  // dotted: "server.listen"
  value_kind kind = value_kind::string;
  std::string_view doc;
  string_field str = nullptr;
  int_field num = nullptr;
  bool_field flag = nullptr;
  list_field list = nullptr;
  std::int64_t min = 0;  // integers
  std::int64_t max = 0;
  std::vector<std::string_view> choices;  // strings: the allowed values (empty: any)
  string_check check = nullptr;           // strings, list items: further validation
  std::string_view type_name;             // for --help
};

std::string check_listen(std::string_view listen);

std::string check_dir(std::string_view path) {
  if (path.empty()) return "must not be empty";
  for (char c : path)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "contains a control character";
  return {};
}

key_spec string_key(std::string_view name, string_field field, std::string_view doc,
                    std::vector<std::string_view> choices = {}, string_check check = nullptr,
                    std::string_view type_name = "TEXT") {
  key_spec k;
  k.name = name;
  k.kind = value_kind::string;
  k.doc = doc;
  k.str = field;
  k.choices = std::move(choices);
  k.check = check;
  k.type_name = type_name;
  return k;
}

key_spec int_key(std::string_view name, int_field field, std::string_view doc, std::int64_t min,
                 std::int64_t max) {
  key_spec k;
  k.name = name;
  k.kind = value_kind::integer;
  k.doc = doc;
  k.num = field;
  k.min = min;
  k.max = max;
  k.type_name = "INT";
  return k;
}

key_spec bool_key(std::string_view name, bool_field field, std::string_view doc) {
  key_spec k;
  k.name = name;
  k.kind = value_kind::boolean;
  k.doc = doc;
  k.flag = field;
  k.type_name = "BOOL";
  return k;
}

// A list of strings: an array in TOML; comma-separated in the environment and on the
// command line.
key_spec list_key(std::string_view name, list_field field, std::string_view doc, string_check check,
                  std::string_view type_name) {
  key_spec k;
  k.name = name;
  k.kind = value_kind::list;
  k.doc = doc;
  k.list = field;
  k.check = check;
  k.type_name = type_name;
  return k;
}

// A credential: any text but control characters (a pasted secret with its newline is a
// mistake better caught here than as a refused login).
std::string check_credential(std::string_view text) {
  for (char c : text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "contains a control character";
  return {};
}

std::string check_redis_url(std::string_view url) {
  if (url.empty()) return {};
  cluster::redis_endpoint e;
  return cluster::parse_redis_url(url, e);
}

std::string check_host_port(std::string_view where) {
  cluster::redis_endpoint e;
  auto problem = cluster::parse_redis_url("redis://" + std::string(where), e);
  if (!problem.empty()) return problem;
  if (where.find('@') != std::string_view::npos || where.find('/') != std::string_view::npos ||
      where.empty() || where.back() == ']' || where.find(':') == std::string_view::npos)
    return "expected host:port, got " + in_quotes(where);
  return {};
}

// A node name or key prefix: it goes into Redis keys and channel names.
std::string check_node_id(std::string_view name) {
  if (name.size() > 64) return "must be at most 64 characters";
  for (char c : name)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.')
      return "may hold only letters, digits, '-', '_' and '.'";
  return {};
}

std::string check_listen_or_off(std::string_view listen) {
  return listen.empty() ? std::string() : check_listen(listen);
}

std::string check_filter(std::string_view filter) {
  for (char c : filter)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
      return "'" + std::string(filter) + "' contains a control character";
  if (auto e = core::validate_filter(filter, core::tag_limits{}); e != core::tag_error::none)
    return std::string(core::to_string(e)) + ": '" + std::string(filter) + "'";
  return {};
}

constexpr std::int64_t max_count = 1'000'000;
constexpr std::int64_t max_ms = 86'400'000;  // one day
constexpr std::int64_t max_message_bytes = 64 * 1024 * 1024;

const std::vector<key_spec>& schema() {
  static const std::vector<key_spec> keys = {
      // [server]
      string_key(
          "server.listen", [](config& c) -> std::string& { return c.server.listen; },
          "address and port to listen on: IPv4:port, localhost:port or [IPv6]:port", {},
          check_listen, "HOST:PORT"),
      int_key(
          "server.threads", [](config& c) -> int& { return c.server.threads; },
          "I/O threads; 0 = one per CPU core", 0, 256),
      bool_key(
          "server.allow_anonymous", [](config& c) -> bool& { return c.server.allow_anonymous; },
          "allow running without tokens on a non-loopback address (anyone may connect)"),
      bool_key(
          "server.require_tls", [](config& c) -> bool& { return c.server.require_tls; },
          "refuse to start with a listener on a non-loopback address without TLS"),
      list_key(
          "server.allowed_origins",
          [](config& c) -> std::vector<std::string>& { return c.server.allowed_origins; },
          "web pages (their Origin) that may open a WebSocket: \"self\", \"loopback\", "
          "exact origins, patterns such as https://*.example.com, or \"*\"; empty = self and "
          "loopback (comma-separated outside a file)",
          [](std::string_view e) { return net::origin_policy::check_entry(e); }, "ORIGINS"),
      bool_key(
          "server.diagnostics", [](config& c) -> bool& { return c.server.diagnostics; },
          "enable the /echo WebSocket endpoint"),
      int_key(
          "server.shutdown_timeout_ms",
          [](config& c) -> int& { return c.server.shutdown_timeout_ms; },
          "on SIGTERM/SIGINT, how long connections get to close before they are cut (ms)", 1,
          max_ms),
      // [limits]
      int_key(
          "limits.max_connections", [](config& c) -> int& { return c.limits.max_connections; },
          "connections in all; more are refused with HTTP 503", 1, max_count),
      int_key(
          "limits.max_connections_per_ip",
          [](config& c) -> int& { return c.limits.max_connections_per_ip; },
          "connections from one IP address; more are refused with HTTP 503", 1, max_count),
      int_key(
          "limits.max_auth_failures", [](config& c) -> int& { return c.limits.max_auth_failures; },
          "failed authentications from one IP address within auth_failure_window_s before it "
          "is refused for auth_penalty_s; 0 = no limit",
          0, 1000000),
      int_key(
          "limits.auth_failure_window_s",
          [](config& c) -> int& { return c.limits.auth_failure_window_s; },
          "the window over which failed authentications are counted (seconds)", 1, 86400),
      int_key(
          "limits.auth_penalty_s", [](config& c) -> int& { return c.limits.auth_penalty_s; },
          "how long an address that failed too often is refused (seconds)", 1, 86400),
      int_key(
          "limits.max_auth_rate", [](config& c) -> int& { return c.limits.max_auth_rate; },
          "new authentications taken per second (a reconnect storm): the others are told to "
          "retry later; 0 = no limit",
          0, 1000000),
      int_key(
          "limits.max_pending_auths", [](config& c) -> int& { return c.limits.max_pending_auths; },
          "authentications in progress at once; more are told to retry later; 0 = no limit", 0,
          1000000),
      int_key(
          "limits.max_message_size", [](config& c) -> int& { return c.limits.max_message_size; },
          "largest WebSocket message accepted (bytes, at most 64 MiB)", 1, max_message_bytes),
      int_key(
          "limits.max_subscriptions", [](config& c) -> int& { return c.limits.max_subscriptions; },
          "subscriptions per client", 1, max_count),
      int_key(
          "limits.max_tag_length", [](config& c) -> int& { return c.limits.max_tag_length; },
          "longest tag or filter (bytes)", 1, 65535),
      int_key(
          "limits.max_tag_depth", [](config& c) -> int& { return c.limits.max_tag_depth; },
          "most levels in a tag or filter", 1, 1024),
      int_key(
          "limits.outbound_queue_bytes",
          [](config& c) -> int& { return c.limits.outbound_queue_bytes; },
          "QoS 0 bytes waiting to be written to one connection; past it the oldest waiting are "
          "dropped (counted)",
          1024, 1'000'000'000),
      int_key(
          "limits.outbound_queue", [](config& c) -> int& { return c.limits.outbound_queue; },
          "QoS 0 messages waiting to be written to one connection; past it the oldest waiting "
          "is dropped (counted); 0 = no count bound (outbound_queue_bytes bounds it)",
          0, max_count),
      int_key(
          "limits.slow_consumer_timeout_ms",
          [](config& c) -> int& { return c.limits.slow_consumer_timeout_ms; },
          "a connection whose queue stays full this long is closed with 4008 (ms)", 1, max_ms),
      int_key(
          "limits.max_protocol_errors",
          [](config& c) -> int& { return c.limits.max_protocol_errors; },
          "error frames sent to one connection before it is closed with 4400", 1, max_count),
      int_key(
          "limits.max_batch", [](config& c) -> int& { return c.limits.max_batch; },
          "messages in one batch frame", 1, 100'000),
      int_key(
          "limits.max_retained", [](config& c) -> int& { return c.limits.max_retained; },
          "retained messages (tags) kept in all; a retained publish to a new tag past it gets "
          "limit_exceeded",
          0, 100'000'000),
      int_key(
          "limits.max_inflight", [](config& c) -> int& { return c.limits.max_inflight; },
          "QoS 1 deliveries sent to one client and not yet acknowledged; more wait", 1, 65535),
      int_key(
          "limits.max_queued", [](config& c) -> int& { return c.limits.max_queued; },
          "QoS 1 deliveries waiting for one client's window; past it the oldest is dropped "
          "(counted)",
          0, max_count),
      int_key(
          "limits.max_queued_bytes", [](config& c) -> int& { return c.limits.max_queued_bytes; },
          "payload bytes of QoS 1 deliveries waiting per client; past it the oldest are dropped "
          "(counted); 0 = no limit",
          0, 2'000'000'000),
      int_key(
          "limits.max_queued_age_s", [](config& c) -> int& { return c.limits.max_queued_age_s; },
          "a QoS 1 message waiting for a client longer than this (seconds since it was "
          "published) is not delivered; 0 = no limit",
          0, 365 * 24 * 3600),
      // [delivery]
      int_key(
          "delivery.retry_ms", [](config& c) -> int& { return c.delivery.retry_ms; },
          "a QoS 1 delivery unacknowledged this long is sent again, flagged dup (ms)", 100, max_ms),
      // [mqtt]
      string_key(
          "mqtt.listen", [](config& c) -> std::string& { return c.mqtt.listen; },
          "address and port of the MQTT over TCP listener (\"\" = none); MQTT over "
          "WebSocket shares server.listen",
          {}, check_listen_or_off, "HOST:PORT"),
      string_key(
          "native.untyped_frames",
          [](config& c) -> std::string& { return c.native.untyped_frames; },
          "a native frame without a \"type\": \"error\" (bad_request) or \"reading\" (a device "
          "reading, routed as a device message of type \"data\")",
          {"error", "reading"}),
      int_key(
          "mqtt.max_keepalive", [](config& c) -> int& { return c.mqtt.max_keepalive; },
          "the longest keep alive an MQTT client may ask for (s): a 5.0 client asking more, or "
          "0, is told this one (Server Keep Alive) and held to it; a 3.1.1 client is refused "
          "(CONNACK 2), as Mosquitto does; 0 = no ceiling",
          0, 65535),
      // [history]
      list_key(
          "history.tags", [](config& c) -> std::vector<std::string>& { return c.history.tags; },
          "tag filters whose tags keep a history with offsets, for recovery with since / "
          "since_ms (comma-separated outside a file)",
          check_filter, "FILTERS"),
      int_key(
          "history.max_count", [](config& c) -> int& { return c.history.max_count; },
          "messages kept per history tag", 1, max_count),
      int_key(
          "history.max_age_s", [](config& c) -> int& { return c.history.max_age_s; },
          "history entries older than this are dropped (seconds); 0 = no limit", 0,
          365 * 24 * 3600),
      int_key(
          "history.max_tags", [](config& c) -> int& { return c.history.max_tags; },
          "tags with a history; a message to a new tag past it is not kept", 1, max_count),
      // [heartbeat]
      int_key(
          "heartbeat.ping_interval_ms",
          [](config& c) -> int& { return c.heartbeat.ping_interval_ms; },
          "how often the agent pings each connection (ms, at least 100)", 100, max_ms),
      int_key(
          "heartbeat.idle_timeout_ms",
          [](config& c) -> int& { return c.heartbeat.idle_timeout_ms; },
          "a connection silent this long (not even a pong) is closed (ms)", 1, max_ms),
      int_key(
          "heartbeat.auth_timeout_ms",
          [](config& c) -> int& { return c.heartbeat.auth_timeout_ms; },
          "time a new connection has to upgrade and authenticate; then it is closed with 4401 (ms)",
          1, max_ms),
      // [store]
      string_key(
          "store.kind", [](config& c) -> std::string& { return c.store.kind; },
          "where retained messages and sessions are kept: sqlite (on disk, in data_dir) or "
          "memory (lost at exit)",
          {"sqlite", "memory"}, nullptr, "KIND"),
      string_key(
          "store.data_dir", [](config& c) -> std::string& { return c.store.data_dir; },
          "directory of the sqlite store (created when missing)", {}, check_dir, "PATH"),
      string_key(
          "store.sync", [](config& c) -> std::string& { return c.store.sync; },
          "full: a commit is on disk before it is acknowledged; normal: it survives a crash of "
          "the agent, not a power loss",
          {"full", "normal"}, nullptr, "MODE"),
      // [cluster]
      string_key(
          "cluster.redis", [](config& c) -> std::string& { return c.cluster.redis; },
          "join a cluster through this Redis: redis://[[user]:password@]host[:port][/db] "
          "(\"\" = no cluster)",
          {}, check_redis_url, "URL"),
      list_key(
          "cluster.sentinels",
          [](config& c) -> std::vector<std::string>& { return c.cluster.sentinels; },
          "join through Redis Sentinel: each sentinel's host:port (with cluster.master; instead "
          "of cluster.redis)",
          check_host_port, "HOST:PORT,..."),
      list_key(
          "cluster.redis_cluster",
          [](config& c) -> std::vector<std::string>& { return c.cluster.redis_cluster; },
          "join through a Redis Cluster: host:port of some of its nodes, asked in turn for the "
          "slot map (instead of cluster.redis)",
          check_host_port, "HOST:PORT,..."),
      bool_key(
          "cluster.tls", [](config& c) -> bool& { return c.cluster.tls; },
          "TLS to Redis, the sentinels and a Redis Cluster's nodes (a rediss:// "
          "cluster.redis turns it on)"),
      string_key(
          "cluster.tls_ca_file", [](config& c) -> std::string& { return c.cluster.tls_ca_file; },
          "PEM file of the CAs that Redis's certificate must chain to (\"\" = the system's)", {},
          nullptr, "PATH"),
      string_key(
          "cluster.tls_cert_file",
          [](config& c) -> std::string& { return c.cluster.tls_cert_file; },
          "PEM client certificate (chain) shown to Redis, when it asks (tls-auth-clients)", {},
          nullptr, "PATH"),
      string_key(
          "cluster.tls_key_file", [](config& c) -> std::string& { return c.cluster.tls_key_file; },
          "PEM private key of cluster.tls_cert_file", {}, nullptr, "PATH"),
      string_key(
          "cluster.master", [](config& c) -> std::string& { return c.cluster.master; },
          "the name of the master the sentinels monitor", {}, check_credential, "NAME"),
      string_key(
          "cluster.sentinel_password",
          [](config& c) -> std::string& { return c.cluster.sentinel_password; },
          "the sentinels' own password, when they have one", {}, check_credential, "SECRET"),
      string_key(
          "cluster.node_id", [](config& c) -> std::string& { return c.cluster.node_id; },
          "this node's name in the cluster (\"\" = the one kept in store.data_dir/node_id)", {},
          check_node_id, "NAME"),
      string_key(
          "cluster.username", [](config& c) -> std::string& { return c.cluster.username; },
          "Redis ACL user (over the URL's)", {}, check_credential, "USER"),
      string_key(
          "cluster.password", [](config& c) -> std::string& { return c.cluster.password; },
          "Redis password (over the URL's; best set in the environment)", {}, check_credential,
          "SECRET"),
      string_key(
          "cluster.prefix", [](config& c) -> std::string& { return c.cluster.prefix; },
          "prefix of every Redis key and channel of this cluster", {}, check_node_id, "PREFIX"),
      int_key(
          "cluster.heartbeat_ms", [](config& c) -> int& { return c.cluster.heartbeat_ms; },
          "how often this node refreshes its heartbeat in Redis (ms)", 100, 60000),
      int_key(
          "cluster.node_timeout_ms", [](config& c) -> int& { return c.cluster.node_timeout_ms; },
          "a node whose heartbeat is older than this is gone (ms)", 300, 600000),
      int_key(
          "cluster.reconcile_ms", [](config& c) -> int& { return c.cluster.reconcile_ms; },
          "how often each node's filters are compared with Redis's (ms)", 100, 3600000),
      int_key(
          "cluster.inbound_queue", [](config& c) -> int& { return c.cluster.inbound_queue; },
          "messages from other nodes waiting to be routed here; more are dropped and counted", 16,
          1 << 24),
      int_key(
          "cluster.outbound_queue", [](config& c) -> int& { return c.cluster.outbound_queue; },
          "messages waiting to be sent to other nodes; more are dropped and counted", 16, 1 << 24),
      int_key(
          "cluster.inbox_max", [](config& c) -> int& { return c.cluster.inbox_max; },
          "QoS 1/2 messages each node's inbox stream keeps at most (the oldest go first)", 100,
          1 << 30),
      int_key(
          "cluster.wait_replicas", [](config& c) -> int& { return c.cluster.wait_replicas; },
          "a QoS 1/2 publish across nodes is acknowledged once this many Redis replicas have it", 0,
          16),
      int_key(
          "cluster.publish_timeout_ms",
          [](config& c) -> int& { return c.cluster.publish_timeout_ms; },
          "how long a QoS 1/2 publish across nodes waits for Redis before it is refused (ms)", 100,
          600000),
      // [log]
      string_key(
          "log.level", [](config& c) -> std::string& { return c.log.level; },
          "least severe level logged: trace, debug, info, warn, error or off",
          {"trace", "debug", "info", "warn", "error", "off"}, nullptr, "LEVEL"),
      string_key(
          "log.format", [](config& c) -> std::string& { return c.log.format; },
          "log line format: text or json", {"text", "json"}, nullptr, "FORMAT"),
      string_key(
          "log.file", [](config& c) -> std::string& { return c.log.file; },
          "log to this file instead of stderr (\"\" = stderr)", {}, nullptr, "PATH"),
      string_key(
          "log.audit_file", [](config& c) -> std::string& { return c.log.audit_file; },
          "write audit events (JSON lines) to this file (\"\" = the main log)", {}, nullptr,
          "PATH"),
      // [auth] (tokens and roles are tables, read by the auth loader below)
      string_key(
          "auth.tokens_file", [](config& c) -> std::string& { return c.auth.tokens_file; },
          "TOML file with [[tokens]] and [roles.*]; re-read on SIGHUP", {}, nullptr, "PATH"),
      string_key(
          "auth.anonymous_role", [](config& c) -> std::string& { return c.auth.anonymous_role; },
          "the role of clients that present no token: their rights in open mode (instead of "
          "everything), and, with tokens configured, lets them in with those rights ("
          " = "
          "none)",
          {}, nullptr, "ROLE"),
      int_key(
          "auth.refresh_notice_s", [](config& c) -> int& { return c.auth.refresh_notice_s; },
          "a native client whose token expires is sent token_expiring this long before "
          "(seconds; at most half the token's life)",
          0, 7 * 86400),
      int_key(
          "auth.expiry_grace_s", [](config& c) -> int& { return c.auth.expiry_grace_s; },
          "a connection whose token expired is closed this long after its expiry, unless it "
          "refreshed its token (seconds)",
          0, 86400),
  };
  return keys;
}

const key_spec* find_key(std::string_view name) {
  for (const auto& k : schema())
    if (k.name == name) return &k;
  return nullptr;
}

std::string env_name(std::string_view key) {
  std::string out = "WSAGENT_";
  for (char ch : key)
    out.push_back(ch == '.' ? '_'
                            : static_cast<char>(std::toupper(static_cast<unsigned char>(ch))));
  return out;
}

// Sections that hold scalar keys, in schema order ("server", "limits", ...).
std::vector<std::string> sections() {
  std::vector<std::string> out;
  for (const auto& k : schema()) {
    std::string s(k.name.substr(0, k.name.find('.')));
    if (std::find(out.begin(), out.end(), s) == out.end()) out.push_back(s);
  }
  return out;
}

std::string default_text(const key_spec& k) {
  config defaults;
  switch (k.kind) {
    case value_kind::string:
      return "\"" + k.str(defaults) + "\"";
    case value_kind::integer:
      return std::to_string(k.num(defaults));
    case value_kind::boolean:
      return k.flag(defaults) ? "true" : "false";
    case value_kind::list: {
      std::string out = "[";
      for (const auto& item : k.list(defaults))
        out += (out.size() > 1 ? ", \"" : "\"") + item + "\"";
      return out + "]";
    }
  }
  return {};
}

// --- values ---

using scalar = std::variant<std::string, std::int64_t, bool, std::vector<std::string>>;

std::string join(const std::vector<std::string_view>& items) {
  std::string out;
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) out += i + 1 == items.size() ? " or " : ", ";
    out += items[i];
  }
  return out;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& ch : out)
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

bool all_digits(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char ch) { return ch >= '0' && ch <= '9'; });
}

std::string check_listen(std::string_view listen) {
  const std::string expected =
      "expected host:port with an IPv4 address, localhost or [IPv6] as host, got " +
      in_quotes(listen);
  auto colon = listen.rfind(':');
  if (colon == std::string_view::npos) return expected;
  std::string_view host = listen.substr(0, colon);
  std::string_view port = listen.substr(colon + 1);
  if (!all_digits(port) || port.size() > 5) return expected;
  int port_number = 0;
  std::from_chars(port.data(), port.data() + port.size(), port_number);
  if (port_number > 65535) return "port must be between 0 and 65535, got " + in_quotes(listen);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    std::string v6(host.substr(1, host.size() - 2));
    in6_addr a6{};
    if (inet_pton(AF_INET6, v6.c_str(), &a6) != 1) return in_quotes(v6) + " is not an IPv6 address";
    return {};
  }
  if (host.find(':') != std::string_view::npos)
    return "an IPv6 address must be in brackets, e.g. [::1]:8080, got " + in_quotes(listen);
  if (host == "localhost") return {};
  std::string v4(host);
  in_addr a4{};
  if (inet_pton(AF_INET, v4.c_str(), &a4) != 1) return expected;
  return {};
}

// Parses the text of an environment variable or a flag.
bool parse_text(const key_spec& k, std::string_view text, scalar& out, std::string& problem) {
  switch (k.kind) {
    case value_kind::string:
      out = std::string(text);
      return true;
    case value_kind::integer: {
      std::string_view digits = text;
      if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
      std::int64_t n = 0;
      auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
      bool whole = !digits.empty() && end == digits.data() + digits.size();
      if (!whole || (ec != std::errc() && ec != std::errc::result_out_of_range)) {
        problem = "expected an integer, got " + in_quotes(text);
        return false;
      }
      if (ec == std::errc::result_out_of_range) {
        problem = "must be between " + std::to_string(k.min) + " and " + std::to_string(k.max) +
                  ", got " + std::string(text);
        return false;
      }
      out = n;
      return true;
    }
    case value_kind::boolean: {
      auto t = lower(text);
      if (t == "true" || t == "1" || t == "yes" || t == "on") {
        out = true;
        return true;
      }
      if (t == "false" || t == "0" || t == "no" || t == "off") {
        out = false;
        return true;
      }
      problem = "expected true/false (or 1/0, yes/no, on/off), got " + in_quotes(text);
      return false;
    }
    case value_kind::list: {
      std::vector<std::string> items;
      common::for_each_list_item(text, ',',
                                 [&](std::string_view item) { items.emplace_back(item); });
      out = std::move(items);
      return true;
    }
  }
  return false;
}

bool parse_node(const key_spec& k, const toml::node& n, scalar& out, std::string& problem) {
  switch (k.kind) {
    case value_kind::string:
      if (auto* s = n.as_string()) {
        out = s->get();
        return true;
      }
      problem = "expected a string, got " + type_of(n);
      return false;
    case value_kind::integer:
      if (auto* i = n.as_integer()) {
        out = i->get();
        return true;
      }
      problem = "expected an integer, got " + type_of(n);
      return false;
    case value_kind::boolean:
      if (auto* b = n.as_boolean()) {
        out = b->get();
        return true;
      }
      problem = "expected true or false, got " + type_of(n);
      return false;
    case value_kind::list: {
      std::vector<std::string> items;
      auto* array = n.as_array();
      if (!array) {
        problem = "expected an array of strings, got " + type_of(n);
        return false;
      }
      for (const auto& element : *array) {
        auto* item = element.as_string();
        if (!item) {
          problem = "expected an array of strings, got " + type_of(element) + " in it";
          return false;
        }
        items.push_back(item->get());
      }
      out = std::move(items);
      return true;
    }
  }
  return false;
}

// Validates `v` against the key's rules and stores it; returns the problem or "".
std::string store(const key_spec& k, const scalar& v, config& c) {
  switch (k.kind) {
    case value_kind::string: {
      const auto& s = std::get<std::string>(v);
      if (!k.choices.empty() && std::find(k.choices.begin(), k.choices.end(), s) == k.choices.end())
        return "must be one of " + join(k.choices) + ", got " + in_quotes(s);
      if (k.check)
        if (auto problem = k.check(s); !problem.empty()) return problem;
      k.str(c) = s;
      return {};
    }
    case value_kind::integer: {
      auto n = std::get<std::int64_t>(v);
      if (n < k.min) return "must be >= " + std::to_string(k.min) + ", got " + std::to_string(n);
      if (n > k.max) return "must be <= " + std::to_string(k.max) + ", got " + std::to_string(n);
      k.num(c) = static_cast<int>(n);
      return {};
    }
    case value_kind::boolean:
      k.flag(c) = std::get<bool>(v);
      return {};
    case value_kind::list: {
      const auto& items = std::get<std::vector<std::string>>(v);
      for (const auto& item : items)
        if (auto problem = k.check(item); !problem.empty()) return problem;
      k.list(c) = items;
      return {};
    }
  }
  return {};
}

// --- suggestions for misspelt names ---

// --- the loader ---

struct origin {
  std::string source;
  int line = 0;
};

// toml++ keeps a table's keys in alphabetical order; errors found while walking one file
// are put back in the order of their lines when this goes out of scope.
class sorted_by_line {
 public:
  explicit sorted_by_line(std::vector<config_error>& errors)
      : errors_(errors), first_(errors.size()) {}
  ~sorted_by_line() {
    std::stable_sort(errors_.begin() + static_cast<std::ptrdiff_t>(first_), errors_.end(),
                     [](const config_error& a, const config_error& b) { return a.line < b.line; });
  }
  sorted_by_line(const sorted_by_line&) = delete;
  sorted_by_line& operator=(const sorted_by_line&) = delete;

 private:
  std::vector<config_error>& errors_;
  std::size_t first_;
};

class loader {
 public:
  explicit loader(config start) : cfg_(std::move(start)) {}

  config& value() { return cfg_; }
  std::vector<config_error>& errors() { return errors_; }

  void error(const std::string& source, int line, std::string key, std::string message) {
    errors_.push_back(config_error{source, line, std::move(key), std::move(message)});
  }

  // The main file. With auth_only, only [auth] is applied (and only it is checked).
  void load_file(const std::string& path, bool auth_only) {
    toml::table root;
    if (!read_toml(path, root)) return;
    sorted_by_line sorted(errors_);
    auto known = sections();
    for (auto&& [k, node] : root) {
      std::string section(k.str());
      bool is_known = std::find(known.begin(), known.end(), section) != known.end();
      if (auth_only && section != "auth") continue;
      if (section == "listeners") {
        load_listeners(node, path, line_of(k, node));
        continue;
      }
      if (!is_known) {
        if (node.is_table())
          error(path, line_of(k, node), section, "unknown section" + did_you_mean(section, known));
        else
          error(path, line_of(k, node), section,
                "unknown key: keys belong in a section such as [server]");
        continue;
      }
      auto* table = node.as_table();
      if (!table) {
        error(path, line_of(k, node), section,
              "expected a table ([" + section + "]), got " + type_of(node));
        continue;
      }
      for (auto&& [k2, node2] : *table) {
        std::string name = section + "." + std::string(k2.str());
        int line = line_of(k2, node2);
        if (const auto* spec = find_key(name)) {
          set_from_node(*spec, node2, path, line);
        } else if (name == "auth.tokens") {
          tokens_.read_tokens(node2, path, line, "auth.tokens");
        } else if (name == "auth.roles") {
          tokens_.read_roles(node2, path, line, "auth.roles");
        } else if (name == "auth.jwt") {
          cfg_.auth.jwt = auth::read_jwt_config(node2, path, line, errors_);
        } else if (name == "auth.certificates") {
          cfg_.auth.certificates = auth::read_certificate_settings(node2, path, line, errors_);
        } else {
          std::vector<std::string> candidates;
          for (const auto& spec2 : schema())
            if (spec2.name.substr(0, section.size() + 1) == section + ".")
              candidates.emplace_back(spec2.name.substr(section.size() + 1));
          if (section == "auth") candidates.insert(candidates.end(), {"tokens", "roles", "jwt"});
          error(path, line, name, "unknown key" + did_you_mean(k2.str(), candidates));
        }
      }
    }
  }

  void load_environment(const char* const* envp) {
    if (!envp) return;
    for (; *envp; ++envp) {
      std::string_view entry(*envp);
      if (entry.substr(0, 8) != "WSAGENT_") continue;
      auto eq = entry.find('=');
      if (eq == std::string_view::npos) continue;
      std::string_view var = entry.substr(0, eq);
      std::string_view text = entry.substr(eq + 1);
      if (var == "WSAGENT_CONFIG" || var == "WSAGENT_BIN") continue;
      bool key_like = var.size() > 8 && std::all_of(var.begin() + 8, var.end(), [](char ch) {
                        return (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
                      });
      if (!key_like) continue;
      const key_spec* spec = nullptr;
      for (const auto& k : schema())
        if (env_name(k.name) == var) spec = &k;
      if (!spec) {
        std::vector<std::string> candidates;
        for (const auto& k : schema())
          candidates.push_back(env_name(k.name));
        error("environment", 0, std::string(var),
              "unknown configuration variable" + did_you_mean(var, candidates));
        continue;
      }
      set_from_text(*spec, text, "environment", std::string(var) + "=" + std::string(text));
    }
  }

  void load_overrides(const config_overrides& overrides) {
    for (const auto& [name, text] : overrides) {
      const auto* spec = find_key(name);
      if (!spec) {
        error("command line", 0, name, "unknown configuration key");
        continue;
      }
      set_from_text(*spec, text, "command line", "--" + name + "=" + text);
    }
  }

  // Sets auth.tokens_file to `path` (already resolved) without re-checking it.
  void use_tokens_file(const std::string& path) {
    if (cfg_.auth.tokens_file != path) origins_.erase("auth.tokens_file");
    cfg_.auth.tokens_file = path;
  }

  // The tokens file named by auth.tokens_file (already resolved), if any.
  void load_tokens_file() {
    const auto& path = cfg_.auth.tokens_file;
    if (path.empty()) return;
    toml::table root;
    auto where = origins_.find("auth.tokens_file");
    origin named_at = where != origins_.end() ? where->second : origin{};
    if (!read_toml(path, root, &named_at)) return;
    sorted_by_line sorted(errors_);
    tokens_.read_file(root, path);
  }

  // Checks that hold across files, then puts the tokens in place.
  void finish_auth() {
    auto where = origins_.find("auth.anonymous_role");
    const origin at = where != origins_.end() ? where->second : origin{};
    auto set = tokens_.finish(cfg_.auth.anonymous_role, at.source, at.line);
    cfg_.auth.tokens = std::move(set.tokens);
    cfg_.auth.roles = std::move(set.roles);
  }

  void load_listeners(const toml::node& node, const std::string& path, int line) {
    auto* array = node.as_array();
    if (!array || !array->is_array_of_tables()) {
      error(path, line, "listeners",
            "expected an array of tables ([[listeners]]), got " + type_of(node));
      return;
    }
    for (auto& item : *array) {
      auto& table = *item.as_table();
      listener_config lc;
      lc.source = path;
      lc.line = line_of(item) > 0 ? line_of(item) : line;
      bool have_bind = false;
      for (auto&& [k, v] : table) {
        std::string field(k.str());
        const int at = line_of(k, v);
        const std::string key = "listeners." + field;
        if (field == "bind") {
          if (auto* s = v.as_string()) {
            lc.bind = s->get();
            have_bind = true;
            if (auto bad = check_listen(lc.bind); !bad.empty()) error(path, at, key, bad);
          } else {
            error(path, at, key, "expected a string, got " + type_of(v));
          }
        } else if (field == "protocols") {
          string_array(v, path, at, key, lc.protocols);
        } else if (field == "tls") {
          lc.tls = load_tls(v, path, at);
        } else {
          error(path, at, key, "unknown key" + did_you_mean(field, {"bind", "protocols", "tls"}));
        }
      }
      if (!have_bind) error(path, lc.line, "listeners.bind", "a listener needs a bind address");
      check_protocols(lc);
      cfg_.listeners.push_back(std::move(lc));
    }
  }

  // A listener's tls table (docs/configuration.md, "TLS"). File paths are taken relative to
  // the directory of the file that names them.
  std::optional<net::tls_config> load_tls(const toml::node& node, const std::string& path,
                                          int line) {
    auto* table = node.as_table();
    if (!table) {
      error(path, line, "listeners.tls", "expected a table, got " + type_of(node));
      return std::nullopt;
    }
    net::tls_config t;
    auto file = [&](const std::string& v) { return common::path_beside(path, v); };
    static const std::vector<std::string> keys{"cert",
                                               "key",
                                               "client_ca",
                                               "crl",
                                               "client_certs",
                                               "min_version",
                                               "ciphers",
                                               "ciphersuites",
                                               "alpn",
                                               "ocsp_response",
                                               "handshake_timeout_ms",
                                               "session_tickets"};
    for (auto&& entry : *table) {
      // Named, not bound: clang 14 cannot capture structured bindings in the lambdas below.
      const auto& k = entry.first;
      auto& v = entry.second;
      const std::string field(k.str());
      const int at = line_of(k, v) > 0 ? line_of(k, v) : line;
      const std::string key = "listeners.tls." + field;
      auto text = [&](std::string& out, const std::vector<std::string>& allowed = {}) {
        auto* s = v.as_string();
        if (!s) return error(path, at, key, "expected a string, got " + type_of(v));
        if (!allowed.empty() &&
            std::find(allowed.begin(), allowed.end(), s->get()) == allowed.end()) {
          std::string list;
          for (const auto& a : allowed)
            list += (list.empty() ? "" : ", ") + a;
          return error(path, at, key, in_quotes(s->get()) + " is not one of " + list);
        }
        out = s->get();
      };
      if (field == "cert" || field == "key" || field == "client_ca" || field == "crl" ||
          field == "ocsp_response") {
        std::string v2;
        text(v2);
        v2 = file(v2);
        if (field == "cert") t.cert = v2;
        if (field == "key") t.key = v2;
        if (field == "client_ca") t.client_ca = v2;
        if (field == "crl") t.crl = v2;
        if (field == "ocsp_response") t.ocsp_response = v2;
      } else if (field == "client_certs") {
        std::string mode = "none";
        text(mode, {"none", "optional", "required"});
        t.client_certificates = mode == "required"   ? net::client_certs::required
                                : mode == "optional" ? net::client_certs::optional
                                                     : net::client_certs::none;
      } else if (field == "min_version") {
        text(t.min_version, {"1.2", "1.3"});
      } else if (field == "ciphers") {
        text(t.ciphers);
      } else if (field == "ciphersuites") {
        text(t.ciphersuites);
      } else if (field == "alpn") {
        string_array(v, path, at, key, t.alpn);
      } else if (field == "handshake_timeout_ms") {
        auto* i = v.as_integer();
        if (!i || i->get() < 100 || i->get() > 600000)
          error(path, at, key, "expected an integer from 100 to 600000 (ms)");
        else
          t.handshake_timeout_ms = static_cast<int>(i->get());
      } else if (field == "session_tickets") {
        auto* b = v.as_boolean();
        if (!b)
          error(path, at, key, "expected true or false, got " + type_of(v));
        else
          t.session_tickets = b->get();
      } else {
        error(path, at, key, "unknown key" + did_you_mean(field, keys));
      }
    }
    if (t.cert.empty()) error(path, line, "listeners.tls.cert", "a TLS listener needs a cert");
    if (t.key.empty()) error(path, line, "listeners.tls.key", "a TLS listener needs a key");
    if (t.client_certificates != net::client_certs::none && t.client_ca.empty())
      error(path, line, "listeners.tls.client_ca",
            "client_certs = optional or required needs a client_ca to verify them against");
    return t;
  }

  void check_protocols(const listener_config& lc) {
    static const std::vector<std::string> known{"ws", "mqtt-ws", "echo", "http", "mqtt"};
    if (lc.protocols.empty())
      error(lc.source, lc.line, "listeners.protocols",
            "a listener needs protocols: ws, mqtt-ws, echo, http or mqtt");
    for (const auto& p : lc.protocols)
      if (std::find(known.begin(), known.end(), p) == known.end())
        error(lc.source, lc.line, "listeners.protocols",
              "unknown protocol " + in_quotes(p) + did_you_mean(p, known));
    const bool raw =
        std::find(lc.protocols.begin(), lc.protocols.end(), "mqtt") != lc.protocols.end();
    if (raw && lc.protocols.size() > 1)
      error(lc.source, lc.line, "listeners.protocols",
            "\"mqtt\" is MQTT over raw TCP and cannot share a listener with HTTP protocols "
            "(MQTT over WebSocket is \"mqtt-ws\")");
  }

  // The shorthands (server.listen, mqtt.listen) come first, then the file's [[listeners]];
  // with any of those, a shorthand counts only when set explicitly (its default is not asked
  // for). Two listeners on one address are an error.
  // The cluster's keys that go together: one way to Redis, and Sentinel's master name.
  void finish_cluster() {
    const auto& c = cfg_.cluster;
    const int ways = !c.redis.empty() + !c.sentinels.empty() + !c.redis_cluster.empty();
    if (ways > 1)
      error("configuration", 0,
            c.redis_cluster.empty() ? "cluster.sentinels" : "cluster.redis_cluster",
            "give one of cluster.redis, cluster.sentinels and cluster.redis_cluster");
    // The TLS files are read at start-up: one that cannot be is reported here, at its line.
    auto readable = [this](const char* key, const std::string& path) {
      if (path.empty()) return true;
      std::ifstream in(path);
      if (in) return true;
      const auto at = origins_.find(key);
      error(at == origins_.end() ? "configuration" : at->second.source,
            at == origins_.end() ? 0 : at->second.line, key,
            in_quotes(path) + ": " + std::strerror(errno));
      return false;
    };
    const bool files = readable("cluster.tls_ca_file", c.tls_ca_file) &
                       readable("cluster.tls_cert_file", c.tls_cert_file) &
                       readable("cluster.tls_key_file", c.tls_key_file);
    if (files && c.tls_cert_file.empty() != c.tls_key_file.empty())
      error("configuration", 0,
            c.tls_cert_file.empty() ? "cluster.tls_cert_file" : "cluster.tls_key_file",
            "cluster.tls_cert_file and cluster.tls_key_file go together");
    if (!c.sentinels.empty() && c.master.empty())
      error("configuration", 0, "cluster.master",
            "cluster.sentinels needs the master's name (cluster.master)");
    if (c.enabled() && c.node_timeout_ms < 2 * c.heartbeat_ms)
      error("configuration", 0, "cluster.node_timeout_ms",
            "must be at least twice cluster.heartbeat_ms (" + std::to_string(c.heartbeat_ms) +
                "), or a live node is declared gone between two heartbeats");
  }

  void resolve_listeners() {
    const bool listed = !cfg_.listeners.empty();
    std::vector<listener_config> all;
    auto shorthand = [&](const std::string& key, const std::string& bind,
                         std::vector<std::string> protocols) {
      if (bind.empty()) return;
      auto where = origins_.find(key);
      if (listed && where == origins_.end()) return;
      listener_config lc;
      lc.bind = bind;
      lc.protocols = std::move(protocols);
      if (where != origins_.end()) {
        lc.source = where->second.source;
        lc.line = where->second.line;
      } else {
        lc.source = "defaults";
      }
      all.push_back(std::move(lc));
    };
    std::vector<std::string> web{"ws", "mqtt-ws", "http"};
    if (cfg_.server.diagnostics) web.push_back("echo");
    shorthand("server.listen", cfg_.server.listen, web);
    shorthand("mqtt.listen", cfg_.mqtt.listen, {"mqtt"});
    all.insert(all.end(), std::make_move_iterator(cfg_.listeners.begin()),
               std::make_move_iterator(cfg_.listeners.end()));
    cfg_.listeners = std::move(all);
    for (std::size_t i = 0; i < cfg_.listeners.size(); ++i)
      for (std::size_t j = 0; j < i; ++j)
        if (cfg_.listeners[i].bind == cfg_.listeners[j].bind &&
            !cfg_.listeners[i].bind.ends_with(":0"))  // port 0: each gets a free port
          error(cfg_.listeners[i].source, cfg_.listeners[i].line, "listeners.bind",
                in_quotes(cfg_.listeners[i].bind) + " is listened on twice (also by " +
                    cfg_.listeners[j].source +
                    (cfg_.listeners[j].line ? ":" + std::to_string(cfg_.listeners[j].line) : "") +
                    ")");
  }

 private:
  bool read_toml(const std::string& path, toml::table& out, const origin* named_at = nullptr) {
    std::error_code ec;
    auto report = [&](const std::string& what) {
      if (named_at && !named_at->source.empty())
        error(named_at->source, named_at->line, "auth.tokens_file", in_quotes(path) + ": " + what);
      else
        error(path, 0, "", what);
    };
    if (std::filesystem::is_directory(path, ec)) {
      report("is a directory, not a file");
      return false;
    }
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      report(std::string("cannot read the file: ") + std::strerror(errno));
      return false;
    }
    std::ostringstream text;
    text << in.rdbuf();
    if (in.bad()) {
      report("cannot read the file");
      return false;
    }
    try {
      out = toml::parse(std::string_view(text.str()), std::string_view(path));
    } catch (const toml::parse_error& e) {
      error(path, static_cast<int>(e.source().begin.line), "",
            "TOML syntax error: " + std::string(e.description()));
      return false;
    }
    return true;
  }

  void set_from_node(const key_spec& spec, const toml::node& node, const std::string& path,
                     int line) {
    scalar v;
    std::string problem;
    if (!parse_node(spec, node, v, problem)) {
      error(path, line, std::string(spec.name), problem);
      return;
    }
    // A file named in the config file (the tokens file, the cluster's TLS files) is relative
    // to that file's directory.
    if (spec.name == "auth.tokens_file" || spec.name == "cluster.tls_ca_file" ||
        spec.name == "cluster.tls_cert_file" || spec.name == "cluster.tls_key_file") {
      auto& s = std::get<std::string>(v);
      s = common::path_beside(path, s);
    }
    if (auto bad = store(spec, v, cfg_); !bad.empty()) {
      error(path, line, std::string(spec.name), bad);
      return;
    }
    origins_[std::string(spec.name)] = origin{path, line};
  }

  void set_from_text(const key_spec& spec, std::string_view text, const std::string& source,
                     const std::string& given) {
    scalar v;
    std::string problem;
    if (!parse_text(spec, text, v, problem) || !(problem = store(spec, v, cfg_)).empty()) {
      error(source, 0, std::string(spec.name), given + ": " + problem);
      return;
    }
    origins_[std::string(spec.name)] = origin{source, 0};
  }

  bool string_array(const toml::node& node, const std::string& path, int line,
                    const std::string& key, std::vector<std::string>& out) {
    return common::read_string_array(node, path, line, key, out, errors_);
  }

  config cfg_;
  std::vector<config_error> errors_;
  auth::token_file_reader tokens_{errors_};
  std::map<std::string, origin> origins_;  // scalar key -> where it was last set
};

}  // namespace

void add_config_flags(CLI::App& app, config_overrides& out) {
  for (const auto& spec : schema()) {
    std::string name(spec.name);
    bool is_bool = spec.kind == value_kind::boolean;
    std::string help = std::string(spec.doc) + " [default: " + default_text(spec) +
                       ", env: " + env_name(spec.name) + "]";
    auto* option = app.add_option_function<std::string>(
        "--" + name,
        [&out, name, is_bool](const std::string& text) {
          // A bare boolean flag (`--server.diagnostics`) means true.
          out[name] = is_bool && text.empty() ? "true" : text;
        },
        help);
    option->group("Configuration");
    option->type_name(std::string(spec.type_name));
    option->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
    if (is_bool) option->expected(0, 1);
  }
}

config_result load_config(const std::string& path, const char* const* envp,
                          const config_overrides& overrides) {
  config_result result;
  try {
    loader l{config{}};
    if (!path.empty()) l.load_file(path, false);
    l.load_environment(envp);
    l.load_overrides(overrides);
    l.load_tokens_file();
    l.finish_auth();
    l.resolve_listeners();
    l.finish_cluster();
    result.value = std::move(l.value());
    result.errors = std::move(l.errors());
    // Files first, then the environment, then the command line.
    auto rank = [](const config_error& e) {
      return e.source == "command line" ? 2 : e.source == "environment" ? 1 : 0;
    };
    std::stable_sort(
        result.errors.begin(), result.errors.end(),
        [&](const config_error& a, const config_error& b) { return rank(a) < rank(b); });
  } catch (const std::exception& e) {
    result.errors.push_back(config_error{path.empty() ? "configuration" : path, 0, "", e.what()});
  }
  return result;
}

config_result reload_auth(const std::string& path, const config& current) {
  config_result result;
  result.value = current;
  try {
    // Start from the current configuration without its tokens and roles. The tokens file
    // stays the one in effect (it may have come from the environment or a flag).
    config start = current;
    start.auth.tokens.clear();
    start.auth.roles.clear();
    start.auth.jwt.reset();
    start.auth.certificates.reset();
    loader l{start};
    if (!path.empty()) l.load_file(path, true);
    l.use_tokens_file(current.auth.tokens_file);
    l.load_tokens_file();
    l.finish_auth();
    result.value.auth = std::move(l.value().auth);
    result.errors = std::move(l.errors());
  } catch (const std::exception& e) {
    result.errors.push_back(config_error{path.empty() ? "configuration" : path, 0, "", e.what()});
  }
  return result;
}

}  // namespace wsagent::app
