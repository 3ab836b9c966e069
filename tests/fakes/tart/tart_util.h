// Helpers of the FAKE `tart` CLI (tests/fakes/README.md, "Tart"): how
// Tart's errors end the program, the locks Tart takes (its fcntl PID lock
// on a VM's config.json, flock on directories), and the fake-only rootfs
// unpacking. The fakes' common helpers are in tests/fakes/common.
#ifndef CORRAL_TESTS_FAKES_TART_TART_UTIL_H_
#define CORRAL_TESTS_FAKES_TART_TART_UTIL_H_

#include <sys/types.h>

#include <string>

#include "nlohmann/json.hpp"

namespace corral::fake_tart {

using ojson = nlohmann::ordered_json;

// A RuntimeError: its description alone on stderr, its exit code (2 for
// VMDoesNotExist, VMNotRunning and VMAlreadyRunning, else 1).
[[noreturn]] void Runtime(const std::string& message, int code = 1);
[[noreturn]] void VmDoesNotExist(const std::string& name);
[[noreturn]] void VmNotRunning(const std::string& name);
// Something real Tart has that the fake does not model.
[[noreturn]] void Refuse(const std::string& message);

// The holder of Tart's PID lock (an fcntl write lock on the whole file):
// its pid, 0 when nobody holds it, -1 when the file cannot be opened.
pid_t PidLockHolder(const std::string& config_path);

// An exclusive flock on a file or directory, held while the object lives.
class Flock {
 public:
  // `create`: make a missing file. `wait`: block (else try once).
  Flock(const std::string& path, bool create, bool wait = true);
  ~Flock();
  Flock(const Flock&) = delete;
  Flock& operator=(const Flock&) = delete;
  bool held() const { return held_; }
  int fd() const { return fd_; }

 private:
  int fd_ = -1;
  bool held_ = false;
};

// Waits up to `timeout_ms` for an exclusive flock on `path` (created);
// true when it was free (the lock is released again).
bool WaitFlockFree(const std::string& path, int timeout_ms);

// VZMACAddress.randomLocallyAdministered().string.
std::string RandomMac();

// Unpacks the tar `archive` (any format and filter libarchive reads)
// into the directory `root`: names taken relative to it, members with
// `..` refused, device nodes and sockets left out, every parent resolved
// inside `root`, owners, modes and times kept. Fails with Refuse().
void UnpackRootfs(const std::string& archive, const std::string& root);

}  // namespace corral::fake_tart

#endif  // CORRAL_TESTS_FAKES_TART_TART_UTIL_H_
