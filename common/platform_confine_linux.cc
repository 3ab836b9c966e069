// The platform layer's Linux half, the part with libseccomp
// (corral/platform.h: EnterDecoderConfinement), in a library of its own so
// that only corral-unpack links libseccomp for it.
#include <fcntl.h>
#include <grp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "corral/platform.h"

namespace corral::platform {
namespace {

constexpr uid_t kNobody = 65534;

}  // namespace

bool EnterDecoderConfinement(unsigned long max_address_space,
                             std::string* why) {
  if (::geteuid() == 0) {
    if (::setgroups(0, nullptr) != 0 ||
        ::setresgid(kNobody, kNobody, kNobody) != 0 ||
        ::setresuid(kNobody, kNobody, kNobody) != 0) {
      *why = std::string("dropping to uid nobody: ") + std::strerror(errno);
      return false;
    }
  }
  // Not dumpable: other processes of nobody can neither ptrace it nor read
  // its memory.
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    *why = std::string("no_new_privs: ") + std::strerror(errno);
    return false;
  }
  const struct {
    int resource;
    rlim_t value;
  } limits[] = {{RLIMIT_AS, static_cast<rlim_t>(max_address_space)},
                {RLIMIT_FSIZE, 0},
                {RLIMIT_NOFILE, 8},
                {RLIMIT_CORE, 0},
                {RLIMIT_NPROC, 0}};
  for (const auto& limit : limits) {
    const struct rlimit value = {limit.value, limit.value};
    if (::setrlimit(limit.resource, &value) != 0) {
      *why = std::string("setrlimit: ") + std::strerror(errno);
      return false;
    }
  }
  scmp_filter_ctx filter = seccomp_init(SCMP_ACT_ERRNO(EPERM));
  if (filter == nullptr) {
    *why = "seccomp_init failed";
    return false;
  }
  int rc = 0;
  for (int call :
       {SCMP_SYS(read), SCMP_SYS(write), SCMP_SYS(close), SCMP_SYS(exit),
        SCMP_SYS(exit_group), SCMP_SYS(brk), SCMP_SYS(munmap), SCMP_SYS(mremap),
        SCMP_SYS(madvise), SCMP_SYS(futex), SCMP_SYS(rt_sigreturn),
        SCMP_SYS(rt_sigprocmask), SCMP_SYS(clock_gettime), SCMP_SYS(getpid),
        SCMP_SYS(gettid), SCMP_SYS(tgkill), SCMP_SYS(lseek), SCMP_SYS(fstat),
        SCMP_SYS(getrandom)}) {
    rc |= seccomp_rule_add(filter, SCMP_ACT_ALLOW, call, 0);
  }
  // Memory, but never executable memory.
  for (int call : {SCMP_SYS(mmap), SCMP_SYS(mprotect)}) {
    rc |= seccomp_rule_add(filter, SCMP_ACT_ALLOW, call, 1,
                           SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
  }
  // fstat(fd) as glibc makes it: newfstatat(fd, "", AT_EMPTY_PATH).
  rc |= seccomp_rule_add(
      filter, SCMP_ACT_ALLOW, SCMP_SYS(newfstatat), 1,
      SCMP_A3(SCMP_CMP_MASKED_EQ, AT_EMPTY_PATH, AT_EMPTY_PATH));
  if (rc != 0 || seccomp_load(filter) != 0) {
    seccomp_release(filter);
    *why = "loading the seccomp filter failed";
    return false;
  }
  seccomp_release(filter);
  return true;
}

}  // namespace corral::platform
