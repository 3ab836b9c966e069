// The platform layer (common/corral/platform.h), its Linux half: each call
// does what its callers rely on, checked against the kernel directly (the
// peer's credentials against this process's own, the executable against
// /proc, flags with fcntl), and Linux's signal table against glibc's.
#include "corral/platform.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "corral/linux_signals.h"

namespace corral::platform {
namespace {

bool HasFlag(int fd, int flag) { return (::fcntl(fd, F_GETFL) & flag) != 0; }
bool CloseOnExec(int fd) { return (::fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0; }

std::string TempDir() {
  char tmpl[] = "/tmp/corral-platform-XXXXXX";
  REQUIRE(::mkdtemp(tmpl) != nullptr);
  return tmpl;
}

TEST_CASE("platform: a Unix socket's peer is this process, with all its groups",
          "[platform]") {
  int pair[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0);
  uid_t uid = 12345;
  gid_t gid = 12345;
  pid_t pid = 0;
  REQUIRE(PeerIdentity(pair[0], &uid, &gid, &pid));
  CHECK(uid == ::geteuid());
  CHECK(gid == ::getegid());
  CHECK(pid == ::getpid());
  std::vector<gid_t> groups;
  REQUIRE(PeerGroups(pair[0], &groups));
  std::vector<gid_t> mine(static_cast<size_t>(::getgroups(0, nullptr)));
  REQUIRE(::getgroups(static_cast<int>(mine.size()), mine.data()) ==
          static_cast<int>(mine.size()));
  std::sort(groups.begin(), groups.end());
  std::sort(mine.begin(), mine.end());
  CHECK(groups == mine);
  ::close(pair[0]);
  ::close(pair[1]);
  // Not a socket: no credentials, errno set.
  int fds[2];
  REQUIRE(MakePipe(fds) == 0);
  errno = 0;
  CHECK_FALSE(PeerIdentity(fds[0], &uid, &gid, &pid));
  CHECK(errno != 0);
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST_CASE("platform: the executable's path and random bytes", "[platform]") {
  const std::string exe = ExecutablePath();
  REQUIRE_FALSE(exe.empty());
  CHECK(exe[0] == '/');
  CHECK(std::filesystem::equivalent(exe, "/proc/self/exe"));
  std::vector<unsigned char> a(1u << 20), b(1u << 20);
  REQUIRE(FillRandom(a.data(), a.size()));
  REQUIRE(FillRandom(b.data(), b.size()));
  CHECK(a != b);
  // Not all zeros at the end (no short fill).
  bool tail_set = false;
  for (size_t i = a.size() - 64; i < a.size(); ++i) tail_set |= a[i] != 0;
  CHECK(tail_set);
}

TEST_CASE(
    "platform: pipes, sockets and accepted connections are close-on-exec, "
    "non-blocking when asked, and a send to a vanished peer is EPIPE, not a "
    "signal",
    "[platform]") {
  int fds[2];
  REQUIRE(MakePipe(fds) == 0);
  CHECK(CloseOnExec(fds[0]));
  CHECK(CloseOnExec(fds[1]));
  CHECK_FALSE(HasFlag(fds[0], O_NONBLOCK));
  ::close(fds[0]);
  ::close(fds[1]);
  REQUIRE(MakePipe(fds, /*nonblocking=*/true) == 0);
  CHECK(HasFlag(fds[0], O_NONBLOCK));
  CHECK(HasFlag(fds[1], O_NONBLOCK));
  ::close(fds[0]);
  ::close(fds[1]);

  const std::string dir = TempDir();
  const std::string path = dir + "/s";
  const int listener = StreamSocket(AF_UNIX);
  REQUIRE(listener >= 0);
  CHECK(CloseOnExec(listener));
  CHECK_FALSE(HasFlag(listener, O_NONBLOCK));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address),
                 sizeof(address)) == 0);
  REQUIRE(::listen(listener, 1) == 0);
  const int client = StreamSocket(AF_UNIX, /*nonblocking=*/true);
  REQUIRE(client >= 0);
  CHECK(HasFlag(client, O_NONBLOCK));
  REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&address),
                    sizeof(address)) == 0);
  const int accepted = AcceptNonBlocking(listener);
  REQUIRE(accepted >= 0);
  CHECK(CloseOnExec(accepted));
  CHECK(HasFlag(accepted, O_NONBLOCK));
  ::close(accepted);
  // SIGPIPE's default would end this test process.
  errno = 0;
  ssize_t sent = 0;
  for (int i = 0; i < 3 && sent >= 0; ++i) sent = SendNoSignal(client, "x", 1);
  CHECK(sent < 0);
  CHECK(errno == EPIPE);
  ::close(client);
  ::close(listener);
  std::filesystem::remove_all(dir);
}

TEST_CASE(
    "platform: a no-replace rename refuses an existing name, an exchange "
    "swaps, a file system syncs, and modification times keep nanoseconds",
    "[platform]") {
  const std::string dir = TempDir();
  const std::string a = dir + "/a", b = dir + "/b", c = dir + "/c";
  for (const auto& [path, text] : {std::pair{a, "A"}, std::pair{b, "B"}}) {
    FILE* f = std::fopen(path.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs(text, f);
    std::fclose(f);
  }
  auto read = [](const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "r");
    char buffer[8] = {};
    if (f != nullptr) {
      (void)!std::fgets(buffer, sizeof(buffer), f);
      std::fclose(f);
    }
    return std::string(buffer);
  };
  errno = 0;
  CHECK(RenameNoReplace(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str()) != 0);
  CHECK(errno == EEXIST);
  CHECK(read(b) == "B");
  REQUIRE(RenameExchange(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str()) == 0);
  CHECK(read(a) == "B");
  CHECK(read(b) == "A");
  REQUIRE(RenameNoReplace(AT_FDCWD, a.c_str(), AT_FDCWD, c.c_str()) == 0);
  CHECK(read(c) == "B");
  CHECK_FALSE(std::filesystem::exists(a));

  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  REQUIRE(fd >= 0);
  CHECK(SyncFileSystem(fd) == 0);
  ::close(fd);

  const timespec times[2] = {{1000, 111}, {2000, 123456789}};
  REQUIRE(::utimensat(AT_FDCWD, c.c_str(), times, 0) == 0);
  struct stat st {};
  REQUIRE(::stat(c.c_str(), &st) == 0);
  const timespec mtime = ModificationTime(st);
  CHECK(mtime.tv_sec == 2000);
  CHECK(mtime.tv_nsec == 123456789);
  std::filesystem::remove_all(dir);
}

TEST_CASE(
    "platform: a wake event is readable after Signal, from another thread, "
    "until drained",
    "[platform]") {
  WakeEvent event = WakeEvent::Create();
  REQUIRE(event.valid());
  CHECK(CloseOnExec(event.poll_fd()));
  auto readable = [&](int timeout_ms) {
    pollfd p{event.poll_fd(), POLLIN, 0};
    return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
  };
  CHECK_FALSE(readable(0));
  std::thread([&] { event.Signal(); }).join();
  CHECK(readable(1000));
  event.Signal();  // twice: one drain clears both
  event.Drain();
  CHECK_FALSE(readable(0));
  WakeEvent moved = std::move(event);
  CHECK_FALSE(event.valid());  // NOLINT(bugprone-use-after-move)
  CHECK(moved.valid());
}

// A grandchild that calls DieWithParent (or then OutliveParent) with its
// parent, a short-lived child, gone: does it live? It holds the write end
// of `alive` until it dies.
bool SurvivesParent(bool outlive) {
  int alive[2], report[2];
  REQUIRE(::pipe(alive) == 0);
  REQUIRE(::pipe(report) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    const pid_t grandchild = ::fork();
    if (grandchild == 0) {
      ::close(alive[0]);
      if (!DieWithParent(report[1])) ::_exit(3);
      if (outlive) OutliveParent();
      (void)!::write(report[1], "r", 1);
      ::pause();  // until SIGKILL
      ::_exit(0);
    }
    char byte;
    (void)!::read(report[0], &byte, 1);  // the grandchild is set up
    ::_exit(0);
  }
  ::close(alive[1]);
  ::close(report[1]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  pollfd p{alive[0], POLLIN, 0};
  // End of file on `alive` means the grandchild died.
  const bool died = ::poll(&p, 1, 2000) == 1;
  if (!died) {
    // Ask it to go: its pid is unknown here, so read the pipe's holders.
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      const std::string name = entry.path().filename();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::error_code error;
      for (const auto& fd :
           std::filesystem::directory_iterator(entry.path() / "fd", error)) {
        std::error_code link_error;
        const auto target = std::filesystem::read_symlink(fd, link_error);
        const auto mine = std::filesystem::read_symlink(
            "/proc/self/fd/" + std::to_string(alive[0]), link_error);
        if (target == mine && std::stoi(name) != ::getpid()) {
          ::kill(std::stoi(name), SIGKILL);
        }
      }
    }
  }
  ::close(alive[0]);
  ::close(report[0]);
  return !died;
}

TEST_CASE(
    "platform: a helper that dies with its parent does, and one told to "
    "outlive it lives on",
    "[platform]") {
  CHECK_FALSE(SurvivesParent(/*outlive=*/false));
  CHECK(SurvivesParent(/*outlive=*/true));
}

TEST_CASE(
    "platform: a process is known by its pid and start time, runs until it "
    "ends, and is signalled only while it is itself",
    "[platform]") {
  ProcessId self;
  REQUIRE(IdentifyProcess(::getpid(), &self));
  CHECK(self.pid == ::getpid());
  CHECK(self.start_time > 0);
  CHECK(ProcessRuns(self));
  // Another start time is another process: never signalled.
  ProcessId other = self;
  other.start_time += 1;
  CHECK_FALSE(ProcessRuns(other));
  CHECK(SignalProcess(other, SIGKILL, 0));  // "gone": this process lives

  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::pause();
    ::_exit(0);
  }
  ProcessId id;
  REQUIRE(IdentifyProcess(child, &id));
  CHECK(ProcessRuns(id));
  // It ends on SIGTERM; a zombie counts as gone.
  CHECK(SignalProcess(id, SIGTERM, 5000));
  CHECK_FALSE(ProcessRuns(id));
  CHECK_FALSE(IdentifyProcess(child, &id));
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGTERM);
  CHECK_FALSE(IdentifyProcess(-1, &id));
}

TEST_CASE(
    "platform: a vetted helper runs from its fd with only its stdin and "
    "stdout, and is killed and reaped when its handle goes",
    "[platform]") {
  const int program = ::open("/bin/sh", O_RDONLY | O_CLOEXEC);
  REQUIRE(program >= 0);
  int in[2], out[2];
  REQUIRE(MakePipe(in) == 0);
  REQUIRE(MakePipe(out) == 0);
  // An fd of this process that must not reach the helper.
  int secret[2];
  REQUIRE(::pipe(secret) == 0);  // not close-on-exec
  // Numbered apart from what the helper's own ls opens.
  for (int& fd : secret) {
    const int high = ::fcntl(fd, F_DUPFD, 60);
    REQUIRE(high >= 60);
    ::close(fd);
    fd = high;
  }
  // Nothing of this process's environment reaches it.
  ::setenv("CORRAL_PLATFORM_SECRET", "x", 1);
  pid_t pid = 0;
  {
    VettedChild child;
    REQUIRE(SpawnVetted(program,
                        {"sh", "-c",
                         "read line; echo \"$line\"; ls /proc/self/fd; "
                         "echo env=$(env | grep -c CORRAL_PLATFORM_SECRET); "
                         "exec sleep 100"},
                        in[0], out[1], &child) == 0);
    pid = child.pid();
    ::close(in[0]);
    ::close(out[1]);
    REQUIRE(::write(in[1], "hello\n", 6) == 6);
    std::string got;
    char buffer[256];
    while (got.find("env=") == std::string::npos ||
           got.find('\n', got.find("env=")) == std::string::npos) {
      const ssize_t n = ::read(out[0], buffer, sizeof(buffer));
      if (n <= 0) break;
      got.append(buffer, static_cast<size_t>(n));
    }
    INFO(got);
    CHECK(got.rfind("hello\n", 0) == 0);
    // 0, 1, 2 and what ls itself opens; none of this process's others.
    CHECK(got.find("\n" + std::to_string(secret[0]) + "\n") ==
          std::string::npos);
    CHECK(got.find("\n" + std::to_string(secret[1]) + "\n") ==
          std::string::npos);
    CHECK(got.find("env=0") != std::string::npos);
    ProcessId id;
    CHECK(IdentifyProcess(pid, &id));
  }
  ::unsetenv("CORRAL_PLATFORM_SECRET");
  // The handle killed and reaped it.
  CHECK(::kill(pid, 0) != 0);
  ::close(in[1]);
  ::close(out[0]);
  ::close(secret[0]);
  ::close(secret[1]);
  ::close(program);
}

TEST_CASE("platform: Linux's signal names are glibc's", "[platform]") {
  for (int number = 0; number <= kLinuxMaxSignal + 1; ++number) {
    INFO(number);
    const char* ours = LinuxSignalAbbrev(number);
    const char* glibc = number > 0 ? ::sigabbrev_np(number) : nullptr;
    if (glibc == nullptr) {
      CHECK(ours == nullptr);
    } else {
      REQUIRE(ours != nullptr);
      CHECK(std::string(ours) == glibc);
    }
  }
  CHECK(std::string(LinuxSignalAbbrev(SIGTERM)) == "TERM");
  CHECK(LinuxSignalAbbrev(-1) == nullptr);
}

}  // namespace
}  // namespace corral::platform
