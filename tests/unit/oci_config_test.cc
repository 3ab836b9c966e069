// Unit tests of the oci runtime's proto-free pieces: the bundle's
// config.json (parsed back), the seccomp profile (compiled back into a
// libseccomp filter and compared with the linux runtime's), the "host" image
// skeleton, settings and the handle state.
#include <seccomp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "backends/common/host_root.h"
#include "backends/common/seccomp_json.h"
#include "backends/linux/seccomp_policy.h"
#include "backends/oci/bundle_config.h"
#include "backends/oci/oci_state.h"

namespace oci = corral::oci_runtime;
namespace rc = corral::runtime_common;
using nlohmann::json;

namespace {

const std::string kId = "0123456789abcdef0123456789abcdef";

oci::BundleSpec Spec() {
  oci::BundleSpec spec;
  spec.id = kId;
  spec.hostname = "box";
  spec.root_path = "/images/busybox";
  spec.workspace_dir = "/state/workspaces/" + kId;
  spec.tmp_bytes = 32u << 20;
  spec.user_namespace = true;
  spec.host_uid = 1'500'000;
  spec.host_gid = 1'500'001;
  spec.memory_bytes = 96u << 20;
  spec.pids = 48;
  spec.cpu_millis = 500;
  spec.cgroups_path = "/corral/oci/" + kId;
  spec.swap_accounting = true;
  return spec;
}

// The config as a runtime reads it: serialized, then parsed.
json RoundTrip(const oci::BundleSpec& spec) {
  return json::parse(oci::BundleConfig(spec).dump());
}

const json* MountAt(const json& config, const std::string& destination) {
  for (const json& mount : config["mounts"]) {
    if (mount["destination"] == destination) return &mount;
  }
  return nullptr;
}

bool Has(const json& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

std::set<std::string> NamespaceTypes(const json& config) {
  std::set<std::string> types;
  for (const json& ns : config["linux"]["namespaces"]) {
    types.insert(ns["type"].get<std::string>());
  }
  return types;
}

}  // namespace

TEST_CASE("bundle config: namespaces and the user mapping", "[oci][config]") {
  oci::BundleSpec spec = Spec();
  json config = RoundTrip(spec);
  CHECK(NamespaceTypes(config) == std::set<std::string>{"pid", "network", "ipc",
                                                        "uts", "mount",
                                                        "cgroup", "user"});
  const json& uid = config["linux"]["uidMappings"];
  REQUIRE(uid.size() == 1);
  CHECK(uid[0]["containerID"] == 0);
  CHECK(uid[0]["hostID"] == 1'500'000);
  CHECK(uid[0]["size"] == 1);
  const json& gid = config["linux"]["gidMappings"];
  REQUIRE(gid.size() == 1);
  CHECK(gid[0]["hostID"] == 1'500'001);
  CHECK(gid[0]["size"] == 1);
  CHECK(config["hostname"] == "box");

  // host_uid 0 (or userns=false): no user namespace, no mappings.
  spec.user_namespace = false;
  config = RoundTrip(spec);
  CHECK(NamespaceTypes(config).count("user") == 0);
  CHECK_FALSE(config["linux"].contains("uidMappings"));
  CHECK_FALSE(config["linux"].contains("gidMappings"));
}

TEST_CASE("bundle config: the process is the agent, without privileges",
          "[oci][config]") {
  json config = RoundTrip(Spec());
  const json& process = config["process"];
  CHECK(process["args"] ==
        json::array({"/proc/self/fd/4", "--listen-fd", "3"}));
  CHECK(process["user"]["uid"] == 0);
  CHECK(process["user"]["gid"] == 0);
  CHECK(process["noNewPrivileges"] == true);
  CHECK(process["terminal"] == false);
  for (const char* set :
       {"bounding", "effective", "inheritable", "permitted", "ambient"}) {
    INFO(set);
    REQUIRE(process["capabilities"].contains(set));
    CHECK(process["capabilities"][set].empty());
  }
  CHECK(Has(process["env"], "HOME=/"));
  CHECK(config["root"]["path"] == "/images/busybox");
  CHECK(config["root"]["readonly"] == true);
}

TEST_CASE("bundle config: mounts", "[oci][config]") {
  oci::BundleSpec spec = Spec();
  spec.host_binds = {{"/usr", "/usr"}, {"/etc/ssl/certs", "/etc/ssl/certs"}};
  json config = RoundTrip(spec);

  const json* proc = MountAt(config, "/proc");
  REQUIRE(proc != nullptr);
  CHECK((*proc)["type"] == "proc");
  for (const char* option : {"nosuid", "nodev", "noexec"}) {
    CHECK(Has((*proc)["options"], option));
  }
  const json* sys = MountAt(config, "/sys");
  REQUIRE(sys != nullptr);
  CHECK(Has((*sys)["options"], "ro"));

  const json* tmp = MountAt(config, "/tmp");
  REQUIRE(tmp != nullptr);
  CHECK((*tmp)["type"] == "tmpfs");
  CHECK(Has((*tmp)["options"], "size=" + std::to_string(32u << 20)));
  CHECK(Has((*tmp)["options"], "nosuid"));
  CHECK(Has((*tmp)["options"], "nodev"));
  const json* shm = MountAt(config, "/dev/shm");
  REQUIRE(shm != nullptr);
  CHECK(Has((*shm)["options"], "size=" + std::to_string(32u << 20)));
  const json* pts = MountAt(config, "/dev/pts");
  REQUIRE(pts != nullptr);
  CHECK(Has((*pts)["options"], "newinstance"));
  CHECK(Has((*pts)["options"], "ptmxmode=0666"));

  const json* workspace = MountAt(config, "/workspace");
  REQUIRE(workspace != nullptr);
  CHECK((*workspace)["source"] == spec.workspace_dir);
  CHECK(Has((*workspace)["options"], "rw"));
  CHECK(Has((*workspace)["options"], "nosuid"));
  CHECK(Has((*workspace)["options"], "nodev"));

  for (const char* path : {"/usr", "/etc/ssl/certs"}) {
    INFO(path);
    const json* bind = MountAt(config, path);
    REQUIRE(bind != nullptr);
    CHECK((*bind)["source"] == path);
    CHECK(Has((*bind)["options"], "ro"));
    CHECK(Has((*bind)["options"], "nosuid"));
    CHECK(Has((*bind)["options"], "nodev"));
    // Not recursive: nothing mounted beneath the host directory shows.
    CHECK(Has((*bind)["options"], "bind"));
    CHECK_FALSE(Has((*bind)["options"], "rbind"));
  }
  // Only what the spec asks for: no cgroupfs, no mqueue, nothing else of
  // the host.
  std::set<std::string> destinations;
  for (const json& mount : config["mounts"]) {
    destinations.insert(mount["destination"].get<std::string>());
  }
  CHECK(destinations ==
        std::set<std::string>{"/proc", "/dev", "/dev/pts", "/dev/shm", "/sys",
                              "/usr", "/etc/ssl/certs", "/tmp", "/workspace"});
}

TEST_CASE("bundle config: masked and read-only paths", "[oci][config]") {
  json config = RoundTrip(Spec());
  const json& masked = config["linux"]["maskedPaths"];
  for (const char* path :
       {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
        "/proc/sysrq-trigger", "/proc/latency_stats", "/proc/timer_stats",
        "/proc/acpi", "/proc/scsi", "/sys/firmware"}) {
    INFO(path);
    CHECK(Has(masked, path));
  }
  const json& readonly = config["linux"]["readonlyPaths"];
  for (const char* path :
       {"/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs", "/dev"}) {
    INFO(path);
    CHECK(Has(readonly, path));
  }
}

TEST_CASE("bundle config: limits and cgroups", "[oci][config]") {
  oci::BundleSpec spec = Spec();
  json config = RoundTrip(spec);
  const json& resources = config["linux"]["resources"];
  CHECK(config["linux"]["cgroupsPath"] == "/corral/oci/" + kId);
  CHECK(resources["memory"]["limit"] == (96u << 20));
  CHECK(resources["memory"]["swap"] == (96u << 20));
  CHECK(resources["pids"]["limit"] == 48);
  CHECK(resources["cpu"]["quota"] == 50'000);
  CHECK(resources["cpu"]["period"] == 100'000);
  REQUIRE(resources["devices"].size() == 1);
  CHECK(resources["devices"][0]["allow"] == false);
  CHECK(resources["devices"][0]["access"] == "rwm");

  // Without swap accounting no swap limit (the runtime would fail to write
  // it); on v1 swappiness 0 instead.
  spec.swap_accounting = false;
  config = RoundTrip(spec);
  CHECK_FALSE(config["linux"]["resources"]["memory"].contains("swap"));
  CHECK(config["linux"]["resources"]["memory"]["swappiness"] == 0);
  spec.cgroup_v2 = true;
  config = RoundTrip(spec);
  CHECK_FALSE(config["linux"]["resources"]["memory"].contains("swappiness"));

  // The kernel's minimum quota.
  spec.cpu_millis = 1;
  config = RoundTrip(spec);
  CHECK(config["linux"]["resources"]["cpu"]["quota"] == 1'000);
}

TEST_CASE("seccomp profile names every denied syscall", "[oci][seccomp]") {
  json config = RoundTrip(Spec());
  const json& seccomp = config["linux"]["seccomp"];
  CHECK(seccomp == rc::SeccompProfile());
  CHECK(seccomp["defaultAction"] == "SCMP_ACT_ALLOW");
  CHECK(seccomp["architectures"] ==
        json::array({rc::NativeSeccompArchitecture()}));
  std::map<std::string, std::set<int>> errnos;
  for (const json& rule : seccomp["syscalls"]) {
    CHECK(rule["action"] == "SCMP_ACT_ERRNO");
    for (const json& name : rule["names"]) {
      errnos[name.get<std::string>()].insert(rule["errnoRet"].get<int>());
    }
  }
  for (const std::string& name : corral::linux_runtime::DeniedSyscalls()) {
    INFO(name);
    CHECK(errnos[name] == std::set<int>{EPERM});
  }
  CHECK(errnos["clone3"] == std::set<int>{ENOSYS});
  CHECK(errnos["socket"] == std::set<int>{EAFNOSUPPORT});
  CHECK(errnos["personality"] == std::set<int>{EPERM});
  // clone: one rule per namespace flag, each "flag bit set".
  std::set<uint64_t> clone_masks;
  for (const json& rule : seccomp["syscalls"]) {
    if (rule["names"] != json::array({"clone"})) continue;
    REQUIRE(rule["args"].size() == 1);
    const json& arg = rule["args"][0];
    CHECK(arg["op"] == "SCMP_CMP_MASKED_EQ");
    CHECK(arg["value"] == arg["valueTwo"]);
    clone_masks.insert(arg["value"].get<uint64_t>());
  }
  uint64_t all = 0;
  for (uint64_t mask : clone_masks) all |= mask;
  CHECK(clone_masks.size() == 7);
  CHECK(all == 0x7E020000);
}

namespace {

scmp_compare Operator(const std::string& op) {
  if (op == "SCMP_CMP_EQ") return SCMP_CMP_EQ;
  if (op == "SCMP_CMP_GT") return SCMP_CMP_GT;
  if (op == "SCMP_CMP_MASKED_EQ") return SCMP_CMP_MASKED_EQ;
  FAIL("unexpected operator " << op);
  return SCMP_CMP_EQ;
}

// Compiles a profile the way runc does (libseccomp, one rule per name and
// entry, in order) and returns the BPF program.
std::string CompileProfile(const json& profile) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  REQUIRE(ctx != nullptr);
  REQUIRE(seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH,
                           SCMP_ACT_KILL_PROCESS) == 0);
  for (const json& rule : profile["syscalls"]) {
    uint32_t action = SCMP_ACT_ERRNO(rule["errnoRet"].get<uint32_t>());
    std::vector<scmp_arg_cmp> args;
    if (rule.contains("args")) {
      for (const json& arg : rule["args"]) {
        args.push_back({arg["index"].get<unsigned>(),
                        Operator(arg["op"].get<std::string>()),
                        arg["value"].get<uint64_t>(),
                        arg.value("valueTwo", uint64_t{0})});
      }
    }
    for (const json& name : rule["names"]) {
      int nr = seccomp_syscall_resolve_name(name.get<std::string>().c_str());
      if (nr == __NR_SCMP_ERROR || nr < 0) continue;
      REQUIRE(seccomp_rule_add_array(ctx, action, nr, args.size(),
                                     args.data()) == 0);
    }
  }
  char path[] = "/tmp/corral-oci-bpf-XXXXXX";
  int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  unlink(path);
  REQUIRE(seccomp_export_bpf(ctx, fd) == 0);
  seccomp_release(ctx);
  off_t size = lseek(fd, 0, SEEK_END);
  std::string program(static_cast<size_t>(size), '\0');
  REQUIRE(pread(fd, program.data(), program.size(), 0) == size);
  close(fd);
  return program;
}

}  // namespace

TEST_CASE("seccomp profile compiles to the linux runtime's filter",
          "[oci][seccomp]") {
  // Same BPF, instruction for instruction: the JSON says exactly what the
  // linux filter enforces (only the bad-architecture action, which OCI
  // cannot express, is set here as the linux filter sets it).
  auto filter = corral::linux_runtime::SeccompFilter::Build();
  REQUIRE(filter.ok());
  auto expected = filter->ExportBpf();
  REQUIRE(expected.ok());
  CHECK(CompileProfile(rc::SeccompProfile()) == *expected);
  // And the check can fail: dropping one rule changes the program.
  json fewer = rc::SeccompProfile();
  fewer["syscalls"].erase(fewer["syscalls"].begin() + 1);
  CHECK(CompileProfile(fewer) != *expected);
  CHECK(json::parse(rc::SeccompProfileText()) == rc::SeccompProfile());
}

TEST_CASE("host image skeleton and its binds", "[oci][host_root]") {
  char base[] = "/tmp/corral-oci-skeleton-XXXXXX";
  REQUIRE(mkdtemp(base) != nullptr);
  const std::string dir = std::string(base) + "/root";
  rc::HostRootOptions options;
  options.hostname = "skel";
  options.root_uid = 1'500'000;
  options.root_gid = 1'500'001;
  REQUIRE(rc::WriteHostRootSkeleton(dir, options).ok());

  auto read = [](const std::string& path) {
    std::ifstream in(path);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  CHECK(read(dir + "/etc/hostname") == "skel\n");
  CHECK(read(dir + "/etc/hosts").find("127.0.1.1\tskel") != std::string::npos);
  // Copies of safe files, nothing secret.
  CHECK(read(dir + "/etc/passwd") == read("/etc/passwd"));
  CHECK_FALSE(std::filesystem::exists(dir + "/etc/shadow"));
  CHECK_FALSE(std::filesystem::exists(dir + "/etc/ssl/private"));
  struct stat st {};
  for (const std::string& point : rc::SandboxMountPoints()) {
    INFO(point);
    REQUIRE(lstat((dir + point).c_str(), &st) == 0);
    CHECK(S_ISDIR(st.st_mode));
  }
  REQUIRE(lstat((dir + "/root").c_str(), &st) == 0);
  CHECK(st.st_uid == 1'500'000u);
  CHECK(st.st_gid == 1'500'001u);
  CHECK((st.st_mode & 07777) == 0700);
  CHECK(std::filesystem::read_symlink(dir + "/var/tmp") == "/tmp");
  // Top-level entries as the host has them: symlinks recreated, real
  // directories as mount points with a bind.
  std::vector<rc::HostBind> binds = rc::HostRootBinds();
  for (const char* name : {"/usr", "/bin", "/sbin", "/lib", "/lib64"}) {
    INFO(name);
    struct stat host {};
    if (lstat(name, &host) != 0) continue;
    REQUIRE(lstat((dir + name).c_str(), &st) == 0);
    if (S_ISLNK(host.st_mode)) {
      CHECK(S_ISLNK(st.st_mode));
      CHECK(std::filesystem::read_symlink(dir + name) ==
            std::filesystem::read_symlink(name));
    } else {
      CHECK(S_ISDIR(st.st_mode));
      CHECK(std::find(binds.begin(), binds.end(), rc::HostBind{name, name}) !=
            binds.end());
    }
  }
  // Every bind has its mount point, and none exposes secrets.
  for (const rc::HostBind& bind : binds) {
    INFO(bind.destination);
    REQUIRE(lstat((dir + bind.destination).c_str(), &st) == 0);
    CHECK(S_ISDIR(st.st_mode));
    CHECK(bind.source.find("private") == std::string::npos);
  }
  // The skeleton is traversable by the sandbox's root.
  REQUIRE(stat(dir.c_str(), &st) == 0);
  CHECK((st.st_mode & 0005) == 0005);
  std::filesystem::remove_all(base);
}

TEST_CASE("settings pick the runtime without a PATH lookup", "[oci][state]") {
  std::set<std::string> installed;
  auto executable = [&](const std::string& path) {
    return installed.count(path) > 0;
  };
  auto parse = [&](std::map<std::string, std::string> options) {
    std::vector<std::string> ignored;
    return oci::ParseSettings("/state/runtime/oci", "/bin/agent", "/plugins",
                              options, executable, &ignored);
  };
  installed = {"/usr/sbin/runc", "/usr/bin/crun"};
  auto settings = parse({});
  REQUIRE(settings.ok());
  CHECK(settings->runtime_path == "/usr/sbin/runc");
  CHECK(settings->runtime_kind == oci::RuntimeKind::kRunc);
  CHECK(settings->cgroup_parent == "corral/oci");
  CHECK(settings->helper_path == "/plugins/corral-oci-exec");
  CHECK(settings->StateRoot() == "/state/runtime/oci/state");

  settings = parse({{"runtime", "crun"}, {"cgroup_parent", "x/y"}});
  REQUIRE(settings.ok());
  CHECK(settings->runtime_path == "/usr/bin/crun");
  CHECK(settings->runtime_kind == oci::RuntimeKind::kCrun);
  CHECK(settings->cgroup_parent == "x/y");

  // Default falls back to crun; none installed is a problem, not an error.
  installed = {"/usr/local/bin/crun"};
  settings = parse({});
  REQUIRE(settings.ok());
  CHECK(settings->runtime_path == "/usr/local/bin/crun");
  installed.clear();
  settings = parse({});
  REQUIRE(settings.ok());
  CHECK(settings->runtime_path.empty());
  CHECK(settings->runtime_problem.find("neither runc nor crun") !=
        std::string::npos);
  settings = parse({{"runtime", "runc"}});
  REQUIRE(settings.ok());
  CHECK(settings->runtime_problem.find("runc is not installed") !=
        std::string::npos);

  installed = {"/opt/rt/my-crun"};
  settings = parse({{"runtime", "/opt/rt/my-crun"}});
  REQUIRE(settings.ok());
  CHECK(settings->runtime_path == "/opt/rt/my-crun");
  CHECK(settings->runtime_kind == oci::RuntimeKind::kCrun);

  // A relative name is never looked up in PATH.
  CHECK(parse({{"runtime", "bin/runc"}}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(parse({{"runtime", "youki"}}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  CHECK(parse({{"cgroup_parent", "../x"}}).status().code() ==
        absl::StatusCode::kInvalidArgument);
  std::vector<std::string> ignored;
  REQUIRE(oci::ParseSettings("/r", "/a", "/p", {{"colour", "red"}}, executable,
                             &ignored)
              .ok());
  CHECK(ignored == std::vector<std::string>{"colour"});
}

TEST_CASE("oci sandbox state round trip and refusals", "[oci][state]") {
  oci::SandboxRecord record;
  record.id = kId;
  record.runtime_path = "/usr/bin/crun";
  record.runtime_kind = oci::RuntimeKind::kCrun;
  record.sandbox_dir = "/state/runtime/oci/" + kId;
  record.state_root = "/state/runtime/oci/state";
  record.cgroup_parent = "corral/oci";
  record.init_pid = 4242;
  record.init_start_time = 987654321;
  record.user_namespace = true;
  auto parsed = oci::SandboxRecord::Parse(record.Serialize());
  REQUIRE(parsed.ok());
  CHECK(parsed->Serialize() == record.Serialize());
  CHECK(parsed->runtime_kind == oci::RuntimeKind::kCrun);
  CHECK(parsed->init_pid == 4242);
  CHECK(parsed->init_start_time == 987654321u);
  CHECK(parsed->user_namespace);

  auto with = [&](const std::string& key, const std::string& value) {
    std::string text = record.Serialize();
    size_t at = text.find("\n" + key + "=");
    REQUIRE(at != std::string::npos);
    size_t end = text.find('\n', at + 1);
    text.replace(at + 1, end - at - 1, key + "=" + value);
    return oci::SandboxRecord::Parse(text);
  };
  CHECK_FALSE(with("sandbox_dir", "/state/runtime/oci").ok());
  CHECK_FALSE(with("sandbox_dir", "/state/../etc/" + kId).ok());
  CHECK_FALSE(with("sandbox_dir", "relative/" + kId).ok());
  CHECK_FALSE(with("state_root", "/a/../b").ok());
  CHECK_FALSE(with("runtime", "runc").ok());
  CHECK_FALSE(with("runtime_kind", "youki").ok());
  CHECK_FALSE(with("cgroup_parent", "../..").ok());
  CHECK_FALSE(with("id", "not-an-id").ok());
  CHECK_FALSE(with("init_pid", "1").ok());
  CHECK_FALSE(oci::SandboxRecord::Parse("version=2\n").ok());
  CHECK_FALSE(oci::SandboxRecord::Parse("").ok());
}
