#pragma once
// What the readers of TOML files (the configuration loader, the token file) share: where a
// problem is, and the words they use for it. Every reader collects its problems instead of
// stopping at the first, so that `wsagent serve --check-config` lists them all.

#include <toml++/toml.h>

#include <string>
#include <string_view>
#include <vector>

namespace wsagent::common {

// One problem in a configuration source.
struct config_problem {
  std::string source;  // file path, "environment" or "command line"
  int line = 0;        // 0 when there is no line (environment, flags)
  std::string key;     // dotted key, e.g. "limits.max_connections"
  std::string message;

  std::string to_string() const;  // "file.toml:12: limits.max_connections: must be >= 1"
};

// "a table", "an integer", ... for messages.
std::string type_of(const toml::node& n);
int line_of(const toml::node& n);
// The key's line, or its value's when the key has none.
int line_of(const toml::key& k, const toml::node& n);
std::string in_quotes(std::string_view s);
// A path named in the file `source`: relative ones are taken from `source`'s directory; ""
// stays "".
std::string path_beside(const std::string& source, const std::string& value);
// " (did you mean 'x'?)" for the candidate closest to `got`, when one is close; else "".
std::string did_you_mean(std::string_view got, const std::vector<std::string>& candidates);
// Appends the strings of the array `node` to `out`; a problem for a value of another type
// (false returned).
bool read_string_array(const toml::node& node, const std::string& path, int line,
                       const std::string& key, std::vector<std::string>& out,
                       std::vector<config_problem>& problems);

}  // namespace wsagent::common
