#pragma once
// The byte-stream layer: what a connection reads from and writes to. Plain TCP here; TLS
// (issue 13) brings a stream of its own with the same operations, and a connection is
// instantiated over each (net/stream_connection.hpp), so the pump above is written once.
//
// The operations are the ones the pump needs to keep an idle connection small: wait for
// readability without a buffer (async_wait_readable), then read what is there without
// blocking into a buffer of the I/O thread's (read_some). A TLS stream keeps its own record
// buffer: it answers "readable" at once when it has decrypted bytes left.
//
// Owner thread: the io_context the socket belongs to; none of this is thread-safe.

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace wsagent::net {

class tcp_stream {
 public:
  // The socket's executor is the concrete io_context one, not any_io_executor: 48 bytes
  // less in the socket and in every pending operation (an idle connection holds one).
  using socket_type = boost::asio::basic_stream_socket<boost::asio::ip::tcp,
                                                       boost::asio::io_context::executor_type>;
  using executor_type = boost::asio::io_context::executor_type;

  explicit tcp_stream(socket_type socket) : socket_(std::move(socket)) {}

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  static constexpr const char* kind() noexcept { return "tcp"; }

  // Before the first read: no delay, non-blocking reads.
  void start() {
    boost::system::error_code ec;
    socket_.set_option(boost::asio::ip::tcp::no_delay(true), ec);
    socket_.non_blocking(true, ec);
  }

  // `handler(error_code)` once bytes can be read.
  template <class Handler>
  void async_wait_readable(Handler&& handler) {
    socket_.async_wait(socket_type::wait_read, std::forward<Handler>(handler));
  }
  // What is there, without blocking (would_block / try_again when nothing is).
  std::size_t read_some(void* data, std::size_t size, boost::system::error_code& ec) {
    return socket_.read_some(boost::asio::buffer(data, size), ec);
  }
  // Reads into `data` as soon as bytes come (a buffer of the connection's own: an
  // unfinished frame).
  template <class Handler>
  void async_read_some(void* data, std::size_t size, Handler&& handler) {
    socket_.async_read_some(boost::asio::buffer(data, size), std::forward<Handler>(handler));
  }
  // Writes every byte of `buffers` (a gather write), then `handler(error_code, size)`.
  template <class Buffers, class Handler>
  void async_write(const Buffers& buffers, Handler&& handler) {
    boost::asio::async_write(socket_, buffers, std::forward<Handler>(handler));
  }

  void shutdown_send() {
    boost::system::error_code ec;
    socket_.shutdown(socket_type::shutdown_send, ec);
  }
  void close() {
    boost::system::error_code ec;
    socket_.close(ec);
  }

  // "address:port" of the peer ("" when unknown).
  std::string remote() const { return remote_of(socket_); }

  // The same, of any socket of this type (the TLS stream's too).
  static std::string remote_of(const socket_type& socket) {
    boost::system::error_code ec;
    auto ep = socket.remote_endpoint(ec);
    if (ec) return {};
    return ep.address().to_string() + ":" + std::to_string(ep.port());
  }

 private:
  socket_type socket_;
};

}  // namespace wsagent::net
