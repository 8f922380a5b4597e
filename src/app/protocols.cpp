#include "app/protocols.hpp"

#include <charconv>

#include "protocol/echo_adapter.hpp"
#include "protocol/mqtt/adapter.hpp"
#include "protocol/native/adapter.hpp"

namespace wsagent::app {

namespace {

// What a native client's upgrade request says: a token (Authorization: Bearer, or ?token=
// for browsers, which cannot set headers), a client id, binary frames, a persistent
// session (docs/protocol.md, "Connecting and authenticating").
protocol::native::upgrade_info native_upgrade(const net::http_request& req) {
  protocol::native::upgrade_info info;
  const auto authz = req.header("Authorization");
  if (authz.size() > 7 && (authz.substr(0, 7) == "Bearer " || authz.substr(0, 7) == "bearer "))
    info.token = std::string(authz.substr(7));
  if (info.token.empty()) info.token = req.param("token");
  info.client_id = req.param("clientId");
  if (info.client_id.empty()) info.client_id = req.param("deviceId");
  const auto binary = req.param("binary");
  info.binary = binary == "1" || binary == "true";
  if (req.param("session") == "persistent") {
    info.session.persistent = true;
    const auto expiry = req.param("expiry");
    std::int64_t seconds = 0;
    auto [end, ec] = std::from_chars(expiry.data(), expiry.data() + expiry.size(), seconds);
    if (ec == std::errc() && end == expiry.data() + expiry.size() && seconds > 0 &&
        seconds <= 365 * 24 * 3600)
      info.session.expiry_s = seconds;
  }
  return info;
}

}  // namespace

net::served_protocols make_protocols(protocol::adapter_context& ctx, const config& cfg,
                                     const endpoint_factory& endpoints) {
  net::served_protocols p;
  const auto max_packet = static_cast<std::size_t>(cfg.limits.max_message_size);
  net::websocket_route native;
  native.path = "/ws";
  native.protocol = "ws";
  native.factory = [&ctx](protocol::transport_link& link, const net::http_request* req,
                          std::string_view remote) -> std::unique_ptr<protocol::client_adapter> {
    auto info = native_upgrade(*req);
    info.remote = remote;
    return std::make_unique<protocol::native::adapter>(ctx, link, std::move(info));
  };
  p.routes.websocket(std::move(native));
  net::websocket_route mqtt_ws;
  mqtt_ws.path = "/mqtt";
  mqtt_ws.protocol = "mqtt-ws";
  // "mqtt" (MQTT 3.1.1 and 5.0's name); older clients offer "mqttv3.1".
  mqtt_ws.subprotocols = {"mqtt", "mqttv3.1"};
  mqtt_ws.pings = false;  // MQTT keeps itself alive (PINGREQ within 1.5 x keep alive)
  mqtt_ws.close_1000_is_goodbye = false;  // MQTT says goodbye with DISCONNECT
  mqtt_ws.factory = [&ctx, max_packet](
                        protocol::transport_link& link, const net::http_request*,
                        std::string_view remote) -> std::unique_ptr<protocol::client_adapter> {
    return std::make_unique<protocol::mqtt::adapter>(ctx, link, remote, max_packet, true);
  };
  p.routes.websocket(std::move(mqtt_ws));
  net::websocket_route echo;
  echo.path = "/echo";
  echo.protocol = "echo";
  echo.factory = [](protocol::transport_link& link, const net::http_request*,
                    std::string_view) -> std::unique_ptr<protocol::client_adapter> {
    return std::make_unique<protocol::echo_adapter>(link);
  };
  p.routes.websocket(std::move(echo));
  p.raw["mqtt"] = [&ctx, max_packet](
                      protocol::transport_link& link, const net::http_request*,
                      std::string_view remote) -> std::unique_ptr<protocol::client_adapter> {
    return std::make_unique<protocol::mqtt::adapter>(ctx, link, remote, max_packet, false);
  };
  p.routes.origins(
      cfg.server.allowed_origins.empty() ? net::origin_policy()
                                         : net::origin_policy(cfg.server.allowed_origins),
      [&ctx](const net::http_request& r) {
        ctx.audit.record(core::audit_event::forbidden, {}, r.remote,
                         "WebSocket upgrade from origin " + std::string(r.header("Origin")) +
                             " to " + std::string(r.path) + " refused (server.allowed_origins)");
      });
  if (endpoints) endpoints(p.routes);
  return p;
}

}  // namespace wsagent::app
