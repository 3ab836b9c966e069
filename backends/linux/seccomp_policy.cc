#include "backends/linux/seccomp_policy.h"

#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"

namespace corral::linux_runtime {
namespace {

absl::Status SeccompError(int rc, absl::string_view what) {
  return absl::ErrnoToStatus(-rc, absl::StrCat("seccomp ", what));
}

absl::Status AddRule(scmp_filter_ctx ctx, uint32_t action, const char* name,
                     std::initializer_list<scmp_arg_cmp> args = {}) {
  int nr = seccomp_syscall_resolve_name(name);
  // Names this libseccomp or architecture does not know cannot be called.
  if (nr == __NR_SCMP_ERROR || nr < 0) return absl::OkStatus();
  int rc = seccomp_rule_add_array(ctx, action, nr, args.size(), args.begin());
  if (rc != 0) return SeccompError(rc, absl::StrCat("rule ", name));
  return absl::OkStatus();
}

absl::Status AddRules(scmp_filter_ctx ctx) {
  const uint32_t kEperm = SCMP_ACT_ERRNO(EPERM);
  for (const std::string& name : DeniedSyscalls()) {
    if (auto status = AddRule(ctx, kEperm, name.c_str()); !status.ok()) {
      return status;
    }
  }
  // clone3 passes its flags in memory that a filter cannot read: ENOSYS
  // makes glibc fall back to clone, whose flags are checked below.
  if (auto status = AddRule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3");
      !status.ok()) {
    return status;
  }
  for (uint64_t flag : kCloneNamespaceFlags) {
    if (auto status = AddRule(ctx, kEperm, "clone",
                              {SCMP_A0(SCMP_CMP_MASKED_EQ, flag, flag)});
        !status.ok()) {
      return status;
    }
  }
  // libseccomp allows one comparison per argument in a rule, so "bit set
  // and the value is not the query" is written with bit 31 in the mask: no
  // personality flag uses bit 31, and only the query sets it.
  constexpr uint64_t kBit31 = uint64_t{1} << 31;
  for (int bit = 0; bit < 31; ++bit) {
    const uint64_t value = uint64_t{1} << bit;
    // Bit 31 clear and a forbidden bit set.
    if (!(value & kAllowedPersonalityBits)) {
      if (auto status =
              AddRule(ctx, kEperm, "personality",
                      {SCMP_A0(SCMP_CMP_MASKED_EQ, value | kBit31, value)});
          !status.ok()) {
        return status;
      }
    }
    // Bit 31 set but not every bit: not the query.
    if (auto status =
            AddRule(ctx, kEperm, "personality",
                    {SCMP_A0(SCMP_CMP_MASKED_EQ, value | kBit31, kBit31)});
        !status.ok()) {
      return status;
    }
  }
  // Upper 32 bits set: not a value any program passes.
  if (auto status = AddRule(ctx, kEperm, "personality",
                            {SCMP_A0(SCMP_CMP_GT, kPersonalityQuery)});
      !status.ok()) {
    return status;
  }
  const uint32_t kNoFamily = SCMP_ACT_ERRNO(EAFNOSUPPORT);
  if (auto status = AddRule(ctx, kNoFamily, "socket",
                            {SCMP_A0(SCMP_CMP_GT, kMaxAllowedFamily)});
      !status.ok()) {
    return status;
  }
  for (int family = 0; family < kMaxAllowedFamily; ++family) {
    bool allowed = false;
    for (int ok : kAllowedFamilies) allowed |= family == ok;
    if (allowed) continue;
    if (auto status =
            AddRule(ctx, kNoFamily, "socket",
                    {SCMP_A0(SCMP_CMP_EQ, static_cast<scmp_datum_t>(family))});
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

}  // namespace

const std::vector<std::string>& DeniedSyscalls() {
  static const auto* names = new std::vector<std::string>{
      // Filesystems and namespaces.
      "mount",
      "umount",
      "umount2",
      "pivot_root",
      "chroot",
      "unshare",
      "setns",
      "fsopen",
      "fsconfig",
      "fsmount",
      "fspick",
      "move_mount",
      "open_tree",
      "mount_setattr",
      "quotactl",
      "quotactl_fd",
      "swapon",
      "swapoff",
      "open_by_handle_at",
      "name_to_handle_at",
      // The kernel itself.
      "kexec_load",
      "kexec_file_load",
      "init_module",
      "finit_module",
      "delete_module",
      "create_module",
      "reboot",
      "syslog",
      "acct",
      "uselib",
      "lookup_dcookie",
      "iopl",
      "ioperm",
      "vhangup",
      "bpf",
      "perf_event_open",
      "userfaultfd",
      "io_uring_setup",
      "io_uring_enter",
      "io_uring_register",
      "nfsservctl",
      "_sysctl",
      // Keyrings are not namespaced.
      "keyctl",
      "add_key",
      "request_key",
      // Clocks are not namespaced.
      "settimeofday",
      "clock_settime",
      "clock_adjtime",
      "adjtimex",
      "stime",
  };
  return *names;
}

absl::StatusOr<SeccompFilter> SeccompFilter::Build() {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
  if (ctx == nullptr) return absl::InternalError("seccomp_init failed");
  SeccompFilter filter(ctx);
  // A syscall made through a foreign ABI (i386 int 0x80, x32) would bypass
  // every rule written for the native numbers: kill the process. libseccomp
  // applies this action to the x32 bit on x86_64 as well.
  if (int rc =
          seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
      rc != 0) {
    return SeccompError(rc, "attr ACT_BADARCH");
  }
  if (auto status = AddRules(ctx); !status.ok()) return status;
  return filter;
}

SeccompFilter::SeccompFilter(SeccompFilter&& other) noexcept
    : context_(std::exchange(other.context_, nullptr)) {}

SeccompFilter& SeccompFilter::operator=(SeccompFilter&& other) noexcept {
  if (this != &other) {
    if (context_ != nullptr) seccomp_release(context_);
    context_ = std::exchange(other.context_, nullptr);
  }
  return *this;
}

SeccompFilter::~SeccompFilter() {
  if (context_ != nullptr) seccomp_release(context_);
}

absl::Status SeccompFilter::Load() const {
  if (context_ == nullptr) return absl::FailedPreconditionError("no filter");
  int rc = seccomp_load(context_);
  if (rc != 0) return SeccompError(rc, "load");
  return absl::OkStatus();
}

absl::StatusOr<std::string> SeccompFilter::ExportBpf() const {
  if (context_ == nullptr) return absl::FailedPreconditionError("no filter");
  int fd = ::memfd_create("corral-seccomp", MFD_CLOEXEC);
  if (fd < 0) return absl::ErrnoToStatus(errno, "memfd_create corral-seccomp");
  std::string program;
  int rc = seccomp_export_bpf(context_, fd);
  if (rc != 0) {
    ::close(fd);
    return SeccompError(rc, "export bpf");
  }
  off_t size = ::lseek(fd, 0, SEEK_END);
  if (size > 0) {
    program.resize(static_cast<size_t>(size));
    ssize_t n = ::pread(fd, program.data(), program.size(), 0);
    if (n != size) {
      ::close(fd);
      return absl::InternalError("seccomp export bpf: short read");
    }
  }
  ::close(fd);
  if (program.empty() || program.size() % sizeof(sock_filter) != 0) {
    return absl::InternalError("seccomp export bpf: malformed program");
  }
  return program;
}

absl::Status SeccompFilter::LoadBpf(const std::string& program) {
  if (program.empty() || program.size() % sizeof(sock_filter) != 0 ||
      program.size() / sizeof(sock_filter) > BPF_MAXINSNS) {
    return absl::InvalidArgumentError("seccomp: malformed BPF program");
  }
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(program.size() / sizeof(sock_filter));
  prog.filter =
      reinterpret_cast<sock_filter*>(const_cast<char*>(program.data()));
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
    return absl::ErrnoToStatus(errno, "seccomp SECCOMP_SET_MODE_FILTER");
  }
  return absl::OkStatus();
}

}  // namespace corral::linux_runtime
