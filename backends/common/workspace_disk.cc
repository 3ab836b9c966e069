#include "backends/common/workspace_disk.h"

#include <fcntl.h>
#include <linux/loop.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "backends/common/subprocess.h"
#include "corral/directory.h"
#include "corral/hex_id.h"
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

namespace {

constexpr int kReadyPerSize = 2;
constexpr size_t kSizesKept = 4;
constexpr char kPoolSuffix[] = ".ext4";

// The images of one pool directory, and the thread that formats them.
// One per directory, for the life of the process.
class DiskPool {
 public:
  static DiskPool& For(const std::string& dir) {
    static std::mutex mutex;
    static auto* pools = new std::map<std::string, DiskPool*>();
    std::lock_guard lock(mutex);
    DiskPool*& pool = (*pools)[dir];
    if (pool == nullptr) pool = new DiskPool(dir);
    return *pool;
  }

  // Moves a ready image of `bytes` to `path`: false when none is ready.
  bool Take(uint64_t bytes, const std::string& path) {
    for (const std::string& name : Ready(bytes)) {
      const std::string from = absl::StrCat(dir_, "/", name);
      if (::rename(from.c_str(), path.c_str()) == 0) return true;
      if (errno != ENOENT) return false;  // another filesystem, say
    }
    return false;
  }

  // Keep images of `bytes` ready from now on.
  void Want(uint64_t bytes) {
    if (bytes == 0) return;
    {
      std::lock_guard lock(mutex_);
      wanted_.erase(std::remove(wanted_.begin(), wanted_.end(), bytes),
                    wanted_.end());
      wanted_.push_front(bytes);
      if (wanted_.size() > kSizesKept) wanted_.pop_back();
    }
    wake_.notify_one();
  }

 private:
  explicit DiskPool(std::string dir) : dir_(std::move(dir)) {
    ::mkdir(dir_.c_str(), 0700);
    // Images half-made by an earlier process go; finished ones are used.
    for (const std::string& name : Names()) {
      if (absl::StartsWith(name, ".tmp-")) {
        ::unlink(absl::StrCat(dir_, "/", name).c_str());
      }
    }
    std::thread([this] { Work(); }).detach();
  }

  std::vector<std::string> Names() const {
    return ListDirectory(dir_).value_or(std::vector<std::string>());
  }

  // The ready images of `bytes`: "<bytes>-<random>.ext4".
  std::vector<std::string> Ready(uint64_t bytes) const {
    const std::string prefix = absl::StrCat(bytes, "-");
    std::vector<std::string> ready;
    for (const std::string& name : Names()) {
      if (absl::StartsWith(name, prefix) && absl::EndsWith(name, kPoolSuffix)) {
        ready.push_back(name);
      }
    }
    return ready;
  }

  // Removes the images of sizes no longer kept, so that a client asking
  // for ever new sizes cannot fill the host's disk with them.
  void Prune(const std::deque<uint64_t>& kept) const {
    for (const std::string& name : Names()) {
      if (!absl::EndsWith(name, kPoolSuffix) || absl::StartsWith(name, ".")) {
        continue;
      }
      const bool wanted =
          std::any_of(kept.begin(), kept.end(), [&](uint64_t size) {
            return absl::StartsWith(name, absl::StrCat(size, "-"));
          });
      if (!wanted) ::unlink(absl::StrCat(dir_, "/", name).c_str());
    }
  }

  void Work() {
    for (;;) {
      uint64_t bytes = 0;
      {
        std::unique_lock lock(mutex_);
        if (pruned_for_ != wanted_) {
          Prune(wanted_);
          pruned_for_ = wanted_;
        }
        wake_.wait(lock, [&] {
          if (pruned_for_ != wanted_) return true;  // prune first
          for (uint64_t size : wanted_) {
            if (static_cast<int>(Ready(size).size()) < kReadyPerSize) {
              bytes = size;
              return true;
            }
          }
          return false;
        });
        if (bytes == 0) continue;
      }
      absl::StatusOr<std::string> random = RandomHexId(8);
      if (!random.ok()) continue;
      const std::string name = absl::StrCat(bytes, "-", *random, kPoolSuffix);
      const std::string temporary = absl::StrCat(dir_, "/.tmp-", name);
      absl::Status made = MakeWorkspaceDisk(temporary, bytes, 0, 0);
      if (made.ok() && ::rename(temporary.c_str(),
                                absl::StrCat(dir_, "/", name).c_str()) != 0) {
        made = ErrnoStatus("rename a pool image");
        ::unlink(temporary.c_str());
      }
      if (!made.ok()) {
        // A full disk, say: creates make their own meanwhile.
        std::this_thread::sleep_for(std::chrono::seconds(5));
      }
    }
  }

  const std::string dir_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<uint64_t> wanted_;      // guarded by mutex_; most recent first
  std::deque<uint64_t> pruned_for_;  // guarded by mutex_
};

}  // namespace

absl::Status TakeWorkspaceDisk(const std::string& pool_dir, uint64_t bytes,
                               const std::string& path) {
  DiskPool& pool = DiskPool::For(pool_dir);
  absl::Status status = absl::OkStatus();
  if (!pool.Take(bytes, path)) status = MakeWorkspaceDisk(path, bytes, 0, 0);
  pool.Want(bytes);
  return status;
}

absl::StatusOr<LoopDevice> PrepareWorkspaceDisk(
    const std::string& workspace_dir, uint64_t bytes, bool enabled,
    const std::string& pool_dir) {
  if (!enabled || bytes == 0 || !WorkspaceDiskSupport().ok()) {
    return LoopDevice{};
  }
  const std::string image =
      absl::StrCat(workspace_dir, "/", kWorkspaceDiskName);
  RETURN_IF_ERROR(
      Annotate(TakeWorkspaceDisk(pool_dir, bytes, image), "workspace disk"));
  return AttachLoopDevice(image);
}

}  // namespace corral::runtime_common
