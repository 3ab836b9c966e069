#include "daemon/workspace/manifest.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "corral/status_macros.h"
#include "daemon/workspace/sha256.h"

namespace corral::daemon::workspace {
namespace {

using corral::agent::v1::EntryType;
using corral::agent::v1::FsEntry;
using corral::workspace::v1::Manifest;
using corral::workspace::v1::ManifestEntry;

absl::Status BadEntry(std::string_view path, std::string_view reason) {
  return EntryError("entry", path, reason);
}

// Checks the rules every hostile entry follows whatever its type: a valid
// path, not beneath a non-directory recorded in `tree`.
absl::Status CheckPlacement(std::string_view path, const EntryTree& tree) {
  if (auto problem = PathProblem(path)) return BadEntry(path, *problem);
  if (auto problem = tree.PlacementProblem(path)) {
    return BadEntry(path, *problem);
  }
  return absl::OkStatus();
}

absl::Status CheckSymlinkTarget(std::string_view path,
                                std::string_view target) {
  if (target.empty()) return BadEntry(path, "symlink with an empty target");
  if (target.size() > kMaxPathBytes) {
    return BadEntry(path, absl::StrCat("symlink target is longer than ",
                                       kMaxPathBytes, " bytes"));
  }
  if (target.find('\0') != std::string_view::npos) {
    return BadEntry(path, "NUL byte in the symlink target");
  }
  return absl::OkStatus();
}

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.size() >= prefix.size() &&
         text.compare(0, prefix.size(), prefix) == 0;
}

// Regular entries of a manifest by path.
absl::flat_hash_map<absl::string_view, const ManifestEntry*> RegularFiles(
    const Manifest& manifest) {
  absl::flat_hash_map<absl::string_view, const ManifestEntry*> files;
  files.reserve(manifest.entries_size());
  for (const ManifestEntry& entry : manifest.entries()) {
    if (entry.type() == corral::agent::v1::ENTRY_TYPE_REGULAR) {
      files.emplace(entry.path(), &entry);
    }
  }
  return files;
}

const ManifestEntry* Find(
    const absl::flat_hash_map<absl::string_view, const ManifestEntry*>& files,
    std::string_view path) {
  auto it = files.find(Sv(path));
  return it == files.end() ? nullptr : it->second;
}

}  // namespace

ManifestBuilder::ManifestBuilder(ContentStore* store)
    : ManifestBuilder(store, ManifestLimits{}) {}

ManifestBuilder::ManifestBuilder(ContentStore* store,
                                 const ManifestLimits& limits)
    : store_(store), limits_(limits) {}

ManifestBuilder::~ManifestBuilder() = default;

absl::Status ManifestBuilder::Fail(absl::Status status) {
  status_ = status;
  writer_.reset();
  pending_ = nullptr;
  return status;
}

absl::Status ManifestBuilder::CommitFile() {
  absl::StatusOr<ContentStore::Committed> committed =
      writer_ ? writer_->Commit() : store_->Put("");
  writer_.reset();
  if (!committed.ok()) {
    return Fail(
        Annotate(committed.status(),
                 absl::StrCat("storing ", QuotePath(pending_->path()))));
  }
  pending_->set_sha256(committed->sha256);
  if (committed->is_new) new_bytes_ += committed->size;
  pending_ = nullptr;
  return absl::OkStatus();
}

void ManifestBuilder::EraseBeneath(const std::string& path) {
  const std::string prefix = path + "/";
  auto it = entries_.lower_bound(prefix);
  while (it != entries_.end() && StartsWith(it->first, prefix)) {
    tree_.Erase(it->first);
    it = entries_.erase(it);
  }
}

absl::Status ManifestBuilder::StartNext(std::string_view when) {
  if (!status_.ok()) return status_;
  if (finished_) return absl::FailedPreconditionError("manifest finished");
  if (pending_ != nullptr) {
    return Fail(absl::DataLossError(absl::StrCat(
        "entry ", QuotePath(pending_->path()), ": ", remaining_, " of ",
        pending_->size(), " bytes of data missing ", Sv(when))));
  }
  return absl::OkStatus();
}

absl::Status ManifestBuilder::OnEntry(const FsEntry& entry) {
  RETURN_IF_ERROR(StartNext("before the next entry"));
  if (limits_.max_entries != 0 && ++entries_seen_ > limits_.max_entries) {
    return Fail(absl::ResourceExhaustedError(
        absl::StrCat("entry ", QuotePath(entry.path()), ": more than ",
                     limits_.max_entries, " entries")));
  }
  const std::string& path = entry.path();
  if (absl::Status status = CheckPlacement(path, tree_); !status.ok()) {
    return Fail(status);
  }

  ManifestEntry record;
  record.set_path(path);
  record.set_mode(entry.mode() & 07777);
  record.set_mtime_ns(entry.changed() ? 0 : entry.mtime_ns());
  switch (entry.type()) {
    case corral::agent::v1::ENTRY_TYPE_REGULAR:
      if (limits_.max_bytes != 0 &&
          (entry.size() > limits_.max_bytes ||
           total_bytes_ + entry.size() > limits_.max_bytes)) {
        return Fail(absl::ResourceExhaustedError(
            absl::StrCat("entry ", QuotePath(path),
                         ": files add up to more "
                         "than ",
                         limits_.max_bytes, " bytes")));
      }
      record.set_type(corral::agent::v1::ENTRY_TYPE_REGULAR);
      record.set_size(entry.size());
      break;
    case corral::agent::v1::ENTRY_TYPE_DIRECTORY:
      record.set_type(corral::agent::v1::ENTRY_TYPE_DIRECTORY);
      break;
    case corral::agent::v1::ENTRY_TYPE_SYMLINK:
      if (absl::Status status = CheckSymlinkTarget(path, entry.link_target());
          !status.ok()) {
        return Fail(status);
      }
      record.set_type(corral::agent::v1::ENTRY_TYPE_SYMLINK);
      record.set_link_target(entry.link_target());
      break;
    case corral::agent::v1::ENTRY_TYPE_HARDLINK: {
      const std::string& target = entry.link_target();
      auto it = entries_.find(target);
      if (PathProblem(target).has_value() || target == path ||
          it == entries_.end() ||
          it->second.type() != corral::agent::v1::ENTRY_TYPE_REGULAR) {
        return Fail(
            BadEntry(path, absl::StrCat("hard link target ", QuotePath(target),
                                        " is not an earlier regular file")));
      }
      // A hard link shares its target's inode: content, size and mode.
      record = it->second;
      record.set_path(path);
      break;
    }
    default:
      return Fail(BadEntry(path, absl::StrCat(Sv(EntryTypeName(entry.type())),
                                              " entries cannot be stored")));
  }

  auto existing = entries_.find(path);
  if (existing != entries_.end() &&
      existing->second.type() == corral::agent::v1::ENTRY_TYPE_DIRECTORY &&
      record.type() != corral::agent::v1::ENTRY_TYPE_DIRECTORY) {
    EraseBeneath(path);
  }
  ManifestEntry& stored = entries_[path];
  stored = std::move(record);
  tree_.Record(path, stored.type());
  if (stored.type() != corral::agent::v1::ENTRY_TYPE_REGULAR) {
    return absl::OkStatus();
  }
  total_bytes_ += stored.size();
  if (entry.type() == corral::agent::v1::ENTRY_TYPE_HARDLINK) {
    return absl::OkStatus();
  }
  pending_ = &stored;
  remaining_ = stored.size();
  if (remaining_ == 0) return CommitFile();
  absl::StatusOr<std::unique_ptr<ContentStore::Writer>> writer =
      store_->NewWriter();
  if (!writer.ok()) return Fail(writer.status());
  writer_ = *std::move(writer);
  return absl::OkStatus();
}

absl::Status ManifestBuilder::OnData(std::string_view data) {
  if (!status_.ok()) return status_;
  if (finished_) return absl::FailedPreconditionError("manifest finished");
  if (data.empty()) return absl::OkStatus();
  if (pending_ == nullptr) {
    return Fail(absl::InvalidArgumentError(
        "data that belongs to no regular file (after a complete file or a "
        "non-file entry)"));
  }
  if (data.size() > remaining_) {
    return Fail(
        BadEntry(pending_->path(), absl::StrCat("more data than its size of ",
                                                pending_->size(), " bytes")));
  }
  if (absl::Status status = writer_->Append(data); !status.ok()) {
    return Fail(Annotate(
        status, absl::StrCat("storing ", QuotePath(pending_->path()))));
  }
  remaining_ -= data.size();
  if (remaining_ == 0) return CommitFile();
  return absl::OkStatus();
}

absl::StatusOr<Manifest> ManifestBuilder::Finish() {
  RETURN_IF_ERROR(StartNext("at the end of the stream"));
  finished_ = true;
  Manifest manifest;
  manifest.mutable_entries()->Reserve(static_cast<int>(entries_.size()));
  total_bytes_ = 0;
  for (auto& [path, entry] : entries_) {
    if (entry.type() == corral::agent::v1::ENTRY_TYPE_REGULAR) {
      total_bytes_ += entry.size();
    }
    *manifest.add_entries() = std::move(entry);
  }
  entries_.clear();
  return manifest;
}

std::vector<std::string> PathsToHash(const Manifest& reference,
                                     const std::vector<FsEntry>& listing) {
  const auto files = RegularFiles(reference);
  std::vector<std::string> paths;
  for (const FsEntry& entry : listing) {
    if (entry.type() != corral::agent::v1::ENTRY_TYPE_REGULAR) continue;
    if (PathProblem(entry.path()).has_value()) continue;
    const ManifestEntry* known = Find(files, entry.path());
    if (known == nullptr || known->size() != entry.size() ||
        known->mtime_ns() != entry.mtime_ns() || known->mtime_ns() == 0) {
      paths.push_back(entry.path());
    }
  }
  return paths;
}

absl::StatusOr<Manifest> MergeListing(const Manifest& reference,
                                      const std::vector<FsEntry>& listing,
                                      const Manifest& hashed, int64_t now_ns) {
  const auto known = RegularFiles(reference);
  const auto packed = RegularFiles(hashed);
  // Anything at or after this moment may still change within its mtime.
  const int64_t trusted_before = now_ns - kRacyWindowNs;
  EntryTree tree;
  std::vector<ManifestEntry> entries;
  entries.reserve(listing.size());
  for (const FsEntry& entry : listing) {
    const std::string& path = entry.path();
    RETURN_IF_ERROR(CheckPlacement(path, tree));
    if (tree.TypeOf(path) != corral::agent::v1::ENTRY_TYPE_UNSPECIFIED) {
      return BadEntry(path, "listed twice");
    }
    tree.Record(path, entry.type());
    ManifestEntry record;
    record.set_path(path);
    record.set_type(entry.type());
    record.set_mode(entry.mode() & 07777);
    int64_t mtime_ns = entry.mtime_ns();
    switch (entry.type()) {
      case corral::agent::v1::ENTRY_TYPE_REGULAR:
        if (const ManifestEntry* fresh = Find(packed, path)) {
          record.set_sha256(fresh->sha256());
          record.set_size(fresh->size());
          // The pack read the file after the listing saw it: the content
          // only belongs to the listed mtime if both agree.
          if (fresh->size() != entry.size() ||
              fresh->mtime_ns() != entry.mtime_ns()) {
            mtime_ns = 0;
          }
        } else if (const ManifestEntry* old = Find(known, path);
                   old != nullptr && old->mtime_ns() != 0 &&
                   old->size() == entry.size() &&
                   old->mtime_ns() == entry.mtime_ns()) {
          record.set_sha256(old->sha256());
          record.set_size(old->size());
        } else {
          return absl::InternalError(
              absl::StrCat("no content hash for ", QuotePath(path),
                           ": it changed between the listing and the pack"));
        }
        break;
      case corral::agent::v1::ENTRY_TYPE_DIRECTORY:
        break;
      case corral::agent::v1::ENTRY_TYPE_SYMLINK:
        RETURN_IF_ERROR(CheckSymlinkTarget(path, entry.link_target()));
        record.set_link_target(entry.link_target());
        break;
      case corral::agent::v1::ENTRY_TYPE_OTHER:
        // Devices, fifos and sockets are not workspace content.
        continue;
      default:
        return BadEntry(path, absl::StrCat(Sv(EntryTypeName(entry.type())),
                                           " in a listing"));
    }
    record.set_mtime_ns(mtime_ns >= trusted_before || mtime_ns < 0 ? 0
                                                                   : mtime_ns);
    entries.push_back(std::move(record));
  }
  std::sort(entries.begin(), entries.end(),
            [](const ManifestEntry& a, const ManifestEntry& b) {
              return a.path() < b.path();
            });
  Manifest manifest;
  manifest.mutable_entries()->Reserve(static_cast<int>(entries.size()));
  for (ManifestEntry& entry : entries) {
    *manifest.add_entries() = std::move(entry);
  }
  return manifest;
}

absl::Status EmitManifest(const Manifest& manifest, const ContentStore& store,
                          EntrySink& sink) {
  std::string buffer(kMaxChunkBytes, '\0');
  for (const ManifestEntry& entry : manifest.entries()) {
    FsEntry out;
    out.set_path(entry.path());
    out.set_type(entry.type());
    out.set_mode(entry.mode());
    out.set_mtime_ns(entry.mtime_ns());
    out.set_link_target(entry.link_target());
    const bool regular = entry.type() == corral::agent::v1::ENTRY_TYPE_REGULAR;
    if (regular) out.set_size(entry.size());
    if (!regular) {
      RETURN_IF_ERROR(sink.OnEntry(out));
      continue;
    }
    ASSIGN_OR_RETURN(UniqueFd fd, store.OpenObject(entry.sha256()));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
      return ErrnoStatus(absl::StrCat("fstat object ", entry.sha256()));
    }
    if (static_cast<uint64_t>(st.st_size) != entry.size()) {
      return absl::DataLossError(absl::StrCat(
          "object ", entry.sha256(), " of ", QuotePath(entry.path()), " has ",
          st.st_size, " bytes, the manifest says ", entry.size()));
    }
    RETURN_IF_ERROR(sink.OnEntry(out));
    uint64_t remaining = entry.size();
    while (remaining > 0) {
      const ssize_t got = ::read(
          fd.get(), buffer.data(),
          static_cast<size_t>(std::min<uint64_t>(remaining, buffer.size())));
      if (got < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus(absl::StrCat("read object ", entry.sha256()));
      }
      if (got == 0) {
        return absl::DataLossError(absl::StrCat("object ", entry.sha256(),
                                                " of ", QuotePath(entry.path()),
                                                " shrank while it was read"));
      }
      RETURN_IF_ERROR(sink.OnData(
          std::string_view(buffer.data(), static_cast<size_t>(got))));
      remaining -= static_cast<uint64_t>(got);
    }
  }
  return absl::OkStatus();
}

void CollectReferences(const Manifest& manifest,
                       absl::flat_hash_set<std::string>* live) {
  for (const ManifestEntry& entry : manifest.entries()) {
    if (entry.type() == corral::agent::v1::ENTRY_TYPE_REGULAR) {
      live->insert(entry.sha256());
    }
  }
}

absl::Status ValidateManifest(const Manifest& manifest) {
  EntryTree tree;
  const std::string* previous = nullptr;
  for (const ManifestEntry& entry : manifest.entries()) {
    RETURN_IF_ERROR(CheckPlacement(entry.path(), tree));
    if (previous != nullptr && !(*previous < entry.path())) {
      return BadEntry(entry.path(), "manifest is not sorted or has duplicates");
    }
    previous = &entry.path();
    switch (entry.type()) {
      case corral::agent::v1::ENTRY_TYPE_REGULAR:
        if (!IsSha256Hex(entry.sha256())) {
          return BadEntry(entry.path(), "malformed content hash");
        }
        break;
      case corral::agent::v1::ENTRY_TYPE_DIRECTORY:
        break;
      case corral::agent::v1::ENTRY_TYPE_SYMLINK:
        RETURN_IF_ERROR(CheckSymlinkTarget(entry.path(), entry.link_target()));
        break;
      default:
        return BadEntry(
            entry.path(),
            absl::StrCat(Sv(EntryTypeName(entry.type())), " in a manifest"));
    }
    tree.Record(entry.path(), entry.type());
  }
  return absl::OkStatus();
}

}  // namespace corral::daemon::workspace
