#pragma once
// The HTTP side of a connection: what the agent answers a request, given the listener's
// routes. An HTTP endpoint's reply; a WebSocket upgrade (RFC 6455 section 4.2: version 13,
// a valid key, a subprotocol the route speaks when the client offers any) answered 101 with
// the route to hand the connection to; or a refusal (404, 405, 426, 400, and 403 for an
// Origin that routes.origins() does not allow). Pure: request in,
// response bytes out.

#include <string>
#include <string_view>

#include "net/http.hpp"
#include "net/routes.hpp"

namespace wsagent::net {

struct request_answer {
  std::string response;                    // the bytes to send
  const websocket_route* route = nullptr;  // set: upgraded, hand the connection to it
  bool origin_refused = false;             // 403: the page's Origin is not allowed
};

request_answer answer_request(const http_request& request, const route_table& routes);

// Sec-WebSocket-Accept for `key` (RFC 6455 section 4.2.2).
std::string websocket_accept_key(std::string_view key);

}  // namespace wsagent::net
