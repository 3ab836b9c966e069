#include "backends/linux/rootfs.h"

#include <fcntl.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "backends/linux/fs_util.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral::linux_runtime {
namespace {

constexpr unsigned long kNoSuidNoDev = MS_NOSUID | MS_NODEV;
constexpr unsigned long kNoExec = MS_NOSUID | MS_NODEV | MS_NOEXEC;

// Host directories of the "host" image; on merged-/usr systems most are
// symlinks into /usr, recreated as symlinks.
constexpr const char* kHostTopLevel[] = {"usr",   "bin",   "sbin",  "lib",
                                         "lib32", "lib64", "libx32"};

// Files under /proc that leak host information or act on the host kernel:
// replaced by /dev/null (OCI's masked paths).
constexpr const char* kProcMaskedFiles[] = {
    "kcore",         "keys",          "timer_list", "sched_debug",
    "sysrq-trigger", "latency_stats", "timer_stats"};
// Directories under /proc hidden under an empty read-only tmpfs.
constexpr const char* kProcMaskedDirectories[] = {"acpi", "scsi"};
// Directories under /proc that stay visible but read-only: writes to
// /proc/sys are checked by uid, not capability, so host root without
// capabilities could otherwise still set kernel.core_pattern.
constexpr const char* kProcReadOnly[] = {"sys", "irq", "bus", "fs"};

// Host devices bind-mounted into the sandbox's /dev.
constexpr const char* kDevices[] = {"null",   "zero",    "full",
                                    "random", "urandom", "tty"};

// Largest /etc file the host image copies.
constexpr size_t kMaxEtcFileBytes = 8u << 20;

absl::Status Mount(const char* source, const std::string& target,
                   const char* fstype, unsigned long flags,
                   const std::string& data = "") {
  if (::mount(source, target.c_str(), fstype, flags,
              data.empty() ? nullptr : data.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("mount ", fstype ? fstype : "",
                                    fstype ? " " : "", source ? source : "none",
                                    " on ", target, " flags 0x",
                                    absl::Hex(flags)));
  }
  return absl::OkStatus();
}

// A bind mount of `source` on `target` with `flags` (MS_RDONLY, nosuid...).
// A bind mount takes the flags of its source; they change only by a remount.
absl::Status Bind(const std::string& source, const std::string& target,
                  unsigned long flags) {
  RETURN_IF_ERROR(Mount(source.c_str(), target, nullptr, MS_BIND));
  return Mount(nullptr, target, nullptr, MS_BIND | MS_REMOUNT | flags);
}

absl::Status MakeDirectory(const std::string& path, mode_t mode = 0755) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", path));
  }
  return absl::OkStatus();
}

absl::Status MakeEmptyFile(const std::string& path, mode_t mode = 0444) {
  UniqueFd fd(
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, mode));
  if (!fd) return ErrnoStatus(absl::StrCat("create ", path));
  return absl::OkStatus();
}

absl::Status MakeSymlink(const std::string& target, const std::string& path) {
  if (::symlink(target.c_str(), path.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("symlink ", path, " -> ", target));
  }
  return absl::OkStatus();
}

absl::Status WriteNewFile(const std::string& path, absl::string_view content,
                          mode_t mode = 0644) {
  UniqueFd fd(::open(path.c_str(),
                     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     mode));
  if (!fd) return ErrnoStatus(absl::StrCat("create ", path));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(absl::StrCat("write ", path));
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// Copies a host file into the new root, in the kernel (sendfile).
absl::Status CopyFile(const std::string& source, const std::string& target,
                      mode_t mode) {
  UniqueFd in(::open(source.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in) return ErrnoStatus(absl::StrCat("open ", source));
  UniqueFd out(::open(target.c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      mode));
  if (!out) return ErrnoStatus(absl::StrCat("create ", target));
  for (;;) {
    ssize_t n = ::sendfile(out.get(), in.get(), nullptr, kMaxEtcFileBytes);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(absl::StrCat("sendfile ", source));
    if (n == 0) return absl::OkStatus();
  }
}

// The target of the host symlink `path`.
absl::StatusOr<std::string> ReadLink(const std::string& path) {
  char buffer[4096];
  ssize_t n = ::readlink(path.c_str(), buffer, sizeof(buffer));
  if (n < 0) return ErrnoStatus(absl::StrCat("readlink ", path));
  if (static_cast<size_t>(n) == sizeof(buffer)) {
    return absl::OutOfRangeError(absl::StrCat("readlink ", path, ": too long"));
  }
  return std::string(buffer, static_cast<size_t>(n));
}

// Shows one host entry at the same place under `root`: a symlink is
// recreated, a directory bind-mounted read-only, a regular file copied
// (small files: copying is cheaper than one mount per file), anything else
// skipped. A missing host entry is skipped.
absl::Status ShowHostEntry(const std::string& host_path,
                           const std::string& root) {
  const std::string target = root + host_path;
  struct stat st {};
  if (::lstat(host_path.c_str(), &st) != 0) {
    if (errno == ENOENT) return absl::OkStatus();
    return ErrnoStatus(absl::StrCat("lstat ", host_path));
  }
  if (S_ISLNK(st.st_mode)) {
    ASSIGN_OR_RETURN(std::string link, ReadLink(host_path));
    return MakeSymlink(link, target);
  }
  if (S_ISDIR(st.st_mode)) {
    RETURN_IF_ERROR(MakeDirectory(target));
    return Bind(host_path, target, MS_RDONLY | kNoSuidNoDev);
  }
  if (S_ISREG(st.st_mode) &&
      static_cast<size_t>(st.st_size) <= kMaxEtcFileBytes) {
    return CopyFile(host_path, target, st.st_mode & 0644);
  }
  return absl::OkStatus();
}

absl::Status BuildHostImage(const LaunchConfig& config) {
  const std::string& root = config.staging_dir;
  RETURN_IF_ERROR(Mount("tmpfs", root, "tmpfs", kNoSuidNoDev,
                        "mode=0755,size=16m,nr_inodes=4096"));
  for (const char* name : kHostTopLevel) {
    RETURN_IF_ERROR(ShowHostEntry(absl::StrCat("/", name), root));
  }
  RETURN_IF_ERROR(MakeDirectory(root + "/etc"));
  for (const std::string& name : HostEtcEntries()) {
    // Nested entries ("ssl/certs") get their parent directory, never the
    // whole host parent: /etc/ssl also holds private keys, which a sandbox
    // root that is host root (userns=false) could read as their owner.
    if (size_t slash = name.rfind('/'); slash != std::string::npos) {
      RETURN_IF_ERROR(
          MakeDirectory(absl::StrCat(root, "/etc/", name.substr(0, slash))));
    }
    RETURN_IF_ERROR(ShowHostEntry(absl::StrCat("/etc/", name), root));
  }
  RETURN_IF_ERROR(WriteNewFile(root + "/etc/hostname",
                               absl::StrCat(config.hostname, "\n")));
  RETURN_IF_ERROR(WriteNewFile(
      root + "/etc/hosts",
      absl::StrCat("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost "
                   "ip6-loopback\n127.0.1.1\t",
                   config.hostname, "\n")));
  for (const char* dir : {"proc", "sys", "dev", "tmp", "workspace"}) {
    RETURN_IF_ERROR(MakeDirectory(absl::StrCat(root, "/", dir)));
  }
  // Root's home, empty; it belongs to the sandbox's root.
  RETURN_IF_ERROR(MakeDirectory(root + "/root", 0700));
  if (config.user_namespace && ::chown((root + "/root").c_str(),
                                       config.host_uid, config.host_gid) != 0) {
    return ErrnoStatus(absl::StrCat("chown ", root, "/root"));
  }
  RETURN_IF_ERROR(MakeDirectory(root + "/var"));
  return MakeSymlink("/tmp", root + "/var/tmp");
}

absl::Status BindImageDirectory(const LaunchConfig& config) {
  RETURN_IF_ERROR(
      Mount(config.rootfs_dir.c_str(), config.staging_dir, nullptr, MS_BIND));
  // The image must carry its mount points as real directories: mount(2)
  // follows symlinks, and a link planted in an image must not redirect a
  // mount elsewhere.
  for (const char* dir : {"proc", "sys", "dev", "tmp", "workspace"}) {
    const std::string path = absl::StrCat(config.staging_dir, "/", dir);
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
      return ErrnoStatus(absl::StrCat("image mount point lstat /", dir));
    }
    if (!S_ISDIR(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat("image mount point /", dir, " is not a directory"));
    }
  }
  return absl::OkStatus();
}

absl::Status MountProc(const std::string& root) {
  const std::string proc = root + "/proc";
  RETURN_IF_ERROR(Mount("proc", proc, "proc", kNoExec));
  for (const char* name : kProcMaskedFiles) {
    const std::string path = absl::StrCat(proc, "/", name);
    if (::access(path.c_str(), F_OK) != 0) continue;
    RETURN_IF_ERROR(Bind("/dev/null", path, MS_RDONLY | MS_NOSUID | MS_NOEXEC));
  }
  for (const char* name : kProcMaskedDirectories) {
    const std::string path = absl::StrCat(proc, "/", name);
    if (::access(path.c_str(), F_OK) != 0) continue;
    RETURN_IF_ERROR(Mount("tmpfs", path, "tmpfs", MS_RDONLY | kNoExec,
                          "size=4k,mode=0555"));
  }
  for (const char* name : kProcReadOnly) {
    const std::string path = absl::StrCat(proc, "/", name);
    if (::access(path.c_str(), F_OK) != 0) continue;
    RETURN_IF_ERROR(Bind(path, path, MS_RDONLY | kNoExec));
  }
  return absl::OkStatus();
}

absl::Status MountSys(const std::string& root) {
  const std::string sys = root + "/sys";
  // sysfs mounted from inside the new network namespace shows only its
  // devices (lo).
  RETURN_IF_ERROR(Mount("sysfs", sys, "sysfs", MS_RDONLY | kNoExec));
  const std::string firmware = sys + "/firmware";
  if (::access(firmware.c_str(), F_OK) == 0) {
    RETURN_IF_ERROR(Mount("tmpfs", firmware, "tmpfs", MS_RDONLY | kNoExec,
                          "size=4k,mode=0555"));
  }
  return absl::OkStatus();
}

absl::Status MountDev(const std::string& root, uint64_t shm_bytes) {
  const std::string dev = root + "/dev";
  const std::string options = "mode=0755,size=64k,nr_inodes=64";
  RETURN_IF_ERROR(Mount("tmpfs", dev, "tmpfs", kNoExec, options));
  for (const char* name : kDevices) {
    const std::string path = absl::StrCat(dev, "/", name);
    RETURN_IF_ERROR(MakeEmptyFile(path));
    // The bind mount keeps the host /dev mount's flags (devices allowed);
    // the tmpfs around it is nodev.
    RETURN_IF_ERROR(
        Bind(absl::StrCat("/dev/", name), path, MS_NOSUID | MS_NOEXEC));
  }
  RETURN_IF_ERROR(MakeDirectory(dev + "/pts"));
  RETURN_IF_ERROR(Mount("devpts", dev + "/pts", "devpts", MS_NOSUID | MS_NOEXEC,
                        "newinstance,ptmxmode=0666,mode=0620"));
  RETURN_IF_ERROR(MakeSymlink("pts/ptmx", dev + "/ptmx"));
  RETURN_IF_ERROR(MakeDirectory(dev + "/shm", 01777));
  RETURN_IF_ERROR(Mount("tmpfs", dev + "/shm", "tmpfs", kNoExec,
                        absl::StrCat("mode=1777,size=", shm_bytes)));
  RETURN_IF_ERROR(MakeSymlink("/proc/self/fd", dev + "/fd"));
  RETURN_IF_ERROR(MakeSymlink("/proc/self/fd/0", dev + "/stdin"));
  RETURN_IF_ERROR(MakeSymlink("/proc/self/fd/1", dev + "/stdout"));
  RETURN_IF_ERROR(MakeSymlink("/proc/self/fd/2", dev + "/stderr"));
  // Nothing may add device nodes or files to /dev later.
  return Mount(nullptr, dev, nullptr, MS_REMOUNT | MS_RDONLY | kNoExec,
               options);
}

absl::Status PivotInto(const std::string& root) {
  if (::chdir(root.c_str()) != 0)
    return ErrnoStatus(absl::StrCat("chdir ", root));
  // pivot_root(".", "."): the old root ends up stacked on the new one and
  // is then detached, without needing a directory to put it in.
  if (::syscall(SYS_pivot_root, ".", ".") != 0) {
    return ErrnoStatus(absl::StrCat("pivot_root ", root));
  }
  if (::umount2(".", MNT_DETACH) != 0) return ErrnoStatus("umount2 old root");
  if (::chdir("/") != 0) return ErrnoStatus("chdir /");
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& HostEtcEntries() {
  static const auto* entries = new std::vector<std::string>{
      "passwd",          "group",           "nsswitch.conf",
      "host.conf",       "gai.conf",        "ld.so.cache",
      "ld.so.conf",      "ld.so.conf.d",    "localtime",
      "timezone",        "alternatives",    "ssl/certs",
      "ssl/openssl.cnf", "ca-certificates", "ca-certificates.conf",
      "os-release",      "debian_version",  "lsb-release",
      "profile",         "profile.d",       "bash.bashrc",
      "environment",     "shells",          "inputrc",
      "mime.types",      "protocols",       "services",
      "terminfo",        "locale.alias",
  };
  return *entries;
}

absl::Status BuildRootAndPivot(const LaunchConfig& config) {
  const std::string& root = config.staging_dir;
  // Nothing this namespace mounts may propagate back to the host.
  RETURN_IF_ERROR(Annotate(Mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE),
                           "make / private"));
  if (config.rootfs_host) {
    RETURN_IF_ERROR(Annotate(BuildHostImage(config), "host image"));
  } else {
    RETURN_IF_ERROR(Annotate(BindImageDirectory(config), "image directory"));
  }
  RETURN_IF_ERROR(Annotate(MountProc(root), "/proc"));
  RETURN_IF_ERROR(Annotate(MountSys(root), "/sys"));
  RETURN_IF_ERROR(Annotate(MountDev(root, config.tmp_bytes), "/dev"));
  std::string tmp_options = absl::StrCat("mode=1777,size=", config.tmp_bytes);
  if (config.user_namespace) {
    absl::StrAppend(&tmp_options, ",uid=", config.host_uid,
                    ",gid=", config.host_gid);
  }
  RETURN_IF_ERROR(Annotate(
      Mount("tmpfs", root + "/tmp", "tmpfs", kNoSuidNoDev, tmp_options),
      "/tmp"));
  if (config.workspace_device.empty()) {
    RETURN_IF_ERROR(
        Annotate(Bind(config.workspace_dir, root + "/workspace", kNoSuidNoDev),
                 "/workspace"));
  } else {
    // Still host root here (the user namespace comes later), so the
    // workspace's own filesystem can be mounted; in this mount namespace
    // only.
    RETURN_IF_ERROR(Annotate(Mount(config.workspace_device.c_str(),
                                   root + "/workspace", "ext4", kNoSuidNoDev),
                             "/workspace"));
    // mkfs makes lost+found (root's, unreadable to a mapped root); a
    // workspace starts empty. rmdir leaves one that holds anything alone.
    // Its root is the sandbox's root's.
    ::rmdir((root + "/workspace/lost+found").c_str());
    if (config.user_namespace &&
        ::chown((root + "/workspace").c_str(), config.host_uid,
                config.host_gid) != 0) {
      return ErrnoStatus(absl::StrCat("chown ", root, "/workspace"));
    }
  }
  // The root itself becomes read-only last, once every mount point and
  // file in it exists.
  if (config.rootfs_host) {
    RETURN_IF_ERROR(Annotate(
        Mount(nullptr, root, nullptr, MS_REMOUNT | MS_RDONLY | kNoSuidNoDev,
              "mode=0755,size=16m,nr_inodes=4096"),
        "read-only root"));
  } else {
    RETURN_IF_ERROR(
        Annotate(Mount(nullptr, root, nullptr,
                       MS_BIND | MS_REMOUNT | MS_RDONLY | kNoSuidNoDev),
                 "read-only root"));
  }
  return Annotate(PivotInto(root), "pivot_root");
}

absl::Status SetUpHostnameAndLoopback(const std::string& hostname) {
  if (::sethostname(hostname.data(), hostname.size()) != 0) {
    return ErrnoStatus(absl::StrCat("sethostname ", hostname));
  }
  UniqueFd sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!sock) return ErrnoStatus("socket AF_INET for lo");
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(sock.get(), SIOCGIFFLAGS, &request) != 0) {
    return ErrnoStatus("ioctl SIOCGIFFLAGS lo");
  }
  request.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (::ioctl(sock.get(), SIOCSIFFLAGS, &request) != 0) {
    return ErrnoStatus("ioctl SIOCSIFFLAGS lo");
  }
  return absl::OkStatus();
}

}  // namespace corral::linux_runtime
