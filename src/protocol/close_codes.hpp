#pragma once
// The WebSocket close code of each core::close_reason, for every protocol over WebSocket
// (the native one, MQTT over WebSocket after its DISCONNECT), beyond RFC 6455's own codes
// (protocol/websocket/frame.hpp). docs/protocol.md, "Close codes", lists them: keep the two in
// step.

#include <cstdint>

#include "core/close_reason.hpp"

namespace wsagent::protocol {

constexpr std::uint16_t websocket_close_code(core::close_reason r) noexcept {
  switch (r) {
    case core::close_reason::normal:
      return 1000;
    case core::close_reason::going_away:
      return 1001;  // "Server shutting down"
    case core::close_reason::busy:
      return 1013;  // "Try again later: retry in N ms" (IANA: Try Again Later)
    case core::close_reason::moving:
      return 1012;  // "Node leaving the cluster: reconnect..." (IANA: Service Restart)
    case core::close_reason::heartbeat_timeout:
      return 4001;  // "Heartbeat timeout"
    case core::close_reason::slow_consumer:
      return 4008;  // "Slow consumer"
    case core::close_reason::protocol_error:
      return 4400;  // "Too many protocol errors", or the violation
    case core::close_reason::auth_required:
    case core::close_reason::auth_expired:
      return 4401;  // "Authentication required" / "Authentication timeout" / "... expired"
    case core::close_reason::auth_failed:
    case core::close_reason::auth_revoked:
      return 4403;  // "Authentication failed" / "Authentication revoked"
    case core::close_reason::taken_over:
      return 4409;  // "Session taken over"
    case core::close_reason::auth_throttled:
      return 4429;  // "Too many failed authentications"
  }
  return 1011;
}

}  // namespace wsagent::protocol
