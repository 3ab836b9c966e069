#include "daemon/net/rewrite_relay.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <climits>
#include <string>

#include "daemon/net/wait.h"

namespace corral::net {
namespace {

// How much one direction holds before it stops reading.
constexpr size_t kMaxHeld = 256 * 1024;
constexpr size_t kReadSize = 16 * 1024;

enum class Io { kDone, kWantRead, kWantWrite, kClosed, kFailed };

Io SslResult(SSL* ssl, int rc) {
  switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
      return Io::kWantRead;
    case SSL_ERROR_WANT_WRITE:
      return Io::kWantWrite;
    case SSL_ERROR_ZERO_RETURN:
      return Io::kClosed;
    default:
      return Io::kFailed;
  }
}

Io Read(Endpoint e, char* buffer, size_t size, size_t* n) {
  if (e.ssl == nullptr) {
    const ssize_t rc = ::recv(e.fd, buffer, size, 0);
    if (rc > 0) {
      *n = static_cast<size_t>(rc);
      return Io::kDone;
    }
    if (rc == 0) return Io::kClosed;
    return errno == EAGAIN || errno == EINTR ? Io::kWantRead : Io::kFailed;
  }
  ERR_clear_error();
  const int rc = SSL_read(e.ssl, buffer, static_cast<int>(size));
  if (rc > 0) {
    *n = static_cast<size_t>(rc);
    return Io::kDone;
  }
  return SslResult(e.ssl, rc);
}

Io Write(Endpoint e, const char* data, size_t size, size_t* n) {
  if (e.ssl == nullptr) {
    const ssize_t rc = ::send(e.fd, data, size, MSG_NOSIGNAL);
    if (rc >= 0) {
      *n = static_cast<size_t>(rc);
      return Io::kDone;
    }
    return errno == EAGAIN || errno == EINTR ? Io::kWantWrite : Io::kFailed;
  }
  ERR_clear_error();
  const int rc =
      SSL_write(e.ssl, data, static_cast<int>(std::min<size_t>(size, INT_MAX)));
  if (rc > 0) {
    *n = static_cast<size_t>(rc);
    return Io::kDone;
  }
  return SslResult(e.ssl, rc);
}

// The end of one direction: close_notify (best effort), then the TCP
// half-close.
void CloseWrite(Endpoint e) {
  if (e.ssl != nullptr) {
    ERR_clear_error();
    (void)SSL_shutdown(e.ssl);
  }
  ::shutdown(e.fd, SHUT_WR);
}

}  // namespace

bool RelayRewriting(Endpoint sandbox, Endpoint upstream,
                    RequestRewriter& rewriter, absl::string_view first,
                    int stop, uint64_t* sandbox_sent,
                    uint64_t* sandbox_received) {
  struct Direction {
    Endpoint from, to;
    int from_slot, to_slot;  // in the poll set
    bool rewrite;
    uint64_t* count;
    std::string held;
    size_t sent = 0;
    bool open = true;
    bool shut = false;
  };
  Direction dirs[2] = {
      {sandbox, upstream, 0, 1, true, sandbox_sent, {}},
      {upstream, sandbox, 1, 0, false, sandbox_received, {}},
  };
  *sandbox_sent += first.size();
  rewriter.Feed(first, &dirs[0].held);
  char buffer[kReadSize];
  for (;;) {
    bool progress = false;
    short events[2] = {0, 0};
    auto want = [&](Io io, int slot) {
      if (io == Io::kWantRead) events[slot] |= POLLIN;
      if (io == Io::kWantWrite) events[slot] |= POLLOUT;
    };
    for (Direction& d : dirs) {
      if (d.open && d.held.size() - d.sent < kMaxHeld) {
        size_t n = 0;
        const Io io = Read(d.from, buffer, sizeof(buffer), &n);
        if (io == Io::kDone) {
          *d.count += n;
          if (d.rewrite) {
            rewriter.Feed(absl::string_view(buffer, n), &d.held);
          } else {
            d.held.append(buffer, n);
          }
          progress = true;
        } else if (io == Io::kClosed) {
          d.open = false;
          if (d.rewrite) rewriter.Finish(&d.held);
          progress = true;
        } else if (io == Io::kFailed) {
          return false;
        } else {
          want(io, d.from_slot);
        }
      }
      if (d.sent < d.held.size()) {
        size_t n = 0;
        const Io io =
            Write(d.to, d.held.data() + d.sent, d.held.size() - d.sent, &n);
        if (io == Io::kDone) {
          d.sent += n;
          if (d.sent == d.held.size()) {
            d.held.clear();
            d.sent = 0;
          }
          progress = true;
        } else if (io == Io::kFailed || io == Io::kClosed) {
          return false;
        } else {
          want(io, d.to_slot);
        }
      }
      if (!d.open && d.held.empty() && !d.shut) {
        CloseWrite(d.to);
        d.shut = true;
        progress = true;
      }
    }
    if (dirs[0].shut && dirs[1].shut) return true;
    if (progress) continue;
    const Woken woken =
        WaitEither(sandbox.fd, events[0], upstream.fd, events[1], stop);
    if (woken == Woken::kFailed) return false;
    if (woken == Woken::kStop) return true;  // the daemon stops
  }
}

}  // namespace corral::net
