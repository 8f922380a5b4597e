#include "net/websocket_upgrade.hpp"

#include <openssl/sha.h>

#include "common/base64.hpp"
#include "common/text.hpp"

namespace wsagent::net {

namespace {

request_answer refuse(unsigned status, std::string body,
                      std::vector<std::pair<std::string, std::string>> headers = {}) {
  http_response r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return {serialize(r), nullptr};
}

}  // namespace

std::string websocket_accept_key(std::string_view key) {
  static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string s(key);
  s.append(guid);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest);
  return common::base64_encode(
      std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

request_answer answer_request(const http_request& request, const route_table& routes) {
  const bool upgrade = request.is_websocket_upgrade();
  if (!upgrade)
    if (const auto* handler = routes.find_http(request.path)) {
      if (request.method != "GET" && request.method != "HEAD")
        return refuse(405, "method not allowed\n");
      return {serialize((*handler)(request)), nullptr};
    }
  const auto* route = routes.find_websocket(request.path);
  if (!route) return refuse(404, "not found\n");
  if (!upgrade) return refuse(426, "this endpoint speaks WebSocket: send an upgrade request\n");
  if (request.header("Sec-WebSocket-Version") != "13")
    return refuse(426, "unsupported WebSocket version: 13 is required\n",
                  {{"Sec-WebSocket-Version", "13"}});
  const auto key = request.header("Sec-WebSocket-Key");
  auto decoded = common::base64_decode(key);
  if (!decoded || decoded->size() != 16) return refuse(400, "bad Sec-WebSocket-Key\n");
  // A browser's page (clients that are not browsers send no Origin).
  if (const auto origin = request.header("Origin");
      !origin.empty() && !routes.origins().allows(origin, request.header("Host"))) {
    auto answer =
        refuse(403, "origin not allowed: " + std::string(origin) + " (server.allowed_origins)\n");
    answer.origin_refused = true;
    return answer;
  }
  // The client may offer subprotocols; the route answers the first of its own it finds.
  std::string_view chosen;
  const auto offered = request.header("Sec-WebSocket-Protocol");
  if (!route->subprotocols.empty() && !offered.empty()) {
    for (const auto& mine : route->subprotocols) {
      common::for_each_list_item(offered, ',', [&](std::string_view item) {
        if (chosen.empty() && item == mine) chosen = mine;
      });
      if (!chosen.empty()) break;
    }
    if (chosen.empty())
      return refuse(400, std::string(request.path) + " speaks the WebSocket subprotocol \"" +
                             route->subprotocols.front() + "\"\n");
  }
  http_response r;
  r.status = 101;
  r.headers = {{"Upgrade", "websocket"},
               {"Connection", "Upgrade"},
               {"Sec-WebSocket-Accept", websocket_accept_key(key)}};
  if (!chosen.empty()) r.headers.emplace_back("Sec-WebSocket-Protocol", std::string(chosen));
  return {serialize(r), route};
}

}  // namespace wsagent::net
