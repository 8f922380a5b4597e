// libFuzzer target: the RFC 6455 frame reader, in both roles, fed in chunks as a socket would.
// Invariants: every event consumes what it says and no more than it was given, and an error
// ends the stream.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "protocol/websocket/frame.hpp"

using namespace wsagent::protocol::websocket;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

void run(frame_reader::role role, const std::uint8_t* data, std::size_t size, std::size_t chunk) {
  frame_reader reader(role, 64 * 1024);
  std::vector<std::uint8_t> buffer;
  std::size_t fed = 0;
  while (fed < size) {
    std::size_t n = std::min(chunk, size - fed);
    buffer.insert(buffer.end(), data + fed, data + fed + n);
    fed += n;
    while (true) {
      auto ev = reader.next(std::span<std::uint8_t>(buffer.data(), buffer.size()));
      check(ev.consumed <= buffer.size());
      if (ev.what == frame_reader::kind::need_more) break;
      if (ev.what == frame_reader::kind::error) {
        check(ev.code >= 1000);
        return;
      }
      if (ev.what == frame_reader::kind::message && ev.op == opcode::text)
        check(is_valid_utf8(
            std::string_view(reinterpret_cast<const char*>(ev.payload.data()), ev.payload.size())));
      check(ev.consumed > 0);
      buffer.erase(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(ev.consumed));
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  std::size_t chunk = 1 + data[0] % 64;  // the first byte picks how the stream is split
  run(frame_reader::role::server, data + 1, size - 1, chunk);
  run(frame_reader::role::client, data + 1, size - 1, chunk);
  return 0;
}
