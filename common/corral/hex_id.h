// The ids the daemon and the runtimes make: random bytes as lowercase hex
// (sandboxes: 16 bytes, 32 characters; daemon instances and background
// processes: 8 bytes, 16 characters). Ids become path components, cgroup
// names and labels, so whatever claims to be one is checked to be exactly
// that before it is used.
#ifndef CORRAL_COMMON_CORRAL_HEX_ID_H_
#define CORRAL_COMMON_CORRAL_HEX_ID_H_

#include <algorithm>
#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/escaping.h"
#include "absl/strings/string_view.h"
#include "corral/platform.h"
#include "corral/status_macros.h"

namespace corral {

// True when `id` is exactly `length` lowercase hex characters.
inline bool IsHexId(absl::string_view id, size_t length) {
  return id.size() == length && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// A new id of `bytes` random bytes (2 * `bytes` hex characters).
inline absl::StatusOr<std::string> RandomHexId(size_t bytes) {
  std::string random(bytes, '\0');
  if (!platform::FillRandom(random.data(), random.size())) {
    return ErrnoStatus("random bytes");
  }
  return absl::BytesToHexString(random);
}

// A daemon instance's id (daemon/core/instance.h): 16 hex characters.
inline bool ValidInstanceId(absl::string_view id) { return IsHexId(id, 16); }

}  // namespace corral

#endif  // CORRAL_COMMON_CORRAL_HEX_ID_H_
