#pragma once
// The TLS byte stream: the operations of tcp_stream (net/tcp_stream.hpp), over an OpenSSL
// SSL object that reads and writes the non-blocking socket itself, with Asio only telling
// it when the socket is readable or writable.
//
// Why not asio::ssl::stream: it keeps two 17 KiB buffers per stream for as long as the
// stream lives, on top of OpenSSL's own. Here the SSL object owns its record buffers and is
// asked to give them back when the connection is idle (SSL_MODE_RELEASE_BUFFERS,
// net/tls_context.cpp), and the only buffer of the stream's own is the unsent rest of a
// write the socket could not take. (Measured: an idle TLS connection is still about 17 KiB
// against 2.2 KiB plain, most of it OpenSSL's per-connection state: work in progress.)
//
// Writes: the frames of one gather write are copied into one buffer and handed to OpenSSL
// in one SSL_write, so they leave in as few records as their size allows (16 KiB each),
// not one per frame.
//
// The handshake runs on the first wait for readability, bounded by the listener's
// handshake timeout (a timer that exists only while it runs).
//
// OpenSSL writes the socket with write(2): the process ignores SIGPIPE (app/serve.cpp).
//
// Owner thread: the io_context of the socket, as tcp_stream.

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <spdlog/spdlog.h>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "net/tcp_stream.hpp"
#include "net/tls_context.hpp"

namespace wsagent::net {

class tls_stream {
 public:
  using socket_type = tcp_stream::socket_type;
  using executor_type = tcp_stream::executor_type;

  tls_stream(socket_type socket, tls_context& context)
      : socket_(std::move(socket)), context_(&context), ssl_(context.new_ssl()) {}
  tls_stream(tls_stream&& o) noexcept
      : socket_(std::move(o.socket_)),
        context_(o.context_),
        ssl_(std::exchange(o.ssl_, nullptr)),
        pending_(std::move(o.pending_)),
        timer_(std::move(o.timer_)),
        identity_(std::move(o.identity_)),
        state_(o.state_) {}
  tls_stream& operator=(tls_stream&&) = delete;
  ~tls_stream() {
    if (ssl_) SSL_free(ssl_);
  }

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  static constexpr const char* kind() noexcept { return "tls"; }

  void start() {
    boost::system::error_code ec;
    socket_.set_option(boost::asio::ip::tcp::no_delay(true), ec);
    socket_.non_blocking(true, ec);
    if (!ssl_ || SSL_set_fd(ssl_, static_cast<int>(socket_.native_handle())) != 1) {
      state_ = failed;
      return;
    }
    SSL_set_accept_state(ssl_);
    timer_ = std::make_unique<boost::asio::steady_timer>(
        socket_.get_executor(), std::chrono::milliseconds(context_->handshake_timeout_ms()));
    // `this` is the connection's member: destroying the connection destroys the timer, whose
    // handler then runs with operation_aborted and touches nothing.
    timer_->async_wait([this](boost::system::error_code timer_ec) {
      if (timer_ec || state_ != handshaking) return;
      state_ = failed;
      context_->handshake_failures.fetch_add(1, std::memory_order_relaxed);
      spdlog::debug("TLS handshake from {} timed out", remote());
      boost::system::error_code ignored;
      socket_.cancel(ignored);  // the pending wait ends with an error: the connection closes
    });
  }

  // `handler(error_code)` once bytes can be read: at once when OpenSSL holds decrypted
  // bytes, or when the last read has something more to say (an error after the bytes it
  // returned). A read that filled its buffer is the connection's business (it reads again
  // before it waits: connection::read()).
  template <class Handler>
  void async_wait_readable(Handler&& handler) {
    if (state_ == handshaking) return handshake(std::forward<Handler>(handler));
    if (state_ == failed)
      return boost::asio::post(
          socket_.get_executor(), [h = std::forward<Handler>(handler)]() mutable {
            h(boost::asio::error::make_error_code(boost::asio::error::connection_aborted));
          });
    // SSL_pending, not SSL_has_pending: the latter counts a partial record too, and waiting
    // for the rest of it must not spin.
    if (more_ || SSL_pending(ssl_) > 0) {
      more_ = false;
      return boost::asio::post(socket_.get_executor(),
                               [h = std::forward<Handler>(handler)]() mutable { h({}); });
    }
    socket_.async_wait(want_write_ ? socket_type::wait_write : socket_type::wait_read,
                       std::forward<Handler>(handler));
  }

  // Decrypted bytes, as many as fit, without blocking (would_block when none).
  std::size_t read_some(void* data, std::size_t size, boost::system::error_code& ec) {
    std::size_t total = 0;
    want_write_ = false;
    while (total < size) {
      std::size_t n = 0;
      const int r = SSL_read_ex(ssl_, static_cast<char*>(data) + total, size - total, &n);
      if (r == 1) {
        total += n;
        continue;
      }
      const int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        want_write_ = e == SSL_ERROR_WANT_WRITE;
        if (total == 0) ec = boost::asio::error::would_block;
        return total;
      }
      if (total > 0) {  // what was read first; the error again on the next read
        more_ = true;
        return total;
      }
      ec = error_of(e);
      return 0;
    }
    return total;  // the buffer is full
  }

  // Reads into `data` as soon as bytes come.
  template <class Handler>
  void async_read_some(void* data, std::size_t size, Handler&& handler) {
    boost::system::error_code ec;
    const std::size_t n = read_some(data, size, ec);
    if (ec == boost::asio::error::would_block) {
      return socket_.async_wait(want_write_ ? socket_type::wait_write : socket_type::wait_read,
                                [this, data, size, h = std::forward<Handler>(handler)](
                                    boost::system::error_code wait_ec) mutable {
                                  if (wait_ec) return h(wait_ec, std::size_t{0});
                                  async_read_some(data, size, std::move(h));
                                });
    }
    boost::asio::post(socket_.get_executor(),
                      [h = std::forward<Handler>(handler), ec, n]() mutable { h(ec, n); });
  }

  // Writes every byte of `buffers` (one SSL_write of their concatenation), then
  // `handler(error_code, size)`.
  template <class Buffers, class Handler>
  void async_write(const Buffers& buffers, Handler&& handler) {
    // The frames in one buffer of the thread's; only what the socket does not take at once
    // is copied into one of the stream's own.
    thread_local std::string scratch;
    scratch.clear();
    for (auto it = buffers.begin(); it != buffers.end(); ++it) {
      const boost::asio::const_buffer b = *it;
      scratch.append(static_cast<const char*>(b.data()), b.size());
    }
    const std::size_t total = scratch.size();
    std::size_t done = 0;
    auto ec = write_from(scratch.data(), scratch.size(), done);
    if (ec == boost::asio::error::would_block) {
      pending_ = std::make_unique<std::string>(scratch, done);
      if (scratch.capacity() > (1u << 20)) std::string().swap(scratch);
      return continue_write(total, std::forward<Handler>(handler));
    }
    if (scratch.capacity() > (1u << 20)) std::string().swap(scratch);
    boost::asio::post(socket_.get_executor(),
                      [h = std::forward<Handler>(handler), ec, total]() mutable { h(ec, total); });
  }

  // close_notify, then the TCP half-close.
  void shutdown_send() {
    if (ssl_ && state_ == established) {
      SSL_shutdown(ssl_);
      ERR_clear_error();
    }
    boost::system::error_code ec;
    socket_.shutdown(socket_type::shutdown_send, ec);
  }
  void close() {
    boost::system::error_code ec;
    if (timer_) timer_->cancel();
    socket_.close(ec);
  }

  std::string remote() const { return tcp_stream::remote_of(socket_); }

  // The client certificate the handshake verified (null without one), read once.
  const core::certificate_identity* peer_certificate() {
    if (identity_) return identity_.get();
    if (!ssl_ || state_ != established || SSL_get_verify_result(ssl_) != X509_V_OK) return nullptr;
    X509* cert = SSL_get0_peer_certificate(ssl_);
    if (!cert) return nullptr;
    identity_ = std::make_unique<core::certificate_identity>(certificate_identity_of(cert));
    return identity_.get();
  }

 private:
  enum state : std::uint8_t { handshaking, established, failed };

  static boost::system::error_code error_of(int ssl_error) {
    if (ssl_error == SSL_ERROR_ZERO_RETURN) return boost::asio::error::eof;
    if (ssl_error == SSL_ERROR_SYSCALL && errno == 0) return boost::asio::error::eof;
    ERR_clear_error();
    return boost::asio::error::connection_reset;
  }

  template <class Handler>
  void handshake(Handler&& handler) {
    const int r = SSL_do_handshake(ssl_);
    if (r == 1) {
      state_ = established;
      timer_.reset();
      context_->handshakes.fetch_add(1, std::memory_order_relaxed);
      if (SSL_session_reused(ssl_)) context_->resumed.fetch_add(1, std::memory_order_relaxed);
      // The client's first bytes may have come with its last handshake message (its
      // readiness is reported already): read at once.
      return boost::asio::post(socket_.get_executor(),
                               [h = std::forward<Handler>(handler)]() mutable { h({}); });
    }
    const int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
      return socket_.async_wait(
          e == SSL_ERROR_WANT_WRITE ? socket_type::wait_write : socket_type::wait_read,
          [this, h = std::forward<Handler>(handler)](boost::system::error_code ec) mutable {
            if (ec || state_ == failed)
              return h(
                  ec ? ec
                     : boost::asio::error::make_error_code(boost::asio::error::connection_aborted));
            handshake(std::move(h));
          });
    }
    state_ = failed;
    timer_.reset();
    context_->handshake_failures.fetch_add(1, std::memory_order_relaxed);
    // Plain HTTP on a TLS port, an old protocol version, an unknown CA, a revoked
    // certificate: said at debug level (a port scan is not news), counted in the metrics.
    spdlog::debug("TLS handshake from {} failed: {}", remote(),
                  e == SSL_ERROR_SSL ? openssl_errors() : "the connection ended");
    ERR_clear_error();
    boost::asio::post(socket_.get_executor(), [h = std::forward<Handler>(handler)]() mutable {
      h(boost::asio::error::make_error_code(boost::asio::error::connection_aborted));
    });
  }

  // SSL_write until everything from `data` is taken (`done` counts it), the socket is full
  // (would_block) or an error.
  boost::system::error_code write_from(const char* data, std::size_t size, std::size_t& done) {
    while (done < size) {
      std::size_t n = 0;
      const int r = SSL_write_ex(ssl_, data + done, size - done, &n);
      if (r == 1) {
        done += n;
        continue;
      }
      const int e = SSL_get_error(ssl_, r);
      if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
        write_wants_read_ = e == SSL_ERROR_WANT_READ;
        return boost::asio::error::would_block;
      }
      return error_of(e);
    }
    return {};
  }

  template <class Handler>
  void continue_write(std::size_t total, Handler&& handler) {
    socket_.async_wait(
        write_wants_read_ ? socket_type::wait_read : socket_type::wait_write,
        [this, total, h = std::forward<Handler>(handler)](boost::system::error_code ec) mutable {
          if (!ec) {
            std::size_t done = 0;
            ec = write_from(pending_->data(), pending_->size(), done);
            if (ec == boost::asio::error::would_block) {
              pending_->erase(0, done);
              return continue_write(total, std::move(h));
            }
          }
          pending_.reset();
          h(ec, total);
        });
  }

  socket_type socket_;
  tls_context* context_;  // the listener's: outlives its connections
  SSL* ssl_;
  std::unique_ptr<std::string> pending_;              // the unsent rest of a write
  std::unique_ptr<boost::asio::steady_timer> timer_;  // the handshake's deadline
  std::unique_ptr<core::certificate_identity> identity_;
  state state_ = handshaking;
  bool more_ = false;              // the last read has an error to report after its bytes
  bool want_write_ = false;        // a read waits for the socket to take bytes (a key update)
  bool write_wants_read_ = false;  // a write waits for bytes (likewise)
};

}  // namespace wsagent::net
