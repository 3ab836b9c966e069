// The image side of the FAKE `container` CLI: `image load` of a tar of an
// OCI image layout (apple/container ImagesService.load, containerization
// ArchiveReader.extractContents, LocalOCILayoutClient, ImageStore.load and
// its ImportOperation), references as containerization's Reference parses
// and normalizes them, the lookup of ClientImage._search, and the
// ImageResource of `image list` and `image inspect`.
//
// State under <root>/images: refs.json (reference -> the image's index
// descriptor, as ImageStore's ReferenceManager keeps them) and one
// directory per index digest holding the index, manifest and config blobs
// and, for this host's platform, the unpacked root filesystem that
// containers overlay.
#ifndef CORRAL_TESTS_FAKES_APPLE_IMAGE_STORE_H_
#define CORRAL_TESTS_FAKES_APPLE_IMAGE_STORE_H_

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace corral::fake_apple {

// An image reference as containerization's Reference holds it.
struct Reference {
  std::optional<std::string> domain;
  std::string path;
  std::optional<std::string> tag;
  std::optional<std::string> digest;

  std::string Name() const;
  std::string Description() const;
  // Reference.normalize(): library/ for Docker Hub names without one,
  // :latest without a tag or digest.
  void Normalize();
};

// Reference.parse; on failure nullopt and the error's message.
std::optional<Reference> ParseReference(const std::string& text,
                                        std::string* error);
// ClientImage.normalizeReference: docker.io/ without a domain, then
// Normalize().
std::optional<std::string> NormalizeReference(const std::string& text,
                                              std::string* error);
// ClientImage.denormalizeReference: the default registry's names without
// it (and without library/).
std::string DenormalizeReference(const std::string& text);

struct StoredImage {
  std::string reference;
  nlohmann::json descriptor;  // the index descriptor (Descriptor's keys)
  std::string Hex() const;    // its digest without "sha256:"
};

class ImageStore {
 public:
  // `in_use`: the index digests (hex) containers still use, which garbage
  // collection keeps. Called with the state lock held.
  ImageStore(std::string root, std::function<std::set<std::string>()> in_use);

  // `image load`: the references loaded, in the index's order. Rejected
  // members of the archive (refused unless `force`) go to `*rejected`.
  std::vector<std::string> Load(const std::string& archive, bool force,
                                std::vector<std::string>* rejected);

  std::vector<StoredImage> List() const;  // sorted by reference
  // ClientImage._search over List().
  std::optional<StoredImage> Search(const std::string& reference) const;
  // ImageResource as `image list --format json` and `image inspect` print.
  nlohmann::json Resource(const StoredImage& image) const;

  // Drops a reference; the caller holds the state lock.
  void RemoveReference(const std::string& reference);
  // Removes image directories no reference and no container uses; the
  // caller holds the state lock. Returns the bytes freed.
  uint64_t CollectGarbage();

  // This host's platform of an image: its unpacked root filesystem and
  // OCI config, or nullopt when the image has no such variant.
  std::optional<std::string> RootfsOf(const StoredImage& image) const;
  std::optional<nlohmann::json> HostConfigOf(const StoredImage& image) const;

  std::string LockPath() const;

 private:
  std::optional<nlohmann::json> ReadRefs() const;
  void WriteRefs(const nlohmann::json& refs);
  std::optional<nlohmann::json> Blob(const std::string& image_hex,
                                     const std::string& digest) const;

  std::string root_;
  std::string images_;
  std::function<std::set<std::string>()> in_use_;
};

}  // namespace corral::fake_apple

#endif  // CORRAL_TESTS_FAKES_APPLE_IMAGE_STORE_H_
