#ifndef CORRAL_DAEMON_WORKSPACE_PATCH_H_
#define CORRAL_DAEMON_WORKSPACE_PATCH_H_

// Unified diffs (git's format, or diff -u's) applied to file contents in
// memory: parsed whole and checked before any file is touched, every hunk
// matched exactly (its context and removed lines), at the line it names or,
// failing that, the nearest place after the previous hunk. The text comes
// from a client: lengths and counts are checked against what is there.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corral::workspace {

struct PatchHunk {
  uint64_t old_start = 0, old_count = 0, new_start = 0, new_count = 0;
  std::string header;  // "@@ -1,3 +1,4 @@"
  // Each line with its mark: ' ' context, '-' removed, '+' added.
  std::vector<std::string> lines;
  bool old_ends_without_newline = false;
  bool new_ends_without_newline = false;
};

struct FilePatch {
  // Relative to the workspace, without git's a/ and b/; empty for
  // /dev/null (a new file has no old path, a deleted one no new path).
  std::string old_path, new_path;
  uint32_t new_mode = 0;  // from "new file mode" / "new mode"; 0: unchanged
  std::vector<PatchHunk> hunks;

  const std::string& path() const {
    return new_path.empty() ? old_path : new_path;
  }
  bool creates() const { return old_path.empty(); }
  bool deletes() const { return new_path.empty(); }
};

// INVALID_ARGUMENT naming the line for a malformed patch, one without any
// file, binary patches, renames, and paths that are absolute or climb out
// with "..".
absl::StatusOr<std::vector<FilePatch>> ParsePatch(absl::string_view text);

// `content` (nullopt: the file does not exist) with the file's hunks
// applied: the new content, or nullopt when the patch deletes the file.
// FAILED_PRECONDITION naming the hunk (and the first line that differs
// where it should apply) when one does not apply.
absl::StatusOr<std::optional<std::string>> ApplyFilePatch(
    const FilePatch& patch, const std::optional<std::string>& content);

}  // namespace corral::workspace

#endif  // CORRAL_DAEMON_WORKSPACE_PATCH_H_
