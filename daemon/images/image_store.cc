#include "daemon/images/image_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <system_error>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "corral/logging.h"
#include "corral/platform.h"
#include "corral/remove_tree.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"
#include "daemon/images/oci_archive.h"
#include "daemon/store/store.h"

namespace corral::daemon {
namespace {

namespace fs = std::filesystem;
namespace v1 = corral::v1;

// Debian's Abseil keeps its own string_view (ABSL_OPTION_USE_STD_STRING_VIEW
// is 0), which does not convert from std::string_view.
absl::string_view Sv(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

constexpr std::string_view kImportPrefix = ".import-";
constexpr std::string_view kTrashPrefix = ".trash-";
constexpr size_t kMaxLabels = 64;
constexpr size_t kMaxLabelValue = 256;

bool IsLabelKey(std::string_view key) {
  if (key.empty() || key.size() > 63) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '/' ||
           c == '-';
  });
}

absl::Status ValidateLabels(
    const google::protobuf::Map<std::string, std::string>& labels) {
  if (labels.size() > kMaxLabels) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxLabels, " labels"));
  }
  for (const auto& [key, value] : labels) {
    if (!IsLabelKey(key)) {
      return absl::InvalidArgumentError(
          absl::StrCat("label key \"", absl::CHexEscape(key),
                       "\": expected 1-63 characters of [A-Za-z0-9._/-]"));
    }
    if (value.size() > kMaxLabelValue) {
      return absl::InvalidArgumentError(absl::StrCat(
          "label ", key, ": value longer than ", kMaxLabelValue, " bytes"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Compression> ToCompression(v1::Compression value) {
  switch (value) {
    case v1::COMPRESSION_AUTO:
      return Compression::kAuto;
    case v1::COMPRESSION_NONE:
      return Compression::kNone;
    case v1::COMPRESSION_GZIP:
      return Compression::kGzip;
    case v1::COMPRESSION_XZ:
      return Compression::kXz;
    case v1::COMPRESSION_ZSTD:
      return Compression::kZstd;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown archive compression ", static_cast<int>(value)));
  }
}

// Makes sure the directories sandboxes mount over exist; an archive that
// made one of them anything but a directory is refused (a symlink there
// would redirect a mount).
absl::Status EnsureMountPoints(const fs::path& rootfs) {
  UniqueFd root(
      ::open(rootfs.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!root) return ErrnoStatus(absl::StrCat("open ", rootfs.string()));
  // The archive may have given the root any mode; a rootfs is 0755.
  if (::fchmod(root.get(), 0755) != 0) {
    return ErrnoStatus(absl::StrCat("fchmod ", rootfs.string()));
  }
  for (std::string_view name : ImageStore::kMountPoints) {
    const std::string entry(name);
    struct stat st {};
    if (::fstatat(root.get(), entry.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      if (!S_ISDIR(st.st_mode)) {
        return absl::InvalidArgumentError(
            absl::StrCat("archive entry \"", entry, "\": the mount point /",
                         entry, " must be a directory, not ",
                         S_ISLNK(st.st_mode) ? "a symlink" : "a file"));
      }
      continue;
    }
    if (errno != ENOENT) {
      return ErrnoStatus(absl::StrCat("fstatat ", rootfs.string(), "/", entry));
    }
    if (::mkdirat(root.get(), entry.c_str(), 0755) != 0) {
      return ErrnoStatus(absl::StrCat("mkdir ", rootfs.string(), "/", entry));
    }
  }
  return absl::OkStatus();
}

// A private temporary directory under images_dir, removed unless released.
class TempDir {
 public:
  static absl::StatusOr<TempDir> Create(const fs::path& parent,
                                        std::string_view prefix) {
    std::string pattern =
        (parent / absl::StrCat(Sv(prefix), "XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      return ErrnoStatus(absl::StrCat("mkdtemp ", pattern));
    }
    return TempDir(pattern);
  }
  TempDir(TempDir&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  TempDir& operator=(TempDir&&) = delete;
  ~TempDir() {
    if (path_.empty()) return;
    absl::Status status = corral::RemoveTree(path_.string());
    if (!status.ok()) {
      Logger("images")->error("removing {}: {}", path_.string(),
                              status.ToString());
    }
  }
  const fs::path& path() const { return path_; }

 private:
  explicit TempDir(fs::path path) : path_(std::move(path)) {}
  fs::path path_;
};

// Writes `text` to a new file `path` (0644) and syncs nothing: the caller
// syncs the whole staging tree.
absl::Status WriteNewFile(const fs::path& path, std::string_view text) {
  UniqueFd fd(::open(path.c_str(),
                     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0644));
  if (!fd) return ErrnoStatus(absl::StrCat("create ", path.string()));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t wrote =
        ::write(fd.get(), text.data() + done, text.size() - done);
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote < 0) return ErrnoStatus(absl::StrCat("write ", path.string()));
    done += static_cast<size_t>(wrote);
  }
  return absl::OkStatus();
}

// An OCI image layout or docker save archive into <staging>/rootfs: the
// members are spooled under <staging>/spool (removed again), the image is
// chosen and verified, its layers applied in order, and its config kept as
// <staging>/config.json for the runtimes.
absl::StatusOr<ExtractStats> ImportImageArchive(const fs::path& staging,
                                                Compression compression,
                                                const ChunkReader& reader,
                                                const ImportLimits& limits,
                                                const std::string& name) {
  const fs::path spool = staging / "spool";
  if (::mkdir(spool.c_str(), 0700) != 0) {
    return ErrnoStatus(absl::StrCat("mkdir ", spool.string()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<ImageArchive> archive,
                   ImageArchive::Spool(spool, compression, reader, limits));
  ASSIGN_OR_RETURN(ResolvedImage image, archive->Resolve());
  ASSIGN_OR_RETURN(ExtractStats stats,
                   ApplyLayers(staging / "rootfs", image.layers, limits));
  RETURN_IF_ERROR(corral::RemoveTree(spool.string()));
  RETURN_IF_ERROR(WriteNewFile(staging / kConfigFile, image.config_json));
  stats.archive_bytes = archive->archive_bytes();
  stats.archive_sha256 = archive->archive_sha256();
  // The config's strings are the archive's: escaped for the log.
  Logger("images")->info(
      "image {}: {} archive, manifest {}, {} layers, entrypoint [{}], cmd "
      "[{}], workdir \"{}\", user \"{}\", {} env",
      name, image.format,
      image.manifest_digest.empty() ? "-" : image.manifest_digest,
      image.layers.size(),
      absl::CHexEscape(absl::StrJoin(image.run.entrypoint, " ")),
      absl::CHexEscape(absl::StrJoin(image.run.cmd, " ")),
      absl::CHexEscape(image.run.working_dir), absl::CHexEscape(image.run.user),
      image.run.env.size());
  return stats;
}

google::protobuf::Timestamp ToTimestamp(absl::Time time) {
  google::protobuf::Timestamp timestamp;
  const int64_t nanos = absl::ToUnixNanos(time);
  timestamp.set_seconds(nanos / 1'000'000'000);
  timestamp.set_nanos(static_cast<int32_t>(nanos % 1'000'000'000));
  return timestamp;
}

}  // namespace

bool ImageStore::IsValidName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  if (!absl::ascii_islower(name[0]) && !absl::ascii_isdigit(name[0])) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '.' ||
           c == '_' || c == '-';
  });
}

absl::StatusOr<std::unique_ptr<ImageStore>> ImageStore::Open(
    const fs::path& images_dir, Store* store) {
  if (store == nullptr) return absl::InvalidArgumentError("no store");
  if (::mkdir(images_dir.c_str(), 0711) != 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", images_dir.string()));
  }
  struct stat st {};
  if (::lstat(images_dir.c_str(), &st) != 0) {
    return ErrnoStatus(absl::StrCat("lstat ", images_dir.string()));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(images_dir.string(), " is not a directory"));
  }
  std::unique_ptr<ImageStore> images(new ImageStore(images_dir, store));
  RETURN_IF_ERROR(images->CleanUp());
  return images;
}

absl::Status ImageStore::CleanUp() {
  auto logger = Logger("images");
  std::error_code error;
  std::vector<fs::path> remove;
  for (const fs::directory_entry& entry :
       fs::directory_iterator(images_dir_, error)) {
    const std::string name = entry.path().filename().string();
    if (absl::StartsWith(name, Sv(kImportPrefix)) ||
        absl::StartsWith(name, Sv(kTrashPrefix))) {
      logger->info("removing leftover {}", entry.path().string());
      remove.push_back(entry.path());
      continue;
    }
    if (!IsValidName(name)) {
      logger->warn("{} is not an image directory; leaving it",
                   entry.path().string());
      continue;
    }
    absl::StatusOr<ImageRecord> record = store_->GetImage(name);
    if (absl::IsNotFound(record.status())) {
      // Published, then the daemon died before the store recorded it.
      logger->warn("removing {}: no image of that name in the store",
                   entry.path().string());
      remove.push_back(entry.path());
    } else if (!record.ok()) {
      return record.status();
    }
  }
  if (error) {
    return absl::InternalError(
        absl::StrCat("listing ", images_dir_.string(), ": ", error.message()));
  }
  for (const fs::path& path : remove)
    RETURN_IF_ERROR(corral::RemoveTree(path.string()));
  ASSIGN_OR_RETURN(std::vector<ImageRecord> records, store_->ListImages());
  for (const ImageRecord& record : records) {
    if (!fs::is_directory(images_dir_ / record.name / "rootfs", error)) {
      logger->error("image {} has no rootfs under {}", record.name,
                    images_dir_.string());
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::Image> ImageStore::ToImage(const ImageRecord& record) {
  v1::Image image;
  image.set_name(record.name);
  image.set_source(static_cast<v1::ImageSource>(record.source));
  image.set_size_bytes(record.size_bytes);
  image.set_entries(record.entries);
  image.set_archive_sha256(record.archive_sha256);
  *image.mutable_created_at() = ToTimestamp(record.created_at);
  v1::Image labels;
  if (!record.labels.empty() && !labels.ParseFromString(record.labels)) {
    return absl::DataLossError(
        absl::StrCat("image ", record.name, ": unreadable labels"));
  }
  *image.mutable_labels() = labels.labels();
  ASSIGN_OR_RETURN(int64_t users,
                   store_->CountSandboxesUsingImage(record.name));
  image.set_sandboxes(static_cast<uint32_t>(users));
  return image;
}

absl::StatusOr<v1::Image> ImageStore::Get(std::string_view name) {
  if (IsBuiltin(name)) {
    v1::Image image;
    image.set_name(std::string(name));
    image.set_source(v1::IMAGE_SOURCE_BUILTIN);
    ASSIGN_OR_RETURN(int64_t users, store_->CountSandboxesUsingImage(name));
    image.set_sandboxes(static_cast<uint32_t>(users));
    return image;
  }
  if (!IsValidName(name)) {
    return absl::NotFoundError(
        absl::StrCat("no image \"", absl::CHexEscape(Sv(name)), "\""));
  }
  ASSIGN_OR_RETURN(ImageRecord record, store_->GetImage(name));
  return ToImage(record);
}

absl::StatusOr<std::vector<v1::Image>> ImageStore::List() {
  std::vector<v1::Image> images;
  ASSIGN_OR_RETURN(images.emplace_back(), Get(kHostImage));
  ASSIGN_OR_RETURN(std::vector<ImageRecord> records, store_->ListImages());
  for (const ImageRecord& record : records) {
    ASSIGN_OR_RETURN(images.emplace_back(), ToImage(record));
  }
  return images;
}

absl::StatusOr<fs::path> ImageStore::RootfsDir(std::string_view name) {
  if (IsBuiltin(name)) {
    return absl::FailedPreconditionError(
        "image host is built in and has no rootfs directory; its runtime "
        "assembles it from the host");
  }
  if (!IsValidName(name)) {
    return absl::NotFoundError(
        absl::StrCat("no image \"", absl::CHexEscape(Sv(name)), "\""));
  }
  ASSIGN_OR_RETURN(ImageRecord record, store_->GetImage(name));
  return images_dir_ / record.name / "rootfs";
}

absl::StatusOr<ImageRunConfig> ImageStore::RunConfig(std::string_view name) {
  if (IsBuiltin(name)) return ImageRunConfig{};
  ASSIGN_OR_RETURN(fs::path rootfs, RootfsDir(name));
  const fs::path path = rootfs.parent_path() / kConfigFile;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return ImageRunConfig{};
    return ErrnoStatus(absl::StrCat("open ", path.string()));
  }
  // Written by Import from a config it read within 16 MiB.
  std::string text;
  char buffer[64 << 10];
  while (true) {
    const ssize_t got = ::read(fd.get(), buffer, sizeof(buffer));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return ErrnoStatus(absl::StrCat("read ", path.string()));
    if (got == 0) break;
    text.append(buffer, static_cast<size_t>(got));
    if (text.size() > (16u << 20)) {
      return absl::DataLossError(absl::StrCat(path.string(), " is too large"));
    }
  }
  return ParseImageRunConfig(text);
}

absl::Status ImageStore::Delete(std::string_view name) {
  if (IsBuiltin(name)) {
    return absl::FailedPreconditionError("image host is built in");
  }
  if (!IsValidName(name)) {
    return absl::NotFoundError(
        absl::StrCat("no image \"", absl::CHexEscape(Sv(name)), "\""));
  }
  std::lock_guard lock(publish_mutex_);
  ASSIGN_OR_RETURN(ImageRecord record, store_->GetImage(name));
  ASSIGN_OR_RETURN(int64_t users, store_->CountSandboxesUsingImage(name));
  if (users > 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "image ", Sv(name), " is used by ", users, " sandbox(es)"));
  }
  // Unpublish first (rename over an empty directory is atomic), then forget,
  // then remove: a crash leaves a .trash- directory that Open removes.
  ASSIGN_OR_RETURN(TempDir trash, TempDir::Create(images_dir_, kTrashPrefix));
  const fs::path published = images_dir_ / record.name;
  const bool had_directory =
      ::rename(published.c_str(), trash.path().c_str()) == 0;
  if (!had_directory && errno != ENOENT) {
    return ErrnoStatus(absl::StrCat("rename ", published.string()));
  }
  absl::Status deleted = store_->DeleteImage(name);
  if (!deleted.ok()) {
    if (had_directory &&
        platform::RenameExchange(AT_FDCWD, trash.path().c_str(), AT_FDCWD,
                                 published.c_str()) != 0) {
      Logger("images")->error("restoring {} after a failed delete: {}",
                              published.string(), std::strerror(errno));
    }
    return deleted;
  }
  Logger("images")->info("deleted image {}", record.name);
  return absl::OkStatus();
}

absl::StatusOr<v1::Image> ImageStore::Import(
    const v1::ImportImageMetadata& metadata, const ChunkReader& next_chunk,
    const ImportLimits& limits) {
  const std::string& name = metadata.name();
  if (!IsValidName(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad image name \"", absl::CHexEscape(name),
                     "\": expected 1-64 characters of [a-z0-9._-] starting "
                     "with a letter or digit"));
  }
  if (IsBuiltin(name)) {
    return absl::FailedPreconditionError(
        "image host is built in and cannot be imported or replaced");
  }
  // Unspecified: told apart by the archive's first member.
  std::optional<v1::ImageSource> source;
  switch (metadata.source()) {
    case v1::IMAGE_SOURCE_UNSPECIFIED:
      break;
    case v1::IMAGE_SOURCE_ROOTFS_TAR:
    case v1::IMAGE_SOURCE_OCI_ARCHIVE:
      source = metadata.source();
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("image source ", static_cast<int>(metadata.source()),
                       " cannot be imported"));
  }
  ASSIGN_OR_RETURN(Compression compression,
                   ToCompression(metadata.compression()));
  RETURN_IF_ERROR(ValidateLabels(metadata.labels()));

  // Fail before reading a byte when the name is taken; checked again when
  // publishing.
  {
    absl::StatusOr<ImageRecord> existing = store_->GetImage(name);
    if (existing.ok()) {
      if (!metadata.replace()) {
        return absl::AlreadyExistsError(
            absl::StrCat("image ", name, " already exists"));
      }
      ASSIGN_OR_RETURN(int64_t users, store_->CountSandboxesUsingImage(name));
      if (users > 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "image ", name, " is used by ", users, " sandbox(es)"));
      }
    } else if (!absl::IsNotFound(existing.status())) {
      return existing.status();
    }
  }

  ASSIGN_OR_RETURN(TempDir staging,
                   TempDir::Create(images_dir_, kImportPrefix));
  const fs::path rootfs = staging.path() / "rootfs";
  if (::mkdir(rootfs.c_str(), 0755) != 0) {
    return ErrnoStatus(absl::StrCat("mkdir ", rootfs.string()));
  }
  ChunkReader reader = next_chunk;
  if (!source.has_value()) {
    ASSIGN_OR_RETURN(DetectedArchive detected,
                     DetectImageArchive(compression, next_chunk));
    source = detected.image_archive ? v1::IMAGE_SOURCE_OCI_ARCHIVE
                                    : v1::IMAGE_SOURCE_ROOTFS_TAR;
    reader = std::move(detected.replay);
  }
  ExtractStats stats;
  if (*source == v1::IMAGE_SOURCE_OCI_ARCHIVE) {
    ASSIGN_OR_RETURN(stats, ImportImageArchive(staging.path(), compression,
                                               reader, limits, name));
  } else {
    ASSIGN_OR_RETURN(stats, ExtractTar(rootfs, compression, reader, limits));
  }
  RETURN_IF_ERROR(EnsureMountPoints(rootfs));
  // The store's record is synced on commit; the tree it points to must be
  // on disk first, or a power loss could leave a recorded image half-written.
  {
    UniqueFd staging_fd(
        ::open(staging.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!staging_fd || platform::SyncFileSystem(staging_fd.get()) != 0) {
      return ErrnoStatus(absl::StrCat("sync ", staging.path().string()));
    }
  }
  // mkdtemp made it 0700; the published image directory is readable.
  if (::chmod(staging.path().c_str(), 0755) != 0) {
    return ErrnoStatus(absl::StrCat("chmod ", staging.path().string()));
  }

  ImageRecord record;
  record.name = name;
  record.source = *source;
  record.size_bytes = stats.logical_bytes;
  record.entries = stats.entries;
  record.archive_sha256 = stats.archive_sha256;
  record.created_at = absl::Now();
  {
    v1::Image labels;
    *labels.mutable_labels() = metadata.labels();
    record.labels = labels.SerializeAsString();
  }
  const fs::path published = images_dir_ / name;
  record.directory = published.string();

  std::lock_guard lock(publish_mutex_);
  absl::StatusOr<ImageRecord> existing = store_->GetImage(name);
  if (!existing.ok() && !absl::IsNotFound(existing.status())) {
    return existing.status();
  }
  if (existing.ok()) {
    if (!metadata.replace()) {
      return absl::AlreadyExistsError(
          absl::StrCat("image ", name, " already exists"));
    }
    ASSIGN_OR_RETURN(int64_t users, store_->CountSandboxesUsingImage(name));
    if (users > 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("image ", name, " is used by ", users, " sandbox(es)"));
    }
    // Swap the new tree in atomically; the old one ends up in the staging
    // directory, which TempDir removes.
    if (platform::RenameExchange(AT_FDCWD, staging.path().c_str(), AT_FDCWD,
                                 published.c_str()) != 0) {
      if (errno != ENOENT) {
        return ErrnoStatus(absl::StrCat("swap in ", published.string()));
      }
      if (::rename(staging.path().c_str(), published.c_str()) != 0) {
        return ErrnoStatus(absl::StrCat("rename ", published.string()));
      }
    }
    absl::Status replaced = store_->ReplaceImage(record);
    if (!replaced.ok()) {
      if (platform::RenameExchange(AT_FDCWD, staging.path().c_str(), AT_FDCWD,
                                   published.c_str()) != 0) {
        Logger("images")->error("restoring {} after a failed replace: {}",
                                published.string(), std::strerror(errno));
      }
      return replaced;
    }
  } else {
    if (platform::RenameNoReplace(AT_FDCWD, staging.path().c_str(), AT_FDCWD,
                                  published.c_str()) != 0) {
      if (errno == EEXIST) {
        return absl::FailedPreconditionError(
            absl::StrCat(published.string(),
                         " exists but the store has no such image; restart "
                         "corrald to clean it up"));
      }
      return ErrnoStatus(absl::StrCat("rename ", published.string()));
    }
    absl::Status inserted = store_->InsertImage(record);
    if (!inserted.ok()) {
      // Unpublish again; the staging path is free since the rename.
      if (::rename(published.c_str(), staging.path().c_str()) != 0) {
        Logger("images")->error("unpublishing {} after a failed insert: {}",
                                published.string(), std::strerror(errno));
      }
      return inserted;
    }
  }
  Logger("images")->info(
      "imported image {}: {} entries, {} bytes, sha256 {}; skipped {} "
      "special files; stripped setuid/setgid/sticky bits of {} entries",
      name, stats.entries, stats.logical_bytes, stats.archive_sha256,
      stats.skipped, stats.stripped_modes);
  return ToImage(record);
}

}  // namespace corral::daemon
