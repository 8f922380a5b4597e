#pragma once
// One connection to a Redis server, on the cluster's own thread (docs/cluster.md, "The Redis
// client"): commands are pipelined (appended to one write buffer, written while the previous
// write is in flight), replies are read with resp_reader and handed to each command's
// handler in order, pub/sub pushes to the push handler. The I/O threads never touch it: the
// cluster hands it work by posting to its thread.
//
// A connection is not reopened: when it fails (the server closes it, an error, no reply
// within reply_timeout_ms, a stream that is not RESP) every command still waiting gets a
// `connection lost` error reply and `closed` runs once; its owner makes a new one. A
// connection that has been silent for probe_idle_ms sends a PING, so that one wedged with its
// socket open (seen after failovers, every health check green) is found by the reply
// timeout instead of waiting forever.
//
// An endpoint with tls (rediss://) is reached over TLS (Asio's OpenSSL stream over the same
// socket), its certificate verified against the context's CAs and the host name.
//
// Thread: every member, and every handler, on the io_context's thread.

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "cluster/resp.hpp"

namespace boost::asio {
class io_context;
namespace ssl {
class context;
}
}  // namespace boost::asio

namespace wsagent::cluster {

// Where a Redis is and how to log in: from a redis:// URL.
struct redis_endpoint {
  std::string host = "127.0.0.1";
  std::uint16_t port = 6379;
  std::string user;      // an ACL user ("": the default user)
  std::string password;  // "": no AUTH
  int db = 0;
  bool tls = false;  // rediss://: TLS, the certificate checked against the host name

  std::string describe() const;  // host:port/db, no credentials
};

// "redis://[[user]:password@]host[:port][/db]", or rediss:// for TLS; a host in brackets for
// IPv6. Returns what is wrong, or "" with `out` filled.
std::string parse_redis_url(std::string_view url, redis_endpoint& out);

struct redis_settings {
  int connect_timeout_ms = 3000;  // the TLS handshake included
  int reply_timeout_ms = 5000;    // the oldest command without a reply: the connection is dead
  int probe_idle_ms = 2000;       // silent this long: PING
  // For an endpoint with tls: the client context (trusted CAs, and a client certificate when
  // Redis asks for one: tls-auth-clients). Made by make_redis_tls.
  std::shared_ptr<boost::asio::ssl::context> tls;
};

// A TLS client context for Redis: TLS 1.2 or newer, the server's certificate verified against
// `ca_file` (PEM; "" = the system's trusted certificates), and `cert_file` / `key_file` (PEM)
// presented when given. Returns null with `error` naming the file and the cause.
std::shared_ptr<boost::asio::ssl::context> make_redis_tls(const std::string& ca_file,
                                                          const std::string& cert_file,
                                                          const std::string& key_file,
                                                          std::string& error);

class redis_connection {
 public:
  using reply_handler = std::function<void(const resp_value&)>;
  struct callbacks {
    std::function<void()> ready;                     // logged in; commands may flow
    std::function<void(const std::string&)> closed;  // why; once, not after close()
    std::function<void(const resp_value&)> push;     // pub/sub pushes (message, subscribe...)
  };

  // `name` is set with CLIENT SETNAME (what CLIENT LIST shows an operator).
  static std::shared_ptr<redis_connection> create(boost::asio::io_context& io, redis_endpoint where,
                                                  std::string name, callbacks cb,
                                                  redis_settings settings = {});
  virtual ~redis_connection() = default;

  // Connects and logs in (AUTH, SELECT, CLIENT SETNAME), then `ready`.
  virtual void start() = 0;
  // Queues one command; its reply (or a `connection lost` error) goes to `h` (may be empty).
  // Commands sent before `ready` go after the login. (S)SUBSCRIBE and (S)UNSUBSCRIBE take
  // no handler: they are answered by pushes, one per channel, to `push`.
  virtual void send(std::span<const std::string_view> args, reply_handler h = {}) = 0;
  void send(std::initializer_list<std::string_view> args, reply_handler h = {}) {
    send(std::span<const std::string_view>(args.begin(), args.size()), std::move(h));
  }
  // Closes now; waiting commands get `connection lost`; `closed` is not called.
  virtual void close() = 0;
  virtual bool is_ready() const = 0;
  // Commands sent and not yet answered.
  virtual std::size_t waiting() const = 0;
};

// The error text of the reply a waiting command gets when its connection fails.
inline constexpr std::string_view connection_lost = "WSAGENT connection lost";

}  // namespace wsagent::cluster
