// Secrets of the egress path without a network: how requests streaming
// from a sandbox get them (RequestRewriter), what a sandbox's CA may sign
// for, and a TLS connection terminated with it over a socket pair.
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "daemon/net/http_rewrite.h"
#include "daemon/net/rewrite_relay.h"
#include "daemon/net/tls.h"

namespace corral::net {
namespace {

constexpr char kPlaceholder[] = "corral-secret-0123";
constexpr char kValue[] = "v4lue";

std::vector<std::pair<std::string, std::string>> Replacements() {
  return {{kPlaceholder, kValue}};
}

// `in` fed in pieces of `piece` bytes, then finished.
std::string Rewrite(const std::string& in, size_t piece,
                    uint64_t* heads = nullptr) {
  RequestRewriter rewriter(Replacements());
  std::string out;
  for (size_t at = 0; at < in.size(); at += piece) {
    rewriter.Feed(absl::string_view(in).substr(at, piece), &out);
  }
  rewriter.Finish(&out);
  if (heads != nullptr) *heads = rewriter.heads();
  return out;
}

// The same result whichever way the stream was cut.
std::string RewriteEveryWay(const std::string& in, uint64_t* heads = nullptr) {
  const std::string whole = Rewrite(in, in.size() + 1, heads);
  for (size_t piece : {1, 2, 3, 5, 7, 64, 1000}) {
    INFO("pieces of " << piece);
    CHECK(Rewrite(in, piece) == whole);
  }
  return whole;
}

std::string Get(const std::string& path) {
  return "GET " + path + " HTTP/1.1\r\nHost: api.example.com\r\n" +
         "Authorization: Bearer " + kPlaceholder + "\r\n\r\n";
}

TEST_CASE(
    "every request of a kept-alive connection gets the secrets, in "
    "its head only") {
  uint64_t heads = 0;
  CHECK(RewriteEveryWay(Get("/a") + Get("/b"), &heads) ==
        "GET /a HTTP/1.1\r\nHost: api.example.com\r\n"
        "Authorization: Bearer v4lue\r\n\r\n"
        "GET /b HTTP/1.1\r\nHost: api.example.com\r\n"
        "Authorization: Bearer v4lue\r\n\r\n");
  CHECK(heads == 2);

  // A body of a Content-Length passes as it is, even one that looks like a
  // request; the request after it gets the secrets.
  const std::string body = Get("/inside-the-body");
  const std::string post =
      "POST /p HTTP/1.1\r\nHost: api.example.com\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\nX-Token: " + kPlaceholder +
      "\r\n\r\n" + body;
  std::string out = RewriteEveryWay(post + Get("/after"), &heads);
  CHECK(heads == 2);
  CHECK(out.find("X-Token: v4lue") != std::string::npos);
  CHECK(out.find(body) != std::string::npos);
  CHECK(out.find("GET /after HTTP/1.1\r\nHost: api.example.com\r\n"
                 "Authorization: Bearer v4lue") != std::string::npos);

  // Chunked, with an extension and trailers.
  const std::string chunked =
      "POST /c HTTP/1.1\r\nHost: api.example.com\r\nTransfer-Encoding: "
      "gzip, chunked\r\nContent-Length: 3\r\n\r\n"
      "5;ext=1\r\nab" +
      std::string(kPlaceholder).substr(0, 3) + "\r\n" + "1a\r\n" +
      std::string(kPlaceholder) + "xxxxxxxx\r\n" +
      "0\r\nX-Trailer: " + kPlaceholder + "\r\n\r\n" + Get("/next");
  out = RewriteEveryWay(chunked, &heads);
  CHECK(heads == 2);
  CHECK(out.find(std::string(kPlaceholder) + "xxxxxxxx") != std::string::npos);
  CHECK(out.find(std::string("X-Trailer: ") + kPlaceholder) !=
        std::string::npos);
  CHECK(out.find("GET /next HTTP/1.1\r\nHost: api.example.com\r\n"
                 "Authorization: Bearer v4lue") != std::string::npos);
}

TEST_CASE("a stream the rewriter cannot follow passes on unchanged") {
  uint64_t heads = 0;
  // After an upgrade, the bytes are another protocol's.
  const std::string upgrade =
      "GET /ws HTTP/1.1\r\nHost: api.example.com\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\n\r\n";
  std::string out = RewriteEveryWay(upgrade + Get("/x"), &heads);
  CHECK(heads == 1);
  CHECK(out == upgrade + Get("/x"));
  // Content-Lengths that disagree, a coding that is not chunked, a
  // malformed chunk size.
  for (const std::string& framing :
       {std::string("Content-Length: 5\r\nContent-Length: 6\r\n"),
        std::string("Content-Length: x\r\n"),
        std::string("Transfer-Encoding: gzip\r\n")}) {
    INFO(framing);
    const std::string request =
        "POST / HTTP/1.1\r\nHost: api.example.com\r\n" + framing + "\r\n";
    CHECK(RewriteEveryWay(request + Get("/x")) == request + Get("/x"));
  }
  const std::string bad_chunk =
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
  CHECK(RewriteEveryWay(bad_chunk + Get("/x")) == bad_chunk + Get("/x"));
  // A head longer than the most held goes on as it is, and so does the
  // rest; an unfinished one too.
  const std::string long_head = "GET / HTTP/1.1\r\nX-Pad: " +
                                std::string(RequestRewriter::kMaxHead, 'p') +
                                "\r\nX-Token: " + kPlaceholder + "\r\n\r\n";
  CHECK(Rewrite(long_head + Get("/x"), 4096) == long_head + Get("/x"));
  const std::string unfinished =
      "GET / HTTP/1.1\r\nX-Token: " + std::string(kPlaceholder) + "\r\n";
  CHECK(RewriteEveryWay(unfinished, &heads) == unfinished);
  CHECK(heads == 0);
}

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
using Cert = std::unique_ptr<X509, X509Free>;

Cert ParsePem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  Cert cert(PEM_read_bio_X509(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  return cert;
}

// X509_V_OK when `leaf` verifies against `ca` for `name`.
int Verify(X509* ca, X509* leaf, const std::string& name) {
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(ctx), name.c_str(), 0);
  X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_SERVER);
  const int verified = X509_verify_cert(ctx);
  const int error = X509_STORE_CTX_get_error(ctx);
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  return verified == 1 ? X509_V_OK : error;
}

TEST_CASE(
    "a sandbox's CA signs for the hosts of its secrets and for no "
    "other name") {
  auto ca = MakeSandboxCa("0123abcd", {"api.example.com", "*.example.org"});
  REQUIRE(ca.ok());
  CHECK(ca->key_pem.find("PRIVATE KEY") != std::string::npos);
  CHECK(ca->certificate_pem.find("PRIVATE") == std::string::npos);
  Cert ca_cert = ParsePem(ca->certificate_pem);
  REQUIRE(ca_cert);
  CHECK(X509_check_ca(ca_cert.get()) != 0);
  auto issuer = CertificateIssuer::Load(*ca);
  REQUIRE(issuer.ok());

  for (const char* name :
       {"api.example.com", "a.example.org", "b.c.example.org"}) {
    INFO(name);
    auto pem = (*issuer)->CertificatePem(name);
    REQUIRE(pem.ok());
    Cert leaf = ParsePem(*pem);
    CHECK(Verify(ca_cert.get(), leaf.get(), name) == X509_V_OK);
    // Made once, kept.
    CHECK(*(*issuer)->CertificatePem(name) == *pem);
  }
  // Whatever the issuer is made to sign, the name constraints refuse it.
  for (const char* name : {"evil.test", "example.org", "example.com",
                           "api.example.com.evil.test"}) {
    INFO(name);
    Cert leaf = ParsePem(*(*issuer)->CertificatePem(name));
    CHECK(Verify(ca_cert.get(), leaf.get(), name) ==
          X509_V_ERR_PERMITTED_VIOLATION);
  }
  // Another sandbox's CA is another key.
  auto other = MakeSandboxCa("4567", {"api.example.com"});
  REQUIRE(other.ok());
  Cert other_cert = ParsePem(other->certificate_pem);
  Cert leaf = ParsePem(*(*issuer)->CertificatePem("api.example.com"));
  CHECK(Verify(other_cert.get(), leaf.get(), "api.example.com") != X509_V_OK);
  CHECK_FALSE(MakeSandboxCa("x", {}).ok());

  // The bundle: the files given, then the sandbox's CA; a missing system
  // bundle is skipped, a missing upstream file is an error.
  const std::string dir =
      "/tmp/corral-secrets-test-" + std::to_string(::getpid());
  REQUIRE(::mkdir(dir.c_str(), 0700) == 0);
  const std::string extra = dir + "/extra.pem";
  {
    FILE* f = std::fopen(extra.c_str(), "w");
    std::fputs(other->certificate_pem.c_str(), f);
    std::fclose(f);
  }
  auto bundle = SandboxTrustBundle(*ca, dir + "/none.pem", extra);
  REQUIRE(bundle.ok());
  CHECK(*bundle == other->certificate_pem + ca->certificate_pem);
  CHECK_FALSE(SandboxTrustBundle(*ca, "", dir + "/none.pem").ok());
  ::unlink(extra.c_str());
  ::rmdir(dir.c_str());
}

TEST_CASE(
    "a TLS connection from a sandbox is terminated with its CA after "
    "its first bytes were read, and its request gets the secret") {
  auto ca = MakeSandboxCa("feed", {"api.example.com"});
  REQUIRE(ca.ok());
  auto issuer = CertificateIssuer::Load(*ca);
  REQUIRE(issuer.ok());
  auto contexts = TlsContexts::Create("");
  REQUIRE(contexts.ok());
  int client_pair[2], server_pair[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, client_pair) == 0);
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, server_pair) == 0);
  const int stop = ::eventfd(0, EFD_CLOEXEC);

  // The sandbox: a client that trusts only its CA.
  std::string client_error, client_got;
  std::thread sandbox([&] {
    SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
    BIO* bio = BIO_new_mem_buf(ca->certificate_pem.data(), -1);
    X509* ca_cert = PEM_read_bio_X509(bio, nullptr, nullptr, nullptr);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca_cert);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
    SSL* ssl = SSL_new(ctx);
    SSL_set_fd(ssl, client_pair[0]);
    SSL_set_tlsext_host_name(ssl, "api.example.com");
    SSL_set1_host(ssl, "api.example.com");
    if (SSL_connect(ssl) != 1) {
      client_error = OpenSslError();
    } else {
      const std::string request = Get("/secret");
      SSL_write(ssl, request.data(), static_cast<int>(request.size()));
      char buffer[256];
      const int n = SSL_read(ssl, buffer, sizeof(buffer));
      if (n > 0) client_got.assign(buffer, static_cast<size_t>(n));
      SSL_shutdown(ssl);
    }
    ::shutdown(client_pair[0], SHUT_WR);
    SSL_free(ssl);
    X509_free(ca_cert);
    BIO_free(bio);
    SSL_CTX_free(ctx);
  });
  // The server: reads the request, answers, closes.
  std::string server_got;
  std::thread server([&] {
    char buffer[4096];
    ssize_t n;
    while ((n = ::read(server_pair[1], buffer, sizeof(buffer))) > 0) {
      server_got.append(buffer, static_cast<size_t>(n));
      if (server_got.find("\r\n\r\n") != std::string::npos) break;
    }
    const std::string answer = "HTTP/1.1 204 No Content\r\n\r\n";
    (void)::write(server_pair[1], answer.data(), answer.size());
    ::shutdown(server_pair[1], SHUT_WR);
    while (::read(server_pair[1], buffer, sizeof(buffer)) > 0) {
    }
  });

  // The proxy: the first bytes read as sniffing does, then TLS.
  std::string first(11, '\0');
  REQUIRE(::recv(client_pair[1], first.data(), first.size(), MSG_WAITALL) ==
          11);
  for (int fd : {client_pair[1], server_pair[0]}) {
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  }
  auto ssl = (*contexts)->ToSandbox(client_pair[1], first);
  REQUIRE(ssl.ok());
  REQUIRE((*issuer)->UseFor(*ssl, "api.example.com").ok());
  const absl::Status handshake =
      Handshake(*ssl, client_pair[1], stop, absl::Now() + absl::Seconds(20));
  bool relayed = false;
  uint64_t sent = 0, received = 0;
  if (handshake.ok()) {
    RequestRewriter rewriter(Replacements());
    relayed = RelayRewriting({client_pair[1], *ssl}, {server_pair[0]}, rewriter,
                             "", stop, &sent, &received);
  } else {
    ::shutdown(client_pair[1], SHUT_RDWR);
    ::shutdown(server_pair[0], SHUT_RDWR);
  }
  sandbox.join();
  server.join();
  SSL_free(*ssl);
  for (int fd :
       {client_pair[0], client_pair[1], server_pair[0], server_pair[1], stop}) {
    ::close(fd);
  }
  INFO(handshake.ToString() << " / " << client_error);
  REQUIRE(handshake.ok());
  CHECK(client_error.empty());
  CHECK(relayed);
  CHECK(server_got.find("Authorization: Bearer v4lue\r\n") !=
        std::string::npos);
  CHECK(server_got.find(kPlaceholder) == std::string::npos);
  CHECK(client_got == "HTTP/1.1 204 No Content\r\n\r\n");
  CHECK(sent == Get("/secret").size());
  CHECK(received == client_got.size());
}

}  // namespace
}  // namespace corral::net
