// The platform layer: every call of corrald, the CLI and the host helpers
// whose spelling is Linux's own (peer credentials, prctl, getrandom,
// renameat2, syncfs, eventfd, /proc/self/exe, struct stat's st_mtim) goes
// through here, so that a port to another host (macOS, for the tart and
// apple runtimes: docs/porting-macos.md) replaces this file's
// implementation and nothing else in those programs. Only the Linux half
// exists (platform_linux.cc); CMake refuses to configure elsewhere.
//
// errno-style (no Abseil): the static helpers (corral-*-launch) link it.
// The Linux-only parts stay outside it by design: the runtimes that cannot
// exist elsewhere (namespaces, cgroups, seccomp, KVM), the egress path
// (daemon/net), the guest agent, which always runs in a Linux guest.
#ifndef CORRAL_COMMON_CORRAL_PLATFORM_H_
#define CORRAL_COMMON_CORRAL_PLATFORM_H_

#include <spawn.h>
#include <sys/stat.h>
#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

namespace corral::platform {

// --- who is calling -------------------------------------------------------

// The uid, gid and pid of the process at the other end of the connected
// Unix stream socket `fd`, as the kernel recorded them at connect time.
// False with errno set when it cannot say.
[[nodiscard]] bool PeerIdentity(int fd, uid_t* uid, gid_t* gid, pid_t* pid);

// That process's supplementary groups, all of them. False with errno set
// when the full list cannot be had (the caller must then treat the groups
// as unknown, never as empty).
[[nodiscard]] bool PeerGroups(int fd, std::vector<gid_t>* groups);

// --- where things live -----------------------------------------------------

// The host's default places for corrald and the CLI (a config file and
// --socket override them).
struct DefaultPaths {
  const char* socket;         // corrald's Unix socket
  const char* state_dir;      // corrald's state (store, images, workspaces)
  const char* host_registry;  // the daemon instances of this host
};
[[nodiscard]] const DefaultPaths& Defaults();

// --- this process ---------------------------------------------------------

// The absolute path of the running program, or "" with errno set.
[[nodiscard]] std::string ExecutablePath();

// Fills `buffer` with `size` bytes from the kernel's CSPRNG. False with
// errno set on failure (never a short fill).
[[nodiscard]] bool FillRandom(void* buffer, size_t size);

// For a helper a daemon starts: SIGKILL when the thread that started it
// ends (the daemon's thread waits for the helper's report, so it lives as
// long as the helper is needed), then a check that the daemon had not
// already gone: `report_fd` is the write end of the pipe the daemon reads.
// False when the daemon is gone (exit at once). Async-signal-safe.
[[nodiscard]] bool DieWithParent(int report_fd);
// Undoes DieWithParent: from now on the helper outlives the daemon, as a
// sandbox's own process (a VM's supervisor). Call before reporting success.
void OutliveParent();

// In a child just forked by `parent`: SIGKILL when the thread that forked
// it ends. False when `parent` is gone already (the child should _exit).
// Async-signal-safe.
[[nodiscard]] bool DieWithParentProcess(pid_t parent);

// Closes the descriptors from `first` to `last` (~0u: all above `first`).
// Async-signal-safe.
void CloseRange(unsigned first, unsigned last);

// The name the kernel shows for this process (ps, /proc/PID/comm).
void SetProcessName(const char* name);

// The process-wide child reaper of corrald (and of tests that host a
// plugin): orphans of the sandboxes' launchers are reparented to this
// process, and one thread reaps every child. Nothing else may wait() on
// arbitrary children: components learn that a child ended through a pipe
// closing or a pidfd becoming readable, which works whoever reaps. Started
// once per process; later calls do nothing. Never stops.
void StartChildReaper();

// --- descriptors ----------------------------------------------------------

// A pipe whose ends are close-on-exec (and non-blocking when asked). 0, or
// -1 with errno set.
[[nodiscard]] int MakePipe(int fds[2], bool nonblocking = false);
// A close-on-exec stream socket of `domain` (non-blocking when asked), or
// -1 with errno set.
[[nodiscard]] int StreamSocket(int domain, bool nonblocking = false);
// accept(2) whose new descriptor is close-on-exec and non-blocking.
[[nodiscard]] int AcceptNonBlocking(int listen_fd);
// send(2) that never raises SIGPIPE (a vanished peer is EPIPE) and never
// blocks.
[[nodiscard]] ssize_t SendNoSignal(int fd, const void* data, size_t size);

// --- other processes ------------------------------------------------------

// A process by its pid and start time, which a later process that reuses
// the pid does not match.
struct ProcessId {
  pid_t pid = 0;
  uint64_t start_time = 0;  // Linux: clock ticks after boot
};

// The identity of `pid` while it runs (a zombie counts as gone). False
// when it is gone.
[[nodiscard]] bool IdentifyProcess(pid_t pid, ProcessId* id);
// Whether the process `id` still runs.
[[nodiscard]] bool ProcessRuns(const ProcessId& id);
// Sends `signal` to the process `id` if it is still that process (never to
// another that reused its pid), then waits up to `timeout_ms` for it to
// end. True when it is gone (or was already); false when it still runs.
bool SignalProcess(const ProcessId& id, int signal, int timeout_ms);

// --- helper processes -----------------------------------------------------

// A helper started by SpawnVetted. Killed and reaped when it goes (safe
// against a reused pid, and whoever reaps first: the child reaper may).
class VettedChild {
 public:
  VettedChild() = default;
  ~VettedChild();
  VettedChild(const VettedChild&) = delete;
  VettedChild& operator=(const VettedChild&) = delete;
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  friend int SpawnVetted(int, const std::vector<std::string>&, int, int,
                         VettedChild*);
  pid_t pid_ = -1;
  int handle_ = -1;  // Linux: a pidfd
};

// Starts the program open at `program_fd` (vetted by the caller: that very
// file runs, whatever happens to its path) with `argv`, `stdin_fd` and
// `stdout_fd` as its stdin and stdout, stderr on /dev/null, no other
// descriptor, an empty environment, no signal blocked or ignored, in a
// session of its own. 0, or an errno value.
[[nodiscard]] int SpawnVetted(int program_fd,
                              const std::vector<std::string>& argv,
                              int stdin_fd, int stdout_fd, VettedChild* child);

// Adds to `actions` the closing of every descriptor from `first` up in
// the child (Linux: posix_spawn_file_actions_addclosefrom_np).
void SpawnCloseFrom(posix_spawn_file_actions_t* actions, int first);

// corral-unpack's confinement before it reads a byte of an archive: uid
// and gid nobody (when root), not dumpable, no new privileges, no files
// written, 8 descriptors, `max_address_space` bytes of memory, no child
// processes, and a system-call filter that allows reading, writing and
// memory that is never executable, little else. False with `why` set.
[[nodiscard]] bool EnterDecoderConfinement(unsigned long max_address_space,
                                           std::string* why);

// --- files ----------------------------------------------------------------

// rename(2) that fails with EEXIST instead of replacing `to`.
[[nodiscard]] int RenameNoReplace(int from_dir, const char* from, int to_dir,
                                  const char* to);
// Swaps `from` and `to` atomically (both must exist).
[[nodiscard]] int RenameExchange(int from_dir, const char* from, int to_dir,
                                 const char* to);
// Writes every dirty page of the file system holding `fd` to its disk,
// durably. 0, or -1 with errno set.
[[nodiscard]] int SyncFileSystem(int fd);
// A file's modification time with nanoseconds.
[[nodiscard]] timespec ModificationTime(const struct stat& st);

// Loads the shared library open at `fd` (vetted by the caller: owner,
// mode, type), that very file whatever happens to its path meanwhile, with
// RTLD_NOW | RTLD_LOCAL. Keep `fd` open while the library is loaded: the
// loader takes a name it has seen for the same library. nullptr on
// failure (dlerror() says why).
[[nodiscard]] void* LoadLibraryFromFd(int fd);

// Gives the calling thread a working directory and umask of its own (no
// other thread's relative paths or umask change), then moves it to the
// directory open at `dir_fd` with umask `mask`. 0, or -1 with errno set.
[[nodiscard]] int EnterThreadDirectory(int dir_fd, mode_t mask);

// --- waking a poll() loop -------------------------------------------------

// A pollable event another thread sets: poll_fd() turns readable once
// Signal() was called, until Drain(). Move-only; closes what it holds.
class WakeEvent {
 public:
  WakeEvent() = default;
  ~WakeEvent();
  WakeEvent(WakeEvent&& other) noexcept;
  WakeEvent& operator=(WakeEvent&& other) noexcept;
  WakeEvent(const WakeEvent&) = delete;
  WakeEvent& operator=(const WakeEvent&) = delete;

  // A new event (non-blocking, close-on-exec); invalid with errno set on
  // failure.
  [[nodiscard]] static WakeEvent Create();
  [[nodiscard]] bool valid() const { return fd_ >= 0; }
  [[nodiscard]] int poll_fd() const { return fd_; }
  void Signal() const;  // async-signal-safe
  void Drain() const;

 private:
  int fd_ = -1;
};

}  // namespace corral::platform

#endif  // CORRAL_COMMON_CORRAL_PLATFORM_H_
