// The image store: the built-in "host" image plus root filesystems imported
// from tar archives, OCI image layouts or `docker save` archives, extracted
// safely, published atomically under <images_dir>/<name>/rootfs (with the
// image config as <images_dir>/<name>/config.json for OCI and Docker
// images) and recorded in the Store.
#ifndef CORRAL_DAEMON_IMAGES_IMAGE_STORE_H_
#define CORRAL_DAEMON_IMAGES_IMAGE_STORE_H_

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "corral/v1/images.pb.h"
#include "daemon/images/oci_archive.h"
#include "daemon/images/safe_extract.h"

namespace corral::daemon {

class Store;
struct ImageRecord;

inline constexpr std::string_view kHostImage = "host";
// The image config of an image imported from an OCI or Docker archive, as
// the archive had it, next to the rootfs: <images_dir>/<name>/config.json.
inline constexpr std::string_view kConfigFile = "config.json";

// Thread-safe. Imports of different names run in parallel; publishing,
// replacing and deleting are serialized.
class ImageStore {
 public:
  // Directories every rootfs gets, since sandboxes mount over them.
  static constexpr std::string_view kMountPoints[] = {"proc", "dev", "sys",
                                                      "tmp", "workspace"};

  // `images_dir` is created (0711) if missing (its parent must exist);
  // leftovers of interrupted imports and deletions are removed, as are image
  // directories the store has no record of. `store` is not owned and must
  // outlive the ImageStore.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ImageStore>> Open(
      const std::filesystem::path& images_dir, Store* store);

  ImageStore(const ImageStore&) = delete;
  ImageStore& operator=(const ImageStore&) = delete;

  // 1-64 characters of [a-z0-9._-], starting with a letter or digit.
  [[nodiscard]] static bool IsValidName(std::string_view name);
  [[nodiscard]] static bool IsBuiltin(std::string_view name) {
    return name == kHostImage;
  }

  // Imports an archive (plain, gzip, xz or zstd) read through `next_chunk`,
  // which is called from a helper thread while this call blocks (never
  // concurrently). metadata.source says what it is: IMAGE_SOURCE_ROOTFS_TAR
  // a root filesystem tar; IMAGE_SOURCE_OCI_ARCHIVE an OCI image layout
  // tarred (skopeo/umoci oci-archive, `tar -C layout -c .`) or a `docker
  // save` archive (manifest.json; legacy <id>/layer.tar or OCI blobs);
  // IMAGE_SOURCE_UNSPECIFIED tells them apart by the first member (see
  // IsImageArchiveMember). The image is published only if the whole
  // archive is good; on any error nothing is published, the store is
  // unchanged and the temporary directory (spooled members included) is
  // gone. The image's source says which kind it was.
  //
  // Image archives: the members are spooled under the temporary directory
  // (their order is arbitrary), the one image is chosen (linux and this
  // host's architecture among several platforms; several images are
  // refused, naming them), every blob used is checked against its sha256
  // digest and size (legacy docker save: the config against its file name,
  // the layers against the config's diff_ids), unknown media types are
  // refused, and the layers (tar, gzip or zstd) are applied in order with
  // whiteouts (ApplyLayers). The limits cover the archive (raw bytes,
  // members) and all layers together (bytes written, entries).
  //
  // Errors: INVALID_ARGUMENT for a bad name, label or archive (naming the
  // entry and the rule it broke); ALREADY_EXISTS when the name is taken and
  // metadata.replace is not set; FAILED_PRECONDITION when replacing an
  // image a sandbox uses, or "host", or for an image of another platform;
  // the reader's own error if it fails.
  //
  // Safety, for a rootfs tar and for every layer: only the tar formats and
  // the gzip/xz/zstd filters are enabled;
  // no absolute paths, no "..", nothing written through a symlink, hard
  // links only to earlier entries of the same archive; owners are not
  // restored (root owns everything), setuid/setgid/sticky bits are stripped
  // (rootfs tars carry setuid binaries such as su; rejecting them would
  // reject every distribution), extended attributes and ACLs (file
  // capabilities) are dropped, and device nodes, FIFOs and sockets are
  // skipped and logged.
  [[nodiscard]] absl::StatusOr<corral::v1::Image> Import(
      const corral::v1::ImportImageMetadata& metadata,
      const ChunkReader& next_chunk, const ImportLimits& limits = {});

  // NOT_FOUND when there is no such image.
  [[nodiscard]] absl::StatusOr<corral::v1::Image> Get(std::string_view name);
  // "host" first, then the imported images by name, with sandbox counts.
  [[nodiscard]] absl::StatusOr<std::vector<corral::v1::Image>> List();
  // NOT_FOUND when there is no such image; FAILED_PRECONDITION for "host"
  // and while a sandbox uses the image.
  [[nodiscard]] absl::Status Delete(std::string_view name);
  // The published root filesystem of an imported image. FAILED_PRECONDITION
  // for "host", which has none: its runtime assembles it from the host.
  [[nodiscard]] absl::StatusOr<std::filesystem::path> RootfsDir(
      std::string_view name);

  // What the image's config says about running it (Env, Entrypoint, Cmd,
  // WorkingDir, User), from <images_dir>/<name>/config.json: for images
  // imported from OCI or Docker archives. Empty for "host" and rootfs-tar
  // images; NOT_FOUND when there is no such image.
  [[nodiscard]] absl::StatusOr<ImageRunConfig> RunConfig(std::string_view name);

  const std::filesystem::path& images_dir() const { return images_dir_; }

 private:
  ImageStore(std::filesystem::path images_dir, Store* store)
      : images_dir_(std::move(images_dir)), store_(store) {}

  absl::Status CleanUp();
  absl::StatusOr<corral::v1::Image> ToImage(const ImageRecord& record);

  const std::filesystem::path images_dir_;
  Store* const store_;  // not owned
  // Serializes publish, replace and delete, so that the in-use check, the
  // directory swap and the store update happen as one step.
  std::mutex publish_mutex_;
};

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_IMAGES_IMAGE_STORE_H_
