// Renderings of the workspace API's answers (files, diff, command log,
// snapshots) for the CLI: tables and text for people, JSON for scripts. Pure
// functions; "now" is passed in. Names and commands come from the sandbox and
// may hold anything: text renderings escape control characters so they
// cannot drive the terminal; JSON escapes them as JSON does.
#ifndef CORRAL_CLIENT_WORKSPACE_FORMAT_H_
#define CORRAL_CLIENT_WORKSPACE_FORMAT_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "corral/v1/files.pb.h"
#include "corral/v1/snapshots.pb.h"

namespace corral::cli {

// Control characters (and DEL) as \xNN, \n, \t; everything else as is.
std::string EscapeControl(absl::string_view text);

// "SIGKILL" for 9; "SIG<n>" when the number has no name.
std::string SignalName(int signal_number);

// 850 -> "850us", 12300 -> "12ms", 1500000 -> "1.5s", 125000000 -> "2m05s".
std::string FormatDuration(uint64_t microseconds);

// "file", "directory", "symlink", "other"; "" when unspecified.
std::string FileTypeName(corral::v1::FileType type);

// ls -l style: "-rw-r--r--", "drwxr-xr-x", "lrwxrwxrwx".
std::string ModeString(corral::v1::FileType type, uint32_t mode);

// `corral file stat`: "Key: value" lines (path, type, size, mode, modified,
// link target for symlinks).
std::string FormatFileInfo(const corral::v1::FileInfo& info);
// One JSON object (no newline): path, type, size, mode (a number), modified_at
// (RFC 3339), link_target.
std::string FileInfoJson(const corral::v1::FileInfo& info);

// `corral file ls`: table MODE SIZE MODIFIED NAME ("name -> target" for
// symlinks).
std::string FormatListing(const corral::v1::ListDirectoryResponse& response,
                          int64_t now_seconds);
// {"entries":[FileInfo...],"truncated":bool}
std::string ListingJson(const corral::v1::ListDirectoryResponse& response);

// How a change kind is shown: its letter in --name-status, --stat and
// `corral patch`, its name in JSON (added, modified, deleted, type_changed).
struct ChangeKindLabel {
  char letter;
  const char* name;
};
ChangeKindLabel LabelOf(corral::v1::ChangeKind kind);

// `corral diff --name-status`: "A\tpath" (A, M, D, T) per change.
std::string FormatNameStatus(const corral::v1::DiffWorkspaceResponse& diff);
// `corral diff --stat`: one line per change ("M  path  (mode 0644 -> 0755)")
// and the counts: "3 changed: 1 added, 1 modified, 1 deleted, 0 type
// changed".
std::string FormatDiffStat(const corral::v1::DiffWorkspaceResponse& diff);
// `corral diff --json`: {"changes":[{path, kind, type, old_type, old_mode,
// new_mode, content_changed, binary, old_size, new_size}], "counts":{...},
// "patch": text, "patch_truncated": bool}. Kinds: added, modified, deleted,
// type_changed.
std::string DiffJson(const corral::v1::DiffWorkspaceResponse& diff);

// `corral logs`: table SEQ STARTED DURATION EXIT COMMAND. EXIT is the code,
// the signal's name ("SIGKILL"), or "timeout".
std::string FormatCommandLog(const corral::v1::GetCommandLogResponse& log,
                             int64_t now_seconds);
// `corral logs --output`: per command a header line, then its kept stdout
// and stderr, each marked "[truncated]" when only its start was kept.
std::string FormatCommandLogOutput(const corral::v1::GetCommandLogResponse& log,
                                   int64_t now_seconds);
// {"commands":[{sequence, argv, cwd, exit_code, signal, timed_out,
// started_at, duration_us, stdout_bytes, stderr_bytes[, stdout, stderr,
// stdout_truncated, stderr_truncated]}]}; the output fields with
// `with_output`.
std::string CommandLogJson(const corral::v1::GetCommandLogResponse& log,
                           bool with_output);

// `corral snapshot ls`: table NAME CREATED ENTRIES SIZE NEW.
std::string FormatSnapshots(const corral::v1::ListSnapshotsResponse& response,
                            int64_t now_seconds);

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_WORKSPACE_FORMAT_H_
