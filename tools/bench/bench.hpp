#pragma once
// `wsagent bench`: the load generator. It drives wsagent (its native protocol, or MQTT 3.1.1
// over TCP or WebSocket) and any MQTT 3.1.1 broker with the same scenarios, and reports
// throughput, end-to-end latency and the server's CPU and memory (docs/benchmarks.md).

#include <sys/types.h>
#include <string>

namespace CLI {
class App;
}

namespace wsagent::bench {

struct bench_options {
  std::string url = "ws://127.0.0.1:8080/ws";
  std::string scenario = "pairs";
  int publishers = 0;  // 0: the scenario's default
  int subscribers = 0;
  int pairs = 0;
  int connections = 0;
  int tags = 1000;
  double ramp = 5000;  // connections opened per second
  double rate = 0;     // messages per second over all publishers; 0: as fast as delivered
  int size = 16;
  int qos = 0;
  double duration = 10;
  double warmup = 2;
  int threads = 1;
  int processes = 1;    // `connections`: spread the connections over this many processes
  int inflight = 100;   // closed loop: messages in flight per publisher
  std::string sources;  // comma-separated local addresses
  pid_t server_pid = 0;
  std::string token;
  std::string cafile;  // TLS: check the server's certificate against it ("" not checked)
  // Subscribers connect to these (round-robin) instead of `url`: other nodes of a cluster.
  std::string sub_urls;
  bool persistent = false;
  bool json = false;
  bool quiet = false;
  int child_fd = -1;  // internal: a `connections` helper process reports on this fd
};

void add_bench_command(CLI::App& app, bench_options& o);

// Exit codes: 0 the run completed (loss is reported, not an error), 1 the run could not be
// made (bad options, the server unreachable or refusing the scenario), 2 usage.
int run_bench(const bench_options& o);

}  // namespace wsagent::bench
