// Packs a client-side directory into a tar stream, so that the privileged
// daemon never opens a path a client names: it only ever sees archive bytes.
#ifndef CORRAL_CLIENT_TAR_PACKER_H_
#define CORRAL_CLIENT_TAR_PACKER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corral::cli {

// Chunk size of streamed uploads; the API caps each message at 1 MiB.
inline constexpr size_t kUploadChunkSize = 1 << 20;

// Receives the archive's bytes in order. A non-OK status stops packing and is
// what PackDirectory returns.
using ChunkSink = std::function<absl::Status(absl::string_view chunk)>;

struct PackResult {
  // Entries written (directories, files, symlinks, FIFOs), the root excluded.
  uint64_t entries = 0;
  // Archive bytes handed to the sink.
  uint64_t archive_bytes = 0;
  // Entries left out, one human-readable line each ("dev/null: device node,
  // skipped"): device nodes and sockets have no place in an image and the
  // daemon would refuse the whole archive for them.
  std::vector<std::string> skipped;
};

// Writes a POSIX (pax) tar of the tree under `directory` to `sink`, in chunks
// of exactly `chunk_size` bytes except the last. Entry names are relative to
// `directory` ("bin/sh"), sorted, without the root itself. Symlinks are stored
// as links and never followed; owners are stored as 0:0; permission bits and
// mtimes are kept; hard links become separate copies. A file that vanishes,
// changes type or shrinks while being packed, or cannot be read, fails the
// whole pack with its path in the message: a silently incomplete image is
// worse than none. Without `keep_fifos`, FIFOs are skipped too (a workspace
// archive may not hold them).
absl::StatusOr<PackResult> PackDirectory(const std::string& directory,
                                         const ChunkSink& sink,
                                         size_t chunk_size = kUploadChunkSize,
                                         bool keep_fifos = true);

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_TAR_PACKER_H_
