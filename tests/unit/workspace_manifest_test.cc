// ManifestBuilder, PathsToHash, MergeListing, EmitManifest and
// CollectReferences.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "daemon/workspace/archive_in.h"
#include "daemon/workspace/manifest.h"
#include "tests/unit/workspace_test_util.h"

// In the helpers' namespace: their names and the entry types need no
// using-declarations here.
namespace corral::daemon::workspace::testing {
namespace {

constexpr int64_t kSecond = 1'000'000'000;
constexpr int64_t kNow = 1'800'000'000 * kSecond;

std::vector<std::string> Paths(const Manifest& manifest) {
  std::vector<std::string> paths;
  for (const auto& entry : manifest.entries()) paths.push_back(entry.path());
  return paths;
}

const ManifestEntry* FindEntry(const Manifest& manifest,
                               const std::string& path) {
  for (const auto& entry : manifest.entries()) {
    if (entry.path() == path) return &entry;
  }
  return nullptr;
}

// Sends a file entry and its content in one go.
absl::Status SendFile(EntrySink& sink, const std::string& path,
                      const std::string& content, uint32_t mode = 0644,
                      int64_t mtime_ns = 5 * kSecond) {
  absl::Status status = sink.OnEntry(
      MakeEntry(path, ENTRY_TYPE_REGULAR, mode, content.size(), mtime_ns));
  if (!status.ok() || content.empty()) return status;
  return sink.OnData(content);
}

TEST_CASE(
    "workspace: manifest builder records a stream, sorted, with content stored",
    "[workspace][manifest]") {
  StoreFixture fixture;
  ManifestBuilder builder(&fixture.store());
  // Pack order (directories first, names sorted within a directory) is not
  // bytewise order: "a/b" sorts after "a.txt".
  REQUIRE(builder.OnEntry(MakeEntry("a", ENTRY_TYPE_DIRECTORY, 0755)).ok());
  REQUIRE(SendFile(builder, "a/b", "bee\n", 0755).ok());
  REQUIRE(SendFile(builder, "a.txt", std::string(100000, 'x')).ok());
  REQUIRE(
      builder.OnEntry(MakeEntry("link", ENTRY_TYPE_SYMLINK, 0777, 0, 7, "a/b"))
          .ok());
  REQUIRE(SendFile(builder, "empty", "").ok());
  auto manifest = builder.Finish();
  INFO(manifest.status().ToString());
  REQUIRE(manifest.ok());
  CHECK(Paths(*manifest) ==
        std::vector<std::string>{"a", "a.txt", "a/b", "empty", "link"});
  const ManifestEntry* bee = FindEntry(*manifest, "a/b");
  CHECK(bee->type() == ENTRY_TYPE_REGULAR);
  CHECK(bee->size() == 4);
  CHECK(bee->mode() == 0755);
  CHECK(bee->mtime_ns() == 5 * kSecond);
  auto content = fixture.store().ReadObject(bee->sha256(), 100);
  REQUIRE(content.ok());
  CHECK(*content == "bee\n");
  CHECK(FindEntry(*manifest, "link")->link_target() == "a/b");
  CHECK(FindEntry(*manifest, "a")->type() == ENTRY_TYPE_DIRECTORY);
  CHECK(builder.total_bytes() == 100004);
  CHECK(builder.new_bytes() == 100004);
  CHECK(ValidateManifest(*manifest).ok());

  // The same content again costs nothing new.
  ManifestBuilder again(&fixture.store());
  REQUIRE(SendFile(again, "copy", std::string(100000, 'x')).ok());
  REQUIRE(again.Finish().ok());
  CHECK(again.new_bytes() == 0);
  CHECK(again.total_bytes() == 100000);
}

TEST_CASE("workspace: manifest builder turns hard links into regular entries",
          "[workspace][manifest]") {
  StoreFixture fixture;
  const std::string archive =
      TarBuilder()
          .File("bin/tool", "#!/bin/sh\necho hi\n", 0755)
          .Hardlink("bin/alias", "bin/tool")
          .Finish();
  ManifestBuilder builder(&fixture.store());
  RecordingSink agent;
  TeeSink tee(&agent, &builder);
  auto stats = ReadUploadArchive(ChunksOf(archive), {}, tee);
  REQUIRE(stats.ok());
  auto manifest = builder.Finish();
  REQUIRE(manifest.ok());
  REQUIRE(manifest->entries_size() == 2);
  const ManifestEntry* alias = FindEntry(*manifest, "bin/alias");
  const ManifestEntry* tool = FindEntry(*manifest, "bin/tool");
  CHECK(alias->type() == ENTRY_TYPE_REGULAR);
  CHECK(alias->sha256() == tool->sha256());
  CHECK(alias->size() == tool->size());
  CHECK(alias->mode() == 0755);
  // Both names count, the content is stored once.
  CHECK(builder.total_bytes() == 2 * tool->size());
  CHECK(builder.new_bytes() == tool->size());
  // The agent got the hard link as such.
  CHECK(agent.Find("bin/alias")->entry.type() == ENTRY_TYPE_HARDLINK);

  ManifestBuilder dangling(&fixture.store());
  auto status = dangling.OnEntry(
      MakeEntry("h", ENTRY_TYPE_HARDLINK, 0644, 0, 0, "missing"));
  CHECK(status.code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(status.message()), Catch::Contains("'h'"));
}

TEST_CASE(
    "workspace: manifest builder: later entries win, a replaced directory "
    "loses "
    "its contents",
    "[workspace][manifest]") {
  StoreFixture fixture;
  ManifestBuilder builder(&fixture.store());
  REQUIRE(SendFile(builder, "f", "first").ok());
  REQUIRE(SendFile(builder, "f", "second").ok());
  REQUIRE(builder.OnEntry(MakeEntry("d", ENTRY_TYPE_DIRECTORY, 0755)).ok());
  REQUIRE(SendFile(builder, "d/inner", "x").ok());
  REQUIRE(builder.OnEntry(MakeEntry("d/sub", ENTRY_TYPE_DIRECTORY)).ok());
  REQUIRE(SendFile(builder, "d.keep", "k").ok());
  REQUIRE(builder.OnEntry(MakeEntry("d", ENTRY_TYPE_SYMLINK, 0777, 0, 0, "f"))
              .ok());
  auto manifest = builder.Finish();
  REQUIRE(manifest.ok());
  CHECK(Paths(*manifest) == std::vector<std::string>{"d", "d.keep", "f"});
  CHECK(*fixture.store().ReadObject(FindEntry(*manifest, "f")->sha256(), 10) ==
        "second");
  CHECK(builder.total_bytes() == 7);
}

TEST_CASE("workspace: manifest builder refuses hostile streams",
          "[workspace][manifest]") {
  StoreFixture fixture;
  auto expect = [&](const HostileStream& stream) {
    ManifestBuilder builder(&fixture.store());
    ExpectRefusal<ManifestBuilder>(
        builder, [](ManifestBuilder& b) { return b.Finish().status(); },
        stream);
  };
  for (const HostileStream& stream : CommonHostileStreams()) expect(stream);
  const auto invalid = absl::StatusCode::kInvalidArgument;
  expect({[](EntrySink& b) { return SendFile(b, "../x", "1"); }, invalid,
          "'../x': '..' path component"});
  expect({[](EntrySink& b) {
            return b.OnEntry(MakeEntry("f", ENTRY_TYPE_REGULAR, 0644, 3));
          },
          absl::StatusCode::kDataLoss, "'f': 3 of 3 bytes"});
  expect({[](EntrySink& b) {
            return b.OnEntry(MakeEntry("dev", ENTRY_TYPE_OTHER));
          },
          invalid, "special file entries cannot be stored"});
  expect({[](EntrySink& b) {
            return b.OnEntry(
                MakeEntry("s", ENTRY_TYPE_SYMLINK, 0777, 0, 0, ""));
          },
          invalid, "empty target"});
}

TEST_CASE("workspace: manifest builder enforces its limits",
          "[workspace][manifest]") {
  StoreFixture fixture;
  ManifestBuilder builder(&fixture.store(),
                          ManifestLimits{.max_entries = 2, .max_bytes = 10});
  REQUIRE(SendFile(builder, "a", "12345").ok());
  CHECK(SendFile(builder, "b", "123456").code() ==
        absl::StatusCode::kResourceExhausted);
  ManifestBuilder counted(&fixture.store(), ManifestLimits{.max_entries = 2});
  REQUIRE(counted.OnEntry(MakeEntry("a", ENTRY_TYPE_DIRECTORY)).ok());
  REQUIRE(counted.OnEntry(MakeEntry("b", ENTRY_TYPE_DIRECTORY)).ok());
  CHECK(counted.OnEntry(MakeEntry("c", ENTRY_TYPE_DIRECTORY)).code() ==
        absl::StatusCode::kResourceExhausted);
}

TEST_CASE(
    "workspace: manifest builder forgets the mtime of a file that changed "
    "while "
    "packed",
    "[workspace][manifest]") {
  StoreFixture fixture;
  ManifestBuilder builder(&fixture.store());
  FsEntry entry = MakeEntry("moving", ENTRY_TYPE_REGULAR, 0644, 2, 9 * kSecond);
  entry.set_changed(true);
  REQUIRE(builder.OnEntry(entry).ok());
  REQUIRE(builder.OnData("ab").ok());
  auto manifest = builder.Finish();
  REQUIRE(manifest.ok());
  CHECK(manifest->entries(0).mtime_ns() == 0);
}

TEST_CASE("workspace: PathsToHash lists files whose content may have changed",
          "[workspace][manifest]") {
  StoreFixture fixture;
  const Manifest reference = ManifestMaker(&fixture)
                                 .File("same", "s", 0644, 10 * kSecond)
                                 .File("resized", "r", 0644, 10 * kSecond)
                                 .File("touched", "t", 0644, 10 * kSecond)
                                 .File("unknown-mtime", "u", 0644, 0)
                                 .File("was-file", "w", 0644, 10 * kSecond)
                                 .Dir("was-dir")
                                 .Build();
  const std::vector<FsEntry> listing = {
      MakeEntry("same", ENTRY_TYPE_REGULAR, 0600, 1, 10 * kSecond),
      MakeEntry("resized", ENTRY_TYPE_REGULAR, 0644, 2, 10 * kSecond),
      MakeEntry("touched", ENTRY_TYPE_REGULAR, 0644, 1, 11 * kSecond),
      MakeEntry("unknown-mtime", ENTRY_TYPE_REGULAR, 0644, 1, 0),
      MakeEntry("was-file", ENTRY_TYPE_DIRECTORY, 0755),
      MakeEntry("was-dir", ENTRY_TYPE_REGULAR, 0644, 1, 10 * kSecond),
      MakeEntry("new", ENTRY_TYPE_REGULAR, 0644, 1, 10 * kSecond),
      MakeEntry("link", ENTRY_TYPE_SYMLINK, 0777, 0, 0, "same"),
      MakeEntry("../hostile", ENTRY_TYPE_REGULAR, 0644, 1, 10 * kSecond),
  };
  CHECK(PathsToHash(reference, listing) ==
        std::vector<std::string>{"resized", "touched", "unknown-mtime",
                                 "was-dir", "new"});
}

TEST_CASE("workspace: MergeListing combines the listing with hashes",
          "[workspace][manifest]") {
  StoreFixture fixture;
  const Manifest reference =
      ManifestMaker(&fixture)
          .File("kept", "kept content", 0644, 10 * kSecond)
          .File("edited", "old", 0644, 10 * kSecond)
          .Build();
  const std::string edited_sha = fixture.Put("new content");
  const std::string added_sha = fixture.Put("added");
  Manifest hashed;
  auto add_hashed = [&](const std::string& path, const std::string& sha,
                        uint64_t size, int64_t mtime) {
    ManifestEntry* entry = hashed.add_entries();
    entry->set_path(path);
    entry->set_type(ENTRY_TYPE_REGULAR);
    entry->set_sha256(sha);
    entry->set_size(size);
    entry->set_mtime_ns(mtime);
  };
  add_hashed("added", added_sha, 5, 20 * kSecond);
  add_hashed("edited", edited_sha, 11, 20 * kSecond);
  const std::vector<FsEntry> listing = {
      MakeEntry("dir", ENTRY_TYPE_DIRECTORY, 0750, 0, 3 * kSecond),
      MakeEntry("dir/fifo", ENTRY_TYPE_OTHER, 0644),
      MakeEntry("kept", ENTRY_TYPE_REGULAR, 0600, 12, 10 * kSecond),
      MakeEntry("edited", ENTRY_TYPE_REGULAR, 0644, 11, 20 * kSecond),
      MakeEntry("added", ENTRY_TYPE_REGULAR, 04755, 5, 20 * kSecond),
      MakeEntry("link", ENTRY_TYPE_SYMLINK, 0777, 4, 3 * kSecond, "kept"),
  };
  auto merged = MergeListing(reference, listing, hashed, kNow);
  INFO(merged.status().ToString());
  REQUIRE(merged.ok());
  CHECK(Paths(*merged) ==
        std::vector<std::string>{"added", "dir", "edited", "kept", "link"});
  const ManifestEntry* kept = FindEntry(*merged, "kept");
  CHECK(kept->sha256() == reference.entries(1).sha256());
  CHECK(kept->mode() == 0600);
  CHECK(kept->mtime_ns() == 10 * kSecond);
  CHECK(FindEntry(*merged, "edited")->sha256() == edited_sha);
  CHECK(FindEntry(*merged, "edited")->mtime_ns() == 20 * kSecond);
  CHECK(FindEntry(*merged, "added")->mode() == 04755);
  CHECK(FindEntry(*merged, "dir")->mode() == 0750);
  CHECK(FindEntry(*merged, "link")->link_target() == "kept");
  CHECK(ValidateManifest(*merged).ok());

  // A file that is in neither: it changed after PathsToHash.
  std::vector<FsEntry> raced = listing;
  raced.push_back(MakeEntry("late", ENTRY_TYPE_REGULAR, 0644, 1, kSecond));
  auto failed = MergeListing(reference, raced, hashed, kNow);
  CHECK(failed.status().code() == absl::StatusCode::kInternal);
  CHECK_THAT(std::string(failed.status().message()), Catch::Contains("'late'"));

  // The packed content does not match what was listed: keep its hash, but
  // not the mtime.
  std::vector<FsEntry> moved = listing;
  moved[3].set_mtime_ns(21 * kSecond);
  auto remerged = MergeListing(reference, moved, hashed, kNow);
  REQUIRE(remerged.ok());
  CHECK(FindEntry(*remerged, "edited")->sha256() == edited_sha);
  CHECK(FindEntry(*remerged, "edited")->mtime_ns() == 0);
  // The reference's hash only serves when its mtime is known.
  Manifest unknown = reference;
  unknown.mutable_entries(1)->set_mtime_ns(0);
  CHECK(MergeListing(unknown, listing, hashed, kNow).status().code() ==
        absl::StatusCode::kInternal);
}

TEST_CASE("workspace: MergeListing distrusts mtimes close to now",
          "[workspace][manifest]") {
  StoreFixture fixture;
  const std::string sha = fixture.Put("x");
  Manifest hashed;
  const std::vector<std::pair<std::string, int64_t>> files = {
      {"old", kNow - 3 * kSecond},      {"edge", kNow - kRacyWindowNs - 1},
      {"recent", kNow - kRacyWindowNs}, {"now", kNow},
      {"future", kNow + 100 * kSecond},
  };
  std::vector<FsEntry> listing;
  for (const auto& [path, mtime] : files) {
    ManifestEntry* entry = hashed.add_entries();
    entry->set_path(path);
    entry->set_type(ENTRY_TYPE_REGULAR);
    entry->set_sha256(sha);
    entry->set_size(1);
    entry->set_mtime_ns(mtime);
    listing.push_back(MakeEntry(path, ENTRY_TYPE_REGULAR, 0644, 1, mtime));
  }
  listing.push_back(
      MakeEntry("newdir", ENTRY_TYPE_DIRECTORY, 0755, 0, kNow - kSecond));
  auto merged = MergeListing(Manifest(), listing, hashed, kNow);
  REQUIRE(merged.ok());
  CHECK(FindEntry(*merged, "old")->mtime_ns() == kNow - 3 * kSecond);
  CHECK(FindEntry(*merged, "edge")->mtime_ns() == kNow - kRacyWindowNs - 1);
  CHECK(FindEntry(*merged, "recent")->mtime_ns() == 0);
  CHECK(FindEntry(*merged, "now")->mtime_ns() == 0);
  CHECK(FindEntry(*merged, "future")->mtime_ns() == 0);
  CHECK(FindEntry(*merged, "newdir")->mtime_ns() == 0);

  // Next time, the racy files are hashed again even if nothing changed.
  std::vector<FsEntry> next_listing(listing.begin(), listing.end() - 1);
  CHECK(PathsToHash(*merged, next_listing) ==
        std::vector<std::string>{"recent", "now", "future"});
}

TEST_CASE("workspace: MergeListing refuses hostile listings",
          "[workspace][manifest]") {
  const Manifest none;
  auto refuse = [&](const std::vector<FsEntry>& listing,
                    const std::string& needle) {
    auto merged = MergeListing(none, listing, none, kNow);
    INFO(merged.status().ToString());
    CHECK(merged.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(merged.status().message()), Catch::Contains(needle));
  };
  refuse({MakeEntry("../up", ENTRY_TYPE_DIRECTORY)}, "'..' path component");
  refuse({MakeEntry("/abs", ENTRY_TYPE_DIRECTORY)}, "absolute path");
  refuse({MakeEntry("d", ENTRY_TYPE_DIRECTORY),
          MakeEntry("d", ENTRY_TYPE_DIRECTORY)},
         "listed twice");
  refuse({MakeEntry("s", ENTRY_TYPE_SYMLINK, 0777, 0, 0, "/"),
          MakeEntry("s/x", ENTRY_TYPE_DIRECTORY)},
         "beneath the symlink 's'");
  refuse({MakeEntry("h", ENTRY_TYPE_HARDLINK, 0644, 0, 0, "x")},
         "hard link in a listing");
}

TEST_CASE("workspace: EmitManifest replays a manifest with its content",
          "[workspace][manifest]") {
  StoreFixture fixture;
  std::string big(200000, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  const std::string archive = TarBuilder(nullptr, archive_write_set_format_pax)
                                  .Dir("src")
                                  .File("src/big.bin", big, 0600)
                                  .File("src/a.txt", "alpha\n")
                                  .Symlink("src/link", "a.txt")
                                  .File("empty", "")
                                  .Finish();
  ManifestBuilder builder(&fixture.store());
  REQUIRE(ReadUploadArchive(ChunksOf(archive), {}, builder).ok());
  auto manifest = builder.Finish();
  REQUIRE(manifest.ok());

  RecordingSink sink;
  REQUIRE(EmitManifest(*manifest, fixture.store(), sink).ok());
  REQUIRE(sink.items.size() == 5);
  // Bytewise order: parents before their contents.
  CHECK(sink.items[0].entry.path() == "empty");
  CHECK(sink.items[1].entry.path() == "src");
  const auto* big_item = sink.Find("src/big.bin");
  CHECK(big_item->data == big);
  CHECK(big_item->entry.size() == big.size());
  CHECK(big_item->entry.mode() == 0600);
  CHECK(big_item->largest_chunk <= 64 * 1024);
  CHECK(sink.Find("src/link")->entry.link_target() == "a.txt");
  CHECK(sink.Find("src/a.txt")->entry.mtime_ns() == 1'700'000'000'000'000'250);

  // Replayed into a builder, the same manifest comes out.
  ManifestBuilder rebuilt(&fixture.store());
  REQUIRE(EmitManifest(*manifest, fixture.store(), rebuilt).ok());
  auto again = rebuilt.Finish();
  REQUIRE(again.ok());
  CHECK(again->SerializeAsString() == manifest->SerializeAsString());
  CHECK(rebuilt.new_bytes() == 0);

  // A damaged object is noticed before its entry goes out.
  const std::string sha = FindEntry(*manifest, "src/a.txt")->sha256();
  const auto object =
      fixture.root() / "objects" / sha.substr(0, 2) / sha.substr(2);
  REQUIRE(::truncate(object.c_str(), 2) == 0);
  RecordingSink damaged;
  absl::Status status = EmitManifest(*manifest, fixture.store(), damaged);
  CHECK(status.code() == absl::StatusCode::kDataLoss);
  CHECK(damaged.Find("src/a.txt") == nullptr);
}

TEST_CASE("workspace: CollectReferences names every content object",
          "[workspace][manifest]") {
  StoreFixture fixture;
  const Manifest manifest = ManifestMaker(&fixture)
                                .File("a", "one")
                                .File("b", "two")
                                .File("c", "one")
                                .Dir("d")
                                .Symlink("e", "a")
                                .Build();
  absl::flat_hash_set<std::string> live;
  CollectReferences(manifest, &live);
  CHECK(live.size() == 2);
  CHECK(live.contains(fixture.Put("one")));
  CHECK(live.contains(fixture.Put("two")));

  // Garbage collection with these references keeps the manifest's files.
  const std::string orphan = fixture.Put("orphan");
  auto stored = fixture.store().PutManifest(manifest);
  REQUIRE(stored.ok());
  live.insert(stored->sha256);
  REQUIRE(fixture.store().CollectGarbage(live).ok());
  CHECK_FALSE(fixture.store().Has(orphan));
  RecordingSink sink;
  auto read = fixture.store().ReadManifest(stored->sha256);
  REQUIRE(read.ok());
  CHECK(EmitManifest(*read, fixture.store(), sink).ok());
}

}  // namespace
}  // namespace corral::daemon::workspace::testing
