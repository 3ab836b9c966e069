#include "daemon/net/tls.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <poll.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "corral/status_macros.h"
#include "daemon/net/wait.h"

namespace corral::net {
namespace {

constexpr int kCaDays = 5 * 365;
constexpr absl::Duration kLeafLife = absl::Hours(7 * 24);
// A cached certificate this close to its end is made again.
constexpr absl::Duration kLeafRenew = absl::Hours(24);
// A clock a little behind the sandbox's does not make a new certificate
// "not yet valid".
constexpr long kBackdateSeconds = 3600;
constexpr size_t kMaxCaFile = 8 << 20;
constexpr unsigned char kAlpnHttp11[] = "\x08http/1.1";

template <typename T, void (*Free)(T*)>
struct Freer {
  void operator()(T* p) const { Free(p); }
};
using Key = std::unique_ptr<EVP_PKEY, Freer<EVP_PKEY, EVP_PKEY_free>>;
using Cert = std::unique_ptr<X509, Freer<X509, X509_free>>;
using Bio = std::unique_ptr<BIO, Freer<BIO, BIO_free_all>>;

absl::Status SslFailure(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", OpenSslError()));
}

Key NewKey() { return Key(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")); }

bool AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* extension =
      X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (extension == nullptr) return false;
  const bool added = X509_add_ext(cert, extension, -1) == 1;
  X509_EXTENSION_free(extension);
  return added;
}

// A certificate with a random serial, the subject's common name `name`,
// valid from an hour ago for `life`; `issuer` null: self-issued.
absl::StatusOr<Cert> NewCertificate(const std::string& name, EVP_PKEY* key,
                                    X509* issuer, absl::Duration life) {
  Cert cert(X509_new());
  if (!cert || X509_set_version(cert.get(), X509_VERSION_3) != 1) {
    return SslFailure("X509_new");
  }
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof(serial)) != 1) return SslFailure("RAND_bytes");
  serial[0] &= 0x7f;  // positive
  std::unique_ptr<BIGNUM, Freer<BIGNUM, BN_free>> bn(
      BN_bin2bn(serial, sizeof(serial), nullptr));
  X509_NAME* subject = X509_get_subject_name(cert.get());
  const auto* o = reinterpret_cast<const unsigned char*>("Corral");
  const auto* cn = reinterpret_cast<const unsigned char*>(name.c_str());
  if (!bn ||
      BN_to_ASN1_INTEGER(bn.get(), X509_get_serialNumber(cert.get())) ==
          nullptr ||
      X509_NAME_add_entry_by_txt(subject, "O", MBSTRING_ASC, o, -1, -1, 0) !=
          1 ||
      X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_UTF8, cn, -1, -1, 0) !=
          1 ||
      X509_set_issuer_name(cert.get(), issuer != nullptr
                                           ? X509_get_subject_name(issuer)
                                           : subject) != 1 ||
      X509_gmtime_adj(X509_getm_notBefore(cert.get()), -kBackdateSeconds) ==
          nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()),
                      absl::ToInt64Seconds(life)) == nullptr ||
      X509_set_pubkey(cert.get(), key) != 1) {
    return SslFailure("making a certificate");
  }
  return cert;
}

absl::StatusOr<std::string> Pem(X509* cert) {
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) {
    return SslFailure("PEM_write_bio_X509");
  }
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(size));
}

// nameConstraints: the DNS names of the patterns, and no IP address.
std::string NameConstraints(const std::vector<std::string>& patterns) {
  std::string value = "critical";
  for (const auto& pattern : patterns) {
    // "*.example.com" permits every name below example.com ("."-prefixed
    // subtree); "api.example.com" that name (and, by RFC 5280, below it).
    absl::StrAppend(
        &value, ",permitted;DNS:",
        absl::StartsWith(pattern, "*.") ? pattern.substr(1) : pattern);
  }
  absl::StrAppend(&value, ",excluded;IP:0.0.0.0/0.0.0.0,excluded;IP:::/::");
  return value;
}

absl::StatusOr<std::string> ReadCaFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("cannot read ", path, ": ", std::strerror(errno)));
  }
  std::string text(kMaxCaFile + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxCaFile) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": more than ", kMaxCaFile >> 20, " MiB"));
  }
  return text;
}

int SelectHttp11(SSL*, const unsigned char** out, unsigned char* out_size,
                 const unsigned char* offered, unsigned int offered_size,
                 void*) {
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, out_size, kAlpnHttp11,
                            sizeof(kAlpnHttp11) - 1, offered,
                            offered_size) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_NOACK;  // no ALPN: HTTP/1.1 anyway
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// What both contexts share: TLS 1.2 and up, no renegotiation, no session
// resumption (a session must not carry a certificate across names), a
// peer that closes without close_notify ends its stream normally.
bool Common(SSL_CTX* ctx) {
  SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF |
                               SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
  SSL_CTX_set_mode(
      ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  return SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1;
}

}  // namespace

std::string OpenSslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "unknown error";
  char text[256];
  ERR_error_string_n(code, text, sizeof(text));
  return text;
}

absl::StatusOr<SandboxCa> MakeSandboxCa(
    absl::string_view id, const std::vector<std::string>& host_patterns) {
  if (host_patterns.empty()) {
    return absl::InvalidArgumentError("a sandbox CA needs at least one host");
  }
  Key key = NewKey();
  if (!key) return SslFailure("EC key");
  ASSIGN_OR_RETURN(
      Cert cert,
      NewCertificate(absl::StrCat("Corral secrets CA of sandbox ", id),
                     key.get(), nullptr, absl::Hours(24 * kCaDays)));
  if (!AddExtension(cert.get(), cert.get(), NID_basic_constraints,
                    "critical,CA:TRUE,pathlen:0") ||
      !AddExtension(cert.get(), cert.get(), NID_key_usage,
                    "critical,keyCertSign,cRLSign") ||
      !AddExtension(cert.get(), cert.get(), NID_subject_key_identifier,
                    "hash") ||
      !AddExtension(cert.get(), cert.get(), NID_name_constraints,
                    NameConstraints(host_patterns))) {
    return SslFailure("CA extensions");
  }
  if (X509_sign(cert.get(), key.get(), EVP_sha256()) == 0) {
    return SslFailure("signing the CA");
  }
  SandboxCa ca;
  ASSIGN_OR_RETURN(ca.certificate_pem, Pem(cert.get()));
  Bio bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr,
                                       0, nullptr, nullptr) != 1) {
    return SslFailure("PEM_write_bio_PrivateKey");
  }
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  ca.key_pem.assign(data, static_cast<size_t>(size));
  return ca;
}

absl::StatusOr<std::string> SandboxTrustBundle(
    const SandboxCa& ca, const std::string& system_bundle,
    const std::string& upstream_ca_file) {
  std::string bundle;
  for (const std::string& path : {system_bundle, upstream_ca_file}) {
    if (path.empty()) continue;
    auto text = ReadCaFile(path);
    if (absl::IsNotFound(text.status()) && path == system_bundle) continue;
    if (!text.ok()) return text.status();
    bundle += *text;
    if (!bundle.empty() && bundle.back() != '\n') bundle += '\n';
  }
  return bundle + ca.certificate_pem;
}

// --- CertificateIssuer ---

absl::StatusOr<std::shared_ptr<CertificateIssuer>> CertificateIssuer::Load(
    const SandboxCa& ca) {
  std::shared_ptr<CertificateIssuer> issuer(new CertificateIssuer());
  Bio cert_bio(BIO_new_mem_buf(ca.certificate_pem.data(),
                               static_cast<int>(ca.certificate_pem.size())));
  Bio key_bio(
      BIO_new_mem_buf(ca.key_pem.data(), static_cast<int>(ca.key_pem.size())));
  if (!cert_bio || !key_bio) return SslFailure("BIO_new_mem_buf");
  issuer->ca_ = PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr);
  issuer->ca_key_ =
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr);
  if (issuer->ca_ == nullptr || issuer->ca_key_ == nullptr ||
      X509_check_private_key(issuer->ca_, issuer->ca_key_) != 1) {
    return SslFailure("the sandbox's CA");
  }
  issuer->leaf_key_ = NewKey().release();
  if (issuer->leaf_key_ == nullptr) return SslFailure("EC key");
  return issuer;
}

CertificateIssuer::~CertificateIssuer() {
  for (auto& [name, cached] : leaves_) X509_free(cached.certificate);
  X509_free(ca_);
  EVP_PKEY_free(ca_key_);
  EVP_PKEY_free(leaf_key_);
}

absl::StatusOr<X509*> CertificateIssuer::Leaf(const std::string& name) {
  const absl::Time now = absl::Now();
  auto it = leaves_.find(name);
  if (it != leaves_.end() && now < it->second.not_after - kLeafRenew) {
    return it->second.certificate;
  }
  ASSIGN_OR_RETURN(Cert cert, NewCertificate(name, leaf_key_, ca_, kLeafLife));
  if (!AddExtension(cert.get(), ca_, NID_basic_constraints,
                    "critical,CA:FALSE") ||
      !AddExtension(cert.get(), ca_, NID_key_usage,
                    "critical,digitalSignature") ||
      !AddExtension(cert.get(), ca_, NID_ext_key_usage, "serverAuth") ||
      !AddExtension(cert.get(), ca_, NID_subject_alt_name,
                    absl::StrCat("DNS:", name)) ||
      !AddExtension(cert.get(), ca_, NID_authority_key_identifier,
                    "keyid:always")) {
    return SslFailure("certificate extensions");
  }
  if (X509_sign(cert.get(), ca_key_, EVP_sha256()) == 0) {
    return SslFailure("signing a certificate");
  }
  if (it != leaves_.end()) {
    X509_free(it->second.certificate);
    leaves_.erase(it);
  }
  X509* leaf = cert.release();
  leaves_[name] = Cached{leaf, now + kLeafLife};
  return leaf;
}

absl::Status CertificateIssuer::UseFor(SSL* ssl, const std::string& name) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(X509 * leaf, Leaf(name));
  // SSL_use_certificate takes a reference of its own.
  if (SSL_use_certificate(ssl, leaf) != 1 ||
      SSL_use_PrivateKey(ssl, leaf_key_) != 1) {
    return SslFailure("setting the certificate");
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> CertificateIssuer::CertificatePem(
    const std::string& name) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(X509 * leaf, Leaf(name));
  return Pem(leaf);
}

// --- TlsContexts ---

absl::StatusOr<std::unique_ptr<TlsContexts>> TlsContexts::Create(
    const std::string& upstream_ca_file) {
  std::unique_ptr<TlsContexts> contexts(new TlsContexts());
  contexts->server_ = SSL_CTX_new(TLS_server_method());
  contexts->client_ = SSL_CTX_new(TLS_client_method());
  if (contexts->server_ == nullptr || contexts->client_ == nullptr ||
      !Common(contexts->server_) || !Common(contexts->client_)) {
    return SslFailure("SSL_CTX_new");
  }
  SSL_CTX_set_num_tickets(contexts->server_, 0);
  SSL_CTX_set_alpn_select_cb(contexts->server_, SelectHttp11, nullptr);
  SSL_CTX_set_verify(contexts->client_, SSL_VERIFY_PEER, nullptr);
  if (SSL_CTX_set_default_verify_paths(contexts->client_) != 1 ||
      SSL_CTX_set_alpn_protos(contexts->client_, kAlpnHttp11,
                              sizeof(kAlpnHttp11) - 1) != 0) {
    return SslFailure("the system's CA store");
  }
  if (!upstream_ca_file.empty()) {
    ASSIGN_OR_RETURN(std::string text, ReadCaFile(upstream_ca_file));
    if (SSL_CTX_load_verify_locations(contexts->client_,
                                      upstream_ca_file.c_str(), nullptr) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("network.upstream_ca_file ", upstream_ca_file,
                       ": no certificate read: ", OpenSslError()));
    }
  }
  return contexts;
}

TlsContexts::~TlsContexts() {
  SSL_CTX_free(server_);
  SSL_CTX_free(client_);
}

absl::StatusOr<SSL*> TlsContexts::ToSandbox(int fd,
                                            absl::string_view first) const {
  SSL* ssl = SSL_new(server_);
  if (ssl == nullptr) return SslFailure("SSL_new");
  // The bytes read already come first: a buffering BIO holds them in
  // front of the socket.
  BIO* socket_in = BIO_new_socket(fd, BIO_NOCLOSE);
  BIO* buffer = BIO_new(BIO_f_buffer());
  BIO* socket_out = BIO_new_socket(fd, BIO_NOCLOSE);
  if (socket_in == nullptr || buffer == nullptr || socket_out == nullptr) {
    BIO_free(socket_in);
    BIO_free(buffer);
    BIO_free(socket_out);
    SSL_free(ssl);
    return SslFailure("BIO_new");
  }
  BIO* in = BIO_push(buffer, socket_in);
  if (!first.empty() &&
      BIO_set_buffer_read_data(in, const_cast<char*>(first.data()),
                               static_cast<long>(first.size())) != 1) {
    BIO_free_all(in);
    BIO_free(socket_out);
    SSL_free(ssl);
    return SslFailure("BIO_set_buffer_read_data");
  }
  SSL_set_bio(ssl, in, socket_out);
  SSL_set_accept_state(ssl);
  return ssl;
}

absl::StatusOr<SSL*> TlsContexts::ToUpstream(int fd,
                                             const std::string& name) const {
  SSL* ssl = SSL_new(client_);
  if (ssl == nullptr) return SslFailure("SSL_new");
  if (SSL_set_fd(ssl, fd) != 1 ||
      SSL_set_tlsext_host_name(ssl, name.c_str()) != 1 ||
      SSL_set1_host(ssl, name.c_str()) != 1) {
    SSL_free(ssl);
    return SslFailure("SSL_set1_host");
  }
  SSL_set_connect_state(ssl);
  return ssl;
}

absl::Status Handshake(SSL* ssl, int fd, int stop, absl::Time deadline) {
  for (;;) {
    ERR_clear_error();
    errno = 0;
    const int rc = SSL_do_handshake(ssl);
    if (rc == 1) return absl::OkStatus();
    const int error = SSL_get_error(ssl, rc);
    short events = 0;
    if (error == SSL_ERROR_WANT_READ) events = POLLIN;
    if (error == SSL_ERROR_WANT_WRITE) events = POLLOUT;
    if (events == 0) {
      const long verified = SSL_get_verify_result(ssl);
      if (!SSL_is_server(ssl) && verified != X509_V_OK) {
        return absl::UnavailableError(
            absl::StrCat("the server's certificate does not verify: ",
                         X509_verify_cert_error_string(verified)));
      }
      if (error == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        return absl::UnavailableError(
            errno != 0 ? absl::StrCat("TLS handshake: ", std::strerror(errno))
                       : std::string("TLS handshake: the peer closed"));
      }
      return absl::UnavailableError(
          absl::StrCat("TLS handshake: ", OpenSslError()));
    }
    if (!WaitFor(fd, events, stop, deadline)) {
      return absl::DeadlineExceededError(
          "TLS handshake: timed out (or the daemon stops)");
    }
  }
}

}  // namespace corral::net
