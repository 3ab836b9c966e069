#include "daemon/workspace/diff.h"

#include <optional>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "corral/status_macros.h"
#include "daemon/workspace/line_diff.h"
#include "daemon/workspace/sha256.h"

namespace corral::daemon::workspace {
namespace {

using corral::v1::ChangeKind;
using corral::v1::DiffWorkspaceResponse;
using corral::v1::FileChange;
using corral::v1::FileType;
using corral::workspace::v1::Manifest;
using corral::workspace::v1::ManifestEntry;

// git looks this far for a NUL byte to call a file binary.
constexpr uint64_t kBinaryProbeBytes = 8000;
constexpr absl::string_view kNullHash = "0000000";

bool IsRegular(const ManifestEntry& entry) {
  return entry.type() == corral::agent::v1::ENTRY_TYPE_REGULAR;
}
bool IsSymlink(const ManifestEntry& entry) {
  return entry.type() == corral::agent::v1::ENTRY_TYPE_SYMLINK;
}
// What a patch shows: regular files and symlinks.
bool HasContent(const ManifestEntry& entry) {
  return IsRegular(entry) || IsSymlink(entry);
}

FileType ToFileType(corral::agent::v1::EntryType type) {
  switch (type) {
    case corral::agent::v1::ENTRY_TYPE_REGULAR:
      return corral::v1::FILE_TYPE_REGULAR;
    case corral::agent::v1::ENTRY_TYPE_DIRECTORY:
      return corral::v1::FILE_TYPE_DIRECTORY;
    case corral::agent::v1::ENTRY_TYPE_SYMLINK:
      return corral::v1::FILE_TYPE_SYMLINK;
    default:
      return corral::v1::FILE_TYPE_OTHER;
  }
}

uint64_t SizeOf(const ManifestEntry& entry) {
  if (IsRegular(entry)) return entry.size();
  if (IsSymlink(entry)) return entry.link_target().size();
  return 0;
}

absl::string_view GitMode(const ManifestEntry& entry) {
  if (IsSymlink(entry)) return "120000";
  return (entry.mode() & 0111) != 0 ? "100755" : "100644";
}

// The abbreviated object name on the "index" line.
std::string ShortHash(const ManifestEntry& entry) {
  if (IsRegular(entry)) return entry.sha256().substr(0, 7);
  Sha256 sha256;
  sha256.Update(entry.link_target());
  absl::StatusOr<std::string> digest = sha256.HexDigest();
  return digest.ok() ? digest->substr(0, 7) : std::string(kNullHash);
}

// The content a patch shows, or nullopt for binary content.
struct Content {
  std::optional<std::string> text;
};

class Differ {
 public:
  Differ(const ContentStore& store, const DiffOptions& options)
      : store_(store), options_(options) {
    line_options_.context_lines = options.context_lines;
  }

  absl::Status Compare(const ManifestEntry* before, const ManifestEntry* after);
  DiffWorkspaceResponse Take() { return std::move(response_); }

 private:
  // Whether a regular file's content is binary, reading as little as
  // possible; symlinks never are.
  absl::StatusOr<bool> IsBinary(const ManifestEntry& entry);
  absl::StatusOr<Content> Load(const ManifestEntry& entry);
  bool PatchWanted() const {
    return options_.patch && !response_.patch_truncated();
  }
  // One side's section of a patch for an added or deleted file or symlink.
  absl::Status AppendOneSided(const ManifestEntry& entry, bool added);
  absl::Status AppendModified(const ManifestEntry& before,
                              const ManifestEntry& after, bool content_changed);
  void AppendPatch(std::string_view section);

  const ContentStore& store_;
  const DiffOptions& options_;
  LineDiffOptions line_options_;
  DiffWorkspaceResponse response_;
};

absl::StatusOr<bool> Differ::IsBinary(const ManifestEntry& entry) {
  if (!IsRegular(entry)) return false;
  if (entry.size() > options_.max_text_bytes) return true;
  ASSIGN_OR_RETURN(std::string head,
                   store_.ReadObjectPrefix(entry.sha256(), kBinaryProbeBytes));
  return head.find('\0') != std::string::npos;
}

absl::StatusOr<Content> Differ::Load(const ManifestEntry& entry) {
  if (IsSymlink(entry)) return Content{entry.link_target()};
  if (entry.size() > options_.max_text_bytes) return Content{};
  absl::StatusOr<std::string> data =
      store_.ReadObject(entry.sha256(), options_.max_text_bytes);
  if (absl::IsResourceExhausted(data.status())) return Content{};
  if (!data.ok()) return data.status();
  std::string_view head = std::string_view(*data).substr(0, kBinaryProbeBytes);
  if (head.find('\0') != std::string_view::npos) return Content{};
  return Content{*std::move(data)};
}

void Differ::AppendPatch(std::string_view section) {
  std::string* patch = response_.mutable_patch();
  const uint64_t room = options_.max_patch_bytes > patch->size()
                            ? options_.max_patch_bytes - patch->size()
                            : 0;
  if (section.size() <= room) {
    patch->append(section);
    return;
  }
  // Whole lines only, so the patch stays parseable as far as it goes.
  const size_t cut = section.substr(0, static_cast<size_t>(room)).rfind('\n');
  if (cut != std::string_view::npos) patch->append(section.substr(0, cut + 1));
  response_.set_patch_truncated(true);
}

absl::Status Differ::AppendOneSided(const ManifestEntry& entry, bool added) {
  const std::string& path = entry.path();
  std::string section = absl::StrCat("diff --git a/", path, " b/", path, "\n",
                                     added ? "new" : "deleted", " file mode ",
                                     GitMode(entry), "\n");
  const std::string hash = ShortHash(entry);
  const absl::string_view short_hash = hash;
  absl::StrAppend(&section, "index ", added ? kNullHash : short_hash, "..",
                  added ? short_hash : kNullHash, "\n");
  ASSIGN_OR_RETURN(Content content, Load(entry));
  const std::string old_name = added ? "/dev/null" : absl::StrCat("a/", path);
  const std::string new_name = added ? absl::StrCat("b/", path) : "/dev/null";
  if (!content.text.has_value()) {
    absl::StrAppend(&section, "Binary files ", old_name, " and ", new_name,
                    " differ\n");
  } else if (!content.text->empty()) {
    absl::StrAppend(&section, "--- ", old_name, "\n+++ ", new_name, "\n");
    section += added ? UnifiedHunks("", *content.text, line_options_)
                     : UnifiedHunks(*content.text, "", line_options_);
  }
  AppendPatch(section);
  return absl::OkStatus();
}

absl::Status Differ::AppendModified(const ManifestEntry& before,
                                    const ManifestEntry& after,
                                    bool content_changed) {
  const std::string& path = after.path();
  const bool mode_shown = GitMode(before) != GitMode(after);
  // A change git cannot see (0644 -> 0640) has no section, as in git.
  if (!mode_shown && !content_changed) return absl::OkStatus();
  std::string section = absl::StrCat("diff --git a/", path, " b/", path, "\n");
  if (mode_shown) {
    absl::StrAppend(&section, "old mode ", GitMode(before), "\nnew mode ",
                    GitMode(after), "\n");
  }
  if (content_changed) {
    absl::StrAppend(&section, "index ", ShortHash(before), "..",
                    ShortHash(after));
    if (!mode_shown) absl::StrAppend(&section, " ", GitMode(after));
    section += "\n";
    ASSIGN_OR_RETURN(Content old_content, Load(before));
    ASSIGN_OR_RETURN(Content new_content, Load(after));
    if (!old_content.text.has_value() || !new_content.text.has_value()) {
      absl::StrAppend(&section, "Binary files a/", path, " and b/", path,
                      " differ\n");
    } else {
      absl::StrAppend(
          &section, "--- a/", path, "\n+++ b/", path, "\n",
          UnifiedHunks(*old_content.text, *new_content.text, line_options_));
    }
  }
  AppendPatch(section);
  return absl::OkStatus();
}

absl::Status Differ::Compare(const ManifestEntry* before,
                             const ManifestEntry* after) {
  FileChange change;
  corral::v1::DiffCounts* counts = response_.mutable_counts();
  if (before != nullptr && after != nullptr &&
      before->type() == after->type()) {
    bool content_changed = false;
    if (IsRegular(*after)) {
      content_changed = before->sha256() != after->sha256();
    } else if (IsSymlink(*after)) {
      content_changed = before->link_target() != after->link_target();
    }
    const bool mode_changed = before->mode() != after->mode();
    if (!content_changed && !mode_changed) return absl::OkStatus();
    change.set_kind(corral::v1::CHANGE_KIND_MODIFIED);
    change.set_content_changed(content_changed);
    if (content_changed) {
      ASSIGN_OR_RETURN(const bool old_binary, IsBinary(*before));
      ASSIGN_OR_RETURN(const bool new_binary, IsBinary(*after));
      change.set_binary(old_binary || new_binary);
    }
    counts->set_modified(counts->modified() + 1);
    if (PatchWanted() && HasContent(*after)) {
      RETURN_IF_ERROR(AppendModified(*before, *after, content_changed));
    }
  } else if (before != nullptr && after != nullptr) {
    change.set_kind(corral::v1::CHANGE_KIND_TYPE_CHANGED);
    change.set_content_changed(true);
    ASSIGN_OR_RETURN(const bool old_binary, IsBinary(*before));
    ASSIGN_OR_RETURN(const bool new_binary, IsBinary(*after));
    change.set_binary(old_binary || new_binary);
    counts->set_type_changed(counts->type_changed() + 1);
    if (PatchWanted() && HasContent(*before)) {
      RETURN_IF_ERROR(AppendOneSided(*before, /*added=*/false));
    }
    if (PatchWanted() && HasContent(*after)) {
      RETURN_IF_ERROR(AppendOneSided(*after, /*added=*/true));
    }
  } else {
    const ManifestEntry& present = before != nullptr ? *before : *after;
    const bool added = after != nullptr;
    change.set_kind(added ? corral::v1::CHANGE_KIND_ADDED
                          : corral::v1::CHANGE_KIND_DELETED);
    change.set_content_changed(true);
    ASSIGN_OR_RETURN(const bool binary, IsBinary(present));
    change.set_binary(binary);
    if (added) {
      counts->set_added(counts->added() + 1);
    } else {
      counts->set_deleted(counts->deleted() + 1);
    }
    if (PatchWanted() && HasContent(present)) {
      RETURN_IF_ERROR(AppendOneSided(present, added));
    }
  }
  const ManifestEntry& named = after != nullptr ? *after : *before;
  change.set_path(named.path());
  change.set_type(ToFileType(named.type()));
  if (before != nullptr) {
    if (after != nullptr) change.set_old_type(ToFileType(before->type()));
    change.set_old_mode(before->mode());
    change.set_old_size(SizeOf(*before));
  }
  if (after != nullptr) {
    change.set_new_mode(after->mode());
    change.set_new_size(SizeOf(*after));
  }
  *response_.add_changes() = std::move(change);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<DiffWorkspaceResponse> DiffManifests(
    const Manifest& before, const Manifest& after, const ContentStore& store,
    const DiffOptions& options) {
  Differ differ(store, options);
  // Both manifests are sorted by path: one merge pass.
  int i = 0;
  int j = 0;
  const int before_size = before.entries_size();
  const int after_size = after.entries_size();
  while (i < before_size || j < after_size) {
    const ManifestEntry* old_entry =
        i < before_size ? &before.entries(i) : nullptr;
    const ManifestEntry* new_entry =
        j < after_size ? &after.entries(j) : nullptr;
    int order = 0;
    if (old_entry == nullptr) {
      order = 1;
    } else if (new_entry == nullptr) {
      order = -1;
    } else {
      order = old_entry->path().compare(new_entry->path());
    }
    if (order < 0) {
      RETURN_IF_ERROR(differ.Compare(old_entry, nullptr));
      ++i;
    } else if (order > 0) {
      RETURN_IF_ERROR(differ.Compare(nullptr, new_entry));
      ++j;
    } else {
      RETURN_IF_ERROR(differ.Compare(old_entry, new_entry));
      ++i;
      ++j;
    }
  }
  return differ.Take();
}

}  // namespace corral::daemon::workspace
