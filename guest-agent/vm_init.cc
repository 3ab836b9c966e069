// corral-agent as a VM's init; see vm_init.h.
#include "guest-agent/vm_init.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/vm_sockets.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "guest-agent/agent.h"
#include "guest-agent/spawn.h"
#include "guest-agent/wire/link_bridge.h"

namespace corral::agent {
namespace {

// Where the sandbox's root is assembled: /newroot for a VM's init; the
// root's own directory for a guest sandbox.
std::string new_root = "/newroot";
constexpr char kModulesDir[] = "/modules";
// The virtiofs tag and the disk serials the host gives the root and the
// workspace.
constexpr char kRootTag[] = "corral-root";
constexpr char kRootSerial[] = "corral-root";
constexpr char kWorkspaceSerial[] = "corral-workspace";
constexpr char kDefaultPort[] = "corral.agent";
// The agent's listening socket, abstract: it needs no writable directory in
// the read-only root. Every process of the guest can connect to it, so the
// agent accepts only the link's connections (AgentOptions.link_pid).
constexpr char kAgentSocketName[] = "corral-agent";
// The link runs as this uid and gid, which no command has: commands run as
// root without CAP_KILL, CAP_SYS_PTRACE or CAP_SETUID, so they can neither
// signal nor trace it (kill -9 -1 in a command leaves the sandbox reachable).
constexpr uid_t kLinkUid = 65533;
constexpr gid_t kLinkGid = 65533;
constexpr char kCommandCgroup[] = "/sys/fs/cgroup/sandbox";
constexpr uint64_t kDefaultTmpBytes = 64u << 20;
constexpr int kDeviceWaitMs = 10000;

void Say(const char* format, ...) __attribute__((format(printf, 1, 2)));
void Say(const char* format, ...) {
  char line[512];
  va_list args;
  va_start(args, format);
  std::vsnprintf(line, sizeof(line), format, args);
  va_end(args);
  std::fprintf(stderr, "corral-init: %s\n", line);
}

[[noreturn]] void PowerOff() {
  ::sync();
  ::reboot(RB_POWER_OFF);
  for (;;) ::pause();
}

// In a guest sandbox (RunGuestSandbox) that is still being set up, a
// failure is reported on this pipe and ends the process; the VM lives on.
int setup_report_fd = -1;

[[noreturn]] void Fail(const std::string& step, int error) {
  Say("%s: %s", step.c_str(), std::strerror(error));
  if (setup_report_fd >= 0) {
    const std::string line =
        "error " + step + ": " + std::strerror(error) + "\n";
    (void)!::write(setup_report_fd, line.data(), line.size());
    ::_exit(1);
  }
  PowerOff();
}

void Mount(const std::string& source, const std::string& target,
           const char* type, unsigned long flags, const std::string& data) {
  if (::mount(source.c_str(), target.c_str(), type, flags,
              data.empty() ? nullptr : data.c_str()) != 0) {
    Fail("mount " + std::string(type == nullptr ? "" : type) + " " + source +
             " on " + target,
         errno);
  }
}

void WriteFile(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) Fail("open " + path, errno);
  if (::write(fd, text.data(), text.size()) !=
      static_cast<ssize_t>(text.size())) {
    Fail("write " + text + " to " + path, errno);
  }
  ::close(fd);
}

std::string ReadSmallFile(const std::string& path) {
  std::string text;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return text;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) {
    text.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

// corral.trace=1: each step's end on the console, with the kernel's uptime
// (to see where a boot's time goes).
bool tracing = false;

void Trace(const std::string& step) {
  if (!tracing) return;
  // The kernel's boot clock, to the millisecond (/proc/uptime has 10 ms).
  timespec now{};
  ::clock_gettime(CLOCK_BOOTTIME, &now);
  Say("%s at %.3f s", step.c_str(),
      static_cast<double>(now.tv_sec) + static_cast<double>(now.tv_nsec) / 1e9);
}

void SleepMs(int ms) {
  timespec pause{0, ms * 1000000L};
  ::nanosleep(&pause, nullptr);
}

// The kernel opens /dev/console for init; without one, 0-2 must still be
// open so that no later fd lands there.
void FillStandardFds() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0) continue;
    int opened = ::open("/dev/console", O_RDWR);
    if (opened < 0) opened = ::open("/dev/null", O_RDWR);
    if (opened >= 0 && opened != fd) {
      ::dup2(opened, fd);
      ::close(opened);
    }
  }
}

// The initramfs's modules, in the order of their names ("00-virtio.ko", ...:
// the host sorted them by dependency). The files are removed once loaded:
// the memory is the sandbox's.
void LoadModules() {
  DIR* dir = ::opendir(kModulesDir);
  if (dir == nullptr) return;  // a kernel with everything built in
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name.size() > 3 && name.compare(name.size() - 3, 3, ".ko") == 0) {
      names.push_back(name);
    }
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    const std::string path = std::string(kModulesDir) + "/" + name;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) Fail("open " + path, errno);
    if (::syscall(SYS_finit_module, fd, "", 0) != 0 && errno != EEXIST) {
      Fail("finit_module " + path, errno);
    }
    ::close(fd);
    ::unlink(path.c_str());
    Trace("module " + name);
  }
}

// /dev/vportNpM of the virtio-serial port called `name`.
std::string WaitForPort(const std::string& name) {
  for (int waited = 0; waited < kDeviceWaitMs; waited += 2) {
    if (DIR* dir = ::opendir("/sys/class/virtio-ports")) {
      while (dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        std::string port = entry->d_name;
        std::string found =
            ReadSmallFile("/sys/class/virtio-ports/" + port + "/name");
        while (!found.empty() && found.back() == '\n') found.pop_back();
        if (found == name) {
          ::closedir(dir);
          const std::string device = "/dev/" + port;
          struct stat st {};
          if (::stat(device.c_str(), &st) == 0) return device;
          break;  // the node is not there yet
        }
      }
      ::closedir(dir);
    }
    SleepMs(2);
  }
  Say("no virtio-serial port named %s after %d ms", name.c_str(),
      kDeviceWaitMs);
  PowerOff();
}

// /dev/vdX of the virtio disk whose serial is `serial` (the host names its
// disks; the order of their device names is the guest's choice).
std::string WaitForDisk(const std::string& serial) {
  for (int waited = 0; waited < kDeviceWaitMs; waited += 2) {
    if (DIR* dir = ::opendir("/sys/block")) {
      while (dirent* entry = ::readdir(dir)) {
        if (entry->d_name[0] == '.') continue;
        const std::string disk = entry->d_name;
        std::string found = ReadSmallFile("/sys/block/" + disk + "/serial");
        while (!found.empty() && found.back() == '\n') found.pop_back();
        if (found != serial) continue;
        ::closedir(dir);
        const std::string device = "/dev/" + disk;
        struct stat st {};
        if (::stat(device.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) {
          return device;
        }
        dir = nullptr;
        break;  // the node is not there yet
      }
      if (dir != nullptr) ::closedir(dir);
    }
    SleepMs(2);
  }
  Say("no disk with serial %s after %d ms", serial.c_str(), kDeviceWaitMs);
  PowerOff();
}

// /dev/<name> of a disk the host put at a known place in the device order
// (a Firecracker guest's: its disks have no serial the host chooses).
std::string WaitForDiskNamed(const std::string& name) {
  bool valid = !name.empty() && name.size() <= 16;
  for (char c : name) {
    valid = valid && ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'));
  }
  if (!valid) {
    Say("bad disk name %s", name.c_str());
    PowerOff();
  }
  const std::string device = "/dev/" + name;
  for (int waited = 0; waited < kDeviceWaitMs; waited += 2) {
    struct stat st {};
    if (::stat(device.c_str(), &st) == 0 && S_ISBLK(st.st_mode)) return device;
    SleepMs(2);
  }
  Say("no disk %s after %d ms", device.c_str(), kDeviceWaitMs);
  PowerOff();
}

// The disk of a role: by its name in the device order (corral.<role>_dev=)
// or by the serial the host gave it.
std::string DiskFor(const std::map<std::string, std::string>& settings,
                    const std::string& role, const char* serial) {
  auto named = settings.find(role + "_dev");
  if (named != settings.end()) return WaitForDiskNamed(named->second);
  return WaitForDisk(serial);
}

uint64_t NumberSetting(const std::map<std::string, std::string>& settings,
                       const std::string& key, uint64_t fallback) {
  auto it = settings.find(key);
  if (it == settings.end()) return fallback;
  char* end = nullptr;
  errno = 0;
  unsigned long long value = std::strtoull(it->second.c_str(), &end, 10);
  if (errno != 0 || end == it->second.c_str() || *end != '\0') {
    Say("corral.%s=%s is not a number", key.c_str(), it->second.c_str());
    PowerOff();
  }
  return value;
}

// The sandbox's limits on its own kernel: a cgroup that every command joins
// (spawn.h SetCommandCgroup). The agent and the link stay outside it, so a
// command that exhausts memory or processes never takes them down.
void SetUpCommandCgroup(uint64_t memory_bytes, uint64_t pids) {
  const std::string root = new_root + "/sys/fs/cgroup";
  Mount("cgroup2", root, "cgroup2", MS_NOSUID | MS_NODEV | MS_NOEXEC, "");
  WriteFile(root + "/cgroup.subtree_control", "+memory +pids");
  const std::string sandbox = new_root + kCommandCgroup;
  if (::mkdir(sandbox.c_str(), 0755) != 0 && errno != EEXIST) {
    Fail("mkdir " + sandbox, errno);
  }
  if (memory_bytes > 0) {
    WriteFile(sandbox + "/memory.max", std::to_string(memory_bytes));
  }
  if (pids > 0) WriteFile(sandbox + "/pids.max", std::to_string(pids));
}

void MountRoot(const std::map<std::string, std::string>& settings) {
  auto root = settings.find("root");
  if (root == settings.end()) {
    Say("corral.root is not set");
    PowerOff();
  }
  if (::mkdir(new_root.c_str(), 0755) != 0 && errno != EEXIST) {
    Fail("mkdir " + new_root, errno);
  }
  if (root->second != "virtiofs" && root->second != "disk") {
    Say("corral.root=%s: expected disk or virtiofs", root->second.c_str());
    PowerOff();
  }
  if (root->second == "virtiofs") {
    Mount(kRootTag, new_root, "virtiofs", MS_RDONLY | MS_NODEV, "");
  } else {
    Mount(DiskFor(settings, "root", kRootSerial), new_root, "ext4",
          MS_RDONLY | MS_NODEV, "noload");
  }
}

// The device nodes of a guest sandbox's /dev, bound from the guest's: not
// its devtmpfs, which holds the guest's disks and the agent's console.
constexpr const char* kGuestDevices[] = {"null",   "zero",    "full",
                                         "random", "urandom", "tty"};

void MountMinimalDev(const std::string& dev) {
  Mount("tmpfs", dev, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=0755,size=64k");
  for (const char* name : kGuestDevices) {
    const std::string node = dev + "/" + name;
    int fd = ::open(node.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0666);
    if (fd < 0) Fail("create " + node, errno);
    ::close(fd);
    Mount(std::string("/dev/") + name, node, nullptr, MS_BIND, "");
  }
  const std::string ptmx = dev + "/ptmx";
  if (::symlink("pts/ptmx", ptmx.c_str()) != 0) Fail("symlink " + ptmx, errno);
}

// vm_kernel: the sandbox is the whole VM (a VM's init), its kernel the
// sandbox's own; otherwise it is a guest sandbox inside a VM that also runs
// other things (RunGuestSandbox), whose kernel settings and devices stay
// out of reach.
void MountSandbox(const std::map<std::string, std::string>& settings,
                  bool vm_kernel) {
  const std::string root = new_root;
  const unsigned long kSafe = MS_NOSUID | MS_NODEV;
  Mount("proc", root + "/proc", "proc", kSafe | MS_NOEXEC, "");
  // A memory limit means what it means on the host: allocations succeed and
  // the commands' cgroup OOM-kills beyond it. With the kernel's heuristic a
  // single allocation larger than the VM's RAM would fail instead.
  if (vm_kernel) WriteFile(root + "/proc/sys/vm/overcommit_memory", "1");
  // As the container runtimes do: the kernel's knobs read-only (root
  // without capabilities could still write /proc/sys by file mode).
  for (const char* knob : {"/proc/sys", "/proc/sysrq-trigger"}) {
    const std::string path = root + knob;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) continue;  // a kernel without it
    Mount(path, path, nullptr, MS_BIND, "");
    Mount(path, path, nullptr,
          MS_BIND | MS_REMOUNT | MS_RDONLY | kSafe | MS_NOEXEC, "");
  }
  Mount("sysfs", root + "/sys", "sysfs", kSafe | MS_NOEXEC | MS_RDONLY, "");
  if (vm_kernel) {
    Mount("devtmpfs", root + "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  } else {
    MountMinimalDev(root + "/dev");
  }
  const std::string pts = root + "/dev/pts";
  if (::mkdir(pts.c_str(), 0755) != 0 && errno != EEXIST) {
    Fail("mkdir " + pts, errno);
  }
  Mount("devpts", pts, "devpts", MS_NOSUID | MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620");
  const std::string shm = root + "/dev/shm";
  if (::mkdir(shm.c_str(), 01777) != 0 && errno != EEXIST) {
    Fail("mkdir " + shm, errno);
  }
  Mount("shm", shm, "tmpfs", kSafe, "mode=1777");
  const uint64_t tmp_bytes = NumberSetting(settings, "tmp", kDefaultTmpBytes);
  Mount("tmpfs", root + "/tmp", "tmpfs", kSafe,
        "mode=1777,size=" + std::to_string(tmp_bytes));
  if (!vm_kernel) {
    // The workspace is a directory the VM shares from the host.
    if (auto workspace = settings.find("workspace");
        workspace != settings.end()) {
      Mount(workspace->second, root + "/workspace", nullptr, MS_BIND, "");
      Mount(workspace->second, root + "/workspace", nullptr,
            MS_BIND | MS_REMOUNT | kSafe, "");
    }
    return;
  }
  if (settings.count("workspace") != 0) {
    // noinit_itable: the disk is a new sparse file, its inode tables
    // already read as zeros; the kernel's lazy zeroing would only take CPU
    // from the boot (about 40 ms under emulation) and fill the host file.
    Mount(DiskFor(settings, "workspace", kWorkspaceSerial), root + "/workspace",
          "ext4", kSafe, "noinit_itable");
    // mkfs makes lost+found; a workspace starts empty (and rmdir leaves a
    // lost+found that holds anything alone).
    ::rmdir((root + "/workspace/lost+found").c_str());
  }
  SetUpCommandCgroup(NumberSetting(settings, "memory", 0),
                     NumberSetting(settings, "pids", 0));
}

// The guest's own loopback, up: no network device besides it, but programs
// talk to themselves over 127.0.0.1 as they would in any sandbox.
void BringUpLoopback() {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Fail("socket AF_INET", errno);
  ifreq request{};
  std::strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(fd, SIOCGIFFLAGS, &request) != 0) Fail("SIOCGIFFLAGS lo", errno);
  request.ifr_flags |= IFF_UP;
  if (::ioctl(fd, SIOCSIFFLAGS, &request) != 0) Fail("SIOCSIFFLAGS lo", errno);
  ::close(fd);
}

// corral.net=ADDRESS/PREFIX,GATEWAY: the card (virtio-net, eth0) is the
// guest's end of the daemon's tap on its egress path. Its address and
// default route; no IPv6 (the egress path has none); DNS at the gateway,
// over the image's /etc/resolv.conf when it has one (any server it names
// would reach the same resolver, but not a loopback one).
// Returns the gateway.
std::string ConfigureNetwork(const std::string& setting) {
  unsigned a[4] = {}, g[4] = {}, prefix = 0;
  if (std::sscanf(setting.c_str(), "%u.%u.%u.%u/%u,%u.%u.%u.%u", &a[0], &a[1],
                  &a[2], &a[3], &prefix, &g[0], &g[1], &g[2], &g[3]) != 9 ||
      prefix == 0 || prefix > 32) {
    Fail("bad corral.net=" + setting, EINVAL);
  }
  auto in_addr_of = [](const unsigned* p) {
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl((p[0] & 0xff) << 24 | (p[1] & 0xff) << 16 |
                               (p[2] & 0xff) << 8 | (p[3] & 0xff));
    return in;
  };
  // The driver registers the card as it loads; give it a moment.
  for (int i = 0; i < 200 && ::access("/sys/class/net/eth0", F_OK) != 0; ++i) {
    SleepMs(10);
  }
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Fail("socket AF_INET", errno);
  ifreq request{};
  std::strncpy(request.ifr_name, "eth0", IFNAMSIZ - 1);
  sockaddr_in address = in_addr_of(a);
  std::memcpy(&request.ifr_addr, &address, sizeof(address));
  if (::ioctl(fd, SIOCSIFADDR, &request) != 0) Fail("SIOCSIFADDR eth0", errno);
  sockaddr_in mask{};
  mask.sin_family = AF_INET;
  mask.sin_addr.s_addr = htonl(prefix == 32 ? ~0u : ~(~0u >> prefix));
  std::memcpy(&request.ifr_netmask, &mask, sizeof(mask));
  if (::ioctl(fd, SIOCSIFNETMASK, &request) != 0) {
    Fail("SIOCSIFNETMASK eth0", errno);
  }
  if (::ioctl(fd, SIOCGIFFLAGS, &request) != 0)
    Fail("SIOCGIFFLAGS eth0", errno);
  request.ifr_flags |= IFF_UP;
  if (::ioctl(fd, SIOCSIFFLAGS, &request) != 0)
    Fail("SIOCSIFFLAGS eth0", errno);
  rtentry route{};
  sockaddr_in any{};
  any.sin_family = AF_INET;
  std::memcpy(&route.rt_dst, &any, sizeof(any));
  std::memcpy(&route.rt_genmask, &any, sizeof(any));
  sockaddr_in gateway = in_addr_of(g);
  std::memcpy(&route.rt_gateway, &gateway, sizeof(gateway));
  route.rt_flags = RTF_UP | RTF_GATEWAY;
  char device[] = "eth0";
  route.rt_dev = device;
  if (::ioctl(fd, SIOCADDRT, &route) != 0) Fail("SIOCADDRT default", errno);
  ::close(fd);
  if (::access("/proc/sys/net/ipv6/conf/all/disable_ipv6", F_OK) == 0) {
    WriteFile("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
  }
  // The file stays in the initramfs, which lives on beneath the new root.
  const std::string nameserver =
      std::to_string(g[0] & 0xff) + "." + std::to_string(g[1] & 0xff) + "." +
      std::to_string(g[2] & 0xff) + "." + std::to_string(g[3] & 0xff);
  const std::string text = "nameserver " + nameserver + "\n";
  int file =
      ::open("/resolv.conf", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (file < 0 || ::write(file, text.data(), text.size()) !=
                      static_cast<ssize_t>(text.size())) {
    Fail("write /resolv.conf", errno);
  }
  ::close(file);
  const std::string target = new_root + "/etc/resolv.conf";
  struct stat st {};
  if (::lstat(target.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    Mount("/resolv.conf", target, nullptr, MS_BIND, "");
    Mount(target, target, nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, "");
  }
  return nameserver;
}

// The guest's own vsock CID, or 0 when it has no vsock device (the
// modules are loaded, the device absent: a VMM standing in for
// Firecracker, which offers the serial link instead).
unsigned VsockLocalCid() {
  int fd = ::open("/dev/vsock", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  unsigned cid = VMADDR_CID_ANY;
  const int result = ::ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid);
  ::close(fd);
  if (result != 0 || cid == VMADDR_CID_ANY || cid <= VMADDR_CID_HOST) return 0;
  return cid;
}

// The agent's listener on the guest's vsock: the host's Firecracker passes
// connections made to its vsock socket with "CONNECT <port>".
int ListenOnVsock(unsigned port) {
  int fd = ::socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Fail("socket AF_VSOCK", errno);
  sockaddr_vm address{};
  address.svm_family = AF_VSOCK;
  address.svm_cid = VMADDR_CID_ANY;
  address.svm_port = port;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(fd, 4) != 0) {
    Fail("listen on vsock port " + std::to_string(port), errno);
  }
  return fd;
}

void SwitchRoot() {
  // The initramfs's own mounts go; its files (but this program, which is
  // running) were the modules, already removed.
  for (const char* mount : {"/dev", "/proc", "/sys"})
    ::umount2(mount, MNT_DETACH);
  if (::chdir(new_root.c_str()) != 0) Fail("chdir " + new_root, errno);
  if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0) {
    Fail("move the new root onto /", errno);
  }
  if (::chroot(".") != 0) Fail("chroot", errno);
  if (::chdir("/") != 0) Fail("chdir /", errno);
}

sockaddr_un AgentAddress(socklen_t* length) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path + 1, kAgentSocketName,
              sizeof(kAgentSocketName) - 1);
  *length = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 +
                                   sizeof(kAgentSocketName) - 1);
  return address;
}

int ListenForLink() {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) Fail("socket", errno);
  socklen_t length = 0;
  sockaddr_un address = AgentAddress(&length);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), length) != 0 ||
      ::listen(fd, 4) != 0) {
    Fail("bind the agent's socket", errno);
  }
  return fd;
}

// The vsock port the agent answers on (corral.vsock=), or empty.
std::string agent_vsock_port;

int ConnectToAgent(const std::string& port) {
  // A vsock stand-in names the port its peer asked for: only the agent's
  // has a listener (as in a Firecracker guest, where nothing else listens).
  if (!port.empty() && port != agent_vsock_port) {
    errno = ECONNREFUSED;
    return -1;
  }
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  socklen_t length = 0;
  sockaddr_un address = AgentAddress(&length);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

// Asks the kernel's OOM killer to spare this process (the agent, the link):
// best effort, as a guest sandbox's starter may lack the capability.
void SpareFromOomKiller() {
  int fd = ::open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  (void)!::write(fd, "-1000", 5);
  ::close(fd);
}

// The guest's end of the serial link, in a process of its own (the agent is
// single-threaded and forks commands), as an unprivileged user of its own.
// Returns its pid.
pid_t StartLinkOn(int port_fd, int listen_fd) {
  pid_t pid = ::fork();
  if (pid < 0) Fail("fork the link", errno);
  if (pid == 0) {
    ::close(listen_fd);
    SpareFromOomKiller();
    // setresuid away from 0 clears every capability; PR_SET_DUMPABLE after
    // it keeps /proc/<pid> owned by the link's uid, not writable by root.
    if (::setgroups(0, nullptr) != 0 ||
        ::setresgid(kLinkGid, kLinkGid, kLinkGid) != 0 ||
        ::setresuid(kLinkUid, kLinkUid, kLinkUid) != 0 ||
        ::prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) != 0 ||
        ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
      std::fprintf(stderr, "corral-link: drop privileges: %s\n",
                   std::strerror(errno));
      ::_exit(1);
    }
    wire::LinkBridgeOptions options;
    options.role = wire::LinkBridgeOptions::Role::kGuest;
    options.link_fd = port_fd;
    options.connect_agent = ConnectToAgent;
    options.log = [](const std::string& line) {
      std::fprintf(stderr, "corral-link: %s\n", line.c_str());
    };
    ::_exit(wire::RunLinkBridge(options));
  }
  ::close(port_fd);
  return pid;
}

pid_t StartLink(const std::string& port, int listen_fd) {
  int port_fd = ::open(port.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (port_fd < 0) Fail("open " + port, errno);
  return StartLinkOn(port_fd, listen_fd);
}

// Resolvers without an /etc/resolv.conf ask 127.0.0.1: in a VM with network
// a small relay answers there, passing each query to the gateway (where
// the daemon's resolver judges it) and the answer back. A process of its
// own, as an unprivileged uid that commands cannot signal. UDP only.
void StartLoopbackDnsRelay(const std::string& gateway) {
  sockaddr_in local{};
  local.sin_family = AF_INET;
  local.sin_port = htons(53);
  local.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sockaddr_in upstream{};
  upstream.sin_family = AF_INET;
  upstream.sin_port = htons(53);
  if (::inet_pton(AF_INET, gateway.c_str(), &upstream.sin_addr) != 1) return;
  int listen = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (listen < 0 ||
      ::bind(listen, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
    Say("no DNS relay on 127.0.0.1: %s", std::strerror(errno));
    if (listen >= 0) ::close(listen);
    return;
  }
  pid_t pid = ::fork();
  if (pid < 0) Fail("fork the DNS relay", errno);
  if (pid != 0) {
    ::close(listen);
    return;
  }
  if (::setgroups(0, nullptr) != 0 ||
      ::setresgid(kLinkGid, kLinkGid, kLinkGid) != 0 ||
      ::setresuid(kLinkUid, kLinkUid, kLinkUid) != 0 ||
      ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    ::_exit(1);
  }
  // In flight: an upstream socket per query, with its client and deadline.
  struct Query {
    int fd;
    sockaddr_in client;
    time_t deadline;
  };
  constexpr size_t kMaxInFlight = 64;
  std::vector<Query> queries;
  char buffer[4096];
  for (;;) {
    std::vector<pollfd> fds = {{listen, POLLIN, 0}};
    for (const Query& q : queries) fds.push_back({q.fd, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), 1000) < 0 && errno != EINTR) ::_exit(1);
    const time_t now = ::time(nullptr);
    for (size_t i = queries.size(); i-- > 0;) {
      Query& q = queries[i];
      const bool ready = fds[i + 1].revents & POLLIN;
      if (ready) {
        const ssize_t n = ::recv(q.fd, buffer, sizeof(buffer), 0);
        if (n > 0) {
          ::sendto(listen, buffer, static_cast<size_t>(n), 0,
                   reinterpret_cast<sockaddr*>(&q.client), sizeof(q.client));
        }
      }
      if (ready || now > q.deadline) {
        ::close(q.fd);
        queries.erase(queries.begin() + static_cast<long>(i));
      }
    }
    if (fds[0].revents & POLLIN) {
      sockaddr_in client{};
      socklen_t size = sizeof(client);
      const ssize_t n = ::recvfrom(listen, buffer, sizeof(buffer), 0,
                                   reinterpret_cast<sockaddr*>(&client), &size);
      if (n <= 0 || queries.size() >= kMaxInFlight) continue;
      int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      if (::connect(fd, reinterpret_cast<sockaddr*>(&upstream),
                    sizeof(upstream)) != 0 ||
          ::send(fd, buffer, static_cast<size_t>(n), 0) != n) {
        ::close(fd);
        continue;
      }
      queries.push_back({fd, client, now + 5});
    }
  }
}

}  // namespace

std::map<std::string, std::string> ParseVmCommandLine(const std::string& text) {
  std::map<std::string, std::string> settings;
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find_first_of(" \t\n", begin);
    if (end == std::string::npos) end = text.size();
    const std::string word = text.substr(begin, end - begin);
    begin = end + 1;
    if (word == "--") break;  // what follows is init's own arguments
    const std::string prefix = "corral.";
    if (word.compare(0, prefix.size(), prefix) != 0) continue;
    const size_t equals = word.find('=');
    if (equals == std::string::npos) continue;
    settings[word.substr(prefix.size(), equals - prefix.size())] =
        word.substr(equals + 1);
  }
  return settings;
}

void RunVmInit() {
  if (::getpid() != 1) {
    Say("--vm-init is for the init of a VM (pid 1)");
    std::exit(2);
  }
  if (::mkdir("/dev", 0755) != 0 && errno != EEXIST) Fail("mkdir /dev", errno);
  Mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
  FillStandardFds();
  for (const char* dir : {"/proc", "/sys"}) ::mkdir(dir, 0755);
  Mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "");
  Mount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "");
  const auto settings = ParseVmCommandLine(ReadSmallFile("/proc/cmdline"));
  tracing = settings.count("trace") != 0 && settings.at("trace") == "1";
  Trace("init started");

  LoadModules();
  Trace("modules loaded");
  // The disks first: the port appears only once QEMU answered the console
  // driver, which the mounts' time covers.
  MountRoot(settings);
  Trace("root mounted");
  MountSandbox(settings, /*vm_kernel=*/true);
  Trace("sandbox mounted");
  // The agent's transport: the guest's vsock (Firecracker), or a
  // virtio-serial port and the link (qemu, or a VMM standing in for
  // Firecracker without vsock: it bridges its vsock socket to the link).
  unsigned vsock_port = 0;
  if (auto vsock = settings.find("vsock"); vsock != settings.end()) {
    vsock_port = static_cast<unsigned>(NumberSetting(settings, "vsock", 0));
    agent_vsock_port = vsock->second;
  }
  const bool on_vsock = vsock_port > 0 && VsockLocalCid() != 0;
  std::string port;
  if (!on_vsock) {
    auto port_name = settings.find("port");
    port = WaitForPort(port_name == settings.end() ? kDefaultPort
                                                   : port_name->second);
    Trace("port found");
  }
  if (auto hostname = settings.find("hostname"); hostname != settings.end()) {
    if (::sethostname(hostname->second.data(), hostname->second.size()) != 0) {
      Fail("sethostname " + hostname->second, errno);
    }
  }
  BringUpLoopback();
  if (auto net = settings.find("net"); net != settings.end()) {
    StartLoopbackDnsRelay(ConfigureNetwork(net->second));
    Trace("network configured");
  }
  SwitchRoot();

  AgentOptions options;
  if (on_vsock) {
    options.listen_fd = ListenOnVsock(vsock_port);
    options.vsock_host_only = true;
  } else {
    options.listen_fd = ListenForLink();
    options.link_pid = StartLink(port, options.listen_fd);
  }
  SetCommandCgroup(kCommandCgroup);
  SetDropCommandCapabilities(true);
  Trace(on_vsock ? "agent starting on vsock" : "agent starting");
  const int code = RunAgent(options);
  Say("the agent ended (%d); powering off", code);
  PowerOff();
}

}  // namespace corral::agent

namespace corral::agent {
namespace {

// The console a guest sandbox's link runs on, in raw mode: a virtio
// console is a tty, whose line discipline would otherwise rewrite bytes
// (CR/NL, flow control) and echo them back.
int OpenConsole(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (fd < 0) Fail("open " + path, errno);
  termios mode{};
  if (::tcgetattr(fd, &mode) == 0) {
    ::cfmakeraw(&mode);
    if (::tcsetattr(fd, TCSANOW, &mode) != 0)
      Fail("raw mode on " + path, errno);
    ::tcflush(fd, TCIOFLUSH);
  }
  return fd;
}

void PivotInto(const std::string& root) {
  if (::chdir(root.c_str()) != 0) Fail("chdir " + root, errno);
  if (::syscall(SYS_pivot_root, ".", ".") != 0) Fail("pivot_root", errno);
  // The guest's own tree, stacked under the new root, goes.
  if (::umount2(".", MNT_DETACH) != 0) Fail("detach the guest's root", errno);
  if (::chdir("/") != 0) Fail("chdir /", errno);
}

void DetachStandardFds() {
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null < 0) return;
  for (int fd = 0; fd <= 2; ++fd) ::dup2(null, fd);
  ::close(null);
}

// Pid 1 of the sandbox's namespaces: builds its root and runs the agent.
// Says "ready" on `starter_fd` (the starter's pipe, which gets a failure's
// reason instead) and on `supervisor_fd` once the agent can be reached.
[[noreturn]] void GuestSandboxInit(
    const std::map<std::string, std::string>& settings, int console,
    int starter_fd, int supervisor_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  // Not the starter's output (`tart exec` may wait for it to close): a
  // failure's reason goes through `starter_fd`.
  DetachStandardFds();
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    Fail("make / private", errno);
  }
  auto root = settings.find("root");
  if (root == settings.end() || root->second.empty() ||
      root->second[0] != '/') {
    Fail("corral.root must name the image's directory", EINVAL);
  }
  new_root = root->second;
  const unsigned long kReadOnly =
      MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV;
  Mount(new_root, new_root, nullptr, MS_BIND | MS_REC, "");
  Mount(new_root, new_root, nullptr, kReadOnly, "");
  MountSandbox(settings, /*vm_kernel=*/false);
  if (auto hostname = settings.find("hostname"); hostname != settings.end()) {
    if (::sethostname(hostname->second.data(), hostname->second.size()) != 0) {
      Fail("sethostname " + hostname->second, errno);
    }
  }
  BringUpLoopback();
  PivotInto(new_root);

  AgentOptions options;
  options.listen_fd = ListenForLink();
  options.link_pid = StartLinkOn(console, options.listen_fd);
  SetDropCommandCapabilities(true);
  // Set up: from here on a failure is the agent's end, not a report.
  (void)!::write(supervisor_fd, "r", 1);
  ::close(supervisor_fd);
  (void)!::write(starter_fd, "ready\n", 6);
  ::close(starter_fd);
  setup_report_fd = -1;
  std::exit(RunAgent(options));
}

}  // namespace

void RunGuestSandbox(const std::vector<std::string>& arguments) {
  std::map<std::string, std::string> settings;
  for (const std::string& argument : arguments) {
    const auto more = ParseVmCommandLine(argument);
    if (more.size() != 1 ||
        argument.find_first_of(" \t\n") != std::string::npos) {
      Say("--guest-sandbox: expected corral.KEY=VALUE, got '%s'",
          argument.c_str());
      std::exit(2);
    }
    settings.insert(more.begin(), more.end());
  }
  if (::geteuid() != 0) {
    Say("--guest-sandbox needs root in the guest");
    std::exit(2);
  }
  auto port = settings.find("port");
  if (port == settings.end()) {
    Say("--guest-sandbox: corral.port (the console device) is not set");
    std::exit(2);
  }
  bool power_off = false;
  if (auto on_exit = settings.find("on_exit"); on_exit != settings.end()) {
    if (on_exit->second != "poweroff") {
      Say("--guest-sandbox: corral.on_exit=%s: expected poweroff",
          on_exit->second.c_str());
      std::exit(2);
    }
    power_off = true;
  }
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) {
    Say("pipe: %s", std::strerror(errno));
    std::exit(1);
  }
  // This process waits for the sandbox to be ready and exits with the
  // outcome (its starter, such as `tart exec`, learns it); a supervisor
  // in a session of its own outlives it.
  const pid_t supervisor = ::fork();
  if (supervisor < 0) {
    Say("fork: %s", std::strerror(errno));
    std::exit(1);
  }
  if (supervisor > 0) {
    ::close(report[1]);
    std::string line;
    char buffer[512];
    ssize_t n;
    // Up to the first line: the sandbox's processes keep copies of the
    // pipe, so its end of file never comes.
    while (line.find('\n') == std::string::npos &&
           ((n = ::read(report[0], buffer, sizeof(buffer))) > 0 ||
            (n < 0 && errno == EINTR))) {
      if (n > 0) line.append(buffer, static_cast<size_t>(n));
    }
    line = line.substr(0, line.find('\n'));
    if (line.rfind("ready", 0) == 0) std::exit(0);
    if (line.rfind("error ", 0) == 0) line = line.substr(6);
    Say("the sandbox did not start: %s",
        line.empty() ? "its init ended without a word" : line.c_str());
    std::exit(1);
  }
  ::close(report[0]);
  setup_report_fd = report[1];
  ::setsid();
  SpareFromOomKiller();
  const int console = OpenConsole(port->second);
  int ready[2];
  if (::pipe2(ready, O_CLOEXEC) != 0) Fail("pipe", errno);
  if (::unshare(CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC |
                CLONE_NEWUTS) != 0) {
    Fail("unshare the sandbox's namespaces", errno);
  }
  const pid_t init = ::fork();
  if (init < 0) Fail("fork the sandbox's init", errno);
  if (init == 0) {
    ::close(ready[0]);
    GuestSandboxInit(settings, console, setup_report_fd, ready[1]);
  }
  ::close(console);
  ::close(ready[1]);
  ::close(setup_report_fd);
  setup_report_fd = -1;
  DetachStandardFds();
  char byte = 0;
  const bool was_ready = ::read(ready[0], &byte, 1) == 1;
  ::close(ready[0]);
  int status = 0;
  while (::waitpid(init, &status, 0) < 0 && errno == EINTR) {
  }
  // The agent ended (or was killed): nothing can reach the sandbox again.
  // With corral.on_exit=poweroff the VM goes, as a VM's init takes its VM
  // down (RunVmInit), and its host sees the sandbox end.
  if (was_ready && power_off) PowerOff();
  std::exit(1);
}

}  // namespace corral::agent
