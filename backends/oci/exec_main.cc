// corral-oci-exec: runs one command of an OCI runtime (runc or crun) for the
// oci plugin and reports how it ended.
//
//   corral-oci-exec --report-fd N [--unmount PATH]... [--root-at DIR SRC]
//                   -- RUNTIME ARG...
//
// Why a helper: corrald is multithreaded and reaps every child itself, so
// the plugin can neither change its own mount namespace nor wait for the
// runtime's exit status. This program is single-threaded: when asked, it
// enters a private mount namespace (the host's mounts are not changed) and
//   --unmount PATH   lazily unmounts PATH there (crun refuses this host's
//                    hybrid cgroup layout unless the controller-less cgroup2
//                    mount is gone);
//   --root-at DIR SRC  bind-mounts SRC on DIR there (runc mounts the rootfs
//                    as the sandbox's mapped root, which cannot traverse
//                    root-only directories such as the daemon's state dir);
//   --mount-ext4 DEV DIR UID:GID  mounts the ext4 block device DEV on DIR
//                    there (nosuid, nodev) and gives its root to UID:GID:
//                    the workspace's own filesystem, which the bundle binds
//                    into the container (in a user namespace the runtime
//                    could not mount it itself);
// then forks the runtime, waits for it and writes one line on fd N:
//   "exit <code>\n" or "signal <number>\n" or "error <message>\n".
// The runtime gets fds 0-2 and every fd from 3 up to N-1 (the plugin passes
// them for --preserve-fds); fd N never reaches it. A container started by
// the runtime is reparented to the nearest subreaper (corrald) when the
// runtime exits.
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "corral/platform.h"

namespace {

struct Options {
  int report_fd = -1;
  std::vector<std::string> unmounts;
  std::string ext4_device;
  std::string ext4_dir;
  uid_t ext4_uid = 0;
  gid_t ext4_gid = 0;
  std::string root_dir;
  std::string root_source;
  std::vector<char*> command;
};

void Report(int fd, const std::string& line) {
  size_t done = 0;
  while (done < line.size()) {
    ssize_t n = ::write(fd, line.data() + done, line.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    done += static_cast<size_t>(n);
  }
}

std::string Errno(const std::string& what) {
  return what + ": " + ::strerror(errno);
}

bool ParseArgs(int argc, char** argv, Options* options, std::string* error) {
  int i = 1;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg == "--report-fd" && i + 1 < argc) {
      options->report_fd = std::atoi(argv[++i]);
    } else if (arg == "--unmount" && i + 1 < argc) {
      options->unmounts.emplace_back(argv[++i]);
    } else if (arg == "--mount-ext4" && i + 3 < argc) {
      options->ext4_device = argv[++i];
      options->ext4_dir = argv[++i];
      unsigned long uid = 0, gid = 0;
      char slack = 0;
      if (std::sscanf(argv[++i], "%lu:%lu%c", &uid, &gid, &slack) != 2) {
        *error = std::string("--mount-ext4: bad owner ") + argv[i];
        return false;
      }
      options->ext4_uid = static_cast<uid_t>(uid);
      options->ext4_gid = static_cast<gid_t>(gid);
    } else if (arg == "--root-at" && i + 2 < argc) {
      options->root_dir = argv[++i];
      options->root_source = argv[++i];
    } else {
      *error = "unknown or incomplete argument " + arg;
      return false;
    }
  }
  for (; i < argc; ++i) options->command.push_back(argv[i]);
  options->command.push_back(nullptr);
  if (options->command.size() < 2 || options->command[0][0] != '/') {
    *error = "no runtime command (an absolute path) after --";
    return false;
  }
  return true;
}

// A real directory, not a symlink: mount(2) follows links.
bool IsDirectory(const std::string& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool SetUpMounts(const Options& options, std::string* error) {
  if (options.unmounts.empty() && options.root_dir.empty() &&
      options.ext4_device.empty()) {
    return true;
  }
  if (::unshare(CLONE_NEWNS) != 0) {
    *error = Errno("unshare CLONE_NEWNS");
    return false;
  }
  // Nothing done here may propagate back to the host.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    *error = Errno("make / private");
    return false;
  }
  for (const std::string& path : options.unmounts) {
    if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL &&
        errno != ENOENT) {
      *error = Errno("umount " + path);
      return false;
    }
  }
  if (!options.ext4_device.empty()) {
    if (options.ext4_device.rfind("/dev/", 0) != 0 ||
        !IsDirectory(options.ext4_dir)) {
      *error = "--mount-ext4: " + options.ext4_device +
               " must be a device "
               "and " +
               options.ext4_dir + " a directory";
      return false;
    }
    if (::mount(options.ext4_device.c_str(), options.ext4_dir.c_str(), "ext4",
                MS_NOSUID | MS_NODEV, nullptr) != 0) {
      *error = Errno("mount ext4 " + options.ext4_device + " on " +
                     options.ext4_dir);
      return false;
    }
    // mkfs makes lost+found; a workspace starts empty (rmdir leaves one
    // that holds anything alone). Its root is the sandbox's root's.
    ::rmdir((options.ext4_dir + "/lost+found").c_str());
    if (::chown(options.ext4_dir.c_str(), options.ext4_uid, options.ext4_gid) !=
        0) {
      *error = Errno("chown " + options.ext4_dir);
      return false;
    }
  }
  if (!options.root_dir.empty()) {
    if (!IsDirectory(options.root_dir) || !IsDirectory(options.root_source)) {
      *error = "--root-at: " + options.root_dir + " and " +
               options.root_source + " must be directories";
      return false;
    }
    if (::mount(options.root_source.c_str(), options.root_dir.c_str(), nullptr,
                MS_BIND | MS_REC, nullptr) != 0) {
      *error = Errno("bind " + options.root_source + " on " + options.root_dir);
      return false;
    }
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  std::string error;
  if (!ParseArgs(argc, argv, &options, &error) || options.report_fd < 3 ||
      ::fcntl(options.report_fd, F_GETFD) < 0) {
    std::fprintf(
        stderr, "corral-oci-exec: %s\n",
        error.empty() ? "needs --report-fd N (open, >= 3)" : error.c_str());
    return 2;
  }
  const int report = options.report_fd;
  ::fcntl(report, F_SETFD, FD_CLOEXEC);
  // Killed with the daemon while it waits for this helper; its runtime
  // child dies with it in turn (below).
  if (!corral::platform::DieWithParent(report)) return 2;
  if (!SetUpMounts(options, &error)) {
    Report(report, "error " + error + "\n");
    return 1;
  }
  pid_t child = ::fork();
  if (child < 0) {
    Report(report, "error " + Errno("fork") + "\n");
    return 1;
  }
  if (child == 0) {
    // The runtime must not outlive a plugin that gave up on it (killed
    // this helper after a timeout).
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() == 1) ::_exit(127);
    static char path_env[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
    char* envp[] = {path_env, nullptr};
    ::execve(options.command[0], options.command.data(), envp);
    Report(
        report,
        "error " + Errno(std::string("execve ") + options.command[0]) + "\n");
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) {
      Report(report, "error " + Errno("waitpid") + "\n");
      return 1;
    }
  }
  corral::platform::OutliveParent();
  if (WIFEXITED(status)) {
    Report(report, "exit " + std::to_string(WEXITSTATUS(status)) + "\n");
  } else {
    Report(report, "signal " + std::to_string(WTERMSIG(status)) + "\n");
  }
  return 0;
}
