#pragma once
// A TLS listener's OpenSSL context, built from its tls_config (net/tls_config.hpp), and
// replaced while the agent runs (rotation: SIGHUP, or a file changed on disk) without
// touching the connections of the old one: each SSL object holds a reference to the context
// it came from, so the old context lives as long as its last connection.
//
// A context that cannot be built (a missing or unreadable file, a key that does not match
// its certificate, a cipher list OpenSSL does not know) throws tls_error at start; on a
// reload the error is returned and the current context stays in use.
//
// Thread rule: current_ is read by the acceptor's thread (new_ssl()) and replaced by the
// thread that reloads (the main context's): under mutex_. The counters are relaxed atomics.

#include <openssl/ssl.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/mutex.hpp"
#include "core/auth.hpp"
#include "net/tls_config.hpp"

namespace wsagent::net {

class tls_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// OpenSSL's error queue as one line (and the queue cleared).
std::string openssl_errors();

class tls_context {
 public:
  // `alpn`: what the listener answers to ALPN (tls_config::alpn, or its protocols').
  tls_context(tls_config config, std::vector<std::string> alpn);  // throws tls_error
  ~tls_context();
  tls_context(const tls_context&) = delete;
  tls_context& operator=(const tls_context&) = delete;

  // A server-side SSL object for a new connection, from the current context (null when
  // OpenSSL cannot make one: out of memory).
  SSL* new_ssl() EXCLUDES(mutex_);

  // Builds the context again from the files. On success new connections use it (existing
  // ones keep theirs) and "" is returned; else the current one stays and the error is.
  std::string reload() EXCLUDES(mutex_);
  // True when one of the files changed (time or size) since the last load was tried.
  bool files_changed() const EXCLUDES(mutex_);

  // "subject CN=…, expires …, SHA-256 ab:cd…" of the certificate in use.
  std::string describe() const EXCLUDES(mutex_);

  const tls_config& config() const noexcept { return config_; }
  int handshake_timeout_ms() const noexcept { return config_.handshake_timeout_ms; }

  // Counters of the listener's handshakes (the metrics page's).
  std::atomic<std::uint64_t> handshakes{0}, handshake_failures{0}, resumed{0};

 private:
  struct stamp {
    std::filesystem::file_time_type time{};
    std::uintmax_t size = 0;
  };
  SSL_CTX* build() const;  // throws tls_error
  std::vector<stamp> stamps() const;

  const tls_config config_;
  const std::string alpn_wire_;  // ALPN's wire form: length-prefixed names
  mutable common::mutex mutex_;
  SSL_CTX* current_ GUARDED_BY(mutex_) = nullptr;
  std::vector<stamp> loaded_ GUARDED_BY(mutex_);
};

// The identity of a verified client certificate (subject, CN, SAN entries, fingerprint).
core::certificate_identity certificate_identity_of(X509* cert);

}  // namespace wsagent::net
