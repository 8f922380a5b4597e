#pragma once
// The load engine of `wsagent bench`: thousands of client connections on a few threads,
// each an Asio io_context running its share of connections (one thread per connection is
// what this tool must not be). A connection speaks one of three wire formats, all built on
// the project's own codecs: the native JSON protocol over WebSocket, MQTT 3.1.1 over TCP,
// and MQTT over WebSocket (binary frames, subprotocol "mqtt").
//
// A run follows a `plan`: which connections subscribe to what and publish where, and how
// many deliveries each published message must cause. The controller (bench.cpp) drives the
// phases: connect → warm-up → measure → drain → stop, and reads the counters.
//
// Timestamps: a publisher writes its send time (ns of a steady clock, relative to the
// engine's start) as the first 16 hex digits of every payload; bit 62 of that value marks a
// message sent during the measured window. A subscriber reads it back, so latency is
// end to end through the server, and a message's window membership is decided once, by its
// sender. The clock is read once per written batch and once per read completion: messages
// of one batch share a time, which errs by at most one syscall.
//
// Flow: with a fixed rate each publisher sends its share on a timer; with rate 0 ("as fast
// as the server delivers") publishers send while fewer than `inflight` messages per
// publisher are sent but not yet delivered everywhere (counted in deliveries over all
// publishers: inflight x publishers x mean fan-out), so a run measures sustained
// throughput, not the depth of the server's queues. QoS 1 publishers also stop at `max_unacked`
// unacknowledged (native and MQTT alike), and time each acknowledgement.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "histogram.hpp"

namespace wsagent::bench {

struct target {
  enum class protocol { native, mqtt };
  enum class transport { ws, tcp };
  protocol proto = protocol::native;
  transport via = transport::ws;
  std::string host = "127.0.0.1";
  std::string port = "8080";
  std::string path = "/ws";
  bool tls = false;  // wss://, mqtts://, mqtt+wss://
};

// ws://host:port/path (native), mqtt://host:port (MQTT over TCP), mqtt+ws://host:port/path
// (MQTT over WebSocket); wss://, mqtts:// and mqtt+wss:// the same over TLS. nullopt and
// `error` set when the URL is none of these.
std::optional<target> parse_target(const std::string& url, std::string& error);

struct publish_route {
  std::string tag;
  std::uint32_t fanout = 0;  // deliveries each message on this tag must cause
};

struct conn_plan {
  std::vector<std::string> filters;   // subscribe to these
  std::vector<publish_route> routes;  // publish round-robin over these (empty: no publisher)
};

struct plan {
  std::vector<conn_plan> conns;
  std::size_t payload_size = 16;
  int qos = 0;
  double rate = 0;                 // messages per second over all publishers; 0: closed loop
  std::uint64_t inflight = 100;    // closed loop: messages in flight per publisher
  std::uint32_t max_unacked = 64;  // QoS 1: per publisher
  double ramp = 0;                 // connections started per second; 0: all at once
  int threads = 1;
  std::vector<std::string> sources;  // local addresses to bind, round-robin
  std::string token;
  // TLS: the server's certificate is checked against this CA file (PEM) and the URL's host;
  // "" = not checked (a benchmark on loopback measures the encryption, not the trust).
  std::string cafile;
  bool persistent = false;  // subscribers keep persistent sessions (native) / sessions (MQTT)
  // Connections that only subscribe go to these instead (host, port), round-robin: the other
  // nodes of a cluster, publishers staying on the target's.
  std::vector<std::pair<std::string, std::string>> subscriber_targets;
};

struct totals {
  std::uint64_t connected = 0;
  std::uint64_t ready = 0;
  std::uint64_t failed = 0;        // could not connect, upgrade, CONNECT or SUBSCRIBE
  std::uint64_t disconnected = 0;  // closed by the server after being ready
  std::uint64_t sent = 0;
  std::uint64_t sent_window = 0;
  std::uint64_t expected = 0;
  std::uint64_t expected_window = 0;
  std::uint64_t delivered = 0;
  std::uint64_t delivered_window = 0;    // deliveries of messages sent in the window
  std::uint64_t delivered_in_phase = 0;  // deliveries received while measuring
  std::uint64_t bytes_in_phase = 0;      // payload bytes of those
  std::uint64_t errors = 0;
  std::uint64_t stalls = 0;
};

class engine {
 public:
  enum class phase : int { connect, warmup, measure, drain, stopped };

  engine(target t, plan p);
  ~engine();
  engine(const engine&) = delete;
  engine& operator=(const engine&) = delete;

  // Starts the threads and opens every connection (at the plan's ramp); returns at once.
  void start();
  void set_phase(phase ph);
  // Publishers begin (after every subscriber is ready).
  void start_publishing();
  void stop_publishing();
  // Called by the controller every few ms: detects a closed loop that stopped moving
  // (messages lost, so never delivered) and lets publishers go on.
  void watchdog();
  // Closes everything and joins the threads; the histogram and totals stay readable.
  void stop();

  totals snapshot() const;
  histogram latencies() const;
  // QoS 1: from a publish (sent in the window) to the server's acknowledgement of it.
  histogram ack_latencies() const;
  // The first error the server sent or a connection hit, for the report.
  std::string first_error() const;
  // True when the server refused the scenario (an `unsupported` error, a refused QoS).
  bool unsupported() const noexcept { return unsupported_.load(); }
  std::size_t connection_count() const noexcept;

  struct impl;

 private:
  std::unique_ptr<impl> impl_;
  std::atomic<bool> unsupported_{false};
  friend struct impl;
};

// Raises this process's open-file limit to its hard limit; returns the new soft limit.
std::uint64_t raise_file_limit();

}  // namespace wsagent::bench
