#pragma once
// A small blocking WebSocket client for the command-line tools (`wsagent pub`, `wsagent
// sub`), on Beast's client stream: an independent implementation of RFC 6455 that also
// checks the agent's own frame layer from the other side.

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace wsagent::cli {

struct endpoint {
  std::string host = "127.0.0.1";
  std::string port = "8080";
  std::string target = "/ws";
};

// Parses ws://host:port/path; nullopt when it is not such a URL.
std::optional<endpoint> parse_url(const std::string& url);

struct received {
  bool binary = false;
  std::string data;
};

class ws_client {
 public:
  ws_client();
  ~ws_client();

  // Throws std::runtime_error with a readable message on failure.
  void connect(const endpoint& ep, const std::string& bearer_token);
  void send_text(const std::string& text);
  void send_binary(const std::string& bytes);
  // Waits for one message until `timeout` (nullopt: forever). Returns nullopt on timeout;
  // throws closed_error when the agent closed the connection.
  std::optional<received> read(std::optional<std::chrono::milliseconds> timeout);
  void close();

  struct closed_error : std::runtime_error {
    closed_error(int c, std::string r)
        : std::runtime_error("connection closed by the agent: " + std::to_string(c) + " " + r),
          code(c),
          reason(std::move(r)) {}
    int code;
    std::string reason;
  };

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace wsagent::cli
