#include "cli/pubsub.hpp"

#include <simdjson.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <iterator>
#include <set>

#include <unistd.h>

#include "cli/client.hpp"
#include "common/base64.hpp"
#include "common/json_writer.hpp"
#include "protocol/native/binary.hpp"

namespace wsagent::cli {
namespace {

using namespace std::chrono_literals;
using common::json_writer;

void add_common(CLI::App* cmd, common_options& o) {
  cmd->add_option("-h,--host", o.host, "agent host")->capture_default_str();
  cmd->add_option("-p,--port", o.port, "agent port")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  cmd->add_option("--url", o.url, "agent URL, e.g. ws://127.0.0.1:8080/ws (overrides -h and -p)");
  cmd->add_option("--token", o.token, "authentication token")->envname("WSAGENT_TOKEN");
  cmd->add_option("-i,--id", o.client_id,
                  "client id (default: the token's identity, else generated)");
  cmd->add_option("-q,--qos", o.qos, "quality of service: 0, 1 (at least once) or 2 (exactly once)")
      ->check(CLI::Range(0, 2));
  cmd->add_option("--timeout", o.timeout_s, "seconds to wait for the agent's answers")
      ->capture_default_str();
}

// Connects and authenticates; throws std::runtime_error with the reason on failure.
std::string open_session(ws_client& c, const common_options& o, bool binary) {
  endpoint ep;
  if (!o.url.empty()) {
    auto parsed = parse_url(o.url);
    if (!parsed) throw std::runtime_error("--url must look like ws://host:port/path");
    ep = *parsed;
  } else {
    ep.host = o.host;
    ep.port = std::to_string(o.port);
  }
  c.connect(ep, {});
  std::string auth;
  json_writer w(auth);
  w.begin_object().string("type", "auth");
  if (!o.token.empty()) w.string("token", o.token);
  if (!o.client_id.empty()) w.string("clientId", o.client_id);
  if (binary) w.boolean("binary", true);
  w.end_object();
  c.send_text(auth);
  simdjson::dom::parser p;
  while (true) {
    auto r = c.read(std::chrono::seconds(o.timeout_s));
    if (!r) throw std::runtime_error("no answer to authentication");
    if (r->binary) continue;
    simdjson::dom::element e;
    if (p.parse(r->data).get(e)) continue;
    std::string_view type;
    if (e["type"].get(type)) continue;
    if (type == "auth_response") {
      std::string_view id;
      if (e["clientId"].get(id)) id = {};
      return std::string(id);
    }
    if (type == "error") {
      std::string_view msg;
      if (e["message"].get(msg)) msg = "unknown";
      throw std::runtime_error("authentication refused: " + std::string(msg));
    }
  }
}

std::string compact(simdjson::dom::element e) {
  return simdjson::minify(e);
}

// The payload as a person reads it: a JSON string's text, other JSON compact, base64 decoded.
std::string printable_payload(simdjson::dom::element frame) {
  std::string_view type;
  if (frame["type"].get(type) || type != "message") return compact(frame);  // typed messages
  simdjson::dom::element payload;
  if (frame["payload"].get(payload)) return {};
  std::string_view s;
  if (payload.get(s) == simdjson::SUCCESS) {
    std::string_view encoding;
    if (!frame["encoding"].get(encoding) && encoding == "base64") {
      auto bytes = common::base64_decode(s);
      return bytes ? *bytes : std::string(s);
    }
    return std::string(s);
  }
  return compact(payload);
}

}  // namespace

void add_pub_command(CLI::App& app, pub_options& o) {
  auto* cmd = app.add_subcommand("pub", "publish a message (flags as mosquitto_pub)");
  cmd->set_help_flag("--help", "print this help and exit");
  add_common(cmd, o);
  cmd->add_option("-t,--tag,--topic", o.tag, "tag to publish to")->required();
  auto* m = cmd->add_option("-m,--message", o.message,
                            "the payload: JSON, or else sent as a JSON string");
  auto* s =
      cmd->add_flag("-s,--stdin-file", o.stdin_whole, "read the whole of stdin as one message");
  auto* l = cmd->add_flag("-l,--stdin-line", o.stdin_lines, "send each line of stdin as a message");
  auto* n = cmd->add_flag("-n,--null-message", o.null_message, "send a null payload");
  m->excludes(s)->excludes(l)->excludes(n);
  s->excludes(l)->excludes(n);
  l->excludes(n);
  cmd->add_flag("-r,--retain", o.retain, "ask the agent to retain the message");
  cmd->add_flag("--string", o.as_string, "send the text as a JSON string even if it is valid JSON");
  cmd->add_flag("--binary", o.binary, "send the bytes as they are, in a binary frame");
  cmd->callback([&o, m] { o.has_message = m->count() > 0; });
}

void add_sub_command(CLI::App& app, sub_options& o) {
  auto* cmd = app.add_subcommand("sub", "subscribe and print messages (flags as mosquitto_sub)");
  cmd->set_help_flag("--help", "print this help and exit");
  add_common(cmd, o);
  cmd->add_option("-t,--tag,--topic", o.tags, "tag filter, may be repeated; + and # wildcards")
      ->required();
  cmd->add_option("-C,--count", o.count, "exit after this many messages")
      ->check(CLI::PositiveNumber);
  cmd->add_option("-W,--wait", o.wait_s, "exit with code 27 after this many seconds")
      ->check(CLI::PositiveNumber);
  cmd->add_flag("-v,--verbose", o.verbose, "print the tag before each payload");
  cmd->add_flag("--json", o.json, "print each delivery frame as it arrived");
  cmd->add_flag("--binary", o.binary, "receive binary payloads in binary frames (printed raw)");
}

int run_pub(const pub_options& o) {
  std::vector<std::string> payloads;
  if (o.stdin_whole) {
    payloads.emplace_back(std::istreambuf_iterator<char>(std::cin),
                          std::istreambuf_iterator<char>());
  } else if (o.stdin_lines) {
    for (std::string line; std::getline(std::cin, line);)
      payloads.push_back(line);
  } else if (o.null_message) {
    payloads.emplace_back();
  } else if (o.has_message) {
    payloads.push_back(o.message);
  } else {
    std::cerr << "wsagent pub: give a message with -m, -s, -l or -n\n";
    return 1;
  }
  try {
    ws_client c;
    open_session(c, o, false);
    simdjson::dom::parser p;
    // QoS 1 and 2: each publish has a msgid, and the command waits for its ack (QoS 1) or
    // completes its handshake (QoS 2: pubrec, then pubrel, then pubcomp).
    std::set<std::string, std::less<>> pending;
    const std::string prefix = "cli-" + std::to_string(::getpid()) + "-";
    std::size_t number = 0;
    for (const auto& text : payloads) {
      std::string msgid;
      if (o.qos) {
        msgid = prefix + std::to_string(number++);
        pending.insert(msgid);
      }
      if (o.binary) {
        std::string env;
        protocol::native::encode_binary_publish(env, o.tag, msgid, text, o.retain, o.qos);
        c.send_binary(env);
        continue;
      }
      std::string frame;
      json_writer w(frame);
      w.begin_object().string("type", "publish").string("tag", o.tag);
      if (!msgid.empty()) w.string("msgid", msgid).string("id", msgid);
      simdjson::dom::element parsed;
      if (o.null_message)
        w.raw("payload", "null");
      else if (!o.as_string && !text.empty() && p.parse(text).get(parsed) == simdjson::SUCCESS)
        w.raw("payload", compact(parsed));
      else
        w.string("payload", text);
      if (o.retain) w.boolean("retain", true);
      if (o.qos) w.integer("qos", o.qos);
      w.end_object();
      c.send_text(frame);
    }
    // The agent answers in order: the pong comes after any error about the publishes.
    c.send_text(R"({"type":"ping","id":"pub-done"})");
    int errors = 0;
    bool ponged = false;
    while (!ponged || !pending.empty()) {
      auto r = c.read(std::chrono::seconds(o.timeout_s));
      if (!r) {
        std::cerr << "wsagent pub: no answer from the agent";
        if (!pending.empty()) std::cerr << " (" << pending.size() << " unacknowledged)";
        std::cerr << "\n";
        return 1;
      }
      if (r->binary) continue;
      simdjson::dom::element e;
      if (p.parse(r->data).get(e)) continue;
      std::string_view type, msgid;
      if (e["type"].get(type)) continue;
      if (e["msgid"].get(msgid)) msgid = "";
      if (type == "error") {
        std::string_view msg, code, id;
        if (e["message"].get(msg)) msg = "";
        if (e["code"].get(code)) code = "";
        if (!e["id"].get(id)) pending.erase(std::string(id));
        std::cerr << "wsagent pub: " << code << ": " << msg << "\n";
        ++errors;
      } else if (type == "pong") {
        ponged = true;
      } else if (type == "ack" || type == "pubcomp") {
        pending.erase(std::string(msgid));
      } else if (type == "pubrec") {
        std::string rel;
        json_writer(rel)
            .begin_object()
            .string("type", "pubrel")
            .string("msgid", msgid)
            .end_object();
        c.send_text(rel);
      }
    }
    c.close();
    return errors ? 1 : 0;
  } catch (const std::exception& e) {
    std::cerr << "wsagent pub: " << e.what() << "\n";
    return 1;
  }
}

int run_sub(const sub_options& o) {
  try {
    ws_client c;
    open_session(c, o, o.binary);
    std::string frame;
    json_writer w(frame);
    w.begin_object().string("type", "subscribe").string("id", "sub");
    w.begin_array("tags");
    for (const auto& t : o.tags)
      w.string_value(t);
    w.end_array();
    if (o.qos) w.integer("qos", o.qos);
    w.end_object();
    c.send_text(frame);

    simdjson::dom::parser p;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(o.wait_s);
    bool subscribed = false;
    int received = 0;
    // QoS 2 deliveries received and not yet released: shown once however often they come.
    std::set<std::uint64_t> held;
    // Acknowledges a QoS 1 or 2 delivery; false for one to leave unshown (a QoS 2 repeat).
    auto acknowledge = [&](int qos, std::uint64_t seq) {
      if (qos == 0) return true;
      std::string reply;
      json_writer(reply)
          .begin_object()
          .string("type", qos == 1 ? "ack" : "pubrec")
          .integer("seq", static_cast<std::int64_t>(seq))
          .end_object();
      c.send_text(reply);
      return qos == 1 || held.insert(seq).second;
    };
    while (true) {
      std::optional<std::chrono::milliseconds> timeout;
      if (!subscribed) timeout = std::chrono::seconds(o.timeout_s);
      if (o.wait_s) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left <= 0ms) return 27;
        if (!timeout || left < *timeout) timeout = left;
      }
      auto r = c.read(timeout);
      if (!r) {
        if (!subscribed && (!o.wait_s || std::chrono::steady_clock::now() < deadline)) {
          std::cerr << "wsagent sub: no answer to subscribe\n";
          return 1;
        }
        std::cerr << "Timed out\n";
        return 27;
      }
      if (r->binary) {
        std::string why;
        auto m = protocol::native::decode_binary_message(r->data, why);
        if (!m || !acknowledge(m->qos, m->seq)) continue;
        if (o.verbose) std::cout << m->tag << ' ';
        std::cout << m->payload << std::endl;
      } else {
        simdjson::dom::element e;
        if (p.parse(r->data).get(e)) continue;
        std::string_view type;
        if (e["type"].get(type)) continue;
        if (type == "subscribed") {
          subscribed = true;
          continue;
        }
        if (type == "error") {
          std::string_view msg, code;
          if (e["message"].get(msg)) msg = "";
          if (e["code"].get(code)) code = "";
          std::cerr << "wsagent sub: " << code << ": " << msg << "\n";
          if (!subscribed) return 1;
          continue;
        }
        if (type == "pong" || type == "auth_response") continue;
        if (type == "pubrel") {
          std::uint64_t seq = 0;
          if (e["seq"].get(seq)) continue;
          held.erase(seq);
          std::string reply;
          json_writer(reply)
              .begin_object()
              .string("type", "pubcomp")
              .integer("seq", static_cast<std::int64_t>(seq))
              .end_object();
          c.send_text(reply);
          continue;
        }
        if (type == "message") {
          std::int64_t qos = 0;
          std::uint64_t seq = 0;
          if (e["qos"].get(qos)) qos = 0;
          if (e["seq"].get(seq)) seq = 0;
          if (!acknowledge(static_cast<int>(qos), seq)) continue;
        }
        if (o.json) {
          std::cout << r->data << std::endl;
        } else {
          if (o.verbose) {
            std::string_view tag;
            if (e["tag"].get(tag)) tag = "";
            std::cout << tag << ' ';
          }
          std::cout << printable_payload(e) << std::endl;
        }
      }
      if (o.count && ++received >= o.count) {
        c.close();
        return 0;
      }
    }
  } catch (const ws_client::closed_error& e) {
    std::cerr << "wsagent sub: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "wsagent sub: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace wsagent::cli
