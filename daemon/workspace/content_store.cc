#include "daemon/workspace/content_store.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <mutex>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "corral/directory.h"
#include "corral/status_macros.h"
#include "daemon/workspace/path_rules.h"
#include "daemon/workspace/sha256.h"

namespace corral::daemon::workspace {
namespace {

namespace fs = std::filesystem;

// mkdir that accepts an existing directory.
absl::Status MakeDirectory(const fs::path& path) {
  if (::mkdir(path.c_str(), 0700) == 0) return absl::OkStatus();
  if (errno != EEXIST)
    return ErrnoStatus(absl::StrCat("mkdir ", path.string()));
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    return ErrnoStatus(absl::StrCat("lstat ", path.string()));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path.string(), " exists and is not a directory"));
  }
  return absl::OkStatus();
}

absl::Status WriteAll(int fd, std::string_view data, const fs::path& path) {
  while (!data.empty()) {
    const ssize_t written = ::write(fd, data.data(), data.size());
    if (written < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(absl::StrCat("write ", path.string()));
    }
    data.remove_prefix(static_cast<size_t>(written));
  }
  return absl::OkStatus();
}

// Reads up to `limit` bytes from the start of `fd`.
absl::StatusOr<std::string> ReadUpTo(int fd, uint64_t limit,
                                     std::string_view name) {
  std::string data;
  data.resize(static_cast<size_t>(limit));
  size_t filled = 0;
  while (filled < data.size()) {
    const ssize_t got = ::pread(fd, data.data() + filled, data.size() - filled,
                                static_cast<off_t>(filled));
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus(absl::StrCat("read object ", Sv(name)));
    }
    if (got == 0) break;
    filled += static_cast<size_t>(got);
  }
  data.resize(filled);
  return data;
}

}  // namespace

ContentStore::ContentStore(fs::path root) : root_(std::move(root)) {}
ContentStore::~ContentStore() = default;

absl::StatusOr<std::unique_ptr<ContentStore>> ContentStore::Open(
    const fs::path& root) {
  if (root.empty()) return absl::InvalidArgumentError("empty store root");
  std::error_code error;
  if (root.has_parent_path()) {
    fs::create_directories(root.parent_path(), error);
    if (error) {
      return absl::InternalError(absl::StrCat(
          "creating ", root.parent_path().string(), ": ", error.message()));
    }
  }
  RETURN_IF_ERROR(MakeDirectory(root));
  RETURN_IF_ERROR(MakeDirectory(root / "objects"));
  RETURN_IF_ERROR(MakeDirectory(root / "tmp"));
  // Whatever is in tmp/ was being written when the previous daemon died.
  ASSIGN_OR_RETURN(std::vector<std::string> stale,
                   ListDirectory((root / "tmp").string()));
  for (const std::string& name : stale) {
    fs::remove_all(root / "tmp" / name, error);
    if (error) {
      return absl::InternalError(absl::StrCat("removing stale ",
                                              (root / "tmp" / name).string(),
                                              ": ", error.message()));
    }
  }
  return std::unique_ptr<ContentStore>(new ContentStore(root));
}

fs::path ContentStore::ObjectPath(std::string_view sha256) const {
  return root_ / "objects" / std::string(sha256.substr(0, 2)) /
         std::string(sha256.substr(2));
}

ContentStore::Writer::Writer(ContentStore* store, fs::path temp_path,
                             UniqueFd fd)
    : store_(store),
      temp_path_(std::move(temp_path)),
      fd_(std::move(fd)),
      sha256_(std::make_unique<Sha256>()) {}

ContentStore::Writer::~Writer() {
  if (!done_) ::unlink(temp_path_.c_str());
}

absl::Status ContentStore::Writer::Append(std::string_view data) {
  if (done_) return absl::FailedPreconditionError("object already committed");
  absl::Status status = WriteAll(fd_.get(), data, temp_path_);
  if (!status.ok()) return status;
  sha256_->Update(data);
  size_ += data.size();
  return absl::OkStatus();
}

absl::StatusOr<ContentStore::Committed> ContentStore::Writer::Commit() {
  if (done_) return absl::FailedPreconditionError("object already committed");
  done_ = true;
  // From here on the temp file is CommitTemp's to remove, or ours on error.
  if (::fsync(fd_.get()) != 0) {
    absl::Status status =
        ErrnoStatus(absl::StrCat("fsync ", temp_path_.string()));
    ::unlink(temp_path_.c_str());
    return status;
  }
  fd_.Reset();
  absl::StatusOr<std::string> digest = sha256_->HexDigest();
  if (!digest.ok()) {
    ::unlink(temp_path_.c_str());
    return digest.status();
  }
  return store_->CommitTemp(temp_path_, *std::move(digest), size_);
}

absl::StatusOr<ContentStore::Committed> ContentStore::CommitTemp(
    const fs::path& temp_path, std::string sha256, uint64_t size) {
  Committed committed{std::move(sha256), size, false};
  const fs::path final_path = ObjectPath(committed.sha256);
  absl::Status status;
  {
    std::shared_lock lock(gc_mutex_);
    status = MakeDirectory(final_path.parent_path());
    // link() never replaces: an object that is there already (the same
    // bytes, by its name) stays, and the copy is dropped.
    if (status.ok()) {
      if (::link(temp_path.c_str(), final_path.c_str()) == 0) {
        committed.is_new = true;
      } else if (errno != EEXIST) {
        status = ErrnoStatus(absl::StrCat("link ", final_path.string()));
      }
    }
  }
  ::unlink(temp_path.c_str());
  if (!status.ok()) return status;
  return committed;
}

absl::StatusOr<std::unique_ptr<ContentStore::Writer>>
ContentStore::NewWriter() {
  std::string name = (root_ / "tmp" / "object-XXXXXX").string();
  // mkostemp creates the file 0600.
  UniqueFd fd(::mkostemp(name.data(), O_CLOEXEC));
  if (!fd) return ErrnoStatus(absl::StrCat("mkostemp ", name));
  return std::unique_ptr<Writer>(new Writer(this, name, std::move(fd)));
}

absl::StatusOr<ContentStore::Committed> ContentStore::Put(
    std::string_view data) {
  Sha256 sha256;
  sha256.Update(data);
  ASSIGN_OR_RETURN(std::string digest, sha256.HexDigest());
  {
    std::shared_lock lock(gc_mutex_);
    if (Has(digest)) return Committed{std::move(digest), data.size(), false};
  }
  ASSIGN_OR_RETURN(std::unique_ptr<Writer> writer, NewWriter());
  RETURN_IF_ERROR(writer->Append(data));
  return writer->Commit();
}

bool ContentStore::Has(std::string_view sha256) const {
  if (!IsSha256Hex(sha256)) return false;
  struct stat st {};
  return ::lstat(ObjectPath(sha256).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

absl::StatusOr<UniqueFd> ContentStore::OpenObject(
    std::string_view sha256) const {
  if (!IsSha256Hex(sha256)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not an object name: '", absl::CHexEscape(Sv(sha256)), "'"));
  }
  const fs::path path = ObjectPath(sha256);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) {
    if (errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat("no object ", Sv(sha256)));
    }
    return ErrnoStatus(absl::StrCat("open ", path.string()));
  }
  return fd;
}

absl::StatusOr<std::string> ContentStore::ReadObject(std::string_view sha256,
                                                     uint64_t max_bytes) const {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenObject(sha256));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return ErrnoStatus(absl::StrCat("fstat object ", Sv(sha256)));
  }
  const auto size = static_cast<uint64_t>(st.st_size);
  if (size > max_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("object ", Sv(sha256), " has ", size,
                     " bytes, more than the limit of ", max_bytes));
  }
  ASSIGN_OR_RETURN(std::string data, ReadUpTo(fd.get(), size, sha256));
  if (data.size() != size) {
    return absl::DataLossError(
        absl::StrCat("object ", Sv(sha256), " shrank while it was read"));
  }
  return data;
}

absl::StatusOr<std::string> ContentStore::ReadObjectPrefix(
    std::string_view sha256, uint64_t max_bytes) const {
  ASSIGN_OR_RETURN(UniqueFd fd, OpenObject(sha256));
  return ReadUpTo(fd.get(), max_bytes, sha256);
}

absl::StatusOr<uint64_t> ContentStore::CollectGarbage(
    const absl::flat_hash_set<std::string>& live) {
  std::unique_lock lock(gc_mutex_);
  const fs::path objects = root_ / "objects";
  ASSIGN_OR_RETURN(std::vector<std::string> shards,
                   ListDirectory(objects.string()));
  uint64_t freed = 0;
  for (const std::string& shard : shards) {
    if (shard.size() != 2) continue;
    const fs::path shard_path = objects / shard;
    ASSIGN_OR_RETURN(std::vector<std::string> names,
                     ListDirectory(shard_path.string()));
    size_t kept = 0;
    for (const std::string& name : names) {
      const std::string sha256 = shard + name;
      // Anything that is not an object name was not put there by the store:
      // leave it alone.
      if (!IsSha256Hex(sha256) || live.contains(sha256)) {
        ++kept;
        continue;
      }
      const fs::path path = shard_path / name;
      struct stat st {};
      if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) continue;
        return ErrnoStatus(absl::StrCat("lstat ", path.string()));
      }
      if (::unlink(path.c_str()) != 0) {
        if (errno == ENOENT) continue;
        return ErrnoStatus(absl::StrCat("unlink ", path.string()));
      }
      freed += static_cast<uint64_t>(st.st_size);
    }
    if (kept == 0) ::rmdir(shard_path.c_str());
  }
  return freed;
}

absl::StatusOr<ContentStore::Committed> ContentStore::PutManifest(
    const corral::workspace::v1::Manifest& manifest) {
  std::string bytes;
  if (!manifest.SerializeToString(&bytes)) {
    return absl::InternalError("serializing a manifest failed");
  }
  return Put(bytes);
}

absl::StatusOr<corral::workspace::v1::Manifest> ContentStore::ReadManifest(
    std::string_view sha256) const {
  ASSIGN_OR_RETURN(std::string bytes, ReadObject(sha256, kMaxManifestBytes));
  corral::workspace::v1::Manifest manifest;
  if (!manifest.ParseFromString(bytes)) {
    return absl::DataLossError(
        absl::StrCat("object ", Sv(sha256), " is not a manifest"));
  }
  return manifest;
}

}  // namespace corral::daemon::workspace
