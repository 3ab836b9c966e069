#include "backends/common/workspace_disk.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "backends/common/subprocess.h"
#include "corral/status_macros.h"

namespace corral::runtime_common {
namespace {

constexpr absl::Duration kMkfsTimeout = absl::Minutes(10);

std::string Mkfs() {
  for (const char* path : {"/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"}) {
    if (::access(path, X_OK) == 0) return path;
  }
  return "";
}

}  // namespace

absl::Status WorkspaceDiskSupport() {
  if (Mkfs().empty()) {
    return absl::FailedPreconditionError(
        "mkfs.ext4 is not installed (package e2fsprogs)");
  }
  if (::access("/dev/loop-control", R_OK | W_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("/dev/loop-control: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status RunMkfs(std::vector<std::string> args) {
  const std::string mkfs = Mkfs();
  if (mkfs.empty()) {
    return absl::FailedPreconditionError(
        "mkfs.ext4 is not installed (package e2fsprogs)");
  }
  args.insert(args.begin(), mkfs);
  ASSIGN_OR_RETURN(ProgramResult result, RunProgram(args, kMkfsTimeout));
  if (result.exit_code != 0) {
    return absl::InternalError(
        absl::StrCat("mkfs.ext4 failed (exit ", result.exit_code,
                     "): ", absl::StripAsciiWhitespace(result.output)));
  }
  return absl::OkStatus();
}

absl::Status MakeWorkspaceDisk(const std::string& path, uint64_t bytes,
                               uint32_t uid, uint32_t gid) {
  UniqueFd fd(::open(path.c_str(),
                     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0600));
  if (!fd) return ErrnoStatus(absl::StrCat("create ", path));
  if (::ftruncate(fd.get(), static_cast<off_t>(bytes)) != 0) {
    const absl::Status status = ErrnoStatus(absl::StrCat("ftruncate ", path));
    ::unlink(path.c_str());
    return status;
  }
  fd.Reset();
  // Lazy inode tables: the kernel zeroes them in the background (a VM's
  // guest reads them as zeros from the sparse file anyway), so formatting
  // writes a few hundred KiB whatever the size.
  absl::Status made = RunMkfs(
      {"-q", "-F", "-t", "ext4", "-O", "^has_journal", "-m", "0", "-L",
       "corral-workspace", "-E",
       absl::StrCat("lazy_itable_init=1,nodiscard,root_owner=", uid, ":", gid),
       path});
  if (!made.ok()) ::unlink(path.c_str());
  return made;
}

absl::StatusOr<LoopDevice> AttachLoopDevice(const std::string& image) {
  UniqueFd backing(::open(image.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC));
  if (!backing) return ErrnoStatus(absl::StrCat("open ", image));
  UniqueFd control(::open("/dev/loop-control", O_RDWR | O_CLOEXEC));
  if (!control) return ErrnoStatus("open /dev/loop-control");
  // Another process may take the free device between the two calls
  // (EBUSY): ask again.
  for (int attempt = 0; attempt < 64; ++attempt) {
    const int number = ::ioctl(control.get(), LOOP_CTL_GET_FREE);
    if (number < 0) return ErrnoStatus("LOOP_CTL_GET_FREE");
    LoopDevice device;
    device.path = absl::StrCat("/dev/loop", number);
    device.fd.Reset(::open(device.path.c_str(), O_RDWR | O_CLOEXEC));
    if (!device.fd) {
      // udev may not have made the node yet in a container's /dev.
      if (errno == ENOENT) continue;
      return ErrnoStatus(absl::StrCat("open ", device.path));
    }
    loop_config config{};
    config.fd = static_cast<uint32_t>(backing.get());
    config.info.lo_flags = LO_FLAGS_AUTOCLEAR;
    std::strncpy(reinterpret_cast<char*>(config.info.lo_file_name),
                 image.c_str(), LO_NAME_SIZE - 1);
    if (::ioctl(device.fd.get(), LOOP_CONFIGURE, &config) == 0) {
      return device;
    }
    if (errno != EBUSY) {
      return ErrnoStatus(
          absl::StrCat("LOOP_CONFIGURE ", device.path, " with ", image));
    }
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("no free loop device for ", image));
}

absl::StatusOr<LoopDevice> PrepareWorkspaceDisk(
    const std::string& workspace_dir, uint64_t bytes, bool enabled,
    uint32_t uid, uint32_t gid) {
  if (!enabled || bytes == 0 || !WorkspaceDiskSupport().ok()) {
    return LoopDevice{};
  }
  const std::string image =
      absl::StrCat(workspace_dir, "/", kWorkspaceDiskName);
  RETURN_IF_ERROR(
      Annotate(MakeWorkspaceDisk(image, bytes, uid, gid), "workspace disk"));
  return AttachLoopDevice(image);
}

}  // namespace corral::runtime_common
