#include "proc_stats.hpp"

#include <unistd.h>
#include <fstream>
#include <sstream>
#include <string>

namespace wsagent::bench {

std::optional<proc_sample> read_proc(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid);
  std::ifstream stat(dir + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return std::nullopt;
  // The command name (field 2) may hold spaces: fields are counted after its ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 2));
  std::string field;
  proc_sample s;
  unsigned long long utime = 0;
  unsigned long long stime = 0;
  // Fields 3..13 precede utime (14) and stime (15).
  for (int i = 3; i <= 13 && rest >> field; ++i) {
  }
  if (!(rest >> utime >> stime)) return std::nullopt;
  s.cpu_s = static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));

  std::ifstream status(dir + "/status");
  while (std::getline(status, line)) {
    if (line.starts_with("VmRSS:")) s.rss_kb = std::stoll(line.substr(6));
    if (line.starts_with("VmHWM:")) s.rss_peak_kb = std::stoll(line.substr(6));
  }
  return s;
}

}  // namespace wsagent::bench
