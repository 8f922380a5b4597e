// libFuzzer target: what another node (or anything with access to Redis) writes on the
// cluster's channels. The first byte picks the reader: a message envelope (a node's channel)
// or a route change (the routes channel). Whatever decodes must encode back to something
// that decodes to the same; nothing may crash or leak.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cluster/envelope.hpp"
#include "cluster/route_table.hpp"
#include "core/tag.hpp"

namespace cluster = wsagent::cluster;

namespace {

void envelope(std::string_view in) {
  auto d = cluster::decode_envelope(in);
  if (!d.msg) {
    if (d.error.empty()) __builtin_trap();
    return;
  }
  std::string again;
  cluster::encode_envelope(*d.msg, d.opts, again);
  auto e = cluster::decode_envelope(again);
  if (!e.msg) __builtin_trap();
  const auto &a = *d.msg, &b = *e.msg;
  if (a.tag != b.tag || a.payload != b.payload || a.from != b.from || a.msgid != b.msgid ||
      a.qos != b.qos || a.format != b.format || a.flags != b.flags || a.node != b.node ||
      a.timestamp_ms != b.timestamp_ms || a.expires_ms != b.expires_ms ||
      a.published_retain != b.published_retain || d.opts.to != e.opts.to ||
      (a.props == nullptr) != (b.props == nullptr))
    __builtin_trap();
}

void route_change(std::string_view in) {
  auto c = cluster::parse_route_change(in);
  if (!c) return;
  auto again = cluster::parse_route_change(cluster::format_route_change(*c));
  if (!again || again->node != c->node || again->version != c->version || again->what != c->what ||
      again->ops != c->ops)
    __builtin_trap();
  // Applied to a table, then matched: any tag the change's filters could be.
  cluster::route_table t("self", "p:");
  t.replace(c->node, c->version == 0 ? 0 : c->version - 1, {});
  t.apply(*c);
  std::vector<cluster::remote_node_ptr> out;
  for (const auto& [added, e] : c->ops) {
    const std::string_view name = std::string_view(e.key).substr(e.key.size() > 2 ? 2 : 0);
    if (wsagent::core::validate_tag(name, {}) == wsagent::core::tag_error::none) t.match(name, out);
    (void)t.owner_of(name);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  if (data[0] & 1)
    envelope(in);
  else
    route_change(in);
  return 0;
}
