// Hostile archives given to the image store: each is refused with a message
// naming the rule, or (for special files and setuid bits) neutralized, and a
// refused import leaves no image, no temporary directory and no file outside
// the image directory.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <random>

#include "absl/strings/str_cat.h"
#include "tests/unit/images_test_util.h"

namespace corral::daemon {
namespace {

namespace fs = std::filesystem;

using testing::ImagesFixture;
using testing::TarBuilder;
using testing::ValidRootfs;

// Imports `archive` as "evil" and checks that it failed with
// INVALID_ARGUMENT mentioning `rule`, leaving nothing behind.
void ExpectRejected(ImagesFixture& fixture, const std::string& archive,
                    const std::string& rule, ImportLimits limits = {}) {
  auto image = fixture.Import("evil", archive, limits);
  INFO(image.status().ToString());
  REQUIRE_FALSE(image.ok());
  CHECK(image.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(image.status().message()), Catch::Contains(rule));
  CHECK(fixture.DirectoryNames().empty());
  CHECK(fixture.store().GetImage("evil").status().code() ==
        absl::StatusCode::kNotFound);
  CHECK(fixture.images().Get("evil").status().code() ==
        absl::StatusCode::kNotFound);
}

// A file name unique to this run, for escape targets.
std::string Marker(const char* what) {
  return absl::StrCat("corral-escape-", what, "-", ::getpid());
}

TEST_CASE("hostile: path with ..", "[images][security]") {
  ImagesFixture fixture;
  const std::string target = Marker("dotdot");
  TarBuilder tar;
  tar.Dir("etc").File("etc/../../../../../../tmp/" + target, "pwned");
  ExpectRejected(fixture, tar.Finish(), "\"..\" component");
  CHECK_FALSE(fs::exists("/tmp/" + target));

  TarBuilder plain;
  plain.File("../escape", "pwned");
  ExpectRejected(fixture, plain.Finish(), "../escape");
}

TEST_CASE("hostile: absolute path", "[images][security]") {
  ImagesFixture fixture;
  const std::string target = "/tmp/" + Marker("absolute");
  TarBuilder tar;
  tar.File(target, "pwned");
  ExpectRejected(fixture, tar.Finish(), "absolute path");
  CHECK_FALSE(fs::exists(target));

  TarBuilder etc;
  etc.File("/etc/evil", "pwned");
  ExpectRejected(fixture, etc.Finish(), "absolute path");
  CHECK_FALSE(fs::exists("/etc/evil"));
}

TEST_CASE("hostile: writing through a symlink", "[images][security]") {
  ImagesFixture fixture;
  const fs::path outside = fs::temp_directory_path() / Marker("symlink");
  fs::create_directories(outside);
  TarBuilder tar;
  tar.Symlink("link", outside.string()).File("link/payload", "pwned");
  ExpectRejected(fixture, tar.Finish(), "symlink");
  CHECK_FALSE(fs::exists(outside / "payload"));

  // A symlinked directory deeper in the path.
  TarBuilder deep;
  deep.Dir("a").Symlink("a/b", outside.string()).File("a/b/c/payload", "x");
  ExpectRejected(fixture, deep.Finish(), "symlink");
  CHECK(fs::is_empty(outside));
  fs::remove_all(outside);
}

TEST_CASE("hostile: hard links that leave the archive", "[images][security]") {
  ImagesFixture fixture;
  {
    TarBuilder tar;
    tar.Hardlink("passwd", "/etc/passwd");
    ExpectRejected(fixture, tar.Finish(), "absolute path");
  }
  {
    TarBuilder tar;
    tar.Dir("d").Hardlink("d/x", "../x");
    ExpectRejected(fixture, tar.Finish(), "\"..\" component");
  }
  {
    // A relative name that exists on the host relative to some cwd but was
    // not extracted from this archive.
    TarBuilder tar;
    tar.Hardlink("shadow", "etc/shadow");
    ExpectRejected(fixture, tar.Finish(), "extracted earlier");
  }
  {
    // Through a symlink to a directory outside.
    TarBuilder tar;
    tar.Symlink("etc", "/etc").Hardlink("pw", "etc/passwd");
    ExpectRejected(fixture, tar.Finish(), "extracted earlier");
  }
}

TEST_CASE("hostile: device nodes, FIFOs and sockets are skipped",
          "[images][security]") {
  ImagesFixture fixture;
  TarBuilder tar;
  tar.Dir("dev")
      .Special("dev/null", AE_IFCHR)
      .Special("dev/sda", AE_IFBLK)
      .Special("fifo", AE_IFIFO)
      .File("etc/ok", "fine");
  auto image = fixture.Import("specials", tar.Finish());
  INFO(image.status().ToString());
  REQUIRE(image.ok());
  const fs::path rootfs = *fixture.images().RootfsDir("specials");
  CHECK(fs::is_directory(rootfs / "dev"));
  CHECK_FALSE(fs::exists(fs::symlink_status(rootfs / "dev/null")));
  CHECK_FALSE(fs::exists(fs::symlink_status(rootfs / "dev/sda")));
  CHECK_FALSE(fs::exists(fs::symlink_status(rootfs / "fifo")));
  CHECK(fs::exists(rootfs / "etc/ok"));
  // dev, etc/ok and the implied etc are counted; skipped entries are not.
  CHECK(image->entries() == 2);
}

TEST_CASE("hostile: setuid, setgid and sticky bits are stripped",
          "[images][security]") {
  ImagesFixture fixture;
  TarBuilder tar;
  tar.File("bin/su", "suid", 04755)
      .File("bin/wall", "sgid", 02755)
      .Dir("tmp", 01777)
      .Dir("sgid-dir", 02775);
  auto image = fixture.Import("modes", tar.Finish());
  INFO(image.status().ToString());
  REQUIRE(image.ok());
  const fs::path rootfs = *fixture.images().RootfsDir("modes");
  struct stat st {};
  REQUIRE(::stat((rootfs / "bin/su").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0755);
  REQUIRE(::stat((rootfs / "bin/wall").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0755);
  REQUIRE(::stat((rootfs / "tmp").c_str(), &st) == 0);
  CHECK((st.st_mode & 07000) == 0);
  REQUIRE(::stat((rootfs / "sgid-dir").c_str(), &st) == 0);
  CHECK((st.st_mode & 07000) == 0);
}

TEST_CASE("hostile: sizes over the byte limit", "[images][security]") {
  ImagesFixture fixture;
  ImportLimits limits;
  limits.max_bytes = 16 << 20;
  SECTION("a sparse file of huge logical size") {
    TarBuilder tar;
    tar.Sparse("sparse", int64_t{1} << 40, 0, std::string(512, 'x'));
    ExpectRejected(fixture, tar.Finish(), "byte limit", limits);
  }
  SECTION("many files that add up") {
    TarBuilder tar;
    for (int i = 0; i < 5; ++i) {
      tar.Zeros("f" + std::to_string(i), 4 << 20);
    }
    ExpectRejected(fixture, tar.Finish(), "byte limit", limits);
  }
  SECTION("a gzip bomb: compressed zeros") {
    TarBuilder tar(archive_write_add_filter_gzip);
    tar.Zeros("zeros", 64 << 20);
    const std::string archive = tar.Finish();
    CHECK(archive.size() < (1 << 20));
    ExpectRejected(fixture, archive, "byte limit", limits);
  }
  SECTION("a raw stream of compressed zeros that is no tar") {
    // gzip of 64 MiB of zeros: the tar reader sees end-of-archive blocks.
    const std::string bytes = ::corral::testing::CompressedRaw(
        archive_write_add_filter_gzip, std::string(1 << 20, '\0'), 64);
    ExpectRejected(fixture, bytes, "no entries", limits);
  }
}

TEST_CASE("hostile: entry count, path length and depth", "[images][security]") {
  ImagesFixture fixture;
  SECTION("too many entries") {
    ImportLimits limits;
    limits.max_entries = 10;
    TarBuilder tar;
    for (int i = 0; i < 20; ++i) tar.File("f" + std::to_string(i), "");
    ExpectRejected(fixture, tar.Finish(), "more than 10 entries", limits);
  }
  SECTION("a path over 4096 bytes") {
    TarBuilder tar;
    tar.File("d/" + std::string(5000, 'x'), "long");
    ExpectRejected(fixture, tar.Finish(), "longer than 4096 bytes");
  }
  SECTION("a path deeper than 256 components") {
    std::string path;
    for (int i = 0; i < 300; ++i) path += "a/";
    TarBuilder tar;
    tar.File(path + "f", "deep");
    ExpectRejected(fixture, tar.Finish(), "deeper than 256");
  }
  SECTION("a symlink target over 4096 bytes") {
    TarBuilder tar;
    tar.Symlink("l", std::string(5000, 'y'));
    ExpectRejected(fixture, tar.Finish(), "symlink target is longer");
  }
}

TEST_CASE("hostile: broken and foreign archives", "[images][security]") {
  ImagesFixture fixture;
  SECTION("truncated") {
    std::mt19937 random(42);
    std::string content(200000, '\0');
    for (char& c : content) c = static_cast<char>(random());
    TarBuilder tar(archive_write_add_filter_gzip);
    tar.File("a", content).File("b", content);
    const std::string archive = tar.Finish();
    ExpectRejected(fixture, archive.substr(0, archive.size() / 2), "truncated");
  }
  SECTION("truncated plain tar") {
    TarBuilder tar;
    tar.File("a", std::string(100000, 'a'));
    const std::string archive = tar.Finish();
    ExpectRejected(fixture, archive.substr(0, 50000), "truncated");
  }
  SECTION("random garbage") {
    std::mt19937 random(7);
    std::string garbage(100000, '\0');
    for (char& c : garbage) c = static_cast<char>(random());
    ExpectRejected(fixture, garbage, "not a tar archive");
  }
  SECTION("a zip file (format not enabled)") {
    TarBuilder zip(nullptr, archive_write_set_format_zip);
    zip.File("etc/hostname", "zip");
    ExpectRejected(fixture, zip.Finish(), "not a tar archive");
  }
  SECTION("a cpio archive (format not enabled)") {
    TarBuilder cpio(nullptr, archive_write_set_format_cpio_newc);
    cpio.File("etc/hostname", "cpio");
    ExpectRejected(fixture, cpio.Finish(), "not a tar archive");
  }
  SECTION("bzip2 (filter not enabled)") {
    TarBuilder tar(archive_write_add_filter_bzip2);
    tar.File("etc/hostname", "bz2");
    ExpectRejected(fixture, tar.Finish(), "not a tar archive");
  }
  SECTION("empty stream") { ExpectRejected(fixture, "", "not a tar archive"); }
  SECTION("only the end-of-archive marker") {
    ExpectRejected(fixture, std::string(10240, '\0'), "no entries");
  }
}

TEST_CASE("hostile: mount points must be directories", "[images][security]") {
  ImagesFixture fixture;
  {
    TarBuilder tar;
    tar.Symlink("tmp", "/var/tmp");
    ExpectRejected(fixture, tar.Finish(), "mount point /tmp");
  }
  {
    TarBuilder tar;
    tar.File("proc", "not a dir");
    ExpectRejected(fixture, tar.Finish(), "mount point /proc");
  }
  {
    TarBuilder tar;
    tar.Symlink("workspace", "/");
    ExpectRejected(fixture, tar.Finish(), "mount point /workspace");
  }
}

TEST_CASE("hostile: names are bytes, not text", "[images][security]") {
  ImagesFixture fixture;
  // Latin-1, invalid UTF-8 and control bytes: stored as they are, in both
  // the ustar and the pax formats.
  const std::string latin1 = "caf\xe9";
  const std::string invalid = "bad\xff\xfename";
  const std::string control = "line\nbreak\x01";
  for (auto format : {archive_write_set_format_ustar,
                      archive_write_set_format_pax_restricted}) {
    TarBuilder tar(nullptr, format);
    tar.File(latin1, "1").File(invalid, "2").File(control, "3");
    const std::string name =
        format == archive_write_set_format_ustar ? "ustar" : "pax";
    auto image = fixture.Import(name, tar.Finish());
    INFO(image.status().ToString());
    REQUIRE(image.ok());
    const fs::path rootfs = *fixture.images().RootfsDir(name);
    CHECK(fs::exists(rootfs / latin1));
    CHECK(fs::exists(rootfs / invalid));
    CHECK(fs::exists(rootfs / control));
  }
}

TEST_CASE("hostile: an entry changing type", "[images][security]") {
  ImagesFixture fixture;
  const fs::path outside = fs::temp_directory_path() / Marker("retype");
  fs::create_directories(outside);
  // A directory replaced by a symlink, then written through.
  TarBuilder tar;
  tar.Dir("d").Symlink("d", outside.string()).File("d/payload", "x");
  ExpectRejected(fixture, tar.Finish(), "another type");
  CHECK(fs::is_empty(outside));
  fs::remove_all(outside);
}

TEST_CASE("hostile: a valid import after rejections still works",
          "[images][security]") {
  ImagesFixture fixture;
  TarBuilder tar;
  tar.File("../x", "x");
  ExpectRejected(fixture, tar.Finish(), "..");
  auto image = fixture.Import("good", ValidRootfs());
  INFO(image.status().ToString());
  CHECK(image.ok());
}

}  // namespace
}  // namespace corral::daemon
