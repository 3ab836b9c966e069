// Early-return helpers for absl::Status and absl::StatusOr (Debian's Abseil
// 20220623 ships none), and errno wrapping that names the failed call.
#ifndef CORRAL_COMMON_STATUS_MACROS_H_
#define CORRAL_COMMON_STATUS_MACROS_H_

#include <cerrno>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace corral {

// A status for a failed system call: the errno's code, "call: strerror".
// Call right after the failure, before anything can change errno.
// Debian builds Abseil with its own absl::string_view (not std::string_view),
// so these take absl::string_view; std::string and literals convert to it.
inline absl::Status ErrnoStatus(absl::string_view call, int error = errno) {
  return absl::ErrnoToStatus(error, call);
}

// Adds context in front of a status's message, keeping its code.
inline absl::Status Annotate(const absl::Status& status,
                             absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(context, ": ", status.message()));
}

}  // namespace corral

#define CORRAL_STATUS_CONCAT_INNER_(a, b) a##b
#define CORRAL_STATUS_CONCAT_(a, b) CORRAL_STATUS_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function when it is not OK.
#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    const absl::Status corral_status_ = (expr);      \
    if (!corral_status_.ok()) return corral_status_; \
  } while (false)

// ASSIGN_OR_RETURN(auto value, MakeValue()): declares/assigns the value of a
// StatusOr, or returns its status.
#define ASSIGN_OR_RETURN(lhs, expr) \
  CORRAL_ASSIGN_OR_RETURN_IMPL_(    \
      CORRAL_STATUS_CONCAT_(corral_statusor_, __LINE__), lhs, expr)

#define CORRAL_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                  \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // CORRAL_COMMON_STATUS_MACROS_H_
