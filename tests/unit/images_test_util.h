// Helpers for the image store tests: tar archives built in memory
// (tests/tar_builder.h), chunked readers, and a store in a temporary
// directory.
#ifndef CORRAL_TESTS_UNIT_IMAGES_TEST_UTIL_H_
#define CORRAL_TESTS_UNIT_IMAGES_TEST_UTIL_H_

#include <stdlib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "daemon/images/image_store.h"
#include "daemon/store/store.h"
#include "tests/tar_builder.h"

namespace corral::daemon::testing {

namespace fs = std::filesystem;

using ::corral::testing::ChunksOf;
using ::corral::testing::TarBuilder;

// A fresh state directory with a store and an image store.
class ImagesFixture {
 public:
  ImagesFixture() {
    std::string pattern =
        (fs::temp_directory_path() / "corral-images-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    root_ = pattern;
    auto store = Store::Open((root_ / "corral.db").string());
    REQUIRE(store.ok());
    store_ = std::move(store).value();
    Reopen();
  }
  ~ImagesFixture() {
    images_.reset();
    store_.reset();
    std::error_code error;
    fs::remove_all(root_, error);
  }

  void Reopen() {
    images_.reset();
    auto images = ImageStore::Open(images_dir(), store_.get());
    INFO(images.status().ToString());
    REQUIRE(images.ok());
    images_ = std::move(images).value();
  }

  absl::StatusOr<corral::v1::Image> Import(const std::string& name,
                                           std::string archive,
                                           ImportLimits limits = {},
                                           bool replace = false) {
    corral::v1::ImportImageMetadata metadata;
    metadata.set_name(name);
    metadata.set_replace(replace);
    return images_->Import(metadata, ChunksOf(std::move(archive), 4096),
                           limits);
  }

  // Names in images_dir: after a failed import, none may be left over
  // besides the published images.
  std::vector<std::string> DirectoryNames() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(images_dir())) {
      names.push_back(entry.path().filename().string());
    }
    std::sort(names.begin(), names.end());
    return names;
  }

  fs::path images_dir() const { return root_ / "images"; }
  Store& store() { return *store_; }
  ImageStore& images() { return *images_; }

 private:
  fs::path root_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<ImageStore> images_;
};

// A minimal valid rootfs.
inline std::string ValidRootfs(int (*filter)(struct archive*) = nullptr) {
  TarBuilder tar(filter);
  tar.Dir("./")
      .Dir("bin")
      .File("bin/sh", "#!fake shell\n", 0755)
      .Hardlink("bin/sh2", "bin/sh")
      .Dir("etc")
      .File("etc/hostname", "corral\n")
      .Symlink("etc/localtime", "/usr/share/zoneinfo/UTC")
      .Dir("usr/share/doc");
  return tar.Finish();
}

}  // namespace corral::daemon::testing

#endif  // CORRAL_TESTS_UNIT_IMAGES_TEST_UTIL_H_
