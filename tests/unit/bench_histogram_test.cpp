// The load generator's latency histogram: bucket layout, precision and quantiles.

#include <gtest/gtest.h>

#include <random>

#include "tools/bench/histogram.hpp"

using wsagent::bench::histogram;

TEST(BenchHistogram, SmallValuesAreExact) {
  for (std::uint64_t v = 0; v < 128; ++v) {
    EXPECT_EQ(histogram::index_of(v), v);
    EXPECT_EQ(histogram::upper_edge(histogram::index_of(v)), v);
  }
}

TEST(BenchHistogram, BucketsAreContiguousAndPrecise) {
  std::size_t previous = histogram::index_of(127);
  for (std::uint64_t v = 128; v < (1u << 16); ++v) {
    const auto i = histogram::index_of(v);
    ASSERT_GE(i, previous);
    ASSERT_LE(i, previous + 1) << v;
    previous = i;
  }
  for (std::uint64_t v = 128; v < (std::uint64_t{1} << 36); v += v / 97 + 1) {
    const auto i = histogram::index_of(v);
    const auto edge = histogram::upper_edge(i);
    EXPECT_GE(edge, v);
    EXPECT_LE(static_cast<double>(edge - v), static_cast<double>(v) / 64.0) << v;
  }
}

TEST(BenchHistogram, HugeValuesLandInTheLastBucket) {
  EXPECT_LT(histogram::index_of(~std::uint64_t{0}), histogram::bucket_count);
  EXPECT_LT(histogram::index_of(std::uint64_t{1} << 41), histogram::bucket_count);
}

TEST(BenchHistogram, QuantilesOfAUniformSample) {
  histogram h;
  for (std::uint64_t v = 1; v <= 100000; ++v)
    h.record(v * 1000);  // 1 µs .. 100 ms
  EXPECT_EQ(h.count(), 100000u);
  EXPECT_EQ(h.max(), 100000u * 1000);
  auto near = [](std::uint64_t got, double want) {
    return std::abs(static_cast<double>(got) - want) <= want / 50;
  };
  EXPECT_TRUE(near(h.quantile(0.5), 50e6)) << h.quantile(0.5);
  EXPECT_TRUE(near(h.quantile(0.99), 99e6)) << h.quantile(0.99);
  EXPECT_TRUE(near(h.quantile(0.999), 99.9e6)) << h.quantile(0.999);
  EXPECT_EQ(h.quantile(1.0), h.max());
}

TEST(BenchHistogram, MergeAddsCounts) {
  histogram a;
  histogram b;
  std::mt19937_64 rng(1);
  for (int i = 0; i < 1000; ++i) {
    a.record(rng() % 1000000);
    b.record(1000000 + rng() % 1000000);
  }
  a.merge(b);
  EXPECT_EQ(a.count(), 2000u);
  EXPECT_GE(a.quantile(0.75), 1000000u);
  EXPECT_LE(a.quantile(0.25), 1000000u);
}

TEST(BenchHistogram, EmptyIsZero) {
  histogram h;
  EXPECT_EQ(h.quantile(0.99), 0u);
  EXPECT_EQ(h.count(), 0u);
}
