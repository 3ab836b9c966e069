// Helpers for the workspace library's tests: archives written with
// libarchive in memory, chunked readers, recording sinks, a store in a
// temporary directory, and manifest builders.
#ifndef CORRAL_TESTS_UNIT_WORKSPACE_TEST_UTIL_H_
#define CORRAL_TESTS_UNIT_WORKSPACE_TEST_UTIL_H_

#include <archive.h>
#include <archive_entry.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "daemon/workspace/content_store.h"
#include "daemon/workspace/entry_sink.h"
#include "tests/test_util.h"

namespace corral::daemon::workspace::testing {

using corral::agent::v1::EntryType;
using corral::agent::v1::FsEntry;
using corral::workspace::v1::Manifest;
using corral::workspace::v1::ManifestEntry;

// Writes a tar archive entry by entry into a string.
class ArchiveWriter {
 public:
  // `filter`: an archive_write_add_filter_* function, or nullptr. Entries
  // get mtime 1700000000.000000250 (the fraction survives in pax format
  // only; pax_restricted writes it only when a header needs pax anyway).
  explicit ArchiveWriter(
      int (*filter)(struct archive*) = nullptr,
      int (*format)(struct archive*) = archive_write_set_format_pax_restricted)
      : archive_(archive_write_new()) {
    REQUIRE(format(archive_) == ARCHIVE_OK);
    if (filter != nullptr) REQUIRE(filter(archive_) == ARCHIVE_OK);
    // libarchive 3.6 takes zero padding after a zstd frame for a broken
    // frame; `tar --zstd` writes none either.
    REQUIRE(archive_write_set_bytes_in_last_block(archive_, 1) == ARCHIVE_OK);
    REQUIRE(archive_write_open(archive_, &bytes_, nullptr, &Append, nullptr) ==
            ARCHIVE_OK);
  }
  ~ArchiveWriter() { archive_write_free(archive_); }
  ArchiveWriter(const ArchiveWriter&) = delete;
  ArchiveWriter& operator=(const ArchiveWriter&) = delete;

  ArchiveWriter& File(const std::string& path, const std::string& content,
                      int mode = 0644) {
    auto entry = NewEntry(path, AE_IFREG, mode);
    archive_entry_set_size(entry.get(),
                           static_cast<la_int64_t>(content.size()));
    WriteHeader(entry.get());
    WriteData(content);
    return *this;
  }
  // `size` zero bytes, written a megabyte at a time.
  ArchiveWriter& Zeros(const std::string& path, size_t size) {
    auto entry = NewEntry(path, AE_IFREG, 0644);
    archive_entry_set_size(entry.get(), static_cast<la_int64_t>(size));
    WriteHeader(entry.get());
    const std::string block(1 << 20, '\0');
    for (size_t done = 0; done < size; done += block.size()) {
      WriteData(std::string_view(block).substr(
          0, std::min(block.size(), size - done)));
    }
    return *this;
  }
  // A sparse file of `size` bytes with `data` at `offset` and holes around
  // it. libarchive takes the whole logical content and leaves the holes out.
  ArchiveWriter& Sparse(const std::string& path, int64_t size, int64_t offset,
                        const std::string& data) {
    auto entry = NewEntry(path, AE_IFREG, 0644);
    archive_entry_set_size(entry.get(), size);
    archive_entry_sparse_add_entry(entry.get(), offset,
                                   static_cast<la_int64_t>(data.size()));
    WriteHeader(entry.get());
    std::string logical(static_cast<size_t>(size), '\0');
    logical.replace(static_cast<size_t>(offset), data.size(), data);
    WriteData(logical);
    return *this;
  }
  ArchiveWriter& Dir(const std::string& path, int mode = 0755) {
    auto entry = NewEntry(path, AE_IFDIR, mode);
    WriteHeader(entry.get());
    return *this;
  }
  ArchiveWriter& Symlink(const std::string& path, const std::string& target) {
    auto entry = NewEntry(path, AE_IFLNK, 0777);
    archive_entry_set_symlink(entry.get(), target.c_str());
    WriteHeader(entry.get());
    return *this;
  }
  ArchiveWriter& Hardlink(const std::string& path, const std::string& target) {
    auto entry = NewEntry(path, AE_IFREG, 0644);
    archive_entry_set_hardlink(entry.get(), target.c_str());
    archive_entry_set_size(entry.get(), 0);
    WriteHeader(entry.get());
    return *this;
  }
  // AE_IFCHR, AE_IFBLK, AE_IFIFO or AE_IFSOCK.
  ArchiveWriter& Special(const std::string& path, mode_t type) {
    auto entry = NewEntry(path, type, 0600);
    archive_entry_set_rdev(entry.get(), makedev(1, 3));
    WriteHeader(entry.get());
    return *this;
  }

  std::string Finish() {
    REQUIRE(archive_write_close(archive_) == ARCHIVE_OK);
    return bytes_;
  }

 private:
  struct EntryFree {
    void operator()(struct archive_entry* entry) const {
      archive_entry_free(entry);
    }
  };
  using EntryPtr = std::unique_ptr<struct archive_entry, EntryFree>;

  static EntryPtr NewEntry(const std::string& path, mode_t type, int mode) {
    EntryPtr entry(archive_entry_new());
    archive_entry_set_pathname(entry.get(), path.c_str());
    archive_entry_set_filetype(entry.get(), type);
    archive_entry_set_perm(entry.get(), mode);
    archive_entry_set_mtime(entry.get(), 1'700'000'000, 250);
    return entry;
  }
  void WriteHeader(struct archive_entry* entry) {
    const int r = archive_write_header(archive_, entry);
    INFO(archive_error_string(archive_));
    REQUIRE(r >= ARCHIVE_WARN);
  }
  void WriteData(std::string_view data) {
    if (data.empty()) return;
    REQUIRE(archive_write_data(archive_, data.data(), data.size()) ==
            static_cast<la_ssize_t>(data.size()));
  }
  static la_ssize_t Append(struct archive*, void* out, const void* buffer,
                           size_t size) {
    static_cast<std::string*>(out)->append(static_cast<const char*>(buffer),
                                           size);
    return static_cast<la_ssize_t>(size);
  }

  struct archive* archive_;
  std::string bytes_;
};

// Yields `bytes` `chunk` bytes at a time, with empty chunks in between.
inline ChunkReader ChunksOf(std::string bytes, size_t chunk = 10000) {
  struct State {
    std::string bytes;
    size_t offset = 0;
    bool empty_next = false;
  };
  auto state = std::make_shared<State>();
  state->bytes = std::move(bytes);
  return [state, chunk]() -> absl::StatusOr<std::optional<std::string>> {
    if (state->offset >= state->bytes.size()) return std::nullopt;
    state->empty_next = !state->empty_next;
    if (state->empty_next) return std::string();
    std::string piece = state->bytes.substr(state->offset, chunk);
    state->offset += piece.size();
    return piece;
  };
}

// Remembers everything it receives; entries' data concatenated.
class RecordingSink : public EntrySink {
 public:
  struct Item {
    FsEntry entry;
    std::string data;
    size_t chunks = 0;
    size_t largest_chunk = 0;
  };
  absl::Status OnEntry(const FsEntry& entry) override {
    items.push_back({entry, "", 0, 0});
    return absl::OkStatus();
  }
  absl::Status OnData(std::string_view data) override {
    REQUIRE(!items.empty());
    items.back().data.append(data);
    ++items.back().chunks;
    items.back().largest_chunk =
        std::max(items.back().largest_chunk, data.size());
    return absl::OkStatus();
  }
  const Item* Find(const std::string& path) const {
    for (const Item& item : items) {
      if (item.entry.path() == path) return &item;
    }
    return nullptr;
  }
  std::vector<Item> items;
};

// A content store in a fresh temporary directory.
class StoreFixture {
 public:
  StoreFixture() : dir_("corral-workspace") {
    auto store = ContentStore::Open(root());
    INFO(store.status().ToString());
    REQUIRE(store.ok());
    store_ = *std::move(store);
  }
  std::filesystem::path root() const { return dir_.path() / "store"; }
  ContentStore& store() { return *store_; }
  // Stores `content` and returns its hash.
  std::string Put(const std::string& content) {
    auto committed = store_->Put(content);
    REQUIRE(committed.ok());
    return committed->sha256;
  }

 private:
  corral::testing::TempDir dir_;
  std::unique_ptr<ContentStore> store_;
};

inline FsEntry MakeEntry(const std::string& path, EntryType type,
                         uint32_t mode = 0644, uint64_t size = 0,
                         int64_t mtime_ns = 0,
                         const std::string& link_target = "") {
  FsEntry entry;
  entry.set_path(path);
  entry.set_type(type);
  entry.set_mode(mode);
  entry.set_size(size);
  entry.set_mtime_ns(mtime_ns);
  entry.set_link_target(link_target);
  return entry;
}

// Builds sorted manifests whose files' content lives in a store.
class ManifestMaker {
 public:
  explicit ManifestMaker(StoreFixture* fixture) : fixture_(fixture) {}
  ManifestMaker& File(const std::string& path, const std::string& content,
                      uint32_t mode = 0644, int64_t mtime_ns = 1) {
    ManifestEntry& entry = Add(path, corral::agent::v1::ENTRY_TYPE_REGULAR);
    entry.set_mode(mode);
    entry.set_size(content.size());
    entry.set_sha256(fixture_->Put(content));
    entry.set_mtime_ns(mtime_ns);
    return *this;
  }
  ManifestMaker& Dir(const std::string& path, uint32_t mode = 0755) {
    Add(path, corral::agent::v1::ENTRY_TYPE_DIRECTORY).set_mode(mode);
    return *this;
  }
  ManifestMaker& Symlink(const std::string& path, const std::string& target) {
    ManifestEntry& entry = Add(path, corral::agent::v1::ENTRY_TYPE_SYMLINK);
    entry.set_mode(0777);
    entry.set_link_target(target);
    return *this;
  }
  Manifest Build() const {
    Manifest manifest;
    for (const auto& [path, entry] : entries_) *manifest.add_entries() = entry;
    return manifest;
  }

 private:
  ManifestEntry& Add(const std::string& path, EntryType type) {
    ManifestEntry& entry = entries_[path];
    entry = ManifestEntry();
    entry.set_path(path);
    entry.set_type(type);
    return entry;
  }
  StoreFixture* fixture_;
  std::map<std::string, ManifestEntry> entries_;
};

}  // namespace corral::daemon::workspace::testing

#endif  // CORRAL_TESTS_UNIT_WORKSPACE_TEST_UTIL_H_
