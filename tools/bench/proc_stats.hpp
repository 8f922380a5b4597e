#pragma once
// What /proc says of another process: CPU time and resident memory. Linux only.

#include <sys/types.h>
#include <cstdint>
#include <optional>

namespace wsagent::bench {

struct proc_sample {
  double cpu_s = 0;              // user + system time, seconds
  std::int64_t rss_kb = 0;       // VmRSS
  std::int64_t rss_peak_kb = 0;  // VmHWM
};

// nullopt when the process does not exist (or /proc is unreadable).
std::optional<proc_sample> read_proc(pid_t pid);

}  // namespace wsagent::bench
