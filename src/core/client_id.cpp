#include "core/client_id.hpp"

#include "core/close_reason.hpp"
#include "core/tag.hpp"

namespace wsagent::core {

bool valid_client_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 128) return false;
  for (char c : id) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '/' || c == '+' || c == '#') return false;
  }
  tag_limits lim{256, 1};
  return validate_tag(id, lim) == tag_error::none;  // checks UTF-8
}

const char* to_string(close_reason r) noexcept {
  switch (r) {
    case close_reason::normal:
      return "normal";
    case close_reason::going_away:
      return "going away";
    case close_reason::moving:
      return "node leaving the cluster";
    case close_reason::busy:
      return "too many connections at once";
    case close_reason::taken_over:
      return "taken over";
    case close_reason::heartbeat_timeout:
      return "heartbeat timeout";
    case close_reason::slow_consumer:
      return "slow consumer";
    case close_reason::protocol_error:
      return "protocol error";
    case close_reason::auth_required:
      return "authentication required";
    case close_reason::auth_failed:
      return "authentication failed";
    case close_reason::auth_expired:
      return "authentication expired";
    case close_reason::auth_revoked:
      return "authentication revoked";
    case close_reason::auth_throttled:
      return "too many failed authentications";
  }
  return "unknown";
}

}  // namespace wsagent::core
