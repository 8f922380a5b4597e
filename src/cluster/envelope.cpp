#include "cluster/envelope.hpp"

#include <cstring>

namespace wsagent::cluster {

// Version 1, little-endian:
//   u8 version (1), u8 flags (bit 0: published_retain), u8 qos, u8 payload_format,
//   u8 message flags, u32 node, i64 timestamp_ms, i64 expires_ms,
//   then six strings, each a u32 length and its bytes: tag, payload, from, msgid, to,
//   properties (core::message_properties::serialize; "" for none); then u32 the number of
//   shared groups and each group's whole filter, a string as above.
namespace {

constexpr std::uint8_t version = 1;
constexpr std::uint8_t flag_published_retain = 1;
constexpr std::size_t fixed_size = 5 + 4 + 8 + 8;

template <class T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  for (std::size_t i = 0; i < sizeof(T); ++i)
    b[i] = static_cast<char>((static_cast<std::uint64_t>(v) >> (8 * i)) & 0xff);
  out.append(b, sizeof b);
}

void put_string(std::string& out, std::string_view s) {
  put(out, static_cast<std::uint32_t>(s.size()));
  out.append(s);
}

// Reads from a view, each call failing (false) once the bytes run out.
class reader {
 public:
  explicit reader(std::string_view b) : b_(b) {}
  template <class T>
  bool get(T& v) {
    if (b_.size() < sizeof(T)) return false;
    std::uint64_t x = 0;
    for (std::size_t i = 0; i < sizeof(T); ++i)
      x |= std::uint64_t{static_cast<unsigned char>(b_[i])} << (8 * i);
    v = static_cast<T>(x);
    b_.remove_prefix(sizeof(T));
    return true;
  }
  bool get_string(std::string& s) {
    std::uint32_t n = 0;
    if (!get(n) || b_.size() < n) return false;
    s.assign(b_.data(), n);
    b_.remove_prefix(n);
    return true;
  }
  bool done() const { return b_.empty(); }

 private:
  std::string_view b_;
};

}  // namespace

void encode_envelope(const core::message& msg, const envelope_options& opts, std::string& out) {
  const std::string props = msg.props ? msg.props->serialize() : std::string();
  out.reserve(out.size() + fixed_size + 7 * 4 + msg.tag.size() + msg.payload.size() +
              msg.from.size() + msg.msgid.size() + opts.to.size() + props.size());
  put(out, version);
  put(out, static_cast<std::uint8_t>(msg.published_retain ? flag_published_retain : 0));
  put(out, msg.qos);
  put(out, static_cast<std::uint8_t>(msg.format));
  put(out, msg.flags);
  put(out, msg.node);
  put(out, msg.timestamp_ms);
  put(out, msg.expires_ms);
  put_string(out, msg.tag);
  put_string(out, msg.payload);
  put_string(out, msg.from);
  put_string(out, msg.msgid);
  put_string(out, opts.to);
  put_string(out, props);
  put(out, static_cast<std::uint32_t>(opts.groups.size()));
  for (const auto& g : opts.groups)
    put_string(out, g);
}

decoded_envelope decode_envelope(std::string_view bytes) {
  decoded_envelope d;
  reader r(bytes);
  std::uint8_t v = 0, flags = 0, qos = 0, format = 0, mflags = 0;
  if (!r.get(v) || v != version) {
    d.error = "not an envelope of version 1";
    return d;
  }
  auto m = std::make_shared<core::message>();
  std::string props;
  if (!r.get(flags) || !r.get(qos) || !r.get(format) || !r.get(mflags) || !r.get(m->node) ||
      !r.get(m->timestamp_ms) || !r.get(m->expires_ms) || !r.get_string(m->tag) ||
      !r.get_string(m->payload) || !r.get_string(m->from) || !r.get_string(m->msgid) ||
      !r.get_string(d.opts.to) || !r.get_string(props)) {
    d.error = "truncated";
    return d;
  }
  std::uint32_t groups = 0;
  if (!r.get(groups)) {
    d.error = "truncated";
    return d;
  }
  for (std::uint32_t i = 0; i < groups; ++i) {
    std::string g;
    if (!r.get_string(g)) {  // (a count larger than the bytes ends here, having read them)
      d.error = "truncated";
      return d;
    }
    d.opts.groups.push_back(std::move(g));
  }
  if (!r.done()) {
    d.error = "bytes after the envelope";
    return d;
  }
  if (qos > 2 || format > static_cast<std::uint8_t>(core::payload_format::unspecified) ||
      (flags & ~flag_published_retain) != 0 || m->node == 0) {
    d.error = "a field out of range";
    return d;
  }
  if (!props.empty()) {
    m->props = core::message_properties::parse(props);
    if (!m->props) {
      d.error = "malformed properties";
      return d;
    }
  }
  m->qos = qos;
  m->format = static_cast<core::payload_format>(format);
  m->flags = mflags;
  m->published_retain = (flags & flag_published_retain) != 0;
  d.msg = std::move(m);
  return d;
}

}  // namespace wsagent::cluster
