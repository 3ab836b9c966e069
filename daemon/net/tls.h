#ifndef CORRAL_DAEMON_NET_TLS_H_
#define CORRAL_DAEMON_NET_TLS_H_

// TLS termination for secrets (docs/security.md, "Secrets"). A sandbox
// with secrets gets a CA of its own, trusted inside that sandbox only and,
// by its name constraints, for the hosts of its secrets only. For a
// connection to such a host the proxy verifies the real server against the
// host's CA store, then answers the sandbox with a certificate for the name
// that the sandbox's CA signs, and relays the plaintext in between, putting
// the secrets in. OpenSSL does the cryptography and X.509 work; this file
// only decides what goes into the certificates.
#include <openssl/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace corral::net {

struct SandboxCa {
  std::string certificate_pem;
  std::string key_pem;  // never leaves the daemon
};

// A new CA (P-256) for sandbox `id`, valid for `host_patterns` only
// ("api.example.com", "*.example.com": RFC 5280 name constraints).
absl::StatusOr<SandboxCa> MakeSandboxCa(
    absl::string_view id, const std::vector<std::string>& host_patterns);

// What a sandbox with secrets trusts (its SSL_CERT_FILE): the CAs of the
// host's store (`system_bundle`, PEM), those of `upstream_ca_file` (may be
// empty), and its own CA.
absl::StatusOr<std::string> SandboxTrustBundle(
    const SandboxCa& ca, const std::string& system_bundle,
    const std::string& upstream_ca_file);

// Server certificates for names, signed by one sandbox's CA, made when
// first asked and kept while valid. Thread-safe.
class CertificateIssuer {
 public:
  static absl::StatusOr<std::shared_ptr<CertificateIssuer>> Load(
      const SandboxCa& ca);
  ~CertificateIssuer();
  CertificateIssuer(const CertificateIssuer&) = delete;
  CertificateIssuer& operator=(const CertificateIssuer&) = delete;

  // Sets the certificate for `name` (and its key) on `ssl`.
  absl::Status UseFor(SSL* ssl, const std::string& name);
  // The certificate for `name` (PEM); for tests.
  absl::StatusOr<std::string> CertificatePem(const std::string& name);

 private:
  CertificateIssuer() = default;
  absl::StatusOr<X509*> Leaf(const std::string& name);  // under mutex_

  X509* ca_ = nullptr;
  EVP_PKEY* ca_key_ = nullptr;
  EVP_PKEY* leaf_key_ = nullptr;  // one key for every name of the sandbox
  std::mutex mutex_;
  struct Cached {
    X509* certificate = nullptr;
    absl::Time not_after;
  };
  std::map<std::string, Cached> leaves_;
};

// The two kinds of TLS the proxy speaks: to the sandbox as the server (its
// certificate set per connection) and to the real server as a client that
// verifies it against the system's CA store and `upstream_ca_file`. Both
// speak HTTP/1.1 only (ALPN), TLS 1.2 and 1.3.
class TlsContexts {
 public:
  static absl::StatusOr<std::unique_ptr<TlsContexts>> Create(
      const std::string& upstream_ca_file);
  ~TlsContexts();
  TlsContexts(const TlsContexts&) = delete;
  TlsContexts& operator=(const TlsContexts&) = delete;

  // A connection to the sandbox on socket `fd`, whose first bytes the proxy
  // read already (`first`: they are read again from there).
  absl::StatusOr<SSL*> ToSandbox(int fd, absl::string_view first) const;
  // A connection to the server on socket `fd` that must prove `name`.
  absl::StatusOr<SSL*> ToUpstream(int fd, const std::string& name) const;

 private:
  TlsContexts() = default;
  SSL_CTX* server_ = nullptr;
  SSL_CTX* client_ = nullptr;
};

// Completes the handshake of `ssl` on non-blocking `fd` by `deadline`, or
// until `stop` is readable; the error says why it failed (an upstream
// certificate that does not verify is named as such).
absl::Status Handshake(SSL* ssl, int fd, int stop, absl::Time deadline);

// The last OpenSSL error, as text, and the queue cleared.
std::string OpenSslError();

}  // namespace corral::net

#endif  // CORRAL_DAEMON_NET_TLS_H_
