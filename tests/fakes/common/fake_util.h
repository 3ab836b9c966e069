// Helpers shared by the FAKE CLIs of tests/fakes (README.md there): how
// errors end the program, files written atomically, paths, times, hashes,
// locks, processes. Nothing here knows a faked program's interface.
#ifndef CORRAL_TESTS_FAKES_COMMON_FAKE_UTIL_H_
#define CORRAL_TESTS_FAKES_COMMON_FAKE_UTIL_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

namespace corral::fakes {

// Ends the command: `text` (already formatted, without the final newline;
// may be empty) goes to stderr and the program exits with `code`.
struct CliExit {
  std::string text;
  int code = 1;
};

// "Error: <message>", exit 1: how swift-argument-parser's
// exit(withError:) prints an error that is no usage error.
[[noreturn]] void Fail(const std::string& message);

// Writes `exit.text` (with a newline; stdout for code 0, else stderr)
// after what the program wrote to stdout; returns `exit.code`.
int ReportExit(const CliExit& exit);

std::optional<std::string> ReadFile(const std::string& path);
// Writes `content` to a temporary file beside `path` and renames it over.
bool WriteFileAtomic(const std::string& path, const std::string& content,
                     mode_t mode = 0644);
bool MakeDirs(const std::string& path, mode_t mode = 0755);
bool PathExists(const std::string& path);  // follows symlinks
bool IsDirectory(const std::string& path);

// Swift's split(separator:maxSplits:) with empty pieces omitted.
std::vector<std::string> SwiftSplit(const std::string& text, char separator,
                                    size_t max_splits = SIZE_MAX);

std::string JoinPath(const std::string& a, const std::string& b);
std::string Dirname(const std::string& path);
std::string Basename(const std::string& path);
// `.`, `..` and repeated slashes resolved lexically; no trailing slash.
std::string LexicallyNormal(const std::string& path);
// Relative paths are taken from the working directory.
std::string AbsolutePath(const std::string& path);

// ISO 8601 in UTC with whole seconds, as Swift's .iso8601 strategy.
std::string Iso8601(std::time_t seconds);
std::string NowIso8601();
// Seconds since the epoch of an RFC 3339 time (fraction and offset
// allowed), or nullopt.
std::optional<std::time_t> ParseRfc3339(const std::string& text);

// A lowercase random UUID, as UUID().uuidString.lowercased().
std::string NewUuid();

std::string Sha256Hex(const std::string& data);
// Of the whole file behind `fd` (read from its current offset); sets
// `*size`. False on a read error.
bool Sha256OfFd(int fd, std::string* hex, uint64_t* size);

// The start time of `pid` (field 22 of /proc/PID/stat) or -1; a zombie
// counts as gone.
long long ProcessStartTime(pid_t pid);
bool ProcessAlive(pid_t pid, long long start_time);
int PidfdOpen(pid_t pid);
// Waits until the process behind `pidfd` has exited or `timeout_ms`
// passed (negative: forever). True when it exited.
bool WaitPidfd(int pidfd, int timeout_ms);

// An exclusive flock on `path` (created), held while the object lives.
class FileLock {
 public:
  explicit FileLock(const std::string& path);
  ~FileLock();
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

// Runs `argv` (argv[0] a path) with fds 0, 1, 2 of the child taken from
// `stdio` (-1: /dev/null) and nothing else open; returns the decoded exit
// status (128+N for signal N, -1 when it could not run).
int RunCommand(const std::vector<std::string>& argv, int stdin_fd = -1,
               int stdout_fd = -1, int stderr_fd = -1);
// Starts `argv` as RunCommand does, without waiting: the child's pid, or
// -1 when it could not fork.
pid_t SpawnCommand(const std::vector<std::string>& argv, int stdin_fd = -1,
                   int stdout_fd = -1, int stderr_fd = -1);
// Runs `argv` and returns what it wrote to stdout and stderr together.
int RunCapture(const std::vector<std::string>& argv, std::string* output);

// Closes every descriptor from `first` up.
void CloseFrom(int first);

// Removes `path` and everything under it without crossing into another
// mounted file system; true when it is gone.
bool RemoveTree(const std::string& path);
// Removes the child `name` of directory `dir_fd` (recursively).
bool RemoveAt(int dir_fd, const std::string& name);

// Opens `path` below the directory `root_fd` with every symlink resolved
// as if `root_fd` were `/` (openat2 RESOLVE_IN_ROOT), so that nothing
// outside it is reached.
int OpenInRoot(int root_fd, const std::string& path, int flags,
               mode_t mode = 0);

// The host's architecture as OCI names it (amd64, arm64, ...).
std::string HostArchitecture();

}  // namespace corral::fakes

#endif  // CORRAL_TESTS_FAKES_COMMON_FAKE_UTIL_H_
