// `corral e2b`, the E2B-compatible gateway, against the real daemon and
// sandboxes: its refusals at start, and E2B's own JS SDK (npm `e2b`, pinned
// in tests/js) running programs written for E2B through it, on the linux
// runtime and, for a subset, on qemu. Needs Node.js 20, `npm ci` in tests/js
// and the e2b-base image that tests/run.sh builds
// (deploy/images/build-e2b-base.sh).
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <string>

#include "corral/v1/sandboxes.grpc.pb.h"
#include "tests/integration/daemon_harness.h"
#include "tests/integration/front_door.h"

namespace corral::testing {
namespace {

constexpr char kKey[] = "e2b_0123456789abcdef0123456789abcdef01234567";
constexpr int kMaxUploadMib = 8;

std::string EnvOr(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && value[0] != '\0' ? value : fallback;
}

std::string ImagePath() {
  return EnvOr("CORRAL_TEST_E2B_IMAGE",
               std::string(CORRAL_BINARY_DIR) + "/images/e2b-base.tar");
}

// The image of the gateway's base template; CI requires it.
bool ImageAvailable() {
  if (::access(ImagePath().c_str(), R_OK) == 0) return true;
  const char* required = std::getenv("CORRAL_REQUIRE_JS");
  if (required != nullptr && std::string(required) == "1") {
    FAIL("no " << ImagePath() << ": tests/run.sh builds it");
  }
  WARN("skipped: no " << ImagePath()
                      << " (sudo deploy/images/build-e2b-base.sh "
                      << ImagePath() << ")");
  return false;
}

// A daemon whose socket nobody may reach, with the qemu runtime's kernel,
// the e2b-base image imported, and a gateway config in a directory that
// nobody owns.
struct GatewayFixture {
  GatewayFixture()
      : daemon(std::string(kOpenSocket) + "[runtimes.qemu]\nkernel_dir = \"" +
               EnvOr("CORRAL_TEST_VM_KERNEL",
                     std::string(CORRAL_BINARY_DIR) + "/vm-kernel") +
               "\"\n"),
        home(NobodyHome()) {
    auto imported = daemon.Cli({"image", "import", "e2b-base", ImagePath()});
    INFO(imported.out << imported.err);
    REQUIRE(imported.exit_code == 0);
    config = home + "/e2b.toml";
    std::ofstream(config) << "max_upload_mib = " << kMaxUploadMib
                          << "\n"
                             "[templates.base]\nimage = \"e2b-base\"\n"
                             "runtime = \"linux\"\n"
                             "[templates.vm]\nimage = \"e2b-base\"\n"
                             "runtime = \"qemu\"\n";
  }
  ~GatewayFixture() { Sh("rm -rf " + home); }

  // Runs the SDK's suite through `server`; its output.
  CommandResult RunSuite(const FrontDoorServer& server,
                         const std::string& template_name,
                         const std::string& suite) {
    return Sh(
        "cd " + std::string(CORRAL_SOURCE_DIR) + "/tests/js && " +
        AsNobody(home,
                 "E2B_API_URL=" + server.url() + " E2B_SANDBOX_URL=" +
                     server.url() + " E2B_API_KEY=" + kKey +
                     " E2B_TEMPLATE=" + template_name + " E2B_SUITE=" + suite +
                     " E2B_MAX_UPLOAD_MIB=" + std::to_string(kMaxUploadMib) +
                     " timeout 600 node e2b_sdk.mjs") +
        " 2>&1");
  }

  std::vector<std::string> GatewayArgs() const {
    return {"--socket",    daemon.socket(), "e2b",          "--listen",
            "127.0.0.1:0", "--api-key",     kKey,           "--config",
            config,        "--state-dir",   home + "/state"};
  }

  Daemon daemon;
  std::string home;
  std::string config;
};

TEST_CASE(
    "corral e2b refuses to start as root, without an API key, with a "
    "malformed key, or with a bad config file, saying why") {
  Daemon daemon(kOpenSocket);
  const std::string home = NobodyHome();
  const std::string corral = BinaryDir() + "/corral --socket " +
                             daemon.socket() + " e2b --listen " +
                             "127.0.0.1:0 --state-dir " + home + "/state ";

  auto as_root = Sh(corral + "--api-key " + kKey + " 2>&1");
  CHECK(as_root.exit_code == 125);
  CHECK(as_root.out.find("does not run as root") != std::string::npos);

  auto no_key = Sh(AsNobody(home, corral) + " 2>&1");
  CHECK(no_key.exit_code == 125);
  CHECK(no_key.out.find("no API key") != std::string::npos);

  auto bad_key = Sh(AsNobody(home, corral + "--api-key secret") + " 2>&1");
  CHECK(bad_key.exit_code == 125);
  CHECK(bad_key.out.find("e2b_") != std::string::npos);

  std::ofstream(home + "/bad.toml") << "[templates.base]\nimage = 3\n";
  auto bad_config = Sh(AsNobody(home, corral + "--api-key " + kKey +
                                          " --config " + home + "/bad.toml") +
                       " 2>&1");
  CHECK(bad_config.exit_code == 125);
  CHECK(bad_config.out.find("templates.base.image") != std::string::npos);

  std::ofstream(home + "/unknown.toml") << "api_key = \"x\"\n";
  auto unknown = Sh(AsNobody(home, corral + "--api-key " + kKey + " --config " +
                                       home + "/unknown.toml") +
                    " 2>&1");
  CHECK(unknown.exit_code == 125);
  CHECK(unknown.out.find("unknown key api_key") != std::string::npos);
  Sh("rm -rf " + home);
}

TEST_CASE(
    "E2B's JS SDK runs unchanged through corral e2b on the linux runtime: "
    "lifecycle, commands, files, PTY, a sandbox killed mid-run, bad input") {
  if (!JsJudgeAvailable("e2b") || !ImageAvailable()) return;
  GatewayFixture fixture;
  FrontDoorServer server(fixture.GatewayArgs());
  auto suite = fixture.RunSuite(server, "base", "full");
  INFO(suite.out);
  CHECK(suite.exit_code == 0);
  CHECK(suite.out.find("# all passed") != std::string::npos);
  // Nothing is left behind: the suite's sandboxes are gone.
  auto stub = corral::v1::Sandboxes::NewStub(fixture.daemon.Channel());
  grpc::ClientContext context;
  corral::v1::ListSandboxesResponse left;
  REQUIRE(stub->ListSandboxes(&context, {}, &left).ok());
  CHECK(left.sandboxes_size() == 0);
}

// An HTTP request to the gateway with curl: "STATUS BODY".
std::string Http(const std::string& method, const std::string& url,
                 const std::string& body = "") {
  auto r = Sh("curl -s -m 30 -X " + method + " -H 'X-API-KEY: " + kKey +
              "' -H 'Content-Type: application/json' -w ' %{http_code}' " +
              (body.empty() ? "" : "-d '" + body + "' ") + url);
  const size_t space = r.out.rfind(' ');
  return space == std::string::npos
             ? r.out
             : r.out.substr(space + 1) + " " + r.out.substr(0, space);
}

TEST_CASE(
    "corral e2b outlives a killed daemon: calls fail with 503 while it is "
    "down, and work again, on the same sandbox, once it is back") {
  if (!ImageAvailable()) return;
  GatewayFixture fixture;
  FrontDoorServer server(fixture.GatewayArgs());
  const std::string created = Http("POST", server.url() + "/v2/sandboxes",
                                   R"({"templateID":"base","timeout":300})");
  INFO(created);
  REQUIRE(created.rfind("201 ", 0) == 0);
  const std::string id =
      created.substr(created.find("\"sandboxID\":\"") + 13, 32);

  fixture.daemon.Kill9();
  const std::string down = Http("GET", server.url() + "/sandboxes/" + id);
  INFO(down);
  CHECK(down.rfind("503 ", 0) == 0);
  CHECK(down.find("\"code\":503") != std::string::npos);

  fixture.daemon.Start();
  // The gateway reconnects within a second (503 meanwhile, which E2B's
  // clients retry).
  std::string back;
  for (int i = 0; i < 50; ++i) {
    back = Http("GET", server.url() + "/sandboxes/" + id);
    if (back.rfind("503 ", 0) != 0) break;
    ::usleep(200 * 1000);
  }
  INFO(back);
  CHECK(back.rfind("200 ", 0) == 0);
  CHECK(back.find("\"state\":\"running\"") != std::string::npos);
  CHECK(Http("DELETE", server.url() + "/sandboxes/" + id).rfind("204", 0) == 0);
}

TEST_CASE(
    "E2B's JS SDK through corral e2b on the qemu runtime: lifecycle, "
    "commands and files in a VM") {
  if (!JsJudgeAvailable("e2b") || !ImageAvailable()) return;
  const std::string required = EnvOr("CORRAL_CONFORMANCE_REQUIRE", "");
  if (Sh("command -v qemu-system-x86_64").exit_code != 0 ||
      ::access((std::string(CORRAL_BINARY_DIR) + "/vm-kernel").c_str(), R_OK) !=
          0) {
    if (required.find("qemu") != std::string::npos) {
      FAIL(
          "qemu is required here but qemu-system-x86_64 or the VM kernel "
          "is missing");
    }
    WARN("skipped: no qemu-system-x86_64 or build/vm-kernel");
    return;
  }
  GatewayFixture fixture;
  FrontDoorServer server(fixture.GatewayArgs());
  auto suite = fixture.RunSuite(server, "vm", "subset");
  INFO(suite.out);
  CHECK(suite.exit_code == 0);
  CHECK(suite.out.find("# all passed") != std::string::npos);
}

}  // namespace
}  // namespace corral::testing
