#include "common/toml_read.hpp"

#include <filesystem>

#include <algorithm>
#include <cctype>

namespace wsagent::common {

std::string config_problem::to_string() const {
  std::string out = source;
  if (line > 0) out += ":" + std::to_string(line);
  out += ": ";
  if (!key.empty()) out += key + ": ";
  out += message;
  return out;
}

std::string type_of(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a floating-point number";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

int line_of(const toml::node& n) {
  return static_cast<int>(n.source().begin.line);
}

int line_of(const toml::key& k, const toml::node& n) {
  auto line = static_cast<int>(k.source().begin.line);
  return line > 0 ? line : line_of(n);
}

std::string path_beside(const std::string& source, const std::string& value) {
  if (value.empty()) return value;
  std::filesystem::path p(value);
  const auto dir = std::filesystem::path(source).parent_path();
  return p.is_relative() && !dir.empty() ? (dir / p).lexically_normal().string() : value;
}

std::string in_quotes(std::string_view s) {
  return "'" + std::string(s) + "'";
}

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& ch : out)
    ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

}  // namespace

std::string did_you_mean(std::string_view got, const std::vector<std::string>& candidates) {
  std::string best;
  std::size_t best_distance = 3;  // suggest only close matches
  for (const auto& c : candidates) {
    auto d = edit_distance(lower(got), lower(c));
    if (d < best_distance && d < std::max<std::size_t>(c.size() / 2, 1)) {
      best = c;
      best_distance = d;
    }
  }
  return best.empty() ? std::string() : " (did you mean " + in_quotes(best) + "?)";
}

bool read_string_array(const toml::node& node, const std::string& path, int line,
                       const std::string& key, std::vector<std::string>& out,
                       std::vector<config_problem>& problems) {
  auto* array = node.as_array();
  if (!array) {
    problems.push_back({path, line, key, "expected an array of strings, got " + type_of(node)});
    return false;
  }
  bool ok = true;
  for (const auto& item : *array) {
    if (auto* s = item.as_string()) {
      out.push_back(s->get());
    } else {
      int item_line = line_of(item);
      problems.push_back({path, item_line > 0 ? item_line : line, key,
                          "expected an array of strings, found " + type_of(item)});
      ok = false;
    }
  }
  return ok;
}

}  // namespace wsagent::common
