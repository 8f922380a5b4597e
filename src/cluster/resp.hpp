#pragma once
// RESP, the Redis protocol, for the cluster's own connections to Redis (docs/cluster.md,
// "The Redis client"). Replies are read with hiredis's reader (Debian's hiredis 0.14): its
// async API cannot carry sharded pub/sub (it aborts the process on the first `smessage`), so
// the cluster's connections run their own loop and hand the bytes they read to this reader.
// Commands are written by append_command: a RESP array of bulk strings appended to the
// connection's write buffer, so that a pipeline of PUBLISHes costs no allocation per command
// (hiredis's redisFormatCommandArgv mallocs a buffer for each).
//
// Replies are untrusted input (a Redis, or whatever answers on its port): resp_reader is
// fuzzed (tests/fuzz/resp_fuzz.cpp). Not thread-safe: one reader per connection.

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

struct redisReader;

namespace wsagent::cluster {

struct resp_value {
  enum class kind { nil, string, status, error, integer, array };
  kind type = kind::nil;
  std::string text;  // string, status, error
  long long integer = 0;
  std::vector<resp_value> elements;  // array

  bool is(kind k) const noexcept { return type == k; }
  // A pub/sub push: ["message", channel, payload], ["smessage", channel, payload],
  // ["subscribe", channel, count]...: the first element's text, "" when not such an array.
  std::string_view push_kind() const noexcept;
};

// Appends `args` as one command (a RESP array of bulk strings) to `out`.
void append_command(std::string& out, std::span<const std::string_view> args);
void append_command(std::string& out, std::initializer_list<std::string_view> args);

// The most elements a reply's array may claim (a Redis answers the cluster's commands with
// far fewer); more is an error of the stream.
inline constexpr std::size_t max_array_elements = 1 << 20;

class resp_reader {
 public:
  resp_reader();
  ~resp_reader();
  resp_reader(const resp_reader&) = delete;
  resp_reader& operator=(const resp_reader&) = delete;

  // The bytes read from the connection, in order.
  void feed(const char* data, std::size_t size);

  enum class status { value, need_more, error };
  // The next complete reply into `out`; `error`: the stream is not RESP (the connection
  // must be dropped: nothing after it can be trusted), error() says why.
  status next(resp_value& out);
  const std::string& error() const noexcept { return error_; }

 private:
  redisReader* reader_;
  std::string error_;
};

}  // namespace wsagent::cluster
