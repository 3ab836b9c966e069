// Starting one command for corral-agent: fork, set the child up with only
// async-signal-safe calls (own session, stdio pipes or a new pseudo-terminal,
// clean signal state), search PATH in the request's environment, and report
// exec failures through a close-on-exec pipe. File operations use the same
// child setup but run a function instead of exec'ing.
#ifndef CORRAL_GUEST_AGENT_SPAWN_H_
#define CORRAL_GUEST_AGENT_SPAWN_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "corral/agent/v1/agent.pb.h"
#include "corral/unique_fd.h"

namespace corral::agent {

// PATH used when the request's environment has none.
inline constexpr char kDefaultPath[] =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
// TERM of a pty command whose request sets neither TERM nor pty.term.
inline constexpr char kDefaultTerm[] = "xterm-256color";
// Terminal size for a Pty or Resize field of 0.
inline constexpr uint32_t kDefaultRows = 24;
inline constexpr uint32_t kDefaultColumns = 80;

struct SpawnedCommand {
  pid_t pid = -1;
  // CLOCK_MONOTONIC nanoseconds just before fork.
  int64_t start_ns = 0;
  // Parent ends, non-blocking and close-on-exec. stdin_write is invalid when
  // the request did not open stdin.
  //
  // With a pty: pty_master is the terminal's master side; stdin_write and
  // stdout_read are duplicates of it (so that each can be watched and closed
  // on its own) and stderr_read is invalid (the terminal merges stderr).
  UniqueFd stdin_write;
  UniqueFd stdout_read;
  UniqueFd stderr_read;
  UniqueFd pty_master;  // invalid without a pty
};

struct SpawnFailure {
  // 127 when the program was not found, 126 for any other failure.
  int exit_code = 126;
  // "<argv0>: No such file or directory", "chdir /x: Permission denied", ...
  std::string message;
  // Pid of the child that failed, or -1 when fork itself failed. The caller's
  // reaper collects it.
  pid_t pid = -1;
  int64_t start_ns = 0;
};

// Returns the first error in `start` that makes it unrunnable (empty argv,
// NUL bytes in argv/cwd/env, bad variable names), or an empty string.
std::string ValidateExecStart(const v1::ExecStart& start);

// Forks and execs `start`. Precondition: ValidateExecStart(start) is empty and
// fds 0, 1 and 2 are open (so that new pipes never land on them). Blocks until
// the child has exec'd or failed (a close-on-exec pipe tells which).
//
// With start.pty set, the child runs on a new pseudo-terminal instead of
// pipes: it leads a new session whose controlling tty is the terminal's slave
// side (its stdin, stdout and stderr), sized start.pty rows x columns, with
// TERM=start.pty.term (default kDefaultTerm) appended to the environment
// unless the request sets TERM.
[[nodiscard]] bool Spawn(const v1::ExecStart& start, SpawnedCommand* command,
                         SpawnFailure* failure);

// Forks a child set up exactly like Spawn's (own session and process group,
// stdio pipes, clean signal state, cwd "/") that runs `body` instead of a
// program and _exits with its result: file operations (fs_ops.h). The child
// closes every fd above 2 first. Only start.stdin_open is used. Blocks until
// the child has finished its setup.
[[nodiscard]] bool SpawnFunction(const v1::ExecStart& start,
                                 const std::function<int()>& body,
                                 SpawnedCommand* command,
                                 SpawnFailure* failure);

// Sets the window size of the terminal whose master is `master_fd`
// (TIOCSWINSZ; the foreground process group gets SIGWINCH). 0 means
// kDefaultRows / kDefaultColumns; values above 65535 are clamped. Returns
// false with errno set when the ioctl fails.
bool SetTerminalSize(int master_fd, uint32_t rows, uint32_t columns);

// Every command and file operation started afterwards joins the cgroup
// `directory` (a cgroup v2 directory) before it runs: the limits of a VM
// sandbox, which the agent sets up on its own kernel (vm_init.h). Empty (the
// default) leaves children in the agent's cgroup. A child that cannot join
// fails to start (exit 126). Call before the first Spawn.
void SetCommandCgroup(const std::string& directory);

// Every command and file operation started afterwards runs without any
// capability (bounding, effective, permitted, inheritable and ambient sets
// empty) and with no_new_privs: the agent of a VM is root of its own kernel
// and keeps its privileges, its commands get what the container runtimes
// give theirs (also `--drop-command-privileges`, for a runtime that cannot
// set no_new_privs itself). Call before the first Spawn.
void SetDropCommandCapabilities(bool drop);

// The command cgroup's count of OOM kills (memory.events oom_kill), or 0
// without a command cgroup or when it cannot be read.
uint64_t CommandCgroupOomKills();

// CLOCK_MONOTONIC in nanoseconds.
int64_t MonotonicNowNs();

}  // namespace corral::agent

#endif  // CORRAL_GUEST_AGENT_SPAWN_H_
