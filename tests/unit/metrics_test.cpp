// The metrics registry and the Prometheus text format it renders (/metrics; the integration
// test runs promtool over the agent's).
#include "common/metrics.hpp"

#include <gtest/gtest.h>

#include <stdexcept>

namespace wsagent::common {
namespace {

TEST(Metrics, FamiliesAreGroupedWithHelpTypeAndEscapedLabels) {
  metric_set m;
  m.counter("things_total", "Things.", 3, {{"kind", "a"}});
  m.gauge("level", "A level \\ with a backslash.", 2.5);
  m.counter("things_total", "Things.", 4, {{"kind", "b\"\n"}});  // the same family, later
  EXPECT_EQ(m.text(),
            "# HELP wsagent_things_total Things.\n"
            "# TYPE wsagent_things_total counter\n"
            "wsagent_things_total{kind=\"a\"} 3\n"
            "wsagent_things_total{kind=\"b\\\"\\n\"} 4\n"
            "# HELP wsagent_level A level \\\\ with a backslash.\n"
            "# TYPE wsagent_level gauge\n"
            "wsagent_level 2.5\n");
  EXPECT_EQ(m.value("wsagent_things_total", R"({kind="a"})"), 3);
  EXPECT_EQ(m.sum("wsagent_things_total"), 7);
  EXPECT_EQ(m.value("wsagent_nothing"), 0);
}

TEST(Metrics, HistogramBucketsAreCumulativeWithInfSumAndCount) {
  histogram h({0.01, 0.1});
  h.observe(0.005);
  h.observe(0.05);
  h.observe(0.05);
  h.observe(3);
  metric_set m;
  m.add_histogram("commit_seconds", "Commits.", h);
  const auto text = m.text();
  EXPECT_NE(text.find("wsagent_commit_seconds_bucket{le=\"0.01\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("wsagent_commit_seconds_bucket{le=\"0.1\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("wsagent_commit_seconds_bucket{le=\"+Inf\"} 4\n"), std::string::npos);
  EXPECT_NE(text.find("wsagent_commit_seconds_sum 3.105\n"), std::string::npos) << text;
  EXPECT_NE(text.find("wsagent_commit_seconds_count 4\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE wsagent_commit_seconds histogram\n"), std::string::npos);
}

TEST(Metrics, ACounterMustEndInTotalAndAFamilyKeepsItsType) {
  metric_set m;
  EXPECT_THROW(m.counter("things", "x", 1), std::logic_error);
  m.gauge("g", "x", 1);
  EXPECT_THROW(m.counter("g", "x", 1), std::logic_error);
}

TEST(Metrics, TheRegistryRunsEveryCollector) {
  metrics_registry r;
  int calls = 0;
  r.add([&](metric_set& m) { m.gauge("a", "A.", ++calls); });
  r.add([&](metric_set& m) { m.gauge("b", "B.", 7); });
  auto first = r.collect();
  EXPECT_EQ(first.value("wsagent_a"), 1);
  EXPECT_EQ(first.value("wsagent_b"), 7);
  EXPECT_EQ(r.collect().value("wsagent_a"), 2);  // read anew each time
}

}  // namespace
}  // namespace wsagent::common
