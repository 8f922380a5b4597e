#pragma once
// The agent's figures: each module keeps its counters in a probe of its own (relaxed atomics
// on its paths) and says how they read as metrics in a collector; one registry runs the
// collectors when the figures are asked for. /metrics renders them in the Prometheus text
// format (version 0.0.4), /healthz reads a few of them back.
//
// Names carry the wsagent_ prefix, counters end in _total, values are in base units
// (seconds, bytes). Labels name listeners, protocols, reasons: never a client or a tag (their
// number is unbounded).

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/mutex.hpp"

namespace wsagent::common {

struct metric_label {
  std::string_view name;
  std::string_view value;
};

// A fixed-bucket histogram (cumulative on reading), for latencies in seconds. Not
// synchronized: its owner keeps it under its own lock.
class histogram {
 public:
  // Upper bounds in seconds, ascending.
  explicit histogram(std::vector<double> bounds);
  void observe(double seconds) noexcept;
  std::span<const double> bounds() const noexcept { return bounds_; }
  // counts()[i]: observations in bucket i (not cumulative); the last is above every bound.
  std::span<const std::uint64_t> counts() const noexcept { return counts_; }
  double sum() const noexcept { return sum_; }
  std::uint64_t count() const noexcept { return count_; }

 private:
  std::vector<double> bounds_;
  std::vector<std::uint64_t> counts_;
  double sum_ = 0;
  std::uint64_t count_ = 0;
};

// Latency buckets from half a millisecond to ten seconds.
std::vector<double> latency_buckets();

// What collectors write into: families of samples, in the order they first appear.
class metric_set {
 public:
  enum class type { counter, gauge, histogram };
  struct sample {
    std::string name;    // the family's, or with _bucket, _sum, _count
    std::string labels;  // rendered: {a="x",b="y"}, or empty
    double value;
  };
  struct family {
    std::string name;
    std::string help;
    type kind;
    std::vector<sample> samples;
  };

  // `name` without the wsagent_ prefix; a counter's ends in _total.
  void counter(std::string_view name, std::string_view help, double value,
               std::initializer_list<metric_label> labels = {});
  void gauge(std::string_view name, std::string_view help, double value,
             std::initializer_list<metric_label> labels = {});
  void add_histogram(std::string_view name, std::string_view help, const histogram& h,
                     std::initializer_list<metric_label> labels = {});

  const std::vector<family>& families() const noexcept { return families_; }
  // The value of the sample `name` (with the prefix) with exactly `labels` ("{...}" as
  // rendered, "" for none); 0 when there is none.
  double value(std::string_view name, std::string_view labels = {}) const;
  // The sum of a family's samples (0 when there is none).
  double sum(std::string_view name) const;
  // The Prometheus text format.
  std::string text() const;

 private:
  family& family_of(std::string_view name, std::string_view help, type kind);
  std::vector<family> families_;
};

// Renders labels as the text format writes them (values escaped).
std::string render_labels(std::initializer_list<metric_label> labels,
                          std::string_view extra_name = {}, std::string_view extra_value = {});

class metrics_registry {
 public:
  using collector = std::function<void(metric_set&)>;
  // Before serving; collectors run in the order they were added, on the asking thread.
  void add(collector c) EXCLUDES(mutex_);
  metric_set collect() const EXCLUDES(mutex_);

 private:
  mutable common::mutex mutex_;
  std::vector<collector> collectors_ GUARDED_BY(mutex_);
};

// The text format's media type.
inline constexpr std::string_view prometheus_content_type =
    "text/plain; version=0.0.4; charset=utf-8";

}  // namespace wsagent::common
