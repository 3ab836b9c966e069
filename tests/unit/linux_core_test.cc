// Unit tests of the linux runtime's proto-free pieces: mountinfo parsing,
// sandbox state, the launcher contract, /proc stat parsing, the sealed agent
// image and the seccomp filter.
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <fstream>
#include <string>

#include "backends/linux/agent_image.h"
#include "backends/linux/cgroups.h"
#include "backends/linux/fs_util.h"
#include "backends/linux/launch_config.h"
#include "backends/linux/sandbox_state.h"
#include "backends/linux/seccomp_policy.h"
#include "corral/remove_tree.h"

namespace lr = corral::linux_runtime;

namespace {

constexpr char kHybridMountinfo[] =
    "30 22 0:27 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
    "31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
    "32 30 0:29 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup "
    "rw,cpuacct\n"
    "34 30 0:31 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup "
    "rw,memory\n"
    "36 30 0:33 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup "
    "rw,freezer\n"
    "38 30 0:35 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n"
    "39 30 0:36 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup "
    "rw,name=systemd\n"
    "40 30 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n";

constexpr char kV2Mountinfo[] =
    "22 1 0:20 / /sys rw,nosuid shared:7 - sysfs sysfs rw\n"
    "26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec shared:9 - cgroup2 "
    "cgroup2 rw,nsdelegate,memory_recursiveprot\n";

// Runs `body` in a forked child and returns its exit status (the child must
// _exit with 0 for success). Used where a test changes the process for good
// (seccomp).
int InChild(const std::function<int()>& body) {
  pid_t pid = fork();
  if (pid == 0) _exit(body());
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

}  // namespace

TEST_CASE("mountinfo of a hybrid host gives v1 with a cgroup2 mount",
          "[linux][cgroups]") {
  auto layout = lr::CgroupLayout::Parse(
      kHybridMountinfo, [](const std::string&) { return std::string(); });
  REQUIRE(layout.ok());
  CHECK(layout->mode == lr::CgroupMode::kV1);
  CHECK(layout->Describe() == "v1-hybrid");
  CHECK(layout->unified_mount == "/sys/fs/cgroup/unified");
  CHECK(layout->v1_mounts.at("memory") == "/sys/fs/cgroup/memory");
  CHECK(layout->v1_mounts.at("cpu") == "/sys/fs/cgroup/cpu");
  CHECK(layout->v1_mounts.at("freezer") == "/sys/fs/cgroup/freezer");

  auto cgroups = lr::SandboxCgroups::For(*layout, "corral", "abc");
  CHECK(cgroups.memory == "/sys/fs/cgroup/memory/corral/abc");
  CHECK(cgroups.cpuacct == "/sys/fs/cgroup/cpuacct/corral/abc");
  CHECK(cgroups.unified == "/sys/fs/cgroup/unified/corral/abc");
  CHECK(cgroups.Directories().size() == 6);
  CHECK(cgroups.ProcsFiles().front() ==
        "/sys/fs/cgroup/memory/corral/abc/cgroup.procs");
}

TEST_CASE("mountinfo of a pure v2 host gives v2", "[linux][cgroups]") {
  auto layout = lr::CgroupLayout::Parse(kV2Mountinfo, [](const std::string& m) {
    return m == "/sys/fs/cgroup" ? std::string("cpuset cpu io memory pids\n")
                                 : std::string();
  });
  REQUIRE(layout.ok());
  CHECK(layout->mode == lr::CgroupMode::kV2);
  CHECK(layout->Describe() == "v2");
  auto cgroups = lr::SandboxCgroups::For(*layout, "a/b", "x");
  CHECK(cgroups.Directories() ==
        std::vector<std::string>{"/sys/fs/cgroup/a/b/x"});
}

TEST_CASE("mountinfo without memory controller is unavailable",
          "[linux][cgroups]") {
  auto layout = lr::CgroupLayout::Parse(
      kV2Mountinfo, [](const std::string&) { return std::string("cpu io"); });
  REQUIRE_FALSE(layout.ok());
  CHECK(absl::IsUnavailable(layout.status()));
  CHECK(std::string(layout.status().message()).find("memory") !=
        std::string::npos);
}

TEST_CASE("mountinfo escapes in mount points are decoded", "[linux][cgroups]") {
  std::string info =
      "1 0 0:1 / /c\\040g/mem rw - cgroup cgroup rw,memory\n"
      "2 0 0:2 / /c\\040g/pids rw - cgroup cgroup rw,pids\n"
      "3 0 0:3 / /c\\040g/cpu rw - cgroup cgroup rw,cpu,cpuacct\n";
  auto layout =
      lr::CgroupLayout::Parse(info, [](const std::string&) { return ""; });
  REQUIRE(layout.ok());
  CHECK(layout->v1_mounts.at("memory") == "/c g/mem");
  CHECK(layout->v1_mounts.at("cpuacct") == "/c g/cpu");
  CHECK(layout->Describe() == "v1");
}

TEST_CASE("this host's cgroups are detected", "[linux][cgroups]") {
  auto layout = lr::CgroupLayout::Detect();
  REQUIRE(layout.ok());
  if (layout->mode == lr::CgroupMode::kV1) {
    CHECK(layout->v1_mounts.count("memory") == 1);
    CHECK(layout->v1_mounts.count("pids") == 1);
  } else {
    CHECK_FALSE(layout->unified_mount.empty());
  }
}

TEST_CASE("flat keyed cgroup files", "[linux][cgroups]") {
  CHECK(lr::FlatKeyedValue("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n",
                           "oom_kill") == 3);
  CHECK(lr::FlatKeyedValue("low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\n",
                           "oom") == 2);
  CHECK(lr::FlatKeyedValue("usage_usec 1234\n", "oom_kill") == 0);
}

TEST_CASE("sandbox state round trip", "[linux][state]") {
  lr::SandboxState state;
  state.id = "0123456789abcdef0123456789abcdef";
  state.init_pid = 4242;
  state.init_start_time = 987654321;
  state.user_namespace = true;
  state.sandbox_dir = "/var/lib/corral/runtime/linux/" + state.id;
  state.cgroups.mode = lr::CgroupMode::kV1;
  state.cgroups.memory = "/sys/fs/cgroup/memory/corral/" + state.id;
  state.cgroups.pids = "/sys/fs/cgroup/pids/corral/" + state.id;
  state.cgroups.freezer = "/sys/fs/cgroup/freezer/corral/" + state.id;

  auto parsed = lr::SandboxState::Parse(state.Serialize());
  REQUIRE(parsed.ok());
  CHECK(parsed->id == state.id);
  CHECK(parsed->init_pid == 4242);
  CHECK(parsed->init_start_time == 987654321);
  CHECK(parsed->user_namespace);
  CHECK(parsed->sandbox_dir == state.sandbox_dir);
  CHECK(parsed->SocketPath() == state.sandbox_dir + "/agent.sock");
  CHECK(parsed->cgroups.memory == state.cgroups.memory);
  CHECK(parsed->cgroups.freezer == state.cgroups.freezer);
  CHECK(parsed->cgroups.cpu.empty());
}

TEST_CASE("sandbox state rejects what could make destroy remove others",
          "[linux][state]") {
  lr::SandboxState state;
  state.id = "0123456789abcdef0123456789abcdef";
  state.init_pid = 1;
  state.sandbox_dir = "/run/x/" + state.id;
  state.cgroups.memory = "/sys/fs/cgroup/memory/corral/" + state.id;
  std::string good = state.Serialize();
  REQUIRE(lr::SandboxState::Parse(good).ok());

  auto replace = [&](const std::string& from, const std::string& to) {
    std::string text = good;
    text.replace(text.find(from), from.size(), to);
    return lr::SandboxState::Parse(text);
  };
  CHECK_FALSE(replace("sandbox_dir=/run/x/", "sandbox_dir=/run/x/../../").ok());
  CHECK_FALSE(replace("sandbox_dir=/run/x/", "sandbox_dir=run/").ok());
  CHECK_FALSE(replace("/sys/fs/cgroup/memory/corral/",
                      "/sys/fs/cgroup/memory/corral/../../")
                  .ok());
  CHECK_FALSE(replace("version=1", "version=9").ok());
  CHECK_FALSE(replace("init_pid=1", "init_pid=-5").ok());
  CHECK_FALSE(lr::SandboxState::Parse("").ok());
  CHECK_FALSE(lr::SandboxState::Parse(good + "id=other\n").ok());
}

TEST_CASE("launch config round trip through argv", "[linux][launch]") {
  lr::LaunchConfig config;
  config.id = "0123456789abcdef0123456789abcdef";
  config.hostname = "box";
  config.rootfs_dir = "/images/busybox";
  config.staging_dir = "/run/corral/x/root";
  config.workspace_dir = "/var/lib/corral/ws dir";
  config.tmp_bytes = 1 << 20;
  config.user_namespace = true;
  config.host_uid = 100000;
  config.host_gid = 100001;
  config.cgroup_procs = {"/a/cgroup.procs", "/b/cgroup.procs"};
  std::vector<std::string> args = config.ToArgs();
  std::vector<absl::string_view> views(args.begin(), args.end());
  auto parsed = lr::LaunchConfig::FromArgs(views);
  REQUIRE(parsed.ok());
  CHECK(parsed->id == config.id);
  CHECK_FALSE(parsed->rootfs_host);
  CHECK(parsed->rootfs_dir == "/images/busybox");
  CHECK(parsed->workspace_dir == "/var/lib/corral/ws dir");
  CHECK(parsed->tmp_bytes == 1 << 20);
  CHECK(parsed->user_namespace);
  CHECK(parsed->host_uid == 100000);
  CHECK(parsed->host_gid == 100001);
  CHECK(parsed->cgroup_procs == config.cgroup_procs);

  views.push_back("--rootfs-host");
  CHECK_FALSE(lr::LaunchConfig::FromArgs(views).ok());
  CHECK_FALSE(lr::LaunchConfig::FromArgs({"--bogus", "1"}).ok());
}

TEST_CASE("launch reports", "[linux][launch]") {
  lr::LaunchReport ok;
  ok.ok = true;
  ok.pid = 77;
  ok.start_time = 12345;
  auto parsed = lr::LaunchReport::Parse(ok.Serialize());
  REQUIRE(parsed.ok());
  CHECK(parsed->ok);
  CHECK(parsed->pid == 77);
  CHECK(parsed->start_time == 12345);

  lr::LaunchReport failed;
  failed.error = absl::FailedPreconditionError("mount x:\nNo such file");
  parsed = lr::LaunchReport::Parse(failed.Serialize());
  REQUIRE(parsed.ok());
  CHECK_FALSE(parsed->ok);
  CHECK(absl::IsFailedPrecondition(parsed->error));
  CHECK(std::string(parsed->error.message()).find("mount x: No such file") !=
        std::string::npos);

  CHECK_FALSE(lr::LaunchReport::Parse("").ok());
  CHECK_FALSE(lr::LaunchReport::Parse("ok 5").ok());
  CHECK_FALSE(lr::LaunchReport::Parse("ok x 1\n").ok());
}

TEST_CASE("proc stat parsing survives odd command names", "[linux][proc]") {
  std::string text =
      "123 (a) b) (c) S 1 123 123 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 "
      "55555 1000 10 18446744073709551615\n";
  auto stat = lr::ParseProcStat(text);
  REQUIRE(stat.ok());
  CHECK(stat->state == 'S');
  CHECK(stat->start_time == 55555);
  CHECK_FALSE(lr::ParseProcStat("1 (x) S 1 2").ok());

  auto self = lr::ReadProcStat(getpid());
  REQUIRE(self.ok());
  CHECK(self->state == 'R');
  CHECK(self->start_time > 0);
}

TEST_CASE("sandbox ids", "[linux][proc]") {
  CHECK(lr::ValidSandboxId("0123456789abcdef0123456789abcdef"));
  CHECK_FALSE(lr::ValidSandboxId("0123456789ABCDEF0123456789abcdef"));
  CHECK_FALSE(lr::ValidSandboxId("../3456789abcdef0123456789abcdef"));
  CHECK_FALSE(lr::ValidSandboxId(""));
}

TEST_CASE("RemoveTree removes links, not their targets", "[linux][fs]") {
  char base_template[] = "/tmp/corral-linux-rm-XXXXXX";
  REQUIRE(mkdtemp(base_template) != nullptr);
  std::string base = base_template;
  std::string keep = base + "/keep";
  std::string tree = base + "/tree";
  REQUIRE(mkdir(keep.c_str(), 0700) == 0);
  std::ofstream(keep + "/precious") << "x";
  REQUIRE(mkdir(tree.c_str(), 0700) == 0);
  REQUIRE(mkdir((tree + "/sub").c_str(), 0700) == 0);
  std::ofstream(tree + "/sub/file") << "y";
  REQUIRE(symlink(keep.c_str(), (tree + "/link").c_str()) == 0);

  REQUIRE(corral::RemoveTree(tree).ok());
  CHECK(access(tree.c_str(), F_OK) != 0);
  CHECK(access((keep + "/precious").c_str(), F_OK) == 0);
  CHECK(corral::RemoveTree(tree).ok());  // missing is fine
  // A symlink given as the tree itself is removed, its target kept.
  const std::string top_link = base + "/top";
  REQUIRE(symlink(keep.c_str(), top_link.c_str()) == 0);
  REQUIRE(corral::RemoveTree(top_link).ok());
  CHECK(access(top_link.c_str(), F_OK) != 0);
  CHECK(access((keep + "/precious").c_str(), F_OK) == 0);
  REQUIRE(corral::RemoveTree(base).ok());
}

TEST_CASE("RemoveTree never empties a filesystem mounted inside the tree",
          "[linux][fs]") {
  if (geteuid() != 0) {
    WARN("skipped: needs root to mount");
    return;
  }
  char base_template[] = "/tmp/corral-linux-rm-XXXXXX";
  REQUIRE(mkdtemp(base_template) != nullptr);
  const std::string base = base_template;
  const std::string mounted = base + "/tree/mounted";
  REQUIRE(mkdir((base + "/tree").c_str(), 0700) == 0);
  REQUIRE(mkdir(mounted.c_str(), 0700) == 0);
  std::ofstream(base + "/tree/mine") << "x";
  REQUIRE(mount("tmpfs", mounted.c_str(), "tmpfs", 0, "size=1m") == 0);
  std::ofstream(mounted + "/theirs") << "y";
  const absl::Status removed = corral::RemoveTree(base + "/tree");
  CHECK_FALSE(removed.ok());
  // rmdir of the mount point: EBUSY, naming it.
  CHECK_THAT(std::string(removed.message()),
             Catch::Contains("rmdir") && Catch::Contains("tree/mounted"));
  CHECK(access((mounted + "/theirs").c_str(), F_OK) == 0);
  CHECK(access((base + "/tree/mine").c_str(), F_OK) != 0);
  REQUIRE(umount(mounted.c_str()) == 0);
  CHECK(corral::RemoveTree(base).ok());
  CHECK(access(base.c_str(), F_OK) != 0);
}

TEST_CASE("the agent image is a sealed, executable memfd", "[linux][image]") {
  auto image = lr::MakeSealedCopy("/bin/true");
  REQUIRE(image.ok());
  int fd = image->get();
  int seals = fcntl(fd, F_GET_SEALS);
  CHECK((seals & F_SEAL_WRITE) != 0);
  CHECK((seals & F_SEAL_SEAL) != 0);
  CHECK(write(fd, "x", 1) < 0);
  CHECK(errno == EPERM);
  CHECK(ftruncate(fd, 0) != 0);
  // Reopening through /proc for writing still cannot change it.
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  int writable = open(path.c_str(), O_WRONLY);
  if (writable >= 0) {
    CHECK(write(writable, "x", 1) < 0);
    close(writable);
  }
  struct stat original {
  }, copy{};
  REQUIRE(stat("/bin/true", &original) == 0);
  REQUIRE(fstat(fd, &copy) == 0);
  CHECK(copy.st_size == original.st_size);
  CHECK((fcntl(fd, F_GETFD) & FD_CLOEXEC) != 0);

  auto cached1 = lr::AgentImage("/bin/true");
  auto cached2 = lr::AgentImage("/bin/true");
  REQUIRE(cached1.ok());
  REQUIRE(cached2.ok());
  CHECK(cached1->get() == cached2->get());
  CHECK_FALSE(lr::MakeSealedCopy("/nonexistent/agent").ok());
  CHECK_FALSE(lr::MakeSealedCopy("/tmp").ok());
}

TEST_CASE("a malformed seccomp program is refused", "[linux][seccomp]") {
  CHECK_FALSE(lr::SeccompFilter::LoadBpf("").ok());
  CHECK_FALSE(lr::SeccompFilter::LoadBpf("1234567").ok());
}

TEST_CASE("the seccomp filter denies what Docker denies", "[linux][seccomp]") {
  auto filter = lr::SeccompFilter::Build();
  INFO(filter.status().ToString());
  REQUIRE(filter.ok());
  auto program = filter->ExportBpf();
  REQUIRE(program.ok());
  CHECK(program->size() % 8 == 0);
  // Both ways in: libseccomp's own load, and the exported program as the
  // launcher uses it.
  const bool exported = GENERATE(false, true);
  INFO("exported program: " << exported);
  int status = InChild([&]() -> int {
    if (exported) {
      if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return 9;
      if (!lr::SeccompFilter::LoadBpf(*program).ok()) return 10;
    } else if (!filter->Load().ok()) {
      return 10;
    }
    if (unshare(CLONE_NEWUSER) == 0 || errno != EPERM) return 11;
    if (mount("none", "/tmp", "tmpfs", 0, nullptr) == 0 || errno != EPERM)
      return 12;
    if (syscall(SYS_clone3, nullptr, 0) == 0 || errno != ENOSYS) return 13;
    if (syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, 0, 0, 0) >= 0 ||
        errno != EPERM)
      return 14;
    if (syscall(SYS_bpf, 0, nullptr, 0) == 0 || errno != EPERM) return 15;
    if (syscall(SYS_keyctl, 0, 0, 0, 0, 0) == 0 || errno != EPERM) return 16;
    if (socket(AF_VSOCK, SOCK_STREAM, 0) >= 0 || errno != EAFNOSUPPORT)
      return 17;
    if (socket(AF_ALG, SOCK_SEQPACKET, 0) >= 0 || errno != EAFNOSUPPORT)
      return 18;
    if (personality(ADDR_NO_RANDOMIZE) != -1 || errno != EPERM) return 19;
    if (personality(0x80000000u | ADDR_NO_RANDOMIZE) != -1 || errno != EPERM)
      return 21;
    if (personality(READ_IMPLIES_EXEC) != -1 || errno != EPERM) return 22;
    if (personality(PER_LINUX) == -1) return 23;
    if (syscall(SYS_io_uring_setup, 1, nullptr) == 0 || errno != EPERM)
      return 20;
    // Still allowed: ordinary work.
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    if (fd < 0) return 30;
    close(fd);
    if (personality(0xffffffff) == -1) return 31;
    pid_t child = fork();  // clone without namespace flags
    if (child < 0) return 32;
    if (child == 0) _exit(0);
    int child_status = 0;
    waitpid(child, &child_status, 0);
    return 0;
  });
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}

TEST_CASE("the denied list covers the brief's syscalls", "[linux][seccomp]") {
  const auto& denied = lr::DeniedSyscalls();
  for (const char* name : {"mount",
                           "umount2",
                           "unshare",
                           "setns",
                           "pivot_root",
                           "chroot",
                           "kexec_load",
                           "kexec_file_load",
                           "init_module",
                           "finit_module",
                           "delete_module",
                           "bpf",
                           "perf_event_open",
                           "keyctl",
                           "add_key",
                           "request_key",
                           "userfaultfd",
                           "open_by_handle_at",
                           "name_to_handle_at",
                           "reboot",
                           "swapon",
                           "swapoff",
                           "acct",
                           "settimeofday",
                           "clock_settime",
                           "clock_adjtime",
                           "adjtimex",
                           "lookup_dcookie",
                           "quotactl",
                           "iopl",
                           "ioperm",
                           "syslog",
                           "vhangup",
                           "fsopen",
                           "fsconfig",
                           "fsmount",
                           "fspick",
                           "move_mount",
                           "open_tree",
                           "mount_setattr",
                           "io_uring_setup",
                           "io_uring_enter",
                           "io_uring_register"}) {
    INFO(name);
    CHECK(std::find(denied.begin(), denied.end(), name) != denied.end());
  }
}
