#include "common/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace wsagent::common {

namespace {

constexpr std::string_view prefix = "wsagent_";

void append_escaped(std::string& out, std::string_view v, bool help) {
  for (char ch : v) {
    if (ch == '\\')
      out += "\\\\";
    else if (ch == '\n')
      out += "\\n";
    else if (ch == '"' && !help)
      out += "\\\"";
    else
      out.push_back(ch);
  }
}

void append_number(std::string& out, double v) {
  if (std::isinf(v)) {
    out += v > 0 ? "+Inf" : "-Inf";
    return;
  }
  if (std::isnan(v)) {
    out += "NaN";
    return;
  }
  char buf[32];
  // Integral values (every counter) print without exponent or fraction.
  if (v == std::floor(v) && std::fabs(v) < 9.007199254740992e15) {
    auto r = std::to_chars(buf, buf + sizeof buf, static_cast<std::int64_t>(v));
    out.append(buf, r.ptr);
    return;
  }
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

const char* type_name(metric_set::type t) {
  switch (t) {
    case metric_set::type::counter:
      return "counter";
    case metric_set::type::gauge:
      return "gauge";
    case metric_set::type::histogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

histogram::histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void histogram::observe(double seconds) noexcept {
  const auto at = std::lower_bound(bounds_.begin(), bounds_.end(), seconds) - bounds_.begin();
  ++counts_[static_cast<std::size_t>(at)];
  sum_ += seconds;
  ++count_;
}

std::vector<double> latency_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

std::string render_labels(std::initializer_list<metric_label> labels, std::string_view extra_name,
                          std::string_view extra_value) {
  if (labels.size() == 0 && extra_name.empty()) return {};
  std::string out = "{";
  auto one = [&](std::string_view n, std::string_view v) {
    if (out.size() > 1) out.push_back(',');
    out.append(n).append("=\"");
    append_escaped(out, v, false);
    out.push_back('"');
  };
  for (const auto& l : labels)
    one(l.name, l.value);
  if (!extra_name.empty()) one(extra_name, extra_value);
  out.push_back('}');
  return out;
}

metric_set::family& metric_set::family_of(std::string_view name, std::string_view help, type kind) {
  std::string full = std::string(prefix).append(name);
  for (auto& f : families_)
    if (f.name == full) {
      if (f.kind != kind) throw std::logic_error("metric " + full + " written with two types");
      return f;
    }
  if (kind == type::counter && !full.ends_with("_total"))
    throw std::logic_error("counter " + full + " does not end in _total");
  families_.push_back({std::move(full), std::string(help), kind, {}});
  return families_.back();
}

void metric_set::counter(std::string_view name, std::string_view help, double value,
                         std::initializer_list<metric_label> labels) {
  auto& f = family_of(name, help, type::counter);
  f.samples.push_back({f.name, render_labels(labels), value});
}

void metric_set::gauge(std::string_view name, std::string_view help, double value,
                       std::initializer_list<metric_label> labels) {
  auto& f = family_of(name, help, type::gauge);
  f.samples.push_back({f.name, render_labels(labels), value});
}

void metric_set::add_histogram(std::string_view name, std::string_view help, const histogram& h,
                               std::initializer_list<metric_label> labels) {
  auto& f = family_of(name, help, type::histogram);
  std::uint64_t cumulative = 0;
  const auto bounds = h.bounds();
  const auto counts = h.counts();
  for (std::size_t i = 0; i <= bounds.size(); ++i) {
    cumulative += counts[i];
    std::string le;
    if (i < bounds.size())
      append_number(le, bounds[i]);
    else
      le = "+Inf";
    f.samples.push_back(
        {f.name + "_bucket", render_labels(labels, "le", le), static_cast<double>(cumulative)});
  }
  f.samples.push_back({f.name + "_sum", render_labels(labels), h.sum()});
  f.samples.push_back({f.name + "_count", render_labels(labels), static_cast<double>(h.count())});
}

double metric_set::value(std::string_view name, std::string_view labels) const {
  for (const auto& f : families_)
    for (const auto& s : f.samples)
      if (s.name == name && s.labels == labels) return s.value;
  return 0;
}

double metric_set::sum(std::string_view name) const {
  double total = 0;
  for (const auto& f : families_)
    if (f.name == name)
      for (const auto& s : f.samples)
        total += s.value;
  return total;
}

std::string metric_set::text() const {
  std::string out;
  for (const auto& f : families_) {
    out.append("# HELP ").append(f.name).push_back(' ');
    append_escaped(out, f.help, true);
    out.append("\n# TYPE ").append(f.name).push_back(' ');
    out.append(type_name(f.kind)).push_back('\n');
    for (const auto& s : f.samples) {
      out.append(s.name).append(s.labels).push_back(' ');
      append_number(out, s.value);
      out.push_back('\n');
    }
  }
  return out;
}

void metrics_registry::add(collector c) {
  common::lock lock(mutex_);
  collectors_.push_back(std::move(c));
}

metric_set metrics_registry::collect() const {
  metric_set set;
  common::lock lock(mutex_);
  for (const auto& c : collectors_)
    c(set);
  return set;
}

}  // namespace wsagent::common
