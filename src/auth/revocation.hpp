#pragma once
// Revoked tokens and used one-time tokens (docs/operations.md, "Revoking tokens").
//
// The revocation list holds JWT ids (`jti`) and subjects with a time: "every token of subject
// S issued before T" (a token of S without `iat` counts as issued before). Its entries come
// from the revocation file (auth.jwt.revocations, read again on SIGHUP: the file's entries
// replace the previous file's) and from calls at run time (the admin API), which stay until
// the agent stops. The authenticators ask it for every token and, after it changes, for
// every live connection's credential.
//
// One-time tokens (a JWT whose auth.jwt.one_time_claim is true): the first use of a `jti`
// is remembered until the token's expiry, and a second one is refused. Remembered in memory:
// a restart of the agent forgets them (the tokens' short lives bound the exposure).
//
// Thread rule: everything is under the list's mutex; any thread.

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/mutex.hpp"
#include "common/toml_read.hpp"
#include "core/auth.hpp"

namespace wsagent::auth {

struct revocation_entries {
  std::set<std::string, std::less<>> ids;                     // jti
  std::map<std::string, std::int64_t, std::less<>> subjects;  // sub -> issued before (s)
};

// Reads a revocation file:
//   jti = ["4f1c0d2e", "a9b27c11"]
//   [[subject]]
//   sub = "sensor-17"
//   issued_before = 2026-12-01T12:00:00Z   # a TOML date-time, or seconds since the epoch
// Every problem is collected with its line.
std::optional<revocation_entries> read_revocation_file(
    const std::string& path, std::vector<common::config_problem>& problems);

class revocation_list {
 public:
  // The file's entries, replacing the previous file's.
  void set_file_entries(revocation_entries e) EXCLUDES(mutex_);
  void revoke_id(std::string jti) EXCLUDES(mutex_);
  void revoke_subject(std::string subject, std::int64_t issued_before_s) EXCLUDES(mutex_);
  // Why a JWT with these claims is revoked; "" when it is not.
  std::string check(std::string_view jti, std::string_view subject, std::int64_t issued_s) const
      EXCLUDES(mutex_);
  // A one-time token's use at `now_s`: true the first time `jti` is seen (it is then
  // remembered until `expires_s`), false when it was seen before (or when `limit` one-time
  // tokens are remembered already).
  bool first_use(std::string_view jti, std::int64_t expires_s, std::int64_t now_s,
                 std::size_t limit = 100000) EXCLUDES(mutex_);
  std::size_t size() const EXCLUDES(mutex_);

 private:
  mutable common::mutex mutex_;
  revocation_entries file_ GUARDED_BY(mutex_);
  revocation_entries added_ GUARDED_BY(mutex_);
  std::unordered_map<std::string, std::int64_t> used_ GUARDED_BY(mutex_);  // jti -> until (s)
  std::int64_t next_purge_s_ GUARDED_BY(mutex_) = 0;
};

}  // namespace wsagent::auth
