#include "net/server.hpp"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "common/clock.hpp"
#include "net/connection.hpp"
#include "protocol/websocket/frame.hpp"

namespace wsagent::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
// Deadlines fire up to one tick late; a turn of the wheel covers 51 s (the default
// heartbeat is 20 s), and farther deadlines wait in their slot.
constexpr std::int64_t tick_ms = 50;
constexpr std::size_t wheel_slots = 1024;
}  // namespace

server::server(server_settings settings, protocol::native::adapter_context& ctx)
    : settings_(std::move(settings)),
      ctx_(ctx),
      acceptor_([&]() -> asio::io_context& {
        int n = std::max(1, settings_.threads);
        for (int i = 0; i < n; ++i) {
          contexts_.push_back(std::make_unique<asio::io_context>(1));
          wheels_.push_back(
              std::make_unique<common::timer_wheel>(tick_ms, wheel_slots, common::steady_ms()));
          tickers_.push_back(std::make_unique<asio::steady_timer>(*contexts_.back()));
        }
        return *contexts_[0];
      }()),
      mqtt_acceptor_(*contexts_[0]) {}

server::~server() {
  for (auto& c : contexts_)
    c->stop();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  tickers_.clear();  // before their contexts
  stop_timer_.reset();
}

namespace {

std::uint16_t bind_and_listen(tcp::acceptor& a, const std::string& host, std::uint16_t port) {
  auto address = asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host);
  tcp::endpoint ep(address, port);
  a.open(ep.protocol());
  a.set_option(asio::socket_base::reuse_address(true));
  a.bind(ep);
  a.listen(asio::socket_base::max_listen_connections);
  return a.local_endpoint().port();
}

}  // namespace

void server::listen() {
  bound_port_ = bind_and_listen(acceptor_, settings_.host, settings_.port);
  if (!settings_.mqtt_host.empty())
    bound_mqtt_port_ = bind_and_listen(mqtt_acceptor_, settings_.mqtt_host, settings_.mqtt_port);
  accept(acceptor_, false);
  if (bound_mqtt_port_) accept(mqtt_acceptor_, true);
}

void server::accept(tcp::acceptor& acceptor, bool mqtt) {
  const std::size_t worker = next_context_;
  next_context_ = (next_context_ + 1) % contexts_.size();
  acceptor.async_accept(
      *contexts_[worker], [this, worker, &acceptor, mqtt](boost::system::error_code ec,
                                                          connection::socket_type socket) {
        if (ec) {
          if (ec == asio::error::operation_aborted || stopping_) return;
          // Out of file descriptors and the like: say so (once per 10 s, with the count), and
          // keep accepting after a pause.
          ++accept_failures_;
          const auto now = std::chrono::steady_clock::now();
          if (now - last_accept_warning_ >= std::chrono::seconds(10)) {
            spdlog::warn("accept failed {} time(s): {}{}", accept_failures_, ec.message(),
                         ec == asio::error::no_descriptors
                             ? " (the process file limit is reached: raise `ulimit -Hn` or lower "
                               "limits.max_connections)"
                             : "");
            accept_failures_ = 0;
            last_accept_warning_ = now;
          }
          auto timer = std::make_shared<asio::steady_timer>(acceptor.get_executor(),
                                                            std::chrono::milliseconds(100));
          timer->async_wait([this, timer, &acceptor, mqtt](boost::system::error_code) {
            if (!stopping_) accept(acceptor, mqtt);
          });
          return;
        }
        boost::system::error_code ep_ec;
        auto ip = socket.remote_endpoint(ep_ec).address().to_string();
        bool over = false;
        {
          std::lock_guard lock(mutex_);
          int& n = per_ip_[ip];
          if (total_ >= settings_.max_connections || n >= settings_.max_connections_per_ip) {
            over = true;
            if (n == 0) per_ip_.erase(ip);
          } else {
            ++n;
            ++total_;
          }
        }
        auto c = std::make_shared<connection>(*this, std::move(socket), ip, *wheels_[worker]);
        if (over) {
          probe.rejected.fetch_add(1, std::memory_order_relaxed);
          spdlog::warn("connection from {} refused: connection limit reached", ip);
          asio::post(c->executor(), [c, mqtt] { c->reject(mqtt); });
        } else {
          probe.accepted.fetch_add(1, std::memory_order_relaxed);
          asio::post(c->executor(), [c, mqtt] { c->start(mqtt); });
        }
        if (!stopping_) accept(acceptor, mqtt);
      });
}

void server::add(const std::shared_ptr<connection>& c) {
  std::lock_guard lock(mutex_);
  connections_.emplace(c.get(), c);
  probe.open.fetch_add(1, std::memory_order_relaxed);
}

void server::remove(connection* c, const std::string& ip) {
  std::lock_guard lock(mutex_);
  if (connections_.erase(c)) probe.open.fetch_sub(1, std::memory_order_relaxed);
  --total_;
  if (auto it = per_ip_.find(ip); it != per_ip_.end() && --it->second <= 0) per_ip_.erase(it);
}

void server::tick(std::size_t worker) {
  wheels_[worker]->advance(common::steady_ms(), &connection::on_deadline);
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

void server::stop(int timeout_ms) {
  asio::post(*contexts_[0], [this, timeout_ms] {
    if (stopping_) return;
    stopping_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    mqtt_acceptor_.close(ec);
    std::vector<std::shared_ptr<connection>> live;
    {
      std::lock_guard lock(mutex_);
      for (auto& [p, w] : connections_)
        if (auto c = w.lock()) live.push_back(std::move(c));
    }
    spdlog::info("shutting down: closing {} connection(s)", live.size());
    for (auto& c : live)
      c->shutdown(core::close_reason::going_away, "Server shutting down");
    stop_timer_ = std::make_unique<asio::steady_timer>(*contexts_[0]);
    poll_stop(std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms));
  });
}

// Polls until every connection is gone or the time is up.
void server::poll_stop(std::chrono::steady_clock::time_point deadline) {
  std::size_t left;
  {
    std::lock_guard lock(mutex_);
    left = connections_.size();
  }
  if (left == 0 || std::chrono::steady_clock::now() >= deadline) {
    if (left) spdlog::warn("shutdown: {} connection(s) did not close in time", left);
    return finish_stop();
  }
  stop_timer_->expires_after(std::chrono::milliseconds(20));
  stop_timer_->async_wait([this, deadline](boost::system::error_code) { poll_stop(deadline); });
}

void server::finish_stop() {
  for (auto& c : contexts_)
    c->stop();
}

}  // namespace wsagent::net
