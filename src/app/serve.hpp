#pragma once
// `wsagent serve`: wires the configuration to the core, the adapters and the transports,
// and runs until SIGINT or SIGTERM. The only place that picks concrete implementations.

#include <memory>
#include <string>
#include <vector>

#include "app/config.hpp"
#include "auth/jwks_refresher.hpp"
#include "auth/revocation.hpp"
#include "core/auth.hpp"

namespace wsagent::app {

// Exit code: 0 after a clean shutdown, 1 on a start-up failure (said on stderr).
int serve(const config& cfg, const std::string& config_path);

// Builds the authenticator `auth` describes (static tokens or open mode, JWT, client
// certificates); null, with `problems`, when a key or the revocation file cannot be used.
// `refresher` (null: none) gets the key store and auth.jwt.jwks_url to keep current.
std::shared_ptr<const core::authenticator> make_authenticator(
    const auth_config& auth, const std::shared_ptr<auth::revocation_list>& revocations,
    auth::jwks_refresher* refresher, std::vector<std::string>& problems);

// The secure default: without tokens, only a loopback address may be served, unless
// server.allow_anonymous says otherwise. Returns the reason to refuse, or "" when fine.
std::string open_access_problem(const config& cfg);

// What `wsagent serve --check-config` checks beyond the configuration's own keys, as serve
// would at start: the secure default, server.require_tls, every TLS listener's certificate,
// key, CA and CRL files, the JWT key files and JWKS file, the revocation file (a JWKS URL is
// not fetched). Every problem found; empty when all is well.
std::vector<std::string> check_files(const config& cfg);

// True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost).
bool is_loopback(const std::string& host);

// Splits "host:port" or "[v6]:port"; false when malformed.
bool split_listen(const std::string& listen, std::string& host, std::uint16_t& port);

}  // namespace wsagent::app
