#pragma once
// Small text helpers shared by the configuration loader, the HTTP layer and the
// authenticators.

#include <string>
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

// `bytes` in lowercase hex, `sep` between bytes ("ab:cd" with ":"): digests, fingerprints.
inline std::string hex(std::string_view bytes, std::string_view sep = {}) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * (2 + sep.size()));
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i) out.append(sep);
    const auto b = static_cast<unsigned char>(bytes[i]);
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

}  // namespace wsagent::common
