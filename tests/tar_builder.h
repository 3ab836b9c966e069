// Tar archives built in memory with libarchive's writer, for the tests of
// everything that reads archives (image imports, workspace uploads, the
// CLI's extraction): well-formed entries, hostile ones (paths with "..",
// links out of the archive, device nodes, lying sizes), sparse files,
// compression bombs, and a stream served in chunks.
#ifndef CORRAL_TESTS_TAR_BUILDER_H_
#define CORRAL_TESTS_TAR_BUILDER_H_

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/status/statusor.h"

namespace corral::testing {

// Writes a tar archive entry by entry into a string. Every call REQUIREs
// that libarchive took it, so a test never reads a silently broken archive.
class TarBuilder {
 public:
  // archive_write_add_filter_* and archive_write_set_format_* functions.
  using Filter = int (*)(struct archive*);
  using Format = int (*)(struct archive*);

  // Entries get mtime 1700000000.000000250 and owner 1000:1000 (an
  // ordinary user, whom a reader must not restore) unless Mtime or Owner
  // say otherwise.
  explicit TarBuilder(Filter filter = nullptr,
                      Format format = archive_write_set_format_pax_restricted)
      : archive_(archive_write_new()) {
    REQUIRE(format(archive_) == ARCHIVE_OK);
    if (filter != nullptr) REQUIRE(filter(archive_) == ARCHIVE_OK);
    // No zero padding after a compressed stream, as `tar --zstd` writes
    // none: libarchive 3.6's zstd reader takes padding for a broken frame.
    REQUIRE(archive_write_set_bytes_in_last_block(archive_, 1) == ARCHIVE_OK);
    REQUIRE(archive_write_open(archive_, &bytes_, nullptr, &Append, nullptr) ==
            ARCHIVE_OK);
  }
  ~TarBuilder() { archive_write_free(archive_); }
  TarBuilder(const TarBuilder&) = delete;
  TarBuilder& operator=(const TarBuilder&) = delete;

  // For the entries that follow. The fraction of a second survives in pax
  // format only (pax_restricted writes it only when a header needs pax).
  TarBuilder& Mtime(int64_t seconds, long nanoseconds = 0) {
    mtime_seconds_ = seconds;
    mtime_nanoseconds_ = nanoseconds;
    return *this;
  }
  TarBuilder& Owner(int64_t uid, int64_t gid) {
    uid_ = uid;
    gid_ = gid;
    return *this;
  }

  // A regular file. `declared_size` >= 0 puts another size in the header
  // than the content has (libarchive then cuts or pads the data).
  TarBuilder& File(const std::string& path, const std::string& content,
                   int mode = 0644, int64_t declared_size = -1) {
    const int64_t size = declared_size >= 0
                             ? declared_size
                             : static_cast<int64_t>(content.size());
    EntryPtr entry = NewEntry(path, AE_IFREG, mode);
    archive_entry_set_size(entry.get(), size);
    WriteHeader(entry.get());
    WriteData(content, std::min<uint64_t>(content.size(), size));
    return *this;
  }
  // `size` zero bytes, written a megabyte at a time.
  TarBuilder& Zeros(const std::string& path, uint64_t size) {
    EntryPtr entry = NewEntry(path, AE_IFREG, 0644);
    archive_entry_set_size(entry.get(), static_cast<la_int64_t>(size));
    WriteHeader(entry.get());
    WriteZeros(size);
    return *this;
  }
  // A sparse file of `size` bytes with `data` at `offset` and holes around
  // it; only `data` takes room in the archive (pax format), so `size` may
  // be a terabyte. libarchive takes the logical content up to the end of
  // the data and leaves the holes out.
  TarBuilder& Sparse(const std::string& path, int64_t size, int64_t offset,
                     const std::string& data) {
    EntryPtr entry = NewEntry(path, AE_IFREG, 0644);
    archive_entry_set_size(entry.get(), size);
    archive_entry_sparse_add_entry(entry.get(), offset,
                                   static_cast<la_int64_t>(data.size()));
    WriteHeader(entry.get());
    WriteZeros(static_cast<uint64_t>(offset));
    WriteData(data, data.size());
    return *this;
  }
  TarBuilder& Dir(const std::string& path, int mode = 0755) {
    EntryPtr entry = NewEntry(path, AE_IFDIR, mode);
    WriteHeader(entry.get());
    return *this;
  }
  TarBuilder& Symlink(const std::string& path, const std::string& target,
                      int mode = 0777) {
    EntryPtr entry = NewEntry(path, AE_IFLNK, mode);
    archive_entry_set_symlink(entry.get(), target.c_str());
    WriteHeader(entry.get());
    return *this;
  }
  TarBuilder& Hardlink(const std::string& path, const std::string& target,
                       int mode = 0644) {
    EntryPtr entry = NewEntry(path, AE_IFREG, mode);
    archive_entry_set_hardlink(entry.get(), target.c_str());
    archive_entry_set_size(entry.get(), 0);
    WriteHeader(entry.get());
    return *this;
  }
  // AE_IFCHR, AE_IFBLK (both as device 1:3, /dev/mem), AE_IFIFO or
  // AE_IFSOCK.
  TarBuilder& Special(const std::string& path, mode_t type, int mode = 0600) {
    EntryPtr entry = NewEntry(path, type, mode);
    if (type == AE_IFCHR || type == AE_IFBLK) {
      archive_entry_set_rdevmajor(entry.get(), 1);
      archive_entry_set_rdevminor(entry.get(), 3);
    }
    WriteHeader(entry.get());
    return *this;
  }

  // The archive's bytes, end marker included.
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

  EntryPtr NewEntry(const std::string& path, mode_t type, int mode) const {
    EntryPtr entry(archive_entry_new());
    REQUIRE(entry != nullptr);
    archive_entry_set_pathname(entry.get(), path.c_str());
    archive_entry_set_filetype(entry.get(), type);
    archive_entry_set_perm(entry.get(), mode);
    archive_entry_set_uid(entry.get(), uid_);
    archive_entry_set_gid(entry.get(), gid_);
    archive_entry_set_mtime(entry.get(), mtime_seconds_, mtime_nanoseconds_);
    return entry;
  }
  void WriteHeader(struct archive_entry* entry) {
    const int r = archive_write_header(archive_, entry);
    const char* message = archive_error_string(archive_);
    INFO((message != nullptr ? message : ""));
    // ARCHIVE_WARN: a name that is not valid in the locale went out as raw
    // bytes (pax hdrcharset=BINARY), which is what hostile tests want.
    REQUIRE(r >= ARCHIVE_WARN);
  }
  // Writes `data`; libarchive must take `expected` bytes of it (less when
  // the header declared less).
  void WriteData(std::string_view data, uint64_t expected) {
    if (data.empty()) return;
    REQUIRE(archive_write_data(archive_, data.data(), data.size()) ==
            static_cast<la_ssize_t>(expected));
  }
  void WriteZeros(uint64_t size) {
    const std::string block(1 << 20, '\0');
    for (uint64_t done = 0; done < size; done += block.size()) {
      const std::string_view piece = std::string_view(block).substr(
          0,
          static_cast<size_t>(std::min<uint64_t>(block.size(), size - done)));
      WriteData(piece, piece.size());
    }
  }
  static la_ssize_t Append(struct archive*, void* out, const void* buffer,
                           size_t size) {
    static_cast<std::string*>(out)->append(static_cast<const char*>(buffer),
                                           size);
    return static_cast<la_ssize_t>(size);
  }

  struct archive* archive_;
  std::string bytes_;
  int64_t mtime_seconds_ = 1'700'000'000;
  long mtime_nanoseconds_ = 250;
  int64_t uid_ = 1000;
  int64_t gid_ = 1000;
};

// `data` repeated `times` times, compressed with `filter` and no tar around
// it (libarchive's raw format): a second compression layer, or a bomb that
// is no archive at all.
inline std::string CompressedRaw(TarBuilder::Filter filter,
                                 std::string_view data, int times = 1) {
  std::string out;
  struct archive* writer = archive_write_new();
  REQUIRE(archive_write_set_format_raw(writer) == ARCHIVE_OK);
  REQUIRE(filter(writer) == ARCHIVE_OK);
  REQUIRE(archive_write_open(
              writer, &out, nullptr,
              [](struct archive*, void* client, const void* buffer,
                 size_t size) -> la_ssize_t {
                static_cast<std::string*>(client)->append(
                    static_cast<const char*>(buffer), size);
                return static_cast<la_ssize_t>(size);
              },
              nullptr) == ARCHIVE_OK);
  struct archive_entry* entry = archive_entry_new();
  archive_entry_set_filetype(entry, AE_IFREG);
  archive_entry_set_size(entry, static_cast<la_int64_t>(data.size()) * times);
  REQUIRE(archive_write_header(writer, entry) == ARCHIVE_OK);
  archive_entry_free(entry);
  for (int i = 0; i < times; ++i) {
    REQUIRE(archive_write_data(writer, data.data(), data.size()) ==
            static_cast<la_ssize_t>(data.size()));
  }
  REQUIRE(archive_write_close(writer) == ARCHIVE_OK);
  archive_write_free(writer);
  return out;
}

// Yields `bytes` `chunk` bytes at a time, starting with and interleaved
// with empty chunks (a reader must skip them), then std::nullopt.
inline std::function<absl::StatusOr<std::optional<std::string>>()> ChunksOf(
    std::string bytes, size_t chunk = 10000) {
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

}  // namespace corral::testing

#endif  // CORRAL_TESTS_TAR_BUILDER_H_
