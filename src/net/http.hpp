#pragma once
// HTTP, as the agent speaks it: one request per connection, read from the bytes the
// connection receives (Beast's parser, fed a buffer at a time: no stream of its own), then
// either a reply (an endpoint such as /healthz) or a WebSocket upgrade. Pure: bytes in, a
// request out; responses are bytes for the connection's write queue.
//
// Limits: an 8 KiB header, no body.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsagent::net {

// A parsed request, as routes and adapter factories see it. Valid while its reader lives.
class http_request {
 public:
  std::string_view method;
  std::string_view target;  // path and query
  std::string_view path;
  std::string_view query;   // after '?', "" when none
  std::string_view remote;  // "address:port"
  // A header's value ("" when absent; names are case-insensitive).
  std::string_view header(std::string_view name) const;
  // A query parameter, percent-decoded ("" when absent).
  std::string param(std::string_view name) const;
  // The request asks for a WebSocket upgrade (Connection: upgrade, Upgrade: websocket).
  bool is_websocket_upgrade() const;

 private:
  friend class http_request_reader;
  const void* impl_ = nullptr;  // Beast's request
};

struct http_response {
  unsigned status = 200;
  std::string body;
  std::string content_type = "text/plain";
  std::vector<std::pair<std::string, std::string>> headers;  // more, as they are
};

// The bytes of `r` (HTTP/1.1, Connection: close, with its Content-Length).
std::string serialize(const http_response& r);

// Reads one request from the bytes given to it.
class http_request_reader {
 public:
  http_request_reader();
  ~http_request_reader();
  http_request_reader(const http_request_reader&) = delete;
  http_request_reader& operator=(const http_request_reader&) = delete;

  enum class state { need_more, done, error };
  // Takes what it can of `data`; `used` says how much (the rest, after a complete request,
  // is what the client sent after it: pipelined WebSocket frames). On error, `error()`
  // says why (a header too large, a malformed request, a body).
  state feed(const std::uint8_t* data, std::size_t size, std::size_t& used);
  const std::string& error() const noexcept { return error_; }
  // After done: the request (`remote` is the caller's to set).
  const http_request& request() const noexcept { return request_; }
  http_request& request() noexcept { return request_; }

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
  http_request request_;
  std::string error_;
};

// Percent-decodes a query value ('+' is a space).
std::string percent_decode(std::string_view s);

}  // namespace wsagent::net
