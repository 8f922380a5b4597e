#pragma once
// A connection over one kind of byte stream (net/tcp_stream.hpp; TLS in issue 13): the
// stream operations of the pump, bound to that stream, with the stream held inline (no
// allocation of its own, nothing more in an idle connection). Everything else is
// connection's, compiled once whatever the stream.

#include <boost/asio/buffer.hpp>
#include <iterator>
#include <memory>
#include <span>
#include <string>
#include <utility>

#include "net/connection.hpp"

namespace wsagent::net {

// The write queue's buffers as an Asio buffer sequence, without a copy of them (Asio keeps
// the sequence in the operation: a vector would be copied, and allocated, per write).
class gather_view {
 public:
  class iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = boost::asio::const_buffer;
    using difference_type = std::ptrdiff_t;
    using pointer = const boost::asio::const_buffer*;
    using reference = boost::asio::const_buffer;
    iterator() = default;
    explicit iterator(const outbound_queue::buffer* p) : p_(p) {}
    boost::asio::const_buffer operator*() const { return {p_->data, p_->size}; }
    iterator& operator++() {
      ++p_;
      return *this;
    }
    iterator operator++(int) {
      auto old = *this;
      ++p_;
      return old;
    }
    bool operator==(const iterator&) const = default;

   private:
    const outbound_queue::buffer* p_ = nullptr;
  };
  explicit gather_view(std::span<const outbound_queue::buffer> b) : b_(b) {}
  iterator begin() const { return iterator(b_.data()); }
  iterator end() const { return iterator(b_.data() + b_.size()); }

 private:
  std::span<const outbound_queue::buffer> b_;
};

template <class Stream>
class stream_connection final : public connection {
 public:
  stream_connection(const connection_env& env, Stream stream, std::string ip, io_thread& thread)
      : connection(env, stream.get_executor(), std::move(ip), thread), stream_(std::move(stream)) {}

 private:
  std::shared_ptr<stream_connection> self() {
    return std::static_pointer_cast<stream_connection>(shared_from_this());
  }

  void stream_start() override { stream_.start(); }
  void stream_wait_readable() override {
    stream_.async_wait_readable(
        [self = self()](boost::system::error_code ec) { self->readable(ec); });
  }
  std::size_t stream_read(void* data, std::size_t size, boost::system::error_code& ec) override {
    return stream_.read_some(data, size, ec);
  }
  void stream_read_into(void* data, std::size_t size) override {
    stream_.async_read_some(
        data, size,
        [self = self()](boost::system::error_code ec, std::size_t n) { self->read_done(ec, n); });
  }
  void stream_write(std::span<const outbound_queue::buffer> buffers) override {
    stream_.async_write(gather_view(buffers), [self = self()](boost::system::error_code ec,
                                                              std::size_t) { self->written(ec); });
  }
  void stream_shutdown_send() override { stream_.shutdown_send(); }
  void stream_close() override { stream_.close(); }
  std::string stream_remote() const override { return stream_.remote(); }
  const core::certificate_identity* stream_peer_certificate() override {
    if constexpr (requires(Stream & s) { s.peer_certificate(); })
      return stream_.peer_certificate();
    else
      return nullptr;
  }

  Stream stream_;
};

}  // namespace wsagent::net
