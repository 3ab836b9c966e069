/* https_probe: an HTTPS client run inside a sandbox by the secrets tests.
 * Static (OpenSSL included), so that it runs in any image; it trusts what
 * a TLS client of the sandbox would: the CAs of $SSL_CERT_FILE (or
 * OpenSSL's default store without it).
 *
 *   https_probe ADDRESS PORT NAME HEADER PATH
 *
 * connects to ADDRESS:PORT, speaks TLS with server name NAME, verifies the
 * server's certificate for NAME, sends "GET PATH" with Host: NAME and the
 * header line HEADER, and prints "verified <subject of the issuer>" and
 * the response; or "failed: <why>" and exits 1. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int Fail(const char* what, SSL* ssl) {
  char reason[256] = "";
  unsigned long code = ERR_get_error();
  if (code != 0) ERR_error_string_n(code, reason, sizeof(reason));
  long verified = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
  printf("failed: %s%s%s%s%s\n", what, reason[0] ? ": " : "", reason,
         verified != X509_V_OK ? ": " : "",
         verified != X509_V_OK ? X509_verify_cert_error_string(verified) : "");
  return 1;
}

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: https_probe ADDRESS PORT NAME HEADER PATH\n");
    return 2;
  }
  struct sockaddr_in to = {0};
  to.sin_family = AF_INET;
  to.sin_port = htons((unsigned short)atoi(argv[2]));
  if (inet_pton(AF_INET, argv[1], &to.sin_addr) != 1) {
    return Fail("bad address", NULL);
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (struct sockaddr*)&to, sizeof(to)) != 0) {
    return Fail("connect", NULL);
  }
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL || SSL_CTX_set_default_verify_paths(ctx) != 1) {
    return Fail("the CA store", NULL);
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, argv[3]);
  SSL_set1_host(ssl, argv[3]);
  if (SSL_connect(ssl) != 1) return Fail("TLS", ssl);
  X509* server = SSL_get1_peer_certificate(ssl);
  char issuer[256] = "";
  if (server != NULL) {
    X509_NAME_oneline(X509_get_issuer_name(server), issuer, sizeof(issuer));
    X509_free(server);
  }
  printf("verified %s\n", issuer);
  char request[4096];
  int size = snprintf(request, sizeof(request),
                      "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n"
                      "Connection: close\r\n\r\n",
                      argv[5], argv[3], argv[4]);
  if (size <= 0 || size >= (int)sizeof(request)) return Fail("too long", NULL);
  if (SSL_write(ssl, request, size) != size) return Fail("write", ssl);
  char buffer[4096];
  int n;
  while ((n = SSL_read(ssl, buffer, sizeof(buffer))) > 0) {
    fwrite(buffer, 1, (size_t)n, stdout);
  }
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  close(fd);
  return 0;
}
