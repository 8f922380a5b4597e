#pragma once
// Small text helpers shared by the configuration loader and the HTTP layer.

#include <string_view>

namespace wsagent::common {

// Calls f(item) for each item of the `sep`-separated `list` ("a, b,c"), with the spaces
// around it trimmed; empty items are skipped.
template <class F>
void for_each_list_item(std::string_view list, char sep, F&& f) {
  while (!list.empty()) {
    const auto end = list.find(sep);
    std::string_view item = list.substr(0, end);
    while (!item.empty() && item.front() == ' ')
      item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ')
      item.remove_suffix(1);
    if (!item.empty()) f(item);
    list = end == std::string_view::npos ? std::string_view() : list.substr(end + 1);
  }
}

}  // namespace wsagent::common
