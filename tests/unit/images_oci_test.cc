// Tests of OCI image layout and `docker save` imports into the image store:
// layers applied in order with whiteouts, opaque directories and type
// changes; the image chosen from an index; blobs checked against their
// digests and sizes; unknown media types and ambiguous archives refused with
// nothing published.
#include <sys/stat.h>

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
using testing::Sha256Of;
using testing::TarBuilder;

std::string ReadFile(const fs::path& path) {
  std::ifstream file(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(file), {});
}

bool Exists(const fs::path& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0;
}

// Checks a refused import: `code`, a message containing `text`, and nothing
// published or left behind.
void ExpectRefused(ImagesFixture& fixture,
                   const absl::StatusOr<corral::v1::Image>& image,
                   const std::string& text,
                   absl::StatusCode code = absl::StatusCode::kInvalidArgument) {
  INFO(image.status().ToString());
  REQUIRE_FALSE(image.ok());
  CHECK(image.status().code() == code);
  CHECK_THAT(std::string(image.status().message()), Catch::Contains(text));
  CHECK(fixture.DirectoryNames().empty());
  CHECK(fixture.store().ListImages()->empty());
}

// Three layers: plain tar, gzip, zstd.
std::vector<std::pair<std::string, std::string>> WhiteoutLayers() {
  TarBuilder one;
  one.Dir("etc")
      .File("etc/hostname", "one\n")
      .File("etc/gone", "hidden by layer 2\n")
      .Dir("opt")
      .File("opt/a", "a")
      .Dir("opt/sub")
      .File("opt/sub/c", "c")
      .Dir("var")
      .File("var/thing", "a file in layer 1")
      .Dir("srv")
      .File("srv/x", "x")
      .File("usr/lib/deep/file", "implicit parents")
      .Symlink("bin", "usr/bin")
      .Dir("usr/bin")
      .File("usr/bin/tool", "#!tool\n", 04755);
  TarBuilder two(archive_write_add_filter_gzip);
  two.Dir("etc")
      .File("etc/.wh.gone", "")
      .File("etc/hostname", "two\n")
      .Dir("opt")
      .File("opt/.wh..wh..opq", "")
      .File("opt/new", "new in layer 2")
      .Dir("var/thing")
      .File("var/thing/inner", "a directory now")
      .File(".wh.usr", "")
      .File("usr/fresh", "the new /usr");
  TarBuilder three(archive_write_add_filter_zstd);
  // Within one layer a whiteout hides only lower layers' files.
  three.File("keep", "same layer")
      .File(".wh.keep", "")
      .File("srv", "a file where layer 1 had a directory")
      .Hardlink("etc/hostname.link", "etc/hostname")
      .File("opt/.wh..wh..aufs", "aufs metadata, ignored");
  return {{testing::kOciTar, one.Finish()},
          {testing::kOciTarGzip, two.Finish()},
          {testing::kOciTarZstd, three.Finish()}};
}

TEST_CASE("oci: layers apply in order with whiteouts", "[images][oci]") {
  ImagesFixture fixture;
  OciLayout layout;
  const Json manifest = layout.AddImage(WhiteoutLayers());
  const std::string archive = layout.Pack(OciLayout::Index({manifest}));
  auto image = ImportArchive(fixture, "layered", archive);
  INFO(image.status().ToString());
  REQUIRE(image.ok());
  CHECK(image->source() == corral::v1::IMAGE_SOURCE_OCI_ARCHIVE);
  CHECK(image->archive_sha256() == Sha256Of(archive));
  CHECK(fixture.images().Get("layered")->source() ==
        corral::v1::IMAGE_SOURCE_OCI_ARCHIVE);

  const fs::path rootfs = *fixture.images().RootfsDir("layered");
  // A later layer's file wins; the whiteout removed a lower file.
  CHECK(ReadFile(rootfs / "etc/hostname") == "two\n");
  CHECK_FALSE(Exists(rootfs / "etc/gone"));
  // The opaque directory lost what layer 1 put there, kept its own.
  CHECK_FALSE(Exists(rootfs / "opt/a"));
  CHECK_FALSE(Exists(rootfs / "opt/sub"));
  CHECK(ReadFile(rootfs / "opt/new") == "new in layer 2");
  // A file replaced by a directory, and a directory by a file.
  CHECK(fs::is_directory(fs::symlink_status(rootfs / "var/thing")));
  CHECK(ReadFile(rootfs / "var/thing/inner") == "a directory now");
  CHECK(fs::is_regular_file(fs::symlink_status(rootfs / "srv")));
  CHECK(ReadFile(rootfs / "srv") == "a file where layer 1 had a directory");
  // A whiteout of a whole tree (whose parents were implied), then new
  // content in the same layer.
  CHECK_FALSE(Exists(rootfs / "usr/lib"));
  CHECK_FALSE(Exists(rootfs / "usr/bin"));
  CHECK(ReadFile(rootfs / "usr/fresh") == "the new /usr");
  // The symlink of layer 1 stays (dangling now), as a link.
  CHECK(fs::read_symlink(rootfs / "bin") == "usr/bin");
  // A whiteout of the same layer does not hide that layer's file.
  CHECK(ReadFile(rootfs / "keep") == "same layer");
  // A hard link to a lower layer's file.
  struct stat a {
  }, b{};
  REQUIRE(::stat((rootfs / "etc/hostname").c_str(), &a) == 0);
  REQUIRE(::stat((rootfs / "etc/hostname.link").c_str(), &b) == 0);
  CHECK(a.st_ino == b.st_ino);
  // No whiteout file appears anywhere.
  for (const auto& entry : fs::recursive_directory_iterator(rootfs)) {
    INFO(entry.path());
    CHECK(entry.path().filename().string().rfind(".wh.", 0) != 0);
  }
  // The mount points exist.
  for (std::string_view name : ImageStore::kMountPoints) {
    CHECK(fs::is_directory(rootfs / std::string(name)));
  }
  // The config is kept beside the rootfs; no spooled blob is.
  const Json config =
      Json::parse(ReadFile(fixture.images_dir() / "layered" / "config.json"));
  CHECK(config["config"]["Env"][1] == "CORRAL=oci");
  CHECK(config["config"]["WorkingDir"] == "/srv");
  CHECK_FALSE(Exists(fixture.images_dir() / "layered" / "spool"));
  auto run = fixture.images().RunConfig("layered");
  REQUIRE(run.ok());
  CHECK(run->env ==
        std::vector<std::string>{"PATH=/usr/bin:/bin", "CORRAL=oci"});
  CHECK(run->entrypoint == std::vector<std::string>{"/bin/sh", "-c"});
  CHECK(run->cmd == std::vector<std::string>{"echo hi"});
  CHECK(run->working_dir == "/srv");
  CHECK(run->user == "1000:1000");
  CHECK(fixture.images().RunConfig("host")->env.empty());
  CHECK(fixture.images().RunConfig("nothing").status().code() ==
        absl::StatusCode::kNotFound);
  // Entries of the final tree: etc, etc/hostname, etc/hostname.link, opt,
  // opt/new, var, var/thing, var/thing/inner, srv, bin, usr/fresh, keep.
  CHECK(image->entries() == 12);
  // Their bytes: hostname, opt/new, inner, srv, usr/fresh, keep (the hard
  // link adds none).
  CHECK(image->size_bytes() == 4 + 14 + 15 + 36 + 12 + 10);
}

TEST_CASE("oci: a gzip archive of a layout tarred with ./ names",
          "[images][oci]") {
  ImagesFixture fixture;
  OciLayout layout;
  TarBuilder layer(archive_write_add_filter_gzip);
  layer.Dir("./").Dir("./bin").File("./bin/sh", "#!sh\n", 0755);
  const Json manifest =
      layout.AddImage({{testing::kOciTarGzip, layer.Finish()}});
  // The blobs come last here, as in `tar -C layout -c .` of some layouts.
  const std::string archive =
      layout.Pack(OciLayout::Index({manifest}), archive_write_add_filter_gzip,
                  "./", /*blobs_first=*/false);
  auto image = ImportArchive(fixture, "gz", archive);
  INFO(image.status().ToString());
  REQUIRE(image.ok());
  CHECK(image->source() == corral::v1::IMAGE_SOURCE_OCI_ARCHIVE);
  const fs::path rootfs = *fixture.images().RootfsDir("gz");
  CHECK(ReadFile(rootfs / "bin/sh") == "#!sh\n");
  CHECK(image->entries() == 2);
}

TEST_CASE("oci: layers that end without padding or end marker",
          "[images][oci]") {
  // umoci writes layers that stop right after the last entry's data.
  TarBuilder base;
  base.File("etc/group", "root:x:0:\n");
  TarBuilder motd;
  motd.File("etc/motd", "hello\n");
  TarBuilder whiteout;
  whiteout.File("etc/.wh.group", "");
  const std::string cut_motd = motd.Finish().substr(0, 512 + 6);
  const std::string cut_whiteout = whiteout.Finish().substr(0, 512);
  {
    ImagesFixture fixture;
    OciLayout layout;
    const Json manifest = layout.AddImage({{testing::kOciTar, base.Finish()},
                                           {testing::kOciTar, cut_motd},
                                           {testing::kOciTar, cut_whiteout}});
    auto image = ImportArchive(fixture, "cut",
                               layout.Pack(OciLayout::Index({manifest})));
    INFO(image.status().ToString());
    REQUIRE(image.ok());
    const fs::path rootfs = *fixture.images().RootfsDir("cut");
    CHECK(ReadFile(rootfs / "etc/motd") == "hello\n");
    CHECK_FALSE(Exists(rootfs / "etc/group"));
  }
  // Data cut short is still refused.
  ImagesFixture fixture;
  OciLayout layout;
  const Json manifest =
      layout.AddImage({{testing::kOciTar, cut_motd.substr(0, 512 + 3)}});
  ExpectRefused(fixture,
                ImportArchive(fixture, "short",
                              layout.Pack(OciLayout::Index({manifest}))),
                "etc/motd");
}

TEST_CASE("oci: a docker save archive (legacy layout)", "[images][oci]") {
  ImagesFixture fixture;
  TarBuilder one;
  one.Dir("etc").File("etc/os-release", "ID=test\n").File("etc/old", "old");
  TarBuilder two;
  two.File("etc/.wh.old", "").File("etc/motd", "hello\n");
  const std::string layer1 = one.Finish();
  const std::string layer2 = two.Finish();
  const std::string id1(64, '1');
  const std::string id2(64, '2');
  const std::string id3(64, '3');
  Json config = OciLayout::Config(3, std::string(HostArchitecture()));
  // Layer 3 repeats layer 1: docker save stores it once, with a symlink.
  config["rootfs"]["diff_ids"] = {"sha256:" + Sha256Of(layer1),
                                  "sha256:" + Sha256Of(layer2),
                                  "sha256:" + Sha256Of(layer1)};
  const std::string config_text = config.dump();
  const std::string config_name = Sha256Of(config_text) + ".json";
  const Json manifest = Json::array(
      {{{"Config", config_name},
        {"RepoTags", {"example/test:latest"}},
        {"Layers",
         {id1 + "/layer.tar", id2 + "/layer.tar", id3 + "/layer.tar"}}}});
  TarBuilder tar;
  tar.Dir(id1)
      .File(id1 + "/VERSION", "1.0")
      .File(id1 + "/layer.tar", layer1)
      .Dir(id2)
      .File(id2 + "/layer.tar", layer2)
      .Dir(id3)
      .Symlink(id3 + "/layer.tar", "../" + id1 + "/layer.tar")
      .File(config_name, config_text)
      .File("manifest.json", manifest.dump())
      .File("repositories", R"({"example/test":{"latest":"x"}})");
  auto image = ImportArchive(fixture, "saved", tar.Finish());
  INFO(image.status().ToString());
  REQUIRE(image.ok());
  CHECK(image->source() == corral::v1::IMAGE_SOURCE_OCI_ARCHIVE);
  const fs::path rootfs = *fixture.images().RootfsDir("saved");
  CHECK(ReadFile(rootfs / "etc/os-release") == "ID=test\n");
  CHECK(ReadFile(rootfs / "etc/motd") == "hello\n");
  // Layer 3 (layer 1 again) brought the whited-out file back.
  CHECK(ReadFile(rootfs / "etc/old") == "old");
  CHECK(Json::parse(ReadFile(fixture.images_dir() /
                             "saved/config.json"))["config"]["User"] ==
        "1000:1000");
}

TEST_CASE("oci: a docker save archive of the newer, OCI-blob layout",
          "[images][oci]") {
  // Docker 25 and later: blobs/sha256/..., index.json and oci-layout, plus
  // a manifest.json naming the same blobs.
  TarBuilder one, two;
  one.Dir("etc").File("etc/a", "a").File("etc/b", "b");
  two.File("etc/.wh.a", "").File("etc/c", "c");
  const std::string layer1 = one.Finish();
  const std::string layer2 = two.Finish();
  OciLayout layout;
  const Json l1 = layout.AddBlob(testing::kOciTar, layer1);
  const Json l2 = layout.AddBlob(testing::kOciTar, layer2);
  Json config = OciLayout::Config(2, std::string(HostArchitecture()));
  config["rootfs"]["diff_ids"] = {l1["digest"], l2["digest"]};
  const Json config_descriptor =
      layout.AddBlob(testing::kOciConfigType, config.dump());
  const Json manifest = layout.AddBlob(
      testing::kOciManifestType, Json{{"schemaVersion", 2},
                                      {"mediaType", testing::kOciManifestType},
                                      {"config", config_descriptor},
                                      {"layers", {l1, l2}}}
                                     .dump());
  const auto blob_path = [](const Json& descriptor) {
    return "blobs/sha256/" + descriptor["digest"].get<std::string>().substr(7);
  };
  const Json docker_manifest =
      Json::array({{{"Config", blob_path(config_descriptor)},
                    {"RepoTags", {"example/new:1"}},
                    {"Layers", {blob_path(l1), blob_path(l2)}}}});
  for (const bool with_layout : {true, false}) {
    INFO("with oci-layout: " << with_layout);
    ImagesFixture fixture;
    TarBuilder tar;
    tar.Dir("blobs").Dir("blobs/sha256");
    for (const auto& [hex, data] : layout.blobs()) {
      tar.File("blobs/sha256/" + hex, data);
    }
    if (with_layout) {
      Json entry = manifest;
      entry["annotations"] = {
          {"io.containerd.image.name", "docker.io/example/new:1"},
          {"org.opencontainers.image.ref.name", "1"}};
      tar.File("index.json", OciLayout::Index({entry}).dump())
          .File("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
    }
    tar.File("manifest.json", docker_manifest.dump());
    auto image = ImportArchive(fixture, "newer", tar.Finish());
    INFO(image.status().ToString());
    REQUIRE(image.ok());
    CHECK(image->source() == corral::v1::IMAGE_SOURCE_OCI_ARCHIVE);
    const fs::path rootfs = *fixture.images().RootfsDir("newer");
    CHECK_FALSE(Exists(rootfs / "etc/a"));
    CHECK(ReadFile(rootfs / "etc/b") == "b");
    CHECK(ReadFile(rootfs / "etc/c") == "c");
  }
}

TEST_CASE("oci: a docker save layer that differs from its diff_id",
          "[images][oci]") {
  ImagesFixture fixture;
  TarBuilder one;
  one.File("file", "real");
  const std::string layer = one.Finish();
  TarBuilder other;
  other.File("file", "swapped");
  Json config = OciLayout::Config(1, std::string(HostArchitecture()));
  config["rootfs"]["diff_ids"] = {"sha256:" + Sha256Of(layer)};
  const std::string config_text = config.dump();
  const std::string config_name = Sha256Of(config_text) + ".json";
  TarBuilder tar;
  tar.File(std::string(64, 'f') + "/layer.tar", other.Finish())
      .File(config_name, config_text)
      .File("manifest.json",
            Json::array({{{"Config", config_name},
                          {"Layers", {std::string(64, 'f') + "/layer.tar"}}}})
                .dump());
  ExpectRefused(fixture, ImportArchive(fixture, "saved", tar.Finish()),
                "digest mismatch");
}

TEST_CASE("oci: the host's platform is chosen through a nested index",
          "[images][oci]") {
  ImagesFixture fixture;
  OciLayout layout;
  const std::string host(HostArchitecture());
  const std::string other = host == "arm64" ? "amd64" : "arm64";
  TarBuilder mine, theirs;
  mine.File("arch", host);
  theirs.File("arch", other);
  Json host_manifest = layout.AddImage({{testing::kOciTar, mine.Finish()}});
  host_manifest["platform"] = {{"os", "linux"}, {"architecture", host}};
  Json other_manifest =
      layout.AddImage({{testing::kOciTar, theirs.Finish()}}, other);
  other_manifest["platform"] = {{"os", "linux"}, {"architecture", other}};
  // A BuildKit attestation rides along; it is no image.
  Json attestation = layout.AddBlob(testing::kOciManifestType, "{}");
  attestation["platform"] = {{"os", "unknown"}, {"architecture", "unknown"}};
  attestation["annotations"] = {
      {"vnd.docker.reference.type", "attestation-manifest"}};
  Json nested = layout.AddBlob(
      testing::kOciIndexType,
      OciLayout::Index({other_manifest, host_manifest, attestation}).dump());
  nested["annotations"] = {{"org.opencontainers.image.ref.name", "latest"}};
  auto image =
      ImportArchive(fixture, "multi", layout.Pack(OciLayout::Index({nested})));
  INFO(image.status().ToString());
  REQUIRE(image.ok());
  CHECK(ReadFile(*fixture.images().RootfsDir("multi") / "arch") == host);

  // Only another platform: refused, naming what there is.
  ImagesFixture empty;
  OciLayout foreign;
  TarBuilder layer;
  layer.File("arch", other);
  Json only = foreign.AddImage({{testing::kOciTar, layer.Finish()}}, other);
  only["platform"] = {{"os", "linux"}, {"architecture", other}};
  ExpectRefused(
      empty,
      ImportArchive(empty, "foreign", foreign.Pack(OciLayout::Index({only}))),
      "linux/" + other, absl::StatusCode::kFailedPrecondition);
}

TEST_CASE("oci: several images in one archive are refused by name",
          "[images][oci]") {
  ImagesFixture fixture;
  OciLayout layout;
  TarBuilder a, b;
  a.File("which", "a");
  b.File("which", "b");
  Json first = layout.AddImage({{testing::kOciTar, a.Finish()}});
  first["annotations"] = {{"org.opencontainers.image.ref.name", "first"}};
  Json second = layout.AddImage({{testing::kOciTar, b.Finish()}});
  second["annotations"] = {{"org.opencontainers.image.ref.name", "second"}};
  auto image = ImportArchive(fixture, "two",
                             layout.Pack(OciLayout::Index({first, second})));
  ExpectRefused(fixture, image, "holds 2 images: first, second");
}

TEST_CASE("oci: blobs are checked against digest and size", "[images][oci]") {
  ImagesFixture fixture;
  TarBuilder good;
  good.File("file", "good");
  const std::string layer = good.Finish();

  SECTION("a layer whose bytes differ from its digest") {
    OciLayout layout;
    const Json manifest = layout.AddImage({{testing::kOciTar, layer}});
    // Same size, other bytes, under the layer's digest.
    std::string& blob = layout.blobs()[Sha256Of(layer)];
    blob[blob.size() / 2] ^= 1;
    ExpectRefused(fixture,
                  ImportArchive(fixture, "bad",
                                layout.Pack(OciLayout::Index({manifest}))),
                  "digest mismatch");
  }
  SECTION("a layer of another size than its descriptor says") {
    OciLayout layout;
    Json manifest_descriptor = layout.AddImage({{testing::kOciTar, layer}});
    Json manifest = Json::parse(layout.blobs().at(
        manifest_descriptor["digest"].get<std::string>().substr(7)));
    manifest["layers"][0]["size"] = layer.size() + 1;
    const Json descriptor =
        layout.AddBlob(testing::kOciManifestType, manifest.dump());
    ExpectRefused(fixture,
                  ImportArchive(fixture, "bad",
                                layout.Pack(OciLayout::Index({descriptor}))),
                  "its descriptor says");
  }
  SECTION("a manifest changed after its digest was taken") {
    OciLayout layout;
    const Json descriptor = layout.AddImage({{testing::kOciTar, layer}});
    std::string& manifest =
        layout.blobs()[descriptor["digest"].get<std::string>().substr(7)];
    manifest.replace(manifest.find("schemaVersion"), 13, "schemaVersiom");
    ExpectRefused(fixture,
                  ImportArchive(fixture, "bad",
                                layout.Pack(OciLayout::Index({descriptor}))),
                  "digest mismatch");
  }
  SECTION("a missing layer blob") {
    OciLayout layout;
    const Json manifest = layout.AddImage({{testing::kOciTar, layer}});
    layout.blobs().erase(Sha256Of(layer));
    ExpectRefused(fixture,
                  ImportArchive(fixture, "bad",
                                layout.Pack(OciLayout::Index({manifest}))),
                  "is missing from the archive");
  }
  SECTION("a digest of another algorithm") {
    OciLayout layout;
    Json manifest = layout.AddImage({{testing::kOciTar, layer}});
    manifest["digest"] = "sha512:" + std::string(128, 'a');
    ExpectRefused(fixture,
                  ImportArchive(fixture, "bad",
                                layout.Pack(OciLayout::Index({manifest}))),
                  "only sha256");
  }
}

TEST_CASE("oci: unknown media types are refused and listed", "[images][oci]") {
  ImagesFixture fixture;
  TarBuilder layer;
  layer.File("file", "x");
  OciLayout layout;
  const Json descriptor = layout.AddImage(
      {{"application/vnd.example.layer.v1.tar+lz4", layer.Finish()}});
  ExpectRefused(fixture,
                ImportArchive(fixture, "odd",
                              layout.Pack(OciLayout::Index({descriptor}))),
                "unknown media types: layer "
                "application/vnd.example.layer.v1.tar+lz4");

  OciLayout artifact;
  Json entry = artifact.AddBlob("application/vnd.example.artifact+json", "{}");
  ExpectRefused(
      fixture,
      ImportArchive(fixture, "odd", artifact.Pack(OciLayout::Index({entry}))),
      "application/vnd.example.artifact+json");
}

TEST_CASE("oci: the source can be named, and a rootfs tar is told apart",
          "[images][oci]") {
  ImagesFixture fixture;
  OciLayout layout;
  TarBuilder layer;
  layer.File("hello", "world");
  const std::string archive = layout.Pack(OciLayout::Index(
      {layout.AddImage({{testing::kOciTar, layer.Finish()}})}));
  auto named = ImportArchive(fixture, "named", archive, {},
                             corral::v1::IMAGE_SOURCE_OCI_ARCHIVE);
  INFO(named.status().ToString());
  REQUIRE(named.ok());
  CHECK(named->source() == corral::v1::IMAGE_SOURCE_OCI_ARCHIVE);
  CHECK(ReadFile(*fixture.images().RootfsDir("named") / "hello") == "world");

  // Named a rootfs tar, the same archive is unpacked as it is.
  auto as_rootfs = ImportArchive(fixture, "raw", archive, {},
                                 corral::v1::IMAGE_SOURCE_ROOTFS_TAR);
  REQUIRE(as_rootfs.ok());
  CHECK(as_rootfs->source() == corral::v1::IMAGE_SOURCE_ROOTFS_TAR);
  CHECK(Exists(*fixture.images().RootfsDir("raw") / "oci-layout"));

  // Detected: a rootfs tar whose root entry comes first.
  auto rootfs = ImportArchive(fixture, "plain", testing::ValidRootfs());
  REQUIRE(rootfs.ok());
  CHECK(rootfs->source() == corral::v1::IMAGE_SOURCE_ROOTFS_TAR);
  CHECK(ReadFile(*fixture.images().RootfsDir("plain") / "etc/hostname") ==
        "corral\n");
  auto run = fixture.images().RunConfig("plain");
  REQUIRE(run.ok());
  CHECK(run->cmd.empty());
  CHECK(run->env.empty());
}

}  // namespace
}  // namespace corral::daemon
