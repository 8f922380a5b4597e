#include "load.hpp"

#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <cstring>
#include <deque>
#include <random>
#include <span>
#include <thread>

#include "common/json_writer.hpp"
#include "protocol/mqtt/codec.hpp"
#include "protocol/websocket/frame.hpp"

namespace wsagent::bench {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
namespace ws = protocol::websocket;
namespace mqtt = protocol::mqtt;

namespace {

constexpr std::uint64_t window_bit = std::uint64_t{1} << 62;
constexpr std::uint64_t time_mask = (std::uint64_t{1} << 60) - 1;
constexpr std::size_t stamp_digits = 16;
constexpr std::size_t batch_max = 64;
constexpr std::size_t read_chunk = 64 * 1024;
constexpr std::size_t max_message = 16 * 1024 * 1024;
// The load generator's frames are masked with the key 0: RFC 6455 requires the mask bit
// from a client and a key the server cannot predict, which protects proxies, not servers.
// The server still runs its unmasking loop; the generator saves the XOR.
constexpr std::uint32_t zero_key = 0;

std::int64_t steady_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

void write_hex(char* at, std::uint64_t v) {
  static constexpr char digits[] = "0123456789abcdef";
  for (int i = static_cast<int>(stamp_digits) - 1; i >= 0; --i) {
    at[i] = digits[v & 15];
    v >>= 4;
  }
}

std::optional<std::uint64_t> read_hex(const char* p, std::size_t n) {
  if (n < stamp_digits) return std::nullopt;
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < stamp_digits; ++i) {
    const char c = p[i];
    std::uint64_t d;
    if (c >= '0' && c <= '9')
      d = static_cast<std::uint64_t>(c - '0');
    else if (c >= 'a' && c <= 'f')
      d = static_cast<std::uint64_t>(c - 'a' + 10);
    else
      return std::nullopt;
    v = (v << 4) | d;
  }
  return v;
}

void append_ws(std::string& out, ws::opcode op, std::string_view payload) {
  const auto h = ws::make_header(op, payload.size(), true, &zero_key);
  out.append(reinterpret_cast<const char*>(h.bytes.data()), h.size);
  out.append(payload);
}

std::span<const std::uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

std::string_view text_of(std::span<const std::uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// One published message, ready to copy: the whole frame or packet with the offsets where
// the send time and (QoS 1) the packet id are patched in.
struct templ {
  std::string bytes;
  std::size_t time_at = 0;
  std::size_t id_at = 0;  // 0: no packet id
  std::uint32_t fanout = 0;
};

// What one read completion delivered, added to the shared counters once.
struct batch {
  std::int64_t now = 0;
  std::uint64_t count = 0;
  std::uint64_t window = 0;
  std::uint64_t bytes = 0;
};

}  // namespace

std::optional<target> parse_target(const std::string& url, std::string& error) {
  target t;
  std::string_view rest = url;
  if (rest.starts_with("ws://") || rest.starts_with("wss://")) {
    t.proto = target::protocol::native;
    t.via = target::transport::ws;
    t.tls = rest.starts_with("wss://");
  } else if (rest.starts_with("mqtt+ws://") || rest.starts_with("mqtt+wss://")) {
    t.proto = target::protocol::mqtt;
    t.via = target::transport::ws;
    t.path = "/mqtt";
    t.tls = rest.starts_with("mqtt+wss://");
  } else if (rest.starts_with("mqtt://") || rest.starts_with("tcp://") ||
             rest.starts_with("mqtts://")) {
    t.proto = target::protocol::mqtt;
    t.via = target::transport::tcp;
    t.tls = rest.starts_with("mqtts://");
    t.port = t.tls ? "8883" : "1883";
  } else {
    error = "unsupported URL '" + url +
            "': use ws://, mqtt://, mqtt+ws:// (or wss://, mqtts://, mqtt+wss://)";
    return std::nullopt;
  }
  if (t.tls && t.via == target::transport::ws) t.port = "443";
  rest.remove_prefix(rest.find("://") + 3);
  const auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) t.path = std::string(rest.substr(slash));
  if (const auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    t.port = std::string(authority.substr(colon + 1));
    authority = authority.substr(0, colon);
  }
  if (!authority.empty()) t.host = std::string(authority);
  if (t.port.empty() || t.port.find_first_not_of("0123456789") != std::string::npos) {
    error = "bad port in URL '" + url + "'";
    return std::nullopt;
  }
  return t;
}

std::uint64_t raise_file_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    setrlimit(RLIMIT_NOFILE, &lim);
    getrlimit(RLIMIT_NOFILE, &lim);
  }
  return lim.rlim_cur;
}

class conn;

struct worker {
  asio::io_context ioc{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  histogram hist;      // touched by this worker's thread only
  histogram ack_hist;  // QoS 1: publish to the server's acknowledgement
  std::thread thread;
};

struct engine::impl {
  impl(engine& e, target t, plan p) : owner(e), tgt(std::move(t)), pl(std::move(p)) {}

  engine& owner;
  target tgt;
  plan pl;
  tcp::endpoint remote;
  // TLS targets: one client context for every connection (read-only once set up).
  asio::ssl::context tls{asio::ssl::context::tls_client};
  std::vector<asio::ip::address> sources;
  std::vector<std::unique_ptr<worker>> workers;
  std::vector<std::unique_ptr<conn>> conns;
  std::thread starter;
  std::int64_t epoch_ns = steady_ns();
  std::size_t publishers = 0;
  double avg_fanout = 1;

  std::atomic<int> ph{static_cast<int>(phase::connect)};
  std::atomic<bool> publishing{false};
  std::atomic<bool> stopping{false};

  std::atomic<std::uint64_t> connected{0}, ready{0}, failed{0}, disconnected{0};
  std::atomic<std::uint64_t> sent{0}, sent_window{0}, expected{0}, expected_window{0};
  std::atomic<std::uint64_t> delivered{0}, delivered_window{0}, delivered_in_phase{0},
      bytes_in_phase{0};
  std::atomic<std::uint64_t> errors{0}, stalls{0}, written_off{0};

  std::mutex park_mu;
  std::vector<conn*> parked;
  std::atomic<int> parked_count{0};
  std::uint64_t watch_delivered = 0;
  std::int64_t watch_progress_ns = 0;

  mutable std::mutex err_mu;
  std::string first_error;

  std::int64_t now() const { return steady_ns() - epoch_ns; }
  bool measuring() const { return ph.load(std::memory_order_relaxed) == int(phase::measure); }

  void note_error(std::string what, bool refused) {
    errors.fetch_add(1, std::memory_order_relaxed);
    if (refused) owner.unsupported_.store(true);
    std::lock_guard lock(err_mu);
    if (first_error.empty()) first_error = std::move(what);
  }

  std::uint64_t in_flight() const {
    const auto e = expected.load(std::memory_order_relaxed);
    const auto d =
        delivered.load(std::memory_order_relaxed) + written_off.load(std::memory_order_relaxed);
    return e > d ? e - d : 0;
  }
  std::uint64_t budget() const {
    return static_cast<std::uint64_t>(static_cast<double>(pl.inflight) *
                                      static_cast<double>(std::max<std::size_t>(publishers, 1)) *
                                      avg_fanout);
  }
  // Closed loop: how many more messages of `fanout` deliveries may be sent now.
  std::int64_t allowance(double fanout) const {
    const auto b = budget();
    const auto f = in_flight();
    if (f >= b) return 0;
    return static_cast<std::int64_t>(static_cast<double>(b - f) / std::max(fanout, 1.0));
  }
  void park(conn* c);
  void wake(bool force);
};

class conn {
 public:
  conn(engine::impl& e, worker& w, const conn_plan& p)
      : e_(e), w_(w), plan_(p), sock_(w.ioc), timer_(w.ioc) {}

  void start() {
    asio::post(w_.ioc, [this] { do_connect(); });
  }
  void begin_publishing() {
    asio::post(w_.ioc, [this] { on_begin_publishing(); });
  }
  void resume() {
    asio::post(w_.ioc, [this] { try_publish(); });
  }
  void say_goodbye() {
    asio::post(w_.ioc, [this] { goodbye(); });
  }
  bool is_publisher() const { return !plan_.routes.empty(); }

  bool parked = false;  // guarded by engine::impl::park_mu

 private:
  enum class state { idle, connecting, upgrading, mqtt_connect, subscribing, ready, closed };

  bool via_ws() const { return e_.tgt.via == target::transport::ws; }
  bool is_mqtt() const { return e_.tgt.proto == target::protocol::mqtt; }

  void fail(std::string what, bool refused = false) {
    if (state_ == state::closed) return;
    const bool was_ready = state_ == state::ready;
    state_ = state::closed;
    boost::system::error_code ignored;
    timer_.cancel();
    sock_.close(ignored);
    if (e_.stopping.load()) return;
    if (was_ready)
      e_.disconnected.fetch_add(1);
    else
      e_.failed.fetch_add(1);
    e_.note_error(std::move(what), refused);
  }

  void do_connect() {
    boost::system::error_code ec;
    tls_.reset();
    sock_.open(tcp::v4(), ec);
    if (ec) {
      fail(ec == boost::system::errc::too_many_files_open
               ? "socket: too many open files (this process's RLIMIT_NOFILE is reached)"
               : "socket: " + ec.message());
      return;
    }
    if (!e_.sources.empty()) {
      // Let connect() pick the port per destination, so each source address offers the
      // whole ephemeral range.
      int one = 1;
      ::setsockopt(sock_.native_handle(), IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
      sock_.bind(tcp::endpoint(e_.sources[index_of_source()], 0), ec);
      if (ec) {
        fail("bind: " + ec.message());
        return;
      }
    }
    state_ = state::connecting;
    sock_.async_connect(remote_, [this](boost::system::error_code err) {
      if (err) return fail("connect: " + err.message());
      if (!e_.tgt.tls) return on_connected();
      tls_.emplace(sock_, e_.tls);
      SSL_ctrl(tls_->native_handle(), SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(e_.tgt.host.c_str()));
      if (!e_.pl.cafile.empty())
        tls_->set_verify_callback(asio::ssl::host_name_verification(e_.tgt.host));
      tls_->async_handshake(asio::ssl::stream_base::client, [this](boost::system::error_code e) {
        if (e) return fail("TLS handshake: " + e.message());
        on_connected();
      });
    });
  }

  std::size_t index_of_source() {
    static std::atomic<std::size_t> next{0};
    return next.fetch_add(1, std::memory_order_relaxed) % e_.sources.size();
  }

  void on_connected() {
    boost::system::error_code ignored;
    sock_.set_option(tcp::no_delay(true), ignored);
    e_.connected.fetch_add(1);
    rbuf_.resize(read_chunk);
    if (via_ws()) {
      ws_.emplace(ws::frame_reader::role::client, max_message);
      std::string path = e_.tgt.path;
      if (!is_mqtt() && e_.pl.persistent && !plan_.filters.empty())
        path += std::string(path.find('?') == std::string::npos ? "?" : "&") +
                "clientId=" + session_id() + "&session=persistent";
      std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + e_.tgt.host + ":" + e_.tgt.port +
                        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                        "Sec-WebSocket-Version: 13\r\n";
      if (is_mqtt()) req += "Sec-WebSocket-Protocol: mqtt\r\n";
      if (!e_.pl.token.empty() && !is_mqtt())
        req += "Authorization: Bearer " + e_.pl.token + "\r\n";
      req += "\r\n";
      out_ += req;
      state_ = state::upgrading;
    } else {
      send_connect();
    }
    flush();
    read();
  }

  std::string session_id() const {
    return "wsb-" + std::to_string(::getpid()) + "-" + std::to_string(serial_);
  }

  void send_connect() {
    std::string packet;
    mqtt::connect_options o;
    o.ver = mqtt::version::v311;
    const std::string id = session_id();
    o.client_id = id;
    o.clean_start = !(e_.pl.persistent && !plan_.filters.empty());
    o.keep_alive = 0;  // idle connections must stay; the bench never goes quiet mid-run
    if (!e_.pl.token.empty()) {
      o.username = std::string_view("bench");
      o.password = std::string_view(e_.pl.token);
    }
    mqtt::encode_connect(packet, o);
    send_mqtt(packet);
    state_ = state::mqtt_connect;
  }

  void send_mqtt(std::string_view packet) {
    if (via_ws())
      append_ws(out_, ws::opcode::binary, packet);
    else
      out_.append(packet);
  }

  // The session is open (native: upgraded; MQTT: CONNACK accepted).
  void on_session() {
    if (plan_.filters.empty()) return become_ready();
    if (is_mqtt()) {
      std::vector<mqtt::subscription> subs;
      for (const auto& f : plan_.filters)
        subs.push_back({f, static_cast<std::uint8_t>(e_.pl.qos)});
      std::string packet;
      mqtt::encode_subscribe(packet, mqtt::version::v311, 1, subs);
      send_mqtt(packet);
    } else {
      std::string frame;
      common::json_writer w(frame);
      w.begin_object().string("type", "subscribe").string("id", "s").begin_array("tags");
      for (const auto& f : plan_.filters)
        w.string_value(f);
      w.end_array();
      if (e_.pl.qos > 0) w.integer("qos", e_.pl.qos);
      w.end_object();
      append_ws(out_, ws::opcode::text, frame);
    }
    state_ = state::subscribing;
  }

  void become_ready() {
    state_ = state::ready;
    build_templates();
    e_.ready.fetch_add(1);
  }

  void build_templates() {
    if (plan_.routes.empty()) return;
    std::string payload(std::max(e_.pl.payload_size, stamp_digits), 'x');
    payload.replace(0, stamp_digits, stamp_digits, '0');
    double fanouts = 0;
    for (const auto& r : plan_.routes) {
      templ t;
      t.fanout = r.fanout;
      fanouts += r.fanout;
      std::string body;
      std::size_t at = 0;
      if (is_mqtt()) {
        mqtt::publish p;
        p.topic = r.tag;
        p.payload = bytes_of(payload);
        p.qos = static_cast<std::uint8_t>(e_.pl.qos);
        p.packet_id = p.qos ? 1 : 0;
        mqtt::encode_publish(body, mqtt::version::v311, p);
        at = body.size() - payload.size();
        if (p.qos) t.id_at = at - 2;
      } else {
        common::json_writer w(body);
        w.begin_object().string("type", "publish").string("tag", r.tag);
        if (e_.pl.qos > 0) w.integer("qos", e_.pl.qos);
        w.string("payload", payload).end_object();
        at = body.size() - 2 - payload.size();
      }
      if (via_ws()) {
        const auto h = ws::make_header(is_mqtt() ? ws::opcode::binary : ws::opcode::text,
                                       body.size(), true, &zero_key);
        t.bytes.assign(reinterpret_cast<const char*>(h.bytes.data()), h.size);
        at += h.size;
        if (t.id_at) t.id_at += h.size;
      }
      t.bytes += body;
      t.time_at = at;
      templates_.push_back(std::move(t));
    }
    fanout_ = fanouts / static_cast<double>(plan_.routes.size());
  }

  // --- publishing -------------------------------------------------------------------

  void on_begin_publishing() {
    if (state_ != state::ready || templates_.empty()) return;
    start_ns_ = e_.now();
    if (e_.pl.rate > 0) {
      per_second_ = e_.pl.rate / static_cast<double>(std::max<std::size_t>(e_.publishers, 1));
      period_ns_ = static_cast<std::int64_t>(std::clamp(1e9 / per_second_, 1e6, 1e8));
      // Spread publishers over the period so that they do not all fire together.
      std::minstd_rand rng(static_cast<unsigned>(serial_ + 1));
      next_tick_ = std::chrono::steady_clock::now() +
                   std::chrono::nanoseconds(rng() % static_cast<unsigned>(period_ns_));
      arm_tick();
    } else {
      try_publish();
    }
  }

  void arm_tick() {
    timer_.expires_at(next_tick_);
    timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || state_ != state::ready || !e_.publishing.load()) return;
      const auto elapsed = static_cast<double>(e_.now() - start_ns_);
      const auto due_total = static_cast<std::uint64_t>(elapsed * per_second_ / 1e9);
      std::uint64_t due = due_total > sent_ ? due_total - sent_ : 0;
      due = std::min<std::uint64_t>(due, 1000);
      if (e_.pl.qos > 0)
        due =
            std::min<std::uint64_t>(due, e_.pl.max_unacked - std::min(unacked_, e_.pl.max_unacked));
      if (due) publish_some(due);
      flush();
      next_tick_ += std::chrono::nanoseconds(period_ns_);
      arm_tick();
    });
  }

  void try_publish() {
    if (templates_.empty() || state_ != state::ready || !e_.publishing.load() || writing_ ||
        e_.pl.rate > 0)
      return;
    std::int64_t allow = e_.allowance(fanout_);
    if (e_.pl.qos > 0)
      allow = std::min<std::int64_t>(allow, std::int64_t(e_.pl.max_unacked) - unacked_);
    if (allow <= 0) {
      // QoS 1 waiting for PUBACKs resumes on their arrival; else wait for deliveries.
      if (!(e_.pl.qos > 0 && unacked_ >= e_.pl.max_unacked)) e_.park(this);
      return;
    }
    publish_some(static_cast<std::size_t>(std::min<std::int64_t>(allow, batch_max)));
    flush();
  }

  void publish_some(std::size_t n) {
    const std::int64_t t = e_.now();
    const bool window = e_.measuring();
    const std::uint64_t stamp =
        (static_cast<std::uint64_t>(t) & time_mask) | (window ? window_bit : 0);
    std::uint64_t expected = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const templ& tp = templates_[next_route_];
      if (++next_route_ == templates_.size()) next_route_ = 0;
      const std::size_t base = out_.size();
      out_.append(tp.bytes);
      write_hex(out_.data() + base + tp.time_at, stamp);
      if (tp.id_at) {
        if (++packet_id_ == 0) packet_id_ = 1;
        out_[base + tp.id_at] = static_cast<char>(packet_id_ >> 8);
        out_[base + tp.id_at + 1] = static_cast<char>(packet_id_ & 0xFF);
      }
      if (e_.pl.qos > 0) {
        ++unacked_;
        ack_stamps_.push_back(stamp);  // acknowledged in publish order
      }
      expected += tp.fanout;
    }
    sent_ += n;
    e_.sent.fetch_add(n, std::memory_order_relaxed);
    e_.expected.fetch_add(expected, std::memory_order_relaxed);
    if (window) {
      e_.sent_window.fetch_add(n, std::memory_order_relaxed);
      e_.expected_window.fetch_add(expected, std::memory_order_relaxed);
    }
  }

  // --- writing ----------------------------------------------------------------------

  void flush() {
    if (writing_ || out_.empty() || state_ == state::closed) return;
    std::swap(out_, writing_buf_);
    writing_ = true;
    write_some_bytes(asio::buffer(writing_buf_), [this](boost::system::error_code ec, std::size_t) {
      writing_ = false;
      writing_buf_.clear();
      if (ec) return fail("write: " + ec.message());
      if (closing_) return;
      try_publish();
      flush();
    });
  }

  // --- reading ----------------------------------------------------------------------

  void read() {
    if (rbuf_.size() - rlen_ < read_chunk / 4)
      rbuf_.resize(std::min(rbuf_.size() * 2, max_message + 64));
    auto into = asio::buffer(rbuf_.data() + rlen_, rbuf_.size() - rlen_);
    auto then = [this](boost::system::error_code ec, std::size_t n) { on_read(ec, n); };
    if (tls_)
      tls_->async_read_some(into, then);
    else
      sock_.async_read_some(into, then);
  }

  // All of `buffer` on the socket, or through TLS (one SSL_write: as few records as fit).
  template <class Handler>
  void write_some_bytes(asio::const_buffer buffer, Handler&& h) {
    if (tls_)
      asio::async_write(*tls_, buffer, std::forward<Handler>(h));
    else
      asio::async_write(sock_, buffer, std::forward<Handler>(h));
  }

  void on_read(boost::system::error_code ec, std::size_t n) {
    if (state_ == state::closed) return;
    if (ec) {
      if (closing_) return fail("closed");
      return fail(close_note_.empty() ? "read: " + ec.message() : close_note_);
    }
    rlen_ += n;
    batch b;
    b.now = e_.now();
    const std::size_t used = consume(b);
    if (state_ == state::closed) return;
    if (used) {
      std::memmove(rbuf_.data(), rbuf_.data() + used, rlen_ - used);
      rlen_ -= used;
    }
    if (b.count) {
      e_.delivered.fetch_add(b.count, std::memory_order_relaxed);
      e_.delivered_window.fetch_add(b.window, std::memory_order_relaxed);
      if (e_.measuring()) {
        e_.delivered_in_phase.fetch_add(b.count, std::memory_order_relaxed);
        e_.bytes_in_phase.fetch_add(b.bytes, std::memory_order_relaxed);
      }
      if (e_.parked_count.load(std::memory_order_relaxed) > 0) e_.wake(false);
    }
    if (acked_) {
      acked_ = false;
      if (e_.pl.rate <= 0) try_publish();
    }
    flush();
    read();
  }

  std::size_t consume(batch& b) {
    std::size_t used = 0;
    if (state_ == state::upgrading) {
      const std::string_view text(reinterpret_cast<const char*>(rbuf_.data()), rlen_);
      const auto end = text.find("\r\n\r\n");
      if (end == std::string_view::npos) {
        if (rlen_ > 16384) fail("upgrade: response headers too long");
        return 0;
      }
      if (!text.starts_with("HTTP/1.1 101")) {
        const auto line = text.substr(0, text.find("\r\n"));
        fail("upgrade refused: " + std::string(line), line.find(" 40") != std::string_view::npos);
        return 0;
      }
      used = end + 4;
      if (is_mqtt())
        send_connect();
      else
        on_session();
    }
    if (via_ws()) {
      while (state_ != state::closed) {
        const auto ev = ws_->next(std::span<std::uint8_t>(rbuf_.data() + used, rlen_ - used));
        using k = ws::frame_reader::kind;
        if (ev.what == k::need_more) break;
        used += ev.consumed;
        switch (ev.what) {
          case k::message:
            if (is_mqtt())
              on_mqtt_stream(ev.payload, b);
            else
              on_native(text_of(ev.payload), b);
            break;
          case k::ping: {
            const auto h = ws::make_header(ws::opcode::pong, ev.payload.size(), true, &zero_key);
            out_.append(reinterpret_cast<const char*>(h.bytes.data()), h.size);
            out_.append(text_of(ev.payload));
            break;
          }
          case k::close:
            close_note_ =
                "closed by the server: " + std::to_string(ev.code) + " " + std::string(ev.reason);
            if (!closing_) fail(close_note_, ev.code == 4400 || ev.code == 4403);
            return used;
          case k::error:
            fail("WebSocket error from the server's frames: " + std::string(ev.reason));
            return used;
          default:
            break;
        }
      }
      return used;
    }
    return used +
           on_mqtt_bytes(std::span<const std::uint8_t>(rbuf_.data() + used, rlen_ - used), b);
  }

  // MQTT over WebSocket: packets may straddle messages, so unfinished bytes wait in mbuf_.
  void on_mqtt_stream(std::span<const std::uint8_t> payload, batch& b) {
    if (mbuf_.empty()) {
      const auto used = on_mqtt_bytes(payload, b);
      mbuf_.assign(text_of(payload.subspan(used)));
      return;
    }
    mbuf_.append(text_of(payload));
    const auto used = on_mqtt_bytes(bytes_of(mbuf_), b);
    mbuf_.erase(0, used);
  }

  std::size_t on_mqtt_bytes(std::span<const std::uint8_t> in, batch& b) {
    std::size_t used = 0;
    while (state_ != state::closed) {
      const auto r = mqtt::split(in.subspan(used), max_message);
      if (r.st == mqtt::split_result::status::need_more) break;
      if (r.st == mqtt::split_result::status::error) {
        fail("MQTT framing from the server: " + std::string(r.error));
        break;
      }
      used += r.size;
      on_mqtt(r, b);
    }
    return used;
  }

  void on_mqtt(const mqtt::split_result& r, batch& b) {
    using t = mqtt::packet_type;
    switch (r.type) {
      case t::publish: {
        const auto p = mqtt::parse_publish(r.flags, r.body, mqtt::version::v311);
        if (!p.ok) return fail("bad PUBLISH from the server: " + std::string(p.error.message));
        delivered(text_of(p.value.payload), b);
        if (p.value.qos == 1) {
          std::string ack;
          mqtt::encode_ack(ack, mqtt::version::v311, t::puback, p.value.packet_id);
          send_mqtt(ack);
        }
        break;
      }
      case t::puback:
        on_publish_acked(b);
        break;
      case t::connack: {
        const auto c = mqtt::parse_connack(r.flags, r.body, mqtt::version::v311);
        if (!c.ok) return fail("bad CONNACK: " + std::string(c.error.message));
        if (c.value.code != 0)
          return fail("CONNACK refused with code " + std::to_string(c.value.code), true);
        on_session();
        break;
      }
      case t::suback: {
        const auto s = mqtt::parse_suback(r.flags, r.body, mqtt::version::v311);
        if (!s.ok) return fail("bad SUBACK: " + std::string(s.error.message));
        for (auto code : s.value.codes)
          if (code >= 0x80) return fail("SUBACK refused a subscription", true);
        if (e_.pl.qos > 0)
          for (auto code : s.value.codes)
            if (code < e_.pl.qos)
              return fail("SUBACK granted QoS " + std::to_string(code) + " only", true);
        become_ready();
        break;
      }
      default:
        break;
    }
  }

  void on_native(std::string_view text, batch& b) {
    static constexpr std::string_view message_prefix = R"({"type":"message")";
    static constexpr std::string_view payload_key = R"("payload":")";
    if (text.starts_with(message_prefix)) {
      const auto at = text.find(payload_key);
      if (at == std::string_view::npos) return;
      delivered(text.substr(at + payload_key.size()), b);
      // A QoS 1 delivery ends with ..."qos":1,"seq":N}: acknowledge it.
      static constexpr std::string_view seq_key = R"("qos":1,"seq":)";
      if (const auto q = text.rfind(seq_key); q != std::string_view::npos) {
        const auto digits = text.substr(q + seq_key.size());
        const auto end = digits.find_first_not_of("0123456789");
        std::string ack = R"({"type":"ack","seq":)";
        ack.append(digits.substr(0, end)).push_back('}');
        append_ws(out_, ws::opcode::text, ack);
      }
      return;
    }
    if (text.starts_with(R"({"type":"ack","msgid")")) {  // our QoS 1 publish is routed
      on_publish_acked(b);
      return;
    }
    if (text.starts_with(R"({"type":"subscribed")")) {
      if (state_ == state::subscribing) become_ready();
      return;
    }
    if (text.find(R"("type":"error")") != std::string_view::npos) {
      const bool refused = text.find("\"unsupported\"") != std::string_view::npos ||
                           text.find("\"forbidden\"") != std::string_view::npos;
      e_.note_error("error from the server: " + std::string(text.substr(0, 300)), refused);
      if (state_ == state::subscribing) fail("subscribe refused", refused);
    }
  }

  // The server acknowledged our oldest unacknowledged publish (acks come in publish order,
  // natively and in MQTT): its time to the ack, when it was sent in the window.
  void on_publish_acked(const batch& b) {
    if (unacked_) --unacked_;
    acked_ = true;
    if (ack_stamps_.empty()) return;
    const auto stamp = ack_stamps_.front();
    ack_stamps_.pop_front();
    if (!(stamp & window_bit)) return;
    const auto sent_at = static_cast<std::int64_t>(stamp & time_mask);
    w_.ack_hist.record(static_cast<std::uint64_t>(std::max<std::int64_t>(b.now - sent_at, 0)));
  }

  void delivered(std::string_view payload, batch& b) {
    const auto stamp = read_hex(payload.data(), payload.size());
    if (!stamp) return;
    ++b.count;
    b.bytes += e_.pl.payload_size;
    if (*stamp & window_bit) {
      ++b.window;
      const auto sent_at = static_cast<std::int64_t>(*stamp & time_mask);
      w_.hist.record(static_cast<std::uint64_t>(std::max<std::int64_t>(b.now - sent_at, 0)));
    }
  }

  void goodbye() {
    if (state_ == state::closed || state_ == state::idle) return;
    closing_ = true;
    if (state_ == state::connecting) return;
    if (is_mqtt() && state_ != state::upgrading) {
      std::string packet;
      mqtt::encode_disconnect(packet, mqtt::version::v311);
      send_mqtt(packet);
    } else if (via_ws() && state_ != state::upgrading) {
      const std::uint8_t body[2] = {0x03, 0xE8};  // 1000
      append_ws(out_, ws::opcode::close, std::string_view(reinterpret_cast<const char*>(body), 2));
    }
    flush();
  }

 public:
  std::size_t serial_ = 0;
  tcp::endpoint remote_;  // the target's, or for a subscriber one of plan::subscriber_targets

 private:
  engine::impl& e_;
  worker& w_;
  const conn_plan& plan_;
  tcp::socket sock_;
  std::optional<asio::ssl::stream<tcp::socket&>> tls_;  // TLS targets, once connected
  asio::steady_timer timer_;
  state state_ = state::idle;

  std::optional<ws::frame_reader> ws_;
  std::vector<std::uint8_t> rbuf_;
  std::size_t rlen_ = 0;
  std::string mbuf_;
  std::string out_;
  std::string writing_buf_;
  bool writing_ = false;
  bool closing_ = false;
  bool acked_ = false;
  std::string close_note_;

  std::vector<templ> templates_;
  std::size_t next_route_ = 0;
  double fanout_ = 1;
  std::uint64_t sent_ = 0;
  std::uint32_t unacked_ = 0;
  std::deque<std::uint64_t> ack_stamps_;  // QoS 1: send stamps of unacknowledged publishes
  std::uint16_t packet_id_ = 0;
  std::int64_t start_ns_ = 0;
  double per_second_ = 0;
  std::int64_t period_ns_ = 0;
  std::chrono::steady_clock::time_point next_tick_;
};

void engine::impl::park(conn* c) {
  std::lock_guard lock(park_mu);
  if (c->parked) return;
  c->parked = true;
  parked.push_back(c);
  parked_count.fetch_add(1);
}

void engine::impl::wake(bool force) {
  if (!force && in_flight() > budget() / 4 * 3) return;
  std::vector<conn*> go;
  {
    std::lock_guard lock(park_mu);
    go.swap(parked);
    parked_count.store(0);
    for (auto* c : go)
      c->parked = false;
  }
  for (auto* c : go)
    c->resume();
}

engine::engine(target t, plan p)
    : impl_(std::make_unique<impl>(*this, std::move(t), std::move(p))) {}

engine::~engine() {
  stop();
}

void engine::start() {
  auto& m = *impl_;
  boost::system::error_code ec;
  if (m.tgt.tls) {
    if (m.pl.cafile.empty()) {
      m.tls.set_verify_mode(asio::ssl::verify_none);
    } else {
      m.tls.set_verify_mode(asio::ssl::verify_peer);
      m.tls.load_verify_file(m.pl.cafile, ec);
      if (ec) throw std::runtime_error("--cafile " + m.pl.cafile + ": " + ec.message());
    }
  }
  auto addr = asio::ip::make_address(m.tgt.host, ec);
  if (ec) {
    asio::io_context tmp;
    tcp::resolver resolver(tmp);
    auto results = resolver.resolve(tcp::v4(), m.tgt.host, m.tgt.port);
    m.remote = *results.begin();
  } else {
    m.remote = tcp::endpoint(addr, static_cast<unsigned short>(std::stoi(m.tgt.port)));
  }
  for (const auto& s : m.pl.sources)
    m.sources.push_back(asio::ip::make_address(s));
  std::vector<tcp::endpoint> sub_remotes;
  for (const auto& [host, port] : m.pl.subscriber_targets) {
    asio::io_context tmp;
    tcp::resolver resolver(tmp);
    sub_remotes.push_back(*resolver.resolve(tcp::v4(), host, port).begin());
  }
  std::size_t next_sub = 0;

  const int threads = std::max(1, m.pl.threads);
  for (int i = 0; i < threads; ++i) {
    auto w = std::make_unique<worker>();
    w->guard.emplace(w->ioc.get_executor());
    m.workers.push_back(std::move(w));
  }
  double fanouts = 0;
  for (std::size_t i = 0; i < m.pl.conns.size(); ++i) {
    const auto& cp = m.pl.conns[i];
    auto c = std::make_unique<conn>(m, *m.workers[i % m.workers.size()], cp);
    c->serial_ = i;
    c->remote_ = cp.routes.empty() && !sub_remotes.empty()
                     ? sub_remotes[next_sub++ % sub_remotes.size()]
                     : m.remote;
    if (!cp.routes.empty()) {
      ++m.publishers;
      double f = 0;
      for (const auto& r : cp.routes)
        f += r.fanout;
      fanouts += f / static_cast<double>(cp.routes.size());
    }
    m.conns.push_back(std::move(c));
  }
  if (m.publishers) m.avg_fanout = std::max(1.0, fanouts / static_cast<double>(m.publishers));
  for (auto& w : m.workers)
    w->thread = std::thread([wp = w.get()] { wp->ioc.run(); });

  m.starter = std::thread([&m] {
    const auto begin = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < m.conns.size() && !m.stopping.load(); ++i) {
      m.conns[i]->start();
      if (m.pl.ramp > 0) {
        const auto due =
            begin + std::chrono::duration<double>(static_cast<double>(i + 1) / m.pl.ramp);
        std::this_thread::sleep_until(due);
      }
    }
  });
}

void engine::set_phase(phase ph) {
  impl_->ph.store(static_cast<int>(ph));
}

void engine::start_publishing() {
  impl_->publishing.store(true);
  impl_->watch_progress_ns = impl_->now();
  for (auto& c : impl_->conns)
    if (c->is_publisher()) c->begin_publishing();
}

void engine::stop_publishing() {
  impl_->publishing.store(false);
}

void engine::watchdog() {
  auto& m = *impl_;
  const auto d = m.delivered.load();
  const auto now = m.now();
  if (d != m.watch_delivered) {
    m.watch_delivered = d;
    m.watch_progress_ns = now;
    return;
  }
  if (m.parked_count.load() > 0 && now - m.watch_progress_ns > 1'000'000'000) {
    // Nothing delivered for a second while publishers wait: what is in flight is lost.
    m.written_off.fetch_add(m.in_flight());
    m.stalls.fetch_add(1);
    m.watch_progress_ns = now;
    m.wake(true);
  }
}

void engine::stop() {
  auto& m = *impl_;
  if (m.stopping.exchange(true)) return;
  m.publishing.store(false);
  if (m.starter.joinable()) m.starter.join();
  for (auto& c : m.conns)
    c->say_goodbye();
  std::this_thread::sleep_for(std::chrono::milliseconds(m.conns.empty() ? 0 : 200));
  for (auto& w : m.workers) {
    w->guard.reset();
    w->ioc.stop();
  }
  for (auto& w : m.workers)
    if (w->thread.joinable()) w->thread.join();
  m.conns.clear();
}

totals engine::snapshot() const {
  const auto& m = *impl_;
  totals t;
  t.connected = m.connected.load();
  t.ready = m.ready.load();
  t.failed = m.failed.load();
  t.disconnected = m.disconnected.load();
  t.sent = m.sent.load();
  t.sent_window = m.sent_window.load();
  t.expected = m.expected.load();
  t.expected_window = m.expected_window.load();
  t.delivered = m.delivered.load();
  t.delivered_window = m.delivered_window.load();
  t.delivered_in_phase = m.delivered_in_phase.load();
  t.bytes_in_phase = m.bytes_in_phase.load();
  t.errors = m.errors.load();
  t.stalls = m.stalls.load();
  return t;
}

histogram engine::latencies() const {
  histogram h;
  for (const auto& w : impl_->workers)
    h.merge(w->hist);
  return h;
}

histogram engine::ack_latencies() const {
  histogram h;
  for (const auto& w : impl_->workers)
    h.merge(w->ack_hist);
  return h;
}

std::string engine::first_error() const {
  std::lock_guard lock(impl_->err_mu);
  return impl_->first_error;
}

std::size_t engine::connection_count() const noexcept {
  return impl_->pl.conns.size();
}

}  // namespace wsagent::bench
