// What changed between two manifests: structured changes, counts and a
// patch in git's format (corral.v1.DiffWorkspaceResponse).
#ifndef CORRAL_DAEMON_WORKSPACE_DIFF_H_
#define CORRAL_DAEMON_WORKSPACE_DIFF_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "corral/v1/files.pb.h"
#include "corral/workspace/v1/manifest.pb.h"
#include "daemon/workspace/content_store.h"

namespace corral::daemon::workspace {

struct DiffOptions {
  // Build the text patch (else only the structured changes).
  bool patch = true;
  // Larger regular files are listed as binary, never read whole.
  uint64_t max_text_bytes = 1 << 20;
  // The patch stops (at a line boundary) once it would exceed this.
  uint64_t max_patch_bytes = 16 << 20;
  int context_lines = 3;
};

// Changes are sorted by path: ADDED, DELETED, MODIFIED (same type; content,
// link target or mode differs; content_changed is false for a mode-only
// change), TYPE_CHANGED. Directories are changes too, but never patched
// (as in git). The patch follows `git diff`: "diff --git a/P b/P", mode
// lines, "index <7 hex>..<7 hex>" (abbreviated SHA-256, not git's SHA-1),
// "---"/"+++" lines, hunks with context_lines of context and "\ No newline
// at end of file"; symlinks are mode 120000 with their target as content;
// binary files (a NUL byte in the first 8000 bytes, or over
// max_text_bytes) get "Binary files ... differ" and FileChange.binary; a
// type change is a deletion followed by an addition. Paths are printed as
// they are (no git quoting).
//
// Content is read only for regular files whose hash differs. Errors: the
// store's (NOT_FOUND for a missing object).
[[nodiscard]] absl::StatusOr<corral::v1::DiffWorkspaceResponse> DiffManifests(
    const corral::workspace::v1::Manifest& before,
    const corral::workspace::v1::Manifest& after, const ContentStore& store,
    const DiffOptions& options);

}  // namespace corral::daemon::workspace

#endif  // CORRAL_DAEMON_WORKSPACE_DIFF_H_
