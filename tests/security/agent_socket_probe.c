/* Run inside a sandbox by the conformance suite, as a hostile command would
 * to take the daemon's place at the agent: connects to every listening Unix
 * socket the sandbox can see in /proc/net/unix (a VM's agent listens on an
 * abstract one, a container's on a socket in a bind-mounted directory) and
 * prints a line for each, "PATH: OUTCOME":
 *   connect failed: ERR   the socket refused the connection
 *   closed                the listener hung up without a byte
 *   answered N bytes      it talked
 *   silent                nothing either way within 3 s (an agent that took
 *                         the connection waits for the daemon's hello)
 * or "no listening sockets". Statically linked: the sandbox's image has no
 * C library to offer. */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void Probe(const char* path) {
  struct sockaddr_un address;
  memset(&address, 0, sizeof(address));
  address.sun_family = AF_UNIX;
  size_t length = strlen(path);
  if (length + 1 > sizeof(address.sun_path)) {
    printf("%s: too long\n", path);
    return;
  }
  memcpy(address.sun_path, path, length);
  if (path[0] == '@') address.sun_path[0] = '\0'; /* abstract */
  socklen_t size = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + length +
                               (path[0] == '@' ? 0 : 1));
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) {
    printf("%s: socket: %s\n", path, strerror(errno));
    return;
  }
  if (connect(fd, (struct sockaddr*)&address, size) != 0) {
    printf("%s: connect failed: %s\n", path, strerror(errno));
    close(fd);
    return;
  }
  struct pollfd watch = {fd, POLLIN, 0};
  if (poll(&watch, 1, 3000) == 0) {
    printf("%s: silent\n", path);
  } else {
    char buffer[4096];
    ssize_t n = read(fd, buffer, sizeof(buffer));
    if (n <= 0) {
      printf("%s: closed\n", path);
    } else {
      printf("%s: answered %zd bytes\n", path, n);
    }
  }
  close(fd);
}

int main(void) {
  FILE* table = fopen("/proc/net/unix", "r");
  if (table == NULL) {
    printf("/proc/net/unix: %s\n", strerror(errno));
    return 1;
  }
  char line[4096];
  int found = 0;
  if (fgets(line, sizeof(line), table) == NULL) return 1; /* the header */
  while (fgets(line, sizeof(line), table) != NULL) {
    /* Num RefCount Protocol Flags Type St Inode Path */
    char num[32], path[sizeof(line)];
    unsigned refs, protocol, flags, type, state;
    unsigned long inode;
    path[0] = '\0';
    if (sscanf(line, "%31s %x %x %x %x %x %lu %s", num, &refs, &protocol,
               &flags, &type, &state, &inode, path) < 7) {
      continue;
    }
    /* A listening stream socket (__SO_ACCEPTCON) with a name. */
    if (type != SOCK_STREAM || !(flags & 0x10000) || path[0] == '\0') {
      continue;
    }
    found = 1;
    Probe(path);
    fflush(stdout);
  }
  fclose(table);
  if (!found) printf("no listening sockets\n");
  return 0;
}
