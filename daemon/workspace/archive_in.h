// Validating reader of the tar archives clients upload (seeds and syncs):
// every entry is checked before any of it reaches the sink, which forwards
// it to the sandbox's agent (and into the content store for a seed).
#ifndef CORRAL_DAEMON_WORKSPACE_ARCHIVE_IN_H_
#define CORRAL_DAEMON_WORKSPACE_ARCHIVE_IN_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "daemon/workspace/entry_sink.h"

namespace corral::daemon::workspace {

struct UploadLimits {
  // Content bytes of all regular files together (sparse files count at
  // their full size).
  uint64_t max_bytes = 8ull << 30;
  // Archive entries, skipped "." entries included.
  uint64_t max_entries = 1'000'000;
  // Bytes in an entry's path (after "./" is removed) or a symlink's target.
  size_t max_path = 4096;
  // Bytes in one path component.
  size_t max_component = 255;
};

struct UploadStats {
  // Entries passed to the sink.
  uint64_t entries = 0;
  // Content bytes passed to the sink.
  uint64_t bytes = 0;
  // Entries whose setuid, setgid or sticky bits were dropped.
  uint64_t stripped_modes = 0;
  // Bytes of the raw (possibly compressed) stream, padding included.
  uint64_t archive_bytes = 0;
};

// Reads a tar archive (ustar, pax, GNU; uncompressed, gzip, xz or zstd) from
// `next_chunk` and passes its entries to `sink` as FsEntry + data:
//  - paths lose a leading "./" and a directory's trailing '/'; "." itself is
//    skipped; what remains must follow PathProblem's rules (relative, no
//    "..", "." or empty component, no NUL, within max_path/max_component);
//  - no entry may lie beneath an earlier symlink or regular file of the
//    archive (nothing is ever written through a link);
//  - types: regular files, directories, symlinks (target kept as is, never
//    followed, at most max_path bytes) and hard links to an earlier regular
//    file of the archive (ENTRY_TYPE_HARDLINK, link_target = the target's
//    clean path, size 0); devices, fifos and sockets are refused;
//  - modes keep their 0777 bits only;
//  - regular files' bytes and the entry count stay within `limits`; the raw
//    stream may be at most max_bytes + 2 KiB per entry + 1 MiB, which stops
//    compression bombs early.
// A violation fails the whole upload with INVALID_ARGUMENT
// "archive entry '<path>': <reason>" before anything of that entry reaches
// the sink. Duplicate paths are passed on (the later one wins). An error
// from next_chunk or the sink is returned as is.
[[nodiscard]] absl::StatusOr<UploadStats> ReadUploadArchive(
    const ChunkReader& next_chunk, const UploadLimits& limits, EntrySink& sink);

}  // namespace corral::daemon::workspace

#endif  // CORRAL_DAEMON_WORKSPACE_ARCHIVE_IN_H_
