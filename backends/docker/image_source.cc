#include "backends/docker/image_source.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <map>
#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "backends/common/host_root.h"
#include "backends/common/seccomp_json.h"
#include "backends/docker/rootfs_tar.h"
#include "backends/linux/fs_util.h"
#include "corral/remove_tree.h"
#include "corral/status_macros.h"

namespace corral::docker {
namespace {

namespace bv1 = ::corral::backend::v1;

// The host's /etc changes rarely; the skeleton is rebuilt (and its key
// recomputed) at most this often.
constexpr absl::Duration kHostRootMaxAge = absl::Seconds(60);
constexpr char kHostRootDir[] = ".host-root";

// Builds the "host" image skeleton under <runtime_dir>/.host-root/<key>,
// where key hashes its tar (with zero mtimes: the same host gives the same
// key). The engine (re)imports it only when the key is new.
absl::StatusOr<ImageSource> BuildHostSource(const std::string& runtime_dir) {
  const std::string parent = absl::StrCat(runtime_dir, "/", kHostRootDir);
  if (::mkdir(parent.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", parent));
  }
  std::string scratch = absl::StrCat(parent, "/new-XXXXXX");
  if (::mkdtemp(scratch.data()) == nullptr) {
    return ErrnoStatus(absl::StrCat("mkdtemp ", scratch));
  }
  auto remove_scratch = [&] { (void)corral::RemoveTree(scratch); };
  if (::chmod(scratch.c_str(), 0755) != 0) {
    absl::Status status = ErrnoStatus(absl::StrCat("chmod ", scratch));
    remove_scratch();
    return status;
  }
  // The engine replaces /etc/hostname and /etc/hosts with its own files
  // (from the container's Hostname), so the skeleton's are generic.
  runtime_common::HostRootOptions options;
  options.hostname = "corral";
  Fnv1a hash;
  absl::Status status = runtime_common::WriteHostRootSkeleton(scratch, options);
  if (status.ok()) {
    status = WriteDirectoryTar(
        scratch,
        [&](absl::string_view piece) {
          hash.Update(piece);
          return absl::OkStatus();
        },
        /*zero_mtime=*/true);
  }
  if (!status.ok()) {
    remove_scratch();
    return Annotate(status, "building the host image skeleton");
  }
  ImageSource source;
  source.key = hash.Hex();
  source.directory = absl::StrCat(parent, "/", source.key);
  source.zero_mtime = true;
  struct stat st {};
  if (::lstat(source.directory.c_str(), &st) == 0) {
    remove_scratch();  // the same skeleton is already there
  } else if (::rename(scratch.c_str(), source.directory.c_str()) != 0) {
    status = ErrnoStatus(absl::StrCat("rename ", scratch));
    remove_scratch();
    return status;
  }
  for (const runtime_common::HostBind& bind : runtime_common::HostRootBinds()) {
    source.binds.emplace_back(bind.source, bind.destination);
  }
  return source;
}

absl::StatusOr<ImageSource> HostSource(const std::string& runtime_dir) {
  struct Entry {
    ImageSource source;
    absl::Time built;
  };
  static std::mutex mutex;
  static auto* cache = new std::map<std::string, Entry>;
  std::lock_guard lock(mutex);
  auto it = cache->find(runtime_dir);
  if (it != cache->end() && absl::Now() - it->second.built < kHostRootMaxAge) {
    struct stat st {};
    // Still there (reconcile or an operator may have removed it).
    if (::lstat(it->second.source.directory.c_str(), &st) == 0) {
      return it->second.source;
    }
  }
  ASSIGN_OR_RETURN(ImageSource source, BuildHostSource(runtime_dir));
  (*cache)[runtime_dir] = Entry{source, absl::Now()};
  return source;
}

}  // namespace

absl::StatusOr<ImageSource> ResolveImageSource(const bv1::RootFs& rootfs,
                                               const std::string& runtime_dir) {
  if (rootfs.source_case() == bv1::RootFs::kDirectory) {
    ImageSource source;
    source.directory = rootfs.directory();
    ASSIGN_OR_RETURN(source.key, DirectoryImageKey(source.directory));
    return source;
  }
  if (rootfs.source_case() == bv1::RootFs::kHost && rootfs.host()) {
    return HostSource(runtime_dir);
  }
  return absl::InvalidArgumentError("the sandbox spec has no rootfs");
}

absl::StatusOr<std::string> SeccompProfileJson() {
  return runtime_common::SeccompProfileText();
}

std::shared_ptr<std::mutex> ImportLock(const std::string& ref) {
  static std::mutex mutex;
  static auto* locks = new std::map<std::string, std::weak_ptr<std::mutex>>;
  std::lock_guard lock(mutex);
  auto& slot = (*locks)[ref];
  std::shared_ptr<std::mutex> result = slot.lock();
  if (!result) {
    result = std::make_shared<std::mutex>();
    slot = result;
  }
  return result;
}

}  // namespace corral::docker
