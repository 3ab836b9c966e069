#include "daemon/net/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "corral/status_macros.h"

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

namespace corral::net {

absl::Status RunInNetns(int netns_fd,
                        const std::function<absl::Status()>& work) {
  absl::Status status;
  std::thread thread([&] {
    if (::setns(netns_fd, CLONE_NEWNET) != 0) {
      status = ErrnoStatus("setns to a network namespace");
      return;
    }
    status = work();
  });
  thread.join();
  return status;
}

absl::Status CreateNamedNetns(const std::string& path) {
  UniqueFd file(::open(path.c_str(),
                       O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                       0600));
  if (!file) return ErrnoStatus(absl::StrCat("create ", path));
  file.Reset();
  absl::Status status;
  std::thread thread([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      status = ErrnoStatus("unshare a network namespace");
      return;
    }
    if (::mount("/proc/thread-self/ns/net", path.c_str(), nullptr, MS_BIND,
                nullptr) != 0) {
      status = ErrnoStatus(absl::StrCat("bind the namespace on ", path));
    }
  });
  thread.join();
  if (!status.ok()) ::unlink(path.c_str());
  return status;
}

bool IsNamedNetns(const std::string& path) {
  struct statfs fs {};
  return ::statfs(path.c_str(), &fs) == 0 &&
         static_cast<unsigned long>(fs.f_type) == NSFS_MAGIC;
}

absl::Status RemoveNamedNetns(const std::string& path) {
  while (IsNamedNetns(path)) {
    if (::umount2(path.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0) {
      return ErrnoStatus(absl::StrCat("unmount ", path));
    }
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(absl::StrCat("remove ", path));
  }
  return absl::OkStatus();
}

absl::StatusOr<UniqueFd> OpenNetns(const std::string& path) {
  if (!IsNamedNetns(path)) {
    return absl::NotFoundError(
        absl::StrCat(path, " does not hold a network namespace"));
  }
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoStatus(absl::StrCat("open ", path));
  return fd;
}

absl::StatusOr<UniqueFd> SocketInNetns(int netns_fd, int domain, int type,
                                       int protocol) {
  UniqueFd socket;
  RETURN_IF_ERROR(RunInNetns(netns_fd, [&]() -> absl::Status {
    socket.Reset(::socket(domain, type | SOCK_CLOEXEC, protocol));
    if (!socket) return ErrnoStatus("socket");
    return absl::OkStatus();
  }));
  return socket;
}

absl::Status WriteNetSysctl(const std::string& key, const std::string& value) {
  const std::string path = absl::StrCat("/proc/sys/", key);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return ErrnoStatus(absl::StrCat("open ", path));
  if (::write(fd.get(), value.data(), value.size()) !=
      static_cast<ssize_t>(value.size())) {
    return ErrnoStatus(absl::StrCat("write ", path));
  }
  return absl::OkStatus();
}

}  // namespace corral::net
