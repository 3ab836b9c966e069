// Unit tests of the qemu runtime's proto-free pieces: settings and the
// handle state, the QEMU and kernel command lines, the initramfs (read back
// with libarchive, as the kernel would unpack it), the disks built with
// mkfs.ext4 (checked with e2fsck and debugfs), and the cache's pruning.
#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "backends/common/workspace_disk.h"
#include "backends/qemu/qemu_command.h"
#include "backends/qemu/qemu_settings.h"
#include "backends/qemu/vm_assets.h"
#include "tests/test_util.h"

namespace qemu = corral::qemu_runtime;
namespace fs = std::filesystem;
using corral::testing::TempDir;

namespace {

const std::string kId = "0123456789abcdef0123456789abcdef";

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

void WriteFile(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << content;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string Run(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  size_t n;
  while ((n = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0) {
    out.append(buffer, n);
  }
  ::pclose(pipe);
  return out;
}

struct CpioEntry {
  mode_t mode = 0;
  dev_t rdev = 0;
  std::string data;
};

// A cpio archive as libarchive (and so, the same format, the kernel) reads
// it: name -> entry.
std::map<std::string, CpioEntry> ReadCpio(const std::string& bytes) {
  std::map<std::string, CpioEntry> entries;
  archive* reader = archive_read_new();
  archive_read_support_format_cpio(reader);
  REQUIRE(archive_read_open_memory(reader, bytes.data(), bytes.size()) ==
          ARCHIVE_OK);
  archive_entry* entry = nullptr;
  while (archive_read_next_header(reader, &entry) == ARCHIVE_OK) {
    CpioEntry& out = entries[archive_entry_pathname(entry)];
    out.mode = archive_entry_mode(entry);
    out.rdev = archive_entry_rdev(entry);
    char buffer[65536];
    la_ssize_t n;
    while ((n = archive_read_data(reader, buffer, sizeof(buffer))) > 0) {
      out.data.append(buffer, static_cast<size_t>(n));
    }
  }
  archive_read_free(reader);
  return entries;
}

qemu::VmPlan Plan() {
  qemu::VmPlan plan;
  plan.id = kId;
  plan.hostname = "box-1";
  plan.accel = qemu::Accel::kTcg;
  plan.vcpus = 2;
  plan.ram_bytes = 352u << 20;
  plan.tb_cache_bytes = 64u << 20;
  plan.tsc_khz = 2000000;
  plan.memory_limit_bytes = 256u << 20;
  plan.pids = 64;
  plan.tmp_bytes = 32u << 20;
  return plan;
}

// The value after `flag` in argv (the first occurrence), or "".
std::string After(const std::vector<std::string>& argv, const std::string& flag,
                  size_t skip = 0) {
  for (size_t i = 0; i + 1 < argv.size(); ++i) {
    if (argv[i] == flag && skip-- == 0) return argv[i + 1];
  }
  return "";
}

}  // namespace

TEST_CASE("qemu settings: defaults, options and refusals", "[qemu]") {
  auto always = [](const std::string&) { return true; };
  auto never = [](const std::string&) { return false; };
  std::vector<std::string> ignored;
  auto settings = qemu::ParseSettings("/state/runtime/qemu", "/bin/agent",
                                      "/plugins", {}, always, &ignored);
  REQUIRE(settings.ok());
  CHECK(settings->launcher_path == "/plugins/corral-qemu-launch");
  CHECK(settings->qemu_path == "/usr/bin/qemu-system-x86_64");
  CHECK(settings->kernel_dir == qemu::kDefaultKernelDir);
  CHECK(settings->cgroup_parent == "corral/qemu");
  CHECK(settings->accel == qemu::AccelPolicy::kAuto);
  CHECK(settings->overhead_bytes == (96u << 20));
  CHECK(settings->SandboxDir(kId) == "/state/runtime/qemu/" + kId);

  settings =
      qemu::ParseSettings("/state/runtime/qemu", "/bin/agent", "/plugins",
                          {{"accel", "tcg"},
                           {"kernel_dir", "/opt/vm"},
                           {"overhead_mib", "128"},
                           {"boot_timeout_seconds", "90"},
                           {"qemu", "/opt/qemu/bin/qemu-system-x86_64"},
                           {"colour", "blue"}},
                          always, &ignored);
  REQUIRE(settings.ok());
  CHECK(settings->accel == qemu::AccelPolicy::kTcg);
  CHECK(settings->kernel_dir == "/opt/vm");
  CHECK(settings->overhead_bytes == (128u << 20));
  CHECK(settings->boot_timeout_seconds == 90u);
  CHECK(settings->qemu_path == "/opt/qemu/bin/qemu-system-x86_64");
  CHECK(ignored == std::vector<std::string>{"colour"});

  // A missing program is a problem to report, not an error.
  settings = qemu::ParseSettings("/state/runtime/qemu", "/bin/agent",
                                 "/plugins", {}, never, nullptr);
  REQUIRE(settings.ok());
  CHECK(settings->qemu_path.empty());
  CHECK(Contains(settings->qemu_problem, "qemu-system-x86_64"));
  CHECK(settings->virtiofsd_path.empty());

  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{
           {"accel", "fast"},
           {"kernel_dir", "relative/dir"},
           {"kernel_dir", "/a/../b"},
           {"overhead_mib", "1"},
           {"tb_cache_mib", "lots"},
           {"boot_timeout_seconds", "0"},
           {"cgroup_parent", "../escape"},
           {"qemu", "qemu-system-x86_64"}}) {
    INFO(key << " = " << value);
    auto refused =
        qemu::ParseSettings("/state/runtime/qemu", "/bin/agent", "/plugins",
                            {{key, value}}, always, nullptr);
    CHECK(absl::IsInvalidArgument(refused.status()));
    CHECK(Contains(std::string(refused.status().message()), key));
  }
}

TEST_CASE("the qemu handle state round-trips and refuses what it did not write",
          "[qemu]") {
  qemu::SandboxRecord record;
  record.id = kId;
  record.sandbox_dir = "/state/runtime/qemu/" + kId;
  record.cgroup_parent = "corral/qemu";
  record.launcher_pid = 4242;
  record.launcher_start_time = 99;
  record.qemu_pid = 4243;
  record.qemu_start_time = 100;
  record.accel = qemu::Accel::kKvm;
  record.host_image = true;
  auto parsed = qemu::SandboxRecord::Parse(record.Serialize());
  REQUIRE(parsed.ok());
  CHECK(parsed->Serialize() == record.Serialize());
  CHECK(parsed->accel == qemu::Accel::kKvm);
  CHECK(parsed->host_image);

  auto damaged = [&](const std::string& from, const std::string& to) {
    std::string text = record.Serialize();
    const size_t at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
    return qemu::SandboxRecord::Parse(text).ok();
  };
  CHECK_FALSE(damaged("version=1", "version=2"));
  CHECK_FALSE(damaged("qemu/" + kId, "qemu/other"));
  CHECK_FALSE(damaged("sandbox_dir=/", "sandbox_dir=relative/"));
  CHECK_FALSE(damaged("qemu_pid=4243", "qemu_pid=1"));
  CHECK_FALSE(damaged("accel=kvm", "accel=hvf"));
  CHECK_FALSE(damaged("cgroup_parent=corral/qemu", "cgroup_parent=../x"));
  CHECK_FALSE(qemu::SandboxRecord::Parse("").ok());
}

TEST_CASE(
    "the kernel command line tells the guest's init its root, limits and "
    "name, and TCG guests the host's TSC rate",
    "[qemu]") {
  qemu::VmPlan plan = Plan();
  std::string line = qemu::KernelCommandLine(plan);
  CHECK(Contains(line, "corral.root=disk "));
  CHECK(Contains(line, "corral.workspace=disk "));
  CHECK(Contains(line, "corral.hostname=box-1 "));
  CHECK(Contains(line, "corral.memory=268435456 "));
  CHECK(Contains(line, "corral.pids=64 "));
  CHECK(Contains(line, "corral.tmp=33554432 "));
  CHECK(Contains(line, "tsc_early_khz=2000000 lpj=8000000 tsc=reliable"));
  CHECK(Contains(line, "cryptomgr.notests"));
  // Init's own argument comes last, after the kernel's "--".
  const std::string last = " -- --vm-init";
  REQUIRE(line.size() >= last.size());
  CHECK(line.substr(line.size() - last.size()) == last);

  plan.accel = qemu::Accel::kKvm;
  plan.host_image = true;
  line = qemu::KernelCommandLine(plan);
  CHECK(Contains(line, "corral.root=virtiofs "));
  CHECK_FALSE(Contains(line, "tsc_early_khz"));
}

TEST_CASE(
    "the QEMU command line: a microvm with the plan's size, no network, its "
    "disks and sockets as inherited fds, and QEMU's own seccomp sandbox",
    "[qemu]") {
  qemu::VmPlan plan = Plan();
  auto argv = qemu::QemuCommand("/usr/bin/qemu-system-x86_64", plan);
  const std::string all = [&] {
    std::string joined;
    for (const auto& arg : argv) joined += arg + " ";
    return joined;
  }();
  CHECK(argv[0] == "/usr/bin/qemu-system-x86_64");
  CHECK(After(argv, "-machine") == "microvm");
  CHECK(After(argv, "-m") == "352M");
  CHECK(After(argv, "-smp") == "2");
  CHECK(After(argv, "-accel") == "tcg,tb-size=64");
  CHECK(After(argv, "-kernel") == "/proc/self/fd/10");
  CHECK(After(argv, "-initrd") == "/proc/self/fd/11");
  CHECK(Contains(After(argv, "-sandbox"), "on,"));
  CHECK(Contains(After(argv, "-sandbox"), "spawn=deny"));
  CHECK(Contains(After(argv, "-sandbox"), "elevateprivileges=deny"));
  // No network device of any kind, and no defaults QEMU would add.
  CHECK(Contains(all, "-nodefaults "));
  CHECK_FALSE(Contains(all, "netdev"));
  CHECK_FALSE(Contains(all, "-nic"));
  // The agent's port and the console are the launcher's fds.
  CHECK(Contains(all, "socket,id=agent,fd=@LINK@"));
  CHECK(Contains(all, "virtserialport,chardev=agent,name=corral.agent"));
  CHECK(Contains(all, "socket,id=console,fd=@CONSOLE@"));
  // Disks by fd, named by serial; the image read-only.
  CHECK(Contains(all, "-add-fd fd=12,set=2 -add-fd fd=13,set=2"));
  CHECK(Contains(all, "serial=corral-workspace"));
  CHECK(Contains(all, "-add-fd fd=15,set=1"));
  CHECK(Contains(all, "id=root,format=raw,readonly=on"));
  CHECK(Contains(all, "socket,id=qmp,fd=14,server=on,wait=off"));
  CHECK_FALSE(Contains(all, "vhost-user-fs"));
  CHECK_FALSE(Contains(all, "-incoming"));
  // Starting from a saved machine: the same machine, loaded from fd 16.
  auto restored = qemu::QemuCommand("/usr/bin/qemu-system-x86_64", plan, true);
  CHECK(After(restored, "-incoming") == "fd:16");
  restored.resize(argv.size());
  CHECK(restored == argv);

  plan.host_image = true;
  plan.accel = qemu::Accel::kKvm;
  argv = qemu::QemuCommand("/usr/bin/qemu-system-x86_64", plan);
  std::string host;
  for (const auto& arg : argv) host += arg + " ";
  CHECK(After(argv, "-accel") == "kvm");
  CHECK(After(argv, "-cpu") == "host");
  CHECK(Contains(host, "vhost-user-fs-device,chardev=share,tag=corral-root"));
  CHECK(Contains(host, "memory-backend-memfd,id=ram,share=on,size=352M"));
  CHECK_FALSE(Contains(host, "fd=15"));
}

TEST_CASE(
    "the initramfs holds the agent as /init, the modules in order and the "
    "console node, and is built once per agent",
    "[qemu]") {
  TempDir dir("corral-qemu-test");
  const fs::path kernel_dir = dir.path() / "kernel";
  WriteFile(kernel_dir / "vmlinux", "not really a kernel");
  WriteFile(kernel_dir / "release", "6.1.0-test\n");
  WriteFile(kernel_dir / "modules/01-virtio.ko", "virtio module");
  WriteFile(kernel_dir / "modules/00-virtio_ring.ko", "ring module");
  WriteFile(kernel_dir / "modules/README", "not a module");
  const fs::path agent = dir.path() / "corral-agent";
  WriteFile(agent, std::string(100000, 'a') + "agent end");

  auto kernel = qemu::FindKernel(kernel_dir);
  REQUIRE(kernel.ok());
  CHECK(kernel->release == "6.1.0-test");
  REQUIRE(kernel->modules.size() == 2);
  CHECK(fs::path(kernel->modules[0]).filename() == "00-virtio_ring.ko");

  const fs::path cache = dir.path() / "cache";
  auto initramfs = qemu::InitramfsFor(cache, *kernel, agent, true);
  REQUIRE(initramfs.ok());
  auto entries = ReadCpio(ReadFile(*initramfs));
  REQUIRE(entries.count("init") == 1);
  CHECK(entries["init"].data == ReadFile(agent));
  CHECK((entries["init"].mode & 0777) == 0755);
  CHECK(entries["modules/00-virtio_ring.ko"].data == "ring module");
  CHECK(entries["modules/01-virtio.ko"].data == "virtio module");
  CHECK(entries.count("modules/README") == 0);
  REQUIRE(entries.count("dev/console") == 1);
  CHECK(S_ISCHR(entries["dev/console"].mode));
  CHECK(entries["dev/console"].rdev == makedev(5, 1));
  for (const char* directory : {"dev", "proc", "sys", "newroot"}) {
    CHECK(S_ISDIR(entries[directory].mode));
  }

  // Cached: the same agent gives the same file, untouched.
  const auto written = fs::last_write_time(*initramfs);
  auto again = qemu::InitramfsFor(cache, *kernel, agent, true);
  REQUIRE(again.ok());
  CHECK(*again == *initramfs);
  CHECK(fs::last_write_time(*again) == written);
  // A new agent build is a new initramfs; pruning keeps only the current.
  ::sleep(1);
  WriteFile(agent, "a newer agent");
  auto newer = qemu::InitramfsFor(cache, *kernel, agent, true);
  REQUIRE(newer.ok());
  CHECK(*newer != *initramfs);
  CHECK(ReadCpio(ReadFile(*newer))["init"].data == "a newer agent");
  CHECK(qemu::PruneCache(cache, {*newer}) == 1);
  CHECK_FALSE(fs::exists(*initramfs));
  CHECK(fs::exists(*newer));

  // Without a kernel the error names the builder.
  auto missing = qemu::FindKernel(dir.path() / "nothing");
  CHECK(absl::IsFailedPrecondition(missing.status()));
  CHECK(
      Contains(std::string(missing.status().message()), "build-vm-kernel.sh"));
}

TEST_CASE(
    "an image directory becomes a read-only ext4 disk with the same files, "
    "built once, and pruned when the image is gone",
    "[qemu]") {
  TempDir dir("corral-qemu-test");
  const fs::path image = dir.path() / "image";
  WriteFile(image / "bin/tool", "#!/bin/sh\necho tool\n");
  fs::permissions(image / "bin/tool", fs::perms(0755));
  WriteFile(image / "etc/motd", "hello from the image\n");
  fs::create_symlink("/bin/tool", image / "link");
  for (const char* point : {"proc", "dev", "sys", "tmp", "workspace"}) {
    fs::create_directories(image / point);
  }
  const fs::path cache = dir.path() / "cache";
  auto disk = qemu::ImageDiskFor(cache, image);
  INFO((disk.ok() ? "" : disk.status().ToString()));
  REQUIRE(disk.ok());
  // A clean filesystem with the image's files (debugfs reads it unmounted).
  CHECK(Run("e2fsck -fn '" + *disk + "' >/dev/null 2>&1; echo $?") == "0\n");
  CHECK(Run("debugfs -R 'cat /etc/motd' '" + *disk + "' 2>/dev/null") ==
        "hello from the image\n");
  CHECK(Contains(Run("debugfs -R 'stat /link' '" + *disk + "' 2>/dev/null"),
                 "Fast link dest: \"/bin/tool\""));
  CHECK(Contains(Run("debugfs -R 'ls -l /' '" + *disk + "' 2>/dev/null"),
                 "workspace"));
  CHECK((fs::status(*disk).permissions() & fs::perms::others_write) ==
        fs::perms::none);

  const auto written = fs::last_write_time(*disk);
  auto again = qemu::ImageDiskFor(cache, image);
  REQUIRE(again.ok());
  CHECK(*again == *disk);
  CHECK(fs::last_write_time(*again) == written);

  // The image is replaced (deleted and imported again): a new disk; the old
  // one goes at the next prune.
  fs::remove_all(image);
  WriteFile(image / "etc/motd", "second import\n");
  auto replaced = qemu::ImageDiskFor(cache, image);
  REQUIRE(replaced.ok());
  CHECK(*replaced != *disk);
  CHECK(qemu::PruneCache(cache, {}) == 2);  // the old disk and its .source
  CHECK_FALSE(fs::exists(*disk));
  CHECK(fs::exists(*replaced));

  CHECK(absl::IsInvalidArgument(
      qemu::ImageDiskFor(cache, dir.path() / "no-such-image").status()));
}

TEST_CASE(
    "a workspace disk is a sparse, empty ext4 filesystem of the size asked",
    "[qemu]") {
  TempDir dir("corral-qemu-test");
  const fs::path disk = dir.path() / "disk.ext4";
  REQUIRE(
      corral::runtime_common::MakeWorkspaceDisk(disk, 256u << 20, 1234, 5678)
          .ok());
  struct stat st {};
  REQUIRE(::stat(disk.c_str(), &st) == 0);
  CHECK(st.st_size == (256 << 20));
  CHECK((st.st_mode & 0777) == 0600);
  // Sparse: far fewer blocks than its size.
  CHECK(static_cast<uint64_t>(st.st_blocks) * 512 < (32u << 20));
  CHECK(Contains(Run("debugfs -R 'ls /' '" + disk.string() + "' 2>/dev/null"),
                 "lost+found"));
  // Its root belongs to the sandbox's root (a container's mapped uid).
  const std::string root =
      Run("debugfs -R 'stat /' '" + disk.string() + "' 2>/dev/null");
  CHECK(Contains(root, "User:  1234"));
  CHECK(Contains(root, "Group:  5678"));
  // Never over an existing file.
  CHECK_FALSE(
      corral::runtime_common::MakeWorkspaceDisk(disk, 256u << 20, 0, 0).ok());
}

TEST_CASE("a machine record round-trips and refuses what it did not write",
          "[qemu]") {
  qemu::Machine machine;
  machine.plan = Plan();
  machine.kernel = "/k/vmlinux";
  machine.initramfs = "/c/initramfs.cpio";
  machine.root_disk = "/c/image.ext4";
  machine.workspace_disk = "/w/" + kId + "/disk.ext4";
  auto parsed = qemu::Machine::Parse(machine.Serialize());
  REQUIRE(parsed.ok());
  CHECK(parsed->Serialize() == machine.Serialize());
  CHECK(parsed->plan.ram_bytes == machine.plan.ram_bytes);
  CHECK(qemu::KernelCommandLine(parsed->plan) ==
        qemu::KernelCommandLine(machine.plan));
  std::string text = machine.Serialize();
  text.replace(text.find("root_disk=/c"), 12, "root_disk=c/");
  CHECK_FALSE(qemu::Machine::Parse(text).ok());
  machine.plan.host_image = true;  // with a root disk: inconsistent
  CHECK_FALSE(qemu::Machine::Parse(machine.Serialize()).ok());
  CHECK_FALSE(qemu::Machine::Parse("version=1\n").ok());
}

TEST_CASE("the host's TSC rate is measured", "[qemu]") {
  const uint64_t khz = qemu::HostTscKhz();
  // Any x86 machine of this century: between 500 MHz and 10 GHz.
  CHECK(khz > 500000);
  CHECK(khz < 10000000);
}
