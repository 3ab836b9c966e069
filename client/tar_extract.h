// Extracts a tar stream that came out of a sandbox onto the client's disk.
// The archive is hostile: a sandbox's user chose every name, type and link in
// it. The extractor therefore resolves every path itself, one component at a
// time with openat(O_NOFOLLOW) below a directory fd, and refuses (naming the
// entry) anything that could write outside that directory or plant something
// dangerous in it:
//   - absolute paths, `..` components, names over kMaxEntryPathBytes bytes or
//     a component over kMaxNameBytes;
//   - any entry whose path passes through a symlink, whether the archive made
//     it or it was already there;
//   - hard links, except to a regular file this same extraction wrote earlier;
//   - device nodes, FIFOs, sockets and unknown types;
//   - an entry whose path already exists as a non-directory;
//   - more entries or more bytes of content than the limits allow.
// Permission bits are kept without setuid, setgid and sticky; owners are not
// (files belong to the user running corral). Only tar formats are read
// (ustar, pax, GNU); nothing is decompressed.
//
// libarchive's headers stay out of this header: they define macros that clash
// with corral.v1's enum values.
#ifndef CORRAL_CLIENT_TAR_EXTRACT_H_
#define CORRAL_CLIENT_TAR_EXTRACT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corral::cli {

// Longest entry path accepted, and longest single component.
inline constexpr size_t kMaxEntryPathBytes = 4096;
inline constexpr size_t kMaxNameBytes = 255;

// Pulls the next piece of the archive into `chunk` (replacing what it held).
// Returns false at the end of the stream; an error stops the extraction and is
// what the extraction returns.
using ChunkSource = std::function<absl::StatusOr<bool>(std::string& chunk)>;

struct ExtractLimits {
  // Entries of the archive (every header counts); 0: no limit.
  uint64_t max_entries = 1000000;
  // Bytes of file content written; 0: no limit.
  uint64_t max_bytes = uint64_t{16} << 30;
};

struct ExtractResult {
  uint64_t entries = 0;
  // Bytes of file content written.
  uint64_t bytes = 0;
  // The distinct first components of the entries' paths, sorted.
  std::vector<std::string> top_level;
};

// Extracts the archive into the directory open at `dest_fd`, which may hold
// files already: existing directories are merged into (when not symlinks),
// existing files are never overwritten (the entry is refused). Directories
// this call creates get their archive mode at the end, so a read-only
// directory can still be filled. On error, what was written so far stays: the
// callers below extract into a private staging directory and remove it.
absl::StatusOr<ExtractResult> ExtractTarAt(const ChunkSource& source,
                                           int dest_fd,
                                           const ExtractLimits& limits);

// `corral export`: extracts into directory `dest` (created, with missing
// parents, when it does not exist). The archive is first extracted into a
// private staging directory inside `dest`, then each top-level entry is
// renamed into `dest`. An existing entry of that name is refused unless
// `overwrite`, in which case it is replaced as a whole (atomically where the
// file system allows). On any error the staging directory and everything in
// it is removed.
absl::StatusOr<ExtractResult> ExtractIntoDirectory(const ChunkSource& source,
                                                   const std::string& dest,
                                                   bool overwrite,
                                                   const ExtractLimits& limits);

// `corral cp ID:PATH TARGET`: the archive must hold exactly one top-level
// entry (a file, a directory with its tree, or a symlink), which becomes
// `target`. It is extracted into a private staging directory beside `target`
// and renamed into place. An existing `target` is refused before anything is
// downloaded unless `overwrite`, which replaces it. On any error the staging
// directory is removed.
absl::StatusOr<ExtractResult> ExtractAsPath(const ChunkSource& source,
                                            const std::string& target,
                                            bool overwrite,
                                            const ExtractLimits& limits);

// Checks, before a download starts, that `target` may be written: its parent
// is a directory and, unless `overwrite`, `target` does not exist.
absl::Status CheckCopyTarget(const std::string& target, bool overwrite);

// Removes `name` below `dir_fd` and, for a directory, everything in it,
// without following any symlink.
absl::Status RemoveTreeAt(int dir_fd, const std::string& name);

// A name from an archive, fit for an error message: control characters
// escaped, cut after 200 bytes.
std::string ShownName(absl::string_view name);

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_TAR_EXTRACT_H_
