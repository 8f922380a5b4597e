#include "bench.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>
#include <vector>

#include "common/json_writer.hpp"
#include "core/tag.hpp"
#include "load.hpp"
#include "proc_stats.hpp"

namespace wsagent::bench {

namespace {

using clock_type = std::chrono::steady_clock;

struct scenario_shape {
  plan p;
  int publishers = 0;
  int subscribers = 0;
  int pairs = 0;
  std::string summary;  // "1 publisher -> 1000 subscribers"
};

int pick(int given, int fallback) {
  return given > 0 ? given : fallback;
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

scenario_shape make_shape(const bench_options& o) {
  scenario_shape s;
  auto& conns = s.p.conns;
  const std::string& name = o.scenario;
  if (name == "fan-in") {
    s.publishers = pick(o.publishers, 100);
    s.subscribers = 1;
    conns.push_back({{"bench/fan-in"}, {}});
    for (int i = 0; i < s.publishers; ++i)
      conns.push_back({{}, {{"bench/fan-in", 1}}});
    s.summary = std::to_string(s.publishers) + " publishers -> 1 subscriber";
  } else if (name == "fan-out") {
    s.publishers = 1;
    s.subscribers = pick(o.subscribers, 1000);
    for (int i = 0; i < s.subscribers; ++i)
      conns.push_back({{"bench/fan-out"}, {}});
    conns.push_back({{}, {{"bench/fan-out", static_cast<std::uint32_t>(s.subscribers)}}});
    s.summary = "1 publisher -> " + std::to_string(s.subscribers) + " subscribers";
  } else if (name == "pairs" || name == "qos1") {
    s.pairs = pick(o.pairs, 100);
    s.publishers = s.subscribers = s.pairs;
    for (int i = 0; i < s.pairs; ++i)
      conns.push_back({{"bench/pairs/" + std::to_string(i)}, {}});
    for (int i = 0; i < s.pairs; ++i)
      conns.push_back({{}, {{"bench/pairs/" + std::to_string(i), 1}}});
    s.summary = std::to_string(s.pairs) + " publisher/subscriber pairs";
  } else if (name == "wildcard") {
    // Tags bench/wc/g<i % 10>/t<i>. Subscribers hold one filter each, in turn
    // bench/wc/g<k>/+ (a tenth of the tags), bench/wc/+/t<m> (one tag) and bench/wc/g<k>/#.
    const int tags = std::max(o.tags, 1);
    s.subscribers = pick(o.subscribers, 100);
    s.publishers = std::min(pick(o.publishers, 10), tags);
    std::vector<std::string> filters;
    for (int j = 0; j < s.subscribers; ++j) {
      const int k = (j / 3) % 10;
      switch (j % 3) {
        case 0:
          filters.push_back("bench/wc/g" + std::to_string(k) + "/+");
          break;
        case 1:
          filters.push_back("bench/wc/+/t" + std::to_string((j * 37) % tags));
          break;
        default:
          filters.push_back("bench/wc/g" + std::to_string(k) + "/#");
          break;
      }
      conns.push_back({{filters.back()}, {}});
    }
    std::vector<conn_plan> pubs(static_cast<std::size_t>(s.publishers));
    for (int i = 0; i < tags; ++i) {
      const std::string tag = "bench/wc/g" + std::to_string(i % 10) + "/t" + std::to_string(i);
      std::uint32_t fanout = 0;
      for (const auto& f : filters)
        fanout += core::filter_matches(f, tag) ? 1 : 0;
      pubs[static_cast<std::size_t>(i % s.publishers)].routes.push_back({tag, fanout});
    }
    for (auto& p : pubs)
      conns.push_back(std::move(p));
    s.summary = std::to_string(s.publishers) + " publishers over " + std::to_string(tags) +
                " tags -> " + std::to_string(s.subscribers) + " wildcard subscribers";
  } else if (name == "connections") {
    const int c = pick(o.connections, 10000);
    conns.resize(static_cast<std::size_t>(c));
    s.summary = std::to_string(c) + " idle connections";
  }
  s.p.payload_size = static_cast<std::size_t>(std::max(o.size, 16));
  s.p.qos = name == "qos1" ? std::max(o.qos, 1) : o.qos;
  s.p.rate = o.rate;
  s.p.inflight = static_cast<std::uint64_t>(std::max(o.inflight, 1));
  s.p.ramp = o.ramp;
  s.p.threads = o.threads;
  s.p.sources = split_list(o.sources);
  s.p.token = o.token;
  s.p.cafile = o.cafile;
  s.p.persistent = o.persistent;
  for (const auto& u : split_list(o.sub_urls)) {
    std::string ignored;
    if (auto t = parse_target(u, ignored)) s.p.subscriber_targets.emplace_back(t->host, t->port);
  }
  return s;
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string grouped(std::uint64_t v) {
  std::string digits = std::to_string(v);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

struct result {
  bool supported = true;
  std::string error;
  totals t;
  double measured_s = 0;
  histogram lat;
  histogram ack_lat;  // QoS 1
  std::optional<proc_sample> before, after;
  std::int64_t rss_base_kb = 0;
  std::uint64_t open_connections = 0;
};

class progress {
 public:
  explicit progress(bool on) : on_(on) {}
  void show(const std::string& line) {
    if (!on_) return;
    std::cerr << "\r" << line << "\033[K" << std::flush;
    shown_ = true;
  }
  void done() {
    if (shown_) std::cerr << "\r\033[K" << std::flush;
    shown_ = false;
  }

 private:
  bool on_;
  bool shown_ = false;
};

// Sleeps `seconds` while keeping the closed loop alive and the progress line fresh.
void run_for(engine& e, double seconds, progress& pg, const char* what, bool show_rate) {
  const auto begin = clock_type::now();
  const auto end = begin + std::chrono::duration<double>(seconds);
  auto next_show = begin;
  std::uint64_t last_delivered = e.snapshot().delivered;
  auto last_time = begin;
  while (clock_type::now() < end && !e.unsupported()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    e.watchdog();
    const auto now = clock_type::now();
    if (now >= next_show) {
      const auto t = e.snapshot();
      const double dt = std::chrono::duration<double>(now - last_time).count();
      std::string line = std::string(what) + " " +
                         fixed(std::chrono::duration<double>(now - begin).count(), 0) + "/" +
                         fixed(seconds, 0) + " s";
      if (show_rate)
        line += "  sent " + grouped(t.sent) + "  delivered " + grouped(t.delivered) + "  (" +
                grouped(static_cast<std::uint64_t>(
                    dt > 0 ? static_cast<double>(t.delivered - last_delivered) / dt : 0)) +
                " msg/s)";
      else
        line += "  open " + grouped(t.ready);
      pg.show(line);
      last_delivered = t.delivered;
      last_time = now;
      next_show = now + std::chrono::seconds(1);
    }
  }
}

// Waits until every connection is ready or failed; false on timeout.
bool wait_ready(engine& e, std::size_t total, double timeout_s, progress& pg) {
  const auto end = clock_type::now() + std::chrono::duration<double>(timeout_s);
  auto next_show = clock_type::now();
  while (clock_type::now() < end) {
    const auto t = e.snapshot();
    if (t.ready + t.failed >= total) {
      pg.done();
      return true;
    }
    if (clock_type::now() >= next_show) {
      pg.show("connecting " + grouped(t.ready) + "/" + grouped(total) +
              (t.failed ? "  failed " + grouped(t.failed) : std::string()));
      next_show = clock_type::now() + std::chrono::milliseconds(500);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pg.done();
  return false;
}

double connect_timeout(const plan& p) {
  return 30.0 + (p.ramp > 0 ? static_cast<double>(p.conns.size()) / p.ramp : 0.0);
}

std::string describe_error(engine& e, const totals& t, std::size_t total) {
  std::string s = grouped(t.ready) + " of " + grouped(total) + " connections ready";
  if (t.failed) s += ", " + grouped(t.failed) + " failed";
  const auto first = e.first_error();
  if (!first.empty()) s += ": " + first;
  return s;
}

result run_messages(const bench_options& o, const scenario_shape& shape, const target& tgt) {
  result r;
  progress pg(!o.quiet);
  engine e(tgt, shape.p);
  e.start();
  const auto total = shape.p.conns.size();
  const bool all = wait_ready(e, total, connect_timeout(shape.p), pg);
  auto t = e.snapshot();
  if (!all || t.ready < total || e.unsupported()) {
    r.supported = !e.unsupported();
    r.error = describe_error(e, t, total);
    r.t = t;
    e.stop();
    return r;
  }
  e.set_phase(engine::phase::warmup);
  e.start_publishing();
  run_for(e, o.warmup, pg, "warm-up", true);
  if (o.server_pid) r.before = read_proc(o.server_pid);
  e.set_phase(engine::phase::measure);
  const auto m0 = clock_type::now();
  run_for(e, o.duration, pg, "measure", true);
  e.set_phase(engine::phase::drain);
  r.measured_s = std::chrono::duration<double>(clock_type::now() - m0).count();
  if (o.server_pid) r.after = read_proc(o.server_pid);
  e.stop_publishing();

  // Drain: wait for what was sent in the window, until it stops arriving.
  auto last = e.snapshot();
  auto last_change = clock_type::now();
  const auto give_up = clock_type::now() + std::chrono::seconds(15);
  while (clock_type::now() < give_up) {
    const auto now_t = e.snapshot();
    if (now_t.delivered_window >= now_t.expected_window) break;
    if (now_t.delivered != last.delivered) {
      last = now_t;
      last_change = clock_type::now();
    } else if (clock_type::now() - last_change > std::chrono::seconds(2)) {
      break;
    }
    pg.show("drain  delivered " + grouped(now_t.delivered_window) + "/" +
            grouped(now_t.expected_window));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  pg.done();
  e.stop();
  r.t = e.snapshot();
  r.lat = e.latencies();
  r.ack_lat = e.ack_latencies();
  if (e.unsupported()) {
    r.supported = false;
    r.error = e.first_error();
  } else if (r.t.disconnected) {
    r.error = grouped(r.t.disconnected) + " connections closed by the server: " + e.first_error();
  }
  return r;
}

// `connections`: open the connections (in several processes if asked), hold them, and
// read the server's memory with them all open.
result run_connections(const bench_options& o, const scenario_shape& shape, const target& tgt) {
  result r;
  progress pg(!o.quiet && o.child_fd < 0);
  if (o.server_pid) {
    // cpu_s: what the server spent accepting and holding this run's connections.
    r.before = read_proc(o.server_pid);
    if (r.before) r.rss_base_kb = r.before->rss_kb;
  }
  const std::size_t total = shape.p.conns.size();
  const int procs = std::max(1, o.processes);

  // Children: fork before any thread exists. Each opens its share, reports "ready failed"
  // on its pipe, then holds until the parent closes the control pipe.
  struct child {
    pid_t pid;
    int report_fd;
  };
  std::vector<child> children;
  int control[2] = {-1, -1};
  plan own = shape.p;
  if (procs > 1) {
    if (::pipe(control) != 0) {
      r.error = "pipe failed";
      return r;
    }
    const std::size_t share = total / static_cast<std::size_t>(procs);
    own.conns.resize(total - share * static_cast<std::size_t>(procs - 1));
    own.ramp = o.ramp / procs;
    for (int i = 1; i < procs; ++i) {
      int report[2];
      if (::pipe(report) != 0) break;
      const pid_t pid = ::fork();
      if (pid == 0) {
        ::close(report[0]);
        ::close(control[1]);
        plan mine = shape.p;
        mine.conns.resize(share);
        mine.ramp = o.ramp / procs;
        engine e(tgt, mine);
        e.start();
        progress quiet(false);
        wait_ready(e, share, connect_timeout(mine), quiet);
        const auto t = e.snapshot();
        const std::string line =
            std::to_string(t.ready) + " " + std::to_string(t.failed) + " " + e.first_error() + "\n";
        (void)!::write(report[1], line.data(), line.size());
        char byte;
        while (::read(control[0], &byte, 1) > 0) {
        }
        e.stop();
        ::_exit(0);
      }
      ::close(report[1]);
      children.push_back({pid, report[0]});
    }
    ::close(control[0]);
  }

  engine e(tgt, own);
  e.start();
  wait_ready(e, own.conns.size(), connect_timeout(own), pg);
  auto t = e.snapshot();
  std::uint64_t ready = t.ready;
  std::uint64_t failed = t.failed;
  std::string first = e.first_error();
  for (auto& c : children) {
    std::string line;
    char buf[512];
    ssize_t n;
    while ((n = ::read(c.report_fd, buf, sizeof buf)) > 0) {
      line.append(buf, static_cast<std::size_t>(n));
      if (line.find('\n') != std::string::npos) break;
    }
    std::istringstream in(line);
    std::uint64_t cr = 0;
    std::uint64_t cf = 0;
    in >> cr >> cf;
    std::string err;
    std::getline(in, err);
    ready += cr;
    failed += cf;
    if (first.empty() && err.size() > 1) first = err.substr(1);
  }
  r.open_connections = ready;
  run_for(e, o.duration, pg, "holding", false);
  pg.done();
  if (o.server_pid) r.after = read_proc(o.server_pid);
  if (control[1] >= 0) ::close(control[1]);
  e.stop();
  for (auto& c : children) {
    ::close(c.report_fd);
    int status = 0;
    ::waitpid(c.pid, &status, 0);
  }
  r.t = e.snapshot();
  r.t.ready = ready;
  r.t.failed = failed;
  r.measured_s = o.duration;
  if (failed) r.error = grouped(failed) + " connections failed: " + first;
  if (e.unsupported()) r.supported = false;
  return r;
}

std::string number(double v) {
  if (v == static_cast<double>(static_cast<std::int64_t>(v)) && std::abs(v) < 1e15)
    return std::to_string(static_cast<std::int64_t>(v));
  return fixed(v, 3);
}

std::string json_report(const bench_options& o, const scenario_shape& shape, const target& tgt,
                        const result& r) {
  std::string out;
  common::json_writer w(out);
  const auto& t = r.t;
  const double secs = r.measured_s > 0 ? r.measured_s : 1;
  const std::uint64_t lost =
      t.expected_window > t.delivered_window ? t.expected_window - t.delivered_window : 0;
  w.begin_object()
      .string("tool", "wsagent-bench")
      .string("scenario", o.scenario)
      .string("url", o.url)
      .string("sub_urls", o.sub_urls)
      .string("proto", tgt.proto == target::protocol::native ? "native" : "mqtt")
      .string("transport", tgt.via == target::transport::ws ? "ws" : "tcp")
      .integer("publishers", shape.publishers)
      .integer("subscribers", shape.subscribers)
      .integer("pairs", shape.pairs)
      .integer("connections", static_cast<std::int64_t>(shape.p.conns.size()))
      .integer("size", static_cast<std::int64_t>(shape.p.payload_size))
      .integer("qos", shape.p.qos)
      .boolean("persistent", shape.p.persistent)
      .raw("rate", number(o.rate))
      .raw("duration_s", number(r.measured_s))
      .integer("sent", static_cast<std::int64_t>(t.sent_window))
      // the warm-up's too: what a server's own counters over the whole run compare with
      .integer("sent_total", static_cast<std::int64_t>(t.sent))
      .integer("expected", static_cast<std::int64_t>(t.expected_window))
      .integer("delivered", static_cast<std::int64_t>(t.delivered_window))
      .integer("lost", static_cast<std::int64_t>(lost))
      .raw("msgs_per_s", number(static_cast<double>(t.delivered_in_phase) / secs))
      .raw("bytes_per_s", number(static_cast<double>(t.bytes_in_phase) / secs));
  w.key("latency_us").begin_object();
  for (auto [name, q] : {std::pair{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}})
    w.raw(name, number(static_cast<double>(r.lat.quantile(q)) / 1000.0));
  w.raw("max", number(static_cast<double>(r.lat.max()) / 1000.0)).end_object();
  if (r.ack_lat.count()) {
    w.key("ack_latency_us").begin_object();
    for (auto [name, q] : {std::pair{"p50", 0.5}, {"p90", 0.9}, {"p99", 0.99}, {"p999", 0.999}})
      w.raw(name, number(static_cast<double>(r.ack_lat.quantile(q)) / 1000.0));
    w.raw("max", number(static_cast<double>(r.ack_lat.max()) / 1000.0)).end_object();
  }
  w.key("server").begin_object().integer("pid", o.server_pid);
  if (r.after) {
    const double cpu = r.before ? r.after->cpu_s - r.before->cpu_s : r.after->cpu_s;
    w.raw("cpu_s", number(cpu))
        .integer("rss_kb", r.after->rss_kb)
        .integer("rss_peak_kb", r.after->rss_peak_kb);
    if (o.scenario == "connections" && r.open_connections)
      w.raw("rss_per_conn_kb", number(static_cast<double>(r.after->rss_kb - r.rss_base_kb) /
                                      static_cast<double>(r.open_connections)));
    else
      w.raw("rss_per_conn_kb", "null");
  } else {
    w.raw("cpu_s", "null")
        .raw("rss_kb", "null")
        .raw("rss_peak_kb", "null")
        .raw("rss_per_conn_kb", "null");
  }
  w.end_object();
  w.integer("open",
            static_cast<std::int64_t>(o.scenario == "connections" ? r.open_connections : t.ready))
      .integer("failed", static_cast<std::int64_t>(t.failed))
      .integer("disconnected", static_cast<std::int64_t>(t.disconnected))
      .integer("stalls", static_cast<std::int64_t>(t.stalls))
      .boolean("supported", r.supported);
  if (r.error.empty())
    w.raw("error", "null");
  else
    w.string("error", r.error);
  w.end_object();
  return out;
}

void human_report(std::ostream& os, const bench_options& o, const scenario_shape& shape,
                  const target& tgt, const result& r) {
  const auto& t = r.t;
  const double secs = r.measured_s > 0 ? r.measured_s : 1;
  os << "wsagent bench: " << o.scenario << " on " << o.url << " ("
     << (tgt.proto == target::protocol::native ? "native" : "MQTT 3.1.1") << " over "
     << (tgt.via == target::transport::ws ? "WebSocket" : "TCP") << ")\n";
  os << "  shape       " << shape.summary;
  if (o.scenario != "connections")
    os << ", " << shape.p.payload_size << " B, QoS " << shape.p.qos << ", "
       << (o.rate > 0 ? fixed(o.rate, 0) + " msg/s"
                      : "as fast as delivered (" + std::to_string(o.inflight) +
                            " in flight per publisher)");
  os << ", " << fixed(r.measured_s, 1) << " s\n";
  if (!r.supported)
    os << "  NOT SUPPORTED by the server: " << r.error << "\n";
  else if (!r.error.empty())
    os << "  error       " << r.error << "\n";
  if (o.scenario == "connections") {
    os << "  connections " << grouped(r.open_connections) << " open, " << grouped(t.failed)
       << " failed\n";
  } else {
    const std::uint64_t lost =
        t.expected_window > t.delivered_window ? t.expected_window - t.delivered_window : 0;
    os << "  messages    sent " << grouped(t.sent_window) << ", expected deliveries "
       << grouped(t.expected_window) << ", delivered " << grouped(t.delivered_window) << ", lost "
       << grouped(lost) << " ("
       << fixed(t.expected_window
                    ? 100.0 * static_cast<double>(lost) / static_cast<double>(t.expected_window)
                    : 0,
                3)
       << " %)\n";
    os << "  throughput  "
       << grouped(static_cast<std::uint64_t>(static_cast<double>(t.delivered_in_phase) / secs))
       << " msg/s delivered, " << fixed(static_cast<double>(t.bytes_in_phase) / secs / 1e6, 2)
       << " MB/s of payload\n";
    os << "  latency µs  p50 " << fixed(static_cast<double>(r.lat.quantile(0.5)) / 1000, 1)
       << "  p90 " << fixed(static_cast<double>(r.lat.quantile(0.9)) / 1000, 1) << "  p99 "
       << fixed(static_cast<double>(r.lat.quantile(0.99)) / 1000, 1) << "  p99.9 "
       << fixed(static_cast<double>(r.lat.quantile(0.999)) / 1000, 1) << "  max "
       << fixed(static_cast<double>(r.lat.max()) / 1000, 1) << "\n";
    if (r.ack_lat.count())
      os << "  ack µs      p50 " << fixed(static_cast<double>(r.ack_lat.quantile(0.5)) / 1000, 1)
         << "  p90 " << fixed(static_cast<double>(r.ack_lat.quantile(0.9)) / 1000, 1) << "  p99 "
         << fixed(static_cast<double>(r.ack_lat.quantile(0.99)) / 1000, 1) << "  p99.9 "
         << fixed(static_cast<double>(r.ack_lat.quantile(0.999)) / 1000, 1) << "  max "
         << fixed(static_cast<double>(r.ack_lat.max()) / 1000, 1) << "  (publish to ack)\n";
    if (t.stalls)
      os << "  stalls      " << t.stalls << " (deliveries stopped for 1 s: messages lost)\n";
  }
  if (r.after) {
    const double cpu = r.before ? r.after->cpu_s - r.before->cpu_s : r.after->cpu_s;
    os << "  server      pid " << o.server_pid << ", cpu " << fixed(cpu, 2) << " s ("
       << fixed(100 * cpu / secs, 0) << " % of a core), rss "
       << fixed(static_cast<double>(r.after->rss_kb) / 1024, 1) << " MiB, peak "
       << fixed(static_cast<double>(r.after->rss_peak_kb) / 1024, 1) << " MiB";
    if (o.scenario == "connections" && r.open_connections)
      os << ", "
         << fixed(static_cast<double>(r.after->rss_kb - r.rss_base_kb) /
                      static_cast<double>(r.open_connections),
                  2)
         << " KiB per connection";
    os << "\n";
  }
}

}  // namespace

void add_bench_command(CLI::App& app, bench_options& o) {
  auto* cmd = app.add_subcommand(
      "bench", "load generator: drive wsagent (native or MQTT) or an MQTT broker and measure it");
  cmd->add_option("--url", o.url,
                  "server: ws://host:port/path (native), mqtt://host:port (MQTT over TCP), "
                  "mqtt+ws://host:port/path (MQTT over WebSocket); over TLS: wss://, "
                  "mqtts://, mqtt+wss://")
      ->capture_default_str();
  cmd->add_option("-s,--scenario", o.scenario, "the load to apply")
      ->check(CLI::IsMember({"fan-in", "fan-out", "pairs", "wildcard", "connections", "qos1"}))
      ->capture_default_str();
  cmd->add_option("--publishers", o.publishers, "publishers (fan-in 100, wildcard 10)");
  cmd->add_option("--subscribers", o.subscribers, "subscribers (fan-out 1000, wildcard 100)");
  cmd->add_option("--pairs", o.pairs, "publisher/subscriber pairs (pairs, qos1: 100)");
  cmd->add_option("-c,--connections", o.connections, "idle connections (connections: 10000)");
  cmd->add_option("--tags", o.tags, "distinct tags (wildcard)")->capture_default_str();
  cmd->add_option("--ramp", o.ramp, "connections opened per second")->capture_default_str();
  cmd->add_option("--rate", o.rate,
                  "messages per second over all publishers; 0: as fast as delivered")
      ->capture_default_str();
  cmd->add_option("--inflight", o.inflight,
                  "with --rate 0: messages per publisher sent but not yet delivered")
      ->capture_default_str();
  cmd->add_option("--size", o.size, "payload bytes (at least 16: the send time)")
      ->capture_default_str();
  cmd->add_option("-q,--qos", o.qos, "QoS of publishes and subscriptions")
      ->check(CLI::Range(0, 1))
      ->capture_default_str();
  cmd->add_option("-d,--duration", o.duration, "measured seconds (connections: holding time)")
      ->capture_default_str();
  cmd->add_option("--warmup", o.warmup, "seconds of load before measuring")->capture_default_str();
  cmd->add_option("-T,--threads", o.threads, "event-loop threads of the generator")
      ->capture_default_str();
  cmd->add_option("--processes", o.processes,
                  "connections: spread the connections over this many processes (file limit)")
      ->capture_default_str();
  cmd->add_option("--source", o.sources,
                  "local addresses to connect from, comma-separated (127.0.0.1,127.0.0.2,...)");
  cmd->add_option("--server-pid", o.server_pid, "read the server's CPU time and memory from /proc");
  cmd->add_flag("--persistent", o.persistent,
                "subscribers keep persistent sessions (native: session=persistent; MQTT: clean "
                "session off), so QoS 1 messages go through the server's store");
  cmd->add_option("--token", o.token, "token (native: Authorization header; MQTT: password)")
      ->envname("WSAGENT_TOKEN");
  cmd->add_option("--cafile", o.cafile,
                  "TLS: verify the server's certificate against this CA file (PEM) and the "
                  "URL's host; without it the certificate is not checked");
  cmd->add_option("--sub-urls", o.sub_urls,
                  "cluster: subscribers connect to these URLs (comma-separated, round-robin; the "
                  "other nodes) and publishers to --url, so every message crosses nodes");
  cmd->add_flag("--json", o.json, "print only the JSON report line");
  cmd->add_flag("--quiet", o.quiet, "no progress line");
}

int run_bench(const bench_options& in) {
  bench_options o = in;
  std::string error;
  const auto tgt = parse_target(o.url, error);
  if (!tgt) {
    std::cerr << "wsagent bench: " << error << "\n";
    return 2;
  }
  for (const auto& u : split_list(o.sub_urls))
    if (!parse_target(u, error)) {
      std::cerr << "wsagent bench: --sub-urls: " << error << "\n";
      return 2;
    }
  if (o.scenario == "qos1") o.qos = std::max(o.qos, 1);
  const auto shape = make_shape(o);
  if (shape.p.conns.empty()) {
    std::cerr << "wsagent bench: unknown scenario '" << o.scenario << "'\n";
    return 2;
  }

  // Every connection is a file; the generator needs a few more for itself.
  const std::uint64_t limit = raise_file_limit();
  const int procs = o.scenario == "connections" ? std::max(1, o.processes) : 1;
  const std::uint64_t per_process = (shape.p.conns.size() + static_cast<std::size_t>(procs) - 1) /
                                    static_cast<std::size_t>(procs);
  if (per_process + 64 > limit) {
    std::cerr << "wsagent bench: this process may open at most " << limit
              << " files (RLIMIT_NOFILE, hard limit included) and " << grouped(per_process)
              << " connections need " << grouped(per_process + 64) << ". "
              << (o.scenario == "connections"
                      ? "Spread them over more processes with --processes " +
                            std::to_string(shape.p.conns.size() / (limit - 64) + 1) + "."
                      : std::string("Use fewer connections."))
              << "\n";
    return 1;
  }
  if (shape.p.conns.size() > 25000 && shape.p.sources.size() < 2)
    std::cerr << "wsagent bench: note: more than 25,000 connections from one address to one "
                 "port may exhaust the ephemeral ports; pass several --source addresses\n";

  const result r =
      o.scenario == "connections" ? run_connections(o, shape, *tgt) : run_messages(o, shape, *tgt);
  if (!o.json) human_report(std::cout, o, shape, *tgt, r);
  std::cout << json_report(o, shape, *tgt, r) << std::endl;
  if (!r.supported) return 1;
  if (o.scenario != "connections" && r.t.ready < shape.p.conns.size()) return 1;
  return 0;
}

}  // namespace wsagent::bench
