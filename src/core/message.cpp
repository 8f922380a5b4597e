#include "core/message.hpp"

#include <atomic>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace wsagent::core {

wire_registry& wire_registry::global() {
  static wire_registry r;
  return r;
}

std::size_t wire_registry::reserve_slot(std::string_view name) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < slots_.size(); ++i)
    if (slots_[i] == name) return i;
  if (slots_.size() == max_slots)
    throw std::length_error("wire_registry: no encoding slot left for '" + std::string(name) +
                            "' (max_slots)");
  slots_.emplace_back(name);
  return slots_.size() - 1;
}

std::uint8_t wire_registry::reserve_flag(std::string_view name) {
  std::lock_guard lock(mutex_);
  for (std::size_t i = 0; i < flags_.size(); ++i)
    if (flags_[i] == name) return static_cast<std::uint8_t>(1u << i);
  if (flags_.size() == max_flags)
    throw std::length_error("wire_registry: no message flag left for '" + std::string(name) + "'");
  flags_.emplace_back(name);
  return static_cast<std::uint8_t>(1u << (flags_.size() - 1));
}

std::size_t wire_registry::slots_in_use() const {
  std::lock_guard lock(mutex_);
  return slots_.size();
}

message::~message() {
  for (auto& slot : cache_)
    delete slot.load(std::memory_order_relaxed);
}

std::shared_ptr<message> message::copy() const {
  auto m = std::make_shared<message>();
  m->tag = tag;
  m->payload = payload;
  m->from = from;
  m->msgid = msgid;
  m->timestamp_ms = timestamp_ms;
  m->format = format;
  m->flags = flags;
  m->retain = retain;
  m->published_retain = published_retain;
  m->qos = qos;
  m->node = node;
  m->expires_ms = expires_ms;
  m->props = props;
  return m;
}

namespace {

std::uint32_t random32() {
  std::random_device rd;
  return static_cast<std::uint32_t>(rd());
}

std::atomic<std::uint32_t> msgid_node{random32()};

}  // namespace

void set_msgid_node(std::uint32_t node) {
  msgid_node.store(node, std::memory_order_relaxed);
}

std::string make_msgid() {
  static std::atomic<std::uint64_t> counter{0};
  std::uint64_t n = counter.fetch_add(1, std::memory_order_relaxed);
  const std::uint32_t prefix = msgid_node.load(std::memory_order_relaxed);
  // Base 32 (shifts, not divisions). With the 9-character prefix an id fits std::string's
  // 15-byte inline buffer (no allocation) for the first 2^30 ids of a run.
  static constexpr char digits[] = "0123456789abcdefghijklmnopqrstuv";
  char buf[32];
  char* p = buf + sizeof buf;
  do {
    *--p = digits[n & 31];
    n >>= 5;
  } while (n);
  *--p = '-';
  for (int i = 0; i < 8; ++i)
    *--p = digits[(prefix >> (i * 4)) & 15];
  return std::string(p, buf + sizeof buf);
}

namespace {

void put_string(std::string& out, std::string_view s) {
  const auto n = static_cast<std::uint32_t>(s.size());
  for (int i = 3; i >= 0; --i)
    out.push_back(static_cast<char>((n >> (i * 8)) & 0xff));
  out.append(s);
}

bool get_string(std::string_view& in, std::string& s) {
  if (in.size() < 4) return false;
  std::uint32_t n = 0;
  for (int i = 0; i < 4; ++i)
    n = (n << 8) | static_cast<std::uint8_t>(in[static_cast<std::size_t>(i)]);
  in.remove_prefix(4);
  if (in.size() < n) return false;
  s.assign(in.substr(0, n));
  in.remove_prefix(n);
  return true;
}

}  // namespace

std::string message_properties::serialize() const {
  std::string out;
  put_string(out, content_type);
  put_string(out, response_tag);
  put_string(out, correlation);
  for (const auto& [k, v] : user) {
    put_string(out, k);
    put_string(out, v);
  }
  return out;
}

std::shared_ptr<const message_properties> message_properties::parse(std::string_view bytes) {
  if (bytes.empty()) return nullptr;
  auto p = std::make_shared<message_properties>();
  if (!get_string(bytes, p->content_type) || !get_string(bytes, p->response_tag) ||
      !get_string(bytes, p->correlation))
    return nullptr;
  while (!bytes.empty()) {
    auto& [k, v] = p->user.emplace_back();
    if (!get_string(bytes, k) || !get_string(bytes, v)) return nullptr;
  }
  return p;
}

}  // namespace wsagent::core
