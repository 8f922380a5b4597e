#pragma once
// The middle test layer: a protocol adapter driven without sockets. fake_transport is the
// adapter's transport_link and the router's session_sink, as net::connection is, with what
// the connection does reduced to what an adapter can observe: frames in the order they were
// sent, the close and its reason, held input, posted handlers (run when the test says so,
// on its own thread) and deliveries (handed to the adapter by pump(), as the connection's
// drain does). With common::manual_clock for time, nothing sleeps.

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/clock.hpp"
#include "core/audit.hpp"
#include "core/auth.hpp"
#include "core/router.hpp"
#include "protocol/client_adapter.hpp"
#include "protocol/mqtt/codec.hpp"
#include "protocol/websocket/frame.hpp"

namespace wsagent::testing {

class fake_transport final : public protocol::transport_link, public core::session_sink {
 public:
  // What the client sends, in order: WebSocket messages (text or binary) or raw bytes.
  struct input {
    enum class kind { text, binary, stream } what;
    std::string bytes;
  };

  void attach(protocol::client_adapter& a) { adapter_ = &a; }

  // --- the client's side ---

  // Hands input to the adapter now, or, while it is held, after resume_input().
  void text(std::string_view json) { give({input::kind::text, std::string(json)}); }
  void binary(std::string_view bytes) { give({input::kind::binary, std::string(bytes)}); }
  void stream(std::string_view bytes) { give({input::kind::stream, std::string(bytes)}); }

  // Runs the handlers posted to the connection's thread (an answer that came later, a
  // store completion, a kick), until none is left. Returns how many ran.
  int run_posted() {
    int n = 0;
    while (true) {
      std::function<void()> f;
      {
        std::lock_guard lock(mutex_);
        if (posted_.empty()) return n;
        f = std::move(posted_.front());
        posted_.pop_front();
      }
      if (!ended_) f();
      ++n;
    }
  }

  // Hands the router's deliveries to the adapter, as the connection's drain does.
  void pump() {
    std::vector<std::pair<core::message_ptr, std::uint8_t>> batch;
    {
      std::lock_guard lock(mutex_);
      batch.swap(inbox_);
    }
    for (auto& [m, qos] : batch) {
      if (closed_) {
        if (qos > 0) adapter_->late_delivery(m, qos);
        continue;
      }
      if (qos > 0) {
        adapter_->deliver_acked(m, qos, common::steady_ms());
        continue;
      }
      std::string own;
      bool keep = false;
      const std::string* bytes = adapter_->delivery_frame(*m, own, keep);
      frames.push_back(bytes ? *bytes : own);
    }
  }

  // The connection's timer, at the manual clock's time.
  void tick() {
    if (!closed_) adapter_->on_timer(common::steady_ms());
  }

  // The connection ends (the adapter's on_closed, then no more handlers run).
  void end(bool clean = false) {
    if (ended_) return;
    ended_ = true;
    adapter_->on_closed(clean);
  }

  // --- what the adapter did ---

  std::vector<std::string> frames;  // everything sent, in order (goodbyes included)
  std::optional<core::close_reason> closed() const { return closed_; }
  const std::string& close_text() const { return close_text_; }
  bool input_held() const { return held_; }
  std::size_t waiting_input() const { return waiting_.size(); }

  // The payloads of the WebSocket frames sent, in order (server frames: unmasked).
  std::vector<std::string> messages() const {
    std::vector<std::string> out;
    for (const auto& f : frames) {
      std::string copy = f;
      protocol::websocket::frame_reader r(protocol::websocket::frame_reader::role::client, 1 << 24);
      std::span<std::uint8_t> in(reinterpret_cast<std::uint8_t*>(copy.data()), copy.size());
      while (!in.empty()) {
        auto ev = r.next(in);
        if (ev.what == protocol::websocket::frame_reader::kind::need_more) break;
        if (ev.what == protocol::websocket::frame_reader::kind::message)
          out.emplace_back(reinterpret_cast<const char*>(ev.payload.data()), ev.payload.size());
        in = in.subspan(ev.consumed);
      }
    }
    return out;
  }

  // --- transport_link ---

  void send_frame(std::string frame) override {
    if (!closed_) frames.push_back(std::move(frame));
  }
  void send_shared(const core::message_ptr&, const std::string& bytes) override {
    if (!closed_) frames.push_back(bytes);
  }
  void send_with_tail(const core::message_ptr&, std::string head,
                      const std::string& tail) override {
    if (!closed_) frames.push_back(head + tail);
  }
  void close(core::close_reason why, std::string_view text) override {
    if (closed_) return;
    if (auto bye = adapter_->goodbye(why); !bye.empty()) frames.push_back(std::move(bye));
    closed_ = why;
    close_text_ = text;
    adapter_->on_closed();
  }
  void drain_pending(
      const std::function<void(const core::message_ptr&, std::uint8_t)>& take) override {
    std::vector<std::pair<core::message_ptr, std::uint8_t>> batch;
    {
      std::lock_guard lock(mutex_);
      batch.swap(inbox_);
    }
    for (auto& [m, qos] : batch)
      take(m, qos);
  }
  core::session_sink& sink() override { return *this; }
  poster owner_poster() override {
    return [this](std::function<void()> f) {
      std::lock_guard lock(mutex_);
      posted_.push_back(std::move(f));
    };
  }
  std::shared_ptr<void> hold() override { return holder_; }
  // Whether something still holds the connection (an unanswered question).
  bool held_by_others() const { return holder_.use_count() > 1; }
  void pause_input() override { held_ = true; }
  void resume_input() override {
    if (!held_) return;
    held_ = false;
    // From a handler of its own, as the connection does.
    owner_poster()([this] {
      while (!held_ && !closed_ && !waiting_.empty()) {
        auto next = std::move(waiting_.front());
        waiting_.pop_front();
        hand_over(next);
      }
    });
  }

  // --- session_sink (any thread) ---

  void deliver(core::message_ptr msg, std::uint8_t qos) override {
    std::lock_guard lock(mutex_);
    inbox_.emplace_back(std::move(msg), qos);
  }
  void kick(core::close_reason why, std::string_view text) override {
    owner_poster()([this, why, text = std::string(text)] { close(why, text); });
  }

 private:
  void give(input in) {
    if (held_ || !waiting_.empty()) {
      waiting_.push_back(std::move(in));
      return;
    }
    hand_over(in);
  }

  void hand_over(input& in) {
    if (closed_) return;
    switch (in.what) {
      case input::kind::text:
        // Padding for simdjson, as the read buffer has.
        in.bytes.reserve(in.bytes.size() + 64);
        adapter_->on_text(in.bytes.data(), in.bytes.size(), in.bytes.capacity());
        break;
      case input::kind::binary:
        adapter_->on_binary(
            {reinterpret_cast<const std::uint8_t*>(in.bytes.data()), in.bytes.size()});
        break;
      case input::kind::stream: {
        auto used = adapter_->on_stream(
            {reinterpret_cast<const std::uint8_t*>(in.bytes.data()), in.bytes.size()});
        // The rest (after a CONNECT whose answer comes later, or an unfinished packet)
        // waits, as in the connection's read buffer.
        if (used < in.bytes.size() && !closed_)
          waiting_.push_front({input::kind::stream, in.bytes.substr(used)});
        break;
      }
    }
  }

  protocol::client_adapter* adapter_ = nullptr;
  std::shared_ptr<int> holder_ = std::make_shared<int>(0);
  std::optional<core::close_reason> closed_;
  std::string close_text_;
  bool held_ = false;
  bool ended_ = false;
  std::deque<input> waiting_;
  std::mutex mutex_;  // the posted handlers and the inbox: filled from any thread
  std::deque<std::function<void()>> posted_;
  std::vector<std::pair<core::message_ptr, std::uint8_t>> inbox_;
};

// An audit log that keeps what it is told.
class recording_audit final : public core::audit_log {
 public:
  void record(core::audit_event what, std::string_view client_id, std::string_view remote,
              std::string_view detail) override {
    std::lock_guard lock(mutex_);
    events.push_back({what, std::string(client_id), std::string(remote), std::string(detail)});
  }
  struct event {
    core::audit_event what;
    std::string client_id, remote, detail;
  };
  std::vector<event> events;

 private:
  std::mutex mutex_;
};

// An authenticator that answers when the test says so (as one that asks a service would),
// and remembers what it was asked.
class later_authenticator final : public core::authenticator {
 public:
  struct question {
    std::string token, client_id, remote, protocol, username;
    core::auth_done done;
  };
  void authenticate(const core::auth_request& r, core::auth_done done) const override {
    std::lock_guard lock(mutex_);
    asked_.push_back({std::string(r.token), std::string(r.client_id), std::string(r.remote),
                      std::string(r.protocol), std::string(r.username), std::move(done)});
  }
  bool open() const noexcept override { return false; }

  std::size_t waiting() const {
    std::lock_guard lock(mutex_);
    return asked_.size();
  }
  question& asked(std::size_t i) { return asked_.at(i); }
  // Answers question `i` (from the test's thread, or another).
  void answer(std::size_t i, core::auth_result r) {
    auto done = std::move(asked_.at(i).done);
    done(std::move(r));
  }
  static core::auth_result accept(std::string client_id = {}, std::int64_t expires_ms = 0) {
    auto g = std::make_shared<core::grants>();
    g->allow_all = true;
    return {true, core::identity{std::move(client_id), "u", std::move(g), {}, {}}, expires_ms, {}};
  }

 private:
  mutable std::mutex mutex_;
  mutable std::vector<question> asked_;
};

// The packets in `bytes`, by type (the complete ones, in order).
inline std::vector<protocol::mqtt::packet_type> packet_types(std::string_view bytes) {
  std::vector<protocol::mqtt::packet_type> out;
  std::span<const std::uint8_t> in(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                   bytes.size());
  while (!in.empty()) {
    auto r = protocol::mqtt::split(in, 1 << 24);
    if (r.st != protocol::mqtt::split_result::status::packet) break;
    out.push_back(r.type);
    in = in.subspan(r.size);
  }
  return out;
}

}  // namespace wsagent::testing
