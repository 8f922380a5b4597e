// libFuzzer target: the JWT decoder, the JWKS reader and the claims checks (auth/jwt.hpp,
// auth/jwt_authenticator.hpp). The first byte picks what the rest is:
//   0: a token, decoded and verified against an HMAC key and the keys of a fixed JWKS;
//   1: a JWKS document, read, and each key it yields tried on a fixed token;
//   2: a payload, signed here with the HMAC key (so that the claims checks run on anything,
//      as they do for a token a key holder issued), then checked.
// Invariants: nothing crashes or leaks; base64url round-trips; every refusal says why.

#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <openssl/hmac.h>

#include "auth/jwt.hpp"
#include "auth/jwt_authenticator.hpp"

using namespace wsagent::auth;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

const std::string secret = "fuzzing-secret-of-at-least-32-bytes!";

// An EC P-256 key and an Ed25519 key (public halves of throwaway test keys).
constexpr std::string_view fixed_jwks = R"({"keys":[
 {"kty":"EC","crv":"P-256","kid":"ec","alg":"ES256",
  "x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
 {"kty":"OKP","crv":"Ed25519","kid":"ed","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]})";

const jwt_key_store::key_set& keys() {
  static const jwt_key_store::key_set k = [] {
    std::vector<std::string> problems;
    auto set = parse_jwks(fixed_jwks, problems).value();
    std::string error;
    set.push_back(key_from_secret(secret, jwt_alg::HS256, "hs", error).value());
    return set;
  }();
  return k;
}

const jwt_authenticator& authenticator() {
  static const jwt_authenticator a(
      [] {
        jwt_settings s;
        s.issuer = "iss";
        s.audience = "aud";
        s.max_age_s = 3600;
        return s;
      }(),
      std::make_shared<jwt_key_store>(keys()), {}, nullptr,
      [] { return std::int64_t{1700000000000}; });
  return a;
}

std::string hs256(std::string_view input) {
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &n);
  return std::string(reinterpret_cast<char*>(mac), n);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  // base64url round-trips whatever the bytes.
  check(base64url_decode(base64url_encode(rest)) == std::string(rest));
  switch (data[0] % 3) {
    case 0: {
      std::string error;
      auto parts = decode_jwt(rest, error);
      check(parts.has_value() || !error.empty());  // a refusal says why
      if (parts)
        for (const auto& k : keys())
          (void)verify_jwt_signature(k, parts->signing_input, parts->signature);
      auto r = authenticator().check(rest);
      check(r.ok || !r.reason.empty());
      break;
    }
    case 1: {
      std::vector<std::string> problems;
      if (auto set = parse_jwks(rest, problems))
        for (const auto& k : *set)
          (void)verify_jwt_signature(k, "eyJhbGciOiJFUzI1NiJ9.e30", std::string(64, '\1'));
      break;
    }
    default: {
      const std::string input =
          base64url_encode(R"({"alg":"HS256","kid":"hs"})") + "." + base64url_encode(rest);
      const std::string token = input + "." + base64url_encode(hs256(input));
      jwt_claims claims;
      auto r = authenticator().check(token, &claims);
      if (r.ok) check(r.who.rights != nullptr);
      break;
    }
  }
  return 0;
}
