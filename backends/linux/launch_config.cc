#include "backends/linux/launch_config.h"

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace corral::linux_runtime {

std::vector<std::string> LaunchConfig::ToArgs() const {
  std::vector<std::string> args = {
      "--id",        id,
      "--hostname",  hostname,
      "--staging",   staging_dir,
      "--workspace", workspace_dir,
      "--tmp-bytes", absl::StrCat(tmp_bytes),
  };
  if (rootfs_host) {
    args.push_back("--rootfs-host");
  } else {
    args.insert(args.end(), {"--rootfs-dir", rootfs_dir});
  }
  if (user_namespace) {
    args.insert(args.end(),
                {"--userns", absl::StrCat(host_uid, ":", host_gid)});
  }
  if (!workspace_device.empty()) {
    args.insert(args.end(), {"--workspace-device", workspace_device});
  }
  if (!netns_path.empty()) args.insert(args.end(), {"--netns", netns_path});
  for (const std::string& file : cgroup_procs) {
    args.insert(args.end(), {"--cgroup-procs", file});
  }
  return args;
}

absl::StatusOr<LaunchConfig> LaunchConfig::FromArgs(
    const std::vector<absl::string_view>& args) {
  LaunchConfig config;
  bool has_rootfs_dir = false;
  for (size_t i = 0; i < args.size(); ++i) {
    absl::string_view flag = args[i];
    if (flag == "--rootfs-host") {
      config.rootfs_host = true;
      continue;
    }
    if (i + 1 >= args.size()) {
      return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
    }
    absl::string_view value = args[++i];
    if (flag == "--id") {
      config.id = std::string(value);
    } else if (flag == "--hostname") {
      config.hostname = std::string(value);
    } else if (flag == "--staging") {
      config.staging_dir = std::string(value);
    } else if (flag == "--workspace") {
      config.workspace_dir = std::string(value);
    } else if (flag == "--workspace-device") {
      if (!absl::StartsWith(value, "/dev/")) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad --workspace-device ", value));
      }
      config.workspace_device = std::string(value);
    } else if (flag == "--rootfs-dir") {
      config.rootfs_dir = std::string(value);
      has_rootfs_dir = true;
    } else if (flag == "--tmp-bytes") {
      if (!absl::SimpleAtoi(value, &config.tmp_bytes) ||
          config.tmp_bytes == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("bad --tmp-bytes ", value));
      }
    } else if (flag == "--userns") {
      std::pair<absl::string_view, absl::string_view> ids =
          absl::StrSplit(value, absl::MaxSplits(':', 1));
      if (!absl::SimpleAtoi(ids.first, &config.host_uid) ||
          !absl::SimpleAtoi(ids.second, &config.host_gid) ||
          config.host_uid == 0) {
        return absl::InvalidArgumentError(absl::StrCat("bad --userns ", value));
      }
      config.user_namespace = true;
    } else if (flag == "--netns") {
      if (!absl::StartsWith(value, "/")) {
        return absl::InvalidArgumentError("--netns needs an absolute path");
      }
      config.netns_path = std::string(value);
    } else if (flag == "--cgroup-procs") {
      config.cgroup_procs.emplace_back(value);
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown flag ", flag));
    }
  }
  if (config.rootfs_host == has_rootfs_dir) {
    return absl::InvalidArgumentError(
        "exactly one of --rootfs-host and --rootfs-dir is needed");
  }
  for (const std::string* path : {&config.staging_dir, &config.workspace_dir}) {
    if (!absl::StartsWith(*path, "/")) {
      return absl::InvalidArgumentError(
          "--staging and --workspace need absolute paths");
    }
  }
  if (has_rootfs_dir && !absl::StartsWith(config.rootfs_dir, "/")) {
    return absl::InvalidArgumentError("--rootfs-dir needs an absolute path");
  }
  if (config.id.empty() || config.hostname.empty() || config.tmp_bytes == 0) {
    return absl::InvalidArgumentError(
        "--id, --hostname and --tmp-bytes are required");
  }
  return config;
}

std::string LaunchReport::Serialize() const {
  if (ok) return absl::StrCat("ok ", pid, " ", start_time, "\n");
  std::string message(error.message());
  for (char& c : message) {
    if (c == '\n') c = ' ';
  }
  int code = error.ok() ? static_cast<int>(absl::StatusCode::kInternal)
                        : static_cast<int>(error.code());
  return absl::StrCat("error ", code, " ", message, "\n");
}

absl::StatusOr<LaunchReport> LaunchReport::Parse(absl::string_view text) {
  if (!absl::EndsWith(text, "\n")) {
    return absl::InternalError(
        text.empty() ? "the launcher exited without a report"
                     : absl::StrCat("incomplete launcher report '", text, "'"));
  }
  text.remove_suffix(1);
  LaunchReport report;
  if (absl::ConsumePrefix(&text, "error ")) {
    std::pair<absl::string_view, absl::string_view> parts =
        absl::StrSplit(text, absl::MaxSplits(' ', 1));
    int code = 0;
    if (!absl::SimpleAtoi(parts.first, &code) || code <= 0 || code > 16) {
      code = static_cast<int>(absl::StatusCode::kInternal);
    }
    report.error = absl::Status(static_cast<absl::StatusCode>(code),
                                absl::StrCat("launcher: ", parts.second));
    return report;
  }
  std::vector<absl::string_view> parts = absl::StrSplit(text, ' ');
  if (parts.size() == 3 && parts[0] == "ok" &&
      absl::SimpleAtoi(parts[1], &report.pid) && report.pid > 0 &&
      absl::SimpleAtoi(parts[2], &report.start_time)) {
    report.ok = true;
    return report;
  }
  return absl::InternalError(absl::StrCat("bad launcher report '", text, "'"));
}

}  // namespace corral::linux_runtime
