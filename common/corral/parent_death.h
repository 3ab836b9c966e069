// For the helper programs a daemon starts (launchers, runtime helpers): die
// with the daemon while starting a sandbox, so that a daemon killed
// meanwhile never leaves a helper behind; live on once the sandbox is up, if
// the helper is part of it by design (a VM's supervisor).
#ifndef CORRAL_COMMON_CORRAL_PARENT_DEATH_H_
#define CORRAL_COMMON_CORRAL_PARENT_DEATH_H_

#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>

namespace corral {

// Asks for SIGKILL when the thread that started this process ends (the
// daemon's thread waits for the helper's report, so it lives as long as
// the helper is needed), then checks that the daemon had not already gone:
// `report_fd` is the write end of the pipe the daemon reads, which reports
// an error once nobody can read it. False when the daemon is gone (the
// helper should exit at once). Async-signal-safe.
inline bool DieWithParent(int report_fd) {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) return false;
  pollfd check{report_fd, 0, 0};
  return ::poll(&check, 1, 0) >= 0 &&
         (check.revents & (POLLERR | POLLNVAL)) == 0;
}

// Undoes DieWithParent: from now on the helper outlives the daemon, as a
// sandbox's own process. Call before reporting success, so that the daemon's
// thread, free once it has the report, cannot take the helper along.
inline void OutliveParent() { ::prctl(PR_SET_PDEATHSIG, 0); }

}  // namespace corral

#endif  // CORRAL_COMMON_CORRAL_PARENT_DEATH_H_
