#include "app/endpoints.hpp"

#include "common/json_writer.hpp"

namespace wsagent::app {

net::http_handler health_handler(const common::metrics_registry& metrics) {
  return [&metrics](const net::http_request&) {
    const auto m = metrics.collect();
    auto figure = [&](std::string_view name, std::string_view labels = {}) {
      return static_cast<std::int64_t>(m.value(name, labels));
    };
    net::http_response r;
    r.content_type = "application/json";
    common::json_writer(r.body)
        .begin_object()
        .string("status", "ok")
        .integer("connections", static_cast<std::int64_t>(m.sum("wsagent_connections")))
        .integer("sessions", figure("wsagent_sessions"))
        .integer("subscriptions", figure("wsagent_subscriptions"))
        .integer("retained", figure("wsagent_retained_messages"))
        .integer("dropped",
                 figure("wsagent_messages_dropped_total", R"({reason="outbound_queue"})"))
        .integer("qos1_dropped",
                 figure("wsagent_messages_dropped_total", R"({reason="session_queue"})"))
        .integer("history_tags", figure("wsagent_history_tags"))
        .integer("history_messages", figure("wsagent_history_messages"))
        .integer("history_refused", figure("wsagent_history_refused_total"))
        .integer("frames_out", figure("wsagent_frames_sent_total"))
        .integer("writes", figure("wsagent_writes_total"))
        .integer("read_pauses", figure("wsagent_read_pauses_total"))
        .integer("slow_consumer_closes", figure("wsagent_slow_consumer_closes_total"))
        .end_object();
    r.body.push_back('\n');
    return r;
  };
}

net::http_handler ready_handler(std::function<std::string()> cluster_state) {
  return [cluster_state = std::move(cluster_state)](const net::http_request&) {
    const auto state = cluster_state();
    const bool ready = state != "connecting";
    net::http_response r;
    r.status = ready ? 200 : 503;
    r.content_type = "application/json";
    common::json_writer(r.body)
        .begin_object()
        .boolean("ready", ready)
        .string("cluster", state)
        .end_object();
    r.body.push_back('\n');
    return r;
  };
}

net::http_handler metrics_handler(const common::metrics_registry& metrics) {
  return [&metrics](const net::http_request&) {
    net::http_response r;
    r.content_type = std::string(common::prometheus_content_type);
    r.body = metrics.collect().text();
    return r;
  };
}

void write_process_metrics(common::metric_set& out, std::int64_t started_ms) {
  out.gauge("build_info", "The agent's version (the value is 1).", 1,
            {{"version", WSAGENT_VERSION_STRING}});
  out.gauge("start_time_seconds", "When the agent started, in seconds since the Unix epoch.",
            static_cast<double>(started_ms) / 1000.0);
}

}  // namespace wsagent::app
