#pragma once
// A message as it travels between nodes of the cluster (docs/cluster.md, "Messages between
// nodes"): the publishing node encodes it once and the same bytes go to every interested
// node's channel; the receiving node decodes it and injects it into its router.
//
// The bytes come from Redis, written by another node of the same cluster, but a Redis is
// reachable by whatever else its operator lets in: decode() checks every length and field
// and never trusts the input (fuzzed: tests/fuzz/envelope_fuzz.cpp). Pure: no I/O, no state.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/message.hpp"

namespace wsagent::cluster {

// What a publish asks of the receiving node beyond its message.
struct envelope_options {
  std::string to;  // core::publish_options::to: a direct message to that client id
  // The shared groups ("$share/g/f") the receiving node serves it to (one member each);
  // its other groups are served by other nodes.
  std::vector<std::string> groups;
};

// Appends the envelope of `msg` to `out`.
void encode_envelope(const core::message& msg, const envelope_options& opts, std::string& out);

struct decoded_envelope {
  std::shared_ptr<core::message> msg;  // null: the bytes are not an envelope
  envelope_options opts;
  std::string error;  // why not, for the log
};
decoded_envelope decode_envelope(std::string_view bytes);

}  // namespace wsagent::cluster
