// OCI images made by real tools, imported through the real CLI and daemon
// and run: umoci builds an image layout offline from the busybox rootfs
// (deploy/images/build-busybox.sh) plus layers that add a file, white one
// out and make a directory opaque; skopeo turns it into an oci-archive and
// a docker-archive (docker save format). Each form is imported with
// `corral image import` (the daemon detects the kind) and a command in a
// sandbox of the image shows the layers' result.
#include <stdlib.h>

#include <catch2/catch.hpp>
#include <string>

#include "tests/integration/daemon_harness.h"

namespace corral::testing {
namespace {

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// A temporary directory, removed at the end.
class WorkDir {
 public:
  WorkDir() {
    char pattern[] = "/tmp/corral-oci-it-XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    path_ = pattern;
  }
  ~WorkDir() { Sh("rm -rf '" + path_ + "'"); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

void MustRun(const std::string& command) {
  auto r = Sh(command);
  INFO(command << "\n" << r.out << r.err);
  REQUIRE(r.exit_code == 0);
}

// What the layers leave: /etc/motd added, /etc/group whited out, /opt
// opaque (only c of the last layer), busybox itself from layer 1.
constexpr char kProbe[] =
    "cat /etc/motd; test -e /etc/group && echo group || echo no-group; "
    "ls /opt | tr '\\n' ' '; echo; busybox echo from-busybox";
constexpr char kExpected[] = "hello\nno-group\nc \nfrom-busybox\n";

TEST_CASE("images made by umoci and skopeo import and run",
          "[images][oci][integration]") {
  // deploy/install-deps.sh installs both: a missing tool is a broken setup,
  // not a reason to pass.
  for (const char* tool : {"umoci", "skopeo"}) {
    INFO(tool << " is not installed; run deploy/install-deps.sh");
    REQUIRE(Sh(std::string("command -v ") + tool).exit_code == 0);
  }
  WorkDir work;
  const std::string dir = work.path();
  const std::string busybox =
      std::string(CORRAL_BINARY_DIR) + "/images/busybox.tar";
  MustRun("test -f '" + busybox + "' || bash '" +
          std::string(CORRAL_SOURCE_DIR) +
          "/deploy/images/build-busybox.sh' '" + busybox + "' >/dev/null");
  // Offline: umoci needs no registry.
  MustRun("set -e; cd '" + dir +
          "'; umoci init --layout layout; umoci new --image layout:bb; "
          "umoci raw add-layer --image layout:bb '" +
          busybox +
          "'; mkdir -p add/opt opaque/opt; echo hello > add/motd; "
          "echo a > add/opt/a; echo b > add/opt/b; echo c > opaque/opt/c; "
          "umoci insert --image layout:bb add/motd /etc/motd; "
          "umoci insert --image layout:bb add/opt /opt; "
          "umoci insert --image layout:bb --whiteout /etc/group; "
          "umoci insert --image layout:bb --opaque opaque/opt /opt; "
          "umoci config --image layout:bb --config.env CORRAL_IMAGE=oci "
          "--config.cmd /bin/sh; "
          "skopeo copy --quiet oci:layout:bb oci-archive:bb-oci.tar; "
          "gzip -k bb-oci.tar; "
          "skopeo copy --quiet oci:layout:bb "
          "docker-archive:bb-docker.tar:corral/bb:latest");

  Daemon daemon;
  const struct {
    const char* name;
    std::string source;
  } forms[] = {
      {"from-dir", dir + "/layout"},
      {"from-oci", dir + "/bb-oci.tar"},
      {"from-oci-gz", dir + "/bb-oci.tar.gz"},
      {"from-docker", dir + "/bb-docker.tar"},
  };
  for (const auto& form : forms) {
    INFO(form.name);
    auto imported = daemon.Cli({"image", "import", form.name, form.source});
    INFO(imported.err << daemon.log());
    REQUIRE(imported.exit_code == 0);
    auto inspect = daemon.Cli({"--json", "image", "inspect", form.name});
    REQUIRE(inspect.exit_code == 0);
    CHECK(Contains(inspect.out, "IMAGE_SOURCE_OCI_ARCHIVE"));
    CHECK(Contains(daemon.Cli({"image", "ls"}).out, "oci-archive"));
    auto run = daemon.Cli(
        {"run", "--image", form.name, "--", "busybox", "sh", "-c", kProbe});
    INFO(run.err << daemon.log());
    REQUIRE(run.exit_code == 0);
    CHECK(run.out == kExpected);
    // The image config is kept beside the rootfs.
    auto config = Sh("cat '" + daemon.state_dir() + "/images/" + form.name +
                     "/config.json'");
    CHECK(Contains(config.out, "CORRAL_IMAGE=oci"));
  }

  // A rootfs tar is still a rootfs tar.
  auto plain = daemon.Cli({"image", "import", "plain", busybox});
  INFO(plain.err);
  REQUIRE(plain.exit_code == 0);
  CHECK(Contains(daemon.Cli({"--json", "image", "inspect", "plain"}).out,
                 "IMAGE_SOURCE_ROOTFS_TAR"));
  auto group = daemon.Cli(
      {"run", "--image", "plain", "--", "busybox", "cat", "/etc/group"});
  CHECK(group.exit_code == 0);
  CHECK(Contains(group.out, "root"));

  // A corrupted layer is refused and nothing is published.
  MustRun("set -e; cd '" + dir +
          "'; mkdir bad; tar -xf bb-oci.tar -C bad; "
          "f=$(ls -S bad/blobs/sha256 | head -1); "
          "printf 'X' | dd of=bad/blobs/sha256/$f bs=1 seek=100 conv=notrunc "
          "2>/dev/null");
  auto bad = daemon.Cli({"image", "import", "broken", dir + "/bad"});
  CHECK(bad.exit_code != 0);
  CHECK(Contains(bad.err, "digest mismatch"));
  CHECK_FALSE(Contains(daemon.Cli({"image", "ls"}).out, "broken"));
  auto leftovers =
      Sh("ls -A '" + daemon.state_dir() + "/images' | grep '^\\.' || true");
  CHECK(leftovers.out.empty());
}

}  // namespace
}  // namespace corral::testing
