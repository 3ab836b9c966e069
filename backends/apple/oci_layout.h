// A root filesystem of Corral's image store as the archive `container image
// load` takes: a tar of an OCI image layout (`oci-layout`, `index.json`,
// `blobs/sha256/...`) holding one image of one uncompressed layer, named by
// the index's annotations.
#ifndef CORRAL_BACKENDS_APPLE_OCI_LAYOUT_H_
#define CORRAL_BACKENDS_APPLE_OCI_LAYOUT_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace corral::apple_runtime {

struct LayoutImage {
  std::string directory;     // the root filesystem, tarred as the layer
  bool zero_mtime = false;   // every entry with mtime 0 (reproducible)
  std::string reference;     // the name `container` gives the image
  std::string architecture;  // OCI's: amd64, arm64
};

// Writes the layout tar to `path` (created, mode 0600; the layer is staged
// beside it as `path`.layer and removed). Every blob is named by its
// SHA-256, as the loader checks.
[[nodiscard]] absl::Status WriteImageLayout(const LayoutImage& image,
                                            const std::string& path);

// This host's architecture as OCI names it (uname's machine otherwise).
[[nodiscard]] std::string OciArchitecture();

}  // namespace corral::apple_runtime

#endif  // CORRAL_BACKENDS_APPLE_OCI_LAYOUT_H_
