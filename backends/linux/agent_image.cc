#include "backends/linux/agent_image.h"

#include <fcntl.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "corral/status_macros.h"

#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif

namespace corral::linux_runtime {

absl::StatusOr<UniqueFd> MakeSealedCopy(const std::string& path) {
  UniqueFd source(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!source) return ErrnoStatus(absl::StrCat("open ", path));
  struct stat st {};
  if (::fstat(source.get(), &st) != 0) {
    return ErrnoStatus(absl::StrCat("fstat ", path));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a regular file"));
  }
  // MFD_EXEC: kernels with vm.memfd_noexec may default to non-executable
  // memfds; older kernels reject the flag, so retry without it.
  const unsigned flags = MFD_CLOEXEC | MFD_ALLOW_SEALING;
  UniqueFd copy(::memfd_create("corral-agent", flags | MFD_EXEC));
  if (!copy && errno == EINVAL)
    copy.Reset(::memfd_create("corral-agent", flags));
  if (!copy) return ErrnoStatus("memfd_create corral-agent");
  off_t offset = 0;
  while (offset < st.st_size) {
    ssize_t n = ::sendfile(copy.get(), source.get(), &offset,
                           static_cast<size_t>(st.st_size - offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(absl::StrCat("sendfile ", path));
    if (n == 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " shrank while it was copied"));
    }
  }
  if (::fchmod(copy.get(), 0555) != 0) {
    return ErrnoStatus("fchmod corral-agent memfd");
  }
  if (::fcntl(copy.get(), F_ADD_SEALS,
              F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    return ErrnoStatus("fcntl F_ADD_SEALS corral-agent memfd");
  }
  return copy;
}

absl::StatusOr<std::shared_ptr<const UniqueFd>> AgentImage(
    const std::string& agent_path) {
  struct Cached {
    dev_t dev;
    ino_t ino;
    off_t size;
    timespec mtime;
    std::shared_ptr<const UniqueFd> fd;
  };
  static std::mutex mutex;
  static std::map<std::string, Cached>* cache =
      new std::map<std::string, Cached>;
  struct stat st {};
  if (::stat(agent_path.c_str(), &st) != 0) {
    return ErrnoStatus(absl::StrCat("stat ", agent_path));
  }
  std::lock_guard lock(mutex);
  auto it = cache->find(agent_path);
  if (it != cache->end() && it->second.dev == st.st_dev &&
      it->second.ino == st.st_ino && it->second.size == st.st_size &&
      it->second.mtime.tv_sec == st.st_mtim.tv_sec &&
      it->second.mtime.tv_nsec == st.st_mtim.tv_nsec) {
    return it->second.fd;
  }
  ASSIGN_OR_RETURN(UniqueFd copy, MakeSealedCopy(agent_path));
  auto fd = std::make_shared<const UniqueFd>(std::move(copy));
  (*cache)[agent_path] =
      Cached{st.st_dev, st.st_ino, st.st_size, st.st_mtim, fd};
  return fd;
}

}  // namespace corral::linux_runtime
