#include "backends/common/plugin_support.h"

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "backends/linux/fs_util.h"

namespace corral::backend_plugin {

std::string PluginDirectory(const ::corral::backend::v1::PluginConfig& config) {
  if (!config.plugin_dir().empty()) return config.plugin_dir();
  // Any function of this shared object names its file.
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&PluginDirectory), &info) == 0 ||
      info.dli_fname == nullptr) {
    return "";
  }
  return std::filesystem::path(info.dli_fname).parent_path().string();
}

bool IsExecutableFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         ::access(path.c_str(), X_OK) == 0;
}

bool HasCapability(int capability) {
  auto status = linux_runtime::ReadFile("/proc/self/status");
  if (!status.ok()) return false;
  for (absl::string_view line : absl::StrSplit(*status, '\n')) {
    if (!absl::ConsumePrefix(&line, "CapEff:")) continue;
    uint64_t mask = 0;
    if (!absl::SimpleHexAtoi(absl::StripAsciiWhitespace(line), &mask)) {
      return false;
    }
    return (mask >> capability) & 1;
  }
  return false;
}

}  // namespace corral::backend_plugin
