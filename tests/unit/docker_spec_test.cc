// Unit tests of the docker runtime's pure parts: the container create body,
// the engine answers it interprets, the handle state, the cgroup lookup and
// the image tar.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "backends/docker/container_spec.h"
#include "backends/docker/docker_state.h"
#include "backends/docker/engine.h"
#include "backends/docker/rootfs_tar.h"

namespace dk = corral::docker;
using nlohmann::json;

namespace {

dk::ContainerPlan Plan() {
  dk::ContainerPlan plan;
  plan.id = "0123456789abcdef0123456789abcdef";
  plan.daemon = "feedfacecafebeef";
  plan.image = "corral/feedfacecafebeef:0011223344556677";
  plan.hostname = "box";
  plan.workspace_dir = "/var/lib/corral/ws/a:b";
  plan.agent_path = "/usr/lib/corral/corral-agent";
  plan.run_dir = "/run/corral/docker/0123/run";
  plan.cpu_millis = 1500;
  plan.memory_bytes = 256ull << 20;
  plan.pids = 64;
  plan.tmp_bytes = 32ull << 20;
  plan.seccomp_option = "seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}";
  return plan;
}

const json* FindMount(const json& mounts, const std::string& target) {
  for (const json& mount : mounts) {
    if (mount["Target"] == target) return &mount;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("docker create body maps the sandbox spec", "[docker][unit]") {
  dk::ContainerPlan plan = Plan();
  plan.extra_binds = {{"/usr", "/usr"}, {"/etc/ssl", "/etc/ssl"}};
  plan.cgroup_v1 = true;
  json body = dk::BuildCreateBody(plan);

  CHECK(body["Image"] == plan.image);
  CHECK(body["Hostname"] == "box");
  CHECK(body["User"] == "0:0");
  CHECK(body["Entrypoint"] ==
        json::array({"/.corral/agent", "--listen", "/.corral/run/agent.sock"}));
  CHECK(body["Cmd"] == json::array());
  CHECK(body["NetworkDisabled"] == true);
  CHECK(body["Tty"] == false);
  CHECK(body["Labels"] == json({{"corral.sandbox", plan.id},
                                {"corral.daemon", "feedfacecafebeef"}}));
  // Only PATH and HOME.
  REQUIRE(body["Env"].size() == 2);
  CHECK(body["Env"][1] == "HOME=/");

  const json& host = body["HostConfig"];
  CHECK(host["NetworkMode"] == "none");
  CHECK(host["ReadonlyRootfs"] == true);
  CHECK(host["Memory"] == (256ll << 20));
  CHECK(host["MemorySwap"] == (256ll << 20));
  CHECK(host["MemorySwappiness"] == 0);
  CHECK(host["PidsLimit"] == 64);
  CHECK(host["NanoCpus"] == 1'500'000'000ll);
  CHECK(host["CapDrop"] == json::array({"ALL"}));
  CHECK(host["CapAdd"] == json::array());
  CHECK(host["Privileged"] == false);
  CHECK(host["Init"] == false);
  CHECK(host["AutoRemove"] == false);
  CHECK(host["RestartPolicy"]["Name"] == "no");
  CHECK(host["ShmSize"] == (32ll << 20));
  CHECK(host["Tmpfs"]["/tmp"] ==
        "rw,exec,nosuid,nodev,mode=1777,size=" + std::to_string(32ull << 20));
  CHECK(host["SecurityOpt"] ==
        json::array({"no-new-privileges", plan.seccomp_option}));
  CHECK_FALSE(host.contains("OomScoreAdj"));
  CHECK_FALSE(host.contains("Binds"));

  // Masked and read-only /proc as in the linux runtime.
  std::set<std::string> masked(host["MaskedPaths"].begin(),
                               host["MaskedPaths"].end());
  for (const char* path : {"/proc/kcore", "/proc/keys", "/proc/sysrq-trigger",
                           "/proc/timer_list", "/sys/firmware", "/proc/acpi"}) {
    CHECK(masked.count(path));
  }
  std::set<std::string> readonly(host["ReadonlyPaths"].begin(),
                                 host["ReadonlyPaths"].end());
  CHECK(readonly.count("/proc/sys"));

  // Mounts: workspace rw, agent ro, run dir rw, host binds ro and not
  // recursive; a ':' in a host path is kept whole.
  const json& mounts = host["Mounts"];
  REQUIRE(mounts.size() == 5);
  const json* workspace = FindMount(mounts, "/workspace");
  REQUIRE(workspace != nullptr);
  CHECK((*workspace)["Source"] == "/var/lib/corral/ws/a:b");
  CHECK((*workspace)["ReadOnly"] == false);
  CHECK((*workspace)["Type"] == "bind");
  const json* agent = FindMount(mounts, "/.corral/agent");
  REQUIRE(agent != nullptr);
  CHECK((*agent)["Source"] == plan.agent_path);
  CHECK((*agent)["ReadOnly"] == true);
  const json* run = FindMount(mounts, "/.corral/run");
  REQUIRE(run != nullptr);
  CHECK((*run)["ReadOnly"] == false);
  const json* usr = FindMount(mounts, "/usr");
  REQUIRE(usr != nullptr);
  CHECK((*usr)["ReadOnly"] == true);
  CHECK((*usr)["BindOptions"]["NonRecursive"] == true);
  CHECK(FindMount(mounts, "/etc/ssl") != nullptr);
}

TEST_CASE("docker create body per engine and capability", "[docker][unit]") {
  dk::ContainerPlan plan = Plan();
  plan.seccomp_option.clear();
  plan.oom_score_adj = -1000;
  plan.podman = true;
  json body = dk::BuildCreateBody(plan);
  const json& host = body["HostConfig"];
  // Without a profile, the engine's default applies; no-new-privileges
  // always.
  CHECK(host["SecurityOpt"] == json::array({"no-new-privileges"}));
  CHECK(host["OomScoreAdj"] == -1000);
  CHECK_FALSE(host.contains("CgroupnsMode"));
  CHECK_FALSE(host.contains("MemorySwappiness"));
  plan.podman = false;
  CHECK(dk::BuildCreateBody(plan)["HostConfig"]["CgroupnsMode"] == "private");
}

TEST_CASE("docker engine info: Docker, Podman, security options",
          "[docker][unit]") {
  auto docker = dk::ParseEngineInfo(
      R"({"Version":"20.10.24","ApiVersion":"1.41",
          "Components":[{"Name":"Engine","Version":"20.10.24"}]})",
      R"({"CgroupDriver":"cgroupfs","CgroupVersion":"1","Driver":"overlay2",
          "SecurityOptions":["name=seccomp,profile=default"]})");
  REQUIRE(docker.ok());
  CHECK_FALSE(docker->podman);
  CHECK(docker->seccomp);
  CHECK_FALSE(docker->userns);
  CHECK(docker->cgroup_version == "1");

  auto podman = dk::ParseEngineInfo(
      R"({"Version":"4.3.1","Components":[{"Name":"Podman Engine"}]})",
      R"({"SecurityOptions":["name=seccomp,profile=default",
                             "name=userns","name=rootless"]})");
  REQUIRE(podman.ok());
  CHECK(podman->podman);
  CHECK(podman->userns);
  CHECK(podman->rootless);

  // Not JSON, wrong types, missing version: errors, not crashes.
  CHECK_FALSE(dk::ParseEngineInfo("<html>", "{}").ok());
  CHECK_FALSE(dk::ParseEngineInfo("{}", "{}").ok());
  CHECK_FALSE(dk::ParseEngineInfo("[1,2]", "{}").ok());
  auto odd =
      dk::ParseEngineInfo(R"({"Version":"1","Components":"x"})",
                          R"({"SecurityOptions":[1,{"a":2},"name=seccomp"]})");
  REQUIRE(odd.ok());
  CHECK(odd->seccomp);
}

TEST_CASE("docker container inspect parsing", "[docker][unit]") {
  auto state = dk::ParseContainerInspect(
      R"({"Id":"abc","State":{"Running":true,"Status":"running","Pid":42,
          "ExitCode":0,"OOMKilled":false},
          "Config":{"Labels":{"corral.sandbox":"x","n":1}}})");
  REQUIRE(state.ok());
  CHECK(state->running);
  CHECK(state->pid == 42);
  CHECK(state->labels.at("corral.sandbox") == "x");
  CHECK(state->labels.count("n") == 0);
  CHECK_FALSE(dk::ParseContainerInspect(R"({"State":{}})").ok());
  CHECK_FALSE(dk::ParseContainerInspect("garbage").ok());
  auto weird = dk::ParseContainerInspect(
      R"({"Id":"a","State":{"Running":"yes","Pid":"7"}})");
  REQUIRE(weird.ok());
  CHECK_FALSE(weird->running);
  CHECK(weird->pid == 0);
}

TEST_CASE("docker handle state round trip and refusals", "[docker][unit]") {
  dk::DockerState state;
  state.id = "0123456789abcdef0123456789abcdef";
  state.container_id = std::string(64, 'a');
  state.container_name = dk::ContainerName("feedfacecafebeef", state.id);
  state.sandbox_dir = "/var/lib/corral/runtime/docker/" + state.id;
  state.cgroups.memory = "/sys/fs/cgroup/memory/docker/" + state.container_id;
  state.cgroups.pids = "/sys/fs/cgroup/pids/docker/" + state.container_id;
  auto parsed = dk::DockerState::Parse(state.Serialize());
  REQUIRE(parsed.ok());
  CHECK(parsed->container_id == state.container_id);
  CHECK(parsed->container_name ==
        "corral-feedfacecafebeef-0123456789abcdef0123456789abcdef");
  CHECK(parsed->sandbox_dir == state.sandbox_dir);
  CHECK(parsed->cgroups.memory == state.cgroups.memory);

  auto with = [&](const std::string& from, const std::string& to) {
    std::string text = state.Serialize();
    text.replace(text.find(from), from.size(), to);
    return dk::DockerState::Parse(text).ok();
  };
  // A damaged state must not make destroy remove anything else.
  CHECK_FALSE(with("sandbox_dir=/var", "sandbox_dir=var"));
  CHECK_FALSE(with("/docker/" + state.id, "/docker/../" + state.id));
  CHECK_FALSE(with("/docker/" + state.id, "/other"));
  CHECK_FALSE(with("container=aaaa", "container=../a"));
  CHECK_FALSE(with("version=1", "version=2"));
  CHECK_FALSE(with("cgroup.mode=v1", "cgroup.mode=v3"));
  CHECK_FALSE(dk::DockerState::Parse(state.Serialize() + "id=x\n").ok());
  CHECK_FALSE(dk::DockerState::Parse("").ok());
}

TEST_CASE("docker finds a container's cgroups from /proc/<pid>/cgroup",
          "[docker][unit]") {
  corral::linux_runtime::CgroupLayout v1;
  v1.mode = corral::linux_runtime::CgroupMode::kV1;
  v1.unified_mount = "/sys/fs/cgroup/unified";
  v1.v1_mounts = {{"memory", "/sys/fs/cgroup/memory"},
                  {"pids", "/sys/fs/cgroup/pids"},
                  {"cpu", "/sys/fs/cgroup/cpu,cpuacct"},
                  {"cpuacct", "/sys/fs/cgroup/cpu,cpuacct"}};
  auto cgroups = dk::CgroupsFromProc(
      "12:pids:/docker/abc\n"
      "7:cpu,cpuacct:/docker/abc\n"
      "5:memory:/docker/abc\n"
      "1:name=systemd:/docker/abc\n"
      "0::/docker/abc\n",
      v1);
  REQUIRE(cgroups.ok());
  CHECK(cgroups->memory == "/sys/fs/cgroup/memory/docker/abc");
  CHECK(cgroups->pids == "/sys/fs/cgroup/pids/docker/abc");
  CHECK(cgroups->cpuacct == "/sys/fs/cgroup/cpu,cpuacct/docker/abc");
  CHECK(cgroups->unified == "/sys/fs/cgroup/unified/docker/abc");
  CHECK_FALSE(dk::CgroupsFromProc("0::/docker/abc\n", v1).ok());

  corral::linux_runtime::CgroupLayout v2;
  v2.mode = corral::linux_runtime::CgroupMode::kV2;
  v2.unified_mount = "/sys/fs/cgroup";
  auto unified = dk::CgroupsFromProc("0::/system.slice/docker-abc.scope\n", v2);
  REQUIRE(unified.ok());
  CHECK(unified->memory == "/sys/fs/cgroup/system.slice/docker-abc.scope");
  CHECK(unified->pids == unified->memory);
  CHECK_FALSE(dk::CgroupsFromProc("0::/../x\n", v2).ok());
}

TEST_CASE("docker image tar: owners root, no setuid, no devices, stable",
          "[docker][unit]") {
  char base[] = "/tmp/corral-docker-tar-XXXXXX";
  REQUIRE(mkdtemp(base) != nullptr);
  std::string root = std::string(base) + "/rootfs";
  std::filesystem::create_directories(root + "/bin");
  std::filesystem::create_directories(root + "/proc");
  { std::ofstream(root + "/bin/tool") << "#!/bin/sh\necho hi\n"; }
  chmod((root + "/bin/tool").c_str(), 04755);
  chown((root + "/bin/tool").c_str(), 1234, 5678);
  REQUIRE(symlink("tool", (root + "/bin/link").c_str()) == 0);
  REQUIRE(mkfifo((root + "/fifo").c_str(), 0600) == 0);

  std::string tar;
  auto write = [&](absl::string_view piece) {
    tar.append(piece.data(), piece.size());
    return absl::OkStatus();
  };
  REQUIRE(dk::WriteDirectoryTar(root, write).ok());

  struct Seen {
    int type;
    int mode;
    int64_t uid, gid;
    std::string link, data;
  };
  std::map<std::string, Seen> seen;
  archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  REQUIRE(archive_read_open_memory(a, tar.data(), tar.size()) == ARCHIVE_OK);
  archive_entry* entry;
  while (archive_read_next_header(a, &entry) == ARCHIVE_OK) {
    Seen s{static_cast<int>(archive_entry_filetype(entry)),
           static_cast<int>(archive_entry_perm(entry)),
           archive_entry_uid(entry),
           archive_entry_gid(entry),
           archive_entry_symlink(entry) ? archive_entry_symlink(entry) : "",
           ""};
    char buffer[256];
    la_ssize_t n;
    while ((n = archive_read_data(a, buffer, sizeof(buffer))) > 0) {
      s.data.append(buffer, static_cast<size_t>(n));
    }
    std::string name = archive_entry_pathname(entry);
    if (!name.empty() && name.back() == '/') name.pop_back();
    seen[name] = s;
  }
  archive_read_free(a);

  REQUIRE(seen.count("bin/tool"));
  CHECK(seen["bin/tool"].data == "#!/bin/sh\necho hi\n");
  CHECK(seen["bin/tool"].mode == 0755);  // setuid stripped
  CHECK(seen["bin/tool"].uid == 0);
  CHECK(seen["bin/tool"].gid == 0);
  CHECK(seen["bin/link"].type == AE_IFLNK);
  CHECK(seen["bin/link"].link == "tool");
  CHECK(seen["proc"].type == AE_IFDIR);
  CHECK(seen.count("fifo") == 0);

  // The same tree gives the same bytes (sorted entries) and, with
  // zero_mtime, the same bytes after a touch.
  std::string again;
  auto write_again = [&](absl::string_view piece) {
    again.append(piece.data(), piece.size());
    return absl::OkStatus();
  };
  REQUIRE(dk::WriteDirectoryTar(root, write_again).ok());
  CHECK(again == tar);
  std::string zero1, zero2;
  REQUIRE(dk::WriteDirectoryTar(
              root,
              [&](absl::string_view p) {
                zero1.append(p.data(), p.size());
                return absl::OkStatus();
              },
              true)
              .ok());
  timespec times[2] = {{1000, 0}, {1000, 0}};
  utimensat(AT_FDCWD, (root + "/bin/tool").c_str(), times, 0);
  REQUIRE(dk::WriteDirectoryTar(
              root,
              [&](absl::string_view p) {
                zero2.append(p.data(), p.size());
                return absl::OkStatus();
              },
              true)
              .ok());
  CHECK(zero1 == zero2);

  // A writer's failure stops the walk and is the error returned.
  auto failing = [](absl::string_view) {
    return absl::UnavailableError("engine went away");
  };
  absl::Status failed = dk::WriteDirectoryTar(root, failing);
  CHECK(absl::IsUnavailable(failed));

  // The key changes when the directory is replaced by a new one.
  auto key = dk::DirectoryImageKey(root);
  REQUIRE(key.ok());
  CHECK(key->size() == 16);
  std::filesystem::rename(root, std::string(base) + "/old");
  std::filesystem::create_directories(root);
  auto replaced = dk::DirectoryImageKey(root);
  REQUIRE(replaced.ok());
  CHECK(*replaced != *key);
  CHECK_FALSE(dk::DirectoryImageKey(std::string(base) + "/none").ok());
  std::filesystem::remove_all(base);
}
