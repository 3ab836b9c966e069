// Tests of the daemon's TOML config: defaults, the documented example, error
// messages and policy resolution.
#include "daemon/config/config.h"

#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <string>
#include <vector>

namespace corral::daemon {
namespace {

DaemonConfig ParseOrDie(std::string_view text) {
  auto config = ParseConfig(text, "test.toml");
  INFO(config.status().ToString());
  REQUIRE(config.ok());
  return std::move(config).value();
}

std::string ErrorOf(std::string_view text) {
  auto config = ParseConfig(text, "test.toml");
  REQUIRE_FALSE(config.ok());
  CHECK(config.status().code() == absl::StatusCode::kInvalidArgument);
  return std::string(config.status().message());
}

TEST_CASE("config: defaults", "[config]") {
  const DaemonConfig config = DefaultConfig();
  CHECK(config.daemon.socket == "/run/corral/corrald.sock");
  CHECK(config.daemon.socket_group == "corral");
  CHECK(config.daemon.socket_mode == 0660);
  CHECK(config.daemon.state_dir == "/var/lib/corral");
  CHECK(config.daemon.plugin_dir.empty());
  CHECK(config.daemon.agent_path.empty());
  CHECK(config.daemon.log_level == "info");
  CHECK(config.daemon.admin_group == "corral-admin");
  CHECK(config.daemon.max_sandboxes == 1000);
  CHECK(config.daemon.max_request_bytes == 8u << 20);
  CHECK(config.defaults.runtime == "linux");
  CHECK(config.defaults.image == "host");
  CHECK(config.defaults.cpu_millis == 1000);
  CHECK(config.defaults.memory_mib == 512);
  CHECK(config.defaults.pids == 256);
  CHECK(config.defaults.disk_mib == 1024);
  CHECK(config.defaults.ttl_seconds == 3600);
  CHECK(config.defaults.exec_timeout_seconds == 600);
  CHECK(config.defaults.output_limit_bytes == 16u << 20);
  CHECK(config.limits.cpu_millis == ::sysconf(_SC_NPROCESSORS_ONLN) * 1000);
  CHECK(config.limits.memory_mib == 16384);
  CHECK(config.limits.pids == 16384);
  CHECK(config.limits.disk_mib == 102400);
  CHECK(config.limits.ttl_seconds == 7 * 24 * 3600);
  CHECK(config.limits.exec_timeout_seconds == 86400);
  CHECK(config.limits.output_limit_bytes == 256u << 20);
  CHECK(config.sandbox_uids.base == 1500000000);
  CHECK(config.sandbox_uids.count == 65536);
  CHECK(config.images.max_bytes == 8ull << 30);
  CHECK(config.images.max_entries == 1000000);
  CHECK(config.policies.empty());
  CHECK(config.runtimes.empty());
  CHECK(config.daemon.output_buffer_bytes == 256u << 20);
  CHECK(config.limits.lifetime_seconds == 30 * 24 * 3600);
  CHECK(config.quotas.sandboxes == 100);
  CHECK(config.quotas.calls == 64);
  CHECK(config.quotas.storage_mib == 1024 * 1024);
  CHECK_FALSE(config.default_policy.deny);
  CHECK(config.default_policy.runtimes.empty());
  CHECK(config.default_policy.grants.empty());

  // An empty file is the defaults.
  const DaemonConfig empty = ParseOrDie("");
  CHECK(empty.daemon.socket == config.daemon.socket);
  CHECK(empty.limits.cpu_millis == config.limits.cpu_millis);
}

TEST_CASE("config: the documented example parses to the defaults", "[config]") {
  auto loaded = LoadConfig(std::filesystem::path(CORRAL_SOURCE_DIR) / "deploy" /
                           "corrald.toml");
  INFO(loaded.status().ToString());
  REQUIRE(loaded.ok());
  const DaemonConfig defaults = DefaultConfig();
  CHECK(loaded->daemon.socket == defaults.daemon.socket);
  CHECK(loaded->daemon.socket_mode == defaults.daemon.socket_mode);
  CHECK(loaded->daemon.max_request_bytes == defaults.daemon.max_request_bytes);
  CHECK(loaded->daemon.max_events == defaults.daemon.max_events);
  CHECK(loaded->defaults.output_limit_bytes ==
        defaults.defaults.output_limit_bytes);
  CHECK(loaded->defaults.ttl_seconds == defaults.defaults.ttl_seconds);
  CHECK(loaded->limits.cpu_millis == defaults.limits.cpu_millis);
  CHECK(loaded->limits.ttl_seconds == defaults.limits.ttl_seconds);
  CHECK(loaded->limits.output_limit_bytes ==
        defaults.limits.output_limit_bytes);
  CHECK(loaded->sandbox_uids.base == defaults.sandbox_uids.base);
  CHECK(loaded->images.max_bytes == defaults.images.max_bytes);
  CHECK(loaded->policies.empty());
  CHECK(loaded->daemon.output_buffer_bytes ==
        defaults.daemon.output_buffer_bytes);
  CHECK(loaded->limits.lifetime_seconds == defaults.limits.lifetime_seconds);
  CHECK(loaded->quotas.sandboxes == defaults.quotas.sandboxes);
  CHECK(loaded->quotas.calls == defaults.quotas.calls);
  CHECK(loaded->quotas.storage_mib == defaults.quotas.storage_mib);
  CHECK(loaded->default_policy.deny == defaults.default_policy.deny);
  CHECK(loaded->default_policy.runtimes == defaults.default_policy.runtimes);
}

TEST_CASE("config: a full file with policies and runtimes", "[config]") {
  const DaemonConfig config = ParseOrDie(R"toml(
[daemon]
socket = "/tmp/corral.sock"
socket_mode = "0600"
state_dir = "/srv/corral"
plugin_dir = "/opt/corral/lib"
log_level = "debug"
max_sandboxes = 10

[defaults]
runtime = "oci"
image = "alpine-3.19"
memory_mib = 256

[limits]
memory_mib = 1024
cpu_millis = 4000

[sandbox_uids]
base = 200000
count = 1000

[images]
max_bytes = 1048576
max_entries = 10

[[policy]]
groups = ["finance", 4242]
runtimes = ["qemu", "firecracker"]
default_runtime = "firecracker"
memory_mib = 512

[[policy]]
users = ["ci", 1500, "1501"]
runtimes = ["linux", "oci"]

[runtimes.linux]
cgroup_parent = "corral"
userns = true
cpus = 2
)toml");
  CHECK(config.daemon.socket == "/tmp/corral.sock");
  CHECK(config.daemon.socket_mode == 0600);
  CHECK(config.daemon.state_dir == "/srv/corral");
  CHECK(config.daemon.log_level == "debug");
  CHECK(config.daemon.max_sandboxes == 10);
  CHECK(config.defaults.runtime == "oci");
  CHECK(config.defaults.image == "alpine-3.19");
  CHECK(config.defaults.memory_mib == 256);
  CHECK(config.limits.memory_mib == 1024);
  CHECK(config.sandbox_uids.base == 200000);
  CHECK(config.images.max_entries == 10);
  REQUIRE(config.policies.size() == 2);
  CHECK(config.policies[0].group_names == std::vector<std::string>{"finance"});
  CHECK(config.policies[0].gids == std::vector<uint32_t>{4242});
  CHECK(config.policies[0].max_memory_mib == 512);
  CHECK_FALSE(config.policies[0].max_pids.has_value());
  CHECK(config.policies[1].user_names == std::vector<std::string>{"ci"});
  CHECK(config.policies[1].uids == std::vector<uint32_t>{1500, 1501});
  REQUIRE(config.runtimes.count("linux") == 1);
  CHECK(config.runtimes.at("linux").at("cgroup_parent") == "corral");
  CHECK(config.runtimes.at("linux").at("userns") == "true");
  CHECK(config.runtimes.at("linux").at("cpus") == "2");

  CHECK(PluginDir(config, "/usr/bin") == "/opt/corral/lib");
  CHECK(AgentPath(config, "/usr/bin") == "/usr/bin/corral-agent");
  const DaemonConfig defaults = DefaultConfig();
  CHECK(PluginDir(defaults, "/usr/bin") == "/usr/lib/corral");
}

TEST_CASE("config: unknown keys name the key and line", "[config]") {
  CHECK_THAT(ErrorOf("[daemon]\nsocket = \"/x\"\nsokcet_mode = 1\n"),
             Catch::Contains("test.toml:3") &&
                 Catch::Contains("daemon.sokcet_mode") &&
                 Catch::Contains("unknown key"));
  CHECK_THAT(ErrorOf("\n[deamon]\n"), Catch::Contains("test.toml:2") &&
                                          Catch::Contains("deamon") &&
                                          Catch::Contains("unknown key"));
  CHECK_THAT(
      ErrorOf("[[policy]]\nusers = [\"a\"]\nmemory = 5\n"),
      Catch::Contains("policy[0].memory") && Catch::Contains("test.toml:3"));
  CHECK_THAT(
      ErrorOf("[runtimes]\nlinux = \"x\"\n"),
      Catch::Contains("runtimes.linux") && Catch::Contains("expected a table"));
}

TEST_CASE("config: bad types and values name the key and value", "[config]") {
  CHECK_THAT(
      ErrorOf("[defaults]\nmemory_mib = \"lots\"\n"),
      Catch::Contains("defaults.memory_mib") && Catch::Contains("\"lots\"") &&
          Catch::Contains("expected an integer") && Catch::Contains(":2"));
  CHECK_THAT(ErrorOf("[limits]\npids = -5\n"),
             Catch::Contains("limits.pids") && Catch::Contains("-5"));
  CHECK_THAT(
      ErrorOf("[defaults]\npids = 99999999999\n"),
      Catch::Contains("defaults.pids") && Catch::Contains("99999999999"));
  CHECK_THAT(ErrorOf("[daemon]\nsocket_mode = 0o1777\n"),
             Catch::Contains("daemon.socket_mode"));
  CHECK_THAT(
      ErrorOf("[daemon]\nsocket_mode = \"rw\"\n"),
      Catch::Contains("daemon.socket_mode") && Catch::Contains("\"rw\""));
  CHECK_THAT(ErrorOf("[daemon]\nlog_level = \"loud\"\n"),
             Catch::Contains("daemon.log_level") && Catch::Contains("loud") &&
                 Catch::Contains("test.toml:2"));
  CHECK_THAT(
      ErrorOf("[daemon]\nstate_dir = \"relative/dir\"\n"),
      Catch::Contains("daemon.state_dir") && Catch::Contains("absolute"));
  CHECK_THAT(ErrorOf("daemon = 5\n"),
             Catch::Contains("daemon") && Catch::Contains("expected a table"));
  // Cross-field checks: a default above its limit, a limit below the minimum.
  CHECK_THAT(ErrorOf("[defaults]\nmemory_mib = 4096\n[limits]\nmemory_mib = "
                     "2048\n"),
             Catch::Contains("defaults.memory_mib") &&
                 Catch::Contains("4096") &&
                 Catch::Contains("limits.memory_mib"));
  CHECK_THAT(ErrorOf("[limits]\npids = 4\n"),
             Catch::Contains("limits.pids") && Catch::Contains("at least 8"));
  CHECK_THAT(ErrorOf("[limits]\ncpu_millis = 5\n"),
             Catch::Contains("limits.cpu_millis"));
  CHECK_THAT(ErrorOf("[sandbox_uids]\nbase = 1000\n"),
             Catch::Contains("sandbox_uids.base") && Catch::Contains("1000"));
  CHECK_THAT(ErrorOf("[sandbox_uids]\nbase = 4294967000\ncount = 65536\n"),
             Catch::Contains("sandbox_uids.count"));
  CHECK_THAT(ErrorOf("[defaults]\nimage = \"../etc\"\n"),
             Catch::Contains("defaults.image"));
  CHECK_THAT(ErrorOf("[[policy]]\nruntimes = [\"linux\"]\n"),
             Catch::Contains("policy[0]") && Catch::Contains("no one"));
  CHECK_THAT(
      ErrorOf("[[policy]]\nusers = [\"a\"]\nruntimes = [\"linux\"]\n"
              "default_runtime = \"qemu\"\n"),
      Catch::Contains("policy[0].default_runtime") && Catch::Contains("qemu"));
  CHECK_THAT(
      ErrorOf("[[policy]]\nusers = [\"a\"]\nmemory_mib = 999999\n"),
      Catch::Contains("policy[0].memory_mib") && Catch::Contains("999999"));
  CHECK_THAT(ErrorOf("[[policy]]\nusers = [true]\n"),
             Catch::Contains("policy[0].users") && Catch::Contains("true"));
  CHECK_THAT(ErrorOf("[runtimes.linux]\nopts = [1, 2]\n"),
             Catch::Contains("runtimes.linux.opts"));
  CHECK_THAT(ErrorOf("[runtimes.\"Bad Name\"]\n"),
             Catch::Contains("runtimes.Bad Name"));
  // Syntax errors carry the line too.
  CHECK_THAT(ErrorOf("[daemon]\nsocket = \n"), Catch::Contains("test.toml:2"));
}

TEST_CASE("config: a missing file is NOT_FOUND", "[config]") {
  auto config = LoadConfig("/nonexistent/corral/corrald.toml");
  REQUIRE_FALSE(config.ok());
  CHECK(config.status().code() == absl::StatusCode::kNotFound);
  CHECK_THAT(std::string(config.status().message()),
             Catch::Contains("/nonexistent/corral/corrald.toml"));
}

TEST_CASE("config: policy resolution", "[config]") {
  // uid/gid 0 is root on every system; "root" names both.
  const DaemonConfig config = ParseOrDie(R"toml(
[defaults]
memory_mib = 512
pids = 256

[[policy]]
users = [2001]
runtimes = ["qemu", "firecracker"]
memory_mib = 256
ttl_seconds = 60

[[policy]]
groups = ["root"]
runtimes = ["linux"]
pids = 100

[[policy]]
groups = [3000]
default_runtime = "oci"
cpu_millis = 500

[[policy]]
users = ["root"]
runtimes = ["docker"]
)toml");
  const uint32_t no_groups[] = {5555};

  SECTION("no match: every runtime, global limits") {
    const EffectivePolicy p = ResolvePolicy(config, 4000, no_groups);
    CHECK(p.policy_index == -1);
    CHECK(p.all_runtimes);
    CHECK(p.AllowsRuntime("anything"));
    CHECK(p.defaults.runtime == "linux");
    CHECK(p.maxima.memory_mib == config.limits.memory_mib);
    CHECK(p.defaults.memory_mib == 512);
  }
  SECTION("by uid, with tighter maxima clamping the defaults") {
    const EffectivePolicy p = ResolvePolicy(config, 2001, no_groups);
    CHECK(p.policy_index == 0);
    CHECK_FALSE(p.all_runtimes);
    CHECK(p.AllowsRuntime("qemu"));
    CHECK_FALSE(p.AllowsRuntime("linux"));
    // No default_runtime and the global default is not allowed: the first.
    CHECK(p.defaults.runtime == "qemu");
    CHECK(p.maxima.memory_mib == 256);
    CHECK(p.defaults.memory_mib == 256);
    CHECK(p.maxima.ttl_seconds == 60);
    CHECK(p.defaults.ttl_seconds == 60);
    CHECK(p.maxima.pids == config.limits.pids);
  }
  SECTION("by group name, and root matches like anyone") {
    const uint32_t root_group[] = {0};
    const EffectivePolicy p = ResolvePolicy(config, 0, root_group);
    // Entry 1 (group root) comes before entry 3 (user root).
    CHECK(p.policy_index == 1);
    CHECK(p.AllowsRuntime("linux"));
    CHECK_FALSE(p.AllowsRuntime("docker"));
    CHECK(p.maxima.pids == 100);
    CHECK(p.defaults.pids == 100);
  }
  SECTION("by user name") {
    const EffectivePolicy p = ResolvePolicy(config, 0, no_groups);
    CHECK(p.policy_index == 3);
    CHECK(p.defaults.runtime == "docker");
  }
  SECTION("by supplementary gid, every runtime, own default") {
    const uint32_t groups[] = {100, 3000};
    const EffectivePolicy p = ResolvePolicy(config, 4000, groups);
    CHECK(p.policy_index == 2);
    CHECK(p.all_runtimes);
    CHECK(p.defaults.runtime == "oci");
    CHECK(p.maxima.cpu_millis == 500);
    CHECK(p.defaults.cpu_millis == 500);
  }
  SECTION("an unknown user name matches no one") {
    const DaemonConfig ghosts = ParseOrDie(
        "[[policy]]\nusers = [\"no-such-user-corral\"]\nruntimes = "
        "[\"qemu\"]\n");
    CHECK(ResolvePolicy(ghosts, 0, no_groups).policy_index == -1);
  }
}

TEST_CASE("config: default policy, grants, quotas and lifetime", "[config]") {
  const DaemonConfig config = ParseOrDie(R"toml(
[limits]
lifetime_seconds = 86400

[quotas]
sandboxes = 5
calls = 8
storage_mib = 2048

[default_policy]
runtimes = ["linux"]
ttl_seconds = 600

[default_policy.quotas]
sandboxes = 2

[[policy]]
users = [2001]
grants = ["no-userns"]
disk_mib = 512
lifetime_seconds = 3600

[policy.quotas]
calls = 100
storage_mib = 100

[[policy]]
users = [2002]
deny = true
)toml");
  const uint32_t no_groups[] = {4242};
  SECTION("unmatched callers get the default policy") {
    const EffectivePolicy p = ResolvePolicy(config, 3000, no_groups);
    CHECK(p.policy_index == -1);
    CHECK(p.name == "default_policy");
    CHECK_FALSE(p.deny);
    CHECK_FALSE(p.AllowsRuntime("qemu"));
    CHECK(p.AllowsRuntime("linux"));
    CHECK(p.maxima.ttl_seconds == 600);
    CHECK(p.maxima.lifetime_seconds == 86400);
    CHECK(p.grants.empty());
    CHECK(p.quotas.sandboxes == 2);  // its own
    CHECK(p.quotas.calls == 8);      // [quotas]
    CHECK(p.quotas.storage_mib == 2048);
  }
  SECTION("a policy's grants, maxima and quotas") {
    const EffectivePolicy p = ResolvePolicy(config, 2001, no_groups);
    CHECK(p.name == "policy[0]");
    CHECK(p.all_runtimes);
    CHECK(p.grants == std::vector<std::string>{"no-userns"});
    CHECK(p.maxima.disk_mib == 512);
    CHECK(p.defaults.disk_mib == 512);
    CHECK(p.maxima.lifetime_seconds == 3600);
    CHECK(p.defaults.ttl_seconds == 3600);  // at most the lifetime
    CHECK(p.quotas.sandboxes == 5);
    CHECK(p.quotas.calls == 100);
    CHECK(p.quotas.storage_mib == 100);
  }
  SECTION("deny") {
    CHECK(ResolvePolicy(config, 2002, no_groups).deny);
    const DaemonConfig closed = ParseOrDie("[default_policy]\ndeny = true\n");
    CHECK(ResolvePolicy(closed, 1234, no_groups).deny);
  }
  SECTION("bad values name the key") {
    CHECK_THAT(ErrorOf("[[policy]]\nusers = [1]\ngrants = [\"host-root\"]\n"),
               Catch::Contains("policy[0].grants") &&
                   Catch::Contains("host-root") &&
                   Catch::Contains("no-userns"));
    CHECK_THAT(ErrorOf("[default_policy]\nusers = [1]\n"),
               Catch::Contains("default_policy.users") &&
                   Catch::Contains("unknown key"));
    CHECK_THAT(ErrorOf("[default_policy]\ndeny = 1\n"),
               Catch::Contains("default_policy.deny"));
    CHECK_THAT(ErrorOf("[quotas]\ncalls = 0\n"),
               Catch::Contains("quotas.calls"));
    CHECK_THAT(
        ErrorOf("[quotas]\nthreads = 3\n"),
        Catch::Contains("quotas.threads") && Catch::Contains("unknown key"));
    CHECK_THAT(ErrorOf("[[policy]]\nusers = [1]\n[policy.quotas]\n"
                       "sandboxes = 0\n"),
               Catch::Contains("policy[0].quotas.sandboxes"));
    CHECK_THAT(
        ErrorOf("[[policy]]\nusers = [1]\nlifetime_seconds = 99999999\n"),
        Catch::Contains("policy[0].lifetime_seconds") &&
            Catch::Contains("limits.lifetime_seconds"));
    CHECK_THAT(ErrorOf("[daemon]\noutput_buffer_bytes = 1000\n"),
               Catch::Contains("daemon.output_buffer_bytes"));
  }
}

}  // namespace
}  // namespace corral::daemon
