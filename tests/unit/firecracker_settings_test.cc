// The firecracker runtime's settings alone: where Firecracker and the
// jailer are looked for (the daemon's PATH, each directory once, then
// /usr/local/bin and /usr/bin), what is said when they are missing, and
// the options' checks. The handle state's round trip.
#include "backends/firecracker/firecracker_settings.h"

#include <catch2/catch.hpp>
#include <set>
#include <string>

namespace corral::firecracker_runtime {
namespace {

TEST_CASE(
    "firecracker settings: programs are found on the search path in order, "
    "each directory looked in once, and a missing one says where it looked",
    "[firecracker]") {
  std::set<std::string> present = {"/opt/b/firecracker", "/usr/bin/jailer"};
  auto executable = [&](const std::string& path) {
    return present.count(path) > 0;
  };
  std::vector<std::string> ignored;
  auto found =
      ParseSettings("/state/runtime/firecracker", "/agent", {},
                    "/opt/a:relative:/opt/b:/opt/a", executable, &ignored);
  REQUIRE(found.ok());
  CHECK(found->firecracker_path == "/opt/b/firecracker");
  CHECK(found->jailer_path == "/usr/bin/jailer");
  CHECK(found->chroot_base_dir == "/state/runtime/firecracker/jail");

  present.clear();
  auto missing = ParseSettings("/r", "/agent", {}, "/opt/a:/opt/a:/usr/bin",
                               executable, &ignored);
  REQUIRE(missing.ok());
  CHECK(missing->firecracker_path.empty());
  CHECK(missing->firecracker_problem ==
        "firecracker is not installed (looked in /opt/a, /usr/bin, "
        "/usr/local/bin)");

  // An option names the program: it must be one.
  auto named = ParseSettings("/r", "/agent", {{"jailer", "/x/jailer"}}, "",
                             executable, &ignored);
  REQUIRE(named.ok());
  CHECK(named->jailer_problem ==
        "runtimes.firecracker.jailer /x/jailer is not an executable file");
}

TEST_CASE(
    "firecracker settings: bad values are refused naming the option, "
    "unknown ones reported",
    "[firecracker]") {
  auto any = [](const std::string&) { return true; };
  std::vector<std::string> ignored;
  CHECK(absl::IsInvalidArgument(
      ParseSettings("/r", "/a", {{"overhead_mib", "8"}}, "", any, &ignored)
          .status()));
  CHECK(absl::IsInvalidArgument(
      ParseSettings("/r", "/a", {{"kernel_dir", "relative"}}, "", any, &ignored)
          .status()));
  CHECK(absl::IsInvalidArgument(
      ParseSettings("/r", "/a", {{"console_log", "yes"}}, "", any, &ignored)
          .status()));
  CHECK(ParseSettings("/r", "/a", {{"colour", "red"}}, "", any, &ignored).ok());
  CHECK(ignored == std::vector<std::string>{"colour"});
}

TEST_CASE(
    "firecracker settings: the handle state reads back what it wrote "
    "and nothing else",
    "[firecracker]") {
  SandboxRecord record;
  record.id = "0123456789abcdef0123456789abcdef";
  record.sandbox_dir = "/state/runtime/firecracker/" + record.id;
  record.jail_dir = "/state/runtime/firecracker/jail/firecracker/" + record.id;
  record.cgroup_parent = "corral/firecracker/0011223344556677";
  record.pid = 1234;
  record.start_time = 5678;
  auto parsed = SandboxRecord::Parse(record.Serialize());
  REQUIRE(parsed.ok());
  CHECK(parsed->Serialize() == record.Serialize());
  CHECK_FALSE(SandboxRecord::Parse("version=9\n").ok());
}

}  // namespace
}  // namespace corral::firecracker_runtime
