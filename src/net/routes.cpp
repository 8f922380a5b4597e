#include "net/routes.hpp"

#include <algorithm>

namespace wsagent::net {

void route_table::http(std::string path, http_handler handler) {
  http_[std::move(path)] = std::move(handler);
}

void route_table::websocket(websocket_route route) {
  auto path = route.path;
  websocket_[std::move(path)] = std::move(route);
}

const http_handler* route_table::find_http(std::string_view path) const {
  auto it = http_.find(path);
  return it == http_.end() ? nullptr : &it->second;
}

const websocket_route* route_table::find_websocket(std::string_view path) const {
  auto it = websocket_.find(path);
  return it == websocket_.end() ? nullptr : &it->second;
}

void route_table::origins(origin_policy policy,
                          std::function<void(const http_request&)> on_refused) {
  origins_ = std::move(policy);
  on_origin_refused_ = std::move(on_refused);
}

route_table route_table::only(const std::vector<std::string>& protocols) const {
  route_table out;
  out.http_ = http_;
  out.origins_ = origins_;
  out.on_origin_refused_ = on_origin_refused_;
  for (const auto& [path, r] : websocket_)
    if (std::find(protocols.begin(), protocols.end(), r.protocol) != protocols.end())
      out.websocket_.emplace(path, r);
  return out;
}

}  // namespace wsagent::net
