// Tests of the image store: import of valid rootfs archives, the built-in
// host image, duplicates, replace and delete.
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "absl/strings/escaping.h"
#include "tests/unit/images_test_util.h"

namespace corral::daemon {
namespace {

namespace fs = std::filesystem;

using testing::ChunksOf;
using testing::ImagesFixture;
using testing::TarBuilder;
using testing::ValidRootfs;

std::string Sha256Hex(const std::string& data) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  REQUIRE(EVP_Digest(data.data(), data.size(), digest, &size, EVP_sha256(),
                     nullptr) == 1);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), size));
}

std::string ReadFile(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), {});
}

SandboxRecord SandboxUsing(const std::string& image, int n) {
  SandboxRecord r;
  r.id = std::string(31, '0') + std::to_string(n);
  r.runtime = "linux";
  r.image = image;
  r.state = 2;
  return r;
}

TEST_CASE("images: names", "[images]") {
  CHECK(ImageStore::IsValidName("alpine"));
  CHECK(ImageStore::IsValidName("3.19-base_x"));
  CHECK(ImageStore::IsValidName(std::string(64, 'a')));
  CHECK_FALSE(ImageStore::IsValidName(""));
  CHECK_FALSE(ImageStore::IsValidName(std::string(65, 'a')));
  CHECK_FALSE(ImageStore::IsValidName(".hidden"));
  CHECK_FALSE(ImageStore::IsValidName("-x"));
  CHECK_FALSE(ImageStore::IsValidName("Upper"));
  CHECK_FALSE(ImageStore::IsValidName("a/b"));
  CHECK_FALSE(ImageStore::IsValidName(".."));
}

TEST_CASE("images: the host image is built in", "[images]") {
  ImagesFixture fixture;
  auto host = fixture.images().Get("host");
  REQUIRE(host.ok());
  CHECK(host->source() == corral::v1::IMAGE_SOURCE_BUILTIN);
  CHECK(host->size_bytes() == 0);

  REQUIRE(fixture.store().InsertSandbox(SandboxUsing("host", 1)).ok());
  auto list = fixture.images().List();
  REQUIRE(list.ok());
  REQUIRE(list->size() == 1);
  CHECK((*list)[0].name() == "host");
  CHECK((*list)[0].sandboxes() == 1);

  CHECK(fixture.images().Delete("host").code() ==
        absl::StatusCode::kFailedPrecondition);
  CHECK(fixture.images().RootfsDir("host").status().code() ==
        absl::StatusCode::kFailedPrecondition);
  CHECK(fixture.Import("host", ValidRootfs()).status().code() ==
        absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("images: a valid rootfs imports", "[images]") {
  ImagesFixture fixture;
  const std::string archive = ValidRootfs();
  corral::v1::ImportImageMetadata metadata;
  metadata.set_name("base");
  (*metadata.mutable_labels())["os"] = "fake";
  auto image = fixture.images().Import(metadata, ChunksOf(archive, 1000));
  INFO(image.status().ToString());
  REQUIRE(image.ok());
  CHECK(image->name() == "base");
  CHECK(image->source() == corral::v1::IMAGE_SOURCE_ROOTFS_TAR);
  CHECK(image->archive_sha256() == Sha256Hex(archive));
  // bin/sh and etc/hostname; the hard link adds no bytes.
  CHECK(image->size_bytes() == 13 + 7);
  // bin, bin/sh, bin/sh2, etc, etc/hostname, etc/localtime, usr/share/doc.
  CHECK(image->entries() == 7);
  CHECK(image->labels().at("os") == "fake");
  CHECK(image->created_at().seconds() > 0);

  auto rootfs = fixture.images().RootfsDir("base");
  REQUIRE(rootfs.ok());
  CHECK(*rootfs == fixture.images_dir() / "base" / "rootfs");
  CHECK(ReadFile(*rootfs / "etc/hostname") == "corral\n");

  // The symlink to an absolute path is kept as a link, not resolved.
  CHECK(fs::is_symlink(*rootfs / "etc/localtime"));
  CHECK(fs::read_symlink(*rootfs / "etc/localtime") ==
        "/usr/share/zoneinfo/UTC");
  // The hard link shares the inode of its target.
  struct stat sh {
  }, sh2{};
  REQUIRE(::stat((*rootfs / "bin/sh").c_str(), &sh) == 0);
  REQUIRE(::stat((*rootfs / "bin/sh2").c_str(), &sh2) == 0);
  CHECK(sh.st_ino == sh2.st_ino);
  CHECK((sh.st_mode & 07777) == 0755);
  // Owners are not restored: root (the test's uid) owns everything.
  CHECK(sh.st_uid == ::geteuid());
  // The mount points exist as directories.
  for (std::string_view name : ImageStore::kMountPoints) {
    INFO(name);
    CHECK(fs::is_directory(fs::symlink_status(*rootfs / std::string(name))));
  }
  // Nothing else was left in images_dir.
  CHECK(fixture.DirectoryNames() == std::vector<std::string>{"base"});

  auto got = fixture.images().Get("base");
  REQUIRE(got.ok());
  CHECK(got->archive_sha256() == image->archive_sha256());
  auto list = fixture.images().List();
  REQUIRE(list.ok());
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].name() == "host");
  CHECK((*list)[1].name() == "base");
}

TEST_CASE("images: compressed archives import", "[images]") {
  ImagesFixture fixture;
  struct Case {
    const char* name;
    int (*filter)(struct archive*);
    corral::v1::Compression compression;
  };
  const Case cases[] = {
      {"gz", archive_write_add_filter_gzip, corral::v1::COMPRESSION_GZIP},
      {"xz", archive_write_add_filter_xz, corral::v1::COMPRESSION_XZ},
      {"zst", archive_write_add_filter_zstd, corral::v1::COMPRESSION_ZSTD},
  };
  for (const Case& c : cases) {
    INFO(c.name);
    const std::string archive = ValidRootfs(c.filter);
    auto automatic = fixture.Import(std::string(c.name) + "-auto", archive);
    INFO(automatic.status().ToString());
    REQUIRE(automatic.ok());
    corral::v1::ImportImageMetadata metadata;
    metadata.set_name(std::string(c.name) + "-named");
    metadata.set_compression(c.compression);
    auto named = fixture.images().Import(metadata, ChunksOf(archive, 64 << 10));
    INFO(named.status().ToString());
    CHECK(named.ok());
    // Naming the wrong compression fails.
    metadata.set_name(std::string(c.name) + "-wrong");
    metadata.set_compression(corral::v1::COMPRESSION_NONE);
    auto wrong = fixture.images().Import(metadata, ChunksOf(archive, 64 << 10));
    CHECK(wrong.status().code() == absl::StatusCode::kInvalidArgument);
  }
  CHECK(fixture.images().List()->size() == 7);
}

TEST_CASE("images: duplicate names, replace and delete", "[images]") {
  ImagesFixture fixture;
  REQUIRE(fixture.Import("base", ValidRootfs()).ok());

  SECTION("duplicate") {
    auto again = fixture.Import("base", ValidRootfs());
    CHECK(again.status().code() == absl::StatusCode::kAlreadyExists);
    CHECK(fixture.DirectoryNames() == std::vector<std::string>{"base"});
  }
  SECTION("replace") {
    TarBuilder tar;
    tar.File("new-file", "v2");
    auto replaced = fixture.Import("base", tar.Finish(), {}, true);
    INFO(replaced.status().ToString());
    REQUIRE(replaced.ok());
    const fs::path rootfs = *fixture.images().RootfsDir("base");
    CHECK(ReadFile(rootfs / "new-file") == "v2");
    CHECK_FALSE(fs::exists(rootfs / "etc/hostname"));
    CHECK(fixture.DirectoryNames() == std::vector<std::string>{"base"});
    CHECK(fixture.images().Get("base")->entries() == 1);
  }
  SECTION("replace and delete are refused while a sandbox uses it") {
    REQUIRE(fixture.store().InsertSandbox(SandboxUsing("base", 1)).ok());
    CHECK(fixture.images().Get("base")->sandboxes() == 1);
    auto replaced = fixture.Import("base", ValidRootfs(), {}, true);
    CHECK(replaced.status().code() == absl::StatusCode::kFailedPrecondition);
    absl::Status deleted = fixture.images().Delete("base");
    CHECK(deleted.code() == absl::StatusCode::kFailedPrecondition);
    CHECK_THAT(std::string(deleted.message()), Catch::Contains("used by 1"));
    CHECK(fs::exists(fixture.images_dir() / "base/rootfs/etc/hostname"));
    REQUIRE(fixture.store().DeleteSandbox(SandboxUsing("base", 1).id).ok());
    CHECK(fixture.images().Delete("base").ok());
  }
  SECTION("delete") {
    REQUIRE(fixture.images().Delete("base").ok());
    CHECK(fixture.images().Get("base").status().code() ==
          absl::StatusCode::kNotFound);
    CHECK(fixture.images().Delete("base").code() ==
          absl::StatusCode::kNotFound);
    CHECK(fixture.DirectoryNames().empty());
    // The name is free again.
    CHECK(fixture.Import("base", ValidRootfs()).ok());
  }
}

TEST_CASE("images: reopening cleans leftovers", "[images]") {
  ImagesFixture fixture;
  REQUIRE(fixture.Import("kept", ValidRootfs()).ok());
  fs::create_directories(fixture.images_dir() / ".import-abc123/rootfs/x");
  fs::create_directories(fixture.images_dir() / ".trash-zzz/rootfs");
  // Published, but never recorded (the daemon died in between).
  fs::create_directories(fixture.images_dir() / "orphan/rootfs");
  fixture.Reopen();
  CHECK(fixture.DirectoryNames() == std::vector<std::string>{"kept"});
  CHECK(fixture.images().Get("kept").ok());
}

TEST_CASE("images: bad metadata", "[images]") {
  ImagesFixture fixture;
  CHECK(fixture.Import("Bad/Name", ValidRootfs()).status().code() ==
        absl::StatusCode::kInvalidArgument);
  corral::v1::ImportImageMetadata metadata;
  metadata.set_name("oci");
  // A rootfs tar is no OCI archive.
  metadata.set_source(corral::v1::IMAGE_SOURCE_OCI_ARCHIVE);
  auto not_oci =
      fixture.images().Import(metadata, ChunksOf(ValidRootfs(), 64 << 10));
  CHECK(not_oci.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(not_oci.status().message()),
             Catch::Contains("no OCI image layout"));
  metadata.set_source(corral::v1::IMAGE_SOURCE_ROOTFS_TAR);
  (*metadata.mutable_labels())["bad key!"] = "x";
  CHECK(fixture.images()
            .Import(metadata, ChunksOf(ValidRootfs(), 64 << 10))
            .status()
            .code() == absl::StatusCode::kInvalidArgument);
  CHECK(fixture.DirectoryNames().empty());
}

TEST_CASE("images: the reader's error aborts the import", "[images]") {
  ImagesFixture fixture;
  const std::string archive = ValidRootfs();
  int calls = 0;
  ChunkReader reader = [&]() -> absl::StatusOr<std::optional<std::string>> {
    if (++calls == 1) return archive.substr(0, 1024);
    return absl::CancelledError("client went away");
  };
  corral::v1::ImportImageMetadata metadata;
  metadata.set_name("cancelled");
  auto image = fixture.images().Import(metadata, reader);
  CHECK(image.status().code() == absl::StatusCode::kCancelled);
  CHECK(fixture.DirectoryNames().empty());
  CHECK(fixture.store().GetImage("cancelled").status().code() ==
        absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace corral::daemon
