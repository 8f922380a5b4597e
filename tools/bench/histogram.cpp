#include "histogram.hpp"

#include <algorithm>
#include <bit>

namespace wsagent::bench {

// Values below 128 have a bucket each. Above, with m the index of the highest set bit,
// the value is shifted right by s = m - 6, which leaves 64..127: the bucket is
// s * 64 + (v >> s). Buckets are contiguous: s = 1 starts at 128, s = 2 at 192, ...
std::size_t histogram::index_of(std::uint64_t ns) noexcept {
  constexpr std::uint64_t limit = (std::uint64_t{1} << (max_bits + 1)) - 1;
  ns = std::min(ns, limit);
  if (ns < (std::uint64_t{1} << (sub_bits + 1))) return static_cast<std::size_t>(ns);
  const unsigned shift = static_cast<unsigned>(std::bit_width(ns)) - 1 - sub_bits;
  return (static_cast<std::size_t>(shift) << sub_bits) + static_cast<std::size_t>(ns >> shift);
}

std::uint64_t histogram::upper_edge(std::size_t index) noexcept {
  constexpr std::size_t linear = std::size_t{1} << (sub_bits + 1);
  if (index < linear) return index;
  const std::size_t shift = (index >> sub_bits) - 1;
  const std::uint64_t sub = index - (shift << sub_bits);
  return ((sub + 1) << shift) - 1;
}

void histogram::record(std::uint64_t ns) noexcept {
  ++counts_[index_of(ns)];
  ++total_;
  max_ = std::max(max_, ns);
}

void histogram::merge(const histogram& other) noexcept {
  for (std::size_t i = 0; i < bucket_count; ++i)
    counts_[i] += other.counts_[i];
  total_ += other.total_;
  max_ = std::max(max_, other.max_);
}

std::uint64_t histogram::quantile(double q) const noexcept {
  if (total_ == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  auto rank = static_cast<std::uint64_t>(q * static_cast<double>(total_) + 0.5);
  rank = std::clamp<std::uint64_t>(rank, 1, total_);
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < bucket_count; ++i) {
    seen += counts_[i];
    if (seen >= rank) return std::min(upper_edge(i), max_);
  }
  return max_;
}

}  // namespace wsagent::bench
