#include "daemon/net/wait.h"

#include <poll.h>

#include <cerrno>

#include "absl/time/clock.h"

namespace corral::net {

bool WaitFor(int fd, short events, int stop, absl::Time deadline) {
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) return false;
    pollfd fds[2] = {{fd, events, 0}, {stop, POLLIN, 0}};
    const int n =
        ::poll(fds, 2, static_cast<int>(absl::ToInt64Milliseconds(left)) + 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || (fds[1].revents & POLLIN)) return false;
    if (n > 0 && fds[0].revents != 0) return true;
  }
}

Woken WaitEither(int a, short a_events, int b, short b_events, int stop) {
  for (;;) {
    pollfd fds[3] = {{a_events != 0 ? a : -1, a_events, 0},
                     {b_events != 0 ? b : -1, b_events, 0},
                     {stop, POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      return Woken::kFailed;
    }
    return (fds[2].revents & POLLIN) ? Woken::kStop : Woken::kReady;
  }
}

}  // namespace corral::net
