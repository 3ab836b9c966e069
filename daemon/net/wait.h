#ifndef CORRAL_DAEMON_NET_WAIT_H_
#define CORRAL_DAEMON_NET_WAIT_H_

// Waiting on the egress path's sockets, always together with `stop` (an
// eventfd readable once the daemon stops).
#include "absl/time/time.h"

namespace corral::net {

// Waits for `fd` to be ready for `events`, or for `stop`; false on
// timeout or stop.
bool WaitFor(int fd, short events, int stop, absl::Time deadline);

// Waits for either of two sockets to be ready for its events, or for
// `stop`. A side without events is left out (its hangup would wake the
// poll at once, forever).
enum class Woken { kReady, kStop, kFailed };
Woken WaitEither(int a, short a_events, int b, short b_events, int stop);

}  // namespace corral::net

#endif  // CORRAL_DAEMON_NET_WAIT_H_
