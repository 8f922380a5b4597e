#pragma once
// Why the agent ends a client's connection, whatever its protocol. Each transport and
// protocol says it in its own words: the WebSocket close code and text (protocol/
// close_codes.hpp, listed in docs/protocol.md, "Close codes"), MQTT 5's DISCONNECT reason
// code (the MQTT adapter's goodbye()).

#include <cstdint>

namespace wsagent::core {

enum class close_reason : std::uint8_t {
  normal,             // the client said goodbye, or there is nothing more to say
  going_away,         // the agent is shutting down
  moving,             // the node is leaving its cluster: the client reconnects to another
  taken_over,         // another connection took this client id
  heartbeat_timeout,  // nothing heard for the idle limit (MQTT: 1.5 x its keep alive)
  slow_consumer,      // its outbound queue stayed full
  protocol_error,     // too many protocol errors, or a protocol violation
  auth_required,      // a request before authenticating, or no authentication in time
  auth_failed,        // a refused credential
  auth_expired,       // the identity's expiry passed (auth_result::expires_ms)
  auth_revoked,       // its credential was revoked, or removed from the configuration
  auth_throttled,     // its address failed to authenticate too often (auth_throttle)
  busy,               // too many authentications at once (admission): retry later
};

const char* to_string(close_reason r) noexcept;

}  // namespace wsagent::core
