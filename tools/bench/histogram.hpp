#pragma once
// A latency histogram in the manner of HdrHistogram: log-linear buckets (each power of two
// split into 64 linear sub-buckets, so any recorded value is known to within 1/64 ≈ 1.6 %),
// a fixed array of counters, no allocation per sample. One per thread; merge() at the end.
//
// Values are nanoseconds; anything from 0 to 2^40 ns (about 18 minutes) is recorded,
// larger values count in the last bucket.

#include <array>
#include <cstdint>

namespace wsagent::bench {

class histogram {
 public:
  void record(std::uint64_t ns) noexcept;
  void merge(const histogram& other) noexcept;

  std::uint64_t count() const noexcept { return total_; }
  std::uint64_t max() const noexcept { return max_; }
  // The smallest recorded value v such that `q` (0..1) of the samples are <= v, within
  // the bucket precision (the upper edge of the bucket is reported). 0 when empty.
  std::uint64_t quantile(double q) const noexcept;

  static constexpr unsigned sub_bits = 6;  // 64 sub-buckets per power of two
  static constexpr unsigned max_bits = 40;
  static constexpr std::size_t bucket_count = (max_bits - sub_bits + 2) << sub_bits;

  static std::size_t index_of(std::uint64_t ns) noexcept;
  static std::uint64_t upper_edge(std::size_t index) noexcept;

 private:
  std::array<std::uint64_t, bucket_count> counts_{};
  std::uint64_t total_ = 0;
  std::uint64_t max_ = 0;
};

}  // namespace wsagent::bench
