#include "backends/common/plugin_support.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <mutex>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "backends/linux/fs_util.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

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

absl::StatusOr<std::string> SharedAgentDirectory(
    const std::string& runtime_dir, const std::string& agent_path) {
  static std::mutex mutex;
  std::lock_guard lock(mutex);
  const std::string dir = absl::StrCat(runtime_dir, "/", ".agent");
  const std::string copy = absl::StrCat(dir, "/corral-agent");
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", dir));
  }
  UniqueFd source(::open(agent_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!source) return ErrnoStatus(absl::StrCat("agent ", agent_path));
  struct stat want {
  }, have{};
  if (::fstat(source.get(), &want) != 0) return ErrnoStatus("stat agent");
  if (::lstat(copy.c_str(), &have) == 0 && S_ISREG(have.st_mode) &&
      have.st_size == want.st_size &&
      have.st_mtim.tv_sec == want.st_mtim.tv_sec &&
      have.st_mtim.tv_nsec == want.st_mtim.tv_nsec) {
    return dir;
  }
  const std::string staged = absl::StrCat(copy, ".new");
  ::unlink(staged.c_str());
  UniqueFd out(::open(staged.c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                      0755));
  if (!out) return ErrnoStatus(absl::StrCat("create ", staged));
  for (off_t offset = 0; offset < want.st_size;) {
    ssize_t n = ::sendfile(out.get(), source.get(), &offset,
                           static_cast<size_t>(want.st_size - offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoStatus(absl::StrCat("copy the agent to ", staged));
  }
  const struct timespec times[2] = {want.st_atim, want.st_mtim};
  if (::futimens(out.get(), times) != 0 || ::fchmod(out.get(), 0755) != 0) {
    return ErrnoStatus(absl::StrCat("set times of ", staged));
  }
  out.Reset();
  if (::rename(staged.c_str(), copy.c_str()) != 0) {
    return ErrnoStatus(absl::StrCat("rename ", staged));
  }
  return dir;
}

}  // namespace corral::backend_plugin
