#pragma once
// Access control: which tags a client may publish to and which filters it may subscribe to.
//
// Grants are tag filters with Mosquitto-style substitutions: %c is the client id and %u the
// user, so one role can say "a device may publish devices/%c/# and read devices/%c/control".
// A pattern whose substitution would insert '/', '+' or '#' (a client id chosen to widen its
// own rights) grants nothing. An acl is built once per session and is read-only afterwards.

#include <string>
#include <string_view>
#include <vector>

namespace wsagent::core {

struct grants {
  std::vector<std::string> publish;    // patterns, before substitution
  std::vector<std::string> subscribe;  // patterns, before substitution
  bool allow_all = false;              // open mode: everything but reserved tags
};

class acl {
 public:
  acl() = default;  // grants nothing
  static acl allow_all();
  acl(const grants& g, std::string_view client_id, std::string_view user);

  // May this client publish to `tag` (a valid tag)? Reserved ($) tags are never publishable.
  bool can_publish(std::string_view tag) const noexcept;
  // May this client subscribe to `filter` (a valid filter)? True when one granted pattern
  // covers every tag the filter can match.
  bool can_subscribe(std::string_view filter) const noexcept;

 private:
  bool all_ = false;
  std::vector<std::string> publish_;
  std::vector<std::string> subscribe_;
};

// Replaces %c and %u in `pattern`; returns false (and leaves `out` unspecified) when a
// substituted value contains '/', '+', '#' or is empty.
bool substitute_pattern(std::string_view pattern, std::string_view client_id, std::string_view user,
                        std::string& out);

}  // namespace wsagent::core
