#pragma once
// What a listener serves, filled by app (src/app/serve.cpp): the HTTP endpoints (each a
// handler: /healthz, /metrics, and the later admin and dashboard routes) and the WebSocket
// routes (a path, the subprotocols it speaks, and the factory of the protocol adapter that
// serves an upgraded connection), and for a raw TCP listener (MQTT) the adapter factory of
// its connections. The connection only looks things up here: no endpoint is a branch in it.
//
// Built before serving and read-only afterwards: any thread may read it.

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "net/http.hpp"
#include "net/origin_policy.hpp"
#include "protocol/client_adapter.hpp"

namespace wsagent::net {

// Makes the adapter of one connection. `request`: the upgrade request (null on a raw
// stream); `remote`: "address:port", owned by the connection, which outlives the adapter.
using adapter_factory = std::function<std::unique_ptr<protocol::client_adapter>(
    protocol::transport_link& link, const http_request* request, std::string_view remote)>;

using http_handler = std::function<http_response(const http_request& request)>;

struct websocket_route {
  std::string path;      // "/ws"
  std::string protocol;  // its listener protocol name: "ws", "mqtt-ws", "echo"
  // Subprotocols it answers, preferred first ("mqtt", "mqttv3.1"); empty: none. A client
  // that offers some, none of them these, is refused (400).
  std::vector<std::string> subprotocols;
  // The agent keeps the connection alive with WebSocket pings (the native protocol); false
  // when the protocol keeps itself alive (MQTT's PINGREQ), whose pongs would count as the
  // client's activity.
  bool pings = true;
  // A close frame with 1000 from the client is its clean goodbye (its will is not sent);
  // false when the protocol says goodbye in its own words (MQTT's DISCONNECT).
  bool close_1000_is_goodbye = true;
  adapter_factory factory;
};

class route_table {
 public:
  void http(std::string path, http_handler handler);
  void websocket(websocket_route route);

  const http_handler* find_http(std::string_view path) const;
  const websocket_route* find_websocket(std::string_view path) const;
  bool has_websocket() const noexcept { return !websocket_.empty(); }
  // A copy with the WebSocket routes of these listener protocols only (and every HTTP one).
  route_table only(const std::vector<std::string>& protocols) const;

  // The pages that may open a WebSocket (their Origin), and who hears of one refused (the
  // audit log): server.allowed_origins.
  void origins(origin_policy policy, std::function<void(const http_request&)> on_refused);
  const origin_policy& origins() const noexcept { return origins_; }
  void origin_refused(const http_request& r) const {
    if (on_origin_refused_) on_origin_refused_(r);
  }

 private:
  origin_policy origins_;
  std::function<void(const http_request&)> on_origin_refused_;
  std::map<std::string, http_handler, std::less<>> http_;
  std::map<std::string, websocket_route, std::less<>> websocket_;
};

}  // namespace wsagent::net
