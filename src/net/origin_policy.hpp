#pragma once
// Which web pages may open a WebSocket to the agent (server.allowed_origins): a browser sends
// the page's Origin with every upgrade, and without this check any site a developer visits
// could drive an agent on their machine or network with the browser's own reach
// (cross-site WebSocket hijacking). Clients that are not browsers send no Origin and are not
// affected. docs/configuration.md, "Browsers: allowed origins".
//
// Entries: "self" (the page comes from the host the request names in Host: the agent's own
// pages, a reverse proxy in front of it), "loopback" (pages served from this machine:
// http(s)://localhost, 127.0.0.0/8, [::1], any port), an exact origin
// ("https://dash.example.com", "http://10.0.0.5:3000"), a pattern with one "*" label
// ("https://*.example.com": any subdomain, not the domain itself; any port when it ends in
// ":*"), or "*" (any page: only for agents meant to be reached by any site). The default is
// ["self", "loopback"].
//
// Immutable once built: any thread.

#include <string>
#include <string_view>
#include <vector>

namespace wsagent::net {

class origin_policy {
 public:
  origin_policy();  // the default
  explicit origin_policy(std::vector<std::string> entries);

  // Whether a page at `origin` may upgrade a request whose Host header is `host`.
  bool allows(std::string_view origin, std::string_view host) const;

  // "" when `entry` is one of the forms above, else what is wrong with it.
  static std::string check_entry(std::string_view entry);

 private:
  std::vector<std::string> entries_;
};

}  // namespace wsagent::net
