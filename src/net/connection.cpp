#include "net/connection.hpp"

#include <openssl/sha.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <charconv>
#include <cstring>

#include "common/base64.hpp"
#include "common/clock.hpp"
#include "common/json_writer.hpp"
#include "common/text.hpp"
#include "net/server.hpp"
#include "protocol/close_codes.hpp"
#include "protocol/mqtt/adapter.hpp"

namespace wsagent::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ws = protocol::websocket;
using tcp = asio::ip::tcp;
using core::close_reason;

namespace {

constexpr std::size_t read_chunk = 4096;
// An idle connection holds no read buffer: it waits for readability and reads into its
// thread's buffer of this size; only the bytes of an unfinished frame are copied into a
// buffer of its own.
constexpr std::size_t thread_read_size = 64 * 1024;
constexpr std::size_t padding = 64;     // simdjson reads up to 64 bytes past a message
constexpr std::size_t max_gather = 64;  // iovecs per write: Asio's limit for a buffer sequence
constexpr std::size_t max_gather_bytes = 256 * 1024;
// Frames up to this size are copied into one staging buffer per write, so that many small
// messages leave as one contiguous iovec; larger ones are written from the shared bytes.
constexpr std::size_t copy_limit = 1024;
// Replies of this connection's own (pongs, acknowledgements, errors) queued and not yet
// written. Past this the connection stops reading until its peer catches up, so a client
// that sends requests but never reads cannot make the agent queue without bound.
constexpr std::size_t max_pending_replies = 256;

std::string accept_key(std::string_view key) {
  static constexpr std::string_view guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  std::string s(key);
  s.append(guid);
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.data()), s.size(), digest);
  return common::base64_encode(
      std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex_value(s[i + 1]) >= 0 && hex_value(s[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex_value(s[i + 1]) * 16 + hex_value(s[i + 2])));
      i += 2;
    } else if (s[i] == '+') {
      out.push_back(' ');
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Finds `name` in a query string "a=1&b=2"; empty when absent.
std::string query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    auto amp = query.find('&');
    auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) == name)
      return eq == std::string_view::npos ? std::string() : percent_decode(pair.substr(eq + 1));
  }
  return {};
}

// In a spin-wait loop: tell the CPU (and a sibling hyperthread) that we are waiting.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

struct connection::http_state {
  beast::flat_buffer buffer{8192};
  std::optional<http::request_parser<http::empty_body>> parser;
  http::response<http::string_body> response;
};

connection::connection(server& srv, socket_type socket, const std::string& ip,
                       common::timer_wheel& wheel)
    : server_(srv),
      wheel_(wheel),
      socket_(std::move(socket)),
      remote_(ip),
      ip_size_(static_cast<std::uint8_t>(std::min<std::size_t>(ip.size(), 255))),
      http_(std::make_unique<http_state>()) {
  boost::system::error_code ec;
  auto ep = socket_.remote_endpoint(ec);
  if (!ec) remote_ += ":" + std::to_string(ep.port());
}

connection::~connection() {
  cancel();  // normally done by terminate(), on the owner thread
  if (adapter_) adapter_->on_closed();
  if (registered_) server_.remove(this, std::string(ip()));
}

void connection::start(bool mqtt) {
  registered_ = true;
  server_.add(shared_from_this());
  boost::system::error_code ec;
  socket_.set_option(tcp::no_delay(true), ec);
  // A client that never finishes its request (or its CONNECT) is dropped after the auth
  // timeout.
  auth_deadline_ms_ = common::steady_ms() + server_.settings().auth_timeout_ms;
  if (!mqtt) {
    arm_timer();
    return read_request();
  }
  mode_ = mode::mqtt;
  http_.reset();
  socket_.non_blocking(true, ec);  // on_readable() reads without blocking
  last_activity_ms_ = last_ping_ms_ = common::steady_ms();
  adapter_ = std::make_unique<protocol::mqtt::adapter>(server_.adapter_ctx(), *this, remote_,
                                                       server_.settings().max_message_size);
  arm_timer();
  read_frames();
}

void connection::reject(bool mqtt) {
  auto self = shared_from_this();
  if (mqtt) return terminate();
  auto body = std::make_shared<std::string>(
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 21\r\n"
      "Connection: close\r\n\r\ntoo many connections\n");
  asio::async_write(socket_, asio::buffer(*body),
                    [self, body](boost::system::error_code, std::size_t) {
                      boost::system::error_code ec;
                      self->socket_.shutdown(tcp::socket::shutdown_both, ec);
                      self->socket_.close(ec);
                    });
}

// --- HTTP phase ---

void connection::read_request() {
  http_->parser.emplace();
  http_->parser->header_limit(8192);
  http_->parser->body_limit(0);
  auto self = shared_from_this();
  http::async_read(socket_, http_->buffer, *http_->parser,
                   [self](boost::system::error_code ec, std::size_t) {
                     if (ec) {
                       if (ec != http::error::end_of_stream && ec != asio::error::operation_aborted)
                         self->http_reply(400, "bad request: " + ec.message() + "\n");
                       else
                         self->terminate();
                       return;
                     }
                     self->on_request();
                   });
}

void connection::on_request() {
  auto& req = http_->parser->get();
  std::string_view target = req.target();
  auto qpos = target.find('?');
  std::string_view path = target.substr(0, qpos);
  std::string_view query =
      qpos == std::string_view::npos ? std::string_view{} : target.substr(qpos + 1);

  if (path == "/healthz" && !beast::websocket::is_upgrade(req)) {
    if (req.method() != http::verb::get && req.method() != http::verb::head)
      return http_reply(405, "method not allowed\n");
    auto& router = server_.adapter_ctx().router;
    const auto history = router.history_count();
    std::string body;
    common::json_writer(body)
        .begin_object()
        .string("status", "ok")
        .integer("connections", server_.probe.open.load(std::memory_order_relaxed))
        .integer("sessions", static_cast<std::int64_t>(router.session_count()))
        .integer("subscriptions", static_cast<std::int64_t>(router.subscription_count()))
        .integer("retained", static_cast<std::int64_t>(router.retained_count()))
        .integer("dropped",
                 static_cast<std::int64_t>(server_.probe.dropped.load(std::memory_order_relaxed)))
        .integer("qos1_dropped", static_cast<std::int64_t>(
                                     router.probe.qos1_dropped.load(std::memory_order_relaxed)))
        .integer("history_tags", static_cast<std::int64_t>(history.tags))
        .integer("history_messages", static_cast<std::int64_t>(history.entries))
        .integer("history_refused", static_cast<std::int64_t>(history.refused))
        .integer("frames_out", static_cast<std::int64_t>(
                                   server_.probe.frames_out.load(std::memory_order_relaxed)))
        .integer("writes",
                 static_cast<std::int64_t>(server_.probe.writes.load(std::memory_order_relaxed)))
        .integer("read_pauses", static_cast<std::int64_t>(
                                    server_.probe.read_pauses.load(std::memory_order_relaxed)))
        .integer("slow_consumer_closes",
                 static_cast<std::int64_t>(
                     server_.probe.slow_consumer_closes.load(std::memory_order_relaxed)))
        .end_object();
    body.push_back('\n');
    return http_reply(200, std::move(body), "application/json");
  }
  mode m;
  if (path == "/ws")
    m = mode::native;
  else if (path == "/mqtt")
    m = mode::mqtt_ws;
  else if (path == "/echo" && server_.settings().diagnostics)
    m = mode::echo;
  else
    return http_reply(404, "not found\n");

  if (!beast::websocket::is_upgrade(req))
    return http_reply(426, "this endpoint speaks WebSocket: send an upgrade request\n");
  if (req[http::field::sec_websocket_version] != "13") {
    http_->response.set(http::field::sec_websocket_version, "13");
    return http_reply(426, "unsupported WebSocket version: 13 is required\n");
  }
  std::string_view key = req[http::field::sec_websocket_key];
  auto decoded = common::base64_decode(key);
  if (!decoded || decoded->size() != 16) return http_reply(400, "bad Sec-WebSocket-Key\n");

  protocol::native::upgrade_info info;
  info.remote = remote_;  // a view: the adapter lives inside this connection
  std::string_view authz = req[http::field::authorization];
  if (authz.size() > 7 && (authz.substr(0, 7) == "Bearer " || authz.substr(0, 7) == "bearer "))
    info.token = std::string(authz.substr(7));
  if (info.token.empty()) info.token = query_param(query, "token");
  info.client_id = query_param(query, "clientId");
  if (info.client_id.empty()) info.client_id = query_param(query, "deviceId");
  auto binary = query_param(query, "binary");
  info.binary = binary == "1" || binary == "true";
  if (query_param(query, "session") == "persistent") {
    info.session.persistent = true;
    const auto expiry = query_param(query, "expiry");
    std::int64_t seconds = 0;
    auto [end, ec] = std::from_chars(expiry.data(), expiry.data() + expiry.size(), seconds);
    if (ec == std::errc() && end == expiry.data() + expiry.size() && seconds > 0 &&
        seconds <= 365 * 24 * 3600)
      info.session.expiry_s = seconds;
  }
  // MQTT over WebSocket: the client offers the "mqtt" subprotocol (older ones
  // "mqttv3.1"), and the answer names it.
  std::string_view subprotocol;
  if (m == mode::mqtt_ws) {
    std::string_view offered = req[http::field::sec_websocket_protocol];
    common::for_each_list_item(offered, ',', [&](std::string_view item) {
      if (item == "mqtt")
        subprotocol = "mqtt";  // preferred
      else if (item == "mqttv3.1" && subprotocol.empty())
        subprotocol = "mqttv3.1";
    });
    if (!offered.empty() && subprotocol.empty())
      return http_reply(400, "/mqtt speaks the WebSocket subprotocol \"mqtt\"\n");
  }
  upgrade(m, std::move(info), accept_key(key), subprotocol);
}

void connection::http_reply(unsigned status, std::string body, const char* content_type) {
  auto& res = http_->response;
  res.result(status);
  res.version(11);
  res.set(http::field::server, "wsagent");
  res.set(http::field::content_type, content_type);
  res.keep_alive(false);
  res.body() = std::move(body);
  res.prepare_payload();
  auto self = shared_from_this();
  http::async_write(socket_, res, [self](boost::system::error_code, std::size_t) {
    boost::system::error_code ec;
    self->socket_.shutdown(tcp::socket::shutdown_send, ec);
    self->terminate();
  });
}

void connection::upgrade(mode m, protocol::native::upgrade_info info, const std::string& key,
                         std::string_view subprotocol) {
  mode_ = m;
  std::string response =
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Accept: " +
      key + "\r\n";
  if (!subprotocol.empty())
    response.append("Sec-WebSocket-Protocol: ").append(subprotocol) += "\r\n";
  response += "\r\n";
  // Bytes the client sent after its request (pipelined frames) are the first frames.
  auto leftover = http_->buffer.data();
  if (leftover.size() > 0) {
    rbuf_.resize(leftover.size() + read_chunk + padding);
    std::memcpy(rbuf_.data(), leftover.data(), leftover.size());
  }
  rlen_ = leftover.size();
  http_.reset();
  boost::system::error_code nb;
  socket_.non_blocking(true, nb);  // on_readable() reads without blocking

  reader_.emplace(ws::frame_reader::role::server, server_.settings().max_message_size);
  last_activity_ms_ = last_ping_ms_ = common::steady_ms();
  push(out_item{nullptr, nullptr, std::move(response), false});
  if (m == mode::native) {
    adapter_ =
        std::make_unique<protocol::native::adapter>(server_.adapter_ctx(), *this, std::move(info));
    adapter_->on_open();
  } else if (m == mode::mqtt_ws) {
    adapter_ = std::make_unique<protocol::mqtt::adapter>(server_.adapter_ctx(), *this, remote_,
                                                         server_.settings().max_message_size, true);
  }
  if (m == mode::echo || (adapter_ && adapter_->authenticated())) auth_deadline_ms_ = 0;
  arm_timer();
  if (rlen_ > 0)
    on_read(0);
  else
    read_frames();
}

// --- WebSocket phase: reading ---

void connection::read_frames() {
  if (terminated_) return;
  if (rlen_ == 0) {
    if (!rbuf_.empty()) std::vector<std::uint8_t>().swap(rbuf_);
    socket_.async_wait(tcp::socket::wait_read,
                       [self = shared_from_this()](boost::system::error_code ec) {
                         if (ec) return self->terminate();
                         self->on_readable();
                       });
    return;
  }
  if (rbuf_.size() - rlen_ < read_chunk / 2 + padding) {
    // Full: grow, up to one maximal frame plus header and padding.
    std::size_t limit = server_.settings().max_message_size + ws::max_header_size + padding;
    std::size_t want =
        std::min(std::max(rbuf_.size() * 2, rlen_ + read_chunk + padding), limit + read_chunk);
    rbuf_.resize(want);
  }
  auto self = shared_from_this();
  socket_.async_read_some(asio::buffer(rbuf_.data() + rlen_, rbuf_.size() - rlen_ - padding),
                          [self](boost::system::error_code ec, std::size_t n) {
                            if (ec) return self->terminate();
                            self->on_read(n);
                          });
}

void connection::on_readable() {
  if (terminated_) return;
  thread_local std::vector<std::uint8_t> buffer(thread_read_size + padding);
  boost::system::error_code ec;
  const std::size_t n = socket_.read_some(asio::buffer(buffer.data(), thread_read_size), ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) return read_frames();
  if (ec) return terminate();
  on_data(buffer.data(), n, false);
}

void connection::on_read(std::size_t n) {
  rlen_ += n;
  on_data(rbuf_.data(), rlen_, true);
}

// `data` is rbuf_ (`own`) or the thread's buffer; either has `padding` bytes past `len`.
void connection::on_data(std::uint8_t* data, std::size_t len, bool own) {
  last_activity_ms_ = common::steady_ms();
  std::size_t offset = 0;
  batching_ = true;
  if (mode_ == mode::mqtt) {  // a raw stream: the adapter takes whole packets
    offset = adapter_->on_stream(std::span<const std::uint8_t>(data, len));
    if (auth_deadline_ms_ && adapter_->authenticated()) {
      auth_deadline_ms_ = 0;
      arm_timer();  // the keep alive the CONNECT asked for
    }
  } else {
    while (!terminated_) {
      auto ev = reader_->next(std::span<std::uint8_t>(data + offset, len - offset));
      if (ev.what == ws::frame_reader::kind::need_more) break;
      offset += ev.consumed;
      if (!handle(ev)) break;
    }
  }
  batching_ = false;
  if (terminated_) return;
  if (adapter_ && adapter_->take_rearm()) arm_timer();  // a QoS 1/2 resend deadline
  write();
  const std::size_t left = len - offset;
  if (own) {
    if (offset > 0) std::memmove(rbuf_.data(), rbuf_.data() + offset, left);
  } else if (left > 0) {
    // An unfinished frame: keep its bytes in this connection's own buffer.
    rbuf_.resize(left + read_chunk + padding);
    std::memcpy(rbuf_.data(), data + offset, left);
  }
  rlen_ = left;
  if (close_received_) return;  // nothing more to read
  if (queue_.size() - queued_messages_ > max_pending_replies) {
    read_paused_ = true;  // resumed by on_written()
    server_.probe.read_pauses.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  read_frames();
}

bool connection::handle(const ws::frame_reader::event& ev) {
  using kind = ws::frame_reader::kind;
  server_.probe.frames_in.fetch_add(1, std::memory_order_relaxed);
  switch (ev.what) {
    case kind::need_more:
    case kind::skipped:
      return true;
    case kind::message: {
      if (close_sent_) return true;  // closing: data is discarded
      if (mode_ == mode::echo) {
        std::string frame;
        ws::append_frame(
            frame, ev.op,
            std::string_view(reinterpret_cast<const char*>(ev.payload.data()), ev.payload.size()));
        send_frame(std::move(frame));
        return true;
      }
      if (ev.op == ws::opcode::text) {
        auto* p = reinterpret_cast<const char*>(ev.payload.data());
        // Inside rbuf_ the bytes up to its end may be read (padding); otherwise none.
        std::size_t capacity = ev.payload.size();
        auto* base = reinterpret_cast<const char*>(rbuf_.data());
        if (p >= base && p < base + rbuf_.size())
          capacity = static_cast<std::size_t>(base + rbuf_.size() - p);
        adapter_->on_text(p, ev.payload.size(), capacity);
      } else {
        adapter_->on_binary(ev.payload);
      }
      if (auth_deadline_ms_ && !close_sent_ && adapter_ && adapter_->authenticated()) {
        auth_deadline_ms_ = 0;
        if (mode_ == mode::mqtt_ws) arm_timer();  // the keep alive the CONNECT asked for
      }
      return true;
    }
    case kind::ping: {
      std::string frame;
      ws::append_frame(
          frame, ws::opcode::pong,
          std::string_view(reinterpret_cast<const char*>(ev.payload.data()), ev.payload.size()));
      send_frame(std::move(frame));
      return true;
    }
    case kind::pong:
      return true;
    case kind::close: {
      close_received_ = true;
      if (!close_sent_) {
        // Echo the peer's code (RFC 6455 5.5.1), then end once it is written.
        close_sent_ = true;
        // A close with 1000 is the client's clean goodbye: its will is not published (MQTT
        // says goodbye with DISCONNECT, not with the WebSocket close).
        if (adapter_)
          adapter_->on_closed(ev.code == ws::close_code::normal && mode_ != mode::mqtt_ws);
        std::string frame;
        if (ev.code == ws::close_code::no_status)
          ws::append_frame(frame, ws::opcode::close, {});
        else
          ws::append_close(frame, ev.code, {});
        push(out_item{nullptr, nullptr, std::move(frame), false});
      }
      close_deadline_ms_ = common::steady_ms() + server_.settings().close_timeout_ms;
      if (!writing_ && queue_.empty()) return terminate(), false;
      arm_timer();  // the close deadline: a peer that stops reading is cut off in time
      return false;
    }
    case kind::error:
      close_with(ev.code, ev.reason, close_reason::protocol_error);
      close_received_ = true;  // stop reading: the stream is unusable
      return false;
  }
  return true;
}

// --- WebSocket phase: writing ---

void connection::send_frame(std::string frame) {
  if (terminated_ || close_sent_) return;
  push(out_item{nullptr, nullptr, std::move(frame), false});
}

protocol::native::transport_link::poster connection::owner_poster() {
  return [weak = weak_from_this()](std::function<void()> f) {
    auto self = weak.lock();
    if (!self) return;
    asio::post(self->socket_.get_executor(), [self, f = std::move(f)] {
      if (!self->terminated_) f();
    });
  };
}

void connection::drain_pending(
    const std::function<void(const core::message_ptr&, std::uint8_t)>& take) {
  std::vector<delivery> pending;
  lock_inbox();
  pending.swap(inbox_);
  unlock_inbox();
  for (const auto& d : pending)
    take(d.msg, d.qos);
}

void connection::send_shared(const core::message_ptr& m, const std::string& bytes) {
  if (terminated_ || close_sent_) return;
  push(out_item{m, &bytes, {}, false});
}

void connection::send_with_tail(const core::message_ptr& m, std::string head,
                                const std::string& tail) {
  if (terminated_ || close_sent_) return;
  push(out_item{m, &tail, std::move(head), false, true});
}

// Any thread, with the router's lock held: park the message in the inbox and post one
// drain per batch, not one handler per message. The drain runs on the owner thread, outside
// the router's lock, and ends with one write for everything it queued.
void connection::lock_inbox() noexcept {
  while (inbox_lock_.exchange(true, std::memory_order_acquire))
    while (inbox_lock_.load(std::memory_order_relaxed))
      cpu_relax();
}

void connection::deliver(core::message_ptr msg, std::uint8_t qos) {
  lock_inbox();
  inbox_.push_back({std::move(msg), qos});
  const bool post = !drain_posted_;
  drain_posted_ = true;
  unlock_inbox();
  if (post)
    asio::post(socket_.get_executor(), [self = shared_from_this()] { self->drain_inbox(); });
}

void connection::drain_inbox() {
  // The thread's batch vector, taken for the loop (a nested drain would get an empty one).
  thread_local std::vector<delivery> spare;
  std::vector<delivery> batch;
  batch.swap(spare);
  lock_inbox();
  batch.swap(inbox_);
  drain_posted_ = false;
  unlock_inbox();
  batching_ = true;
  bool qos1 = false;
  for (auto& d : batch) {
    on_deliver(std::move(d.msg), d.qos);  // the reference moves on into the queue
    qos1 |= d.qos > 0;
  }
  batching_ = false;
  batch.clear();
  if (qos1) arm_timer();  // the resend deadline of what went into flight
  if (batch.capacity() <= 4096) batch.swap(spare);
  write();
}

void connection::on_deliver(core::message_ptr msg, std::uint8_t qos) {
  if (!adapter_) return;
  if (terminated_ || close_sent_) {
    // Closed while this batch was being handed out (a slow consumer, say): a persistent
    // session keeps what is left of it.
    if (qos > 0) adapter_->late_delivery(msg, qos);
    return;
  }
  if (qos > 0) {
    adapter_->deliver_acked(msg, qos, common::steady_ms());
    return;
  }
  std::string own;
  bool keep = false;
  const std::string* bytes = adapter_->delivery_frame(*msg, own, keep);
  auto limit = server_.settings().outbound_queue;
  if (queued_messages_ >= limit) {
    // Full: drop the oldest queued QoS-0 message (never one being written).
    auto it = std::find_if(queue_.begin() + static_cast<std::ptrdiff_t>(in_flight_), queue_.end(),
                           [](const out_item& i) { return i.droppable; });
    if (it != queue_.end()) {
      queue_.erase(it);
      --queued_messages_;
      server_.probe.dropped.fetch_add(1, std::memory_order_relaxed);
    }
    auto now = common::steady_ms();
    if (full_since_ms_ == 0) {
      full_since_ms_ = now;
      arm_timer();
    } else if (now - full_since_ms_ >= server_.settings().slow_consumer_timeout_ms) {
      return close_slow_consumer();
    }
  }
  push(out_item{std::move(msg), bytes, std::move(own), !keep});
}

// Queues one frame. The write happens once the current handler is done with everything it
// queues (the end of a read, of a drain, or a posted flush), so frames coalesce.
void connection::push(out_item item) {
  if (item.droppable) ++queued_messages_;
  queue_.push_back(std::move(item));
  if (batching_ || writing_ || write_posted_) return;
  write_posted_ = true;
  asio::post(socket_.get_executor(), [self = shared_from_this()] {
    self->write_posted_ = false;
    self->write();
  });
}

void connection::write() {
  if (writing_ || queue_.empty() || terminated_) return;
  gather_.clear();
  stage_.clear();
  // First pass: how many items fit (bytes, iovecs), and how many bytes are staged.
  std::size_t bytes = 0, n = 0, staged = 0, segments = 0;
  bool last_small = false;
  for (const auto& item : queue_) {
    const std::size_t size = item.size();
    if (n > 0 && bytes + size > max_gather_bytes) break;
    // An item is one or two parts (a header of its own before shared bytes).
    std::size_t more = 0, copied = 0;
    bool small_end = last_small;
    for (const auto part : {item.first(), item.second()}) {
      if (part.empty()) continue;
      const bool small = part.size() <= copy_limit;
      more += small && small_end ? 0 : 1;
      small_end = small;
      copied += small ? part.size() : 0;
    }
    if (segments + more > max_gather) break;
    segments += more;
    last_small = small_end;
    staged += copied;
    bytes += size;
    ++n;
  }
  // Second pass: small frames are copied into stage_ (reserved once, so pointers into it
  // stay valid), consecutive ones as one iovec; large frames go from their own bytes.
  stage_.reserve(staged);
  last_small = false;
  auto it = queue_.begin();
  for (std::size_t i = 0; i < n; ++i, ++it) {
    for (const auto b : {it->first(), it->second()}) {
      if (b.empty()) continue;
      if (b.size() <= copy_limit) {
        const char* at = stage_.data() + stage_.size();
        stage_.append(b);
        if (last_small)
          gather_.back() =
              asio::const_buffer(gather_.back().data(), gather_.back().size() + b.size());
        else
          gather_.emplace_back(at, b.size());
        last_small = true;
      } else {
        gather_.emplace_back(b.data(), b.size());
        last_small = false;
      }
    }
    if (it->droppable) --queued_messages_;
  }
  in_flight_ = n;
  writing_ = true;
  server_.probe.writes.fetch_add(1, std::memory_order_relaxed);
  server_.probe.frames_out.fetch_add(n, std::memory_order_relaxed);
  asio::async_write(socket_, gather_,
                    [self = shared_from_this(), n](boost::system::error_code ec, std::size_t) {
                      self->writing_ = false;
                      if (ec) return self->terminate();
                      self->on_written(n);
                    });
}

void connection::on_written(std::size_t items) {
  for (std::size_t i = 0; i < items; ++i)
    queue_.pop_front();
  in_flight_ = 0;
  // A small write left the queue empty: not a burst, so give its block back (an idle
  // connection then holds none); a connection in a burst keeps it.
  if (queue_.empty() && items <= 4) out_queue().swap(queue_);
  if (read_paused_ && queue_.size() - queued_messages_ <= max_pending_replies / 2) {
    read_paused_ = false;
    if (!close_received_) read_frames();
  }
  if (full_since_ms_ && queued_messages_ < server_.settings().outbound_queue) full_since_ms_ = 0;
  if (queue_.empty() && close_sent_) {
    if (close_received_ || mode_ == mode::mqtt) return terminate();  // nothing more to say
    // Our close is out: no more writes. Wait for the peer's close until the deadline.
    boost::system::error_code ec;
    socket_.shutdown(tcp::socket::shutdown_send, ec);
    return;
  }
  write();
}

// --- closing ---

void connection::close(close_reason why, std::string_view text) {
  close_with(protocol::websocket_close_code(why), text, why);
}

// `code`: the WebSocket close code (a frame error's own, or `why`'s).
void connection::close_with(std::uint16_t code, std::string_view reason, close_reason why) {
  if (terminated_ || close_sent_) return;
  close_sent_ = true;
  if (adapter_) adapter_->on_closed();
  // Queued messages are not worth waiting for once we are leaving.
  for (auto it = queue_.begin() + static_cast<std::ptrdiff_t>(in_flight_); it != queue_.end();) {
    if (it->droppable) {
      it = queue_.erase(it);
      --queued_messages_;
    } else {
      ++it;
    }
  }
  std::string frame;
  if (mode_ == mode::mqtt) {
    // No closing handshake: MQTT 5 gets a DISCONNECT with a reason, then the stream ends.
    frame = adapter_ ? adapter_->goodbye(why) : std::string();
    if (frame.empty() && queue_.empty() && !writing_) return terminate();
  } else {
    if (mode_ == mode::mqtt_ws && adapter_)  // MQTT 5's DISCONNECT, then the WebSocket close
      if (auto bye = adapter_->goodbye(why); !bye.empty())
        queue_.push_back(out_item{nullptr, nullptr, std::move(bye), false});
    ws::append_close(frame, code, reason);
  }
  if (!frame.empty()) queue_.push_back(out_item{nullptr, nullptr, std::move(frame), false});
  close_deadline_ms_ = common::steady_ms() + server_.settings().close_timeout_ms;
  arm_timer();
  write();
}

void connection::close_slow_consumer() {
  server_.probe.slow_consumer_closes.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("closing slow consumer {} ({}): its queue stayed full for {} ms", remote_,
               adapter_ ? adapter_->client_id() : std::string(),
               server_.settings().slow_consumer_timeout_ms);
  close(close_reason::slow_consumer, "Slow consumer");
}

void connection::kick(close_reason why, std::string_view text) {
  shutdown(why, std::string(text));
}

void connection::shutdown(close_reason code, std::string reason) {
  asio::post(socket_.get_executor(), [self = shared_from_this(), code, reason = std::move(reason)] {
    if (self->mode_ == mode::http) return self->terminate();
    self->close(code, reason);
  });
}

void connection::terminate() {
  if (terminated_) return;
  terminated_ = true;
  if (adapter_) adapter_->on_closed();
  boost::system::error_code ec;
  cancel();
  socket_.close(ec);
}

// --- timers: auth deadline, heartbeat, idle limit, slow consumer, close deadline ---

void connection::arm_timer() {
  if (terminated_) return;
  const auto& s = server_.settings();
  std::int64_t next = INT64_MAX;
  if (close_deadline_ms_) next = std::min(next, close_deadline_ms_);
  if (auth_deadline_ms_) next = std::min(next, auth_deadline_ms_);
  if (full_since_ms_) next = std::min(next, full_since_ms_ + s.slow_consumer_timeout_ms);
  if (mode_ != mode::http && !close_sent_) {
    if (!is_mqtt()) next = std::min(next, last_ping_ms_ + s.ping_interval_ms);
    next = std::min(next, last_activity_ms_ + idle_limit_ms());
    if (adapter_)
      if (auto due = adapter_->next_due()) next = std::min(next, *due);
  }
  if (next == INT64_MAX) return cancel();
  wheel_.schedule(*this, next);
}

void connection::on_deadline(common::timer_wheel::entry& e) {
  auto& c = static_cast<connection&>(e);
  auto self = c.shared_from_this();  // whatever on_timer() closes, c outlives the call
  c.on_timer();
}

// Silence after which the client is gone: MQTT's 1.5 x keep alive, else the server's.
std::int64_t connection::idle_limit_ms() const noexcept {
  if (adapter_)
    if (auto limit = adapter_->idle_timeout_ms()) return *limit;
  return server_.settings().idle_timeout_ms;
}

void connection::on_timer() {
  if (terminated_) return;
  const auto& s = server_.settings();
  auto now = common::steady_ms();
  if (close_deadline_ms_ && now >= close_deadline_ms_) return terminate();
  if (auth_deadline_ms_ && now >= auth_deadline_ms_) {
    auth_deadline_ms_ = 0;
    if (mode_ == mode::http) return terminate();
    close(close_reason::auth_required, "Authentication timeout");
  } else if (full_since_ms_ && now - full_since_ms_ >= s.slow_consumer_timeout_ms &&
             queued_messages_ >= s.outbound_queue) {
    close_slow_consumer();
  } else if (mode_ != mode::http && !close_sent_) {
    if (adapter_) adapter_->on_timer(now);  // QoS 1 resends that fell due
    if (now - last_activity_ms_ >= idle_limit_ms()) {
      close(close_reason::heartbeat_timeout, "Heartbeat timeout");
    } else if (!is_mqtt() && now - last_ping_ms_ >= s.ping_interval_ms) {
      last_ping_ms_ = now;
      // Quiet since the last ping: give back what past bursts grew (an idle connection
      // should cost its socket and little more).
      if (!writing_ && queue_.empty()) {
        out_queue().swap(queue_);
        std::string().swap(stage_);
        std::vector<asio::const_buffer>().swap(gather_);
      }
      std::string frame;
      ws::append_frame(frame, ws::opcode::ping, {});
      send_frame(std::move(frame));
    }
  }
  arm_timer();
}

}  // namespace wsagent::net
