#include "backends/common/host_root.h"

#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "backends/linux/rootfs.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral::runtime_common {
namespace {

// Host directories of the "host" image; on merged-/usr systems all but /usr
// are symlinks into it, recreated as symlinks.
constexpr const char* kHostTopLevel[] = {"usr",   "bin",   "sbin",  "lib",
                                         "lib32", "lib64", "libx32"};

// Largest /etc file copied (ld.so.cache is the big one).
constexpr off_t kMaxEtcFileBytes = 8 << 20;

// How one host entry appears in the skeleton.
enum class Kind { kMissing, kSymlink, kBind, kCopy };

struct Entry {
  Kind kind = Kind::kMissing;
  std::string host_path;  // absolute host path
  std::string link;       // kSymlink: the link's target
  mode_t mode = 0;        // kCopy: the file's mode
};

Entry Inspect(const std::string& host_path) {
  Entry entry;
  entry.host_path = host_path;
  struct stat st {};
  if (::lstat(host_path.c_str(), &st) != 0) return entry;
  if (S_ISLNK(st.st_mode)) {
    char buffer[4096];
    ssize_t n = ::readlink(host_path.c_str(), buffer, sizeof(buffer));
    if (n > 0 && static_cast<size_t>(n) < sizeof(buffer)) {
      entry.kind = Kind::kSymlink;
      entry.link.assign(buffer, static_cast<size_t>(n));
    }
  } else if (S_ISDIR(st.st_mode)) {
    entry.kind = Kind::kBind;
  } else if (S_ISREG(st.st_mode) && st.st_size <= kMaxEtcFileBytes) {
    entry.kind = Kind::kCopy;
    entry.mode = st.st_mode & 0644;
  }
  return entry;
}

// Every host entry of the image, in order: the top level, then /etc.
std::vector<Entry> Plan() {
  std::vector<Entry> entries;
  for (const char* name : kHostTopLevel) {
    entries.push_back(Inspect(absl::StrCat("/", name)));
  }
  for (const std::string& name : linux_runtime::HostEtcEntries()) {
    entries.push_back(Inspect(absl::StrCat("/etc/", name)));
  }
  return entries;
}

absl::Status MakeDirectory(const std::string& path, mode_t mode = 0755) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", path));
  }
  // mkdir applies the umask; the sandbox must be able to traverse.
  if (::chmod(path.c_str(), mode) != 0) {
    return ErrnoStatus(absl::StrCat("chmod ", path));
  }
  return absl::OkStatus();
}

absl::Status MakeSymlink(const std::string& target, const std::string& path) {
  if (::symlink(target.c_str(), path.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("symlink ", path, " -> ", target));
  }
  return absl::OkStatus();
}

absl::Status WriteNewFile(const std::string& path, const std::string& content) {
  UniqueFd fd(::open(path.c_str(),
                     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0644));
  if (!fd) return ErrnoStatus(absl::StrCat("create ", path));
  if (::fchmod(fd.get(), 0644) != 0) {
    return ErrnoStatus(absl::StrCat("chmod ", path));
  }
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(absl::StrCat("write ", path));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status CopyFile(const std::string& source, const std::string& target,
                      mode_t mode) {
  UniqueFd in(::open(source.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in) return ErrnoStatus(absl::StrCat("open ", source));
  UniqueFd out(::open(target.c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      mode));
  if (!out) return ErrnoStatus(absl::StrCat("create ", target));
  if (::fchmod(out.get(), mode) != 0) {
    return ErrnoStatus(absl::StrCat("chmod ", target));
  }
  off_t copied = 0;
  for (;;) {
    ssize_t n = ::sendfile(out.get(), in.get(), nullptr, 1 << 20);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(absl::StrCat("sendfile ", source));
    if (n == 0) return absl::OkStatus();
    copied += n;
    // The file grew after it was inspected.
    if (copied > kMaxEtcFileBytes) {
      return absl::OutOfRangeError(absl::StrCat(source, " is too large"));
    }
  }
}

}  // namespace

const std::vector<std::string>& SandboxMountPoints() {
  static const auto* points = new std::vector<std::string>{
      "/proc", "/sys", "/dev", "/tmp", "/workspace"};
  return *points;
}

std::vector<HostBind> HostRootBinds() {
  std::vector<HostBind> binds;
  for (const Entry& entry : Plan()) {
    if (entry.kind == Kind::kBind) {
      binds.push_back({entry.host_path, entry.host_path});
    }
  }
  return binds;
}

absl::Status WriteHostRootSkeleton(const std::string& dir,
                                   const HostRootOptions& options) {
  RETURN_IF_ERROR(MakeDirectory(dir));
  RETURN_IF_ERROR(MakeDirectory(dir + "/etc"));
  for (const Entry& entry : Plan()) {
    const std::string target = dir + entry.host_path;
    // Nested /etc entries ("ssl/certs") get their parent directory, never
    // the host's whole parent (/etc/ssl also holds private keys).
    if (entry.kind != Kind::kMissing) {
      std::string parent = target.substr(0, target.rfind('/'));
      if (parent.size() > dir.size() + 4) {
        RETURN_IF_ERROR(MakeDirectory(parent));
      }
    }
    switch (entry.kind) {
      case Kind::kMissing:
        break;
      case Kind::kSymlink:
        RETURN_IF_ERROR(MakeSymlink(entry.link, target));
        break;
      case Kind::kBind:
        RETURN_IF_ERROR(MakeDirectory(target));
        break;
      case Kind::kCopy:
        RETURN_IF_ERROR(CopyFile(entry.host_path, target, entry.mode));
        break;
    }
  }
  RETURN_IF_ERROR(WriteNewFile(dir + "/etc/hostname",
                               absl::StrCat(options.hostname, "\n")));
  RETURN_IF_ERROR(WriteNewFile(
      dir + "/etc/hosts",
      absl::StrCat("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost "
                   "ip6-loopback\n127.0.1.1\t",
                   options.hostname, "\n")));
  for (const std::string& point : SandboxMountPoints()) {
    RETURN_IF_ERROR(MakeDirectory(dir + point));
  }
  // Root's home, empty; it belongs to the sandbox's root.
  const std::string home = dir + "/root";
  RETURN_IF_ERROR(MakeDirectory(home, 0700));
  if (::lchown(home.c_str(), options.root_uid, options.root_gid) != 0) {
    return ErrnoStatus(absl::StrCat("chown ", home));
  }
  RETURN_IF_ERROR(MakeDirectory(dir + "/var"));
  return MakeSymlink("/tmp", dir + "/var/tmp");
}

}  // namespace corral::runtime_common
