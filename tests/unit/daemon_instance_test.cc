// The daemon instance's id and the host-wide registry (uid claims,
// instances), on a registry of the test's own.
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "daemon/core/instance.h"

namespace corral::daemon {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/corral-instance-XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    path_ = pattern;
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

constexpr char kSandboxA[] = "0123456789abcdef0123456789abcdef";
constexpr char kSandboxB[] = "fedcba9876543210fedcba9876543210";

TEST_CASE("an instance id is made once and read back after") {
  TempDir state;
  auto first = LoadOrCreateInstanceId(state.path());
  REQUIRE(first.ok());
  CHECK(ValidInstanceId(*first));
  auto again = LoadOrCreateInstanceId(state.path());
  REQUIRE(again.ok());
  CHECK(*again == *first);
  TempDir other;
  CHECK(*LoadOrCreateInstanceId(other.path()) != *first);
  // Something else in the file is refused, never replaced.
  std::ofstream(state.path() + "/instance-id", std::ios::trunc) << "../x\n";
  auto bad = LoadOrCreateInstanceId(state.path());
  CHECK(absl::IsInvalidArgument(bad.status()));
  CHECK_FALSE(ValidInstanceId("0123456789ABCDEF"));
  CHECK_FALSE(ValidInstanceId("0123456789abcde"));
}

TEST_CASE("a host uid is held by one instance's sandbox at a time") {
  TempDir root;
  auto registry = HostRegistry::Open(root.path() + "/registry");
  REQUIRE(registry.ok());
  const std::string one = "1111111111111111", two = "2222222222222222";
  CHECK(*registry->ClaimUid(1500000000, one, kSandboxA));
  // The same holder again: still ours (recovery re-claims).
  CHECK(*registry->ClaimUid(1500000000, one, kSandboxA));
  // Anyone else: not theirs.
  CHECK_FALSE(*registry->ClaimUid(1500000000, two, kSandboxB));
  CHECK_FALSE(*registry->ClaimUid(1500000000, one, kSandboxB));
  CHECK(*registry->ClaimUid(1500000001, two, kSandboxB));
  auto claims = registry->Claims();
  REQUIRE(claims.size() == 2);
  CHECK(claims[1500000000].instance_id == one);
  CHECK(claims[1500000000].sandbox_id == kSandboxA);
  CHECK(claims[1500000001].instance_id == two);
  // Only the holder gives a uid back.
  CHECK(registry->ReleaseUid(1500000000, two).ok());
  CHECK(registry->Claims().count(1500000000) == 1);
  CHECK(registry->ReleaseUid(1500000000, one).ok());
  CHECK(registry->Claims().count(1500000000) == 0);
  CHECK(*registry->ClaimUid(1500000000, two, kSandboxA));
  // Nothing half-written is ever left behind by a claim.
  for (const auto& entry :
       fs::directory_iterator(root.path() + "/registry/uids")) {
    CHECK(entry.path().filename().string().find(".tmp") == std::string::npos);
  }
  CHECK(absl::IsInvalidArgument(
      registry->ClaimUid(1, "not-an-instance", kSandboxA).status()));
}

TEST_CASE("an instance is live while its state directory holds its id") {
  TempDir root;
  TempDir state;
  auto registry = HostRegistry::Open(root.path() + "/registry");
  REQUIRE(registry.ok());
  const std::string id = *LoadOrCreateInstanceId(state.path());
  REQUIRE(registry->Register({id, state.path(), "/run/x.sock"}).ok());
  auto instances = registry->Instances();
  REQUIRE(instances.size() == 1);
  CHECK(instances[0].id == id);
  CHECK(instances[0].state_dir == state.path());
  CHECK(instances[0].socket == "/run/x.sock");
  CHECK(HostRegistry::IsLive(instances[0]));
  fs::remove(state.path() + "/instance-id");
  CHECK_FALSE(HostRegistry::IsLive(instances[0]));
  REQUIRE(registry->Unregister(id).ok());
  CHECK(registry->Instances().empty());
  CHECK(absl::IsInvalidArgument(
      registry->Register({id, "/a\nstate_dir=/b", ""})));
}

}  // namespace
}  // namespace corral::daemon
