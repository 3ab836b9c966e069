#include "backends/common/spec_checks.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "backends/linux/fs_util.h"
#include "corral/status_macros.h"

namespace corral::backend_plugin {

namespace bv1 = ::corral::backend::v1;

bool ValidHostname(absl::string_view name) {
  if (name.empty() || name.size() > 63 || name.front() == '-') return false;
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

absl::Status CheckDirectory(const std::string& path, absl::string_view what) {
  if (!absl::StartsWith(path, "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", path, "' is not an absolute path"));
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", path, " is not a directory"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSpec(const bv1::SandboxSpec& spec) {
  if (!linux_runtime::ValidSandboxId(spec.id())) {
    return absl::InvalidArgumentError(
        absl::StrCat("sandbox id '", spec.id(), "' is not 32 lowercase hex"));
  }
  if (!ValidHostname(spec.hostname())) {
    return absl::InvalidArgumentError(
        absl::StrCat("hostname '", spec.hostname(), "' is not valid"));
  }
  if (spec.memory_bytes() < kMinMemoryBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "memory limit ", spec.memory_bytes(), " is below ", kMinMemoryBytes));
  }
  if (spec.pids() < kMinPids) {
    return absl::InvalidArgumentError(
        absl::StrCat("pids limit ", spec.pids(), " is below ", kMinPids));
  }
  if (spec.cpu_millis() == 0) {
    return absl::InvalidArgumentError("cpu limit must be > 0");
  }
  RETURN_IF_ERROR(CheckDirectory(spec.workspace_dir(), "workspace"));
  switch (spec.rootfs().source_case()) {
    case bv1::RootFs::kHost:
      if (!spec.rootfs().host()) {
        return absl::InvalidArgumentError("rootfs.host must be true when set");
      }
      break;
    case bv1::RootFs::kDirectory:
      RETURN_IF_ERROR(CheckDirectory(spec.rootfs().directory(), "rootfs"));
      break;
    default:
      return absl::InvalidArgumentError("the sandbox spec has no rootfs");
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> UserNamespaceOption(const bv1::SandboxSpec& spec,
                                         absl::string_view runtime) {
  bool use = spec.host_uid() > 0;
  for (const auto& [key, value] : spec.runtime_options()) {
    if (key != "userns") {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown runtime option '", key, "' for the ", runtime,
                       " runtime (known: userns)"));
    }
    if (value == "false") {
      use = false;
    } else if (value == "true") {
      if (spec.host_uid() == 0) {
        return absl::InvalidArgumentError(
            "runtime option userns=true needs a host uid for the sandbox");
      }
      use = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "runtime option userns must be true or false, not '", value, "'"));
    }
  }
  return use;
}

absl::StatusOr<bool> BoolOption(absl::string_view runtime,
                                absl::string_view key,
                                absl::string_view value) {
  if (value == "true") return true;
  if (value == "false") return false;
  return absl::InvalidArgumentError(
      absl::StrCat("runtimes.", runtime, ".", key, ": bad value '",
                   value.substr(0, 40), "': expected true or false"));
}

absl::StatusOr<std::string> PathOption(absl::string_view runtime,
                                       absl::string_view key,
                                       absl::string_view value) {
  if (!linux_runtime::CleanAbsolutePath(std::string(value))) {
    return absl::InvalidArgumentError(
        absl::StrCat("runtimes.", runtime, ".", key, " '", value.substr(0, 200),
                     "': expected an absolute path"));
  }
  return std::string(value);
}

absl::StatusOr<uint64_t> NumberOption(absl::string_view runtime,
                                      absl::string_view key,
                                      absl::string_view value, uint64_t min,
                                      uint64_t max) {
  uint64_t number = 0;
  if (!absl::SimpleAtoi(value, &number) || number < min || number > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("runtimes.", runtime, ".", key, " '", value.substr(0, 40),
                     "': expected ", min, " to ", max));
  }
  return number;
}

absl::Status RefuseUnknownOptions(
    absl::string_view runtime, const std::vector<std::string>& unknown,
    std::initializer_list<absl::string_view> known) {
  if (unknown.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      "runtimes.", runtime, ".", unknown.front(), ": unknown option (the ",
      runtime, " runtime knows: ", absl::StrJoin(known, ", "), ")"));
}

}  // namespace corral::backend_plugin
