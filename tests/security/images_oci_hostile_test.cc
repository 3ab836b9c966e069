// Hostile OCI image layouts and docker save archives: every rule of the
// rootfs extractor holds across layers (a symlink one layer made is never
// written through by a later one, whiteouts never remove anything outside
// the rootfs, limits count all layers together), hostile member names of
// the archive itself are refused, and a refused import leaves nothing
// behind.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "tests/unit/images_oci_test_util.h"

namespace corral::daemon {
namespace {

namespace fs = std::filesystem;

using testing::ImagesFixture;
using testing::ImportArchive;
using testing::Json;
using testing::OciLayout;
using testing::TarBuilder;

// An OCI archive of `layers` (plain tars, bottom first).
std::string Image(const std::vector<std::string>& layers) {
  OciLayout layout;
  std::vector<std::pair<std::string, std::string>> typed;
  for (const std::string& layer : layers) {
    typed.emplace_back(testing::kOciTar, layer);
  }
  return layout.Pack(OciLayout::Index({layout.AddImage(typed)}));
}

void ExpectRejected(ImagesFixture& fixture, const std::string& archive,
                    const std::string& rule, ImportLimits limits = {}) {
  auto image = ImportArchive(fixture, "evil", archive, limits);
  INFO(image.status().ToString());
  REQUIRE_FALSE(image.ok());
  CHECK(image.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(image.status().message()), Catch::Contains(rule));
  CHECK(fixture.DirectoryNames().empty());
  CHECK(fixture.store().GetImage("evil").status().code() ==
        absl::StatusCode::kNotFound);
}

// A directory outside the image store, removed at the end.
class Outside {
 public:
  explicit Outside(const char* what)
      : path_(fs::temp_directory_path() /
              absl::StrCat("corral-oci-escape-", what, "-", ::getpid())) {
    fs::remove_all(path_);
    fs::create_directories(path_);
    std::ofstream(path_ / "victim") << "keep me";
  }
  ~Outside() {
    std::error_code error;
    fs::remove_all(path_, error);
  }
  const fs::path& path() const { return path_; }
  // Only the victim file, unchanged.
  bool Untouched() const {
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(path_)) {
      names.push_back(entry.path().filename().string());
    }
    std::ifstream victim(path_ / "victim");
    std::string content((std::istreambuf_iterator<char>(victim)), {});
    return names == std::vector<std::string>{"victim"} && content == "keep me";
  }

 private:
  fs::path path_;
};

TEST_CASE("oci hostile: writing through a symlink of a lower layer",
          "[images][oci][security]") {
  ImagesFixture fixture;
  Outside outside("symlink");
  TarBuilder one;
  one.Symlink("link", outside.path().string())
      .Symlink("up", "../../../../../../../..");
  const std::string lower = one.Finish();

  TarBuilder absolute;
  absolute.File("link/payload", "pwned");
  ExpectRejected(fixture, Image({lower, absolute.Finish()}), "symlink");

  TarBuilder relative;
  relative.File("up" + outside.path().string() + "/payload", "pwned");
  ExpectRejected(fixture, Image({lower, relative.Finish()}), "symlink");

  // A directory turned into a symlink by layer 2, written into by layer 3.
  TarBuilder dir;
  dir.Dir("d").File("d/file", "x");
  TarBuilder swap;
  swap.Symlink("d", outside.path().string());
  TarBuilder write;
  write.File("d/payload", "pwned");
  ExpectRejected(fixture, Image({dir.Finish(), swap.Finish(), write.Finish()}),
                 "symlink");

  // A hard link through the symlink to a file outside.
  TarBuilder link;
  link.Hardlink("stolen", "link/victim");
  ExpectRejected(fixture, Image({lower, link.Finish()}), "hard link target");
  CHECK(outside.Untouched());
}

TEST_CASE("oci hostile: whiteouts never remove anything outside",
          "[images][oci][security]") {
  ImagesFixture fixture;
  Outside outside("whiteout");
  TarBuilder one;
  one.Symlink("link", outside.path().string()).File("plain", "x");
  const std::string lower_link = one.Finish();
  TarBuilder two;
  // Through the symlink: nothing of a lower layer is there to hide.
  two.File("link/.wh.victim", "");
  auto image =
      ImportArchive(fixture, "kept", Image({lower_link, two.Finish()}));
  INFO(image.status().ToString());
  REQUIRE(image.ok());
  CHECK(outside.Untouched());
  const fs::path rootfs = *fixture.images().RootfsDir("kept");
  CHECK(fs::is_symlink(rootfs / "link"));

  // An opaque marker under the symlink makes "link" an empty directory of
  // this layer; the directory the symlink named is not emptied.
  TarBuilder opaque_link;
  opaque_link.File("link/.wh..wh..opq", "");
  image = ImportArchive(fixture, "opaquelink",
                        Image({lower_link, opaque_link.Finish()}));
  INFO(image.status().ToString());
  REQUIRE(image.ok());
  CHECK(outside.Untouched());
  const fs::path opaque_link_root = *fixture.images().RootfsDir("opaquelink");
  CHECK(fs::is_directory(fs::symlink_status(opaque_link_root / "link")));
  CHECK(fs::is_empty(opaque_link_root / "link"));

  // Whiting out the symlink removes the link, not its target.
  TarBuilder three;
  three.File(".wh.link", "");
  TarBuilder base;
  base.Symlink("link", outside.path().string());
  image =
      ImportArchive(fixture, "gone", Image({base.Finish(), three.Finish()}));
  REQUIRE(image.ok());
  CHECK_FALSE(fs::exists(
      fs::symlink_status(*fixture.images().RootfsDir("gone") / "link")));
  CHECK(outside.Untouched());

  // An opaque root clears lower layers, never the image store around it.
  TarBuilder opaque;
  opaque.File(".wh..wh..opq", "").File("only", "this");
  TarBuilder lower;
  lower.File("before", "x");
  image = ImportArchive(fixture, "opaque",
                        Image({lower.Finish(), opaque.Finish()}));
  REQUIRE(image.ok());
  const fs::path opaque_root = *fixture.images().RootfsDir("opaque");
  CHECK_FALSE(fs::exists(opaque_root / "before"));
  CHECK(fs::exists(opaque_root / "only"));
  CHECK(fixture.images().Get("kept").ok());
  CHECK(fs::is_directory(*fixture.images().RootfsDir("kept")));
}

TEST_CASE("oci hostile: bad whiteout names and paths",
          "[images][oci][security]") {
  ImagesFixture fixture;
  TarBuilder base;
  base.File("file", "x");
  const std::string lower = base.Finish();

  TarBuilder dotdot;
  dotdot.Dir("etc").File("etc/.wh...", "");
  ExpectRejected(fixture, Image({lower, dotdot.Finish()}), "whiteout names no");

  TarBuilder escape;
  escape.File("../.wh.file", "");
  ExpectRejected(fixture, Image({lower, escape.Finish()}), "\"..\" component");

  TarBuilder absolute;
  absolute.File("/etc/.wh.passwd", "");
  ExpectRejected(fixture, Image({lower, absolute.Finish()}), "absolute path");
  CHECK(fs::exists("/etc/passwd"));
}

TEST_CASE("oci hostile: the extractor's neutralizing rules hold in layers",
          "[images][oci][security]") {
  ImagesFixture fixture;
  TarBuilder one;
  one.Owner(1000, 1000)
      .File("bin/su", "setuid", 04755)
      .Special("dev/mem", AE_IFCHR);
  TarBuilder two;
  two.File("bin/other", "setgid", 02755).Special("fifo", AE_IFIFO);
  auto image =
      ImportArchive(fixture, "neutral", Image({one.Finish(), two.Finish()}));
  INFO(image.status().ToString());
  REQUIRE(image.ok());
  const fs::path rootfs = *fixture.images().RootfsDir("neutral");
  struct stat st {};
  REQUIRE(::stat((rootfs / "bin/su").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0755);
  CHECK(st.st_uid == ::geteuid());
  REQUIRE(::stat((rootfs / "bin/other").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0755);
  CHECK_FALSE(fs::exists(fs::symlink_status(rootfs / "dev/mem")));
  CHECK_FALSE(fs::exists(fs::symlink_status(rootfs / "fifo")));
}

TEST_CASE("oci hostile: limits count all layers together",
          "[images][oci][security]") {
  ImagesFixture fixture;
  ImportLimits limits;
  limits.max_entries = 100;
  limits.max_bytes = 1 << 20;

  // Each layer is within the entry limit, together they are not.
  std::vector<std::string> layers;
  for (int layer = 0; layer < 3; ++layer) {
    TarBuilder tar;
    for (int i = 0; i < 40; ++i) {
      tar.File(absl::StrCat("l", layer, "/f", i), "x");
    }
    layers.push_back(tar.Finish());
  }
  ExpectRejected(fixture, Image(layers), "more than 100 entries", limits);

  // Bytes: two layers rewriting the same 700 KiB file.
  limits.max_entries = 1000;
  TarBuilder big1, big2;
  big1.Zeros("big", 700 << 10);
  big2.Zeros("big", 700 << 10);
  ExpectRejected(fixture, Image({big1.Finish(), big2.Finish()}), "byte limit",
                 limits);

  // A gzip bomb layer: small blob, huge content.
  OciLayout layout;
  TarBuilder bomb(archive_write_add_filter_gzip);
  bomb.Zeros("zeros", 64 << 20);
  const Json manifest =
      layout.AddImage({{testing::kOciTarGzip, bomb.Finish()}});
  ExpectRejected(fixture, layout.Pack(OciLayout::Index({manifest})),
                 "byte limit", limits);
}

TEST_CASE("oci hostile: the archive's own members", "[images][oci][security]") {
  ImagesFixture fixture;
  TarBuilder dotdot;
  dotdot.File("oci-layout", R"({"imageLayoutVersion":"1.0.0"})")
      .File("../index.json", "{}");
  ExpectRejected(fixture, dotdot.Finish(), "\"..\" component");

  TarBuilder absolute;
  absolute.File("index.json", "{}").File("/blobs/sha256/x", "x");
  ExpectRejected(fixture, absolute.Finish(), "absolute path");

  TarBuilder twice;
  twice.File("oci-layout", R"({"imageLayoutVersion":"1.0.0"})")
      .File("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  ExpectRejected(fixture, twice.Finish(), "two members named");

  // A sparse member claiming far more than the byte limit.
  ImportLimits limits;
  limits.max_bytes = 1 << 20;
  TarBuilder sparse;
  sparse.File("oci-layout", R"({"imageLayoutVersion":"1.0.0"})")
      .Sparse("blobs/sha256/" + std::string(64, 'a'), 1ll << 40, 4096, "x");
  ExpectRejected(fixture, sparse.Finish(), "byte limit", limits);

  // Symlinked blobs may not leave the archive.
  TarBuilder layer;
  layer.File("f", "x");
  OciLayout layout;
  const Json manifest = layout.AddImage({{testing::kOciTar, layer.Finish()}});
  const std::string layer_hex = Json::parse(layout.blobs().at(
      manifest["digest"].get<std::string>().substr(7)))["layers"][0]["digest"]
                                    .get<std::string>()
                                    .substr(7);
  layout.blobs().erase(layer_hex);
  TarBuilder escape;
  escape.File("oci-layout", R"({"imageLayoutVersion":"1.0.0"})")
      .File("index.json", OciLayout::Index({manifest}).dump());
  for (const auto& [hex, data] : layout.blobs()) {
    escape.File("blobs/sha256/" + hex, data);
  }
  escape.Symlink("blobs/sha256/" + layer_hex, "/etc/passwd");
  ExpectRejected(fixture, escape.Finish(), "missing from the archive");

  // A JSON document of hostile size.
  TarBuilder huge;
  huge.File("oci-layout", R"({"imageLayoutVersion":"1.0.0"})")
      .Zeros("index.json", 17 << 20);
  ExpectRejected(fixture, huge.Finish(), "larger than");
}

}  // namespace
}  // namespace corral::daemon
