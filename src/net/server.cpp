#include "net/server.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include <boost/asio/post.hpp>

#include "common/clock.hpp"
#include "net/connection.hpp"
#include "net/tls_context.hpp"

namespace wsagent::net {

namespace asio = boost::asio;

namespace {
// Deadlines fire up to one tick late; a turn of the wheel covers 51 s (the default
// heartbeat is 20 s), and farther deadlines wait in their slot.
constexpr std::int64_t tick_ms = 50;
constexpr std::size_t wheel_slots = 1024;
}  // namespace

server::server(server_settings settings, served_protocols protocols, net_probe& counters)
    : probe(counters), settings_(std::move(settings)), protocols_(std::move(protocols)) {
  const int n = std::max(1, settings_.threads);
  for (int i = 0; i < n; ++i) {
    contexts_.push_back(std::make_unique<asio::io_context>(1));
    threads_state_.push_back(
        std::make_unique<io_thread>(tick_ms, wheel_slots, common::steady_ms()));
    tickers_.push_back(std::make_unique<asio::steady_timer>(*contexts_.back()));
  }
  for (const auto& cfg : settings_.listeners) {
    auto info = std::make_unique<listener_info>();
    info->bind = cfg.bind;
    info->protocols = cfg.protocols;
    for (const auto& p : cfg.protocols) {
      if (!known_protocol(p))
        throw listen_error("listener " + cfg.bind + ": unknown protocol '" + p + "'");
      if (auto it = protocols_.raw.find(p); it != protocols_.raw.end()) {
        if (cfg.protocols.size() > 1)
          throw listen_error("listener " + cfg.bind + ": " + p +
                             " is raw TCP and cannot share a listener with " + join(cfg.protocols));
        info->raw = it->second;
        info->raw_protocol = p;
      }
    }
    if (!info->raw) info->routes = protocols_.routes.only(cfg.protocols);
    if (cfg.tls) {
      // ALPN: what the listener speaks (HTTP for WebSocket, "mqtt" for MQTT over TCP).
      auto alpn = cfg.tls->alpn;
      if (alpn.empty()) alpn = {info->raw ? "mqtt" : "http/1.1"};
      try {
        info->tls = std::make_shared<tls_context>(*cfg.tls, std::move(alpn));
      } catch (const tls_error& e) {
        throw listen_error("listener " + cfg.bind + " (" + join(cfg.protocols) + "): " + e.what());
      }
    }
    listeners_.push_back(std::make_unique<listener>(*this, cfg, std::move(info)));
  }
}

server::~server() {
  for (auto& c : contexts_)
    c->stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  listeners_.clear();  // their acceptors, before their context
  tickers_.clear();    // before their contexts
  stop_timer_.reset();
}

void server::listen() {
  try {
    for (auto& l : listeners_)
      l->open();
  } catch (...) {
    for (auto& l : listeners_)
      l->close();
    throw;
  }
  for (auto& l : listeners_)
    l->start();
}

std::size_t server::next_worker() {
  const std::size_t worker = next_context_;
  next_context_ = (next_context_ + 1) % contexts_.size();
  return worker;
}

bool server::admit(const std::string& ip) {
  common::lock lock(mutex_);
  int& n = per_ip_[ip];
  if (total_ >= settings_.max_connections || n >= settings_.max_connections_per_ip) {
    if (n == 0) per_ip_.erase(ip);
    return false;
  }
  ++n;
  ++total_;
  return true;
}

void server::add(const std::shared_ptr<connection>& c) {
  common::lock lock(mutex_);
  connections_.emplace(c.get(), c);
  probe.open.fetch_add(1, std::memory_order_relaxed);
}

void server::remove(connection* c, std::string_view ip) {
  common::lock lock(mutex_);
  if (connections_.erase(c)) probe.open.fetch_sub(1, std::memory_order_relaxed);
  --total_;
  if (auto it = per_ip_.find(std::string(ip)); it != per_ip_.end() && --it->second <= 0)
    per_ip_.erase(it);
}

void server::tick(std::size_t worker) {
  threads_state_[worker]->wheel.advance(common::steady_ms(), &connection::on_deadline);
  auto& t = *tickers_[worker];
  t.expires_after(std::chrono::milliseconds(tick_ms));
  t.async_wait([this, worker](boost::system::error_code ec) {
    if (!ec) tick(worker);
  });
}

void server::run() {
  for (std::size_t i = 0; i < contexts_.size(); ++i)
    asio::post(*contexts_[i], [this, i] { tick(i); });
  for (std::size_t i = 1; i < contexts_.size(); ++i) {
    threads_.emplace_back([ctx = contexts_[i].get()] {
      auto guard = asio::make_work_guard(*ctx);
      ctx->run();
    });
  }
  {
    auto guard = asio::make_work_guard(*contexts_[0]);
    // The guard is released by finish_stop() through stop() on every context.
    contexts_[0]->run();
  }
  for (auto& t : threads_)
    t.join();
  threads_.clear();
}

void server::stop(int timeout_ms, core::close_reason why) {
  asio::post(*contexts_[0], [this, timeout_ms, why] {
    if (stopping_) return;
    stopping_ = true;
    for (auto& l : listeners_)
      l->close();
    std::vector<std::shared_ptr<connection>> live;
    {
      common::lock lock(mutex_);
      for (auto& [p, w] : connections_)
        if (auto c = w.lock()) live.push_back(std::move(c));
    }
    spdlog::info("shutting down: closing {} connection(s)", live.size());
    // Leaving a cluster: the clients reconnect (to the other nodes), not all at once.
    std::minstd_rand jitter(std::random_device{}());
    for (auto& c : live)
      if (why == core::close_reason::moving)
        c->shutdown(why, "Node leaving the cluster: reconnect in " +
                             std::to_string(100 + jitter() % 900) + " ms");
      else
        c->shutdown(why, "Server shutting down");
    stop_timer_ = std::make_unique<asio::steady_timer>(*contexts_[0]);
    poll_stop(std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms));
  });
}

// Polls until every connection is gone or the time is up.
void server::poll_stop(std::chrono::steady_clock::time_point deadline) {
  std::size_t left;
  {
    common::lock lock(mutex_);
    left = connections_.size();
  }
  if (left == 0 || std::chrono::steady_clock::now() >= deadline) {
    if (left) spdlog::warn("shutdown: {} connection(s) did not close in time", left);
    return finish_stop();
  }
  stop_timer_->expires_after(std::chrono::milliseconds(20));
  stop_timer_->async_wait([this, deadline](boost::system::error_code) { poll_stop(deadline); });
}

void server::recheck_credentials() {
  std::vector<std::shared_ptr<connection>> live;
  {
    common::lock lock(mutex_);
    live.reserve(connections_.size());
    for (auto& [p, w] : connections_)
      if (auto c = w.lock()) live.push_back(std::move(c));
  }
  for (auto& c : live)
    c->recheck_credentials();
}

std::vector<std::string> server::reload_tls(bool changed_only) {
  std::vector<std::string> out;
  for (const auto& l : listeners_) {
    auto& tls = l->info().tls;
    if (!tls || (changed_only && !tls->files_changed())) continue;
    const auto where = l->url() + " (" + join(l->config().protocols) + ")";
    if (auto error = tls->reload(); !error.empty()) {
      spdlog::error("TLS reload of {} failed, the previous certificate stays in use: {}", where,
                    error);
      out.push_back(where + ": " + error);
    } else {
      spdlog::info("TLS reload of {}: {}", where, tls->describe());
    }
  }
  return out;
}

void server::finish_stop() {
  for (auto& c : contexts_)
    c->stop();
}

void server::write_metrics(common::metric_set& out) const {
  for (const auto& l : listeners_) {
    const auto& open = l->info().open;
    const auto bind = l->address();
    const std::pair<const char*, const std::atomic<std::int64_t>*> by_protocol[] = {
        {"http", &open.http}, {"ws", &open.ws},     {"mqtt-ws", &open.mqtt_ws},
        {"echo", &open.echo}, {"mqtt", &open.mqtt},
    };
    for (const auto& [name, count] : by_protocol) {
      // A listener's protocols, and "http" for requests being read on an HTTP one.
      const auto& ps = l->config().protocols;
      const bool serves =
          std::find(ps.begin(), ps.end(), name) != ps.end() ||
          (std::string_view(name) == "http" && std::any_of(ps.begin(), ps.end(), http_protocol));
      if (!serves) continue;
      out.gauge("connections",
                "Connections open now, by listener and protocol (http: a request being read).",
                static_cast<double>(count->load(std::memory_order_relaxed)),
                {{"listener", bind}, {"protocol", name}});
    }
  }
  auto load = [](const auto& a) { return static_cast<double>(a.load(std::memory_order_relaxed)); };
  for (const auto& l : listeners_) {
    const auto& tls = l->info().tls;
    if (!tls) continue;
    const auto bind = l->address();
    const char* help = "TLS handshakes, by listener and result.";
    out.counter("tls_handshakes_total", help, load(tls->handshakes),
                {{"listener", bind}, {"result", "ok"}});
    out.counter("tls_handshakes_total", help, load(tls->handshake_failures),
                {{"listener", bind}, {"result", "failed"}});
    out.counter("tls_resumed_sessions_total", "TLS handshakes that resumed a session.",
                load(tls->resumed), {{"listener", bind}});
  }
  out.counter("connections_accepted_total", "Connections accepted.", load(probe.accepted));
  out.counter("connections_rejected_total",
              "Connections refused for limits.max_connections or max_connections_per_ip.",
              load(probe.rejected));
  out.counter("frames_received_total", "WebSocket frames received.", load(probe.frames_in));
  out.counter("frames_sent_total", "Frames and packets written.", load(probe.frames_out));
  out.counter("writes_total", "Gather writes to sockets (one system call each, about).",
              load(probe.writes));
  out.counter("received_bytes_total", "Bytes read from clients.", load(probe.bytes_in));
  out.counter("sent_bytes_total", "Bytes written to clients.", load(probe.bytes_out));
  out.counter("messages_dropped_total", "Messages dropped, by reason.", load(probe.dropped),
              {{"reason", "outbound_queue"}});
  out.counter("slow_consumer_closes_total",
              "Connections closed (4008) because their queue stayed full.",
              load(probe.slow_consumer_closes));
  out.counter("read_pauses_total",
              "Times a client's input was paused until its replies were written.",
              load(probe.read_pauses));
  out.counter("protocol_errors_total", "Protocol errors, by protocol.", load(probe.protocol_errors),
              {{"protocol", "websocket"}});
  double queued = 0;
  for (const auto& t : threads_state_)
    queued += static_cast<double>(t->queued_bytes.load(std::memory_order_relaxed));
  out.gauge("outbound_queue_bytes", "QoS 0 bytes waiting in connections' write queues.", queued);
}

}  // namespace wsagent::net
