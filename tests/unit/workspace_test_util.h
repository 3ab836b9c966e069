// Helpers for the workspace library's tests: archives written with
// libarchive in memory (tests/tar_builder.h), recording sinks, a store in a
// temporary directory, and manifest builders.
#ifndef CORRAL_TESTS_UNIT_WORKSPACE_TEST_UTIL_H_
#define CORRAL_TESTS_UNIT_WORKSPACE_TEST_UTIL_H_

#include <algorithm>
#include <catch2/catch.hpp>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "daemon/workspace/content_store.h"
#include "daemon/workspace/entry_sink.h"
#include "tests/tar_builder.h"
#include "tests/test_util.h"

namespace corral::daemon::workspace::testing {

using corral::agent::v1::ENTRY_TYPE_DIRECTORY;
using corral::agent::v1::ENTRY_TYPE_HARDLINK;
using corral::agent::v1::ENTRY_TYPE_OTHER;
using corral::agent::v1::ENTRY_TYPE_REGULAR;
using corral::agent::v1::ENTRY_TYPE_SYMLINK;
using corral::agent::v1::ENTRY_TYPE_UNSPECIFIED;
using corral::agent::v1::EntryType;
using corral::agent::v1::FsEntry;
using corral::workspace::v1::Manifest;
using corral::workspace::v1::ManifestEntry;

using ::corral::testing::ChunksOf;
using ::corral::testing::CompressedRaw;
using ::corral::testing::TarBuilder;

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

// A stream of entries that breaks the path rules or the EntrySink contract,
// which every validating sink (TarWriter, ManifestBuilder) must refuse with
// `code` and a message that contains `needle`.
struct HostileStream {
  std::function<absl::Status(EntrySink&)> feed;
  absl::StatusCode code;
  std::string needle;
};

// Sends a regular file of size 4 with `data` (which may be too much or too
// little), then `next` if given.
inline absl::Status SendSizeFour(EntrySink& sink, std::string_view data,
                                 const FsEntry* next = nullptr) {
  absl::Status status =
      sink.OnEntry(MakeEntry("f", ENTRY_TYPE_REGULAR, 0644, 4));
  if (status.ok()) status = sink.OnData(data);
  if (status.ok() && next != nullptr) status = sink.OnEntry(*next);
  return status;
}

// The hostile streams every validating sink refuses alike.
inline std::vector<HostileStream> CommonHostileStreams() {
  const auto invalid = absl::StatusCode::kInvalidArgument;
  const auto lost = absl::StatusCode::kDataLoss;
  std::vector<HostileStream> streams;
  const std::pair<std::string, std::string> bad_paths[] = {
      {"../escape", "'..' path component"},
      {"/etc/passwd", "absolute path"},
      {"a/../../b", "'..' path component"},
      {"a//b", "empty path component"},
      {"a/", "empty path component"},
      {"./a", "'.' path component"},
      {"a/.", "'.' path component"},
      {"", "empty path"},
      {std::string("nul\0byte", 8), "NUL byte in the path"},
      {std::string(4097, 'p'), "path is longer than 4096 bytes"},
      {"d/" + std::string(256, 'c'), "path component is longer than 255"},
  };
  for (const auto& [path, reason] : bad_paths) {
    const FsEntry entry = MakeEntry(path, ENTRY_TYPE_DIRECTORY);
    streams.push_back({[entry](EntrySink& sink) { return sink.OnEntry(entry); },
                       invalid, reason});
  }
  streams.push_back(
      {[](EntrySink& sink) {
         absl::Status s = sink.OnEntry(
             MakeEntry("s", ENTRY_TYPE_SYMLINK, 0777, 0, 0, "/etc"));
         if (!s.ok()) return s;
         return sink.OnEntry(MakeEntry("s/passwd", ENTRY_TYPE_REGULAR));
       },
       invalid, "'s/passwd': lies beneath the symlink 's'"});
  streams.push_back({[](EntrySink& sink) {
                       absl::Status s = SendSizeFour(sink, "1234");
                       if (!s.ok()) return s;
                       return sink.OnEntry(
                           MakeEntry("f/g", ENTRY_TYPE_DIRECTORY));
                     },
                     invalid, "'f/g': lies beneath the regular file 'f'"});
  streams.push_back(
      {[](EntrySink& sink) { return SendSizeFour(sink, "12345"); }, invalid,
       "'f': more data than its size of 4 bytes"});
  const FsEntry next = MakeEntry("g", ENTRY_TYPE_DIRECTORY);
  streams.push_back(
      {[next](EntrySink& sink) { return SendSizeFour(sink, "12", &next); },
       lost, "'f': 2 of 4 bytes of data missing before the next entry"});
  streams.push_back({[](EntrySink& sink) { return SendSizeFour(sink, "123"); },
                     lost,
                     "'f': 1 of 4 bytes of data missing at the end of the "
                     "stream"});
  streams.push_back({[](EntrySink& sink) {
                       absl::Status s =
                           sink.OnEntry(MakeEntry("d", ENTRY_TYPE_DIRECTORY));
                       if (!s.ok()) return s;
                       return sink.OnData("x");
                     },
                     invalid, "belongs to no regular file"});
  streams.push_back({[](EntrySink& sink) { return sink.OnData("x"); }, invalid,
                     "belongs to no regular file"});
  return streams;
}

// Feeds `stream` to `sink` and `finish`es it if the stream was taken: the
// first failure must be the expected one, and the sink must refuse
// everything afterwards.
template <typename Sink>
void ExpectRefusal(Sink& sink, const std::function<absl::Status(Sink&)>& finish,
                   const HostileStream& stream) {
  absl::Status status = stream.feed(sink);
  if (status.ok()) status = finish(sink);
  INFO(status.ToString());
  CHECK(status.code() == stream.code);
  CHECK_THAT(std::string(status.message()), Catch::Contains(stream.needle));
  CHECK_FALSE(sink.OnEntry(MakeEntry("ok", ENTRY_TYPE_DIRECTORY)).ok());
  CHECK_FALSE(finish(sink).ok());
}

// Builds sorted manifests whose files' content lives in a store.
class ManifestMaker {
 public:
  explicit ManifestMaker(StoreFixture* fixture) : fixture_(fixture) {}
  ManifestMaker& File(const std::string& path, const std::string& content,
                      uint32_t mode = 0644, int64_t mtime_ns = 1) {
    ManifestEntry& entry = Add(path, ENTRY_TYPE_REGULAR);
    entry.set_mode(mode);
    entry.set_size(content.size());
    entry.set_sha256(fixture_->Put(content));
    entry.set_mtime_ns(mtime_ns);
    return *this;
  }
  ManifestMaker& Dir(const std::string& path, uint32_t mode = 0755) {
    Add(path, ENTRY_TYPE_DIRECTORY).set_mode(mode);
    return *this;
  }
  ManifestMaker& Symlink(const std::string& path, const std::string& target) {
    ManifestEntry& entry = Add(path, ENTRY_TYPE_SYMLINK);
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
