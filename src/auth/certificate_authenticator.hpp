#pragma once
// Client certificates as credentials ([auth.certificates], docs/configuration.md): a client
// whose certificate the TLS handshake verified (tls.client_certs = "optional" or "required")
// and that presents no token is authenticated by the certificate: its client id and user
// come from templates over the certificate's subject CN, subject alternative names and
// fingerprint, its rights from the configured roles. A client that presents a token is
// authenticated by the token, as without a certificate; with `match_client_id`, the client
// id it ends up with (the token's, or the one it asked for) must be the certificate's, so a
// device's certificate and its token cannot be mixed with another device's.
//
// Identically on mqtts and wss: both hand the adapter the same certificate_identity
// (core/auth.hpp). Immutable once built.

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/toml_read.hpp"
#include "core/auth.hpp"

namespace wsagent::auth {

struct certificate_settings {
  std::string client_id = "{cn}";  // template: {cn} {dns} {uri} {email} {fingerprint}
  std::string user;                // template; "" = the client id
  std::vector<std::string> roles;
  bool match_client_id = false;
};

// "" when `t` is a template these fields can fill, else what is wrong with it.
std::string check_certificate_template(std::string_view t);

// `t` filled from `cert`; nullopt with `missing` naming the field the certificate lacks.
std::optional<std::string> fill_certificate_template(std::string_view t,
                                                     const core::certificate_identity& cert,
                                                     std::string& missing);

// The [auth.certificates] table (its templates checked); problems with file, line and key.
std::optional<certificate_settings> read_certificate_settings(
    const toml::node& node, const std::string& path, int line,
    std::vector<common::config_problem>& problems);

class certificate_authenticator final : public core::authenticator {
 public:
  // `rights`: the union of the settings' roles; `next`: what checks tokens.
  certificate_authenticator(certificate_settings settings,
                            std::shared_ptr<const core::grants> rights,
                            std::shared_ptr<const core::authenticator> next);

  void authenticate(const core::auth_request& r, core::auth_done done) const override;
  bool open() const noexcept override { return false; }
  bool owned_client_id(std::string_view client_id) const noexcept override {
    return next_->owned_client_id(client_id);
  }
  std::string revoked(const core::credential& c) const override { return next_->revoked(c); }

 private:
  certificate_settings settings_;
  std::shared_ptr<const core::grants> rights_;
  std::shared_ptr<const core::authenticator> next_;
};

}  // namespace wsagent::auth
