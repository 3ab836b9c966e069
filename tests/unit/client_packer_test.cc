// Tests of the CLI's directory packer: pack a real tree, read the tar back
// with libarchive. Kept apart from the proto-using tests because archive.h
// defines ARCHIVE_COMPRESSION_* macros that clash with corral.v1's enum.
#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "client/tar_packer.h"
#include "tests/test_util.h"

namespace corral::cli {
namespace {

namespace fs = std::filesystem;

using corral::testing::TempDir;

void WriteFile(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
  REQUIRE(out.good());
}

// Reads a tar from memory into name -> (type, content or link target, uid).
struct TarEntry {
  unsigned int type;
  std::string data;
  int64_t uid;
  int64_t gid;
  mode_t perm;
};
std::map<std::string, TarEntry> ReadTar(const std::string& tar) {
  std::map<std::string, TarEntry> entries;
  struct archive* reader = archive_read_new();
  archive_read_support_format_tar(reader);
  REQUIRE(archive_read_open_memory(reader, tar.data(), tar.size()) ==
          ARCHIVE_OK);
  struct archive_entry* entry;
  while (archive_read_next_header(reader, &entry) == ARCHIVE_OK) {
    TarEntry result{archive_entry_filetype(entry), "", archive_entry_uid(entry),
                    archive_entry_gid(entry), archive_entry_perm(entry)};
    if (result.type == AE_IFLNK) {
      result.data = archive_entry_symlink(entry);
    } else {
      char buffer[4096];
      la_ssize_t got;
      while ((got = archive_read_data(reader, buffer, sizeof(buffer))) > 0) {
        result.data.append(buffer, static_cast<size_t>(got));
      }
    }
    entries[archive_entry_pathname(entry)] = result;
  }
  archive_read_free(reader);
  return entries;
}

TEST_CASE("the packer stores files, directories and symlinks",
          "[client][packer]") {
  TempDir dir;
  const fs::path root = dir.path() / "tree";
  fs::create_directories(root / "sub" / "deeper");
  WriteFile(root / "hello.txt", "hello\n");
  WriteFile(root / "sub" / "big.bin", std::string(300000, 'x'));
  ::chmod((root / "hello.txt").c_str(), 0751);
  fs::create_symlink("../hello.txt", root / "sub" / "link");
  // Dangling and absolute: must be stored, never followed.
  fs::create_symlink("/etc/shadow", root / "escape");
  REQUIRE(::mkfifo((root / "fifo").c_str(), 0600) == 0);

  std::string tar;
  std::vector<size_t> chunk_sizes;
  constexpr size_t kChunk = 64 * 1024;
  auto result = PackDirectory(
      root.string(),
      [&](absl::string_view chunk) {
        chunk_sizes.push_back(chunk.size());
        tar.append(chunk.data(), chunk.size());
        return absl::OkStatus();
      },
      kChunk);
  REQUIRE(result.ok());
  CHECK(result->entries == 7);
  CHECK(result->archive_bytes == tar.size());
  CHECK(result->skipped.empty());
  REQUIRE(chunk_sizes.size() > 1);
  for (size_t i = 0; i + 1 < chunk_sizes.size(); ++i) {
    CHECK(chunk_sizes[i] == kChunk);
  }
  CHECK(chunk_sizes.back() <= kChunk);

  const auto entries = ReadTar(tar);
  REQUIRE(entries.size() == 7);
  CHECK(entries.at("hello.txt").type == AE_IFREG);
  CHECK(entries.at("hello.txt").data == "hello\n");
  CHECK(entries.at("hello.txt").perm == 0751);
  CHECK(entries.at("sub/big.bin").data == std::string(300000, 'x'));
  CHECK(entries.count("sub/") + entries.count("sub") == 1);
  CHECK(entries.count("sub/deeper/") + entries.count("sub/deeper") == 1);
  CHECK(entries.at("sub/link").type == AE_IFLNK);
  CHECK(entries.at("sub/link").data == "../hello.txt");
  CHECK(entries.at("escape").type == AE_IFLNK);
  CHECK(entries.at("escape").data == "/etc/shadow");
  CHECK(entries.at("fifo").type == AE_IFIFO);
  for (const auto& [name, entry] : entries) {
    CHECK(entry.uid == 0);
    CHECK(entry.gid == 0);
  }
}

TEST_CASE("the packer skips sockets and reports failures", "[client][packer]") {
  TempDir dir;
  auto discard = [](absl::string_view) { return absl::OkStatus(); };

  // A missing directory names itself.
  auto missing = PackDirectory((dir.path() / "nope").string(), discard);
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(std::string(missing.status().message()), Catch::Contains("nope"));

  // The sink's error stops packing and is returned as is.
  WriteFile(dir.path() / "f", std::string(100000, 'y'));
  auto refused = PackDirectory(
      dir.path().string(),
      [](absl::string_view) { return absl::CancelledError("stop"); }, 1024);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.status() == absl::CancelledError("stop"));

  if (::geteuid() != 0) {
    // Root reads anything, so this only runs unprivileged.
    ::chmod((dir.path() / "f").c_str(), 0);
    auto unreadable = PackDirectory(dir.path().string(), discard);
    REQUIRE_FALSE(unreadable.ok());
    CHECK_THAT(std::string(unreadable.status().message()),
               Catch::Contains("cannot read f"));
  }
}

}  // namespace
}  // namespace corral::cli
