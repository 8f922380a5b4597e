#pragma once
// Keys from a JWKS URL (auth.jwt.jwks_url): fetched at start, again every
// auth.jwt.jwks_refresh_s, and sooner when a token names a kid no key has (at most once per
// auth.jwt.jwks_refetch_min_s, so tokens with made-up kids cannot make the agent hammer its
// issuer). A fetch that fails, or whose document has no usable key, keeps the last good set;
// the next try comes after jwks_refetch_min_s. The keys go into the key store the JWT
// authenticator reads, beside the configuration's own keys.
//
// The fetch is given (app wires net::https_get): this is the policy, on a thread of its own,
// never an I/O thread's. The refresher lives as long as serve(): a reload hands it the new
// store and settings (use()).
//
// Thread rule: the fields under mutex_ are shared by the refresher's thread and the
// callers (use, unknown_kid: any thread); fetch_ is immutable; the fetch itself runs with
// no lock held.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "auth/jwt_authenticator.hpp"
#include "common/mutex.hpp"

namespace wsagent::auth {

struct jwks_fetch_result {
  bool ok = false;
  std::string body, error;
};

struct jwks_url_settings {
  std::string url;      // "" none
  std::string ca_file;  // trusted for its server (PEM); "" = the system's
  std::chrono::milliseconds refresh{300'000};
  std::chrono::milliseconds refetch_min{30'000};
};

class jwks_refresher {
 public:
  using fetch_fn = std::function<jwks_fetch_result(const jwks_url_settings& from)>;
  using clock = std::chrono::steady_clock;

  explicit jwks_refresher(fetch_fn fetch);
  ~jwks_refresher();  // stops the thread
  jwks_refresher(const jwks_refresher&) = delete;
  jwks_refresher& operator=(const jwks_refresher&) = delete;

  // From now on `store` gets `fixed` (the configuration's keys) plus the keys fetched from
  // `s.url`; the keys fetched last from that same URL go in at once, and a new URL is
  // fetched at once (by the thread: start()).
  void use(std::shared_ptr<jwt_key_store> store, jwt_key_store::key_set fixed, jwks_url_settings s)
      EXCLUDES(mutex_);
  // Fetches now, on the caller's thread (start-up, before start()): "" or what went wrong.
  std::string fetch_now() EXCLUDES(mutex_);
  // Starts the thread that keeps the keys current (once; later calls do nothing).
  void start() EXCLUDES(mutex_);
  // A token named a kid no key has: fetch again soon (rate-limited).
  void unknown_kid() EXCLUDES(mutex_);

  // Fetches made and failed (the metrics page's).
  std::atomic<std::uint64_t> fetches{0}, failures{0};

 private:
  void run() EXCLUDES(mutex_);
  // One fetch and its outcome applied; "" or the error.
  std::string fetch_and_apply(const jwks_url_settings& from) EXCLUDES(mutex_);

  const fetch_fn fetch_;
  common::mutex mutex_;
  std::condition_variable_any wake_;
  std::shared_ptr<jwt_key_store> store_ GUARDED_BY(mutex_);
  jwt_key_store::key_set fixed_ GUARDED_BY(mutex_);
  jwt_key_store::key_set fetched_ GUARDED_BY(mutex_);  // the last good set
  std::string fetched_from_ GUARDED_BY(mutex_);        // its URL
  jwks_url_settings settings_ GUARDED_BY(mutex_);
  clock::time_point next_fetch_ GUARDED_BY(mutex_){};
  clock::time_point last_fetch_ GUARDED_BY(mutex_){};
  bool stopping_ GUARDED_BY(mutex_) = false;
  std::thread thread_;  // started by use() (under mutex_), joined by the destructor
  bool started_ GUARDED_BY(mutex_) = false;
};

}  // namespace wsagent::auth
