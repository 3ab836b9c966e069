// Safe extraction of an untrusted tar stream into a private directory, for
// image imports: only the tar formats and the gzip/xz/zstd filters, every
// entry checked against path, type and size rules before it is written.
// Also applies the layers of an OCI image one over the other, with the same
// rules plus whiteouts.
#ifndef CORRAL_DAEMON_IMAGES_SAFE_EXTRACT_H_
#define CORRAL_DAEMON_IMAGES_SAFE_EXTRACT_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "daemon/images/tar_stream.h"

namespace corral::daemon {

struct ImportLimits {
  // Logical bytes of all regular files together (sparse files count at their
  // full size). The raw archive may be at most max_bytes plus 2 KiB per
  // allowed entry (headers).
  uint64_t max_bytes = 8ull << 30;
  // Archive entries, skipped ones included.
  uint64_t max_entries = 1'000'000;
  // Bytes in an entry's path, or in a link's target.
  size_t max_path_length = 4096;
  // Components in an entry's path.
  size_t max_depth = 256;
};

enum class Compression { kAuto, kNone, kGzip, kXz, kZstd };

struct ExtractStats {
  // Logical bytes of the regular files written (ApplyLayers: of the regular
  // files in the final tree).
  uint64_t logical_bytes = 0;
  // Entries created (files, directories, links; ApplyLayers: the entries
  // of the final tree that some layer named).
  uint64_t entries = 0;
  // Device nodes, FIFOs and sockets left out.
  uint64_t skipped = 0;
  // Entries whose setuid/setgid/sticky bits were removed.
  uint64_t stripped_modes = 0;
  // Bytes of the raw (compressed) stream, trailing padding included.
  // ExtractTar only.
  uint64_t archive_bytes = 0;
  // Lowercase hex SHA-256 of those bytes. ExtractTar only.
  std::string archive_sha256;
};

// One layer of an image, for ApplyLayers.
struct LayerSource {
  // How messages name the layer, e.g. "layer 2 (sha256:ab12...)".
  std::string name;
  Compression compression = Compression::kAuto;
  // Opens the layer's bytes from their start. Called twice per layer (the
  // whiteouts are read first), on the extraction thread.
  std::function<absl::StatusOr<ChunkReader>()> open;
};

// Extracts the archive that `next_chunk` yields into `destination`, an
// existing empty directory nobody else writes to. Runs on a helper thread
// with its own working directory and umask (platform.h), so the
// caller's process-wide state is untouched; next_chunk is called from that
// thread while this call blocks.
//
// A violation returns INVALID_ARGUMENT naming the entry and the rule; the
// caller removes `destination`. See ImageStore::Import for the rules.
[[nodiscard]] absl::StatusOr<ExtractStats> ExtractTar(
    const std::filesystem::path& destination, Compression compression,
    const ChunkReader& next_chunk, const ImportLimits& limits);

// Applies `layers` in order into `destination` (an existing empty directory
// nobody else writes to) with OCI layer semantics, on a helper thread like
// ExtractTar. For each layer, first its whiteouts act on what the layers
// below left: ".wh.NAME" removes NAME, "DIR/.wh..wh..opq" empties DIR;
// other ".wh..wh." names (aufs metadata) are ignored. Then its other
// entries are written with every ExtractTar rule, where "earlier" means in
// this layer or a lower one: nothing is written through a symlink any layer
// made, hard links point only at entries present when they come. An entry
// may replace a lower layer's entry of another type (a file by a directory,
// a directory by a symlink: the old tree goes). Whiteout files never appear
// in the result. The limits apply to all layers together (bytes written,
// entries read). Errors name the layer (LayerSource::name).
[[nodiscard]] absl::StatusOr<ExtractStats> ApplyLayers(
    const std::filesystem::path& destination,
    const std::vector<LayerSource>& layers, const ImportLimits& limits);

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_IMAGES_SAFE_EXTRACT_H_
