/* net_probe: what a network test runs inside a sandbox. Static, so that it
 * runs in any image; it speaks just enough DNS, HTTP and TLS to show what
 * the sandbox's egress lets through, and prints one line per result:
 *
 *   net_probe resolve NAME [SERVER]      "A <address>..." | "NXDOMAIN" |
 *                                        "rcode N" | "no answer"
 *   net_probe resolve-tcp NAME SERVER    the same over TCP
 *   net_probe http ADDRESS PORT HOST [HEADER [PATH]]
 *                                        the response ("HTTP/1.1 200 ...")
 *                                        or "failed: <why>"; HEADER is one
 *                                        more header line, PATH the path
 *                                        (default /probe)
 *   net_probe tls ADDRESS PORT SNI       "tls answered" | "failed: <why>"
 *   net_probe connect ADDRESS PORT       what the server said first, or
 *                                        "failed: <why>"
 *   net_probe udp ADDRESS PORT           "answered" | "no answer"
 *   net_probe serve PORT                 listens on 0.0.0.0:PORT forever and
 *                                        says "hello from sandbox PORT" to
 *                                        each connection
 *
 * Without SERVER, resolve asks the first nameserver of /etc/resolv.conf
 * (127.0.0.1 when there is none), as a C library would. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int Connect(const char* address, int port) {
  struct sockaddr_in to = {0};
  to.sin_family = AF_INET;
  to.sin_port = htons((unsigned short)port);
  if (inet_pton(AF_INET, address, &to.sin_addr) != 1) {
    printf("failed: bad address %s\n", address);
    return -1;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct timeval timeout = {5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  if (connect(fd, (struct sockaddr*)&to, sizeof(to)) != 0) {
    printf("failed: connect: %s\n", strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

/* Reads until EOF (or max bytes); -1 with the error printed. */
static int ReadAll(int fd, char* buffer, int max) {
  int total = 0;
  while (total < max) {
    ssize_t n = read(fd, buffer + total, (size_t)(max - total));
    if (n == 0) break;
    if (n < 0) {
      if (total > 0) break;
      printf("failed: read: %s\n", strerror(errno));
      return -1;
    }
    total += (int)n;
  }
  return total;
}

static int Query(unsigned char* out, const char* name) {
  int n = 0;
  const unsigned char header[12] = {0x4a, 0x17, 0x01, 0x00, 0, 1,
                                    0,    0,    0,    0,    0, 0};
  memcpy(out, header, 12);
  n = 12;
  const char* label = name;
  while (*label) {
    const char* dot = strchr(label, '.');
    int size = dot ? (int)(dot - label) : (int)strlen(label);
    out[n++] = (unsigned char)size;
    memcpy(out + n, label, (size_t)size);
    n += size;
    label += size + (dot ? 1 : 0);
  }
  out[n++] = 0;
  out[n++] = 0;
  out[n++] = 1; /* A */
  out[n++] = 0;
  out[n++] = 1; /* IN */
  return n;
}

static void PrintAnswer(const unsigned char* a, int size) {
  if (size < 12) {
    printf("no answer\n");
    return;
  }
  int rcode = a[3] & 0x0f;
  if (rcode == 3) {
    printf("NXDOMAIN\n");
    return;
  }
  if (rcode != 0) {
    printf("rcode %d\n", rcode);
    return;
  }
  int answers = (a[6] << 8) | a[7];
  int at = 12;
  while (at < size && a[at] != 0) at += a[at] + 1; /* the question name */
  at += 5;
  printf("A");
  for (int i = 0; i < answers && at + 12 <= size; ++i) {
    if ((a[at] & 0xc0) == 0xc0) {
      at += 2;
    } else {
      while (at < size && a[at] != 0) at += a[at] + 1;
      at += 1;
    }
    if (at + 10 > size) break;
    int type = (a[at] << 8) | a[at + 1];
    int length = (a[at + 8] << 8) | a[at + 9];
    at += 10;
    if (type == 1 && length == 4 && at + 4 <= size) {
      printf(" %d.%d.%d.%d", a[at], a[at + 1], a[at + 2], a[at + 3]);
    }
    at += length;
  }
  printf("\n");
}

static void DefaultServer(char* server, size_t size) {
  snprintf(server, size, "127.0.0.1");
  FILE* file = fopen("/etc/resolv.conf", "r");
  if (!file) return;
  char line[256];
  while (fgets(line, sizeof(line), file)) {
    char address[64];
    if (sscanf(line, "nameserver %63s", address) == 1) {
      snprintf(server, size, "%s", address);
      break;
    }
  }
  fclose(file);
}

static int Resolve(const char* name, const char* given, int tcp) {
  char server[64];
  if (given) {
    snprintf(server, sizeof(server), "%s", given);
  } else {
    DefaultServer(server, sizeof(server));
  }
  unsigned char query[512], answer[1500];
  int size = Query(query, name);
  if (tcp) {
    int fd = Connect(server, 53);
    if (fd < 0) return 1;
    unsigned char framed[514] = {(unsigned char)(size >> 8),
                                 (unsigned char)size};
    memcpy(framed + 2, query, (size_t)size);
    if (write(fd, framed, (size_t)size + 2) != size + 2) {
      printf("failed: write\n");
      return 1;
    }
    /* One length-prefixed answer; the server may keep the connection. */
    int n = 0;
    while (n < 2 || n < 2 + ((answer[0] << 8) | answer[1])) {
      ssize_t got = read(fd, answer + n, sizeof(answer) - (size_t)n);
      if (got <= 0) break;
      n += (int)got;
    }
    close(fd);
    if (n < 2) {
      printf("no answer\n");
      return 0;
    }
    PrintAnswer(answer + 2, n - 2);
    return 0;
  }
  struct sockaddr_in to = {0};
  to.sin_family = AF_INET;
  to.sin_port = htons(53);
  inet_pton(AF_INET, server, &to.sin_addr);
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct timeval timeout = {3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sendto(fd, query, (size_t)size, 0, (struct sockaddr*)&to, sizeof(to));
  ssize_t n = recv(fd, answer, sizeof(answer), 0);
  if (n <= 0) {
    printf("no answer\n");
    return 0;
  }
  PrintAnswer(answer, (int)n);
  return 0;
}

/* A TLS 1.2/1.3 ClientHello with one server name and the usual suites. */
static int ClientHello(unsigned char* out, const char* sni) {
  unsigned char body[1024];
  int n = 0;
  body[n++] = 3;
  body[n++] = 3;
  for (int i = 0; i < 32; ++i) body[n++] = (unsigned char)(i * 7);
  body[n++] = 0; /* session id */
  const unsigned char suites[] = {0x13, 0x01, 0x13, 0x02, 0xc0,
                                  0x2f, 0xc0, 0x2b, 0x00, 0x9c};
  body[n++] = 0;
  body[n++] = sizeof(suites);
  memcpy(body + n, suites, sizeof(suites));
  n += sizeof(suites);
  body[n++] = 1;
  body[n++] = 0; /* no compression */
  int extensions_at = n;
  n += 2;
  int name_size = (int)strlen(sni);
  const unsigned char sni_head[] = {0,
                                    0,
                                    (unsigned char)((name_size + 5) >> 8),
                                    (unsigned char)(name_size + 5),
                                    (unsigned char)((name_size + 3) >> 8),
                                    (unsigned char)(name_size + 3),
                                    0,
                                    (unsigned char)(name_size >> 8),
                                    (unsigned char)name_size};
  memcpy(body + n, sni_head, sizeof(sni_head));
  n += sizeof(sni_head);
  memcpy(body + n, sni, (size_t)name_size);
  n += name_size;
  const unsigned char rest[] = {
      0x00, 0x0a, 0x00, 0x04, 0x00, 0x02, 0x00, 0x17, /* groups: P-256 */
      0x00, 0x0b, 0x00, 0x02, 0x01, 0x00,             /* point formats */
      0x00, 0x0d, 0x00, 0x08, 0x00, 0x06, 0x04, 0x01, 0x08, 0x04, 0x04,
      0x03, /* signature algorithms: RSA, RSA-PSS, ECDSA with SHA-256 */
  };
  memcpy(body + n, rest, sizeof(rest));
  n += sizeof(rest);
  int extensions = n - extensions_at - 2;
  body[extensions_at] = (unsigned char)(extensions >> 8);
  body[extensions_at + 1] = (unsigned char)extensions;
  int m = 0;
  out[m++] = 0x16;
  out[m++] = 3;
  out[m++] = 1;
  out[m++] = (unsigned char)((n + 4) >> 8);
  out[m++] = (unsigned char)(n + 4);
  out[m++] = 1;
  out[m++] = 0;
  out[m++] = (unsigned char)(n >> 8);
  out[m++] = (unsigned char)n;
  memcpy(out + m, body, (size_t)n);
  return m + n;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  if (argc >= 3 && strcmp(argv[1], "resolve") == 0) {
    return Resolve(argv[2], argc >= 4 ? argv[3] : NULL, 0);
  }
  if (argc == 4 && strcmp(argv[1], "resolve-tcp") == 0) {
    return Resolve(argv[2], argv[3], 1);
  }
  if (argc >= 5 && argc <= 7 && strcmp(argv[1], "http") == 0) {
    int fd = Connect(argv[2], atoi(argv[3]));
    if (fd < 0) return 0;
    char request[1024];
    int size = snprintf(request, sizeof(request),
                        "GET %s HTTP/1.1\r\nHost: %s\r\n%s%s"
                        "Connection: close\r\n\r\n",
                        argc >= 7 ? argv[6] : "/probe", argv[4],
                        argc >= 6 ? argv[5] : "", argc >= 6 ? "\r\n" : "");
    if (write(fd, request, (size_t)size) != size) {
      printf("failed: write: %s\n", strerror(errno));
      return 0;
    }
    char answer[8192];
    int n = ReadAll(fd, answer, sizeof(answer) - 1);
    if (n < 0) return 0;
    if (n == 0) {
      printf("failed: closed without an answer\n");
      return 0;
    }
    answer[n] = 0;
    printf("%s\n", answer);
    return 0;
  }
  if (argc == 5 && strcmp(argv[1], "tls") == 0) {
    int fd = Connect(argv[2], atoi(argv[3]));
    if (fd < 0) return 0;
    unsigned char hello[1200];
    int size = ClientHello(hello, argv[4]);
    if (write(fd, hello, (size_t)size) != size) {
      printf("failed: write: %s\n", strerror(errno));
      return 0;
    }
    unsigned char first = 0;
    ssize_t n = read(fd, &first, 1);
    /* A handshake or an alert: either way the TLS server itself answered
     * (this probe does not finish a handshake). */
    if (n == 1 && (first == 0x16 || first == 0x15)) {
      printf("tls answered\n");
    } else if (n == 1) {
      printf("failed: answered 0x%02x\n", first);
    } else {
      printf("failed: %s\n", n == 0 ? "closed" : strerror(errno));
    }
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "connect") == 0) {
    int fd = Connect(argv[2], atoi(argv[3]));
    if (fd < 0) return 0;
    char answer[256];
    int n = ReadAll(fd, answer, sizeof(answer) - 1);
    if (n < 0) return 0;
    answer[n] = 0;
    printf("%s%s", n == 0 ? "failed: closed" : answer,
           n == 0 || answer[n - 1] != '\n' ? "\n" : "");
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "udp") == 0) {
    struct sockaddr_in to = {0};
    to.sin_family = AF_INET;
    to.sin_port = htons((unsigned short)atoi(argv[3]));
    inet_pton(AF_INET, argv[2], &to.sin_addr);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct timeval timeout = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    sendto(fd, "ping", 4, 0, (struct sockaddr*)&to, sizeof(to));
    char answer[64];
    printf("%s\n", recv(fd, answer, sizeof(answer), 0) > 0 ? "answered"
                                                           : "no answer");
    return 0;
  }
  if (argc == 3 && strcmp(argv[1], "serve") == 0) {
    struct sockaddr_in at = {0};
    at.sin_family = AF_INET;
    at.sin_port = htons((unsigned short)atoi(argv[2]));
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(listener, (struct sockaddr*)&at, sizeof(at)) != 0 ||
        listen(listener, 16) != 0) {
      printf("failed: listen: %s\n", strerror(errno));
      return 1;
    }
    char hello[64];
    int size = snprintf(hello, sizeof(hello), "hello from sandbox %s\n",
                        argv[2]);
    for (;;) {
      int fd = accept(listener, NULL, NULL);
      if (fd < 0) continue;
      if (write(fd, hello, (size_t)size) != size) {
        /* the client left */
      }
      close(fd);
    }
  }
  fprintf(stderr, "usage: see the top of net_probe.c\n");
  return 2;
}
