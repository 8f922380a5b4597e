// Micro-benchmarks of the hot path's pure parts (Google Benchmark): matching a tag in the
// subscription trie, finding the shared subscription groups of a tag (trie against the
// linear scan it replaced), and the MQTT codec's PUBLISH split/parse/encode. Whole-agent
// figures come from `wsagent bench` and bench/compare (docs/benchmarks.md).
//
//   build/release/bench/wsagent_micro [--benchmark_filter=Shared]

#include <benchmark/benchmark.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/router.hpp"
#include "core/session.hpp"
#include "core/tag.hpp"
#include "core/tag_index.hpp"
#include "protocol/mqtt/codec.hpp"

namespace {

using namespace wsagent;
namespace mqtt = wsagent::protocol::mqtt;

std::vector<std::unique_ptr<core::session>> make_sessions(std::size_t n) {
  std::vector<std::unique_ptr<core::session>> out;
  out.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    out.push_back(
        std::make_unique<core::session>("c" + std::to_string(i), "", core::acl(), nullptr));
  return out;
}

// 10 plants × 10 lines × 10 sensors, one exact subscription each, plus per-plant "+" and "#"
// watchers: a tag matches one exact filter, one "+" filter and one "#" filter.
void BM_TagIndexMatch(benchmark::State& state) {
  auto sessions = make_sessions(1200);
  core::tag_index index;
  std::size_t k = 0;
  for (int p = 0; p < 10; ++p) {
    for (int l = 0; l < 10; ++l)
      for (int s = 0; s < 10; ++s)
        index.add(
            "plant" + std::to_string(p) + "/line" + std::to_string(l) + "/s" + std::to_string(s),
            sessions[k++].get(), 0);
    index.add("plant" + std::to_string(p) + "/+/s0", sessions[k++].get(), 0);
    index.add("plant" + std::to_string(p) + "/#", sessions[k++].get(), 0);
  }
  std::vector<core::subscriber> out;
  for (auto _ : state) {
    out.clear();
    index.match("plant3/line7/s0", out);
    benchmark::DoNotOptimize(out.data());
  }
  if (out.size() != 3) state.SkipWithError("expected 3 matches");
}
BENCHMARK(BM_TagIndexMatch);

// N shared groups, each on "jobs/<i>/#"; a publish to "jobs/7/run" matches one of them.
std::vector<std::unique_ptr<core::shared_group>> make_groups(std::size_t n) {
  std::vector<std::unique_ptr<core::shared_group>> groups;
  for (std::size_t i = 0; i < n; ++i) {
    groups.push_back(std::make_unique<core::shared_group>());
    groups.back()->filter = "jobs/" + std::to_string(i) + "/#";
  }
  return groups;
}

void BM_SharedGroupsTrie(benchmark::State& state) {
  auto groups = make_groups(static_cast<std::size_t>(state.range(0)));
  core::shared_index index;
  for (auto& g : groups)
    index.add(g->filter, g.get(), 0);
  std::vector<core::shared_index::entry> out;
  for (auto _ : state) {
    out.clear();
    index.match("jobs/7/run", out);
    benchmark::DoNotOptimize(out.data());
  }
  if (out.size() != 1) state.SkipWithError("expected 1 group");
}
BENCHMARK(BM_SharedGroupsTrie)->Arg(10)->Arg(100)->Arg(1000);

// What the router did before the groups had a trie: every group's filter against the tag.
void BM_SharedGroupsScan(benchmark::State& state) {
  auto groups = make_groups(static_cast<std::size_t>(state.range(0)));
  std::vector<core::shared_group*> out;
  for (auto _ : state) {
    out.clear();
    for (auto& g : groups)
      if (core::filter_matches(g->filter, "jobs/7/run")) out.push_back(g.get());
    benchmark::DoNotOptimize(out.data());
  }
  if (out.size() != 1) state.SkipWithError("expected 1 group");
}
BENCHMARK(BM_SharedGroupsScan)->Arg(10)->Arg(100)->Arg(1000);

std::string publish_packet(std::size_t payload_size) {
  const std::string payload(payload_size, 'x');
  mqtt::publish p;
  p.topic = "plant1/line3/temp";
  p.payload = std::span(reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size());
  p.qos = 1;
  p.packet_id = 7;
  std::string out;
  mqtt::encode_publish_header(out, mqtt::version::v5, p, payload.size());
  out += payload;
  return out;
}

void BM_MqttSplitParsePublish(benchmark::State& state) {
  const auto wire = publish_packet(static_cast<std::size_t>(state.range(0)));
  const std::span bytes(reinterpret_cast<const std::uint8_t*>(wire.data()), wire.size());
  for (auto _ : state) {
    const auto s = mqtt::split(bytes, 1 << 20);
    auto r = mqtt::parse_publish(s.flags, s.body, mqtt::version::v5);
    benchmark::DoNotOptimize(r.value.payload.data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * wire.size()));
}
BENCHMARK(BM_MqttSplitParsePublish)->Arg(16)->Arg(1024);

void BM_MqttEncodePublishHeader(benchmark::State& state) {
  mqtt::publish p;
  p.topic = "plant1/line3/temp";
  p.qos = 1;
  p.packet_id = 7;
  std::string out;
  for (auto _ : state) {
    out.clear();
    mqtt::encode_publish_header(out, mqtt::version::v311, p, 16);
    benchmark::DoNotOptimize(out.data());
  }
}
BENCHMARK(BM_MqttEncodePublishHeader);

}  // namespace

BENCHMARK_MAIN();
