#include "tests/fakes/common/fake_util.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <openssl/evp.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

namespace corral::fakes {

void Fail(const std::string& message) { throw CliExit{"Error: " + message, 1}; }

int ReportExit(const CliExit& exit) {
  std::fflush(stdout);
  if (!exit.text.empty()) {
    std::FILE* out = exit.code == 0 ? stdout : stderr;
    std::fprintf(out, "%s\n", exit.text.c_str());
    std::fflush(out);
  }
  return exit.code;
}

std::optional<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

bool WriteFileAtomic(const std::string& path, const std::string& content,
                     mode_t mode) {
  std::string temp = path + ".tmp-" + std::to_string(::getpid());
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0) return false;
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd, content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      ::unlink(temp.c_str());
      return false;
    }
    done += static_cast<size_t>(n);
  }
  ::fchmod(fd, mode);
  ::close(fd);
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    ::unlink(temp.c_str());
    return false;
  }
  return true;
}

bool MakeDirs(const std::string& path, mode_t mode) {
  if (path.empty()) return false;
  std::string at = path[0] == '/' ? "" : ".";
  std::stringstream parts(path);
  for (std::string part; std::getline(parts, part, '/');) {
    if (part.empty()) continue;
    at += "/" + part;
    if (::mkdir(at.c_str(), mode) != 0 && errno != EEXIST) return false;
  }
  return IsDirectory(path);
}

bool PathExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

bool IsDirectory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<std::string> SwiftSplit(const std::string& text, char separator,
                                    size_t max_splits) {
  std::vector<std::string> pieces;
  size_t at = 0;
  while (at < text.size()) {
    if (pieces.size() == max_splits) {
      pieces.push_back(text.substr(at));
      return pieces;
    }
    size_t next = text.find(separator, at);
    if (next == std::string::npos) next = text.size();
    if (next > at) pieces.push_back(text.substr(at, next - at));
    at = next + 1;
  }
  return pieces;
}

std::string JoinPath(const std::string& a, const std::string& b) {
  if (a.empty()) return b;
  if (!b.empty() && b[0] == '/') return a + b;
  return a.back() == '/' ? a + b : a + "/" + b;
}

std::string Dirname(const std::string& path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

std::string Basename(const std::string& path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string LexicallyNormal(const std::string& path) {
  const bool absolute = !path.empty() && path[0] == '/';
  std::vector<std::string> parts;
  std::stringstream in(path);
  for (std::string part; std::getline(in, part, '/');) {
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (!parts.empty() && parts.back() != "..") {
        parts.pop_back();
      } else if (!absolute) {
        parts.push_back(part);
      }
      continue;
    }
    parts.push_back(part);
  }
  std::string out = absolute ? "/" : "";
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i > 0) out += "/";
    out += parts[i];
  }
  if (out.empty()) out = ".";
  return out;
}

std::string AbsolutePath(const std::string& path) {
  if (!path.empty() && path[0] == '/') return LexicallyNormal(path);
  char cwd[4096];
  if (::getcwd(cwd, sizeof(cwd)) == nullptr) return LexicallyNormal(path);
  return LexicallyNormal(std::string(cwd) + "/" + path);
}

std::string Iso8601(std::time_t seconds) {
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buffer;
}

std::string NowIso8601() { return Iso8601(std::time(nullptr)); }

std::optional<std::time_t> ParseRfc3339(const std::string& text) {
  std::tm parts{};
  const char* rest = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%S", &parts);
  if (rest == nullptr) return std::nullopt;
  if (*rest == '.') {
    ++rest;
    while (*rest >= '0' && *rest <= '9') ++rest;
  }
  long offset = 0;
  if (*rest == 'Z' || *rest == 'z') {
    ++rest;
  } else if (*rest == '+' || *rest == '-') {
    int hours = 0, minutes = 0;
    if (std::sscanf(rest + 1, "%2d:%2d", &hours, &minutes) != 2) {
      return std::nullopt;
    }
    offset = (hours * 3600L + minutes * 60L) * (*rest == '-' ? -1 : 1);
    rest += 6;
  } else {
    return std::nullopt;
  }
  if (*rest != '\0') return std::nullopt;
  return ::timegm(&parts) - offset;
}

std::string NewUuid() {
  auto text = ReadFile("/proc/sys/kernel/random/uuid");
  std::string uuid = text ? *text : "";
  while (!uuid.empty() && (uuid.back() == '\n' || uuid.back() == ' ')) {
    uuid.pop_back();
  }
  for (char& c : uuid) c = static_cast<char>(std::tolower(c));
  return uuid;
}

namespace {

std::string Hex(const unsigned char* bytes, unsigned length) {
  static const char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < length; ++i) {
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 15];
  }
  return out;
}

}  // namespace

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned length = 0;
  EVP_Digest(data.data(), data.size(), digest, &length, EVP_sha256(), nullptr);
  return Hex(digest, length);
}

bool Sha256OfFd(int fd, std::string* hex, uint64_t* size) {
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> context(EVP_MD_CTX_new(),
                                                             EVP_MD_CTX_free);
  EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr);
  std::vector<char> buffer(1 << 20);
  uint64_t total = 0;
  for (;;) {
    ssize_t n = ::read(fd, buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) break;
    EVP_DigestUpdate(context.get(), buffer.data(), static_cast<size_t>(n));
    total += static_cast<uint64_t>(n);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned length = 0;
  EVP_DigestFinal_ex(context.get(), digest, &length);
  *hex = Hex(digest, length);
  *size = total;
  return true;
}

long long ProcessStartTime(pid_t pid) {
  if (pid <= 0) return -1;
  auto stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat) return -1;
  // The command name may hold spaces and parentheses: fields follow the
  // last ')'.
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return -1;
  std::istringstream fields(stat->substr(close + 2));
  std::string state;
  fields >> state;
  if (state == "Z" || state == "X") return -1;
  std::string field;
  // Fields 4..21 (18 of them), then the start time (22).
  for (int i = 4; i <= 21; ++i) fields >> field;
  long long start = -1;
  fields >> start;
  return start;
}

bool ProcessAlive(pid_t pid, long long start_time) {
  return pid > 0 && start_time >= 0 && ProcessStartTime(pid) == start_time;
}

int PidfdOpen(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

bool WaitPidfd(int pidfd, int timeout_ms) {
  pollfd item{pidfd, POLLIN, 0};
  for (;;) {
    int ready = ::poll(&item, 1, timeout_ms);
    if (ready < 0 && errno == EINTR) continue;
    return ready > 0;
  }
}

FileLock::FileLock(const std::string& path) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ >= 0) {
    while (::flock(fd_, LOCK_EX) != 0 && errno == EINTR) {
    }
  }
}

FileLock::~FileLock() {
  if (fd_ >= 0) ::close(fd_);
}

void CloseFrom(int first) {
  if (::syscall(SYS_close_range, first, ~0u, 0) == 0) return;
  for (int fd = first; fd < 4096; ++fd) ::close(fd);
}

namespace {

int DecodeStatus(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace

pid_t SpawnCommand(const std::vector<std::string>& argv, int stdin_fd,
                   int stdout_fd, int stderr_fd) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid != 0) return pid < 0 ? -1 : pid;
  int null_fd = ::open("/dev/null", O_RDWR);
  int wanted[3] = {stdin_fd, stdout_fd, stderr_fd};
  // Lift the sources above 2 first, so that one dup2 cannot clobber
  // another's source.
  int lifted[3];
  for (int i = 0; i < 3; ++i) {
    lifted[i] = ::fcntl(wanted[i] >= 0 ? wanted[i] : null_fd, F_DUPFD, 10);
  }
  for (int i = 0; i < 3; ++i) ::dup2(lifted[i], i);
  CloseFrom(3);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::signal(SIGPIPE, SIG_DFL);
  ::execv(args[0], args.data());
  ::_exit(127);
}

int RunCommand(const std::vector<std::string>& argv, int stdin_fd,
               int stdout_fd, int stderr_fd) {
  pid_t pid = SpawnCommand(argv, stdin_fd, stdout_fd, stderr_fd);
  if (pid < 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return DecodeStatus(status);
}

int RunCapture(const std::vector<std::string>& argv, std::string* output) {
  char path[] = "/tmp/fake-container-out-XXXXXX";
  int fd = ::mkstemp(path);
  if (fd < 0) return RunCommand(argv);
  ::unlink(path);
  int code = RunCommand(argv, -1, fd, fd);
  ::lseek(fd, 0, SEEK_SET);
  output->clear();
  char buffer[4096];
  for (ssize_t n; (n = ::read(fd, buffer, sizeof(buffer))) > 0;) {
    output->append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return code;
}

namespace {

bool RemoveChildren(int dir_fd, dev_t device) {
  int copy = ::dup(dir_fd);
  if (copy < 0) return false;
  DIR* dir = ::fdopendir(copy);
  if (dir == nullptr) {
    ::close(copy);
    return false;
  }
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(dir);
  bool ok = true;
  for (const auto& name : names) {
    struct stat st {};
    if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      continue;
    }
    if (S_ISDIR(st.st_mode)) {
      if (st.st_dev != device) {
        ok = false;  // a mount point: never descend into it
        continue;
      }
      int child = ::openat(dir_fd, name.c_str(),
                           O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0) {
        ok = false;
        continue;
      }
      ok = RemoveChildren(child, device) && ok;
      ::close(child);
      if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) != 0) ok = false;
    } else if (::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) {
      ok = false;
    }
  }
  return ok;
}

}  // namespace

bool RemoveAt(int dir_fd, const std::string& name) {
  struct stat st {};
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return errno == ENOENT;
  }
  if (!S_ISDIR(st.st_mode)) return ::unlinkat(dir_fd, name.c_str(), 0) == 0;
  int child = ::openat(dir_fd, name.c_str(),
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (child < 0) return false;
  bool ok = RemoveChildren(child, st.st_dev);
  ::close(child);
  return ::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) == 0 && ok;
}

bool RemoveTree(const std::string& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT;
  int parent =
      ::open(Dirname(path).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (parent < 0) return false;
  bool ok = RemoveAt(parent, Basename(path));
  ::close(parent);
  return ok;
}

int OpenInRoot(int root_fd, const std::string& path, int flags, mode_t mode) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.mode = (flags & O_CREAT) ? mode : 0;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  std::string relative = path;
  while (!relative.empty() && relative[0] == '/') relative.erase(0, 1);
  if (relative.empty()) relative = ".";
  for (;;) {
    long fd =
        ::syscall(SYS_openat2, root_fd, relative.c_str(), &how, sizeof(how));
    if (fd < 0 && errno == EAGAIN) continue;
    return static_cast<int>(fd);
  }
}

std::string HostArchitecture() {
  utsname name{};
  ::uname(&name);
  std::string machine = name.machine;
  if (machine == "x86_64") return "amd64";
  if (machine == "aarch64") return "arm64";
  return machine;
}

}  // namespace corral::fakes
