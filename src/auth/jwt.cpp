#include "auth/jwt.hpp"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <simdjson.h>

#include <algorithm>
#include <array>

namespace wsagent::auth {

namespace {

struct alg_info {
  jwt_alg alg;
  const char* name;
};
constexpr std::array<alg_info, 12> algs{{
    {jwt_alg::HS256, "HS256"},
    {jwt_alg::HS384, "HS384"},
    {jwt_alg::HS512, "HS512"},
    {jwt_alg::RS256, "RS256"},
    {jwt_alg::RS384, "RS384"},
    {jwt_alg::RS512, "RS512"},
    {jwt_alg::PS256, "PS256"},
    {jwt_alg::PS384, "PS384"},
    {jwt_alg::PS512, "PS512"},
    {jwt_alg::ES256, "ES256"},
    {jwt_alg::ES384, "ES384"},
    {jwt_alg::EdDSA, "EdDSA"},
}};

const EVP_MD* digest_of(jwt_alg a) {
  switch (a) {
    case jwt_alg::HS256:
    case jwt_alg::RS256:
    case jwt_alg::PS256:
    case jwt_alg::ES256:
      return EVP_sha256();
    case jwt_alg::HS384:
    case jwt_alg::RS384:
    case jwt_alg::PS384:
    case jwt_alg::ES384:
      return EVP_sha384();
    case jwt_alg::HS512:
    case jwt_alg::RS512:
    case jwt_alg::PS512:
      return EVP_sha512();
    case jwt_alg::EdDSA:
      return nullptr;  // Ed25519 hashes by itself
  }
  return nullptr;
}

bool is_rsa(jwt_alg a) {
  return a >= jwt_alg::RS256 && a <= jwt_alg::PS512;
}
bool is_pss(jwt_alg a) {
  return a >= jwt_alg::PS256 && a <= jwt_alg::PS512;
}

using pkey_ptr = std::shared_ptr<EVP_PKEY>;
pkey_ptr own(EVP_PKEY* p) {
  return pkey_ptr(p, EVP_PKEY_free);
}

// "" when `key` can be used with `alg`, else why not.
std::string fit(const EVP_PKEY* key, jwt_alg alg) {
  if (is_hmac(alg)) return "an HMAC algorithm takes a secret, not a key pair";
  if (is_rsa(alg)) {
    if (!EVP_PKEY_is_a(key, "RSA") && !(is_pss(alg) && EVP_PKEY_is_a(key, "RSA-PSS")))
      return std::string(name_of(alg)) + " needs an RSA key";
    if (EVP_PKEY_get_bits(key) < 2048) return "an RSA key of fewer than 2048 bits";
    return {};
  }
  if (alg == jwt_alg::ES256 || alg == jwt_alg::ES384) {
    if (!EVP_PKEY_is_a(key, "EC")) return std::string(name_of(alg)) + " needs an EC key";
    char group[64] = {};
    std::size_t n = 0;
    if (!EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &n))
      return "an EC key without a named curve";
    const std::string_view g(group, n);
    const bool p256 = g == "prime256v1" || g == "P-256";
    const bool p384 = g == "secp384r1" || g == "P-384";
    if (alg == jwt_alg::ES256 && !p256) return "ES256 needs a P-256 key";
    if (alg == jwt_alg::ES384 && !p384) return "ES384 needs a P-384 key";
    return {};
  }
  if (!EVP_PKEY_is_a(key, "ED25519") && !EVP_PKEY_is_a(key, "ED448"))
    return "EdDSA needs an Ed25519 or Ed448 key";
  return {};
}

std::optional<jwt_key> make_key(pkey_ptr pkey, jwt_alg alg, std::string kid, std::string& error) {
  if (!pkey) {
    error = "not a key";
    return std::nullopt;
  }
  if (auto why = fit(pkey.get(), alg); !why.empty()) {
    error = why;
    return std::nullopt;
  }
  jwt_key k;
  k.kid = std::move(kid);
  k.alg = alg;
  k.pkey = std::move(pkey);
  return k;
}

// Verifies with EVP_DigestVerify (RSA, RSA-PSS, ECDSA's DER form, EdDSA).
bool digest_verify(const jwt_key& key, std::string_view input, const unsigned char* sig,
                   std::size_t sig_len) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx) return false;
  EVP_PKEY_CTX* pctx = nullptr;
  if (EVP_DigestVerifyInit(ctx.get(), &pctx, digest_of(key.alg), nullptr, key.pkey.get()) != 1)
    return false;
  if (is_pss(key.alg)) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, digest_of(key.alg)) != 1)
      return false;
  } else if (is_rsa(key.alg)) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) return false;
  }
  const int r = EVP_DigestVerify(
      ctx.get(), sig, sig_len, reinterpret_cast<const unsigned char*>(input.data()), input.size());
  return r == 1;
}

// ECDSA: JOSE sends r and s side by side, each the curve's size (RFC 7518 §3.4); OpenSSL
// verifies the DER form.
bool verify_ecdsa(const jwt_key& key, std::string_view input, std::string_view signature) {
  const std::size_t half = key.alg == jwt_alg::ES256 ? 32 : 48;
  if (signature.size() != 2 * half) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(signature.data());
  auto zero = [](const unsigned char* b, std::size_t n) {
    return std::all_of(b, b + n, [](unsigned char c) { return c == 0; });
  };
  if (zero(p, half) || zero(p + half, half)) return false;  // r = 0 or s = 0: never valid
  ECDSA_SIG* sig = ECDSA_SIG_new();
  if (!sig) return false;
  BIGNUM* r = BN_bin2bn(p, static_cast<int>(half), nullptr);
  BIGNUM* s = BN_bin2bn(p + half, static_cast<int>(half), nullptr);
  if (!r || !s || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return false;
  }
  unsigned char* der = nullptr;
  const int n = i2d_ECDSA_SIG(sig, &der);
  ECDSA_SIG_free(sig);
  if (n <= 0) return false;
  const bool ok = digest_verify(key, input, der, static_cast<std::size_t>(n));
  OPENSSL_free(der);
  return ok;
}

constexpr signed char b64url_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return static_cast<signed char>(c - 'A');
  if (c >= 'a' && c <= 'z') return static_cast<signed char>(c - 'a' + 26);
  if (c >= '0' && c <= '9') return static_cast<signed char>(c - '0' + 52);
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

// A JSON string member of `obj`, or nullopt when absent or not a string.
std::optional<std::string_view> string_member(simdjson::dom::object obj, std::string_view name) {
  std::string_view v;
  if (obj[name].get(v) != simdjson::SUCCESS) return std::nullopt;
  return v;
}

// A JWK's base64url member as bytes.
std::optional<std::string> bytes_member(simdjson::dom::object obj, std::string_view name) {
  auto v = string_member(obj, name);
  if (!v) return std::nullopt;
  return base64url_decode(*v);
}

pkey_ptr rsa_from_jwk(const std::string& n, const std::string& e) {
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(),
                                                                      OSSL_PARAM_BLD_free);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn_n(
      BN_bin2bn(reinterpret_cast<const unsigned char*>(n.data()), static_cast<int>(n.size()),
                nullptr),
      BN_free);
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn_e(
      BN_bin2bn(reinterpret_cast<const unsigned char*>(e.data()), static_cast<int>(e.size()),
                nullptr),
      BN_free);
  if (!bld || !bn_n || !bn_e ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) ||
      !OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()))
    return nullptr;
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(OSSL_PARAM_BLD_to_param(bld.get()),
                                                                 OSSL_PARAM_free);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr), EVP_PKEY_CTX_free);
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
    return nullptr;
  return own(key);
}

pkey_ptr ec_from_jwk(std::string_view crv, const std::string& x, const std::string& y) {
  const char* group = crv == "P-256" ? "prime256v1" : crv == "P-384" ? "secp384r1" : nullptr;
  const std::size_t size = crv == "P-256" ? 32 : 48;
  if (!group || x.empty() || y.empty() || x.size() > size || y.size() > size) return nullptr;
  // RFC 7518 §6.2.1.2 wants x and y at the curve's full size; some issuers (PyJWT 2.6, for
  // one) drop leading zero bytes, so shorter ones are taken, left-padded.
  std::string point = "\x04";  // uncompressed
  point.append(size - x.size(), '\0').append(x).append(size - y.size(), '\0').append(y);
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(),
                                                                      OSSL_PARAM_BLD_free);
  if (!bld || !OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) ||
      !OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                        point.size()))
    return nullptr;
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(OSSL_PARAM_BLD_to_param(bld.get()),
                                                                 OSSL_PARAM_free);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr), EVP_PKEY_CTX_free);
  EVP_PKEY* key = nullptr;
  if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1)
    return nullptr;
  return own(key);
}

// One JWK; nullopt with `why` when it cannot be used.
std::optional<jwt_key> key_of_jwk(simdjson::dom::object jwk, std::string& why) {
  const auto kty = string_member(jwk, "kty");
  const std::string kid(string_member(jwk, "kid").value_or(""));
  if (auto use = string_member(jwk, "use"); use && *use != "sig") {
    why = "\"use\" is not \"sig\"";
    return std::nullopt;
  }
  std::optional<jwt_alg> alg;
  if (auto a = string_member(jwk, "alg")) {
    alg = jwt_alg_of(*a);
    if (!alg) {
      why = "unknown alg \"" + std::string(*a) + "\"";
      return std::nullopt;
    }
  }
  if (!kty) {
    why = "no kty";
    return std::nullopt;
  }
  if (*kty == "oct") {
    auto k = bytes_member(jwk, "k");
    if (!alg || !is_hmac(*alg) || !k) {
      why = "an oct key needs an HMAC alg and k";
      return std::nullopt;
    }
    return key_from_secret(std::move(*k), *alg, kid, why);
  }
  if (*kty == "RSA") {
    auto n = bytes_member(jwk, "n");
    auto e = bytes_member(jwk, "e");
    if (!alg || !n || !e) {
      why = "an RSA key needs alg (RS256…PS512), n and e";
      return std::nullopt;
    }
    return make_key(rsa_from_jwk(*n, *e), *alg, kid, why);
  }
  if (*kty == "EC") {
    auto crv = string_member(jwk, "crv");
    auto x = bytes_member(jwk, "x");
    auto y = bytes_member(jwk, "y");
    if (!crv || !x || !y) {
      why = "an EC key needs crv, x and y";
      return std::nullopt;
    }
    const jwt_alg implied = *crv == "P-384" ? jwt_alg::ES384 : jwt_alg::ES256;
    return make_key(ec_from_jwk(*crv, *x, *y), alg.value_or(implied), kid, why);
  }
  if (*kty == "OKP") {
    auto crv = string_member(jwk, "crv");
    auto x = bytes_member(jwk, "x");
    const int type = crv && *crv == "Ed25519" ? EVP_PKEY_ED25519
                     : crv && *crv == "Ed448" ? EVP_PKEY_ED448
                                              : 0;
    if (!type || !x) {
      why = "an OKP key needs crv Ed25519 or Ed448, and x";
      return std::nullopt;
    }
    EVP_PKEY* k = EVP_PKEY_new_raw_public_key(
        type, nullptr, reinterpret_cast<const unsigned char*>(x->data()), x->size());
    return make_key(own(k), alg.value_or(jwt_alg::EdDSA), kid, why);
  }
  why = "unknown kty \"" + std::string(*kty) + "\"";
  return std::nullopt;
}

}  // namespace

std::optional<jwt_alg> jwt_alg_of(std::string_view name) noexcept {
  for (const auto& a : algs)
    if (name == a.name) return a.alg;
  return std::nullopt;
}

const char* name_of(jwt_alg a) noexcept {
  return algs[static_cast<std::size_t>(a)].name;
}

bool is_hmac(jwt_alg a) noexcept {
  return a <= jwt_alg::HS512;
}

std::optional<std::string> base64url_decode(std::string_view text) {
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  out.reserve(text.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : text) {
    const auto v = b64url_value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  // Canonical: the bits left over are zero (one text per byte string).
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return std::nullopt;
  return out;
}

std::string base64url_encode(std::string_view bytes) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((bytes.size() * 4 + 2) / 3);
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : bytes) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(alphabet[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(alphabet[(acc << (6 - bits)) & 63]);
  return out;
}

bool looks_like_jwt(std::string_view token) noexcept {
  if (token.size() < 5 || !token.starts_with("eyJ")) return false;  // base64url of "{\""
  return std::count(token.begin(), token.end(), '.') == 2;
}

std::optional<jwt_parts> decode_jwt(std::string_view token, std::string& error) {
  if (token.size() > max_jwt_size) {
    error = "token too large";
    return std::nullopt;
  }
  const auto first = token.find('.');
  const auto second = first == std::string_view::npos ? first : token.find('.', first + 1);
  if (second == std::string_view::npos || token.find('.', second + 1) != std::string_view::npos) {
    error = "malformed token (not header.payload.signature)";
    return std::nullopt;
  }
  const auto header_text = token.substr(0, first);
  if (header_text.size() > (max_jwt_header * 4 + 2) / 3) {
    error = "header too large";
    return std::nullopt;
  }
  auto header = base64url_decode(header_text);
  auto payload = base64url_decode(token.substr(first + 1, second - first - 1));
  auto signature = base64url_decode(token.substr(second + 1));
  if (!header || !payload || !signature) {
    error = "bad base64url";
    return std::nullopt;
  }
  thread_local simdjson::dom::parser parser;
  simdjson::dom::object h;
  if (parser.parse(*header).get(h) != simdjson::SUCCESS) {
    error = "header is not a JSON object";
    return std::nullopt;
  }
  jwt_parts parts;
  auto alg = string_member(h, "alg");
  if (!alg) {
    error = "no alg in the header";
    return std::nullopt;
  }
  parts.alg = std::string(*alg);
  if (auto kid = string_member(h, "kid")) parts.kid = std::string(*kid);
  // Critical extensions we do not implement make the token unusable (RFC 7515 §4.1.11).
  if (simdjson::dom::element crit; h["crit"].get(crit) == simdjson::SUCCESS) {
    error = "unsupported crit header";
    return std::nullopt;
  }
  parts.payload = std::move(*payload);
  parts.signature = std::move(*signature);
  parts.signing_input = token.substr(0, second);
  return parts;
}

bool verify_jwt_signature(const jwt_key& key, std::string_view input, std::string_view signature) {
  if (is_hmac(key.alg)) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (key.secret.empty() ||
        !HMAC(digest_of(key.alg), key.secret.data(), static_cast<int>(key.secret.size()),
              reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &n))
      return false;
    // Constant time: how much of a forged MAC is right must not show in the answer's time.
    return signature.size() == n && CRYPTO_memcmp(mac, signature.data(), n) == 0;
  }
  if (!key.pkey) return false;
  bool ok = false;
  if (key.alg == jwt_alg::ES256 || key.alg == jwt_alg::ES384)
    ok = verify_ecdsa(key, input, signature);
  else
    ok = digest_verify(key, input, reinterpret_cast<const unsigned char*>(signature.data()),
                       signature.size());
  ERR_clear_error();
  return ok;
}

std::optional<std::vector<jwt_key>> parse_jwks(std::string_view json,
                                               std::vector<std::string>& problems) {
  simdjson::dom::parser parser;
  simdjson::dom::object root;
  simdjson::dom::array keys;
  if (parser.parse(json.data(), json.size()).get(root) != simdjson::SUCCESS ||
      root["keys"].get(keys) != simdjson::SUCCESS)
    return std::nullopt;
  std::vector<jwt_key> out;
  std::size_t index = 0;
  for (auto item : keys) {
    simdjson::dom::object jwk;
    std::string why;
    std::string kid;
    if (item.get(jwk) != simdjson::SUCCESS) {
      why = "not an object";
    } else if (auto k = key_of_jwk(jwk, why)) {
      out.push_back(std::move(*k));
      ++index;
      continue;
    } else {
      kid = std::string(string_member(jwk, "kid").value_or(""));
    }
    problems.push_back("key " + std::to_string(index) + (kid.empty() ? "" : " (kid " + kid + ")") +
                       ": " + why);
    ++index;
  }
  ERR_clear_error();
  return out;
}

std::optional<jwt_key> key_from_pem(std::string_view pem, jwt_alg alg, std::string kid,
                                    std::string& error) {
  auto read = [&](auto reader) -> EVP_PKEY* {
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
    return bio ? reader(bio.get()) : nullptr;
  };
  EVP_PKEY* key = read([](BIO* b) { return PEM_read_bio_PUBKEY(b, nullptr, nullptr, nullptr); });
  if (!key) {
    key = read([](BIO* b) -> EVP_PKEY* {
      X509* cert = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
      if (!cert) return nullptr;
      EVP_PKEY* k = X509_get_pubkey(cert);
      X509_free(cert);
      return k;
    });
  }
  if (!key)
    key = read([](BIO* b) { return PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr); });
  ERR_clear_error();
  if (!key) {
    error = "not a PEM public key, certificate or private key";
    return std::nullopt;
  }
  return make_key(own(key), alg, std::move(kid), error);
}

std::optional<jwt_key> key_from_secret(std::string secret, jwt_alg alg, std::string kid,
                                       std::string& error) {
  if (!is_hmac(alg)) {
    error = std::string(name_of(alg)) + " takes a key pair, not a secret";
    return std::nullopt;
  }
  const auto need = static_cast<std::size_t>(EVP_MD_get_size(digest_of(alg)));
  if (secret.size() < need) {
    error = std::string(name_of(alg)) + " needs a secret of at least " + std::to_string(need) +
            " bytes";
    return std::nullopt;
  }
  jwt_key k;
  k.kid = std::move(kid);
  k.alg = alg;
  k.secret = std::move(secret);
  return k;
}

}  // namespace wsagent::auth
