// A FAKE of Tart's `tart` CLI (cirruslabs/tart 2.32, commit 5287b59) for
// the tart runtime's tests on hosts where Tart cannot run: the commands,
// flags, texts, exit codes, JSON and on-disk layout the runtime relies on,
// read from Tart's sources, with a runc container standing in for the VM
// (tart_vm.h). What it does differently is in tests/fakes/README.md. It
// must run as root (it drives runc). State: $TART_HOME, else
// <build>/tests/fakes/tart-home; never ~/.tart.
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/fakes/common/fake_args.h"
#include "tests/fakes/common/fake_util.h"
#include "tests/fakes/common/swift_json.h"
#include "tests/fakes/tart/tart_util.h"
#include "tests/fakes/tart/tart_vm.h"

#ifndef FAKE_TART_DEFAULT_HOME
#error "FAKE_TART_DEFAULT_HOME must be defined"
#endif

namespace corral::fake_tart {
namespace {

using fakes::ArgumentSpec;
using fakes::CliExit;
using fakes::CommandSpec;
using fakes::OptionSpec;
using fakes::Parsed;
using fakes::ValueType;

constexpr char kVersion[] = "2.32.0";
constexpr char kAutomountTag[] = "com.apple.virtio-fs.automount";

// --- Storage (Config.swift, VMStorageLocal.swift, VMDirectory.swift).

std::string g_home;

// Config(): TART_HOME (each missing component made) or the fake's own
// default; cache/ and tmp/ made.
void InitHome() {
  const char* custom = std::getenv("TART_HOME");
  if (custom != nullptr && *custom != '\0') {
    g_home = fakes::LexicallyNormal(fakes::AbsolutePath(custom));
    std::string path;
    size_t at = 1;
    while (at <= g_home.size()) {
      size_t next = g_home.find('/', at);
      if (next == std::string::npos) next = g_home.size();
      path = g_home.substr(0, next);
      if (!fakes::PathExists(path) && ::mkdir(path.c_str(), 0755) != 0) {
        Runtime(
            "TART_HOME is invalid: " + path +
            " does not exist, yet we can't create it: " + std::strerror(errno));
      }
      at = next + 1;
    }
  } else {
    g_home = FAKE_TART_DEFAULT_HOME;
    fakes::MakeDirs(g_home, 0755);
  }
  fakes::MakeDirs(g_home + "/cache", 0755);
  fakes::MakeDirs(g_home + "/tmp", 0755);
}

// Config.gc(): what in tmp/ nobody holds a lock on goes.
void CollectGarbage() {
  for (const auto& name : [] {
         std::vector<std::string> names;
         if (DIR* dir = ::opendir((g_home + "/tmp").c_str())) {
           while (dirent* entry = ::readdir(dir)) {
             std::string n = entry->d_name;
             if (n != "." && n != "..") names.push_back(n);
           }
           ::closedir(dir);
         }
         return names;
       }()) {
    const std::string path = g_home + "/tmp/" + name;
    Flock lock(path, false, false);
    if (!lock.held()) continue;
    fakes::RemoveTree(path);
  }
}

std::string VmsDir() { return g_home + "/vms"; }
std::string VmDir(const std::string& name) { return VmsDir() + "/" + name; }
std::string ConfigPath(const std::string& dir) { return dir + "/config.json"; }
std::string DiskPath(const std::string& dir) { return dir + "/disk.img"; }
std::string NvramPath(const std::string& dir) { return dir + "/nvram.bin"; }
std::string StatePath(const std::string& dir) {
  return dir + "/state.vzvmsave";
}

bool Initialized(const std::string& dir) {
  return fakes::PathExists(ConfigPath(dir)) &&
         fakes::PathExists(DiskPath(dir)) && fakes::PathExists(NvramPath(dir));
}

// A name the fake can keep under vms/ (Tart joins any name to the path).
bool LocalName(const std::string& name) {
  return !name.empty() && name != "." && name != ".." &&
         name.find('/') == std::string::npos;
}

// URL.updateAccessDate: atime now, mtime the previous access date.
void UpdateAccessDate(const std::string& dir) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return;
  timeval times[2] = {};
  times[0].tv_sec = std::time(nullptr);
  times[1].tv_sec = st.st_atime;
  ::utimes(dir.c_str(), times);
}

// VMStorageLocal.open: exists, initialized, access date updated.
std::string Open(const std::string& name) {
  const std::string dir = VmDir(name);
  if (!LocalName(name) || !fakes::IsDirectory(dir)) VmDoesNotExist(name);
  if (!Initialized(dir)) {
    Runtime(
        "VM is missing some of its files (config.json, disk.img or "
        "nvram.bin)");
  }
  UpdateAccessDate(dir);
  return dir;
}

ojson ReadConfig(const std::string& dir) {
  auto text = fakes::ReadFile(ConfigPath(dir));
  ojson config = text ? ojson::parse(*text, nullptr, false) : ojson();
  if (!config.is_object()) {
    fakes::Fail(
        "The data couldn’t be read because it isn’t in the correct format.");
  }
  return config;
}

// VMConfig.save: JSONEncoder .prettyPrinted, no trailing newline. The
// write goes to the same inode (a rename would drop the PID lock that a
// running `tart run` holds on it).
void SaveConfig(const std::string& dir, const ojson& config) {
  const std::string text = fakes::SwiftPrettyOrdered(config);
  int fd = ::open(ConfigPath(dir).c_str(),
                  O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fakes::Fail("cannot write " + ConfigPath(dir));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
}

enum class VmState { kRunning, kSuspended, kStopped };

bool Running(const std::string& dir) {
  return PidLockHolder(ConfigPath(dir)) > 0;
}

VmState State(const std::string& dir) {
  if (Running(dir)) return VmState::kRunning;
  if (fakes::PathExists(StatePath(dir))) return VmState::kSuspended;
  return VmState::kStopped;
}

const char* StateName(VmState state) {
  switch (state) {
    case VmState::kRunning:
      return "running";
    case VmState::kSuspended:
      return "suspended";
    default:
      return "stopped";
  }
}

long long FileSize(const std::string& path, bool allocated) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return 0;
  return allocated ? static_cast<long long>(st.st_blocks) * 512 : st.st_size;
}

long long SizeBytes(const std::string& dir, bool allocated) {
  return FileSize(ConfigPath(dir), allocated) +
         FileSize(DiskPath(dir), allocated) +
         FileSize(NvramPath(dir), allocated);
}

// VMStorageLocal.move: the directory put at vms/<name>, replacing what
// was there (FileManager.replaceItemAt).
void MoveIntoPlace(const std::string& from, const std::string& name) {
  fakes::MakeDirs(VmsDir(), 0755);
  const std::string target = VmDir(name);
  if (fakes::PathExists(target)) {
    if (Running(target)) {
      Refuse("the VM \"" + name +
             "\" is running; the fake does not replace a running VM");
    }
    if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, target.c_str(),
                    RENAME_EXCHANGE) != 0) {
      fakes::Fail("cannot replace " + target + ": " + std::strerror(errno));
    }
    fakes::RemoveTree(from);
    return;
  }
  if (::rename(from.c_str(), target.c_str()) != 0) {
    fakes::Fail("cannot move the VM to " + target + ": " +
                std::strerror(errno));
  }
}

std::string TemporaryDir() {
  std::string uuid = fakes::NewUuid();
  for (char& c : uuid) c = static_cast<char>(std::toupper(c));  // uuidString
  const std::string path = g_home + "/tmp/" + uuid;
  if (::mkdir(path.c_str(), 0755) != 0) fakes::Fail("cannot create " + path);
  return path;
}

// ByteCountFormatter's .file style (decimal units), as Tart prints sizes.
std::string ByteCount(long long bytes) {
  const char* units[] = {"bytes", "KB", "MB", "GB", "TB", "PB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1000 && unit < 5) {
    value /= 1000;
    ++unit;
  }
  char text[64];
  if (unit == 0) {
    std::snprintf(text, sizeof(text), "%lld %s", bytes, units[0]);
  } else if (std::fabs(value - std::round(value)) < 0.005) {
    std::snprintf(text, sizeof(text), "%.0f %s", value, units[unit]);
  } else {
    std::snprintf(text, sizeof(text), "%.2f", value);
    std::string trimmed = text;
    while (trimmed.back() == '0') trimmed.pop_back();
    if (trimmed.back() == '.') trimmed.pop_back();
    return trimmed + " " + units[unit];
  }
  return text;
}

// --- Command specs (swift-argument-parser as Tart declares them).

OptionSpec Flag(const std::string& key, std::vector<std::string> names,
                const std::string& help = "") {
  OptionSpec o;
  o.key = key;
  o.names = std::move(names);
  o.flag = true;
  o.help = help;
  return o;
}

OptionSpec Opt(const std::string& key, std::vector<std::string> names,
               const std::string& value_name, const std::string& help = "",
               ValueType type = ValueType::kString,
               std::vector<std::string> choices = {}, bool repeating = false) {
  OptionSpec o;
  o.key = key;
  o.names = std::move(names);
  o.value_name = value_name;
  o.help = help;
  o.type = type;
  o.choices = std::move(choices);
  o.repeating = repeating;
  return o;
}

ArgumentSpec Arg(const std::string& key, const std::string& value_name,
                 const std::string& help, bool repeating = false,
                 bool passthrough = false) {
  ArgumentSpec a;
  a.key = key;
  a.value_name = value_name;
  a.help = help;
  a.repeating = repeating;
  a.passthrough = passthrough;
  return a;
}

const std::vector<std::string> kFormats = {"text", "json"};

// A ValidationError thrown from run(): the root command's usage.
[[noreturn]] void RootValidationError(const std::string& message) {
  throw CliExit{"Error: " + message +
                    "\nUsage: tart <subcommand>\n  See 'tart --help' for "
                    "more information.",
                64};
}

// An unsigned value of a UInt16/UInt64 option, checked as the parser does.
std::optional<uint64_t> Unsigned(const CommandSpec& spec, const Parsed& parsed,
                                 const std::string& key,
                                 const std::string& name,
                                 const std::string& value_name,
                                 const std::string& help, uint64_t max) {
  auto value = parsed.Value(key);
  if (!value) return std::nullopt;
  bool ok = !value->empty() &&
            std::all_of(value->begin(), value->end(),
                        [](char c) { return c >= '0' && c <= '9'; }) &&
            value->size() <= 20;
  unsigned long long number = 0;
  if (ok) {
    errno = 0;
    number = std::strtoull(value->c_str(), nullptr, 10);
    ok = errno == 0 && number <= max;
  }
  if (!ok) {
    fakes::UsageError(spec,
                      "The value '" + *value + "' is invalid for '" + name +
                          " <" + value_name + ">'",
                      name + " <" + value_name + ">  " + help);
  }
  return number;
}

// --- create

int Create(const std::vector<std::string>& args) {
  CommandSpec spec;
  spec.path = "tart create";
  spec.abstract = "Create a VM";
  spec.arguments = {Arg("name", "name", "VM name")};
  spec.options = {
      Opt("from-ipsw", {"--from-ipsw"}, "path",
          "create a macOS VM using path to the IPSW file or URL (or "
          "\"latest\", to fetch the latest supported IPSW automatically)"),
      Flag("linux", {"--linux"}, "create a Linux VM"),
      Opt("disk-size", {"--disk-size"}, "disk-size", "Disk size in GB"),
      Opt("disk-format", {"--disk-format"}, "disk-format", "Disk image format",
          ValueType::kChoice, {"raw", "asif"})};
  spec.order = "aoooo";
  Parsed parsed = fakes::Parse(spec, args);
  const uint64_t disk_gb = Unsigned(spec, parsed, "disk-size", "--disk-size",
                                    "disk-size", "Disk size in GB", 65535)
                               .value_or(50);
  if (!parsed.Value("from-ipsw") && !parsed.Flag("linux")) {
    fakes::UsageError(spec,
                      "Please specify either a --from-ipsw or --linux option!");
  }
#if defined(__x86_64__)
  if (parsed.Value("from-ipsw")) {
    fakes::UsageError(spec, "Only Linux VMs are supported on Intel!");
  }
#endif
  if (parsed.Value("disk-format").value_or("raw") == "asif") {
    fakes::UsageError(spec,
                      "Disk format 'asif' is not supported on this system.");
  }
  if (parsed.Value("from-ipsw"))
    Refuse("macOS VMs (--from-ipsw) are not modelled");
  const std::string name = *parsed.Argument("name");
  if (!LocalName(name)) Refuse("VM names with '/' are not modelled");
  CollectGarbage();

  const std::string tmp = TemporaryDir();
  Flock tmp_lock(tmp, false);
  // VM.linux: NVRAM, a raw disk of that many GB (10^9 bytes), the config.
  fakes::WriteFileAtomic(NvramPath(tmp),
                         std::string("corral tart fake: EFI variable "
                                     "store\n"));
  int disk =
      ::open(DiskPath(tmp).c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  if (disk < 0 || ::ftruncate(disk, static_cast<off_t>(disk_gb * 1000 * 1000 *
                                                       1000)) != 0) {
    fakes::Fail("cannot create " + DiskPath(tmp));
  }
  ::close(disk);
  ojson config;
  config["version"] = 1;
  config["os"] = "linux";
  config["arch"] = fakes::HostArchitecture() == "arm64" ? "arm64" : "amd64";
  config["cpuCountMin"] = 4;
  config["cpuCount"] = 4;
  config["memorySizeMin"] = uint64_t{4096} * 1024 * 1024;
  config["memorySize"] = uint64_t{4096} * 1024 * 1024;
  config["macAddress"] = RandomMac();
  config["display"] = ojson{{"width", 1024}, {"height", 768}};
  config["diskFormat"] = "raw";
  SaveConfig(tmp, config);
  MoveIntoPlace(tmp, name);
  return 0;
}

// --- fake-rootfs (the fake's own: the content of the VM's disk)

int FakeRootfs(const std::vector<std::string>& args) {
  CommandSpec spec;
  spec.path = "tart fake-rootfs";
  spec.abstract =
      "(tart fake only) Unpack a root filesystem tar as the VM's disk content";
  spec.arguments = {Arg("name", "name", "VM name"),
                    Arg("tarfile", "tarfile", "root filesystem tar")};
  spec.order = "aa";
  Parsed parsed = fakes::Parse(spec, args);
  const std::string name = *parsed.Argument("name");
  const std::string archive = *parsed.Argument("tarfile");
  const std::string dir = Open(name);
  if (Running(dir)) Refuse("the VM \"" + name + "\" is running");
  const std::string staging = dir + "/.rootfs-" + fakes::NewUuid();
  if (::mkdir(staging.c_str(), 0755) != 0)
    fakes::Fail("cannot create " + staging);
  try {
    UnpackRootfs(fakes::AbsolutePath(archive), staging);
  } catch (...) {
    fakes::RemoveTree(staging);
    throw;
  }
  const std::string rootfs = dir + "/rootfs";
  if (fakes::PathExists(rootfs)) {
    ::renameat2(AT_FDCWD, staging.c_str(), AT_FDCWD, rootfs.c_str(),
                RENAME_EXCHANGE);
    fakes::RemoveTree(staging);
  } else if (::rename(staging.c_str(), rootfs.c_str()) != 0) {
    fakes::RemoveTree(staging);
    fakes::Fail("cannot move the root filesystem into place");
  }
  return 0;
}

// --- clone

bool LooksRemote(const std::string& name) {
  return name.find('/') != std::string::npos;
}

int CopyTree(const std::string& from, const std::string& to) {
  return fakes::RunCommand(
      {"/bin/cp", "-a", "--sparse=always", "--no-target-directory", from, to},
      -1, -1, 2);
}

int Clone(const std::vector<std::string>& args) {
  CommandSpec spec;
  spec.path = "tart clone";
  spec.abstract = "Clone a VM";
  spec.arguments = {Arg("source-name", "source-name", "source VM name"),
                    Arg("new-name", "new-name", "new VM name")};
  spec.options = {
      Flag("insecure", {"--insecure"},
           "connect to the OCI registry via insecure HTTP protocol"),
      Opt("concurrency", {"--concurrency"}, "concurrency",
          "network concurrency to use when pulling a remote VM from the "
          "OCI-compatible registry"),
      Opt("prune-limit", {"--prune-limit"}, "n",
          "limit automatic pruning to n gigabytes")};
  spec.order = "aaooo";
  Parsed parsed = fakes::Parse(spec, args);
  const auto concurrency =
      Unsigned(spec, parsed, "concurrency", "--concurrency", "concurrency",
               spec.options[1].help, UINT64_MAX);
  Unsigned(spec, parsed, "prune-limit", "--prune-limit", "n",
           spec.options[2].help, UINT64_MAX);
  const std::string source = *parsed.Argument("source-name");
  const std::string target = *parsed.Argument("new-name");
  if (target.find('/') != std::string::npos) {
    fakes::UsageError(spec, "<new-name> should be a local name");
  }
  if (concurrency && *concurrency < 1) {
    fakes::UsageError(spec, "network concurrency cannot be less than 1");
  }
  if (LooksRemote(source)) {
    Refuse("cannot pull " + source + " (no OCI registry): clone a local VM");
  }
  if (!LocalName(target))
    Refuse("VM names like \"" + target + "\" are not modelled");
  const std::string from = Open(source);
  const std::string tmp = TemporaryDir();
  Flock tmp_lock(tmp, false);
  {
    Flock global(g_home, false);
    // VMDirectory.clone, plus the fake's rootfs/.
    const bool suspended = State(from) == VmState::kSuspended;
    for (const auto& file :
         {ConfigPath(from), NvramPath(from), DiskPath(from)}) {
      if (CopyTree(file, tmp + "/" + fakes::Basename(file)) != 0) {
        fakes::RemoveTree(tmp);
        fakes::Fail("cannot copy " + file);
      }
    }
    if (fakes::PathExists(StatePath(from))) {
      CopyTree(StatePath(from), StatePath(tmp));
    }
    if (fakes::IsDirectory(from + "/rootfs") &&
        CopyTree(from + "/rootfs", tmp + "/rootfs") != 0) {
      fakes::RemoveTree(tmp);
      fakes::Fail("cannot copy " + from + "/rootfs");
    }
    // The source's MAC address is in use (by the source itself), so a
    // local clone gets a new one, unless the source is suspended.
    if (!suspended) {
      ojson config = ReadConfig(tmp);
      config["macAddress"] = RandomMac();
      ::unlink(StatePath(tmp).c_str());
      SaveConfig(tmp, config);
    }
    MoveIntoPlace(tmp, target);
  }
  return 0;
}

// --- set

int Set(const std::vector<std::string>& args) {
  CommandSpec spec;
  spec.path = "tart set";
  spec.abstract = "Modify VM's configuration";
  spec.arguments = {Arg("name", "name", "VM name")};
  spec.options = {
    Opt("cpu", {"--cpu"}, "cpu", "Number of VM CPUs"),
    Opt("memory", {"--memory"}, "memory", "VM memory size in megabytes"),
    Opt("display", {"--display"}, "display",
        "VM display resolution in a format of WIDTHxHEIGHT[pt|px]."),
    Flag("display-refit", {"--display-refit"}),
    Flag("no-display-refit", {"--no-display-refit"}),
    Flag("random-mac", {"--random-mac"},
         "Generate a new random MAC address for the VM."),
#if defined(__aarch64__)
    Flag("random-serial", {"--random-serial"},
         "Generate a new random serial number for the macOS VM."),
#endif
    Opt("disk", {"--disk"}, "path",
        "Replace the VM's disk contents with the disk contents at path."),
    Opt("disk-size", {"--disk-size"}, "disk-size",
        "Resize the VMs disk to the specified size in GB (note that the "
        "disk size can only be increased to avoid losing data)")
  };
  spec.order = "a" + std::string(spec.options.size(), 'o');
  Parsed parsed = fakes::Parse(spec, args);
  const auto cpu =
      Unsigned(spec, parsed, "cpu", "--cpu", "cpu", "Number of VM CPUs", 65535);
  const auto memory = Unsigned(spec, parsed, "memory", "--memory", "memory",
                               "VM memory size in megabytes", UINT64_MAX);
  const auto disk_size = Unsigned(spec, parsed, "disk-size", "--disk-size",
                                  "disk-size", spec.options.back().help, 65535);
  const std::string name = *parsed.Argument("name");
  const std::string dir = Open(name);
  ojson config = ReadConfig(dir);
  const bool darwin = config.value("os", "darwin") == "darwin";
  // VMConfig.setCPU/setMemory; VZVirtualMachineConfiguration's minimums:
  // 1 CPU, 128 MiB. LessThanMinimalResourcesError goes through
  // exit(withError:) with its description.
  if (cpu) {
    const long long min = config.value("cpuCountMin", 1LL);
    if (darwin && static_cast<long long>(*cpu) < min) {
      fakes::Fail("LessThanMinimalResourcesError: VM should have " +
                  std::to_string(min) + " CPU cores at minimum (requested " +
                  std::to_string(*cpu) + ")");
    }
    if (*cpu < 1) {
      fakes::Fail(
          "LessThanMinimalResourcesError: VM should have 1 CPU cores at "
          "minimum (requested " +
          std::to_string(*cpu) + ")");
    }
    config["cpuCount"] = *cpu;
  }
  if (memory) {
    const uint64_t bytes = *memory * 1024 * 1024;
    const uint64_t min = config.value("memorySizeMin", uint64_t{0});
    if (darwin && bytes < min) {
      fakes::Fail("LessThanMinimalResourcesError: VM should have " +
                  std::to_string(min) +
                  " bytes of memory at minimum (requested " +
                  std::to_string(bytes) + ")");
    }
    const uint64_t kMinimum = uint64_t{128} * 1024 * 1024;
    if (bytes < kMinimum) {
      fakes::Fail("LessThanMinimalResourcesError: VM should have " +
                  std::to_string(kMinimum) +
                  " bytes of memory at minimum (requested " +
                  std::to_string(bytes) + ")");
    }
    config["memorySize"] = bytes;
  }
  if (auto display = parsed.Value("display")) {
    std::string text = *display;
    std::optional<std::string> unit;
    for (const char* u : {"px", "pt"}) {
      if (text.size() >= 2 && text.substr(text.size() - 2) == u) {
        text.resize(text.size() - 2);
        unit = u;
        break;
      }
    }
    const size_t x = text.find('x');
    const int width = std::atoi(text.substr(0, x).c_str());
    const int height =
        x == std::string::npos ? 0 : std::atoi(text.substr(x + 1).c_str());
    ojson shown =
        config.value("display", ojson{{"width", 1024}, {"height", 768}});
    if (width > 0) shown["width"] = width;
    if (height > 0) shown["height"] = height;
    shown.erase("unit");
    if (unit) shown["unit"] = *unit;
    config["display"] = shown;
  }
  // displayRefit is set from the flags (nil without them).
  ojson ordered;
  for (auto it = config.begin(); it != config.end(); ++it) {
    if (it.key() == "displayRefit") continue;
    if (it.key() == "diskFormat") {
      if (parsed.Flag("display-refit")) ordered["displayRefit"] = true;
      if (parsed.Flag("no-display-refit")) ordered["displayRefit"] = false;
    }
    ordered[it.key()] = it.value();
  }
  config = ordered;
  if (parsed.Flag("random-mac")) config["macAddress"] = RandomMac();
  SaveConfig(dir, config);
  if (parsed.Value("disk"))
    Refuse("--disk (replacing the disk) is not modelled");
  if (disk_size) {
    const long long current = FileSize(DiskPath(dir), false);
    const long long desired =
        static_cast<long long>(*disk_size) * 1000 * 1000 * 1000;
    if (desired < current) {
      Runtime("new disk size of " + ByteCount(desired) +
              " should be larger than the current disk size of " +
              ByteCount(current));
    }
    if (desired > current) ::truncate(DiskPath(dir).c_str(), desired);
  }
  return 0;
}

// --- get and list

// TextTable's plain style: a header row, then a row an item, the columns
// left-aligned and padded, separated by a space.
std::string Table(const std::vector<std::string>& headers,
                  const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) return "";
  std::vector<size_t> widths(headers.size());
  for (size_t i = 0; i < headers.size(); ++i) widths[i] = headers[i].size();
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      widths[i] = std::max(widths[i], row[i].size());
    }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string text;
    for (size_t i = 0; i < cells.size(); ++i) {
      if (i > 0) text += " ";
      text += cells[i] + std::string(widths[i] - cells[i].size(), ' ');
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    return text;
  };
  std::string out = line(headers);
  for (const auto& row : rows) out += "\n" + line(row);
  return out;
}

std::string Relative(std::time_t when) {
  long long seconds = static_cast<long long>(std::time(nullptr) - when);
  if (seconds < 0) seconds = 0;
  struct {
    long long size;
    const char* name;
  } units[] = {{86400 * 365, "year"}, {86400 * 30, "month"},
               {86400 * 7, "week"},   {86400, "day"},
               {3600, "hour"},        {60, "minute"},
               {1, "second"}};
  for (const auto& unit : units) {
    if (seconds >= unit.size || unit.size == 1) {
      long long count = seconds / unit.size;
      return std::to_string(count) + " " + unit.name + (count == 1 ? "" : "s") +
             " ago";
    }
  }
  return "now";
}

int Get(const std::vector<std::string>& args) {
  CommandSpec spec;
  spec.path = "tart get";
  spec.abstract = "Get a VM's configuration";
  spec.arguments = {Arg("name", "name", "VM name.")};
  spec.options = {Opt("format", {"--format"}, "format",
                      "Output format: text or json", ValueType::kChoice,
                      kFormats)};
  spec.order = "ao";
  Parsed parsed = fakes::Parse(spec, args);
  CollectGarbage();
  const std::string name = *parsed.Argument("name");
  const std::string dir = Open(name);
  ojson config = ReadConfig(dir);
  const ojson display =
      config.value("display", ojson{{"width", 1024}, {"height", 768}});
  std::string display_text = std::to_string(display.value("width", 1024)) +
                             "x" +
                             std::to_string(display.value("height", 768)) +
                             display.value("unit", std::string());
  char size[64];
  std::snprintf(size, sizeof(size), "%.3f",
                static_cast<float>(SizeBytes(dir, true)) / 1000 / 1000 / 1000);
  const VmState state = State(dir);
  ojson info;
  info["OS"] = config.value("os", "darwin");
  info["CPU"] = config.value("cpuCount", 0);
  info["Memory"] = config.value("memorySize", uint64_t{0}) / 1024 / 1024;
  info["Disk"] = SizeBytes(dir, false) / 1000 / 1000 / 1000;
  info["DiskFormat"] = config.value("diskFormat", "raw");
  info["Size"] = size;
  info["Display"] = display_text;
  info["Running"] = state == VmState::kRunning;
  info["State"] = StateName(state);
  if (parsed.Value("format").value_or("text") == "json") {
    std::cout << fakes::SwiftPrettyOrdered(info) << "\n";
  } else {
    std::vector<std::string> headers, row;
    for (auto it = info.begin(); it != info.end(); ++it) {
      if (it.key() == "Running") continue;
      headers.push_back(it.key());
      row.push_back(it.value().is_string() ? it.value().get<std::string>()
                                           : it.value().dump());
    }
    std::cout << Table(headers, {row}) << "\n";
  }
  return 0;
}

int List(const std::vector<std::string>& args) {
  CommandSpec spec;
  spec.path = "tart list";
  spec.abstract = "List created VMs";
  spec.options = {
      Opt("source", {"--source"}, "source",
          "Only display VMs from the specified source (e.g. --source local, "
          "--source oci)."),
      Opt("format", {"--format"}, "format", "Output format: text or json",
          ValueType::kChoice, kFormats),
      Flag("quiet", {"-q", "--quiet"}, "Only display VM names.")};
  spec.order = "ooo";
  Parsed parsed = fakes::Parse(spec, args);
  auto source = parsed.Value("source");
  if (source && *source != "local" && *source != "oci") {
    fakes::UsageError(spec, "'" + *source + "' is not a valid <source>");
  }
  CollectGarbage();
  const bool json_format = parsed.Value("format").value_or("text") == "json";
  ojson infos = ojson::array();
  if (!source || *source == "local") {
    std::vector<std::string> names;
    if (DIR* dir = ::opendir(VmsDir().c_str())) {
      while (dirent* entry = ::readdir(dir)) {
        std::string n = entry->d_name;
        if (n == "." || n == "..") continue;
        if (Initialized(VmDir(n))) names.push_back(n);
      }
      ::closedir(dir);
    }
    std::sort(names.begin(), names.end());
    for (const auto& n : names) {
      const std::string dir = VmDir(n);
      struct stat st {};
      ::stat(dir.c_str(), &st);
      const VmState state = State(dir);
      ojson info;
      info["Source"] = "local";
      info["Name"] = n;
      info["Disk"] = SizeBytes(dir, false) / 1000 / 1000 / 1000;
      info["Size"] = SizeBytes(dir, true) / 1000 / 1000 / 1000;
      info["Accessed"] =
          json_format ? fakes::Iso8601(st.st_atime) : Relative(st.st_atime);
      info["Running"] = state == VmState::kRunning;
      info["State"] = StateName(state);
      infos.push_back(info);
    }
  }
  // No OCI cache: the fake cannot pull, so the "OCI" source is empty.
  if (parsed.Flag("quiet")) {
    for (const auto& info : infos) {
      std::cout << info["Name"].get<std::string>() << "\n";
    }
    return 0;
  }
  if (json_format) {
    std::cout << fakes::SwiftPrettyOrdered(infos) << "\n";
  } else {
    std::vector<std::string> headers = {"Source", "Name",     "Disk",
                                        "Size",   "Accessed", "State"};
    std::vector<std::vector<std::string>> rows;
    for (const auto& info : infos) {
      rows.push_back({info["Source"], info["Name"], info["Disk"].dump(),
                      info["Size"].dump(), info["Accessed"], info["State"]});
    }
    std::cout << Table(headers, rows) << "\n";
  }
  return 0;
}

// --- run

std::string ExpandTilde(const std::string& path) {
  if (path == "~" || path.rfind("~/", 0) == 0) {
    const char* home = std::getenv("HOME");
    return std::string(home ? home : "") + path.substr(1);
  }
  return path;
}

struct DirectoryShare {
  std::optional<std::string> name;
  std::string path;
  bool read_only = false;
  std::string tag = kAutomountTag;
};

// DirectoryShare(parseFrom:).
DirectoryShare ParseDirectoryShare(const std::string& raw) {
  DirectoryShare share;
  std::vector<std::string> arguments = fakes::SwiftSplit(raw, ':');
  std::string rest = raw;
  if (!arguments.empty()) {
    bool found = false;
    for (const auto& option : fakes::SwiftSplit(arguments.back(), ',')) {
      if (option == "ro") {
        share.read_only = true;
        found = true;
      } else if (option.rfind("tag=", 0) == 0) {
        share.tag = option.substr(4);
        found = true;
      }
    }
    if (found) arguments.pop_back();
    rest.clear();
    for (size_t i = 0; i < arguments.size(); ++i) {
      rest += (i ? ":" : "") + arguments[i];
    }
  }
  if (rest.rfind("http:", 0) == 0 || rest.rfind("https:", 0) == 0) {
    Refuse("remote --dir archives (" + rest + ") are not modelled");
  }
  std::vector<std::string> parts = fakes::SwiftSplit(rest, ':', 1);
  if (parts.size() == 2) {
    share.name = parts[0];
    share.path = ExpandTilde(parts[1]);
  } else {
    share.path = ExpandTilde(parts.empty() ? "" : parts[0]);
  }
  share.path = fakes::LexicallyNormal(fakes::AbsolutePath(share.path));
  return share;
}

int Run(const std::vector<std::string>& args) {
  CommandSpec spec;
  spec.path = "tart run";
  spec.abstract = "Run a VM";
  spec.arguments = {Arg("name", "name", "VM name")};
  spec.options = {
    Flag("no-graphics", {"--no-graphics"}, "Don't open a UI window."),
    Flag("serial", {"--serial"}, "Open serial console in /dev/ttySXX"),
    Opt("serial-path", {"--serial-path"}, "serial-path",
        "Attach an externally created serial console"),
    Flag("no-audio", {"--no-audio"}, "Disable audio pass-through to host."),
    Flag("no-clipboard", {"--no-clipboard"},
         "Disable clipboard sharing between host and guest."),
#if defined(__aarch64__)
    Flag("recovery", {"--recovery"}, "Boot into recovery mode"),
    Flag("vnc", {"--vnc"}, "Use screen sharing instead of the built-in UI."),
    Flag("vnc-experimental", {"--vnc-experimental"},
         "Use Virtualization.Framework's VNC server instead of the built-in "
         "UI."),
#endif
    Opt("disk", {"--disk"}, "path[:options]", "Additional disk attachments",
        ValueType::kString, {}, true),
#if defined(__aarch64__)
    Opt("rosetta", {"--rosetta"}, "tag",
        "Attaches a Rosetta share to the guest Linux VM with a specific "
        "tag"),
#endif
    Opt("dir", {"--dir"}, "[name:]path[:options]",
        "Additional directory shares with an optional read-only and mount "
        "tag options in the form of [name:]path[:options]",
        ValueType::kString, {}, true),
    Flag("nested", {"--nested"}, "Enable nested virtualization if possible"),
    Opt("net-bridged", {"--net-bridged"}, "interface name",
        "Use bridged networking instead of the default shared (NAT) "
        "networking",
        ValueType::kString, {}, true),
    Flag("net-softnet", {"--net-softnet"},
         "Use software networking provided by Softnet instead of the "
         "default shared (NAT) networking"),
    Opt("net-softnet-allow", {"--net-softnet-allow"}, "comma-separated CIDRs",
        "Comma-separated list of CIDRs to allow the traffic to when using "
        "Softnet isolation"),
    Opt("net-softnet-block", {"--net-softnet-block"}, "comma-separated CIDRs",
        "Comma-separated list of CIDRs to block the traffic to when using "
        "Softnet isolation"),
    Opt("net-softnet-expose", {"--net-softnet-expose"},
        "comma-separated port specifications",
        "Comma-separated list of TCP ports to expose"),
    Flag("net-host", {"--net-host"},
         "Restrict network access to the host-only network"),
    Opt("root-disk-opts", {"--root-disk-opts"}, "options",
        "Set the root disk options"),
#if defined(__aarch64__)
    Flag("suspendable", {"--suspendable"},
         "Disables audio and entropy devices and switches to only "
         "Mac-specific input devices."),
    Flag("capture-system-keys", {"--capture-system-keys"},
         "Whether system hot keys should be sent to the guest instead of "
         "the host"),
    Flag("no-trackpad", {"--no-trackpad"},
         "Don't add trackpad as a pointing device on macOS VMs"),
#endif
    Flag("no-pointer", {"--no-pointer"}, "Disable the pointer"),
    Flag("no-keyboard", {"--no-keyboard"}, "Disable the keyboard"),
  };
  spec.order = "a" + std::string(spec.options.size(), 'o');
  // --graphics is private: parsed, never shown.
  std::vector<std::string> rest;
  bool graphics = false;
  for (const auto& a : args) {
    if (a == "--graphics") {
      graphics = true;
    } else {
      rest.push_back(a);
    }
  }
  Parsed parsed = fakes::Parse(spec, rest);
  // validate()
  if (parsed.Flag("vnc") && parsed.Flag("vnc-experimental")) {
    fakes::UsageError(spec,
                      "--vnc and --vnc-experimental are mutually exclusive");
  }
  const bool softnet =
      parsed.Flag("net-softnet") || parsed.Value("net-softnet-allow") ||
      parsed.Value("net-softnet-block") || parsed.Value("net-softnet-expose");
  const int net_flags = (parsed.Values("net-bridged").empty() ? 0 : 1) +
                        (softnet ? 1 : 0) + (parsed.Flag("net-host") ? 1 : 0);
  if (net_flags > 1) {
    fakes::UsageError(
        spec,
        "--net-bridged, --net-softnet and --net-host are mutually "
        "exclusive");
  }
  if (graphics && parsed.Flag("no-graphics")) {
    fakes::UsageError(spec,
                      "--graphics and --no-graphics are mutually exclusive");
  }
  if ((parsed.Flag("no-graphics") || parsed.Flag("vnc") ||
       parsed.Flag("vnc-experimental")) &&
      parsed.Flag("capture-system-keys")) {
    fakes::UsageError(
        spec,
        "--captures-system-keys can only be used with the default VM view");
  }
  const std::string name = *parsed.Argument("name");
  CollectGarbage();
  std::string dir = Open(name);
  bool suspendable = parsed.Flag("suspendable");
  if (State(dir) == VmState::kSuspended) suspendable = true;
  ojson config = ReadConfig(dir);
  const bool linux_vm = config.value("os", "darwin") == "linux";
  if (suspendable && linux_vm) {
    fakes::UsageError(spec, "You can only suspend macOS VMs");
  }
  if (parsed.Flag("no-trackpad") && linux_vm) {
    fakes::UsageError(spec, "--no-trackpad can only be used with macOS VMs");
  }
  for (const auto& disk : parsed.Values("disk")) {
    if (disk.size() >= 10 && disk.substr(disk.size() - 10) == "-amd64.iso") {
      fakes::UsageError(
          spec,
          "Seems you have a disk targeting x86 architecture (hence amd64 in "
          "the name). Please use an 'arm64' version of the disk.");
    }
  }
  // What the fake does not model.
  if (!linux_vm) Refuse("macOS VMs are not modelled");
  if (parsed.Flag("serial"))
    Refuse("--serial (a PTY of its own) is not modelled");
  if (parsed.Flag("vnc") || parsed.Flag("vnc-experimental")) {
    Refuse("VNC is not modelled");
  }
  if (!parsed.Values("disk").empty()) Refuse("--disk is not modelled");
  if (parsed.Value("rosetta")) Refuse("--rosetta is not modelled");
  if (parsed.Flag("nested")) Refuse("--nested is not modelled");
  if (net_flags > 0) {
    Refuse(
        "networking (--net-bridged, --net-softnet, --net-host) is not "
        "modelled: the guest has loopback only");
  }
  if (!fakes::IsDirectory(dir + "/rootfs")) {
    Refuse("the VM \"" + name +
           "\" has no root filesystem: give it one with `tart fake-rootfs " +
           name + " <tar>`");
  }

  // run()
  auto storage_lock = std::make_unique<Flock>(g_home, false);
  // A running VM with the same MAC address: this one gets a new one.
  {
    const std::string mac = config.value("macAddress", "");
    bool collision = false;
    if (DIR* vms = ::opendir(VmsDir().c_str())) {
      while (dirent* entry = ::readdir(vms)) {
        std::string other = entry->d_name;
        if (other == "." || other == ".." || other == name) continue;
        const std::string other_dir = VmDir(other);
        if (!Initialized(other_dir) || !Running(other_dir)) continue;
        auto text = fakes::ReadFile(ConfigPath(other_dir));
        ojson other_config =
            text ? ojson::parse(*text, nullptr, false) : ojson();
        if (other_config.is_object() &&
            other_config.value("macAddress", "") == mac) {
          collision = true;
        }
      }
      ::closedir(vms);
    }
    if (collision) {
      std::cout << "There is already a running VM with the same MAC address!\n"
                   "Resetting VM to assign a new MAC address..."
                << std::endl;
      config["macAddress"] = RandomMac();
      ::unlink(StatePath(dir).c_str());
      SaveConfig(dir, config);
    }
  }
  VmRun run;
  run.home = g_home;
  run.name = name;
  run.vm_dir = dir;
  run.cpus = static_cast<int>(config.value("cpuCount", 4));
  run.memory = config.value("memorySize", uint64_t{4096} * 1024 * 1024);
  if (auto serial = parsed.Value("serial-path")) {
    // FileHandle(forReadingAtPath:) and (forWritingAtPath:).
    int fd = ::open(serial->c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0) Runtime("Failed to open PTY");
    char resolved[PATH_MAX];
    if (::realpath(serial->c_str(), resolved) == nullptr) {
      Runtime("Failed to open PTY");
    }
    run.serial_path = resolved;
    run.serial_fd = fd;
  }
  // directoryShares(): grouped by tag; one unnamed share alone, or all
  // named.
  std::vector<DirectoryShare> shares;
  for (const auto& raw : parsed.Values("dir")) {
    shares.push_back(ParseDirectoryShare(raw));
  }
  std::map<std::string, std::vector<DirectoryShare>> by_tag;
  for (const auto& share : shares) by_tag[share.tag].push_back(share);
  for (const auto& [tag, group] : by_tag) {
    const bool all_named =
        std::all_of(group.begin(), group.end(),
                    [](const DirectoryShare& s) { return s.name.has_value(); });
    if (!(group.size() == 1 && !group[0].name) && !all_named) {
      RootValidationError(
          "invalid --dir syntax: for multiple directory shares each one of "
          "them should be named");
    }
  }
  for (const auto& [tag, group] : by_tag) {
    if (tag != kAutomountTag) {
      Refuse("only the mount tag " + std::string(kAutomountTag) +
             " is modelled (got tag=" + tag + ")");
    }
    std::map<std::string, Share> named;  // the last one of a name wins
    for (const auto& share : group) {
      if (!fakes::IsDirectory(share.path)) {
        Refuse("the shared directory " + share.path + " does not exist");
      }
      if (!share.name) {
        run.shares.push_back({"", share.path, share.read_only});
        continue;
      }
      if (!LocalName(*share.name)) {
        Refuse("the share name \"" + *share.name + "\" is not modelled");
      }
      named[*share.name] = Share{*share.name, share.path, share.read_only};
    }
    for (const auto& [n, share] : named) run.shares.push_back(share);
  }
  // The PID lock: an fcntl write lock on config.json, held until exit.
  int lock_fd = ::open(ConfigPath(dir).c_str(), O_RDWR | O_CLOEXEC);
  if (lock_fd < 0) {
    Runtime("failed to open lock file " + ConfigPath(dir) + ": " +
            std::strerror(errno));
  }
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (::fcntl(lock_fd, F_SETLK, &lock) != 0) {
    if (errno == EAGAIN || errno == EACCES) {
      Runtime("VM \"" + name + "\" is already running!", 2);
    }
    Runtime("failed to lock " + ConfigPath(dir) + ": " + std::strerror(errno));
  }
  // Now the VM counts as running: the storage lock goes.
  storage_lock.reset();
  RunVm(run);
}

// --- exec, stop, suspend, delete, ip

int Exec(const std::vector<std::string>& args) {
  CommandSpec spec;
  spec.path = "tart exec";
  spec.abstract = "Execute a command in a running VM";
  spec.options = {
      Flag("interactive", {"-i"},
           "Attach host's standard input to a remote "
           "command"),
      Flag("tty", {"-t"}, "Allocate a remote pseudo-terminal (PTY)")};
  spec.arguments = {
      Arg("name", "name", "VM name"),
      Arg("command", "command", "Command to execute", true, true)};
  spec.order = "ooaa";
  Parsed parsed = fakes::Parse(spec, args);
  const std::string name = *parsed.Argument("name");
  const std::vector<std::string> command = parsed.Arguments("command");
  CollectGarbage();
  const std::string dir = Open(name);
  if (!Running(dir)) VmNotRunning(name);
  if (parsed.Flag("tty"))
    Refuse("-t (a remote pseudo-terminal) is not modelled");
  return ExecInVm(g_home, name, command, parsed.Flag("interactive"));
}

int Stop(const std::vector<std::string>& args) {
  CommandSpec spec;
  spec.path = "tart stop";
  spec.abstract = "Stop a VM";
  spec.arguments = {Arg("name", "name", "VM name")};
  spec.options = {Opt("timeout", {"-t", "--timeout"}, "timeout",
                      "Seconds to wait for graceful termination before "
                      "forcefully terminating the VM")};
  spec.order = "ao";
  Parsed parsed = fakes::Parse(spec, args);
  const uint64_t timeout = Unsigned(spec, parsed, "timeout", "--timeout",
                                    "timeout", spec.options[0].help, UINT64_MAX)
                               .value_or(30);
  CollectGarbage();
  const std::string name = *parsed.Argument("name");
  const std::string dir = Open(name);
  switch (State(dir)) {
    case VmState::kSuspended:
      ::unlink(StatePath(dir).c_str());
      return 0;
    case VmState::kStopped:
      VmNotRunning(name);
    case VmState::kRunning:
      break;
  }
  pid_t pid = PidLockHolder(ConfigPath(dir));
  if (pid <= 0) VmNotRunning(name);
  ::kill(pid, SIGINT);
  long long left_ms =
      static_cast<long long>(std::min<uint64_t>(timeout, 1u << 30)) * 1000;
  while (left_ms > 0) {
    pid = PidLockHolder(ConfigPath(dir));
    if (pid <= 0) return 0;
    ::usleep(100 * 1000);
    left_ms -= 100;
  }
  if (::kill(pid, SIGKILL) != 0) {
    Runtime("failed to forcefully terminate the VM \"" + name +
            "\": " + std::strerror(errno));
  }
  // The fake's guest outlives the process by a moment: its keeper removes
  // it (a VM ends with Tart's process).
  WaitFlockFree(CleanupLockPath(g_home, name), 15000);
  return 0;
}

int Suspend(const std::vector<std::string>& args) {
  CommandSpec spec;
  spec.path = "tart suspend";
  spec.abstract = "Suspend a VM";
  spec.arguments = {Arg("name", "name", "VM name")};
  spec.order = "a";
  Parsed parsed = fakes::Parse(spec, args);
  CollectGarbage();
  const std::string name = *parsed.Argument("name");
  const std::string dir = Open(name);
  if (PidLockHolder(ConfigPath(dir)) <= 0) {
    // Tart passes its whole message as the name.
    VmNotRunning("VM \"" + name + "\" is not running");
  }
  Refuse(
      "suspending a Linux VM is not modelled (Tart suspends macOS VMs "
      "only)");
}

int Delete(const std::vector<std::string>& args) {
  CommandSpec spec;
  spec.path = "tart delete";
  spec.abstract = "Delete a VM";
  spec.arguments = {Arg("name", "name", "VM name", true)};
  spec.order = "a";
  Parsed parsed = fakes::Parse(spec, args);
  CollectGarbage();
  for (const auto& name : parsed.Arguments("name")) {
    if (LooksRemote(name)) Refuse("OCI VMs (" + name + ") are not modelled");
    const std::string dir = VmDir(name);
    int fd = LocalName(name)
                 ? ::open(ConfigPath(dir).c_str(), O_RDWR | O_CLOEXEC)
                 : -1;
    if (fd < 0) VmDoesNotExist(name);
    struct flock lock {};
    lock.l_type = F_WRLCK;
    lock.l_whence = SEEK_SET;
    if (::fcntl(fd, F_SETLK, &lock) != 0) {
      ::close(fd);
      Runtime("VM \"" + name + "\" is running");
    }
    WaitFlockFree(CleanupLockPath(g_home, name), 15000);
    fakes::RemoveTree(dir);
    ::close(fd);
  }
  return 0;
}

int Ip(const std::vector<std::string>& args) {
  CommandSpec spec;
  spec.path = "tart ip";
  spec.abstract = "Get VM's IP address";
  spec.arguments = {Arg("name", "name", "VM name")};
  spec.options = {Opt("wait", {"--wait"}, "wait",
                      "Number of seconds to wait for a potential VM booting"),
                  Opt("resolver", {"--resolver"}, "resolver",
                      "Strategy for resolving IP address", ValueType::kChoice,
                      {"dhcp", "arp", "agent"})};
  spec.order = "aoo";
  Parsed parsed = fakes::Parse(spec, args);
  Unsigned(spec, parsed, "wait", "--wait", "wait", spec.options[0].help, 65535);
  CollectGarbage();
  Open(*parsed.Argument("name"));
  Refuse("`tart ip` is not modelled: the guest has no network but loopback");
}

int Dispatch(const std::vector<std::string>& argv) {
  if (argv.empty()) {
    throw CliExit{
        "Error: Missing expected argument '<subcommand>'\n"
        "Usage: tart <subcommand>\n"
        "  See 'tart --help' for more information.",
        64};
  }
  const std::string& command = argv[0];
  const std::vector<std::string> args(argv.begin() + 1, argv.end());
  if (command == "--version") {
    std::cout << kVersion << "\ncorral test fake (tests/fakes/tart)\n";
    return 0;
  }
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << "OVERVIEW: (corral test fake: tests/fakes/tart; see "
                 "tests/fakes/README.md)\n\nUSAGE: tart <subcommand>\n";
    return 0;
  }
  if (::geteuid() != 0) Refuse("must run as root (it drives runc)");
  if (command == "create") return (InitHome(), Create(args));
  if (command == "clone") return (InitHome(), Clone(args));
  if (command == "run") return (InitHome(), Run(args));
  if (command == "set") return (InitHome(), Set(args));
  if (command == "get") return (InitHome(), Get(args));
  if (command == "list") return (InitHome(), List(args));
  if (command == "exec") return (InitHome(), Exec(args));
  if (command == "stop") return (InitHome(), Stop(args));
  if (command == "suspend") return (InitHome(), Suspend(args));
  if (command == "delete") return (InitHome(), Delete(args));
  if (command == "ip") return (InitHome(), Ip(args));
  if (command == "fake-rootfs") return (InitHome(), FakeRootfs(args));
  for (const char* other : {"login", "logout", "pull", "push", "import",
                            "export", "prune", "rename", "fqn"}) {
    if (command == other) Refuse("`tart " + command + "` is not modelled");
  }
  throw CliExit{"Error: Unexpected argument '" + command +
                    "'\nUsage: tart <subcommand>\n  See 'tart --help' for "
                    "more information.",
                64};
}

}  // namespace
}  // namespace corral::fake_tart

int main(int argc, char** argv) {
  corral::fakes::SetFakeDirectory("tests/fakes/tart");
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    int code = corral::fake_tart::Dispatch(args);
    std::cout.flush();
    return code;
  } catch (const corral::fakes::CliExit& exit) {
    return corral::fakes::ReportExit(exit);
  }
}
