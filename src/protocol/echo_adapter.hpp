#pragma once
// The /echo diagnostics endpoint (server.diagnostics, or a listener with the "echo"
// protocol): every message comes back as it came, for RFC 6455 conformance suites. An
// adapter like the others, so the connection has no branch for it.

#include <string>

#include "protocol/client_adapter.hpp"
#include "protocol/websocket/frame.hpp"

namespace wsagent::protocol {

class echo_adapter final : public client_adapter {
 public:
  explicit echo_adapter(transport_link& link) : link_(link) {}

  void on_open() override {}
  void on_text(const char* data, std::size_t size, std::size_t) override {
    echo(websocket::opcode::text, std::string_view(data, size));
  }
  void on_binary(std::span<const std::uint8_t> data) override {
    echo(websocket::opcode::binary,
         std::string_view(reinterpret_cast<const char*>(data.data()), data.size()));
  }
  void on_closed(bool) override {}
  bool authenticated() const noexcept override { return true; }  // nothing to authenticate
  const std::string& client_id() const noexcept override { return none_; }
  const std::string& frame_for(const core::message&, int) const override { return none_; }
  void deliver_acked(const core::message_ptr&, std::uint8_t, std::int64_t) override {}
  void late_delivery(const core::message_ptr&, std::uint8_t) override {}
  void on_timer(std::int64_t) override {}
  std::optional<std::int64_t> next_due() const override { return std::nullopt; }
  bool take_rearm() noexcept override { return false; }

 private:
  void echo(websocket::opcode op, std::string_view payload) {
    std::string frame;
    websocket::append_frame(frame, op, payload);
    link_.send_frame(std::move(frame));
  }

  transport_link& link_;
  const std::string none_;
};

}  // namespace wsagent::protocol
