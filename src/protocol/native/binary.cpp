#include "protocol/native/binary.hpp"

#include "protocol/websocket/frame.hpp"

namespace wsagent::protocol::native {
namespace {

// Reads the envelope front to back; every read checks what is left.
class reader {
 public:
  explicit reader(std::string_view s) : s_(s) {}
  bool u8(std::uint8_t& v) {
    if (s_.size() < 1) return false;
    v = static_cast<std::uint8_t>(s_[0]);
    s_.remove_prefix(1);
    return true;
  }
  bool u16(std::uint16_t& v) {
    if (s_.size() < 2) return false;
    v = static_cast<std::uint16_t>((static_cast<std::uint8_t>(s_[0]) << 8) |
                                   static_cast<std::uint8_t>(s_[1]));
    s_.remove_prefix(2);
    return true;
  }
  bool u64(std::uint64_t& v) {
    if (s_.size() < 8) return false;
    v = 0;
    for (int i = 0; i < 8; ++i)
      v = (v << 8) | static_cast<std::uint8_t>(s_[i]);
    s_.remove_prefix(8);
    return true;
  }
  bool bytes(std::size_t n, std::string_view& v) {
    if (s_.size() < n) return false;
    v = s_.substr(0, n);
    s_.remove_prefix(n);
    return true;
  }
  std::string_view rest() const { return s_; }

 private:
  std::string_view s_;
};

void put_u16(std::string& out, std::size_t v) {
  out.push_back(static_cast<char>((v >> 8) & 0xff));
  out.push_back(static_cast<char>(v & 0xff));
}

void put_u64(std::string& out, std::uint64_t v) {
  for (int i = 7; i >= 0; --i)
    out.push_back(static_cast<char>((v >> (i * 8)) & 0xff));
}

}  // namespace

std::optional<binary_publish_view> decode_binary_publish(std::span<const std::uint8_t> frame,
                                                         std::string& why) {
  reader r(std::string_view(reinterpret_cast<const char*>(frame.data()), frame.size()));
  std::uint8_t kind = 0, flags = 0, msgid_len = 0;
  std::uint16_t tag_len = 0;
  binary_publish_view v;
  if (!r.u8(kind) || kind != binary_publish) {
    why = "binary frame: the first byte must be 0x01 (publish)";
    return std::nullopt;
  }
  if (!r.u8(flags) || (flags & ~11u) != 0 || (flags & 10u) == 10u) {
    why = "binary frame: unknown flags";
    return std::nullopt;
  }
  if (!r.u16(tag_len) || !r.bytes(tag_len, v.tag) || !r.u8(msgid_len) ||
      !r.bytes(msgid_len, v.msgid)) {
    why = "binary frame: truncated header";
    return std::nullopt;
  }
  v.retain = flags & 1;
  v.qos = (flags & 8) ? 2 : (flags & 2) ? 1 : 0;
  v.payload = r.rest();
  return v;
}

void encode_binary_publish(std::string& out, std::string_view tag, std::string_view msgid,
                           std::string_view payload, bool retain, int qos) {
  out.push_back(static_cast<char>(binary_publish));
  out.push_back(static_cast<char>((retain ? 1 : 0) | (qos == 1 ? 2 : 0) | (qos == 2 ? 8 : 0)));
  put_u16(out, tag.size());
  out.append(tag);
  out.push_back(static_cast<char>(msgid.size()));
  out.append(msgid);
  out.append(payload);
}

void encode_binary_message_frame(const outgoing_message& m, std::string& out, int qos, bool dup) {
  std::size_t from_len = std::min<std::size_t>(m.from.size(), 255);
  std::size_t msgid_len = std::min<std::size_t>(m.msgid.size(), 255);
  std::size_t size = 2 + 2 + m.tag.size() + 1 + from_len + 1 + msgid_len + 8 + (qos > 0 ? 8 : 0) +
                     (m.offset ? 8 : 0) + m.payload.size();
  auto header = websocket::make_header(websocket::opcode::binary, size);
  out.reserve(out.size() + header.size + size);
  out.append(reinterpret_cast<const char*>(header.bytes.data()), header.size);
  out.push_back(static_cast<char>(binary_message));
  out.push_back(static_cast<char>((m.retained ? 1 : 0) | (qos == 1 ? 2 : 0) | (dup ? 4 : 0) |
                                  (qos == 2 ? 8 : 0) | (m.offset ? 16 : 0)));
  put_u16(out, m.tag.size());
  out.append(m.tag);
  out.push_back(static_cast<char>(from_len));
  out.append(m.from.substr(0, from_len));
  out.push_back(static_cast<char>(msgid_len));
  out.append(m.msgid.substr(0, msgid_len));
  put_u64(out, static_cast<std::uint64_t>(m.timestamp_ms));
  if (qos > 0) put_u64(out, m.seq);
  if (m.offset) put_u64(out, m.offset);
  out.append(m.payload);
}

std::optional<binary_message_view> decode_binary_message(std::string_view frame, std::string& why) {
  reader r(frame);
  std::uint8_t kind = 0, flags = 0, from_len = 0, msgid_len = 0;
  std::uint16_t tag_len = 0;
  std::uint64_t ts = 0;
  binary_message_view v;
  if (!r.u8(kind) || kind != binary_message || !r.u8(flags) || !r.u16(tag_len) ||
      !r.bytes(tag_len, v.tag) || !r.u8(from_len) || !r.bytes(from_len, v.from) ||
      !r.u8(msgid_len) || !r.bytes(msgid_len, v.msgid) || !r.u64(ts)) {
    why = "not a binary message envelope";
    return std::nullopt;
  }
  v.retained = flags & 1;
  v.qos = (flags & 8) ? 2 : (flags & 2) ? 1 : 0;
  v.dup = (flags & 4) != 0;
  v.timestamp_ms = static_cast<std::int64_t>(ts);
  if ((v.qos && !r.u64(v.seq)) || ((flags & 16) && !r.u64(v.offset))) {
    why = "not a binary message envelope";
    return std::nullopt;
  }
  v.payload = r.rest();
  return v;
}

}  // namespace wsagent::protocol::native
