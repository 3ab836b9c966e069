// The apple runtime's side of Apple's `container` CLI, alone: the container
// name that carries the hostname, the arguments of `container run`, the VM's
// size for a sandbox's limits, the CLI's errors as statuses (texts from
// apple/container 1.2.2 and containerization 0.40.1), the list's JSON, and
// the OCI layout an image is loaded as (read back and every digest checked).
#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backends/apple/container_cli.h"
#include "backends/apple/oci_layout.h"

namespace corral::apple_runtime {
namespace {

const std::string kId = "0123456789abcdef0123456789abcdef";

bool Has(const std::vector<std::string>& args,
         const std::vector<std::string>& run) {
  return std::search(args.begin(), args.end(), run.begin(), run.end()) !=
         args.end();
}

TEST_CASE(
    "apple: the container's name is the hostname, a dot and the sandbox id, "
    "and a hostname that cannot be carried so is refused",
    "[apple]") {
  auto name = ContainerName("corral-01234567", kId);
  REQUIRE(name.ok());
  CHECK(*name == "corral-01234567." + kId);
  CHECK(ContainerName(std::string(30, 'h'), kId).ok());
  // Apple's ids are at most 63 characters.
  auto long_name = ContainerName(std::string(31, 'h'), kId);
  CHECK(absl::IsInvalidArgument(long_name.status()));
  CHECK(long_name.status().message().find("at most 30") != std::string::npos);
  // The runtime cuts the hostname at the first dot.
  CHECK(absl::IsInvalidArgument(ContainerName("a.b", kId).status()));
  CHECK(absl::IsInvalidArgument(ContainerName("-a", kId).status()));
  CHECK(absl::IsInvalidArgument(ContainerName("", kId).status()));
}

TEST_CASE(
    "apple: container run is detached, sealed, read-only, with the agent "
    "as the container's process behind a published socket",
    "[apple]") {
  RunPlan plan;
  plan.name = "h." + kId;
  plan.image = "corral.local/0011223344556677:abc";
  plan.workspace_dir = "/srv/ws";
  plan.agent_dir = "/var/lib/corral/runtime/apple/.agent";
  plan.host_socket = "/var/lib/corral/runtime/apple/" + kId + "/run/agent.sock";
  plan.sandbox_id = kId;
  plan.daemon_label = "0011223344556677";
  plan.memory_bytes = 512ull << 20;
  plan.cpus = 2;
  const std::vector<std::string> args = RunArguments(plan);
  REQUIRE(args.size() > 4);
  CHECK(args[0] == "run");
  CHECK(args[1] == "-d");
  CHECK(Has(args, {"--name", plan.name}));
  CHECK(Has(args, {"--network", "none"}));
  CHECK(Has(args, {"--read-only"}));
  CHECK(Has(args, {"--tmpfs", "/tmp"}));
  CHECK(Has(args, {"--tmpfs", "/.corral/run"}));
  CHECK(Has(args, {"--volume", "/srv/ws:/workspace"}));
  CHECK(Has(args, {"--volume", plan.agent_dir + ":/.corral/bin:ro"}));
  CHECK(Has(args, {"--publish-socket",
                   plan.host_socket + ":/.corral/run/agent.sock"}));
  CHECK(Has(args, {"--cap-drop", "ALL"}));
  CHECK(Has(args, {"--read-only-path", "/proc/sys"}));
  CHECK(Has(args, {"--masked-path", "/proc/kcore"}));
  CHECK(Has(args, {"--label", "corral.sandbox=" + kId}));
  CHECK(Has(args, {"--label", "corral.daemon=0011223344556677"}));
  // A bare number would be bytes to Apple's parser.
  CHECK(Has(args, {"--memory", "512M"}));
  CHECK(Has(args, {"--cpus", "2"}));
  // The image, then the agent's own arguments, last.
  CHECK(Has(args, {"--entrypoint", "/.corral/bin/corral-agent", plan.image,
                   "--listen", "/.corral/run/agent.sock",
                   "--drop-command-privileges"}));
  CHECK(args.back() == "--drop-command-privileges");
  plan.cpus = 0;
  CHECK_FALSE(Has(RunArguments(plan), {"--cpus"}));
}

TEST_CASE(
    "apple: the VM gets at least Apple's 200 MiB and whole CPUs, rounded up",
    "[apple]") {
  CHECK(VmMemoryBytes(64ull << 20) == 200ull << 20);
  CHECK(VmMemoryBytes(512ull << 20) == 512ull << 20);
  CHECK(VmMemoryBytes((512ull << 20) + 1) == 513ull << 20);
  CHECK(VmCpus(0) == 0);
  CHECK(VmCpus(500) == 1);
  CHECK(VmCpus(1000) == 1);
  CHECK(VmCpus(1500) == 2);
}

TEST_CASE(
    "apple: the CLI's errors become statuses by their innermost code, else "
    "by their words; usage errors are Corral's own fault",
    "[apple]") {
  auto exists =
      CliError("run", 1, "Error: container with id x already exists\n");
  CHECK(absl::IsAlreadyExists(exists));
  CHECK(exists.message() ==
        "container run: container with id x already exists");
  // Aggregated errors carry codes, the cause innermost.
  auto gone =
      CliError("delete", 1,
               "Error: internalError: \"failed to delete container\" (cause: "
               "\"notFound: \"container with ID x not found\"\")\n");
  CHECK(absl::IsNotFound(gone));
  auto running = CliError(
      "delete", 1,
      "Error: internalError: \"failed to delete container\" (cause: "
      "\"invalidState: \"container x is running and can not be deleted\"\")");
  CHECK(absl::IsFailedPrecondition(running));
  // Before 1.0 every error had its code.
  CHECK(absl::IsNotFound(CliError(
      "exec", 1, "Error: notFound: \"get failed: container x not found\"")));
  CHECK(absl::IsNotFound(
      CliError("inspect", 1, "Error: container not found: x")));
  CHECK(absl::IsFailedPrecondition(
      CliError("exec", 1, "Error: container x is not running")));
  auto down = CliError(
      "run", 1,
      "Error: interrupted: \"XPC connection error: Connection invalid\"\n"
      "Ensure container system service has been started with `container "
      "system start`.\n");
  CHECK(absl::IsUnavailable(down));
  CHECK(down.message().find("container system start") != std::string::npos);
  auto usage =
      CliError("list", 64,
               "Error: Unknown option '--filter'\n"
               "Usage: container list [--all] [--quiet]\n"
               "  See 'container list --help' for more information.\n");
  CHECK(absl::IsInternal(usage));
  CHECK(usage.message().find("Unknown option '--filter'") != std::string::npos);
  CHECK(usage.message().find("Usage:") == std::string::npos);
  CHECK(usage.message().find("refused the arguments") != std::string::npos);
  CHECK(absl::IsInternal(CliError("run", 1,
                                  "Error: minimum memory amount allowed is 200 "
                                  "MiB (got 104857600 bytes)")));
  CHECK(CliError("run", 1, "").message() == "container run: exit code 1");
}

TEST_CASE(
    "apple: container list's JSON gives each container's id, state and "
    "labels, in 1.x's shape and the older one; anything else is refused",
    "[apple]") {
  const std::string listed =
      R"([{"configuration":{"id":"a.)" + kId +
      R"(","labels":{"corral.sandbox":")" + kId +
      R"(","corral.daemon":"0011223344556677"},"image":{"reference":"x"}},"id":"a.)" +
      kId +
      R"(","status":{"networks":[],"startedDate":"2026-12-07T20:00:00Z","state":"running"}},)"
      R"({"configuration":{"id":"b","labels":{}},"id":"b","status":{"state":"stopped"}}])";
  auto containers = ParseContainerList(listed);
  REQUIRE(containers.ok());
  REQUIRE(containers->size() == 2);
  CHECK((*containers)[0].id == "a." + kId);
  CHECK((*containers)[0].state == "running");
  CHECK((*containers)[0].labels.at("corral.sandbox") == kId);
  CHECK((*containers)[1].state == "stopped");
  CHECK((*containers)[1].labels.empty());
  auto old = ParseContainerList(
      R"([{"status":"running","configuration":{"id":"c"},"id":"c"}])");
  REQUIRE(old.ok());
  CHECK((*old)[0].state == "running");
  CHECK(ParseContainerList("[]")->empty());
  CHECK(absl::IsInvalidArgument(ParseContainerList("{}").status()));
  CHECK(absl::IsInvalidArgument(ParseContainerList("[{\"x\":1}]").status()));
  CHECK(absl::IsInvalidArgument(ParseContainerList("not json").status()));
}

TEST_CASE(
    "apple: container --version says what it is, and the test fake "
    "says it is one",
    "[apple]") {
  CHECK(CliVersion("container CLI version 1.2.2 (build: release, commit: "
                   "af405ff)\n") ==
        "container CLI version 1.2.2 (build: release, commit: af405ff)");
  CHECK(CliVersion("Docker version 24\n").empty());
  // The test fake's second line is not part of the version.
  CHECK(CliVersion("container CLI version 1.2.2 (build: release)\ncorral "
                   "test fake (tests/fakes/apple)\n") ==
        "container CLI version 1.2.2 (build: release)");
}

// The entries of a tar file: name -> content.
std::map<std::string, std::string> ReadTar(const std::string& path) {
  std::map<std::string, std::string> entries;
  archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  REQUIRE(archive_read_open_filename(a, path.c_str(), 10240) == ARCHIVE_OK);
  archive_entry* entry = nullptr;
  while (archive_read_next_header(a, &entry) == ARCHIVE_OK) {
    std::string data;
    char buffer[8192];
    la_ssize_t n;
    while ((n = archive_read_data(a, buffer, sizeof(buffer))) > 0) {
      data.append(buffer, static_cast<size_t>(n));
    }
    entries[archive_entry_pathname(entry)] = data;
  }
  archive_read_free(a);
  return entries;
}

std::string Sha256Of(const std::string& data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(data.data(), data.size(), out, &size, EVP_sha256(), nullptr);
  std::string hex = "sha256:";
  for (unsigned int i = 0; i < size; ++i) {
    char two[3];
    std::snprintf(two, sizeof(two), "%02x", out[i]);
    hex += two;
  }
  return hex;
}

TEST_CASE(
    "apple: an image is an OCI layout whose blobs match their digests, named "
    "by the index's annotations, the root filesystem its one layer",
    "[apple]") {
  char tmpl[] = "/tmp/corral-apple-layout-XXXXXX";
  const std::string dir = ::mkdtemp(tmpl);
  const std::string rootfs = dir + "/rootfs";
  REQUIRE(::mkdir(rootfs.c_str(), 0755) == 0);
  REQUIRE(::mkdir((rootfs + "/bin").c_str(), 0755) == 0);
  std::ofstream(rootfs + "/bin/hello") << "#!/bin/sh\necho hi\n";
  REQUIRE(::symlink("hello", (rootfs + "/bin/hi").c_str()) == 0);
  const std::string out = dir + "/image.tar";
  LayoutImage image{rootfs, /*zero_mtime=*/true,
                    "corral.local/0011223344556677:k", "amd64"};
  REQUIRE(WriteImageLayout(image, out).ok());
  // The staged layer is gone.
  CHECK(::access((out + ".layer").c_str(), F_OK) != 0);

  auto entries = ReadTar(out);
  REQUIRE(entries.count("oci-layout") == 1);
  CHECK(nlohmann::json::parse(entries["oci-layout"])["imageLayoutVersion"] ==
        "1.0.0");
  // Every blob is named by its content's digest.
  int blobs = 0;
  for (const auto& [name, data] : entries) {
    if (name.rfind("blobs/sha256/", 0) != 0 || name.back() == '/') continue;
    ++blobs;
    CHECK("sha256:" + name.substr(13) == Sha256Of(data));
  }
  CHECK(blobs == 3);
  auto blob = [&](const nlohmann::json& descriptor) {
    const std::string digest = descriptor["digest"];
    const std::string& data = entries["blobs/sha256/" + digest.substr(7)];
    CHECK(descriptor["size"] == data.size());
    return data;
  };
  const auto index = nlohmann::json::parse(entries["index.json"]);
  REQUIRE(index["manifests"].size() == 1);
  const auto& listed = index["manifests"][0];
  CHECK(listed["annotations"]["com.apple.containerization.image.name"] ==
        image.reference);
  CHECK(listed["platform"]["architecture"] == "amd64");
  const auto manifest = nlohmann::json::parse(blob(listed));
  const auto config = nlohmann::json::parse(blob(manifest["config"]));
  CHECK(config["os"] == "linux");
  REQUIRE(manifest["layers"].size() == 1);
  CHECK(manifest["layers"][0]["mediaType"] ==
        "application/vnd.oci.image.layer.v1.tar");
  CHECK(config["rootfs"]["diff_ids"][0] == manifest["layers"][0]["digest"]);
  // The layer is the root filesystem.
  const std::string layer_path = dir + "/layer.tar";
  std::ofstream(layer_path, std::ios::binary) << blob(manifest["layers"][0]);
  auto layer = ReadTar(layer_path);
  CHECK(layer.count("bin/hello") == 1);
  CHECK(layer["bin/hello"] == "#!/bin/sh\necho hi\n");
  CHECK(layer.count("bin/hi") == 1);
  // The same directory gives the same bytes (zero mtimes).
  const std::string again = dir + "/again.tar";
  REQUIRE(WriteImageLayout(image, again).ok());
  CHECK(ReadTar(again) == entries);
  std::system(("rm -rf '" + dir + "'").c_str());
}

}  // namespace
}  // namespace corral::apple_runtime
