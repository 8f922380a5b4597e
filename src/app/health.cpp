#include "app/health.hpp"

#include "common/json_writer.hpp"

namespace wsagent::app {

net::http_handler health_handler(core::router& router, net::net_probe& net) {
  return [&router, &net](const net::http_request&) {
    const auto history = router.history_count();
    auto load = [](const auto& a) {
      return static_cast<std::int64_t>(a.load(std::memory_order_relaxed));
    };
    net::http_response r;
    r.content_type = "application/json";
    common::json_writer(r.body)
        .begin_object()
        .string("status", "ok")
        .integer("connections", load(net.open))
        .integer("sessions", static_cast<std::int64_t>(router.session_count()))
        .integer("subscriptions", static_cast<std::int64_t>(router.subscription_count()))
        .integer("retained", static_cast<std::int64_t>(router.retained_count()))
        .integer("dropped", load(net.dropped))
        .integer("qos1_dropped", load(router.probe.qos1_dropped))
        .integer("history_tags", static_cast<std::int64_t>(history.tags))
        .integer("history_messages", static_cast<std::int64_t>(history.entries))
        .integer("history_refused", static_cast<std::int64_t>(history.refused))
        .integer("frames_out", load(net.frames_out))
        .integer("writes", load(net.writes))
        .integer("read_pauses", load(net.read_pauses))
        .integer("slow_consumer_closes", load(net.slow_consumer_closes))
        .end_object();
    r.body.push_back('\n');
    return r;
  };
}

}  // namespace wsagent::app
