#pragma once
// Access control: which tags a client may publish to and which filters it may subscribe to.
//
// Grants are tag filters with Mosquitto-style substitutions: %c is the client id and %u the
// user, so one role can say "a device may publish devices/%c/# and read devices/%c/control".
// A pattern whose substitution would insert '/', '+' or '#' (a client id chosen to widen its
// own rights) grants nothing. Deny patterns are checked before the allow lists: a role that
// allows "#" but denies "secret/#" may publish anywhere but there, subscribe to "#" (and then
// never receive a secret/ message) but not to a filter only secret tags match. A deny
// pattern whose substitution fails denies that level for every value instead ('+'). An acl
// is built once per session and is read-only afterwards.

#include <string>
#include <string_view>
#include <vector>

namespace wsagent::core {

struct grants {
  std::vector<std::string> publish;         // patterns, before substitution
  std::vector<std::string> subscribe;       // patterns, before substitution
  std::vector<std::string> deny_publish;    // checked first: never these
  std::vector<std::string> deny_subscribe;  // checked first: never these
  bool allow_all = false;  // open mode: everything but reserved tags (and what is denied)

  // Adds `other`'s patterns (the rights of several roles are the union of their patterns).
  void add(const grants& other);
};

class acl {
 public:
  acl() = default;  // grants nothing
  static acl allow_all();
  acl(const grants& g, std::string_view client_id, std::string_view user);

  // May this client publish to `tag` (a valid tag)? Reserved ($) tags are never publishable,
  // nor a tag a deny pattern matches.
  bool can_publish(std::string_view tag) const noexcept;
  // May this client subscribe to `filter` (a valid filter)? True when one granted pattern
  // covers every tag the filter can match and no deny pattern does. A filter a deny pattern
  // only overlaps is allowed: its deliveries are checked (can_receive).
  bool can_subscribe(std::string_view filter) const noexcept;
  // May this client receive a message on `tag`? False when a deny_subscribe pattern matches
  // it. Checked on every delivery to a client that has such patterns (denies_some()).
  bool can_receive(std::string_view tag) const noexcept;
  bool denies_some() const noexcept { return !deny_subscribe_.empty(); }

 private:
  bool all_ = false;
  std::vector<std::string> publish_;
  std::vector<std::string> subscribe_;
  std::vector<std::string> deny_publish_;
  std::vector<std::string> deny_subscribe_;
};

// Replaces %c and %u in `pattern`; returns false (and leaves `out` unspecified) when a
// substituted value contains '/', '+', '#' or is empty.
bool substitute_pattern(std::string_view pattern, std::string_view client_id, std::string_view user,
                        std::string& out);

}  // namespace wsagent::core
