#include "app/logging.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "common/clock.hpp"
#include "common/json_writer.hpp"

namespace wsagent::app {
namespace {

// One JSON object per line: {"time":...,"level":...,"logger":...,"msg":...}.
class json_formatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line;
    auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(msg.time.time_since_epoch()).count();
    auto level = spdlog::level::to_string_view(msg.level);
    common::json_writer w(line);
    w.begin_object()
        .integer("time", ms)
        .string("level", std::string_view(level.data(), level.size()))
        .string("logger", std::string_view(msg.logger_name.data(), msg.logger_name.size()))
        .string("msg", std::string_view(msg.payload.data(), msg.payload.size()))
        .end_object();
    line.push_back('\n');
    dest.append(line.data(), line.data() + line.size());
  }
  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_formatter>();
  }
};

void apply_format(spdlog::logger& logger, const std::string& format) {
  if (format == "json")
    logger.set_formatter(std::make_unique<json_formatter>());
  else
    logger.set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
}

}  // namespace

void setup_logging(const config::log_section& log) {
  spdlog::sink_ptr sink;
  if (log.file.empty())
    sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  else
    sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(log.file);
  auto logger = std::make_shared<spdlog::logger>("wsagent", sink);
  apply_format(*logger, log.format);
  logger->set_level(spdlog::level::from_str(log.level));
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

audit_writer::audit_writer(const config::log_section& log) {
  if (log.audit_file.empty()) {
    logger_ = spdlog::default_logger();
  } else {
    logger_ = std::make_shared<spdlog::logger>(
        "audit", std::make_shared<spdlog::sinks::basic_file_sink_mt>(log.audit_file));
    logger_->set_pattern("%v");
    logger_->flush_on(spdlog::level::info);
    own_file_ = true;
  }
}

void audit_writer::record(core::audit_event what, std::string_view client_id,
                          std::string_view remote, std::string_view detail) {
  std::string line;
  common::json_writer w(line);
  w.begin_object();
  if (own_file_) w.integer("time", common::now_ms());
  w.string("audit", core::to_string(what))
      .string("clientId", client_id)
      .string("remote", remote)
      .string("detail", detail)
      .end_object();
  auto level = what == core::audit_event::auth_success || what == core::audit_event::admin
                   ? spdlog::level::info
                   : spdlog::level::warn;
  logger_->log(level, "{}", line);
}

}  // namespace wsagent::app
