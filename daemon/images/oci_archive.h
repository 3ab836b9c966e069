// Reading OCI image layouts and `docker save` archives streamed as one tar:
// the members are spooled to files first (their order is arbitrary), then
// the image is chosen from the index or manifest.json, every blob used is
// checked against its digest and size, and the layers come out ready for
// ApplyLayers.
#ifndef CORRAL_DAEMON_IMAGES_OCI_ARCHIVE_H_
#define CORRAL_DAEMON_IMAGES_OCI_ARCHIVE_H_

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "daemon/images/safe_extract.h"
#include "daemon/images/tar_stream.h"

namespace corral::daemon {

// What an image config says about running the image (the "config" object
// of an OCI image config or Docker container config).
struct ImageRunConfig {
  std::vector<std::string> env;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::string working_dir;
  std::string user;
};

// The run settings of an image config (JSON); empty when it has none.
// INVALID_ARGUMENT when it is no JSON object or a field has the wrong type.
[[nodiscard]] absl::StatusOr<ImageRunConfig> ParseImageRunConfig(
    const std::string& config_json);

// The image chosen from an archive, verified.
struct ResolvedImage {
  // "oci" (an image layout, including the one newer `docker save` writes)
  // or "docker-save" (manifest.json with <id>/layer.tar).
  std::string format;
  // "sha256:<hex>" of the manifest; empty for a legacy docker save, which
  // has none.
  std::string manifest_digest;
  // The config blob as it is (its digest was checked).
  std::string config_json;
  ImageRunConfig run;
  // Bottom layer first; each reads its spooled, verified blob.
  std::vector<LayerSource> layers;
};

// The OCI name of this host's architecture ("amd64", "arm64", ...).
[[nodiscard]] std::string_view HostArchitecture();

// True when an archive member named `path` shows an OCI image layout or a
// docker save archive: a top-level oci-layout, index.json, manifest.json,
// repositories or blobs, or a 64-hex-digit directory, "<hex>.json" or
// "<hex>.tar". A root filesystem has none of these at its top.
[[nodiscard]] bool IsImageArchiveMember(std::string_view path);

struct DetectedArchive {
  bool image_archive = false;
  // The whole stream again from its first byte (what the detection read,
  // then the rest). Owns what it needs; `next_chunk` must outlive it.
  ChunkReader replay;
};

// Reads the start of the tar stream `next_chunk` yields (at most a few
// headers and 16 MiB) to tell an image archive from a rootfs tar by its
// first member that is not the root. Anything it cannot read counts as a
// rootfs tar, whose extraction then reports the problem; the reader's own
// error is returned as is.
[[nodiscard]] absl::StatusOr<DetectedArchive> DetectImageArchive(
    Compression compression, const ChunkReader& next_chunk);

// An image archive whose members are spooled into a private directory.
class ImageArchive {
 public:
  // Reads the whole tar stream (plain or gzip/xz/zstd), writing each regular
  // member to a file in `spool_dir` (existing, empty, private to the
  // caller). Symlinks and hard links between members are kept as aliases;
  // directories are implied; other members are ignored. Within `limits`:
  // members at most max_entries, their sizes together at most max_bytes.
  // INVALID_ARGUMENT for a corrupt or hostile archive.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ImageArchive>> Spool(
      const std::filesystem::path& spool_dir, Compression compression,
      const ChunkReader& next_chunk, const ImportLimits& limits);

  // Chooses the image: from index.json when there is an oci-layout (a
  // nested index is followed; among platforms, linux/`architecture`),
  // else from manifest.json. Refuses several candidate images (naming
  // them), unknown media types (listing them), a blob that is missing or
  // differs from its digest or size, and an image for another platform.
  [[nodiscard]] absl::StatusOr<ResolvedImage> Resolve(
      std::string_view architecture = HostArchitecture()) const;

  // The raw bytes of the stream and their SHA-256 (lowercase hex).
  uint64_t archive_bytes() const { return archive_bytes_; }
  const std::string& archive_sha256() const { return archive_sha256_; }

  // Spooled member, for the implementation.
  struct Member {
    // The spooled file, or empty for a symlink.
    std::string file;
    uint64_t size = 0;
    // The symlink's target as the archive gave it.
    std::string link_target;
  };

 private:
  ImageArchive() = default;

  std::map<std::string, Member> members_;
  uint64_t archive_bytes_ = 0;
  std::string archive_sha256_;
};

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_IMAGES_OCI_ARCHIVE_H_
