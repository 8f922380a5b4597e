#pragma once
// Logging set-up (spdlog) and the audit log writer.

#include <memory>
#include <string>

#include "app/config.hpp"
#include "core/audit.hpp"

namespace spdlog {
class logger;
}

namespace wsagent::app {

// Configures the default logger from `log`: level, text or JSON lines, stderr or a file.
// Throws spdlog::spdlog_ex when the file cannot be opened.
void setup_logging(const config::log_section& log);

// Writes audit events as JSON lines: to log.audit_file when set, else through the main log.
class audit_writer final : public core::audit_log {
 public:
  explicit audit_writer(const config::log_section& log);
  void record(core::audit_event what, std::string_view client_id, std::string_view remote,
              std::string_view detail) override;

 private:
  std::shared_ptr<spdlog::logger> logger_;
  bool own_file_ = false;
};

}  // namespace wsagent::app
