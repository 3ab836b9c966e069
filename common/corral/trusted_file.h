// Whether a file the root daemon runs code from (a runtime plugin, a helper
// program) can be trusted: checked on an open fd, never by path, so that
// nothing can be swapped in between the check and the use.
#ifndef CORRAL_COMMON_CORRAL_TRUSTED_FILE_H_
#define CORRAL_COMMON_CORRAL_TRUSTED_FILE_H_

#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "corral/status_macros.h"

namespace corral {

// OK when the process is not root, or when `fd` is owned by root and not
// writable by group or others; FAILED_PRECONDITION naming `what` otherwise.
inline absl::Status CheckTrustedFd(int fd, const std::string& what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoStatus(absl::StrCat("fstat ", what));
  if (::geteuid() == 0 && (st.st_uid != 0 || (st.st_mode & 022) != 0)) {
    return absl::FailedPreconditionError(absl::StrCat(
        what,
        " must be owned by root and not writable by group or others: it "
        "runs with the daemon's privileges"));
  }
  return absl::OkStatus();
}

}  // namespace corral

#endif  // CORRAL_COMMON_CORRAL_TRUSTED_FILE_H_
