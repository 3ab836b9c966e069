// The process-wide child reaper. corrald (and any test that hosts a plugin)
// becomes a child subreaper, so sandbox processes orphaned by their launcher
// are reparented to it, and a single thread reaps every child. Nothing else in
// the process may call wait()/waitpid() on arbitrary children: components
// learn that a child ended through a pipe closing or a pidfd becoming
// readable, which works whoever reaps.
#ifndef CORRAL_COMMON_CHILD_REAPER_H_
#define CORRAL_COMMON_CHILD_REAPER_H_

#include <sys/prctl.h>
#include <sys/wait.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <thread>

namespace corral {

// Starts the reaper once per process; later calls do nothing. Never stops.
inline void StartChildReaper() {
  static std::atomic<bool> started{false};
  if (started.exchange(true)) return;
  ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  std::thread([] {
    for (;;) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, __WALL);
      if (pid > 0 || errno == EINTR) continue;
      // ECHILD: no children right now. Children appear at any time and no
      // notification tells this thread, so look again shortly.
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }).detach();
}

}  // namespace corral

#endif  // CORRAL_COMMON_CHILD_REAPER_H_
