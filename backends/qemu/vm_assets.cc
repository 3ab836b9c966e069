#include "backends/qemu/vm_assets.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "backends/common/subprocess.h"
#include "backends/common/workspace_disk.h"
#include "backends/linux/fs_util.h"
#include "corral/remove_tree.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral::qemu_runtime {
namespace {

constexpr char kBuilder[] = "deploy/images/build-vm-kernel.sh";
constexpr char kInitramfsPrefix[] = "initramfs-";
constexpr char kImagePrefix[] = "image-";
constexpr char kTemporaryPrefix[] = ".tmp-";

std::string FileIdentity(const struct stat& st) {
  return absl::StrFormat("%x-%x-%x.%x", st.st_dev, st.st_ino, st.st_ctim.tv_sec,
                         st.st_ctim.tv_nsec);
}

absl::Status MakeDirectory(const std::string& dir) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", dir));
  }
  return absl::OkStatus();
}

// What an image tree needs on ext4: 4 KiB blocks for data and directories,
// one inode per entry (counted by nftw, which cannot take a lambda with
// state: a thread-local tally).
struct TreeSize {
  uint64_t blocks = 0;
  uint64_t inodes = 0;
};
thread_local TreeSize* tally = nullptr;

int CountEntry(const char*, const struct stat* st, int, FTW*) {
  tally->inodes += 1;
  if (S_ISREG(st->st_mode) || S_ISDIR(st->st_mode) || S_ISLNK(st->st_mode)) {
    tally->blocks += (static_cast<uint64_t>(st->st_size) + 4095) / 4096 + 1;
  }
  return 0;
}

}  // namespace

absl::Status ReplaceFile(const std::string& path, const std::string& data) {
  const std::string dir = path.substr(0, path.rfind('/'));
  std::string temporary = absl::StrCat(dir, "/", kTemporaryPrefix, "XXXXXX");
  UniqueFd fd(::mkostemp(temporary.data(), O_CLOEXEC));
  if (!fd) return ErrnoStatus(absl::StrCat("mkostemp in ", dir));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      absl::Status status = ErrnoStatus(absl::StrCat("write ", temporary));
      ::unlink(temporary.c_str());
      return status;
    }
    done += static_cast<size_t>(n);
  }
  if (::fchmod(fd.get(), 0644) != 0 || ::fsync(fd.get()) != 0 ||
      ::rename(temporary.c_str(), path.c_str()) != 0) {
    absl::Status status = ErrnoStatus(absl::StrCat("finish ", path));
    ::unlink(temporary.c_str());
    return status;
  }
  return absl::OkStatus();
}

absl::StatusOr<Kernel> FindKernel(const std::string& dir) {
  auto missing = [&](const std::string& what) {
    return absl::FailedPreconditionError(
        absl::StrCat("no VM kernel in ", dir, " (", what, "): run ", kBuilder,
                     " ", dir, " or set runtimes.qemu.kernel_dir"));
  };
  Kernel kernel;
  kernel.vmlinux = absl::StrCat(dir, "/vmlinux");
  struct stat st {};
  if (::stat(kernel.vmlinux.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return missing("vmlinux");
  }
  auto release = linux_runtime::ReadFile(absl::StrCat(dir, "/release"));
  if (!release.ok()) return missing("release");
  kernel.release = std::string(absl::StripAsciiWhitespace(*release));
  const std::string modules = absl::StrCat(dir, "/modules");
  DIR* listing = ::opendir(modules.c_str());
  if (listing == nullptr) return missing("modules/");
  while (dirent* entry = ::readdir(listing)) {
    std::string name = entry->d_name;
    if (absl::EndsWith(name, ".ko")) {
      kernel.modules.push_back(absl::StrCat(modules, "/", name));
    }
  }
  ::closedir(listing);
  std::sort(kernel.modules.begin(), kernel.modules.end());
  return kernel;
}

void CpioWriter::Entry(const std::string& name, uint32_t mode, uint32_t major,
                       uint32_t minor, const std::string& data) {
  // newc: "070701" and 13 fields of 8 hex digits, the name with its NUL,
  // padding to 4 bytes, the data, padding to 4 bytes.
  absl::StrAppendFormat(
      &out_, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
      inode_++, mode, 0, 0, 1, 0, data.size(), 0, 0, major, minor,
      name.size() + 1, 0);
  out_.append(name);
  out_.push_back('\0');
  out_.resize((out_.size() + 3) & ~size_t{3}, '\0');
  out_.append(data);
  out_.resize((out_.size() + 3) & ~size_t{3}, '\0');
}

void CpioWriter::Directory(const std::string& name, uint32_t mode) {
  Entry(name, S_IFDIR | mode, 0, 0, "");
}

void CpioWriter::File(const std::string& name, uint32_t mode,
                      const std::string& data) {
  Entry(name, S_IFREG | mode, 0, 0, data);
}

void CpioWriter::CharacterDevice(const std::string& name, uint32_t mode,
                                 uint32_t major, uint32_t minor) {
  Entry(name, S_IFCHR | mode, major, minor, "");
}

std::string CpioWriter::Finish() {
  Entry("TRAILER!!!", 0, 0, 0, "");
  return std::move(out_);
}

namespace {

// The modules an initramfs carries: the virtiofs ones (fuse, virtiofs)
// only for a root over virtiofs (they are a third of the modules' bytes and
// of their loading time), the vsock ones only for a guest of Firecracker.
std::vector<std::string> ModulesFor(const Kernel& kernel, bool virtiofs,
                                    bool vsock) {
  std::vector<std::string> modules;
  for (const std::string& module : kernel.modules) {
    const bool share = absl::EndsWith(module, "-fuse.ko") ||
                       absl::EndsWith(module, "-virtiofs.ko");
    const bool socket = absl::EndsWith(module, "-vsock.ko") ||
                        absl::StrContains(module, "-vmw_vsock_virtio_");
    if ((virtiofs || !share) && (vsock || !socket)) {
      modules.push_back(module);
    }
  }
  return modules;
}

}  // namespace

absl::StatusOr<std::string> InitramfsPath(const std::string& cache_dir,
                                          const Kernel& kernel,
                                          const std::string& agent_path,
                                          bool virtiofs, bool vsock) {
  // Named after what it holds: a new agent build or module set is a new
  // file, and the old one is pruned.
  std::string key = virtiofs ? "virtiofs." : "disk.";
  std::vector<std::string> parts = ModulesFor(kernel, virtiofs, vsock);
  parts.push_back(agent_path);
  for (const std::string& path : parts) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
      return ErrnoStatus(absl::StrCat("stat ", path));
    }
    absl::StrAppendFormat(&key, "%x.%x.%x.", st.st_ino, st.st_size,
                          st.st_mtim.tv_sec ^ st.st_mtim.tv_nsec);
  }
  return absl::StrFormat("%s/%s%016x.cpio", cache_dir, kInitramfsPrefix,
                         std::hash<std::string>{}(key));
}

absl::StatusOr<std::string> InitramfsFor(const std::string& cache_dir,
                                         const Kernel& kernel,
                                         const std::string& agent_path,
                                         bool virtiofs, bool vsock) {
  ASSIGN_OR_RETURN(
      std::string path,
      InitramfsPath(cache_dir, kernel, agent_path, virtiofs, vsock));
  if (::access(path.c_str(), R_OK) == 0) return path;

  CpioWriter cpio;
  for (const char* dir : {"dev", "proc", "sys", "newroot", "modules"}) {
    cpio.Directory(dir, 0755);
  }
  cpio.CharacterDevice("dev/console", 0600, 5, 1);
  for (const std::string& module : ModulesFor(kernel, virtiofs, vsock)) {
    ASSIGN_OR_RETURN(std::string data, linux_runtime::ReadFile(module));
    cpio.File(absl::StrCat("modules/", module.substr(module.rfind('/') + 1)),
              0644, data);
  }
  ASSIGN_OR_RETURN(std::string agent, linux_runtime::ReadFile(agent_path));
  cpio.File("init", 0755, agent);
  RETURN_IF_ERROR(MakeDirectory(cache_dir));
  RETURN_IF_ERROR(ReplaceFile(path, cpio.Finish()));
  return path;
}

bool ValidSavedName(absl::string_view name) {
  if (name.empty() || name.size() > 64 || name[0] == '.' || name[0] == '-') {
    return false;
  }
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

absl::StatusOr<std::string> SavedMachineDir(const std::string& runtime_dir,
                                            absl::string_view prefix,
                                            absl::string_view runtime,
                                            const std::string& state) {
  absl::string_view text = state;
  auto bad = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("not a saved state of the ", runtime, " runtime"));
  };
  if (!absl::ConsumePrefix(&text, prefix)) return bad();
  const std::string dir(text);
  std::vector<std::string> parts =
      absl::StrSplit(absl::string_view(dir).substr(
                         std::min(dir.size(), runtime_dir.size() + 1)),
                     '/');
  if (!linux_runtime::CleanAbsolutePath(dir) ||
      !absl::StartsWith(dir, runtime_dir + "/") || parts.size() != 3 ||
      !linux_runtime::ValidSandboxId(parts[0]) ||
      parts[1] != kSavedMachinesDir || !ValidSavedName(parts[2])) {
    return bad();
  }
  struct stat st {};
  if (::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::NotFoundError(
        "the saved machine is gone (its sandbox was removed?)");
  }
  return dir;
}

absl::Status DeleteSavedMachine(const std::string& runtime_dir,
                                absl::string_view prefix,
                                absl::string_view runtime,
                                const std::string& id,
                                const std::string& state) {
  auto dir = SavedMachineDir(runtime_dir, prefix, runtime, state);
  if (absl::IsNotFound(dir.status())) return absl::OkStatus();
  if (!dir.ok()) return dir.status();
  // Only the sandbox's own saved machines.
  if (!absl::StartsWith(*dir, absl::StrCat(runtime_dir, "/", id, "/"))) {
    return absl::InvalidArgumentError(
        "the saved machine belongs to another sandbox");
  }
  return corral::RemoveTree(*dir);
}

absl::StatusOr<std::string> ImageDiskFor(const std::string& cache_dir,
                                         const std::string& image_dir) {
  struct stat st {};
  if (::stat(image_dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("image directory ", image_dir, " is not a directory"));
  }
  const std::string base =
      absl::StrCat(cache_dir, "/", kImagePrefix, FileIdentity(st));
  const std::string path = absl::StrCat(base, ".ext4");
  if (::access(path.c_str(), R_OK) == 0) return path;
  RETURN_IF_ERROR(MakeDirectory(cache_dir));

  TreeSize size;
  tally = &size;
  int walked = ::nftw(image_dir.c_str(), CountEntry, 64, FTW_PHYS);
  tally = nullptr;
  if (walked != 0) return ErrnoStatus(absl::StrCat("walk ", image_dir));
  // Room for ext4's own metadata (bitmaps, inode tables, directories'
  // indexes) on top of the data.
  const uint64_t inodes = size.inodes + size.inodes / 4 + 64;
  uint64_t bytes =
      size.blocks * 4096 + size.blocks * 4096 / 8 + inodes * 256 + (8u << 20);
  // Two creates may build the same disk at once: each its own file, and
  // the rename makes one of them the disk.
  std::string temporary =
      absl::StrCat(cache_dir, "/", kTemporaryPrefix, kImagePrefix,
                   FileIdentity(st), ".", ::gettid());
  absl::Status built;
  // A tree that needs more than the estimate (many tiny files) gets a
  // second, larger try.
  for (int attempt = 0; attempt < 2; ++attempt) {
    ::unlink(temporary.c_str());
    built = runtime_common::RunMkfs(
        {"-q", "-F", "-t", "ext4", "-O", "^has_journal", "-m", "0", "-N",
         absl::StrCat(inodes), "-L", "corral-root", "-E", "root_owner=0:0",
         "-d", image_dir, temporary, absl::StrCat((bytes + 1023) / 1024, "k")});
    if (built.ok()) break;
    bytes *= 2;
  }
  if (!built.ok()) {
    ::unlink(temporary.c_str());
    return Annotate(built, absl::StrCat("building the disk of ", image_dir));
  }
  // The source beside the disk, for PruneCache.
  RETURN_IF_ERROR(ReplaceFile(absl::StrCat(base, ".source"), image_dir));
  if (::chmod(temporary.c_str(), 0644) != 0 ||
      ::rename(temporary.c_str(), path.c_str()) != 0) {
    absl::Status status = ErrnoStatus(absl::StrCat("rename to ", path));
    ::unlink(temporary.c_str());
    return status;
  }
  return path;
}

absl::Status CopySparse(const std::string& from, const std::string& to) {
  UniqueFd in(::open(from.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!in) return ErrnoStatus(absl::StrCat("open ", from));
  struct stat st {};
  if (::fstat(in.get(), &st) != 0)
    return ErrnoStatus(absl::StrCat("stat ", from));
  UniqueFd out(::open(
      to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!out) return ErrnoStatus(absl::StrCat("create ", to));
  auto fail = [&](const std::string& what) {
    absl::Status status = ErrnoStatus(what);
    ::unlink(to.c_str());
    return status;
  };
  if (::ftruncate(out.get(), st.st_size) != 0) {
    return fail(absl::StrCat("ftruncate ", to));
  }
  off_t offset = 0;
  while (offset < st.st_size) {
    off_t data = ::lseek(in.get(), offset, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // only a hole from here on
      return fail(absl::StrCat("lseek ", from));
    }
    off_t hole = ::lseek(in.get(), data, SEEK_HOLE);
    if (hole < 0) return fail(absl::StrCat("lseek ", from));
    off_t in_at = data, out_at = data;
    while (in_at < hole) {
      ssize_t n = ::copy_file_range(in.get(), &in_at, out.get(), &out_at,
                                    static_cast<size_t>(hole - in_at), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return fail(absl::StrCat("copy ", from, " to ", to));
    }
    offset = hole;
  }
  if (::fsync(out.get()) != 0) return fail(absl::StrCat("fsync ", to));
  return absl::OkStatus();
}

absl::Status LinkOrCopy(const std::string& from, const std::string& to) {
  if (::link(from.c_str(), to.c_str()) == 0) return absl::OkStatus();
  if (errno != EXDEV && errno != EPERM && errno != EMLINK) {
    return ErrnoStatus(absl::StrCat("link ", from, " to ", to));
  }
  return CopySparse(from, to);
}

uint64_t DiskUsage(const std::string& dir) {
  uint64_t bytes = 0;
  DIR* listing = ::opendir(dir.c_str());
  if (listing == nullptr) return 0;
  while (dirent* entry = ::readdir(listing)) {
    struct stat st {};
    if (::fstatat(::dirfd(listing), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) ==
            0 &&
        S_ISREG(st.st_mode)) {
      bytes += static_cast<uint64_t>(st.st_blocks) * 512;
    }
  }
  ::closedir(listing);
  return bytes;
}

int PruneCache(const std::string& cache_dir,
               const std::vector<std::string>& current_initramfs) {
  DIR* listing = ::opendir(cache_dir.c_str());
  if (listing == nullptr) return 0;
  std::vector<std::string> remove;
  while (dirent* entry = ::readdir(listing)) {
    const std::string name = entry->d_name;
    const std::string path = absl::StrCat(cache_dir, "/", name);
    if (absl::StartsWith(name, kTemporaryPrefix)) {
      remove.push_back(path);
    } else if (absl::StartsWith(name, kInitramfsPrefix)) {
      if (std::find(current_initramfs.begin(), current_initramfs.end(), path) ==
          current_initramfs.end()) {
        remove.push_back(path);
      }
    } else if (absl::StartsWith(name, kImagePrefix) &&
               absl::EndsWith(name, ".source")) {
      const std::string base = path.substr(0, path.size() - 7);
      auto source = linux_runtime::ReadFile(path);
      struct stat st {};
      const bool current =
          source.ok() && ::stat(source->c_str(), &st) == 0 &&
          base == absl::StrCat(cache_dir, "/", kImagePrefix, FileIdentity(st));
      if (!current) {
        remove.push_back(path);
        remove.push_back(absl::StrCat(base, ".ext4"));
      }
    }
  }
  ::closedir(listing);
  int removed = 0;
  for (const std::string& path : remove) {
    if (::unlink(path.c_str()) == 0) ++removed;
  }
  return removed;
}

}  // namespace corral::qemu_runtime
