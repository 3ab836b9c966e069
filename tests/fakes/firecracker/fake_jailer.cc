// A FAKE of Firecracker's jailer, for tests on hosts where Firecracker
// cannot run (tests/fakes/README.md). It reproduces the real jailer's
// interface (Firecracker 1.17: src/jailer): its flags and their checks with
// the same messages and exit code, the jail's layout
// (<chroot base>/<exec file name>/<id>/root, the exec file copied in, /dev
// nodes, /run, the pid file), the cgroups (v1: one per controller under
// --parent-cgroup, each file inherited from the parent then written; v2:
// controllers enabled down the path), --netns, the no-file limit, the
// pivot_root into the jail, the privilege drop and the arguments it adds
// to Firecracker's.
//
// Where it differs, on purpose: the jail also gets read-only binds of the
// host's /usr (and the /lib, /lib64, /bin links or binds): the fake
// Firecracker runs QEMU, which needs them; the real jail holds only
// Firecracker's static binary. Errors print their message alone (not
// also Rust's Debug form on a second line).
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/fakes/firecracker/fake_args.h"

namespace {

constexpr char kVersion[] = "1.17.0-dev";

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "%s\n", message.c_str());
  std::exit(1);
}

std::string Errno(int error) {
  return std::string(std::strerror(error)) + " (os error " +
         std::to_string(error) + ")";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream out;
  out << in.rdbuf();
  return out.str();
}

bool WriteFile(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::write(fd, text.data(), text.size()) ==
            static_cast<ssize_t>(text.size());
  ::close(fd);
  return ok;
}

void MakeDirs(const std::string& path, mode_t mode) {
  std::string at;
  std::stringstream parts(path);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (part.empty()) continue;
    at += "/" + part;
    if (::mkdir(at.c_str(), mode) != 0 && errno != EEXIST) {
      Die("Failed to create directory " + at + ": " + Errno(errno));
    }
  }
}

uint64_t MonotonicUs() {
  timespec t{};
  ::clock_gettime(CLOCK_MONOTONIC, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1000000 + t.tv_nsec / 1000;
}

uint64_t CpuUs() {
  timespec t{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<uint64_t>(t.tv_sec) * 1000000 + t.tv_nsec / 1000;
}

// The cgroup hierarchies of /proc/mounts: v1 mount point by controller, and
// the cgroup2 mount.
struct Hierarchies {
  std::vector<std::pair<std::string, std::string>> v1;  // options, mount
  std::string v2;
};

Hierarchies ReadHierarchies() {
  Hierarchies found;
  std::istringstream mounts(ReadFile("/proc/mounts"));
  std::string line;
  while (std::getline(mounts, line)) {
    std::istringstream fields(line);
    std::string source, target, type, options;
    fields >> source >> target >> type >> options;
    if (type == "cgroup") found.v1.emplace_back("," + options + ",", target);
    if (type == "cgroup2" && found.v2.empty()) found.v2 = target;
  }
  return found;
}

struct CgroupSetting {
  std::string file;
  std::string value;
  std::string controller;
};

// Writes `value` into <dir>/<file> of every ancestor that lacks one, from
// the top (the real jailer's inherit_from_parent, for cpuset's files).
void Inherit(const std::string& mount, const std::string& parent,
             const std::string& file) {
  std::vector<std::string> chain = {mount};
  std::stringstream parts(parent);
  std::string part;
  while (std::getline(parts, part, '/')) {
    if (!part.empty()) chain.push_back(chain.back() + "/" + part);
  }
  std::string last;
  for (const std::string& dir : chain) {
    std::string value = ReadFile(dir + "/" + file);
    if (value.empty() || value == "\n") {
      if (!last.empty()) WriteFile(dir + "/" + file, last);
    } else {
      last = value.substr(0, value.find('\n'));
    }
  }
}

void SetUpCgroups(const std::string& version, const std::string& parent,
                  const std::string& id,
                  const std::vector<CgroupSetting>& settings) {
  const Hierarchies hierarchies = ReadHierarchies();
  std::vector<std::string> procs;
  if (version == "2") {
    if (hierarchies.v2.empty()) {
      Die("Hierarchy not found: No hierarchy found for this cgroup version.");
    }
    const std::string controllers =
        " " + ReadFile(hierarchies.v2 + "/cgroup.controllers") + " ";
    const std::string dir = hierarchies.v2 + "/" + parent + "/" + id;
    if (settings.empty()) {
      const std::string parent_dir = hierarchies.v2 + "/" + parent;
      struct stat st {};
      if (::stat(parent_dir.c_str(), &st) == 0 &&
          !WriteFile(parent_dir + "/cgroup.procs",
                     std::to_string(::getpid()))) {
        Die("Failed to move process to cgroup (" + parent_dir +
            "): " + Errno(errno) +
            ".\nHint: If you intended to create a child cgroup under " +
            parent_dir + ", pass any --cgroup parameters.");
      }
      return;
    }
    MakeDirs(dir, 0755);
    for (const CgroupSetting& setting : settings) {
      if (controllers.find(setting.controller) == std::string::npos) {
        Die("Controller " + setting.controller + " is unavailable");
      }
      // Enable the controller down the path, from the top.
      std::string at = hierarchies.v2;
      std::stringstream parts(parent + "/" + id);
      std::string part;
      while (std::getline(parts, part, '/')) {
        if (part.empty()) continue;
        WriteFile(at + "/cgroup.subtree_control",
                  "+" + setting.controller + "\n");
        at += "/" + part;
      }
    }
    for (const CgroupSetting& setting : settings) {
      if (!WriteFile(dir + "/" + setting.file, setting.value + "\n")) {
        Die("Failed to write to " + dir + "/" + setting.file + ": " +
            Errno(errno));
      }
    }
    procs.push_back(dir + "/cgroup.procs");
  } else {
    std::vector<std::string> dirs;
    for (const CgroupSetting& setting : settings) {
      std::string mount;
      for (const auto& [options, target] : hierarchies.v1) {
        if (options.find("," + setting.controller + ",") != std::string::npos) {
          mount = target;
          break;
        }
      }
      if (mount.empty()) {
        Die("Controller " + setting.controller + " is unavailable");
      }
      const std::string dir = mount + "/" + parent + "/" + id;
      MakeDirs(dir, 0755);
      Inherit(mount, parent + "/" + id, setting.file);
      if (!WriteFile(dir + "/" + setting.file, setting.value + "\n")) {
        Die("Failed to write to " + dir + "/" + setting.file + ": " +
            Errno(errno));
      }
      bool seen = false;
      for (const std::string& d : dirs) seen = seen || d == dir;
      if (!seen) dirs.push_back(dir);
    }
    for (const std::string& dir : dirs) procs.push_back(dir + "/tasks");
  }
  for (const std::string& file : procs) {
    if (!WriteFile(file, std::to_string(::getpid()) + "\n")) {
      Die("Failed to write to " + file + ": " + Errno(errno));
    }
  }
}

// The fake's addition: the host's programs and libraries, read-only, for
// QEMU under the fake Firecracker.
void BindHostPrograms(const std::string& root) {
  const std::string usr = root + "/usr";
  ::mkdir(usr.c_str(), 0755);
  if (::mount("/usr", usr.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0 ||
      ::mount(nullptr, usr.c_str(), nullptr,
              MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID, nullptr) != 0) {
    Die("fake jailer: bind /usr: " + Errno(errno));
  }
  for (const char* name : {"lib", "lib64", "bin", "sbin"}) {
    const std::string host = std::string("/") + name;
    const std::string inside = root + "/" + name;
    struct stat st {};
    if (::lstat(host.c_str(), &st) != 0) continue;
    if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      ssize_t n = ::readlink(host.c_str(), target, sizeof(target) - 1);
      if (n <= 0) continue;
      target[n] = '\0';
      ::unlink(inside.c_str());
      if (::symlink(target, inside.c_str()) != 0) {
        Die("fake jailer: symlink " + inside + ": " + Errno(errno));
      }
    } else if (S_ISDIR(st.st_mode)) {
      ::mkdir(inside.c_str(), 0755);
      if (::mount(host.c_str(), inside.c_str(), nullptr, MS_BIND | MS_REC,
                  nullptr) != 0 ||
          ::mount(nullptr, inside.c_str(), nullptr,
                  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID, nullptr) != 0) {
        Die("fake jailer: bind " + host + ": " + Errno(errno));
      }
    }
  }
}

void PivotInto(const std::string& root) {
  if (::unshare(CLONE_NEWNS) != 0)
    Die("Failed to unshare into new mount namespace: " + Errno(errno));
  if (::mount(nullptr, "/", nullptr, MS_SLAVE | MS_REC, nullptr) != 0) {
    Die("Failed to mount / as slave: " + Errno(errno));
  }
  if (::mount(root.c_str(), root.c_str(), nullptr, MS_BIND | MS_REC, nullptr) !=
      0) {
    Die("Failed to bind mount the jail root directory: " + Errno(errno));
  }
  BindHostPrograms(root);
  if (::chdir(root.c_str()) != 0)
    Die("Failed to change current directory: " + Errno(errno));
  ::mkdir("old_root", 0700);
  if (::syscall(SYS_pivot_root, ".", "old_root") != 0) {
    Die("Failed to pivot root: " + Errno(errno));
  }
  if (::chdir("/") != 0)
    Die("Failed to change current directory: " + Errno(errno));
  if (::umount2("old_root", MNT_DETACH) != 0)
    Die("Failed to unmount the old jail root: " + Errno(errno));
  ::rmdir("old_root");
}

void MakeNode(const char* path, unsigned major_number, unsigned minor_number,
              uid_t uid, gid_t gid) {
  if (::mknod(path, S_IFCHR | 0600, makedev(major_number, minor_number)) != 0 &&
      errno != EEXIST) {
    Die(std::string("Failed to create ") + path +
        " via mknod inside the jail: " + Errno(errno));
  }
  if (::chown(path, uid, gid) != 0) {
    Die(std::string("Failed to change owner for ") + path + ": " +
        Errno(errno));
  }
}

}  // namespace

int main(int argc, char** argv) {
  // As the real one: no inherited fd beyond 0-2, no environment.
  ::syscall(SYS_close_range, 3, ~0u, 0);
  const uint64_t start_us = MonotonicUs();
  corral::fakes::ArgSpec spec;
  spec.flags = {"daemonize", "new-pid-ns", "version", "help"};
  spec.values = {
      "id",    "exec-file",      "uid",          "gid", "chroot-base-dir",
      "netns", "cgroup-version", "parent-cgroup"};
  spec.multi = {"cgroup", "resource-limit"};
  spec.required = {"exec-file", "gid", "id", "uid"};
  corral::fakes::ParsedArgs args = corral::fakes::ParseArgs(spec, argc, argv);
  if (!args.error.empty()) Die("Failed to parse arguments: " + args.error);
  if (args.flags.count("help") != 0) {
    std::printf(
        "jailer v%s (corral test fake)\n\nUsage: jailer --id <id> "
        "--exec-file <path> --uid <uid> --gid <gid> [--chroot-base-dir "
        "<dir>] [--netns <path>] [--daemonize] [--new-pid-ns] [--cgroup "
        "<file=value>]... [--cgroup-version 1|2] [--parent-cgroup <path>] "
        "[--resource-limit <res=value>]... [-- <firecracker args>]\n",
        kVersion);
    return 0;
  }
  if (args.flags.count("version") != 0) {
    std::printf("Jailer v%s (corral test fake)\n\n", kVersion);
    return 0;
  }
  ::clearenv();

  // The checks, in the real one's order.
  const std::string id = args.Value("id");
  if (id.empty() || id.size() > 64) {
    Die("Invalid instance ID: Invalid len (" + std::to_string(id.size()) +
        ");  the length must be between 1 and 64");
  }
  for (size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') {
      Die(std::string("Invalid instance ID: Invalid char (") + c +
          ") at position " + std::to_string(i));
    }
  }
  char resolved[PATH_MAX];
  const std::string exec_arg = args.Value("exec-file");
  if (::realpath(exec_arg.c_str(), resolved) == nullptr) {
    Die("Failed to canonicalize path " + exec_arg + ": " + Errno(errno));
  }
  const std::string exec_file = resolved;
  struct stat exec_st {};
  if (::stat(exec_file.c_str(), &exec_st) != 0 || !S_ISREG(exec_st.st_mode)) {
    Die(exec_file + " is not a file");
  }
  const std::string exec_name = exec_file.substr(exec_file.rfind('/') + 1);
  const std::string base_arg = args.Value("chroot-base-dir", "/srv/jailer");
  MakeDirs(base_arg, 0755);
  if (::realpath(base_arg.c_str(), resolved) == nullptr) {
    Die("Failed to canonicalize path " + base_arg + ": " + Errno(errno));
  }
  const std::string base = resolved;
  auto number = [](const std::string& text, long* out) {
    char* end = nullptr;
    errno = 0;
    *out = std::strtol(text.c_str(), &end, 10);
    return !text.empty() && errno == 0 && *end == '\0' && *out >= 0;
  };
  long uid = 0, gid = 0;
  if (!number(args.Value("uid"), &uid))
    Die("Invalid uid: " + args.Value("uid"));
  if (!number(args.Value("gid"), &gid))
    Die("Invalid gid: " + args.Value("gid"));
  const std::string parent = args.Value("parent-cgroup", exec_name);
  if (parent.empty() || parent[0] == '/' ||
      ("/" + parent + "/").find("/../") != std::string::npos ||
      ("/" + parent + "/").find("/./") != std::string::npos) {
    Die("Parent cgroup path is invalid. Path should not be absolute or "
        "contain '..' or '.'");
  }
  const std::string version = args.Value("cgroup-version", "1");
  if (version != "1" && version != "2") {
    Die(version + " is an invalid cgroup version specifier");
  }
  std::vector<CgroupSetting> cgroups;
  auto multi = [&](const char* name) {
    auto it = args.multi.find(name);
    return it == args.multi.end() ? std::vector<std::string>{} : it->second;
  };
  for (const std::string& setting : multi("cgroup")) {
    const size_t equals = setting.find('=');
    if (equals == std::string::npos || equals + 1 == setting.size() ||
        setting.find('=', equals + 1) != std::string::npos) {
      Die("Invalid format for cgroups: " + setting);
    }
    CgroupSetting parsed{setting.substr(0, equals), setting.substr(equals + 1),
                         ""};
    const size_t dot = parsed.file.find('.');
    if (dot == std::string::npos || dot == 0 ||
        parsed.file.find('/') != std::string::npos || parsed.file == "." ||
        parsed.file == "..") {
      Die("Cgroup invalid file: " + setting);
    }
    parsed.controller = parsed.file.substr(0, dot);
    cgroups.push_back(parsed);
  }
  rlim_t no_file = 2048;
  for (const std::string& limit : multi("resource-limit")) {
    const size_t equals = limit.find('=');
    if (equals == std::string::npos) {
      Die("Invalid format for resources limits: " + limit);
    }
    const std::string name = limit.substr(0, equals);
    long value = 0;
    if (!number(limit.substr(equals + 1), &value)) {
      Die("Invalid limit value for resource: " + limit.substr(equals + 1) +
          ": invalid digit found in string");
    }
    if (name == "no-file") {
      no_file = static_cast<rlim_t>(value);
    } else if (name == "fsize") {
      rlimit fsize{static_cast<rlim_t>(value), static_cast<rlim_t>(value)};
      ::setrlimit(RLIMIT_FSIZE, &fsize);
    } else {
      Die("Invalid resource argument: " + name);
    }
  }

  // The jail, and the exec file copied into it.
  const std::string root = base + "/" + exec_name + "/" + id + "/root";
  MakeDirs(root, 0755);
  const std::string copy = root + "/" + exec_name;
  {
    int in = ::open(exec_file.c_str(), O_RDONLY | O_CLOEXEC);
    int out = ::open(copy.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC,
                     exec_st.st_mode & 07777);
    if (in < 0 || out < 0) {
      Die("Failed to copy " + exec_file + " to " + copy + ": " + Errno(errno));
    }
    struct stat copy_st {};
    if (::fstat(out, &copy_st) == 0 && copy_st.st_nlink > 1) {
      Die("Detected hard link at: " + copy);
    }
    char buffer[65536];
    ssize_t n;
    while ((n = ::read(in, buffer, sizeof(buffer))) > 0) {
      if (::write(out, buffer, static_cast<size_t>(n)) != n) {
        Die("Failed to copy " + exec_file + " to " + copy + ": " +
            Errno(errno));
      }
    }
    ::fchown(out, static_cast<uid_t>(uid), static_cast<gid_t>(gid));
    ::fchmod(out, exec_st.st_mode & 07777);
    ::close(in);
    ::close(out);
  }
  if (args.values.count("netns") != 0) {
    const std::string netns = args.Value("netns");
    int fd = ::open(netns.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) != 0) {
      Die("Failed to join network namespace: netns: " + Errno(errno));
    }
    ::close(fd);
  }
  rlimit files{no_file, no_file};
  ::setrlimit(RLIMIT_NOFILE, &files);
  SetUpCgroups(version, parent, id, cgroups);
  int dev_null = -1;
  if (args.flags.count("daemonize") != 0) {
    dev_null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    if (dev_null < 0) Die("Failed to open /dev/null: " + Errno(errno));
  }
  // userfaultfd's minor, before /proc is out of reach.
  int userfaultfd_minor = -1;
  {
    std::istringstream misc(ReadFile("/proc/misc"));
    int minor_number = 0;
    std::string name;
    while (misc >> minor_number >> name) {
      if (name == "userfaultfd") userfaultfd_minor = minor_number;
    }
  }
  PivotInto(root);
  for (const char* dir : {"/", "/dev", "/dev/net", "/run"}) {
    if (::mkdir(dir, 0700) != 0 && errno != EEXIST) {
      Die(std::string("Failed to create directory ") + dir + ": " +
          Errno(errno));
    }
    ::chown(dir, static_cast<uid_t>(uid), static_cast<gid_t>(gid));
    ::chmod(dir, 0700);
  }
  const uid_t u = static_cast<uid_t>(uid);
  const gid_t g = static_cast<gid_t>(gid);
  MakeNode("/dev/net/tun", 10, 200, u, g);
  MakeNode("/dev/kvm", 10, 232, u, g);
  if (::mknod("/dev/urandom", S_IFCHR | 0600, makedev(1, 9)) != 0 ||
      ::chown("/dev/urandom", u, g) != 0) {
    std::printf(
        "Warning! Could not create /dev/urandom device inside jailer: %s.\n"
        "MMDS version 2 will not be available to use.\n",
        std::strerror(errno));
  }
  if (userfaultfd_minor >= 0) {
    MakeNode("/dev/userfaultfd", 10, static_cast<unsigned>(userfaultfd_minor),
             u, g);
  }
  if (dev_null >= 0) {
    if (::fork() > 0) std::_Exit(0);
    ::setsid();
    if (::fork() > 0) std::_Exit(0);
    for (int fd = 0; fd <= 2; ++fd) ::dup2(dev_null, fd);
  }
  if (args.flags.count("new-pid-ns") != 0) {
    if (::unshare(CLONE_NEWPID) != 0) Die("Failed to clone: " + Errno(errno));
    pid_t child = ::fork();
    if (child < 0) Die("Failed to clone: " + Errno(errno));
    if (child > 0) {
      const std::string pid_file = "/" + exec_name + ".pid";
      int fd = ::open(pid_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                      0644);
      const std::string text = std::to_string(child);
      if (fd < 0 || ::write(fd, text.data(), text.size()) < 0) {
        Die("Failed to write the pid file: " + Errno(errno));
      }
      std::_Exit(0);
    }
  } else {
    const std::string pid_file = "/" + exec_name + ".pid";
    int fd =
        ::open(pid_file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    const std::string text = std::to_string(::getpid());
    if (fd < 0 || ::write(fd, text.data(), text.size()) < 0) {
      Die("Failed to write the pid file: " + Errno(errno));
    }
    ::close(fd);
  }
  // Firecracker, as the sandbox's uid and gid, with the jailer's arguments
  // before the caller's.
  std::vector<std::string> command = {"/" + exec_name,
                                      "--id",
                                      id,
                                      "--start-time-us",
                                      std::to_string(start_us),
                                      "--start-time-cpu-us",
                                      std::to_string(CpuUs()),
                                      "--parent-cpu-time-us",
                                      std::to_string(CpuUs())};
  for (const std::string& extra : args.extra) command.push_back(extra);
  if (::setgroups(0, nullptr) != 0 || ::setresgid(g, g, g) != 0 ||
      ::setresuid(u, u, u) != 0) {
    Die("Failed to drop privileges: " + Errno(errno));
  }
  std::vector<char*> exec_argv;
  for (std::string& arg : command) exec_argv.push_back(arg.data());
  exec_argv.push_back(nullptr);
  char* empty_env[] = {nullptr};
  ::execve(exec_argv[0], exec_argv.data(), empty_env);
  Die("Failed to exec into Firecracker: " + Errno(errno));
}
