// Unit tests of the workspace disk pool (backends/common/workspace_disk):
// images formatted ahead of time by a background thread, taken by rename,
// bounded in number. Real mkfs.ext4 on sparse files; no root needed.
#include "backends/common/workspace_disk.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <thread>

#include "tests/test_util.h"

namespace rc = corral::runtime_common;
namespace fs = std::filesystem;

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

bool HaveMkfs() {
  return ::access("/usr/sbin/mkfs.ext4", X_OK) == 0 ||
         ::access("/sbin/mkfs.ext4", X_OK) == 0;
}

// The ext4 superblock's magic (0xEF53, little-endian at byte 1080).
bool IsExt4(const fs::path& image) {
  std::ifstream in(image, std::ios::binary);
  in.seekg(1080);
  unsigned char magic[2] = {};
  in.read(reinterpret_cast<char*>(magic), 2);
  return in && magic[0] == 0x53 && magic[1] == 0xEF;
}

// Ready images in the pool, by size ("<bytes>-<hex>.ext4").
std::map<uint64_t, int> PoolImages(const fs::path& pool) {
  std::map<uint64_t, int> images;
  for (const auto& entry : fs::directory_iterator(pool)) {
    const std::string name = entry.path().filename().string();
    if (name.front() == '.') continue;
    images[std::stoull(name.substr(0, name.find('-')))] += 1;
  }
  return images;
}

// Polls until `done` or a minute passes (mkfs of a small image takes ms).
bool Eventually(const std::function<bool()>& done) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

}  // namespace

TEST_CASE(
    "a workspace disk is an ext4 image of exactly the size asked, made now "
    "when the pool is empty and taken from the pool afterwards",
    "[workspace-disk]") {
  INFO("mkfs.ext4 (e2fsprogs) is installed by deploy/install-deps.sh");
  REQUIRE(HaveMkfs());
  corral::testing::TempDir dir("corral-disk-pool");
  const fs::path pool = dir.path() / "pool";
  // A half-made image of an earlier process goes when the pool starts.
  fs::create_directory(pool);
  std::ofstream(pool / ".tmp-16777216-00.ext4") << "half";

  const fs::path first = dir.path() / "first.ext4";
  REQUIRE(rc::TakeWorkspaceDisk(pool.string(), 16 * kMiB, first.string()).ok());
  CHECK(fs::file_size(first) == 16 * kMiB);
  CHECK(IsExt4(first));
  const fs::perms owner_only = fs::perms::owner_read | fs::perms::owner_write;
  CHECK((fs::status(first).permissions() & fs::perms::all) == owner_only);
  CHECK_FALSE(fs::exists(pool / ".tmp-16777216-00.ext4"));

  // Two of that size are formatted in the background.
  REQUIRE(Eventually([&] { return PoolImages(pool)[16 * kMiB] == 2; }));
  std::map<ino_t, std::string> pooled;
  for (const auto& entry : fs::directory_iterator(pool)) {
    struct stat st {};
    REQUIRE(::stat(entry.path().c_str(), &st) == 0);
    pooled[st.st_ino] = entry.path().filename().string();
  }

  // The next one of that size is one of them, moved (same inode).
  const fs::path second = dir.path() / "second.ext4";
  REQUIRE(
      rc::TakeWorkspaceDisk(pool.string(), 16 * kMiB, second.string()).ok());
  struct stat st {};
  REQUIRE(::stat(second.c_str(), &st) == 0);
  REQUIRE(pooled.count(st.st_ino) == 1);
  CHECK_FALSE(fs::exists(pool / pooled[st.st_ino]));
  CHECK(fs::file_size(second) == 16 * kMiB);
  CHECK(IsExt4(second));
  // ... and the pool is filled again.
  CHECK(Eventually([&] { return PoolImages(pool)[16 * kMiB] == 2; }));

  // A path that exists is never overwritten.
  std::ofstream(dir.path() / "taken") << "keep";
  CHECK_FALSE(rc::TakeWorkspaceDisk(pool.string(), 8 * kMiB,
                                    (dir.path() / "taken").string())
                  .ok());
  std::ifstream kept(dir.path() / "taken");
  std::string contents;
  kept >> contents;
  CHECK(contents == "keep");
}

TEST_CASE(
    "the workspace disk pool keeps two images of each of the last four "
    "sizes and removes those of sizes no longer asked for",
    "[workspace-disk]") {
  INFO("mkfs.ext4 (e2fsprogs) is installed by deploy/install-deps.sh");
  REQUIRE(HaveMkfs());
  corral::testing::TempDir dir("corral-disk-pool");
  const fs::path pool = dir.path() / "pool";
  int taken = 0;
  auto take = [&](uint64_t mib) {
    const fs::path path = dir.path() / ("disk-" + std::to_string(taken++));
    REQUIRE(
        rc::TakeWorkspaceDisk(pool.string(), mib * kMiB, path.string()).ok());
    CHECK(fs::file_size(path) == mib * kMiB);
  };
  take(8);
  REQUIRE(Eventually([&] { return PoolImages(pool)[8 * kMiB] == 2; }));
  for (uint64_t mib : {9, 10, 11, 12}) take(mib);
  // 8 MiB is the fifth size back: its images go; the last four are kept.
  const std::map<uint64_t, int> expected = {
      {9 * kMiB, 2}, {10 * kMiB, 2}, {11 * kMiB, 2}, {12 * kMiB, 2}};
  CHECK(Eventually([&] { return PoolImages(pool) == expected; }));
  // And it stays that way: nothing more is made.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(PoolImages(pool) == expected);
}
