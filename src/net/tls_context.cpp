#include "net/tls_context.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ocsp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <system_error>

#include "common/text.hpp"

namespace wsagent::net {

namespace {

// What a context's callbacks read (the ALPN answers, the stapled OCSP response), owned by
// the context (freed with it: the last connection of a replaced context may still be in
// its handshake).
struct context_data {
  std::string alpn;  // wire form
  std::string ocsp;  // DER
};

void free_context_data(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) {
  delete static_cast<context_data*>(ptr);
}

int data_index() {
  static const int index =
      SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_context_data);
  return index;
}

const context_data* data_of(SSL* ssl) {
  return static_cast<const context_data*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), data_index()));
}

// The first of our names the client offers; no answer (the handshake goes on without ALPN)
// when it offers none of them, as most servers do, rather than failing a client that
// names a protocol loosely.
int select_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  const auto* d = data_of(ssl);
  if (!d || d->alpn.empty()) return SSL_TLSEXT_ERR_NOACK;
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, outlen, reinterpret_cast<const unsigned char*>(d->alpn.data()),
                            static_cast<unsigned>(d->alpn.size()), in,
                            inlen) != OPENSSL_NPN_NEGOTIATED)
    return SSL_TLSEXT_ERR_NOACK;
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

// Staples the OCSP response of the file for a client that asks (status_request).
int staple_ocsp(SSL* ssl, void*) {
  const auto* d = data_of(ssl);
  if (!d || d->ocsp.empty()) return SSL_TLSEXT_ERR_NOACK;
  auto* copy = static_cast<unsigned char*>(OPENSSL_memdup(d->ocsp.data(), d->ocsp.size()));
  if (!copy) return SSL_TLSEXT_ERR_NOACK;
  SSL_set_tlsext_status_ocsp_resp(ssl, copy, static_cast<long>(d->ocsp.size()));
  return SSL_TLSEXT_ERR_OK;
}

std::string read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw tls_error(std::string(what) + " \"" + path + "\": " + std::strerror(errno));
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::string alpn_wire(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) {
    if (n.empty() || n.size() > 255) continue;
    out += static_cast<char>(n.size());
    out += n;
  }
  return out;
}

std::string fingerprint(X509* cert, std::string_view sep = {}) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!X509_digest(cert, EVP_sha256(), md, &n)) return {};
  return common::hex(std::string_view(reinterpret_cast<const char*>(md), n), sep);
}

std::string name_line(X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (!bio) return {};
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<std::size_t>(n > 0 ? n : 0));
  BIO_free(bio);
  return out;
}

std::string asn1_text(const ASN1_STRING* s) {
  unsigned char* utf8 = nullptr;
  const int n = ASN1_STRING_to_UTF8(&utf8, s);
  if (n < 0) return {};
  std::string out(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(n));
  OPENSSL_free(utf8);
  return out;
}

}  // namespace

std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    // "error:0A000086:SSL routines::certificate verify failed": the part after the codes.
    std::string_view line(buf);
    if (auto p = line.rfind(':'); p != std::string_view::npos) line.remove_prefix(p + 1);
    if (!out.empty()) out += "; ";
    out += line;
  }
  return out.empty() ? "unknown error" : out;
}

tls_context::tls_context(tls_config config, std::vector<std::string> alpn)
    : config_(std::move(config)), alpn_wire_(alpn_wire(alpn)) {
  SSL_CTX* ctx = build();
  common::lock lock(mutex_);
  current_ = ctx;
  loaded_ = stamps();
}

tls_context::~tls_context() {
  common::lock lock(mutex_);
  SSL_CTX_free(current_);
}

SSL* tls_context::new_ssl() {
  common::lock lock(mutex_);
  return SSL_new(current_);
}

std::string tls_context::reload() {
  auto now = stamps();
  SSL_CTX* ctx = nullptr;
  try {
    ctx = build();
  } catch (const tls_error& e) {
    common::lock lock(mutex_);
    loaded_ = std::move(now);  // a broken file is not tried again until it changes
    return e.what();
  }
  common::lock lock(mutex_);
  SSL_CTX_free(current_);  // its connections hold references of their own
  current_ = ctx;
  loaded_ = std::move(now);
  return {};
}

bool tls_context::files_changed() const {
  auto now = stamps();
  common::lock lock(mutex_);
  return now.size() != loaded_.size() ||
         !std::equal(now.begin(), now.end(), loaded_.begin(), [](const stamp& a, const stamp& b) {
           return a.time == b.time && a.size == b.size;
         });
}

std::vector<tls_context::stamp> tls_context::stamps() const {
  std::vector<stamp> out;
  for (const auto* path :
       {&config_.cert, &config_.key, &config_.client_ca, &config_.crl, &config_.ocsp_response}) {
    stamp s;
    std::error_code ec;
    if (!path->empty()) {
      s.time = std::filesystem::last_write_time(*path, ec);
      s.size = ec ? 0 : std::filesystem::file_size(*path, ec);
    }
    out.push_back(s);
  }
  return out;
}

std::string tls_context::describe() const {
  common::lock lock(mutex_);
  X509* cert = SSL_CTX_get0_certificate(current_);
  if (!cert) return "no certificate";
  std::string out = "subject " + name_line(X509_get_subject_name(cert));
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio) {
    ASN1_TIME_print(bio, X509_get0_notAfter(cert));
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    out += ", expires " + std::string(data, static_cast<std::size_t>(n > 0 ? n : 0));
    BIO_free(bio);
  }
  return out + ", SHA-256 " + fingerprint(cert, ":");
}

SSL_CTX* tls_context::build() const {
  ERR_clear_error();
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_server_method()),
                                                        SSL_CTX_free);
  if (!ctx) throw tls_error("cannot make a TLS context: " + openssl_errors());
  auto fail = [](const std::string& what) { throw tls_error(what + ": " + openssl_errors()); };

  const int min = config_.min_version == "1.3" ? TLS1_3_VERSION : TLS1_2_VERSION;
  SSL_CTX_set_min_proto_version(ctx.get(), min);
  // Server order for the suites; no renegotiation (a DoS and a history of bugs), no
  // compression (CRIME).
  SSL_CTX_set_options(
      ctx.get(), SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // Idle connections give their record buffers back (most of a TLS connection's memory);
  // a write may be taken in parts and resumed from a buffer that moved (net/tls_stream.hpp).
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                                  SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!config_.ciphers.empty() && !SSL_CTX_set_cipher_list(ctx.get(), config_.ciphers.c_str()))
    fail("tls.ciphers \"" + config_.ciphers + "\"");
  if (!config_.ciphersuites.empty() &&
      !SSL_CTX_set_ciphersuites(ctx.get(), config_.ciphersuites.c_str()))
    fail("tls.ciphersuites \"" + config_.ciphersuites + "\"");

  (void)read_file(config_.cert, "tls.cert");  // a readable file, or a clear message
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), config_.cert.c_str()) != 1)
    fail("tls.cert \"" + config_.cert + "\" is not a PEM certificate (chain)");
  {
    const auto pem = read_file(config_.key, "tls.key");
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())), BIO_free);
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key(
        bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr,
        EVP_PKEY_free);
    if (!key) fail("tls.key \"" + config_.key + "\" is not a PEM private key");
    if (SSL_CTX_use_PrivateKey(ctx.get(), key.get()) != 1 ||
        SSL_CTX_check_private_key(ctx.get()) != 1)
      fail("tls.key \"" + config_.key + "\" does not match tls.cert \"" + config_.cert + "\"");
  }

  if (!config_.client_ca.empty()) {
    (void)read_file(config_.client_ca, "tls.client_ca");
    if (SSL_CTX_load_verify_locations(ctx.get(), config_.client_ca.c_str(), nullptr) != 1)
      fail("tls.client_ca \"" + config_.client_ca + "\" is not a PEM certificate file");
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(config_.client_ca.c_str());
    if (!names) fail("tls.client_ca \"" + config_.client_ca + "\" names no CA");
    SSL_CTX_set_client_CA_list(ctx.get(), names);
  }
  if (!config_.crl.empty()) {
    (void)read_file(config_.crl, "tls.crl");
    X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
    X509_LOOKUP* lookup = X509_STORE_add_lookup(store, X509_LOOKUP_file());
    if (!lookup || X509_load_crl_file(lookup, config_.crl.c_str(), X509_FILETYPE_PEM) <= 0)
      fail("tls.crl \"" + config_.crl + "\" is not a PEM CRL");
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);  // the client's own certificate
  }
  int verify = SSL_VERIFY_NONE;
  if (config_.client_certificates == client_certs::optional) verify = SSL_VERIFY_PEER;
  if (config_.client_certificates == client_certs::required)
    verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  SSL_CTX_set_verify(ctx.get(), verify, nullptr);

  // Resumption: tickets (stateless), and a server-side cache for TLS 1.2 clients without
  // them; the id context makes resumption work with client certificates.
  static const unsigned char sid[] = "wsagent";
  SSL_CTX_set_session_id_context(ctx.get(), sid, sizeof sid - 1);
  if (config_.session_tickets) {
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx.get(), 20000);
  } else {
    SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx.get(), 0);
  }

  auto data = std::make_unique<context_data>();
  data->alpn = alpn_wire_;
  if (!config_.ocsp_response.empty()) {
    data->ocsp = read_file(config_.ocsp_response, "tls.ocsp_response");
    const auto* p = reinterpret_cast<const unsigned char*>(data->ocsp.data());
    OCSP_RESPONSE* resp = d2i_OCSP_RESPONSE(nullptr, &p, static_cast<long>(data->ocsp.size()));
    if (!resp)
      fail("tls.ocsp_response \"" + config_.ocsp_response + "\" is not a DER OCSP response");
    OCSP_RESPONSE_free(resp);
    // SSL_CTX_set_tlsext_status_cb, without the macro's C cast.
    SSL_CTX_callback_ctrl(ctx.get(), SSL_CTRL_SET_TLSEXT_STATUS_REQ_CB,
                          reinterpret_cast<void (*)()>(&staple_ocsp));
  }
  if (!SSL_CTX_set_ex_data(ctx.get(), data_index(), data.get()))
    fail("cannot attach the context's data");
  data.release();  // the context owns it now (free_context_data)
  SSL_CTX_set_alpn_select_cb(ctx.get(), select_alpn, nullptr);
  ERR_clear_error();
  return ctx.release();
}

core::certificate_identity certificate_identity_of(X509* cert) {
  core::certificate_identity id;
  if (!cert) return id;
  X509_NAME* subject = X509_get_subject_name(cert);
  id.subject = name_line(subject);
  const int cn = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (cn >= 0)
    id.common_name = asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, cn)));
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans) {
    for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
      const GENERAL_NAME* g = sk_GENERAL_NAME_value(sans, i);
      if (g->type == GEN_DNS) id.dns.push_back(asn1_text(g->d.dNSName));
      if (g->type == GEN_URI) id.uri.push_back(asn1_text(g->d.uniformResourceIdentifier));
      if (g->type == GEN_EMAIL) id.email.push_back(asn1_text(g->d.rfc822Name));
    }
    GENERAL_NAMES_free(sans);
  }
  id.fingerprint = fingerprint(cert);
  return id;
}

}  // namespace wsagent::net
