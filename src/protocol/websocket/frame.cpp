#include "protocol/websocket/frame.hpp"

#include <cstring>

#include "common/utf8.hpp"

namespace wsagent::protocol::websocket {
namespace {

using common::check_utf8;
using common::utf8_status;

constexpr bool is_cont(std::uint8_t b) noexcept {
  return (b & 0xc0) == 0x80;
}

std::uint64_t load_be(const std::uint8_t* p, std::size_t n) noexcept {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i)
    v = (v << 8) | p[i];
  return v;
}

bool is_control(std::uint8_t op) noexcept {
  return (op & 0x8) != 0;
}

bool is_known_opcode(std::uint8_t op) noexcept {
  return op <= 0x2 || (op >= 0x8 && op <= 0xa);
}

const std::uint8_t* as_bytes(const char* p) noexcept {
  return reinterpret_cast<const std::uint8_t*>(p);
}

// Above this the assembly buffer is released after a message instead of kept for reuse, so
// one large message does not pin memory for the rest of the connection.
constexpr std::size_t keep_assembly_capacity = 64 * 1024;

}  // namespace

bool is_valid_close_code(std::uint16_t code) noexcept {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
         (code >= 3000 && code <= 4999);
}

frame_reader::frame_reader(role r, std::size_t max_message_size)
    : role_(r), max_message_size_(max_message_size) {}

frame_reader::event frame_reader::next(std::span<std::uint8_t> input) {
  // The previous call may have returned a message pointing into assembly_; only now may it go.
  if (!in_fragmented_message_ && !assembly_.empty()) {
    if (assembly_.capacity() > keep_assembly_capacity) {
      std::string().swap(assembly_);
    } else {
      assembly_.clear();
    }
  }

  event ev;
  auto fail = [&](std::uint16_t code, std::string_view why) {
    error_reason_.assign(why);
    ev = event{};
    ev.what = kind::error;
    ev.code = code;
    ev.reason = error_reason_;
    return ev;
  };

  const std::size_t n = input.size();
  if (n < 2) return ev;
  const std::uint8_t* p = input.data();

  // Everything that can be judged from the first two bytes is judged before waiting for more.
  const bool fin = (p[0] & 0x80) != 0;
  if ((p[0] & 0x70) != 0) return fail(close_code::protocol_error, "reserved bits set");
  const std::uint8_t op = p[0] & 0x0f;
  if (!is_known_opcode(op)) return fail(close_code::protocol_error, "unknown opcode");
  const bool masked = (p[1] & 0x80) != 0;
  if (role_ == role::server && !masked) {
    return fail(close_code::protocol_error, "client frame not masked");
  }
  if (role_ == role::client && masked) {
    return fail(close_code::protocol_error, "server frame masked");
  }
  const std::uint8_t len7 = p[1] & 0x7f;
  const bool control = is_control(op);
  if (control) {
    if (!fin) return fail(close_code::protocol_error, "fragmented control frame");
    if (len7 > 125) return fail(close_code::protocol_error, "control frame too long");
  } else if (op == 0x0) {
    if (!in_fragmented_message_) {
      return fail(close_code::protocol_error, "continuation without a message");
    }
  } else if (in_fragmented_message_) {
    return fail(close_code::protocol_error, "new message inside a fragmented one");
  }

  std::size_t header = 2;
  std::uint64_t len = len7;
  if (len7 == 126) {
    if (n < 4) return ev;
    len = load_be(p + 2, 2);
    header = 4;
  } else if (len7 == 127) {
    if (n < 10) return ev;
    len = load_be(p + 2, 8);
    header = 10;
    if ((len >> 63) != 0) return fail(close_code::protocol_error, "invalid frame length");
  }

  // Reject by declared size before any payload arrives or anything is allocated.
  if (!control) {
    const std::uint64_t limit = max_message_size_;
    const std::uint64_t already = assembly_.size();
    if (len > limit || already > limit - len) {
      return fail(close_code::too_big, "message too big");
    }
  }

  std::uint32_t key = 0;
  if (masked) {
    if (n < header + 4) return ev;
    std::memcpy(&key, p + header, 4);
    header += 4;
  }
  if (n - header < len) return ev;

  // len <= n here, so it fits std::size_t.
  const std::size_t size = static_cast<std::size_t>(len);
  const std::span<std::uint8_t> body = input.subspan(header, size);
  if (masked) mask_payload(body, key);
  ev.consumed = header + size;

  switch (static_cast<opcode>(op)) {
    case opcode::ping:
    case opcode::pong:
      ev.what = op == 0x9 ? kind::ping : kind::pong;
      ev.payload = body;
      return ev;

    case opcode::close: {
      ev.what = kind::close;
      if (size == 0) {
        ev.code = close_code::no_status;
        return ev;
      }
      if (size == 1) return fail(close_code::protocol_error, "close frame body of one byte");
      ev.code = static_cast<std::uint16_t>(load_be(body.data(), 2));
      if (!is_valid_close_code(ev.code)) {
        return fail(close_code::protocol_error, "invalid close code");
      }
      if (check_utf8(body.data() + 2, size - 2) != utf8_status::valid) {
        return fail(close_code::invalid_payload, "close reason is not valid UTF-8");
      }
      ev.reason = std::string_view(reinterpret_cast<const char*>(body.data() + 2), size - 2);
      return ev;
    }

    case opcode::text:
    case opcode::binary:
      if (fin) {
        if (op == 0x1 && check_utf8(body.data(), size) != utf8_status::valid) {
          return fail(close_code::invalid_payload, "text message is not valid UTF-8");
        }
        ev.what = kind::message;
        ev.op = static_cast<opcode>(op);
        ev.payload = body;
        return ev;
      }
      in_fragmented_message_ = true;
      fragmented_op_ = static_cast<opcode>(op);
      break;

    case opcode::continuation:
      break;
  }

  // A fragment: append it, and for text check what is complete so far so bad UTF-8 fails
  // fast. The check restarts at the last lead byte of the previous fragments, which may
  // begin a sequence cut by the fragment boundary.
  std::size_t check_from = assembly_.size();
  for (std::size_t back = 0; back < 3 && back < assembly_.size(); ++back) {
    const std::size_t i = assembly_.size() - 1 - back;
    if (!is_cont(static_cast<std::uint8_t>(assembly_[i]))) {
      check_from = i;
      break;
    }
  }
  assembly_.append(reinterpret_cast<const char*>(body.data()), size);
  if (fragmented_op_ == opcode::text) {
    const utf8_status s =
        check_utf8(as_bytes(assembly_.data()) + check_from, assembly_.size() - check_from);
    if (s == utf8_status::invalid || (fin && s != utf8_status::valid)) {
      return fail(close_code::invalid_payload, "text message is not valid UTF-8");
    }
  }
  if (!fin) {
    ev.what = kind::skipped;
    return ev;
  }
  in_fragmented_message_ = false;  // assembly_ is cleared on the next call
  ev.what = kind::message;
  ev.op = fragmented_op_;
  ev.payload = std::span<const std::uint8_t>(as_bytes(assembly_.data()), assembly_.size());
  return ev;
}

frame_header make_header(opcode op, std::size_t payload_size, bool fin,
                         const std::uint32_t* mask_key) noexcept {
  frame_header h;
  h.bytes[0] = static_cast<std::uint8_t>((fin ? 0x80 : 0x00) | static_cast<std::uint8_t>(op));
  const std::uint8_t mask_bit = mask_key != nullptr ? 0x80 : 0x00;
  const std::uint64_t len = payload_size;
  if (len < 126) {
    h.bytes[1] = static_cast<std::uint8_t>(mask_bit | len);
    h.size = 2;
  } else if (len <= 0xffff) {
    h.bytes[1] = static_cast<std::uint8_t>(mask_bit | 126);
    h.bytes[2] = static_cast<std::uint8_t>(len >> 8);
    h.bytes[3] = static_cast<std::uint8_t>(len);
    h.size = 4;
  } else {
    h.bytes[1] = static_cast<std::uint8_t>(mask_bit | 127);
    for (std::size_t i = 0; i < 8; ++i) {
      h.bytes[2 + i] = static_cast<std::uint8_t>(len >> (56 - 8 * i));
    }
    h.size = 10;
  }
  if (mask_key != nullptr) {
    // The key's memory bytes are the wire bytes; mask_payload reads them the same way.
    std::memcpy(h.bytes.data() + h.size, mask_key, 4);
    h.size += 4;
  }
  return h;
}

void mask_payload(std::span<std::uint8_t> data, std::uint32_t mask_key,
                  std::size_t offset) noexcept {
  std::array<std::uint8_t, 4> key{};
  std::memcpy(key.data(), &mask_key, 4);
  // The key rotated to `offset` and repeated twice, so whole 8-byte words can be XORed.
  std::array<std::uint8_t, 8> pattern{};
  for (std::size_t i = 0; i < 8; ++i)
    pattern[i] = key[(i + offset) & 3];
  std::uint64_t word_mask;
  std::memcpy(&word_mask, pattern.data(), 8);

  std::uint8_t* p = data.data();
  const std::size_t n = data.size();
  std::size_t i = 0;
  for (; n - i >= 8; i += 8) {
    std::uint64_t w;
    std::memcpy(&w, p + i, 8);
    w ^= word_mask;
    std::memcpy(p + i, &w, 8);
  }
  for (; i < n; ++i)
    p[i] ^= pattern[i & 7];
}

void append_frame(std::string& out, opcode op, std::string_view payload, bool fin) {
  const frame_header h = make_header(op, payload.size(), fin);
  out.reserve(out.size() + h.size + payload.size());
  out.append(reinterpret_cast<const char*>(h.bytes.data()), h.size);
  out.append(payload);
}

void append_close(std::string& out, std::uint16_t code, std::string_view reason) {
  // 1005 means "no status": it is expressed by an empty body, never sent as a code.
  if (code == close_code::no_status) {
    append_frame(out, opcode::close, {});
    return;
  }
  constexpr std::size_t max_reason = 125 - 2;
  if (reason.size() > max_reason) {
    std::size_t cut = max_reason;
    // Back up to a lead byte so no UTF-8 sequence is cut in half.
    while (cut > 0 && is_cont(static_cast<std::uint8_t>(reason[cut])))
      --cut;
    reason = reason.substr(0, cut);
  }
  std::string body;
  body.reserve(2 + reason.size());
  body.push_back(static_cast<char>(code >> 8));
  body.push_back(static_cast<char>(code & 0xff));
  body.append(reason);
  append_frame(out, opcode::close, body);
}

}  // namespace wsagent::protocol::websocket
