#include "core/session.hpp"

#include "core/audit.hpp"

namespace wsagent::core {

const char* to_string(audit_event e) noexcept {
  switch (e) {
    case audit_event::auth_success:
      return "auth_success";
    case audit_event::auth_failure:
      return "auth_failure";
    case audit_event::forbidden:
      return "forbidden";
    case audit_event::takeover:
      return "takeover";
    case audit_event::admin:
      return "admin";
  }
  return "unknown";
}

}  // namespace wsagent::core
