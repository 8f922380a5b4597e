#include "net/connection.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <cstring>

#include "common/clock.hpp"
#include "net/channel.hpp"
#include "protocol/close_codes.hpp"

namespace wsagent::net {

namespace asio = boost::asio;
using core::close_reason;

namespace {

constexpr std::size_t read_chunk = 4096;
// An idle connection holds no read buffer: it waits for readability and reads into its
// thread's buffer of this size; only the bytes of an unfinished frame are copied into a
// buffer of its own.
constexpr std::size_t thread_read_size = 64 * 1024;
constexpr std::size_t padding = 64;  // simdjson reads up to 64 bytes past a message
// Replies of this connection's own (pongs, acknowledgements, errors) queued and not yet
// written. Past this the connection stops reading until its peer catches up, so a client
// that sends requests but never reads cannot make the agent queue without bound.
constexpr std::size_t max_pending_replies = 256;
constexpr std::size_t max_http_header = 8192 + read_chunk;

// In a spin-wait loop: tell the CPU (and a sibling hyperthread) that we are waiting.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

std::atomic<std::int64_t>& listener_info::counts::of(std::string_view protocol) noexcept {
  if (protocol == "ws") return ws;
  if (protocol == "mqtt-ws") return mqtt_ws;
  if (protocol == "echo") return echo;
  if (protocol == "mqtt") return mqtt;
  return http;
}

connection::connection(const connection_env& env, executor_type executor, std::string ip,
                       io_thread& thread)
    : env_(env),
      thread_(thread),
      executor_(executor),
      remote_(std::move(ip)),
      ip_size_(static_cast<std::uint8_t>(std::min<std::size_t>(remote_.size(), 255))),
      queue_(env.settings.outbound_queue_bytes, env.settings.outbound_queue) {}

connection::~connection() {
  // Normally done by terminate(), on the owner thread; here (the threads stopped) the figure
  // has no other writer.
  if (!terminated_)
    thread_.queued_bytes.fetch_sub(static_cast<std::int64_t>(queue_.waiting_bytes()));
  cancel();
  if (adapter_) adapter_->on_closed();
  if (open_count_) open_count_->fetch_sub(1, std::memory_order_relaxed);
  if (registered_) env_.registry.remove(this, ip());
}

void connection::start() {
  registered_ = true;
  env_.registry.add(shared_from_this());
  stream_start();
  if (auto r = stream_remote(); r.size() > ip_size_) remote_ += r.substr(r.rfind(':'));
  const auto now = common::steady_ms();
  // A client that never finishes its request (or its CONNECT) is dropped after the auth
  // timeout.
  auth_deadline_ms_ = now + env_.settings.auth_timeout_ms;
  last_activity_ms_ = last_ping_ms_ = now;
  auto& listener = env_.listener;
  if (listener.raw) {
    started_ = true;
    channel_ = std::make_unique<raw_channel>(*this);
    open_count_ = &listener.open.of(listener.raw_protocol);
    open_count_->fetch_add(1, std::memory_order_relaxed);
    adapter_ = listener.raw(*this, nullptr, remote_);
    adapter_->on_open();
  } else {
    channel_ = std::make_unique<http_channel>(*this);
    open_count_ = &listener.open.http;
    open_count_->fetch_add(1, std::memory_order_relaxed);
  }
  arm_timer();
  read();
}

void connection::reject() {
  if (env_.listener.raw) return terminate();
  stream_start();
  http_response r;
  r.status = 503;
  r.body = "too many connections\n";
  reply_and_end(serialize(r));
  read();  // to its end: the answer is read before the socket closes
}

// --- what the channels do ---

void connection::upgrade(std::unique_ptr<channel> next,
                         std::unique_ptr<protocol::client_adapter> adapter, std::string response,
                         std::string_view protocol) {
  started_ = true;
  retired_ = std::move(channel_);  // it is running: destroyed after this read
  channel_ = std::move(next);
  if (open_count_) open_count_->fetch_sub(1, std::memory_order_relaxed);
  open_count_ = &env_.listener.open.of(protocol);
  open_count_->fetch_add(1, std::memory_order_relaxed);
  last_activity_ms_ = last_ping_ms_ = common::steady_ms();
  push({nullptr, nullptr, std::move(response), false});
  adapter_ = std::move(adapter);
  adapter_->on_open();
  if (adapter_->authenticated()) auth_deadline_ms_ = 0;
  arm_timer();
}

void connection::reply_and_end(std::string response) {
  close_sent_ = true;  // nothing else is said,
  discarding_ = true;  // and what the client sends after its request is discarded
  push({nullptr, nullptr, std::move(response), false});
  close_deadline_ms_ = common::steady_ms() + env_.settings.close_timeout_ms;
  arm_timer();
}

void connection::peer_closed(bool clean, std::string echo) {
  close_received_ = true;
  if (!close_sent_) {
    close_sent_ = true;
    if (adapter_) adapter_->on_closed(clean);
    push({nullptr, nullptr, std::move(echo), false});
  }
  close_deadline_ms_ = common::steady_ms() + env_.settings.close_timeout_ms;
  if (!queue_.writing() && queue_.empty()) return terminate();
  arm_timer();  // the close deadline: a peer that stops reading is cut off in time
}

void connection::fail(std::uint16_t code, std::string_view reason) {
  env_.probe.protocol_errors.fetch_add(1, std::memory_order_relaxed);
  close_with(code, reason, close_reason::protocol_error);
  discarding_ = true;  // the stream is unusable: what follows is discarded
}

void connection::authenticated() {
  if (!auth_deadline_ms_ || close_sent_) return;
  auth_deadline_ms_ = 0;
  arm_timer();  // the keep alive the client asked for (MQTT's CONNECT)
}

void connection::send_last(std::string bytes) {
  if (terminated_) return;
  push({nullptr, nullptr, std::move(bytes), false});
}

// --- reading ---

void connection::read() {
  // Held input waits (until the adapter lets it go, or the agent says goodbye).
  if (terminated_ || read_paused_ || reading_ || input_paused_) return;
  reading_ = true;
  if (rlen_ == 0) {
    if (!rbuf_.empty()) std::vector<std::uint8_t>().swap(rbuf_);
    if (more_to_read_) {
      // The last read filled the thread's buffer: the stream may hold more, and its
      // readiness was reported already (Asio's reactor is edge-triggered: a wait would not
      // see it again until more bytes come). Read again, from a handler of its own.
      more_to_read_ = false;
      return asio::post(executor_, [self = shared_from_this()] { self->readable({}); });
    }
    return stream_wait_readable();
  }
  if (rbuf_.size() - rlen_ < read_chunk / 2 + padding) {
    // Full: grow, up to one maximal frame (or HTTP header) plus header and padding.
    const std::size_t limit =
        std::max(env_.settings.max_message_size + protocol::websocket::max_header_size,
                 max_http_header) +
        padding;
    const std::size_t want =
        std::min(std::max(rbuf_.size() * 2, rlen_ + read_chunk + padding), limit + read_chunk);
    rbuf_.resize(std::max(want, rbuf_.size()));
  }
  stream_read_into(rbuf_.data() + rlen_, rbuf_.size() - rlen_ - padding);
}

void connection::readable(boost::system::error_code ec) {
  reading_ = false;
  if (ec) return terminate();
  on_readable();
}

void connection::on_readable() {
  if (terminated_) return;
  thread_local std::vector<std::uint8_t> buffer(thread_read_size + padding);
  boost::system::error_code ec;
  const std::size_t n = stream_read(buffer.data(), thread_read_size, ec);
  if (ec == asio::error::would_block || ec == asio::error::try_again) return read();
  if (ec) return terminate();  // the end of the stream, or an error
  env_.probe.bytes_in.fetch_add(n, std::memory_order_relaxed);
  more_to_read_ = n == thread_read_size;
  on_data(buffer.data(), n, false);
}

void connection::read_done(boost::system::error_code ec, std::size_t n) {
  reading_ = false;
  if (ec) return terminate();
  env_.probe.bytes_in.fetch_add(n, std::memory_order_relaxed);
  rlen_ += n;
  on_data(rbuf_.data(), rlen_, true);
}

// `data` is rbuf_ (`own`) or the thread's buffer; either has `padding` bytes past `len`.
void connection::on_data(std::uint8_t* data, std::size_t len, bool own) {
  last_activity_ms_ = common::steady_ms();
  const std::size_t capacity = own ? rbuf_.size() : thread_read_size + padding;
  std::size_t offset = 0;
  batching_ = true;
  if (close_received_ || discarding_) {
    offset = len;  // the peer closed or the stream is unusable: what comes is discarded
  } else {
    // A channel takes what it can; an upgrade hands the rest (pipelined frames) to the next.
    while (offset < len && !terminated_ && !close_received_ && !discarding_ && !input_paused_) {
      auto* current = channel_.get();
      offset += current->on_bytes(data + offset, len - offset, capacity - offset);
      if (channel_.get() == current) break;
    }
  }
  retired_.reset();
  batching_ = false;
  if (terminated_) return;
  if (adapter_ && adapter_->take_rearm()) arm_timer();  // a QoS 1/2 resend deadline
  write();
  keep_unread(data, offset, len, own);
  if (queue_.pending_replies() > max_pending_replies && !close_sent_) {
    read_paused_ = true;  // resumed by after_write()
    env_.probe.read_pauses.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  read();
}

// An unfinished frame (request, packet): its bytes wait in this connection's own buffer.
void connection::keep_unread(std::uint8_t* data, std::size_t offset, std::size_t len, bool own) {
  const std::size_t left = len - offset;
  if (own) {
    if (offset > 0) std::memmove(rbuf_.data(), rbuf_.data() + offset, left);
  } else if (left > 0) {
    rbuf_.resize(left + read_chunk + padding);
    std::memcpy(rbuf_.data(), data + offset, left);
  }
  rlen_ = left;
}

// --- writing ---

void connection::send_frame(std::string frame) {
  if (terminated_ || close_sent_) return;
  push({nullptr, nullptr, std::move(frame), false});
}

void connection::send_shared(const core::message_ptr& m, const std::string& bytes) {
  if (terminated_ || close_sent_) return;
  push({m, &bytes, {}, false});
}

void connection::send_with_tail(const core::message_ptr& m, std::string head,
                                const std::string& tail) {
  if (terminated_ || close_sent_) return;
  push({m, &tail, std::move(head), false, true});
}

std::shared_ptr<void> connection::hold() {
  return shared_from_this();
}

protocol::transport_link::poster connection::owner_poster() {
  return [weak = weak_from_this(), ex = executor_](std::function<void()> f) {
    auto self = weak.lock();
    if (!self) return;
    asio::post(ex, [self, f = std::move(f)] {
      if (!self->terminated_) f();
    });
  };
}

void connection::resume_input() {
  if (!input_paused_) return;
  input_paused_ = false;
  // From a handler of its own: the adapter that resumes is in the middle of something.
  asio::post(executor_, [self = shared_from_this()] {
    if (self->terminated_ || self->input_paused_) return;
    // The answer that let input go may have authenticated the client (its auth deadline
    // goes, its keep alive comes) or set a deadline of the adapter's (an expiry).
    if (self->adapter_ && self->adapter_->authenticated()) self->authenticated();
    if (self->adapter_ && self->adapter_->take_rearm()) self->arm_timer();
    if (self->reading_) return;
    // What came while input was held, first; then more from the stream.
    if (self->rlen_ > 0) return self->on_data(self->rbuf_.data(), self->rlen_, true);
    self->read();
  });
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

void connection::lock_inbox() noexcept {
  while (inbox_lock_.exchange(true, std::memory_order_acquire))
    while (inbox_lock_.load(std::memory_order_relaxed))
      cpu_relax();
}

// Any thread, with the routing lock held: park the message in the inbox and post one drain
// per batch, not one handler per message. The drain runs on the owner thread, outside the
// router's locks, and ends with one write for everything it queued.
void connection::deliver(core::message_ptr msg, std::uint8_t qos) {
  lock_inbox();
  inbox_.push_back({std::move(msg), qos});
  const bool post = !drain_posted_;
  drain_posted_ = true;
  unlock_inbox();
  if (post) asio::post(executor_, [self = shared_from_this()] { self->drain_inbox(); });
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
  if (qos > 0) return adapter_->deliver_acked(msg, qos, common::steady_ms());
  std::string own;
  bool keep = false;
  const std::string* bytes = adapter_->delivery_frame(*msg, own, keep);
  push({std::move(msg), bytes, std::move(own), !keep});
}

// Queues one frame. The write happens once the current handler is done with everything it
// queues (the end of a read, of a drain, or a posted flush), so frames coalesce.
void connection::push(outbound_queue::item item) {
  const auto before = queue_.waiting_bytes();
  const auto dropped = queue_.push(std::move(item));
  account(before);
  if (dropped) {
    // Past the bound: the oldest QoS 0 messages went (never one being written). A queue that
    // stays there for slow_consumer_timeout_ms closes the connection.
    env_.probe.dropped.fetch_add(dropped, std::memory_order_relaxed);
    const auto now = common::steady_ms();
    if (full_since_ms_ == 0) {
      full_since_ms_ = now;
      arm_timer();
    } else if (now - full_since_ms_ >= env_.settings.slow_consumer_timeout_ms) {
      return close_slow_consumer();
    }
  }
  if (batching_ || queue_.writing() || write_posted_) return;
  write_posted_ = true;
  asio::post(executor_, [self = shared_from_this()] {
    self->write_posted_ = false;
    self->write();
  });
}

void connection::account(std::size_t before) noexcept {
  if (terminated_) return;  // its bytes were taken out of the figure then
  add_queued(static_cast<std::int64_t>(queue_.waiting_bytes()) - static_cast<std::int64_t>(before));
}

void connection::add_queued(std::int64_t delta) noexcept {
  if (!delta) return;
  // This thread is the figure's only writer: no read-modify-write needed.
  auto& q = thread_.queued_bytes;
  q.store(q.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
}

void connection::write() {
  if (terminated_ || queue_.writing() || queue_.empty()) return;
  const auto before = queue_.waiting_bytes();
  auto buffers = queue_.gather();
  account(before);
  if (buffers.empty()) return;
  env_.probe.writes.fetch_add(1, std::memory_order_relaxed);
  stream_write(buffers);
}

void connection::written(boost::system::error_code ec) {
  if (ec) return terminate();
  std::size_t bytes = 0;
  const auto n = queue_.written(&bytes);
  env_.probe.frames_out.fetch_add(n, std::memory_order_relaxed);
  env_.probe.bytes_out.fetch_add(bytes, std::memory_order_relaxed);
  after_write();
}

void connection::after_write() {
  if (read_paused_ && queue_.pending_replies() <= max_pending_replies / 2) {
    read_paused_ = false;
    read();
  }
  if (full_since_ms_ && !queue_.full()) full_since_ms_ = 0;
  if (queue_.empty() && close_sent_) return said_goodbye();
  write();
}

// Our last bytes are out. Half-close, and read (and discard) until the peer's close or the
// stream's end, at most the close timeout (a WebSocket close handshake) or linger_ms: input
// left unread when a socket closes resets the connection, and the reset can destroy the
// goodbye (a reason code, a close frame) before the client has read it.
void connection::said_goodbye() {
  if (lingering_ || terminated_) return;
  if (close_received_ && channel_ && channel_->awaits_close()) return terminate();  // done
  lingering_ = true;
  stream_shutdown_send();
  const bool handshake = channel_ && channel_->awaits_close() && !close_received_ && !discarding_;
  close_deadline_ms_ =
      common::steady_ms() + (handshake ? env_.settings.close_timeout_ms : env_.settings.linger_ms);
  arm_timer();
  // What was held unread (input held for an answer) first: it may end with the close frame.
  if (rlen_ > 0 && !reading_) return on_data(rbuf_.data(), rlen_, true);
  read();  // (a paused read resumes: everything now is discarded or a close frame)
}

// --- closing ---

void connection::close(close_reason why, std::string_view text) {
  close_with(protocol::websocket_close_code(why), text, why);
}

// `code`: the WebSocket close code (a frame error's own, or `why`'s).
void connection::close_with(std::uint16_t code, std::string_view reason, close_reason why) {
  if (terminated_ || close_sent_) return;
  close_sent_ = true;
  read_paused_ = false;
  // Input held for an answer (a refusal that came later): what the client sent is read again,
  // the adapter ignoring it, so that its close frame ends the handshake.
  input_paused_ = false;
  if (adapter_) adapter_->on_closed();
  // Queued messages are not worth waiting for once we are leaving.
  const auto before = queue_.waiting_bytes();
  queue_.drop_waiting_messages();
  account(before);
  if (channel_) channel_->goodbye(code, reason, why);
  close_deadline_ms_ = common::steady_ms() + env_.settings.close_timeout_ms;
  arm_timer();
  if (queue_.empty() && !queue_.writing()) return said_goodbye();
  write();
}

void connection::close_slow_consumer() {
  env_.probe.slow_consumer_closes.fetch_add(1, std::memory_order_relaxed);
  spdlog::info("closing slow consumer {} ({}): its queue stayed full for {} ms", remote_,
               adapter_ ? adapter_->client_id() : std::string(),
               env_.settings.slow_consumer_timeout_ms);
  close(close_reason::slow_consumer, "Slow consumer");
}

void connection::kick(close_reason why, std::string_view text) {
  shutdown(why, std::string(text));
}

void connection::shutdown(close_reason why, std::string text) {
  asio::post(executor_, [self = shared_from_this(), why, text = std::move(text)] {
    if (!self->started_) return self->terminate();
    self->close(why, text);
  });
}

void connection::recheck_credentials() {
  asio::post(executor_, [self = shared_from_this()] {
    if (!self->terminated_ && self->adapter_) self->adapter_->recheck_credentials();
  });
}

void connection::terminate() {
  if (terminated_) return;
  add_queued(-static_cast<std::int64_t>(queue_.waiting_bytes()));  // what waits leaves the figure
  terminated_ = true;
  if (adapter_) adapter_->on_closed();
  cancel();
  stream_close();
}

// --- timers: auth deadline, heartbeat, idle limit, slow consumer, close deadline ---

void connection::arm_timer() {
  if (terminated_) return;
  const auto& s = env_.settings;
  std::int64_t next = INT64_MAX;
  if (close_deadline_ms_) next = std::min(next, close_deadline_ms_);
  if (auth_deadline_ms_) next = std::min(next, auth_deadline_ms_);
  if (full_since_ms_) next = std::min(next, full_since_ms_ + s.slow_consumer_timeout_ms);
  if (started_ && !close_sent_) {
    if (channel_ && channel_->pings()) next = std::min(next, last_ping_ms_ + s.ping_interval_ms);
    next = std::min(next, last_activity_ms_ + idle_limit_ms());
    if (adapter_)
      if (auto due = adapter_->next_due()) next = std::min(next, *due);
  }
  if (next == INT64_MAX) return cancel();
  thread_.wheel.schedule(*this, next);
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
  return env_.settings.idle_timeout_ms;
}

void connection::on_timer() {
  if (terminated_) return;
  const auto& s = env_.settings;
  const auto now = common::steady_ms();
  if (close_deadline_ms_ && now >= close_deadline_ms_) return terminate();
  if (auth_deadline_ms_ && now >= auth_deadline_ms_) {
    auth_deadline_ms_ = 0;
    if (!started_) return terminate();
    close(close_reason::auth_required, "Authentication timeout");
  } else if (full_since_ms_ && now - full_since_ms_ >= s.slow_consumer_timeout_ms &&
             queue_.full()) {
    close_slow_consumer();
  } else if (started_ && !close_sent_) {
    if (adapter_) adapter_->on_timer(now);  // QoS 1/2 resends that fell due
    if (now - last_activity_ms_ >= idle_limit_ms()) {
      close(close_reason::heartbeat_timeout, "Heartbeat timeout");
    } else if (channel_ && channel_->pings() && now - last_ping_ms_ >= s.ping_interval_ms) {
      last_ping_ms_ = now;
      // Quiet since the last ping: give back what past bursts grew (an idle connection
      // should cost its socket and little more).
      queue_.shrink();
      std::string frame;
      protocol::websocket::append_frame(frame, protocol::websocket::opcode::ping, {});
      send_frame(std::move(frame));
    }
  }
  arm_timer();
}

}  // namespace wsagent::net
