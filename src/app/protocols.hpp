#pragma once
// What the agent serves on its listeners, wired here and nowhere else: the WebSocket routes
// (/ws: the native protocol; /mqtt: MQTT over WebSocket; /echo: diagnostics) with the
// factories of their adapters, MQTT over raw TCP, and the HTTP endpoints (/healthz,
// /metrics).

#include <functional>

#include "app/config.hpp"
#include "net/server.hpp"
#include "protocol/client_adapter.hpp"

namespace wsagent::app {

// Reads the agent's figures for an HTTP endpoint.
using endpoint_factory = std::function<void(net::route_table&)>;

net::served_protocols make_protocols(protocol::adapter_context& ctx, const config& cfg,
                                     const endpoint_factory& endpoints);

}  // namespace wsagent::app
