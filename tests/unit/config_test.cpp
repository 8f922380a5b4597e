#include "app/config.hpp"

#include <gtest/gtest.h>

#include <stdlib.h>
#include <algorithm>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>

#ifndef WSAGENT_SOURCE_DIR
#error "WSAGENT_SOURCE_DIR (the source tree's root, quoted) must be defined for this test"
#endif

namespace wsagent::app {
namespace {

namespace fs = std::filesystem;

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string all_errors(const config_result& r) {
  std::string out;
  for (const auto& e : r.errors)
    out += e.to_string() + "\n";
  return out;
}

// The error about `key`, or null.
const config_error* find_error(const config_result& r, const std::string& key) {
  for (const auto& e : r.errors)
    if (e.key == key) return &e;
  return nullptr;
}

// Every key that has a flag, from add_config_flags(): "server.listen", ...
std::vector<std::string> flag_keys() {
  CLI::App app;
  config_overrides ov;
  add_config_flags(app, ov);
  std::vector<std::string> keys;
  for (const auto* o : app.get_options()) {
    if (o->get_group() != "Configuration") continue;
    auto names = o->get_lnames();
    EXPECT_EQ(names.size(), 1u);
    keys.push_back(names.at(0));
  }
  return keys;
}

std::string env_name(const std::string& key) {
  std::string out = "WSAGENT_";
  for (char ch : key)
    out.push_back(ch == '.' ? '_' : static_cast<char>(std::toupper(ch)));
  return out;
}

class Config : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/wsagent_config_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // Writes `text` to `name` under the temporary directory; returns the path.
  std::string write(const std::string& name, const std::string& text) {
    fs::path p = fs::path(dir_) / name;
    fs::create_directories(p.parent_path());
    std::ofstream(p) << text;
    return p.string();
  }

  config_result load_text(const std::string& text, const char* const* envp = nullptr,
                          const config_overrides& ov = {}) {
    return load_config(write("wsagent.toml", text), envp, ov);
  }

  std::string dir_;
};

const std::string digest_a(64, 'a');
const std::string digest_b = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

TEST_F(Config, DefaultsWithNoFile) {
  auto r = load_config("", nullptr, {});
  ASSERT_TRUE(r.ok()) << all_errors(r);
  const config defaults;
  EXPECT_EQ(r.value.server.listen, "127.0.0.1:8080");
  EXPECT_EQ(r.value.server.threads, 0);
  EXPECT_FALSE(r.value.server.allow_anonymous);
  EXPECT_EQ(r.value.limits.max_connections, defaults.limits.max_connections);
  EXPECT_EQ(r.value.limits.max_message_size, 1024 * 1024);
  EXPECT_EQ(r.value.heartbeat.ping_interval_ms, 20000);
  EXPECT_EQ(r.value.log.level, "info");
  EXPECT_EQ(r.value.log.format, "text");
  EXPECT_TRUE(r.value.auth.tokens.empty());
  EXPECT_TRUE(r.value.auth.roles.empty());
  EXPECT_TRUE(r.value.auth.tokens_file.empty());
}

TEST_F(Config, EmptyFileGivesDefaults) {
  auto r = load_text("# nothing\n");
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_EQ(r.value.server.listen, "127.0.0.1:8080");
}

TEST_F(Config, FullFile) {
  auto r = load_text(R"(
[server]
listen = "[::1]:9000"
threads = 4
allow_anonymous = true
diagnostics = true
shutdown_timeout_ms = 1500

[limits]
max_connections = 10
max_connections_per_ip = 5
max_message_size = 65536
max_subscriptions = 7
max_tag_length = 64
max_tag_depth = 8
outbound_queue = 32
slow_consumer_timeout_ms = 700
max_protocol_errors = 3
max_batch = 50

[heartbeat]
ping_interval_ms = 100
idle_timeout_ms = 900
auth_timeout_ms = 800

[log]
level = "debug"
format = "json"
file = "/var/log/wsagent.log"
audit_file = "/var/log/wsagent-audit.jsonl"

[[auth.tokens]]
token = "device-secret"
identity = "sensor-001"
roles = ["device"]

[[auth.tokens]]
token_sha256 = ")" + digest_b +
                     R"("
user = "ops"
roles = ["dashboard", "device"]

[auth.roles.device]
publish = ["devices/%c/#"]
subscribe = ["devices/%c/control"]

[auth.roles.dashboard]
publish = ["devices/+/control"]
subscribe = ["devices/#", "$sys/#", "users/%u/#"]
)");
  ASSERT_TRUE(r.ok()) << all_errors(r);
  const auto& c = r.value;
  EXPECT_EQ(c.server.listen, "[::1]:9000");
  EXPECT_EQ(c.server.threads, 4);
  EXPECT_TRUE(c.server.allow_anonymous);
  EXPECT_TRUE(c.server.diagnostics);
  EXPECT_EQ(c.server.shutdown_timeout_ms, 1500);
  EXPECT_EQ(c.limits.max_connections, 10);
  EXPECT_EQ(c.limits.max_connections_per_ip, 5);
  EXPECT_EQ(c.limits.max_message_size, 65536);
  EXPECT_EQ(c.limits.max_subscriptions, 7);
  EXPECT_EQ(c.limits.max_tag_length, 64);
  EXPECT_EQ(c.limits.max_tag_depth, 8);
  EXPECT_EQ(c.limits.outbound_queue, 32);
  EXPECT_EQ(c.limits.slow_consumer_timeout_ms, 700);
  EXPECT_EQ(c.limits.max_protocol_errors, 3);
  EXPECT_EQ(c.limits.max_batch, 50);
  EXPECT_EQ(c.heartbeat.ping_interval_ms, 100);
  EXPECT_EQ(c.heartbeat.idle_timeout_ms, 900);
  EXPECT_EQ(c.heartbeat.auth_timeout_ms, 800);
  EXPECT_EQ(c.log.level, "debug");
  EXPECT_EQ(c.log.format, "json");
  EXPECT_EQ(c.log.file, "/var/log/wsagent.log");
  EXPECT_EQ(c.log.audit_file, "/var/log/wsagent-audit.jsonl");

  ASSERT_EQ(c.auth.tokens.size(), 2u);
  EXPECT_EQ(c.auth.tokens[0].token, "device-secret");
  EXPECT_EQ(c.auth.tokens[0].identity, "sensor-001");
  EXPECT_EQ(c.auth.tokens[0].roles, std::vector<std::string>{"device"});
  EXPECT_EQ(c.auth.tokens[0].line, 32);
  EXPECT_EQ(c.auth.tokens[1].token_sha256, digest_b);
  EXPECT_TRUE(c.auth.tokens[1].token.empty());
  EXPECT_EQ(c.auth.tokens[1].user, "ops");
  EXPECT_EQ(c.auth.tokens[1].roles, (std::vector<std::string>{"dashboard", "device"}));
  EXPECT_EQ(c.auth.tokens[1].line, 37);
  ASSERT_EQ(c.auth.roles.size(), 2u);
  EXPECT_EQ(c.auth.roles.at("device").publish, std::vector<std::string>{"devices/%c/#"});
  EXPECT_EQ(c.auth.roles.at("dashboard").subscribe,
            (std::vector<std::string>{"devices/#", "$sys/#", "users/%u/#"}));
}

TEST_F(Config, UnknownKeyNamesFileLineAndKey) {
  auto r = load_text("[server]\nlisten = \"127.0.0.1:8080\"\nthreds = 2\n");
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  const auto& e = r.errors[0];
  EXPECT_EQ(e.source, dir_ + "/wsagent.toml");
  EXPECT_EQ(e.line, 3);
  EXPECT_EQ(e.key, "server.threds");
  EXPECT_EQ(e.to_string().rfind(dir_ + "/wsagent.toml:3: server.threds: unknown key", 0), 0u)
      << e.to_string();
  EXPECT_NE(e.message.find("did you mean 'threads'"), std::string::npos) << e.message;
}

TEST_F(Config, UnknownSectionAndTopLevelKey) {
  auto r = load_text("listen = \"x\"\n\n[limits]\nmax_batch = 5\n[nonsense]\nx = 1\n[limts]\n");
  ASSERT_EQ(r.errors.size(), 3u) << all_errors(r);
  auto* top = find_error(r, "listen");
  ASSERT_TRUE(top);
  EXPECT_EQ(top->line, 1);
  auto* nonsense = find_error(r, "nonsense");
  ASSERT_TRUE(nonsense);
  EXPECT_EQ(nonsense->line, 5);
  EXPECT_NE(nonsense->message.find("unknown section"), std::string::npos);
  auto* typo = find_error(r, "limts");
  ASSERT_TRUE(typo);
  EXPECT_EQ(typo->line, 7);
  EXPECT_NE(typo->message.find("did you mean 'limits'"), std::string::npos) << typo->message;
  EXPECT_EQ(r.value.limits.max_batch, 5);  // the good parts still load
}

TEST_F(Config, SectionThatIsNotATable) {
  auto r = load_text("server = 5\n");
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  EXPECT_EQ(r.errors[0].key, "server");
  EXPECT_EQ(r.errors[0].line, 1);
}

TEST_F(Config, WrongTypes) {
  auto r = load_text(
      "[server]\nthreads = \"four\"\ndiagnostics = 1\nlisten = 8080\n[limits]\n"
      "max_batch = 2.5\n");
  ASSERT_EQ(r.errors.size(), 4u) << all_errors(r);
  auto* threads = find_error(r, "server.threads");
  ASSERT_TRUE(threads);
  EXPECT_EQ(threads->line, 2);
  EXPECT_EQ(threads->message, "expected an integer, got a string");
  EXPECT_EQ(find_error(r, "server.diagnostics")->line, 3);
  EXPECT_EQ(find_error(r, "server.listen")->message, "expected a string, got an integer");
  EXPECT_EQ(find_error(r, "limits.max_batch")->line, 6);
  EXPECT_EQ(r.value.server.threads, 0);  // left at its default
}

TEST_F(Config, OutOfRange) {
  auto r = load_text(
      "[server]\nthreads = 300\n[limits]\nmax_connections = -5\nmax_message_size = 134217728\n"
      "max_tag_depth = 0\n[heartbeat]\nping_interval_ms = 50\nidle_timeout_ms = 0\n");
  ASSERT_EQ(r.errors.size(), 6u) << all_errors(r);
  EXPECT_EQ(find_error(r, "server.threads")->message, "must be <= 256, got 300");
  EXPECT_EQ(find_error(r, "limits.max_connections")->line, 4);
  EXPECT_EQ(find_error(r, "limits.max_connections")->message, "must be >= 1, got -5");
  EXPECT_EQ(find_error(r, "limits.max_message_size")->message,
            "must be <= 67108864, got 134217728");
  EXPECT_EQ(find_error(r, "limits.max_tag_depth")->line, 6);
  EXPECT_EQ(find_error(r, "heartbeat.ping_interval_ms")->message, "must be >= 100, got 50");
  EXPECT_TRUE(find_error(r, "heartbeat.idle_timeout_ms"));
}

TEST_F(Config, ValueTooLargeForAnInt) {
  auto r = load_text("[limits]\nmax_connections = 9999999999999\n");
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  EXPECT_EQ(r.errors[0].key, "limits.max_connections");
  EXPECT_EQ(r.value.limits.max_connections, 10000);
}

TEST_F(Config, ListenAddresses) {
  for (const char* good : {"127.0.0.1:8080", "0.0.0.0:0", "localhost:65535", "[::1]:80", "[::]:1",
                           "[2001:db8::1]:443", "10.1.2.3:00080"}) {
    auto r = load_config("", nullptr, {{"server.listen", good}});
    EXPECT_TRUE(r.ok()) << good << ": " << all_errors(r);
    EXPECT_EQ(r.value.server.listen, good);
  }
  for (const char* bad :
       {"", "localhost", "127.0.0.1", "127.0.0.1:", ":8080", "example.com:80", "1.2.3:80",
        "256.1.1.1:80", "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:+80", "127.0.0.1:80x",
        "::1:8080", "[::1]", "[zz]:80", "[127.0.0.1]:80", "127.0.0.1:999999"}) {
    auto r = load_config("", nullptr, {{"server.listen", bad}});
    ASSERT_EQ(r.errors.size(), 1u) << "'" << bad << "' was accepted";
    EXPECT_EQ(r.errors[0].key, "server.listen");
    EXPECT_EQ(r.errors[0].source, "command line");
    EXPECT_EQ(r.value.server.listen, "127.0.0.1:8080");
  }
  auto r = load_text("[server]\nlisten = \"::1:8080\"\n");
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_NE(r.errors[0].message.find("brackets"), std::string::npos) << r.errors[0].message;
}

TEST_F(Config, LogLevelAndFormat) {
  for (const char* level : {"trace", "debug", "info", "warn", "error", "off"}) {
    auto r = load_text(std::string("[log]\nlevel = \"") + level + "\"\n");
    EXPECT_TRUE(r.ok()) << all_errors(r);
    EXPECT_EQ(r.value.log.level, level);
  }
  auto r = load_text("[log]\nlevel = \"verbose\"\nformat = \"xml\"\n");
  ASSERT_EQ(r.errors.size(), 2u) << all_errors(r);
  EXPECT_EQ(find_error(r, "log.level")->line, 2);
  EXPECT_EQ(find_error(r, "log.level")->message,
            "must be one of trace, debug, info, warn, error or off, got 'verbose'");
  EXPECT_EQ(find_error(r, "log.format")->line, 3);
  EXPECT_EQ(r.value.log.level, "info");
}

TEST_F(Config, SyntaxErrorHasItsLine) {
  auto r = load_text("[server]\nthreads = 2\nlisten = \"127.0.0.1:80\n[limits]\n");
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  EXPECT_EQ(r.errors[0].source, dir_ + "/wsagent.toml");
  EXPECT_EQ(r.errors[0].line, 3);
  EXPECT_TRUE(r.errors[0].key.empty());
  EXPECT_EQ(r.errors[0].message.rfind("TOML syntax error: ", 0), 0u) << r.errors[0].message;
  EXPECT_GT(r.errors[0].message.size(), std::string("TOML syntax error: ").size());
}

TEST_F(Config, MissingFile) {
  auto r = load_config(dir_ + "/absent.toml", nullptr, {});
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].source, dir_ + "/absent.toml");
  EXPECT_EQ(r.errors[0].line, 0);
  EXPECT_NE(r.errors[0].message.find("No such file"), std::string::npos) << r.errors[0].message;
  EXPECT_EQ(load_config(dir_, nullptr, {}).errors.size(), 1u);  // a directory
}

TEST_F(Config, CollectsEveryError) {
  // The scenario of `wsagent serve --check-config` in the integration tests.
  auto r = load_text(
      "[server]\nlisten = \"127.0.0.1:8080\"\nthreds = 2\n\n[limits]\nmax_connections = -5\n"
      "[nonsense]\nx = 1\n");
  ASSERT_EQ(r.errors.size(), 3u) << all_errors(r);
  auto text = all_errors(r);
  auto path = dir_ + "/wsagent.toml";
  EXPECT_NE(text.find(path + ":3: server.threds"), std::string::npos) << text;
  EXPECT_NE(text.find(path + ":6: limits.max_connections"), std::string::npos) << text;
  EXPECT_NE(text.find(path + ":7: nonsense"), std::string::npos) << text;
}

TEST_F(Config, ErrorsComeInOrder) {
  const char* env[] = {"WSAGENT_LOG_LEVEL=loud", nullptr};
  auto r = load_text("[server]\nthreads = -1\n[limits]\nmax_batch = 0\n[auth]\nbogus = 1\n", env,
                     {{"limits.max_batch", "x"}});
  ASSERT_EQ(r.errors.size(), 5u) << all_errors(r);
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_EQ(r.errors[1].line, 4);
  EXPECT_EQ(r.errors[2].line, 6);
  EXPECT_EQ(r.errors[3].source, "environment");
  EXPECT_EQ(r.errors[4].source, "command line");
}

TEST_F(Config, ErrorToString) {
  EXPECT_EQ((config_error{"f.toml", 12, "limits.max_connections", "must be >= 1"}.to_string()),
            "f.toml:12: limits.max_connections: must be >= 1");
  EXPECT_EQ((config_error{"environment", 0, "server.listen", "bad"}.to_string()),
            "environment: server.listen: bad");
  EXPECT_EQ((config_error{"f.toml", 3, "", "TOML syntax error: x"}.to_string()),
            "f.toml:3: TOML syntax error: x");
  EXPECT_EQ((config_error{"f.toml", 0, "", "cannot read"}.to_string()), "f.toml: cannot read");
}

// --- [auth] ---

TEST_F(Config, TokenNamingAMissingRole) {
  auto r = load_text(
      "[[auth.tokens]]\ntoken = \"a\"\nroles = [\"device\"]\n\n[[auth.tokens]]\ntoken = \"b\"\n"
      "roles = [\"nobody\"]\n[auth.roles.device]\npublish = [\"x\"]\n");
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  EXPECT_EQ(r.errors[0].line, 5);
  EXPECT_EQ(r.errors[0].key, "auth.tokens.roles");
  EXPECT_EQ(r.errors[0].message, "no role 'nobody' is defined");
}

TEST_F(Config, DenyPatternsAndTheAnonymousRole) {
  auto r = load_text(
      "[auth]\nanonymous_role = \"guest\"\n[auth.roles.guest]\nsubscribe = [\"#\"]\n"
      "deny_subscribe = [\"secret/#\"]\ndeny_publish = [\"#\"]\n");
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_EQ(r.value.auth.anonymous_role, "guest");
  EXPECT_EQ(r.value.auth.roles.at("guest").deny_subscribe, std::vector<std::string>{"secret/#"});
  EXPECT_EQ(r.value.auth.roles.at("guest").deny_publish, std::vector<std::string>{"#"});
  r = load_text(
      "[auth]\nanonymous_role = \"ghost\"\n[auth.roles.r]\ndeny_subscribe = [\"a/#/b\"]\n");
  auto* ghost = find_error(r, "auth.anonymous_role");
  ASSERT_TRUE(ghost) << all_errors(r);
  EXPECT_EQ(ghost->line, 2);
  EXPECT_EQ(ghost->message, "no role 'ghost' is defined");
  EXPECT_TRUE(find_error(r, "auth.roles.r.deny_subscribe"));  // a bad pattern, named
}

TEST_F(Config, ListenersAndTheirShorthands) {
  // Defaults: the two shorthands' listeners.
  auto r = load_text("");
  ASSERT_TRUE(r.ok()) << all_errors(r);
  ASSERT_EQ(r.value.listeners.size(), 2u);
  EXPECT_EQ(r.value.listeners[0].bind, "127.0.0.1:8080");
  EXPECT_EQ(r.value.listeners[0].protocols, (std::vector<std::string>{"ws", "mqtt-ws", "http"}));
  EXPECT_EQ(r.value.listeners[1].protocols, std::vector<std::string>{"mqtt"});
  // With [[listeners]], a shorthand counts only when given.
  r = load_text(
      "[mqtt]\nlisten = \"127.0.0.1:1884\"\n[[listeners]]\nbind = \"127.0.0.1:9100\"\n"
      "protocols = [\"http\"]\n");
  ASSERT_TRUE(r.ok()) << all_errors(r);
  ASSERT_EQ(r.value.listeners.size(), 2u);
  EXPECT_EQ(r.value.listeners[0].bind, "127.0.0.1:1884");
  EXPECT_EQ(r.value.listeners[1].bind, "127.0.0.1:9100");
  EXPECT_EQ(r.value.listeners[1].line, 3);
  r = load_text("[server]\ndiagnostics = true\n");
  EXPECT_EQ(r.value.listeners[0].protocols.back(), "echo");
}

TEST_F(Config, ListenerErrorsNameTheirLine) {
  auto r = load_text(
      "[[listeners]]\nbind = \"127.0.0.1:9000\"\nprotocols = [\"ws\", \"mqtt\"]\n"
      "[[listeners]]\nbind = \"127.0.0.1:9001\"\nprotocols = [\"wss\"]\n"
      "[[listeners]]\nprotocols = [\"http\"]\n"
      "[[listeners]]\nbind = \"127.0.0.1:9000\"\nprotocols = [\"http\"]\ncolour = 1\n");
  std::vector<std::string> got;
  for (const auto& e : r.errors)
    got.push_back(e.to_string());
  auto has = [&](const std::string& part) {
    return std::any_of(got.begin(), got.end(),
                       [&](const std::string& g) { return g.find(part) != std::string::npos; });
  };
  EXPECT_TRUE(has(":1: listeners.protocols: \"mqtt\" is MQTT over raw TCP")) << all_errors(r);
  EXPECT_TRUE(has(":4: listeners.protocols: unknown protocol 'wss'")) << all_errors(r);
  EXPECT_TRUE(has(":7: listeners.bind: a listener needs a bind address")) << all_errors(r);
  EXPECT_TRUE(has("listeners.colour: unknown key")) << all_errors(r);
  EXPECT_TRUE(has("'127.0.0.1:9000' is listened on twice")) << all_errors(r);
}

TEST_F(Config, TokenWithBothOrNeitherSecret) {
  auto r = load_text("[[auth.tokens]]\ntoken = \"a\"\ntoken_sha256 = \"" + digest_a +
                     "\"\n[[auth.tokens]]\nuser = \"u\"\n");
  ASSERT_EQ(r.errors.size(), 2u) << all_errors(r);
  EXPECT_EQ(r.errors[0].line, 1);
  EXPECT_EQ(r.errors[0].key, "auth.tokens");
  EXPECT_NE(r.errors[0].message.find("not both"), std::string::npos);
  EXPECT_EQ(r.errors[1].line, 4);
  EXPECT_NE(r.errors[1].message.find("needs a token"), std::string::npos);
}

TEST_F(Config, BadSha256) {
  auto r = load_text("[[auth.tokens]]\ntoken_sha256 = \"" + std::string(64, 'A') +
                     "\"\n[[auth.tokens]]\ntoken_sha256 = \"abc\"\n[[auth.tokens]]\n"
                     "token_sha256 = \"" +
                     std::string(63, 'a') + "g\"\n[[auth.tokens]]\ntoken = \"\"\n");
  ASSERT_EQ(r.errors.size(), 4u) << all_errors(r);
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_EQ(r.errors[0].key, "auth.tokens.token_sha256");
  EXPECT_NE(r.errors[0].message.find("64 lowercase hexadecimal"), std::string::npos);
  EXPECT_EQ(r.errors[1].line, 4);
  EXPECT_EQ(r.errors[2].line, 6);
  EXPECT_EQ(r.errors[3].key, "auth.tokens.token");
  EXPECT_TRUE(r.value.auth.tokens.empty());
}

TEST_F(Config, DuplicateTokens) {
  auto r = load_text(
      "[[auth.tokens]]\ntoken = \"same\"\n[[auth.tokens]]\ntoken = \"same\"\n"
      "[[auth.tokens]]\ntoken_sha256 = \"" +
      digest_a + "\"\n[[auth.tokens]]\ntoken_sha256 = \"" + digest_a + "\"\n");
  ASSERT_EQ(r.errors.size(), 2u) << all_errors(r);
  EXPECT_EQ(r.errors[0].line, 3);
  EXPECT_EQ(r.errors[0].message,
            "duplicate token (the same one is at " + dir_ + "/wsagent.toml:1)");
  EXPECT_EQ(r.errors[1].line, 7);
  // The secret itself never appears in a message.
  EXPECT_EQ(all_errors(r).find("same\""), std::string::npos);
}

TEST_F(Config, AuthShapeErrors) {
  auto r = load_text(
      "[auth]\ntokens = \"x\"\ntoken_file = \"t\"\n[auth.roles.r]\npublish = \"a/#\"\n"
      "subscribe = [\"a/#/b\", \"a+/b\", 3]\nread = []\n[[auth.tokens]]\ntoken = \"t\"\n");
  // tokens = "x" and [[auth.tokens]] clash: TOML itself refuses the file.
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  EXPECT_EQ(r.errors[0].line, 8);

  r = load_text(
      "[auth]\ntoken_file = \"t\"\n[auth.roles.r]\npublish = \"a/#\"\n"
      "subscribe = [\"a/#/b\", \"a+/b\", 3, \"\"]\nread = []\n[[auth.tokens]]\ntoken = \"t\"\n"
      "roles = \"r\"\nname = \"n\"\n[auth.roles]\nplain = 1\n");
  auto text = all_errors(r);
  EXPECT_EQ(r.errors.size(), 10u) << text;
  EXPECT_EQ(find_error(r, "auth.token_file")->line, 2);
  EXPECT_NE(find_error(r, "auth.token_file")->message.find("did you mean 'tokens_file'"),
            std::string::npos);
  EXPECT_EQ(find_error(r, "auth.roles.r.publish")->message,
            "expected an array of strings, got a string");
  EXPECT_NE(text.find(":5: auth.roles.r.subscribe: 'a/#/b': '#' must be the last level"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(":5: auth.roles.r.subscribe: 'a+/b': '+' and '#' must be a whole level"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(":5: auth.roles.r.subscribe: expected an array of strings, found an integer"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(":5: auth.roles.r.subscribe: an empty pattern matches nothing"),
            std::string::npos)
      << text;
  EXPECT_EQ(find_error(r, "auth.roles.r.read")->line, 6);
  EXPECT_EQ(find_error(r, "auth.tokens.roles")->line, 9);
  EXPECT_EQ(find_error(r, "auth.tokens.name")->line, 10);
  EXPECT_EQ(find_error(r, "auth.roles.plain")->line, 12);
}

TEST_F(Config, TokenWithoutRolesIsAllowed) {
  auto r = load_text("[[auth.tokens]]\ntoken = \"first\"\nuser = \"u\"\nroles = []\n");
  ASSERT_TRUE(r.ok()) << all_errors(r);
  ASSERT_EQ(r.value.auth.tokens.size(), 1u);
  EXPECT_TRUE(r.value.auth.tokens[0].roles.empty());
}

// --- environment and flags ---

TEST_F(Config, EnvironmentOverridesFile) {
  const char* env[] = {"PATH=/usr/bin",
                       "WSAGENT_LIMITS_MAX_SUBSCRIPTIONS=2",
                       "WSAGENT_SERVER_LISTEN=0.0.0.0:9001",
                       "WSAGENT_SERVER_DIAGNOSTICS=yes",
                       "WSAGENT_SERVER_ALLOW_ANONYMOUS=ON",
                       "WSAGENT_HEARTBEAT_PING_INTERVAL_MS=+250",
                       "WSAGENT_LOG_FORMAT=json",
                       "WSAGENT_CONFIG=/etc/wsagent.toml",
                       "WSAGENT_BIN=/usr/bin/wsagent",
                       nullptr};
  auto r = load_text(
      "[limits]\nmax_subscriptions = 1\nmax_batch = 9\n[server]\ndiagnostics = false\n", env);
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_EQ(r.value.limits.max_subscriptions, 2);
  EXPECT_EQ(r.value.limits.max_batch, 9);
  EXPECT_EQ(r.value.server.listen, "0.0.0.0:9001");
  EXPECT_TRUE(r.value.server.diagnostics);
  EXPECT_TRUE(r.value.server.allow_anonymous);
  EXPECT_EQ(r.value.heartbeat.ping_interval_ms, 250);
  EXPECT_EQ(r.value.log.format, "json");
}

TEST_F(Config, EnvironmentBooleans) {
  for (auto [text, expected] : std::vector<std::pair<std::string, bool>>{{"true", true},
                                                                         {"1", true},
                                                                         {"yes", true},
                                                                         {"on", true},
                                                                         {"TRUE", true},
                                                                         {"false", false},
                                                                         {"0", false},
                                                                         {"no", false},
                                                                         {"off", false},
                                                                         {"Off", false}}) {
    std::string var = "WSAGENT_SERVER_DIAGNOSTICS=" + text;
    const char* env[] = {var.c_str(), nullptr};
    auto r = load_config("", env, {});
    ASSERT_TRUE(r.ok()) << text << ": " << all_errors(r);
    EXPECT_EQ(r.value.server.diagnostics, expected) << text;
  }
}

TEST_F(Config, EnvironmentErrors) {
  const char* env[] = {"WSAGENT_SERVER_THREADS=four",
                       "WSAGENT_SERVER_DIAGNOSTICS=maybe",
                       "WSAGENT_LIMITS_MAX_CONECTIONS=5",
                       "WSAGENT_LIMITS_MAX_BATCH=0",
                       "WSAGENT_LIMITS_MAX_TAG_DEPTH=99999999999999999999999",
                       "WSAGENT_LOG_LEVEL=loud",
                       "wsagent_lower=ignored",
                       "WSAGENT_mixed_Case=ignored",
                       nullptr};
  auto r = load_config("", env, {});
  auto text = all_errors(r);
  ASSERT_EQ(r.errors.size(), 6u) << text;
  for (const auto& e : r.errors) {
    EXPECT_EQ(e.source, "environment");
    EXPECT_EQ(e.line, 0);
  }
  EXPECT_EQ(find_error(r, "server.threads")->to_string(),
            "environment: server.threads: WSAGENT_SERVER_THREADS=four: expected an integer, got "
            "'four'");
  EXPECT_TRUE(find_error(r, "server.diagnostics"));
  auto* unknown = find_error(r, "WSAGENT_LIMITS_MAX_CONECTIONS");
  ASSERT_TRUE(unknown);
  EXPECT_NE(unknown->message.find("did you mean 'WSAGENT_LIMITS_MAX_CONNECTIONS'"),
            std::string::npos)
      << unknown->message;
  EXPECT_NE(find_error(r, "limits.max_batch")->message.find("must be >= 1"), std::string::npos);
  EXPECT_TRUE(find_error(r, "limits.max_tag_depth"));
  EXPECT_TRUE(find_error(r, "log.level"));
}

TEST_F(Config, EveryKeyHasAFlagAndAnEnvironmentVariable) {
  auto keys = flag_keys();
  EXPECT_EQ(keys.size(), 71u);
  for (const char* k : {"server.listen",
                        "mqtt.max_keepalive",
                        "server.threads",
                        "limits.max_connections",
                        "limits.max_batch",
                        "limits.max_retained",
                        "limits.max_inflight",
                        "limits.max_queued",
                        "limits.max_queued_bytes",
                        "limits.max_queued_age_s",
                        "delivery.retry_ms",
                        "heartbeat.ping_interval_ms",
                        "store.kind",
                        "store.data_dir",
                        "store.sync",
                        "log.audit_file",
                        "auth.tokens_file",
                        "history.tags",
                        "history.max_count",
                        "history.max_age_s",
                        "history.max_tags",
                        "mqtt.listen",
                        "cluster.redis",
                        "cluster.node_id",
                        "cluster.password"})
    EXPECT_NE(std::find(keys.begin(), keys.end(), k), keys.end()) << k;
  // Each environment variable reaches its key: setting it to garbage is an error for that key
  // (for auth.tokens_file: the file cannot be read).
  for (const auto& k : keys) {
    if (k == "log.file" || k == "log.audit_file") continue;  // any path will do: below
    std::string var = env_name(k) + "=\x01not valid\x01";
    const char* env[] = {var.c_str(), nullptr};
    auto r = load_config("", env, {});
    ASSERT_EQ(r.errors.size(), 1u) << var << ": " << all_errors(r);
    EXPECT_EQ(r.errors[0].key, k);
    EXPECT_EQ(r.errors[0].source, "environment");
  }
  const char* env[] = {"WSAGENT_LOG_FILE=/tmp/a.log", "WSAGENT_LOG_AUDIT_FILE=b.jsonl", nullptr};
  auto r = load_config("", env, {});
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_EQ(r.value.log.file, "/tmp/a.log");
  EXPECT_EQ(r.value.log.audit_file, "b.jsonl");
}

TEST_F(Config, HistoryTagsAreAListOfFilters) {
  auto r = load_text("[history]\ntags = [\"plant/#\", \"dash/+/kpi\"]\nmax_count = 50\n");
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_EQ(r.value.history.tags, (std::vector<std::string>{"plant/#", "dash/+/kpi"}));
  EXPECT_EQ(r.value.history.max_count, 50);
  EXPECT_TRUE(load_config("", nullptr, {}).value.history.tags.empty());  // off by default
  // Outside a file: comma-separated.
  const char* env[] = {"WSAGENT_HISTORY_TAGS=a/#, b/+ ,,c", nullptr};
  r = load_config("", env, {});
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_EQ(r.value.history.tags, (std::vector<std::string>{"a/#", "b/+", "c"}));
  // A bad filter or a wrong type names the line.
  r = load_text("[history]\n\ntags = [\"ok/#\", \"a/#/b\"]\n");
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  EXPECT_EQ(r.errors[0].line, 3);
  EXPECT_EQ(r.errors[0].key, "history.tags");
  EXPECT_NE(r.errors[0].message.find("'a/#/b'"), std::string::npos) << r.errors[0].message;
  r = load_text("[history]\ntags = \"plant/#\"\n");
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  EXPECT_EQ(r.errors[0].message, "expected an array of strings, got a string");
  r = load_text("[history]\ntags = [\"a\", 3]\n");
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  EXPECT_EQ(r.errors[0].message, "expected an array of strings, got an integer in it");
}

TEST_F(Config, FlagsOverrideEnvironment) {
  CLI::App app("test");
  config_overrides ov;
  add_config_flags(app, ov);
  const char* argv[] = {"wsagent",
                        "--limits.max_subscriptions=3",
                        "--server.listen",
                        "127.0.0.1:7000",
                        "--server.diagnostics",
                        "--server.allow_anonymous=false",
                        "--log.level=warn",
                        "--log.level=error"};
  ASSERT_NO_THROW(app.parse(static_cast<int>(std::size(argv)), argv));
  EXPECT_EQ(ov.at("server.diagnostics"), "true");
  const char* env[] = {"WSAGENT_LIMITS_MAX_SUBSCRIPTIONS=2", "WSAGENT_SERVER_LISTEN=127.0.0.1:6000",
                       "WSAGENT_SERVER_ALLOW_ANONYMOUS=true", "WSAGENT_LIMITS_MAX_BATCH=4",
                       nullptr};
  auto r = load_text("[limits]\nmax_subscriptions = 1\n", env, ov);
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_EQ(r.value.limits.max_subscriptions, 3);
  EXPECT_EQ(r.value.server.listen, "127.0.0.1:7000");
  EXPECT_TRUE(r.value.server.diagnostics);
  EXPECT_FALSE(r.value.server.allow_anonymous);
  EXPECT_EQ(r.value.log.level, "error");  // the last one wins
  EXPECT_EQ(r.value.limits.max_batch, 4);
}

TEST_F(Config, FlagErrors) {
  CLI::App app("test");
  config_overrides ov;
  add_config_flags(app, ov);
  const char* argv[] = {"wsagent", "--limits.max_batch=lots", "--server.threads=-1"};
  ASSERT_NO_THROW(app.parse(static_cast<int>(std::size(argv)), argv));
  ov["no.such_key"] = "1";
  auto r = load_config("", nullptr, ov);
  ASSERT_EQ(r.errors.size(), 3u) << all_errors(r);
  EXPECT_EQ(find_error(r, "limits.max_batch")->to_string(),
            "command line: limits.max_batch: --limits.max_batch=lots: expected an integer, got "
            "'lots'");
  EXPECT_EQ(find_error(r, "server.threads")->source, "command line");
  EXPECT_TRUE(find_error(r, "no.such_key"));
}

TEST_F(Config, FlagsHaveHelpInTheConfigurationGroup) {
  CLI::App app("test");
  config_overrides ov;
  add_config_flags(app, ov);
  auto help = app.help();
  EXPECT_NE(help.find("Configuration:"), std::string::npos);
  EXPECT_NE(help.find("--limits.max_connections"), std::string::npos);
  EXPECT_NE(help.find("WSAGENT_LIMITS_MAX_CONNECTIONS"), std::string::npos);
  EXPECT_NE(help.find("I/O threads"), std::string::npos);
}

// --- tokens files and reload ---

const char* tokens_file_text = R"(# tokens
[[tokens]]
token_sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
identity = "sensor-002"
roles = ["device", "reader"]

[roles.reader]
subscribe = ["broadcast/#"]
)";

TEST_F(Config, TokensFileIsRelativeToTheConfigFileAndMerges) {
  write("etc/tokens.toml", tokens_file_text);
  auto main_path = write("etc/wsagent.toml", R"([auth]
tokens_file = "tokens.toml"

[[auth.tokens]]
token = "device-secret"
roles = ["device"]

[auth.roles.device]
publish = ["devices/%c/#"]
)");
  auto r = load_config(main_path, nullptr, {});
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_EQ(r.value.auth.tokens_file, dir_ + "/etc/tokens.toml");
  ASSERT_EQ(r.value.auth.tokens.size(), 2u);
  EXPECT_EQ(r.value.auth.tokens[0].token, "device-secret");
  EXPECT_EQ(r.value.auth.tokens[1].identity, "sensor-002");
  EXPECT_EQ(r.value.auth.tokens[1].line, 2);
  EXPECT_EQ(r.value.auth.roles.size(), 2u);
  EXPECT_EQ(r.value.auth.roles.at("reader").subscribe, std::vector<std::string>{"broadcast/#"});
}

TEST_F(Config, TokensFileFromTheEnvironmentIsUsedAsGiven) {
  auto tokens = write("tokens.toml",
                      "[[tokens]]\ntoken = \"x\"\nroles = [\"all\"]\n[roles.all]\npublish = "
                      "[\"#\"]\n");
  std::string var = "WSAGENT_AUTH_TOKENS_FILE=" + tokens;
  const char* env[] = {var.c_str(), nullptr};
  auto r = load_config("", env, {});
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_EQ(r.value.auth.tokens.size(), 1u);
  EXPECT_EQ(r.value.auth.tokens_file, tokens);
}

TEST_F(Config, TokensFileErrors) {
  write("tokens.toml", R"([[tokens]]
token = "device-secret"
roles = ["device", "ghost"]

[roles.device]
publish = ["x"]

[auth]
tokens_file = "again.toml"
)");
  auto main_path = write("wsagent.toml", R"([auth]
tokens_file = "tokens.toml"

[[auth.tokens]]
token = "device-secret"

[auth.roles.device]
publish = ["y"]
)");
  auto r = load_config(main_path, nullptr, {});
  auto text = all_errors(r);
  ASSERT_EQ(r.errors.size(), 4u) << text;
  auto tokens_path = dir_ + "/tokens.toml";
  EXPECT_NE(text.find(tokens_path + ":5: roles.device: role 'device' is defined twice (also at " +
                      main_path + ":7)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(tokens_path + ":8: auth: unknown key"), std::string::npos) << text;
  EXPECT_NE(text.find(tokens_path + ":1: tokens: duplicate token (the same one is at " + main_path +
                      ":4)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find(tokens_path + ":1: tokens.roles: no role 'ghost' is defined"),
            std::string::npos)
      << text;
}

TEST_F(Config, MissingTokensFileIsReportedWhereItIsNamed) {
  auto r = load_text("\n[auth]\ntokens_file = \"nowhere.toml\"\n");
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  EXPECT_EQ(r.errors[0].line, 3);
  EXPECT_EQ(r.errors[0].key, "auth.tokens_file");
  EXPECT_NE(r.errors[0].message.find(dir_ + "/nowhere.toml"), std::string::npos);
  EXPECT_NE(r.errors[0].message.find("No such file"), std::string::npos);

  r = load_config("", nullptr, {{"auth.tokens_file", dir_ + "/nowhere.toml"}});
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  EXPECT_EQ(r.errors[0].source, "command line");
}

TEST_F(Config, TokensFileSyntaxError) {
  write("tokens.toml", "[[tokens]\nbroken = \n");
  auto r = load_text("[auth]\ntokens_file = \"tokens.toml\"\n");
  ASSERT_EQ(r.errors.size(), 1u) << all_errors(r);
  EXPECT_EQ(r.errors[0].source, dir_ + "/tokens.toml");
  EXPECT_EQ(r.errors[0].line, 1);
}

TEST_F(Config, ReloadAuthPicksUpAChangedTokensFile) {
  auto tokens = write("tokens.toml", tokens_file_text);
  auto main_path = write("wsagent.toml", R"([limits]
max_batch = 7

[auth]
tokens_file = "tokens.toml"

[[auth.tokens]]
token = "device-secret"
roles = ["device"]

[auth.roles.device]
publish = ["devices/%c/#"]
)");
  auto first = load_config(main_path, nullptr, {{"limits.max_subscriptions", "5"}});
  ASSERT_TRUE(first.ok()) << all_errors(first);
  ASSERT_EQ(first.value.auth.tokens.size(), 2u);

  write("tokens.toml", R"([[tokens]]
token = "second"
roles = ["device"]

[[tokens]]
token = "third"
user = "ops"
roles = ["ops"]

[roles.ops]
subscribe = ["#"]
)");
  // The main file's other sections are not re-applied, even when they changed.
  write("wsagent.toml", read_text(main_path) + "\n[server]\nthreads = 3\n");
  auto reloaded = reload_auth(main_path, first.value);
  ASSERT_TRUE(reloaded.ok()) << all_errors(reloaded);
  const auto& auth = reloaded.value.auth;
  ASSERT_EQ(auth.tokens.size(), 3u);
  EXPECT_EQ(auth.tokens[0].token, "device-secret");
  EXPECT_EQ(auth.tokens[1].token, "second");
  EXPECT_EQ(auth.tokens[2].user, "ops");
  EXPECT_EQ(auth.roles.size(), 2u);
  EXPECT_TRUE(auth.roles.count("ops"));
  EXPECT_FALSE(auth.roles.count("reader"));
  EXPECT_EQ(auth.tokens_file, tokens);
  EXPECT_EQ(reloaded.value.limits.max_subscriptions, 5);
  EXPECT_EQ(reloaded.value.limits.max_batch, 7);
  EXPECT_EQ(reloaded.value.server.threads, 0);

  // A broken tokens file: errors, and the caller keeps what it had.
  write("tokens.toml", "[[tokens]\nbroken = \n");
  auto broken = reload_auth(main_path, first.value);
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.errors[0].source, tokens);
  EXPECT_EQ(broken.errors[0].line, 1);
}

TEST_F(Config, ReloadAuthKeepsATokensFileFromTheEnvironment) {
  auto tokens = write("secrets/tokens.toml", "[[tokens]]\ntoken = \"one\"\n");
  write("tokens.toml", "[[tokens]]\ntoken = \"from-the-file\"\n");
  auto main_path = write("wsagent.toml", "[auth]\ntokens_file = \"tokens.toml\"\n");
  std::string var = "WSAGENT_AUTH_TOKENS_FILE=" + tokens;
  const char* env[] = {var.c_str(), nullptr};
  auto first = load_config(main_path, env, {});
  ASSERT_TRUE(first.ok()) << all_errors(first);
  ASSERT_EQ(first.value.auth.tokens.size(), 1u);
  EXPECT_EQ(first.value.auth.tokens[0].token, "one");

  write("secrets/tokens.toml", "[[tokens]]\ntoken = \"two\"\n");
  auto reloaded = reload_auth(main_path, first.value);
  ASSERT_TRUE(reloaded.ok()) << all_errors(reloaded);
  ASSERT_EQ(reloaded.value.auth.tokens.size(), 1u);
  EXPECT_EQ(reloaded.value.auth.tokens[0].token, "two");

  // Gone: reported against the file itself, not against the main file's tokens_file line.
  fs::remove(tokens);
  auto gone = reload_auth(main_path, first.value);
  ASSERT_EQ(gone.errors.size(), 1u) << all_errors(gone);
  EXPECT_EQ(gone.errors[0].source, tokens);
  EXPECT_EQ(gone.errors[0].line, 0);
}

TEST_F(Config, ReloadAuthIgnoresErrorsOutsideAuth) {
  auto main_path = write("wsagent.toml", "[[auth.tokens]]\ntoken = \"a\"\n");
  auto first = load_config(main_path, nullptr, {});
  ASSERT_TRUE(first.ok()) << all_errors(first);
  write("wsagent.toml", "[limits]\nmax_batch = 0\n[[auth.tokens]]\ntoken = \"b\"\n[bogus]\n");
  auto reloaded = reload_auth(main_path, first.value);
  ASSERT_TRUE(reloaded.ok()) << all_errors(reloaded);
  ASSERT_EQ(reloaded.value.auth.tokens.size(), 1u);
  EXPECT_EQ(reloaded.value.auth.tokens[0].token, "b");
  EXPECT_EQ(reloaded.value.auth.tokens[0].line, 3);

  write("wsagent.toml", "[[auth.tokens]]\ntoken = \"b\"\nroles = [\"missing\"]\n");
  auto bad = reload_auth(main_path, first.value);
  ASSERT_EQ(bad.errors.size(), 1u) << all_errors(bad);
  EXPECT_EQ(bad.errors[0].line, 1);
}

// --- the shipped example and documentation ---

TEST_F(Config, ExampleFileLoadsClean) {
  std::string example = std::string(WSAGENT_SOURCE_DIR) + "/docs/wsagent.example.toml";
  ASSERT_TRUE(fs::exists(example)) << example;
  auto r = load_config(example, nullptr, {});
  ASSERT_TRUE(r.ok()) << all_errors(r);
  EXPECT_FALSE(r.value.auth.tokens.empty());
  EXPECT_FALSE(r.value.auth.roles.empty());
  // The example shows every key, set to its default.
  auto text = read_text(example);
  const config defaults;
  for (const auto& key : flag_keys()) {
    auto name = key.substr(key.find('.') + 1);
    EXPECT_NE(text.find("\n" + name + " = "), std::string::npos) << key;
  }
  EXPECT_EQ(r.value.server.listen, defaults.server.listen);
  EXPECT_EQ(r.value.limits.max_message_size, defaults.limits.max_message_size);
  EXPECT_EQ(r.value.heartbeat.idle_timeout_ms, defaults.heartbeat.idle_timeout_ms);
  EXPECT_EQ(r.value.log.level, defaults.log.level);
}

TEST_F(Config, DocumentationListsEveryKey) {
  auto doc = read_text(std::string(WSAGENT_SOURCE_DIR) + "/docs/configuration.md");
  ASSERT_FALSE(doc.empty());
  for (const auto& key : flag_keys()) {
    EXPECT_NE(doc.find("| `" + key + "`"), std::string::npos) << key;
    EXPECT_NE(doc.find("`" + env_name(key) + "`"), std::string::npos) << key;
    EXPECT_NE(doc.find("`--" + key), std::string::npos) << key;
  }
}

}  // namespace
}  // namespace wsagent::app
