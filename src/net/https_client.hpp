#pragma once
// A small HTTPS client for what the agent fetches itself (a JWKS document from its issuer):
// one GET, the server's certificate verified against a CA file or the system's trust store
// and its name checked, a timeout on the whole exchange, a bound on the body. Blocking: for
// a thread of its own (auth/jwks_refresher.hpp), never an I/O thread. Redirects are not
// followed (an answer other than 200 is an error).

#include <cstddef>
#include <string>

namespace wsagent::net {

struct https_result {
  bool ok = false;
  std::string body;   // when ok
  std::string error;  // when not: what went wrong, for the log
};

struct https_options {
  std::string ca_file;  // PEM; "" = the system's trust store
  int timeout_ms = 5000;
  std::size_t max_body = 1 << 20;
};

// GET `url` ("https://host[:port]/path").
https_result https_get(const std::string& url, const https_options& options = {});

}  // namespace wsagent::net
