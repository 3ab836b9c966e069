// Helpers for the image store tests: tar archives built in memory with
// libarchive's writer, chunked readers, and a store in a temporary directory.
#ifndef CORRAL_TESTS_UNIT_IMAGES_TEST_UTIL_H_
#define CORRAL_TESTS_UNIT_IMAGES_TEST_UTIL_H_

#include <archive.h>
#include <archive_entry.h>
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

namespace corral::daemon::testing {

namespace fs = std::filesystem;

// Builds a tar archive in memory, entry by entry.
class TarBuilder {
 public:
  // `format` is an archive_write_set_format_* function; `filter` an
  // archive_write_add_filter_* function or nullptr.
  explicit TarBuilder(
      int (*filter)(struct archive*) = nullptr,
      int (*format)(struct archive*) = archive_write_set_format_pax_restricted)
      : archive_(archive_write_new()) {
    REQUIRE(format(archive_) == ARCHIVE_OK);
    if (filter != nullptr) REQUIRE(filter(archive_) == ARCHIVE_OK);
    // No zero padding after the compressed stream, as `tar --zstd` writes
    // it: libarchive 3.6's zstd reader takes padding for a broken frame.
    REQUIRE(archive_write_set_bytes_in_last_block(archive_, 1) == ARCHIVE_OK);
    REQUIRE(archive_write_open(archive_, &bytes_, nullptr, &Write, nullptr) ==
            ARCHIVE_OK);
  }
  ~TarBuilder() { archive_write_free(archive_); }
  TarBuilder(const TarBuilder&) = delete;
  TarBuilder& operator=(const TarBuilder&) = delete;

  TarBuilder& File(const std::string& path, const std::string& content,
                   int mode = 0644) {
    Entry entry(path, AE_IFREG, mode);
    archive_entry_set_size(entry.get(),
                           static_cast<la_int64_t>(content.size()));
    Header(entry.get());
    if (!content.empty()) {
      REQUIRE(archive_write_data(archive_, content.data(), content.size()) ==
              static_cast<la_ssize_t>(content.size()));
    }
    return *this;
  }
  // A regular file of `size` zero bytes, written in blocks.
  TarBuilder& ZeroFile(const std::string& path, size_t size) {
    Entry entry(path, AE_IFREG, 0644);
    archive_entry_set_size(entry.get(), static_cast<la_int64_t>(size));
    Header(entry.get());
    const std::string block(1 << 20, '\0');
    for (size_t done = 0; done < size; done += block.size()) {
      const size_t n = std::min(block.size(), size - done);
      REQUIRE(archive_write_data(archive_, block.data(), n) ==
              static_cast<la_ssize_t>(n));
    }
    return *this;
  }
  // A sparse file: `logical_size` bytes of which only the first 512 hold
  // data.
  TarBuilder& SparseFile(const std::string& path, int64_t logical_size) {
    Entry entry(path, AE_IFREG, 0644);
    archive_entry_set_size(entry.get(), logical_size);
    archive_entry_sparse_add_entry(entry.get(), 0, 512);
    Header(entry.get());
    const std::string data(512, 'x');
    REQUIRE(archive_write_data(archive_, data.data(), data.size()) == 512);
    return *this;
  }
  TarBuilder& Dir(const std::string& path, int mode = 0755) {
    Entry entry(path, AE_IFDIR, mode);
    Header(entry.get());
    return *this;
  }
  TarBuilder& Symlink(const std::string& path, const std::string& target) {
    Entry entry(path, AE_IFLNK, 0777);
    archive_entry_set_symlink(entry.get(), target.c_str());
    Header(entry.get());
    return *this;
  }
  TarBuilder& Hardlink(const std::string& path, const std::string& target) {
    Entry entry(path, AE_IFREG, 0644);
    archive_entry_set_hardlink(entry.get(), target.c_str());
    archive_entry_set_size(entry.get(), 0);
    Header(entry.get());
    return *this;
  }
  // A device node, FIFO or socket (type AE_IFCHR, AE_IFBLK, AE_IFIFO...).
  TarBuilder& Special(const std::string& path, mode_t type) {
    Entry entry(path, type, 0666);
    if (type == AE_IFCHR || type == AE_IFBLK) {
      archive_entry_set_rdevmajor(entry.get(), 1);
      archive_entry_set_rdevminor(entry.get(), 3);
    }
    Header(entry.get());
    return *this;
  }

  std::string Finish() {
    REQUIRE(archive_write_close(archive_) == ARCHIVE_OK);
    return bytes_;
  }

 private:
  struct EntryFree {
    void operator()(struct archive_entry* e) const { archive_entry_free(e); }
  };
  struct Entry : std::unique_ptr<struct archive_entry, EntryFree> {
    Entry(const std::string& path, mode_t type, int mode)
        : std::unique_ptr<struct archive_entry, EntryFree>(
              archive_entry_new()) {
      archive_entry_set_pathname(get(), path.c_str());
      archive_entry_set_filetype(get(), type);
      archive_entry_set_perm(get(), mode);
      archive_entry_set_uid(get(), 1000);
      archive_entry_set_gid(get(), 1000);
      archive_entry_set_mtime(get(), 1700000000, 0);
    }
  };

  void Header(struct archive_entry* entry) {
    const int r = archive_write_header(archive_, entry);
    INFO(
        (archive_error_string(archive_) ? archive_error_string(archive_) : ""));
    // ARCHIVE_WARN: a name that is not valid in the locale is written as
    // raw bytes (pax hdrcharset=BINARY), which is what the tests want.
    REQUIRE(r >= ARCHIVE_WARN);
  }
  static la_ssize_t Write(struct archive*, void* data, const void* buffer,
                          size_t size) {
    static_cast<std::string*>(data)->append(static_cast<const char*>(buffer),
                                            size);
    return static_cast<la_ssize_t>(size);
  }

  struct archive* archive_;
  std::string bytes_;
};

// Yields `bytes` in chunks of `chunk` bytes, with an empty chunk between
// each (the reader must skip them).
inline ChunkReader ReaderOf(std::string bytes, size_t chunk = 64 << 10) {
  auto state =
      std::make_shared<std::pair<std::string, size_t>>(std::move(bytes), 0);
  auto empty_next = std::make_shared<bool>(false);
  return [state, chunk,
          empty_next]() -> absl::StatusOr<std::optional<std::string>> {
    auto& [data, offset] = *state;
    if (offset >= data.size()) return std::nullopt;
    *empty_next = !*empty_next;
    if (!*empty_next) return std::string();
    std::string piece = data.substr(offset, chunk);
    offset += piece.size();
    return piece;
  };
}

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
    return images_->Import(metadata, ReaderOf(std::move(archive), 4096),
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
