// libFuzzer target: the native protocol parser and the binary envelope. Every input must end
// in requests or error reports, never a crash; forwarded payload slices must lie inside the
// input.

#include <cstdint>
#include <cstdlib>
#include <string>

#include "protocol/native/binary.hpp"
#include "protocol/native/codec.hpp"

using namespace wsagent::protocol::native;

namespace {

struct checker : request_handler {
  const char* begin;
  const char* end;
  void inside(std::string_view s) {
    if (!s.empty() && (s.data() < begin || s.data() + s.size() > end)) std::abort();
  }
  void on_auth(const auth_request&) override {}
  void on_refresh(std::string_view, std::string_view token) override {
    inside(token);
    if (token.empty()) std::abort();
  }
  void on_subscribe(const subscribe_request& r) override {
    if (r.tags.empty()) std::abort();
  }
  void on_publish(const publish_request& r) override {
    inside(r.payload);
    if (r.tag.empty() || r.payload.empty()) std::abort();
  }
  void on_typed(const typed_request& r) override {
    if (r.type.empty()) std::abort();
  }
  void on_ping(std::string_view) override {}
  void on_ack(std::string_view, std::uint64_t) override {}
  void on_pubrec(std::string_view, std::uint64_t) override {}
  void on_pubcomp(std::string_view, std::uint64_t) override {}
  void on_pubrel(std::string_view, std::string_view) override {}
  void on_error(error_code, std::string_view message, std::string_view) override {
    if (message.empty()) std::abort();
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string frame(reinterpret_cast<const char*>(data), size);
  frame.reserve(size + 64);  // the padding simdjson may read
  checker c;
  c.begin = frame.data();
  c.end = frame.data() + frame.size();
  parser::for_this_thread().parse(frame.data(), frame.size(), frame.capacity(), c, 16);
  std::string why;
  decode_binary_publish(std::span<const std::uint8_t>(data, size), why);
  decode_binary_message(frame, why);
  return 0;
}
