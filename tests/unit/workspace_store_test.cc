// ContentStore: objects named by their SHA-256, deduplicated, durable
// commits, garbage collection, and refusal of malformed names.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <thread>

#include "daemon/workspace/content_store.h"
#include "tests/unit/workspace_test_util.h"

namespace corral::daemon::workspace {
namespace {

namespace fs = std::filesystem;
using testing::StoreFixture;

// SHA-256 of "hello\n" and of nothing, from coreutils' sha256sum.
constexpr char kHelloSha[] =
    "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
constexpr char kEmptySha[] =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

mode_t ModeOf(const fs::path& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st.st_mode & 07777;
}

TEST_CASE("workspace: store puts, finds and reads objects by hash",
          "[workspace][store]") {
  StoreFixture fixture;
  ContentStore& store = fixture.store();
  auto first = store.Put("hello\n");
  REQUIRE(first.ok());
  CHECK(first->sha256 == kHelloSha);
  CHECK(first->size == 6);
  CHECK(first->is_new);
  CHECK(store.Has(kHelloSha));
  CHECK_FALSE(store.Has(kEmptySha));

  const fs::path object =
      fixture.root() / "objects" / "58" / std::string(kHelloSha).substr(2);
  REQUIRE(fs::is_regular_file(object));
  CHECK(ModeOf(object) == 0600);
  CHECK(ModeOf(object.parent_path()) == 0700);
  CHECK(ModeOf(fixture.root() / "objects") == 0700);
  CHECK(ModeOf(fixture.root() / "tmp") == 0700);

  auto read = store.ReadObject(kHelloSha, 100);
  REQUIRE(read.ok());
  CHECK(*read == "hello\n");
  auto fd = store.OpenObject(kHelloSha);
  REQUIRE(fd.ok());
  char buffer[16] = {};
  CHECK(::read(fd->get(), buffer, sizeof(buffer)) == 6);
  CHECK(std::string(buffer) == "hello\n");

  auto prefix = store.ReadObjectPrefix(kHelloSha, 3);
  REQUIRE(prefix.ok());
  CHECK(*prefix == "hel");

  auto too_big = store.ReadObject(kHelloSha, 5);
  CHECK(too_big.status().code() == absl::StatusCode::kResourceExhausted);

  auto empty = store.Put("");
  REQUIRE(empty.ok());
  CHECK(empty->sha256 == kEmptySha);
  CHECK(empty->size == 0);
}

TEST_CASE("workspace: store deduplicates identical content",
          "[workspace][store]") {
  StoreFixture fixture;
  ContentStore& store = fixture.store();
  REQUIRE(store.Put("same bytes").ok());
  auto again = store.Put("same bytes");
  REQUIRE(again.ok());
  CHECK_FALSE(again->is_new);

  // Through a writer, in pieces: same name, not new, temp file gone.
  auto writer = store.NewWriter();
  REQUIRE(writer.ok());
  REQUIRE((*writer)->Append("same ").ok());
  REQUIRE((*writer)->Append("bytes").ok());
  CHECK((*writer)->size() == 10);
  auto committed = (*writer)->Commit();
  REQUIRE(committed.ok());
  CHECK(committed->sha256 == again->sha256);
  CHECK_FALSE(committed->is_new);
  CHECK(fs::is_empty(fixture.root() / "tmp"));
  CHECK_FALSE((*writer)->Commit().ok());

  size_t objects = 0;
  for (const auto& entry :
       fs::recursive_directory_iterator(fixture.root() / "objects")) {
    if (entry.is_regular_file()) ++objects;
  }
  CHECK(objects == 1);
}

TEST_CASE("workspace: store writer discards an uncommitted object",
          "[workspace][store]") {
  StoreFixture fixture;
  {
    auto writer = fixture.store().NewWriter();
    REQUIRE(writer.ok());
    REQUIRE((*writer)->Append("never committed").ok());
    CHECK_FALSE(fs::is_empty(fixture.root() / "tmp"));
  }
  CHECK(fs::is_empty(fixture.root() / "tmp"));
  CHECK(fs::is_empty(fixture.root() / "objects"));
}

TEST_CASE("workspace: store removes stale temp files at open",
          "[workspace][store]") {
  StoreFixture fixture;
  const std::string sha = fixture.Put("kept");
  { std::ofstream(fixture.root() / "tmp" / "object-crashed") << "partial"; }
  fs::create_directory(fixture.root() / "tmp" / "odd-dir");
  auto reopened = ContentStore::Open(fixture.root());
  REQUIRE(reopened.ok());
  CHECK(fs::is_empty(fixture.root() / "tmp"));
  CHECK((*reopened)->Has(sha));
}

TEST_CASE("workspace: store refuses malformed object names",
          "[workspace][store]") {
  StoreFixture fixture;
  const ContentStore& store = fixture.store();
  const std::string bad_names[] = {
      "",
      "abc",
      std::string(kHelloSha).substr(0, 63),
      std::string(kHelloSha) + "0",
      "5891B5B522D5DF086D0FF0B110FBD9D21BB4FC7163AF34D08286A2E846F6BE03",
      "../../../../../../../../../../../../../../../../../../etc/passwd..",
      std::string(64, 'g'),
      "58/" + std::string(kHelloSha).substr(3),
  };
  for (const std::string& name : bad_names) {
    INFO(name);
    CHECK_FALSE(store.Has(name));
    CHECK(store.OpenObject(name).status().code() ==
          absl::StatusCode::kInvalidArgument);
    CHECK(store.ReadObject(name, 100).status().code() ==
          absl::StatusCode::kInvalidArgument);
  }
  CHECK(store.OpenObject(kEmptySha).status().code() ==
        absl::StatusCode::kNotFound);
}

TEST_CASE("workspace: store garbage collection keeps live objects only",
          "[workspace][store]") {
  StoreFixture fixture;
  ContentStore& store = fixture.store();
  const std::string live = fixture.Put("live object");
  const std::string dead = fixture.Put("dead object, 26 bytes long");
  const std::string also_dead = fixture.Put("x");
  // Something the store did not write is left alone.
  const fs::path foreign = fixture.root() / "objects" / "zz";
  fs::create_directory(foreign);
  { std::ofstream(foreign / "file") << "not ours"; }

  auto freed = store.CollectGarbage({live});
  REQUIRE(freed.ok());
  CHECK(*freed == 27);
  CHECK(store.Has(live));
  CHECK_FALSE(store.Has(dead));
  CHECK_FALSE(store.Has(also_dead));
  CHECK(fs::exists(foreign / "file"));
  // Empty fan-out directories go too.
  CHECK_FALSE(fs::exists(fixture.root() / "objects" / dead.substr(0, 2)));

  auto again = store.CollectGarbage({live});
  REQUIRE(again.ok());
  CHECK(*again == 0);
  // A collected object can be stored again.
  auto back = store.Put("x");
  REQUIRE(back.ok());
  CHECK(back->is_new);
}

TEST_CASE("workspace: store keeps manifests as objects", "[workspace][store]") {
  StoreFixture fixture;
  corral::workspace::v1::Manifest manifest;
  auto* entry = manifest.add_entries();
  entry->set_path("src/main.cc");
  entry->set_type(corral::agent::v1::ENTRY_TYPE_REGULAR);
  entry->set_sha256(kHelloSha);
  entry->set_size(6);
  entry->set_mode(0644);
  auto stored = fixture.store().PutManifest(manifest);
  REQUIRE(stored.ok());
  CHECK(stored->is_new);
  auto read = fixture.store().ReadManifest(stored->sha256);
  REQUIRE(read.ok());
  REQUIRE(read->entries_size() == 1);
  CHECK(read->entries(0).path() == "src/main.cc");
  CHECK(read->entries(0).sha256() == kHelloSha);
  CHECK_FALSE(fixture.store().PutManifest(manifest)->is_new);

  const std::string garbage = fixture.Put(std::string("\xff\xff\xff", 3));
  CHECK(fixture.store().ReadManifest(garbage).status().code() ==
        absl::StatusCode::kDataLoss);
}

TEST_CASE("workspace: store commits concurrently from many threads",
          "[workspace][store]") {
  StoreFixture fixture;
  ContentStore& store = fixture.store();
  std::atomic<int> new_count{0};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        // Every thread writes the same 50 contents: 50 new objects in all.
        auto committed = store.Put("content " + std::to_string(i));
        if (!committed.ok()) {
          ++failures;
        } else if (committed->is_new) {
          ++new_count;
        }
      }
      (void)t;
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(failures == 0);
  CHECK(new_count == 50);
}

}  // namespace
}  // namespace corral::daemon::workspace
