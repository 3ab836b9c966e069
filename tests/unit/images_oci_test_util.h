// OCI image layouts and `docker save` archives built in memory for the
// image store tests: blobs addressed by their real SHA-256, indexes,
// manifests and configs as JSON, the whole layout packed into one tar with
// tests/tar_builder.h. Tests may break any part on purpose (a blob under
// the wrong digest, a wrong size, a missing blob, an unknown media type).
#ifndef CORRAL_TESTS_UNIT_IMAGES_OCI_TEST_UTIL_H_
#define CORRAL_TESTS_UNIT_IMAGES_OCI_TEST_UTIL_H_

#include <openssl/evp.h>

#include <catch2/catch.hpp>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "daemon/images/oci_archive.h"
#include "tests/unit/images_test_util.h"

namespace corral::daemon::testing {

using Json = nlohmann::json;

inline constexpr char kOciTar[] = "application/vnd.oci.image.layer.v1.tar";
inline constexpr char kOciTarGzip[] =
    "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr char kOciTarZstd[] =
    "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr char kOciManifestType[] =
    "application/vnd.oci.image.manifest.v1+json";
inline constexpr char kOciIndexType[] =
    "application/vnd.oci.image.index.v1+json";
inline constexpr char kOciConfigType[] =
    "application/vnd.oci.image.config.v1+json";

inline std::string Sha256Of(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  REQUIRE(EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(),
                     nullptr) == 1);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), size));
}

// A layout under construction: blobs by hex digest, then Pack().
class OciLayout {
 public:
  // Stores `data` as a blob; its descriptor.
  Json AddBlob(const std::string& media_type, const std::string& data) {
    const std::string hex = Sha256Of(data);
    blobs_[hex] = data;
    return Json{{"mediaType", media_type},
                {"digest", "sha256:" + hex},
                {"size", data.size()}};
  }

  // A config with the given layers' diff_ids (unchecked here) and run
  // settings.
  static Json Config(size_t layers, const std::string& architecture) {
    Json diff_ids = Json::array();
    for (size_t i = 0; i < layers; ++i) {
      diff_ids.push_back("sha256:" + std::string(64, 'a' + (i % 6)));
    }
    return Json{
        {"architecture", architecture},
        {"os", "linux"},
        {"config",
         {{"Env", {"PATH=/usr/bin:/bin", "CORRAL=oci"}},
          {"Entrypoint", {"/bin/sh", "-c"}},
          {"Cmd", {"echo hi"}},
          {"WorkingDir", "/srv"},
          {"User", "1000:1000"}}},
        {"rootfs", {{"type", "layers"}, {"diff_ids", diff_ids}}},
    };
  }

  // An image manifest over `layers` (media type, bytes); its descriptor.
  Json AddImage(
      const std::vector<std::pair<std::string, std::string>>& layers,
      const std::string& architecture = std::string(HostArchitecture())) {
    Json layer_descriptors = Json::array();
    for (const auto& [type, data] : layers) {
      layer_descriptors.push_back(AddBlob(type, data));
    }
    Json manifest{
        {"schemaVersion", 2},
        {"mediaType", kOciManifestType},
        {"config",
         AddBlob(kOciConfigType, Config(layers.size(), architecture).dump())},
        {"layers", layer_descriptors},
    };
    return AddBlob(kOciManifestType, manifest.dump());
  }

  static Json Index(const std::vector<Json>& manifests) {
    return Json{{"schemaVersion", 2},
                {"mediaType", kOciIndexType},
                {"manifests", manifests}};
  }

  // The layout as a tar: oci-layout, index.json, then the blobs (in that
  // order unless `blobs_first`); names prefixed with `prefix` ("./" as
  // `tar -C dir -c .` writes them).
  std::string Pack(const Json& index, TarBuilder::Filter filter = nullptr,
                   const std::string& prefix = "",
                   bool blobs_first = true) const {
    TarBuilder tar(filter);
    if (!prefix.empty()) tar.Dir(prefix);
    auto blobs = [&] {
      tar.Dir(prefix + "blobs").Dir(prefix + "blobs/sha256");
      for (const auto& [hex, data] : blobs_) {
        tar.File(prefix + "blobs/sha256/" + hex, data);
      }
    };
    if (blobs_first) blobs();
    tar.File(prefix + "oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
    tar.File(prefix + "index.json", index.dump());
    if (!blobs_first) blobs();
    return tar.Finish();
  }

  std::map<std::string, std::string>& blobs() { return blobs_; }

 private:
  std::map<std::string, std::string> blobs_;
};

// Imports `archive` as `name` with the source left to detection.
inline absl::StatusOr<corral::v1::Image> ImportArchive(
    ImagesFixture& fixture, const std::string& name, std::string archive,
    ImportLimits limits = {},
    corral::v1::ImageSource source = corral::v1::IMAGE_SOURCE_UNSPECIFIED) {
  corral::v1::ImportImageMetadata metadata;
  metadata.set_name(name);
  metadata.set_source(source);
  return fixture.images().Import(metadata, ChunksOf(std::move(archive), 7000),
                                 limits);
}

}  // namespace corral::daemon::testing

#endif  // CORRAL_TESTS_UNIT_IMAGES_OCI_TEST_UTIL_H_
