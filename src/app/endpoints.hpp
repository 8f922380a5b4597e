#pragma once
// The agent's HTTP endpoints, each a handler of the route table (net/routes.hpp) that reads
// the metrics registry (common/metrics.hpp): GET /healthz, a JSON summary while it serves
// (docs/operations.md, "Health"), and GET /metrics, every figure in the Prometheus text format
// (docs/operations.md, "Metrics").

#include <cstdint>
#include <functional>
#include <string>

#include "common/metrics.hpp"
#include "net/routes.hpp"

namespace wsagent::app {

net::http_handler health_handler(const common::metrics_registry& metrics);
net::http_handler metrics_handler(const common::metrics_registry& metrics);
// GET /readyz: 200 {"ready":true,"cluster":...} while the agent serves its whole tag space;
// 503 when clustered and cut off from Redis. `cluster_state` says "off" (not clustered),
// "connected" or "connecting" (docs/operations.md, "Health").
net::http_handler ready_handler(std::function<std::string()> cluster_state);

// The process's own figures: its version, and when it started (wall clock, ms).
void write_process_metrics(common::metric_set& out, std::int64_t started_ms);

}  // namespace wsagent::app
