#pragma once
// JSON Web Tokens (RFC 7519) signed as JWS compact serialisations (RFC 7515), verified with
// OpenSSL 3's EVP interface.
//
// Written here, not taken from a library: Debian's libjwt 1.10 takes the algorithm from the
// token (an HS256 token "signed" with an RSA public key as the secret passes, and so does
// `alg: none` when no key is given) and checks no claims; cpp-jwt 1.4 is safe only with
// exactly one allowed algorithm and compares HMAC signatures in non-constant time.
//
// The rules: every key is pinned to one algorithm (a token naming another is refused, so no
// key can be used with an algorithm it was not meant for); `none` is never accepted; HMAC
// signatures are compared in constant time; `kid` selects the key; sizes are bounded before
// anything is decoded. The decoder (decode_jwt) and the JWKS reader (parse_jwks) take
// untrusted input and have a libFuzzer target (fuzz/jwt_fuzz.cpp).

#include <openssl/evp.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsagent::auth {

enum class jwt_alg : std::uint8_t {
  HS256,
  HS384,
  HS512,  // HMAC with SHA-2
  RS256,
  RS384,
  RS512,  // RSASSA-PKCS1-v1_5
  PS256,
  PS384,
  PS512,  // RSASSA-PSS
  ES256,
  ES384,  // ECDSA on P-256, P-384
  EdDSA,  // Ed25519 (and Ed448)
};

std::optional<jwt_alg> jwt_alg_of(std::string_view name) noexcept;
const char* name_of(jwt_alg a) noexcept;
bool is_hmac(jwt_alg a) noexcept;

// One verification key, pinned to one algorithm.
struct jwt_key {
  std::string kid;  // "" when it has none: it then verifies tokens without a kid
  jwt_alg alg = jwt_alg::HS256;
  std::shared_ptr<EVP_PKEY> pkey;  // the public key (or private: only its public half is used)
  std::string secret;              // an HMAC key's bytes
};

// Limits on what is decoded at all (a token over them is refused unread).
inline constexpr std::size_t max_jwt_size = 8192;
inline constexpr std::size_t max_jwt_header = 1024;  // decoded header bytes

// A token split and decoded, not yet verified.
struct jwt_parts {
  std::string alg;                 // the header's "alg"
  std::string kid;                 // the header's "kid" ("" none)
  std::string payload;             // decoded payload JSON
  std::string signature;           // decoded signature bytes
  std::string_view signing_input;  // "header.payload" as sent (a view of the token)
};

// True when `token` has the shape of a JWS compact serialisation (three base64url parts
// whose header begins with '{'): such a token is checked as a JWT, any other as a static one.
bool looks_like_jwt(std::string_view token) noexcept;

// Splits and decodes `token`; nullopt with `error` set ("malformed token", "bad base64",
// "header too large", "header is not a JSON object", "no alg", …).
std::optional<jwt_parts> decode_jwt(std::string_view token, std::string& error);

// Whether `signature` is `key`'s over `input`. The caller has checked that the token's alg
// is the key's.
bool verify_jwt_signature(const jwt_key& key, std::string_view input, std::string_view signature);

// The keys of a JWKS document (RFC 7517). A key that cannot be used (no alg for an RSA or
// octet key, an unknown kty or curve, "use" other than "sig", a weak RSA key) is left out and
// its problem added to `problems`; nullopt when the document itself is not a JWKS.
std::optional<std::vector<jwt_key>> parse_jwks(std::string_view json,
                                               std::vector<std::string>& problems);

// A key from a PEM file's text (a public key, a certificate, or a private key), pinned to
// `alg`; nullopt with `error` when the text is no such key or not one for `alg`.
std::optional<jwt_key> key_from_pem(std::string_view pem, jwt_alg alg, std::string kid,
                                    std::string& error);
// An HMAC key; nullopt with `error` when shorter than its hash (RFC 7518 §3.2).
std::optional<jwt_key> key_from_secret(std::string secret, jwt_alg alg, std::string kid,
                                       std::string& error);

// base64url without padding (RFC 7515 §2); nullopt on any other character or a bad length.
std::optional<std::string> base64url_decode(std::string_view text);
std::string base64url_encode(std::string_view bytes);

}  // namespace wsagent::auth
