#pragma once
// The audit trail: every authentication, every refused request, every administrative act.
// The core and the protocol adapters report here; the app writes it (docs/operations.md).

#include <string_view>

namespace wsagent::core {

enum class audit_event {
  auth_success,
  auth_failure,
  forbidden,  // a publish or subscribe the client's rights do not allow
  takeover,   // a connection replaced another with the same client id
  admin,      // configuration reload, shutdown
};

const char* to_string(audit_event e) noexcept;

class audit_log {
 public:
  virtual ~audit_log() = default;
  // Called from any thread.
  virtual void record(audit_event what, std::string_view client_id, std::string_view remote,
                      std::string_view detail) = 0;
};

}  // namespace wsagent::core
