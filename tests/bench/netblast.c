/* netblast: the traffic of tests/bench/network.sh. Static, so that it runs
 * inside any sandbox.
 *
 *   netblast serve ADDRESS PORT BYTES   accept connections one by one; send
 *                                       BYTES to each, then close
 *   netblast get ADDRESS PORT           one connection, read to its end;
 *                                       prints "BYTES SECONDS MIB_PER_S"
 *   netblast connects ADDRESS PORT N    N connections one after another,
 *                                       each read to its end; prints
 *                                       "N SECONDS CONNECTIONS_PER_S" */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double Now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static struct sockaddr_in Address(const char* address, const char* port) {
  struct sockaddr_in in;
  memset(&in, 0, sizeof(in));
  in.sin_family = AF_INET;
  in.sin_port = htons((unsigned short)atoi(port));
  if (inet_pton(AF_INET, address, &in.sin_addr) != 1) {
    fprintf(stderr, "netblast: bad address %s\n", address);
    exit(2);
  }
  return in;
}

/* Connects and reads to the end; the bytes read, or -1. */
static long long Fetch(const struct sockaddr_in* to) {
  static char buffer[1 << 16];
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0 || connect(fd, (const struct sockaddr*)to, sizeof(*to)) != 0) {
    perror("netblast: connect");
    if (fd >= 0) close(fd);
    return -1;
  }
  long long total = 0;
  for (;;) {
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      perror("netblast: read");
      close(fd);
      return -1;
    }
    if (n == 0) break;
    total += n;
  }
  close(fd);
  return total;
}

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 5 && strcmp(argv[1], "serve") == 0) {
    struct sockaddr_in at = Address(argv[2], argv[3]);
    long long bytes = atoll(argv[4]);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(listener, (struct sockaddr*)&at, sizeof(at)) != 0 ||
        listen(listener, 128) != 0) {
      perror("netblast: listen");
      return 1;
    }
    static char block[1 << 16];
    memset(block, 'x', sizeof(block));
    for (;;) {
      int fd = accept(listener, NULL, NULL);
      if (fd < 0) continue;
      long long left = bytes;
      while (left > 0) {
        size_t size = left < (long long)sizeof(block) ? (size_t)left
                                                      : sizeof(block);
        ssize_t n = write(fd, block, size);
        if (n <= 0) break;
        left -= n;
      }
      close(fd);
    }
  }
  if (argc == 4 && strcmp(argv[1], "get") == 0) {
    struct sockaddr_in to = Address(argv[2], argv[3]);
    double start = Now();
    long long got = Fetch(&to);
    double seconds = Now() - start;
    if (got < 0) return 1;
    printf("%lld %.3f %.1f\n", got, seconds, got / seconds / (1 << 20));
    return 0;
  }
  if (argc == 5 && strcmp(argv[1], "connects") == 0) {
    struct sockaddr_in to = Address(argv[2], argv[3]);
    int n = atoi(argv[4]);
    double start = Now();
    for (int i = 0; i < n; ++i) {
      if (Fetch(&to) < 0) return 1;
    }
    double seconds = Now() - start;
    printf("%d %.3f %.1f\n", n, seconds, n / seconds);
    return 0;
  }
  fprintf(stderr, "usage: see the top of netblast.c\n");
  return 2;
}
