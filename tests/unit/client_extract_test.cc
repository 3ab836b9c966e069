// Tests of the CLI's extraction of archives that come out of a sandbox
// (client/tar_extract.h): hostile tars are built here with libarchive, and
// every test checks that nothing was written outside the destination. Kept
// apart from the proto-using tests because archive.h defines macros that clash
// with corral.v1's enum values.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "client/tar_extract.h"
#include "corral/unique_fd.h"
#include "tests/test_util.h"

namespace corral::cli {
namespace {

namespace fs = std::filesystem;
using corral::testing::TempDir;

// One entry of a test archive.
struct Entry {
  std::string name;
  unsigned int type = AE_IFREG;
  std::string data;  // content, or the link target for symlinks/hard links
  mode_t perm = 0644;
  bool hardlink = false;
};

Entry File(std::string name, std::string data, mode_t perm = 0644) {
  return {std::move(name), AE_IFREG, std::move(data), perm, false};
}
Entry Dir(std::string name, mode_t perm = 0755) {
  return {std::move(name), AE_IFDIR, "", perm, false};
}
Entry Symlink(std::string name, std::string target) {
  return {std::move(name), AE_IFLNK, std::move(target), 0777, false};
}
Entry Hardlink(std::string name, std::string target) {
  return {std::move(name), AE_IFREG, std::move(target), 0644, true};
}
Entry Special(std::string name, unsigned int type) {
  return {std::move(name), type, "", 0644, false};
}

// A pax tar of `entries`, in order, as libarchive writes it.
std::string MakeTar(const std::vector<Entry>& entries) {
  std::string out;
  struct archive* writer = archive_write_new();
  REQUIRE(archive_write_set_format_pax(writer) == ARCHIVE_OK);
  REQUIRE(archive_write_set_bytes_in_last_block(writer, 1) == ARCHIVE_OK);
  REQUIRE(archive_write_open(
              writer, &out, nullptr,
              [](struct archive*, void* client, const void* buffer,
                 size_t length) -> la_ssize_t {
                static_cast<std::string*>(client)->append(
                    static_cast<const char*>(buffer), length);
                return static_cast<la_ssize_t>(length);
              },
              nullptr) == ARCHIVE_OK);
  for (const Entry& e : entries) {
    struct archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.name.c_str());
    archive_entry_set_perm(entry, e.perm);
    archive_entry_set_mtime(entry, 1700000000, 0);
    if (e.hardlink) {
      archive_entry_set_filetype(entry, AE_IFREG);
      archive_entry_set_hardlink(entry, e.data.c_str());
      archive_entry_set_size(entry, 0);
    } else {
      archive_entry_set_filetype(entry, e.type);
      if (e.type == AE_IFLNK) archive_entry_set_symlink(entry, e.data.c_str());
      if (e.type == AE_IFCHR) archive_entry_set_rdev(entry, makedev(1, 3));
      archive_entry_set_size(entry, e.type == AE_IFREG ? e.data.size() : 0);
    }
    REQUIRE(archive_write_header(writer, entry) == ARCHIVE_OK);
    if (!e.hardlink && e.type == AE_IFREG && !e.data.empty()) {
      REQUIRE(archive_write_data(writer, e.data.data(), e.data.size()) ==
              static_cast<la_ssize_t>(e.data.size()));
    }
    archive_entry_free(entry);
  }
  REQUIRE(archive_write_close(writer) == ARCHIVE_OK);
  archive_write_free(writer);
  return out;
}

// Serves `tar` in small pieces, as a network stream would.
ChunkSource SourceOf(std::string tar, size_t piece = 700) {
  auto data = std::make_shared<std::string>(std::move(tar));
  auto offset = std::make_shared<size_t>(0);
  return [data, offset, piece](std::string& chunk) -> absl::StatusOr<bool> {
    if (*offset >= data->size()) return false;
    chunk = data->substr(*offset, piece);
    *offset += chunk.size();
    return true;
  };
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const fs::path& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary);
  out << content;
}

// Every path below `root`, relative, sorted; symlinks not followed (a loop
// must not stop the listing).
void ListInto(const fs::path& root, const fs::path& dir,
              std::vector<std::string>& paths) {
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    // Not fs::relative: it resolves symlinks.
    paths.push_back(entry.path().string().substr(root.string().size() + 1));
    if (fs::is_directory(entry.symlink_status())) {
      ListInto(root, entry.path(), paths);
    }
  }
}
std::vector<std::string> Tree(const fs::path& root) {
  std::vector<std::string> paths;
  ListInto(root, root, paths);
  std::sort(paths.begin(), paths.end());
  return paths;
}

// A layout with a destination and, beside it, an "outside" directory that
// must stay exactly as it was.
struct Layout {
  TempDir root{"corral-extract"};
  fs::path dest = root.path() / "dest";
  fs::path outside = root.path() / "outside";
  Layout() {
    fs::create_directories(dest);
    fs::create_directories(outside);
    WriteFile(outside / "victim", "original");
  }
  void CheckOutsideUntouched() const {
    CHECK(Tree(outside) == std::vector<std::string>{"victim"});
    CHECK(ReadFile(outside / "victim") == "original");
    // Nothing next to dest and outside either.
    CHECK(Tree(root.path()).size() == Tree(dest).size() + 3);
  }
  absl::StatusOr<ExtractResult> ExtractAt(const std::string& tar,
                                          ExtractLimits limits = {}) const {
    UniqueFd fd(::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    REQUIRE(fd);
    return ExtractTarAt(SourceOf(tar), fd.get(), limits);
  }
};

TEST_CASE("a well-formed archive is extracted with modes kept",
          "[client][extract]") {
  Layout layout;
  const std::string tar =
      MakeTar({Dir("out", 0750), File("out/a.txt", "alpha", 0600),
               File("out/sub/b.sh", "#!/bin/sh\n", 04755),
               Symlink("out/link", "a.txt"), Hardlink("out/c.txt", "out/a.txt"),
               Dir("out/ro", 0555), File("out/ro/f", "x")});
  auto result = layout.ExtractAt(tar);
  REQUIRE(result.ok());
  CHECK(result->entries == 7);
  CHECK(result->bytes == 5 + 10 + 1);
  CHECK(result->top_level == std::vector<std::string>{"out"});
  const fs::path out = layout.dest / "out";
  CHECK(ReadFile(out / "a.txt") == "alpha");
  CHECK(ReadFile(out / "c.txt") == "alpha");
  CHECK(fs::equivalent(out / "a.txt", out / "c.txt"));
  CHECK(fs::read_symlink(out / "link") == "a.txt");
  struct stat st;
  REQUIRE(::stat((out / "sub" / "b.sh").c_str(), &st) == 0);
  // setuid dropped, the rest kept.
  CHECK((st.st_mode & 07777) == 0755);
  REQUIRE(::stat((out / "a.txt").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0600);
  CHECK(st.st_mtime == 1700000000);
  REQUIRE(::stat(out.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0750);
  REQUIRE(::stat((out / "ro").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0555);
  CHECK(ReadFile(out / "ro" / "f") == "x");
  layout.CheckOutsideUntouched();
  fs::permissions(out / "ro", fs::perms::owner_all);
}

TEST_CASE("hostile archives are refused and write nothing outside",
          "[client][extract]") {
  struct Case {
    const char* what;
    std::vector<Entry> entries;
    const char* message;
  };
  const std::string long_name =
      std::string(4000, 'd') + "/" + std::string(200, 'f');  // 4201 bytes
  const std::vector<Case> cases = {
      {"traversal", {File("../outside/victim", "pwned")}, "contains '..'"},
      {"nested traversal",
       {Dir("a"), File("a/../../outside/victim", "pwned")},
       "contains '..'"},
      {"absolute path",
       {File("/tmp/corral-absolute-victim", "pwned")},
       "absolute path"},
      {"symlink then write through it",
       {Symlink("escape", "../outside"), File("escape/victim", "pwned")},
       "symlink or not a directory"},
      {"absolute symlink then write through it",
       {Symlink("escape", "/"), File("escape/tmp/pwned", "pwned")},
       "symlink or not a directory"},
      {"symlink loop",
       {Symlink("loop", "loop"), File("loop/x", "pwned")},
       "symlink or not a directory"},
      {"symlink replacing a file",
       {File("f", "ok"), Symlink("f", "../outside/victim")},
       "already exists"},
      {"file written over a symlink",
       {Symlink("s", "../outside/victim"), File("s", "pwned")},
       "already exists"},
      {"hard link to outside",
       {Hardlink("h", "../outside/victim")},
       "not an earlier file"},
      {"hard link to a path never extracted",
       {Hardlink("h", "outside/victim")},
       "not an earlier file"},
      {"hard link through a symlink",
       {Symlink("s", "../outside"), Hardlink("h", "s/victim")},
       "not an earlier file"},
      {"character device", {Special("null", AE_IFCHR)}, "device node"},
      {"block device", {Special("sda", AE_IFBLK)}, "device node"},
      {"fifo", {Special("pipe", AE_IFIFO)}, "FIFO"},
      {"long name", {File(long_name, "x")}, "longer than 4096 bytes"},
      {"long component",
       {File(std::string(300, 'n'), "x")},
       "name longer than 255 bytes"},
  };
  for (const Case& c : cases) {
    SECTION(c.what) {
      Layout layout;
      auto result = layout.ExtractAt(MakeTar(c.entries));
      REQUIRE_FALSE(result.ok());
      CHECK_THAT(std::string(result.status().message()),
                 Catch::Contains(c.message));
      CHECK_THAT(std::string(result.status().message()),
                 Catch::StartsWith("archive entry '"));
      layout.CheckOutsideUntouched();
      CHECK_FALSE(fs::exists("/tmp/corral-absolute-victim"));
      CHECK_FALSE(fs::exists("/tmp/pwned"));
    }
  }
}

TEST_CASE("a symlink already in the destination is never followed",
          "[client][extract]") {
  Layout layout;
  fs::create_symlink(layout.outside, layout.dest / "pre");
  auto through = layout.ExtractAt(MakeTar({File("pre/victim", "pwned")}));
  REQUIRE_FALSE(through.ok());
  CHECK_THAT(std::string(through.status().message()),
             Catch::Contains("'pre', which is a symlink"));
  auto onto = layout.ExtractAt(MakeTar({File("pre", "pwned")}));
  REQUIRE_FALSE(onto.ok());
  auto dir_onto = layout.ExtractAt(MakeTar({Dir("pre"), File("pre/x", "y")}));
  REQUIRE_FALSE(dir_onto.ok());
  CHECK_THAT(std::string(dir_onto.status().message()),
             Catch::Contains("not a directory"));
  layout.CheckOutsideUntouched();
  CHECK(fs::is_symlink(layout.dest / "pre"));
}

TEST_CASE("entry and byte limits stop a tar bomb", "[client][extract]") {
  Layout layout;
  std::vector<Entry> many;
  for (int i = 0; i < 20; ++i)
    many.push_back(File("f" + std::to_string(i), ""));
  auto entries = layout.ExtractAt(MakeTar(many), {.max_entries = 10});
  REQUIRE_FALSE(entries.ok());
  CHECK_THAT(std::string(entries.status().message()),
             Catch::Contains("more than 10 entries"));

  Layout big;
  auto bytes = big.ExtractAt(
      MakeTar({File("a", std::string(3000, 'a')), File("b", "bb")}),
      {.max_entries = 0, .max_bytes = 2000});
  REQUIRE_FALSE(bytes.ok());
  CHECK_THAT(std::string(bytes.status().message()),
             Catch::Contains("more than 2000 bytes"));
  big.CheckOutsideUntouched();
}

TEST_CASE("a truncated or garbage stream fails cleanly", "[client][extract]") {
  Layout layout;
  std::string tar = MakeTar({File("big", std::string(100000, 'z'))});
  tar.resize(20000);
  auto truncated = layout.ExtractAt(tar);
  CHECK_FALSE(truncated.ok());
  auto garbage = layout.ExtractAt(std::string(4096, 'G'));
  CHECK_FALSE(garbage.ok());
  // A failing source's error is what comes back.
  UniqueFd fd(::open(layout.dest.c_str(), O_RDONLY | O_DIRECTORY));
  auto failed = ExtractTarAt(
      [](std::string&) -> absl::StatusOr<bool> {
        return absl::UnavailableError("daemon went away");
      },
      fd.get(), {});
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.status().message() == "daemon went away");
}

TEST_CASE("export extraction stages, refuses to overwrite, cleans up",
          "[client][extract]") {
  Layout layout;
  const std::string tar = MakeTar({Dir("out"), File("out/a", "new")});
  auto first = ExtractIntoDirectory(
      SourceOf(tar), (layout.dest / "fresh/deeper").string(), false, {});
  REQUIRE(first.ok());
  CHECK(ReadFile(layout.dest / "fresh/deeper/out/a") == "new");
  CHECK(Tree(layout.dest / "fresh/deeper") ==
        std::vector<std::string>{"out", "out/a"});

  // An existing entry is refused without --force, and DEST is unchanged.
  fs::create_directories(layout.dest / "out");
  WriteFile(layout.dest / "out" / "mine", "keep");
  auto refused =
      ExtractIntoDirectory(SourceOf(tar), layout.dest.string(), false, {});
  REQUIRE_FALSE(refused.ok());
  CHECK_THAT(std::string(refused.status().message()),
             Catch::EndsWith("out exists; use --force to replace it"));
  CHECK(ReadFile(layout.dest / "out" / "mine") == "keep");
  CHECK(Tree(layout.dest) ==
        std::vector<std::string>{"fresh", "fresh/deeper", "fresh/deeper/out",
                                 "fresh/deeper/out/a", "out", "out/mine"});

  // With --force the entry is replaced as a whole.
  auto forced =
      ExtractIntoDirectory(SourceOf(tar), layout.dest.string(), true, {});
  REQUIRE(forced.ok());
  CHECK(ReadFile(layout.dest / "out" / "a") == "new");
  CHECK_FALSE(fs::exists(layout.dest / "out" / "mine"));

  // A hostile archive leaves no staging directory behind.
  const auto before = Tree(layout.dest);
  auto hostile = ExtractIntoDirectory(
      SourceOf(MakeTar({Dir("x"), File("x/ok", "1"), File("../x", "2")})),
      layout.dest.string(), true, {});
  REQUIRE_FALSE(hostile.ok());
  CHECK(Tree(layout.dest) == before);
  layout.CheckOutsideUntouched();
}

TEST_CASE("cp extraction makes the single top entry the target",
          "[client][extract]") {
  Layout layout;
  const std::string dir_tar =
      MakeTar({Dir("out", 0555), File("out/result.txt", "42")});
  const std::string target = (layout.dest / "copy").string();
  auto copied = ExtractAsPath(SourceOf(dir_tar), target, false, {});
  REQUIRE(copied.ok());
  CHECK(ReadFile(layout.dest / "copy" / "result.txt") == "42");
  struct stat st;
  REQUIRE(::stat(target.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0555);

  // Refused before anything is read when the target exists.
  bool read_anything = false;
  auto refused = ExtractAsPath(
      [&](std::string&) -> absl::StatusOr<bool> {
        read_anything = true;
        return false;
      },
      target, false, {});
  REQUIRE_FALSE(refused.ok());
  CHECK_FALSE(read_anything);
  CHECK_THAT(std::string(refused.status().message()),
             Catch::EndsWith("copy exists; use --force to replace it"));

  // --force replaces a read-only directory by a file.
  auto forced = ExtractAsPath(SourceOf(MakeTar({File("f.txt", "file")})),
                              target, true, {});
  REQUIRE(forced.ok());
  CHECK(ReadFile(target) == "file");

  // More than one top-level entry is not something cp can name.
  auto two = ExtractAsPath(SourceOf(MakeTar({File("a", ""), File("b", "")})),
                           (layout.dest / "two").string(), false, {});
  REQUIRE_FALSE(two.ok());
  CHECK_THAT(std::string(two.status().message()),
             Catch::Contains("one top-level entry"));
  CHECK_FALSE(fs::exists(layout.dest / "two"));
  CHECK(Tree(layout.dest) == std::vector<std::string>{"copy"});
  layout.CheckOutsideUntouched();
}

}  // namespace
}  // namespace corral::cli
