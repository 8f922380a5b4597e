#pragma once
// What a TLS listener is configured with (docs/configuration.md, "TLS"): plain data, no
// OpenSSL, so that the configuration loader can fill it. net/tls_context.hpp turns it into
// an OpenSSL context.

#include <string>
#include <vector>

namespace wsagent::net {

enum class client_certs { none, optional, required };

struct tls_config {
  std::string cert;       // PEM: the certificate, then its chain
  std::string key;        // PEM private key
  std::string client_ca;  // PEM: the CAs client certificates are verified against
  std::string crl;        // PEM: revoked client certificates (checked for the client's own)
  client_certs client_certificates = client_certs::none;
  std::string min_version = "1.2";  // "1.2" or "1.3"
  // TLS 1.2 suites (OpenSSL's cipher list syntax); default: ECDHE with AEAD only.
  std::string ciphers = "ECDHE+AESGCM:ECDHE+CHACHA20";
  // TLS 1.3 suites; default: OpenSSL's (AES-GCM and ChaCha20-Poly1305).
  std::string ciphersuites;
  // ALPN answers; empty: "http/1.1" for a WebSocket listener, "mqtt" for MQTT over TCP.
  std::vector<std::string> alpn;
  std::string ocsp_response;  // DER file stapled for clients that ask (openssl ocsp -respout)
  int handshake_timeout_ms = 10000;
  bool session_tickets = true;  // resumption (TLS 1.3 and 1.2 tickets; a 1.2 session cache)
};

}  // namespace wsagent::net
