// posix_spawn attributes for a helper the daemon starts: no signal blocked
// or ignored (the daemon blocks and ignores some; a helper must not inherit
// that), and a session of its own (it never gets the daemon's terminal, so
// no TIOCSTI).
#ifndef CORRAL_COMMON_CORRAL_SPAWN_ATTRIBUTES_H_
#define CORRAL_COMMON_CORRAL_SPAWN_ATTRIBUTES_H_

#include <signal.h>
#include <spawn.h>

namespace corral {

class SessionSpawnAttributes {
 public:
  SessionSpawnAttributes() {
    posix_spawnattr_init(&attributes_);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attributes_, &none);
    posix_spawnattr_setsigdefault(&attributes_, &all);
    posix_spawnattr_setflags(&attributes_, POSIX_SPAWN_SETSIGMASK |
                                               POSIX_SPAWN_SETSIGDEF |
                                               POSIX_SPAWN_SETSID);
  }
  ~SessionSpawnAttributes() { posix_spawnattr_destroy(&attributes_); }
  SessionSpawnAttributes(const SessionSpawnAttributes&) = delete;
  SessionSpawnAttributes& operator=(const SessionSpawnAttributes&) = delete;

  const posix_spawnattr_t* get() const { return &attributes_; }

 private:
  posix_spawnattr_t attributes_;
};

}  // namespace corral

#endif  // CORRAL_COMMON_CORRAL_SPAWN_ATTRIBUTES_H_
