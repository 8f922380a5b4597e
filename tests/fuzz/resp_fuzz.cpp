// libFuzzer target: bytes from a Redis connection, fed to the RESP reader (hiredis's, under
// the cluster's own loop) in pieces of a size the first byte picks. Every value read must be
// well formed; an error must stay an error; nothing may crash or leak.
#include <cstddef>
#include <cstdint>
#include <functional>

#include "cluster/resp.hpp"

using wsagent::cluster::resp_reader;
using wsagent::cluster::resp_value;

namespace {

// Walks a value (the conversion's recursion bounded by hiredis's nesting limit).
std::size_t count(const resp_value& v, int depth = 0) {
  if (depth > 16) __builtin_trap();
  std::size_t n = 1;
  for (const auto& e : v.elements)
    n += count(e, depth + 1);
  if (!v.is(resp_value::kind::array) && !v.elements.empty()) __builtin_trap();
  return n;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::size_t chunk = 1 + data[0] % 32;
  resp_reader r;
  bool failed = false;
  for (std::size_t at = 1; at < size; at += chunk) {
    r.feed(reinterpret_cast<const char*>(data + at), std::min(chunk, size - at));
    resp_value v;
    while (true) {
      const auto st = r.next(v);
      if (st == resp_reader::status::value) {
        if (failed) __builtin_trap();  // nothing after an error
        (void)count(v);
        (void)v.push_kind();
        continue;
      }
      if (st == resp_reader::status::error) {
        if (r.error().empty()) __builtin_trap();
        failed = true;
      }
      break;
    }
    if (failed) break;
  }
  return 0;
}
