#pragma once
// WebSocket close codes the agent sends, beyond RFC 6455's own (protocol/websocket/frame.hpp).
// docs/protocol.md lists them all; keep the two in step.

#include <cstdint>

namespace wsagent::protocol::native::close_code {

inline constexpr std::uint16_t heartbeat_timeout = 4001;  // "Heartbeat timeout"
inline constexpr std::uint16_t slow_consumer = 4008;      // "Slow consumer"
inline constexpr std::uint16_t protocol_abuse = 4400;     // "Too many protocol errors"
inline constexpr std::uint16_t auth_required = 4401;      // "Authentication required"
inline constexpr std::uint16_t auth_failed = 4403;        // "Authentication failed"
inline constexpr std::uint16_t taken_over = 4409;         // "Session taken over"

}  // namespace wsagent::protocol::native::close_code
