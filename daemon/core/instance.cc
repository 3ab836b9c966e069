#include "daemon/core/instance.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "corral/directory.h"
#include "corral/hex_id.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral::daemon {
namespace {

constexpr char kInstanceFile[] = "instance-id";

absl::StatusOr<std::string> ReadSmallFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return ErrnoStatus(absl::StrCat("open ", path));
  std::string text;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus(absl::StrCat("read ", path));
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > 64 * 1024) {
      return absl::InvalidArgumentError(absl::StrCat(path, " is too large"));
    }
  }
  return text;
}

// Writes `content` to a new file beside `path` (fsynced), then gives it the
// name `path`: renamed over it when `replace`, else linked, which fails
// with ALREADY_EXISTS when `path` exists. Readers never see a partial file.
absl::Status PublishFile(const std::string& path, absl::string_view content,
                         bool replace) {
  ASSIGN_OR_RETURN(const std::string random, RandomHexId(8));
  const std::string temporary = absl::StrCat(path, ".tmp-", random);
  UniqueFd fd(::open(temporary.c_str(),
                     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     0600));
  if (!fd) return ErrnoStatus(absl::StrCat("create ", temporary));
  size_t written = 0;
  while (written < content.size()) {
    const ssize_t n =
        ::write(fd.get(), content.data() + written, content.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int error = errno;
      ::unlink(temporary.c_str());
      return ErrnoStatus(absl::StrCat("write ", temporary), error);
    }
    written += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) {
    const int error = errno;
    ::unlink(temporary.c_str());
    return ErrnoStatus(absl::StrCat("fsync ", temporary), error);
  }
  fd.Reset();
  const int rc = replace ? ::rename(temporary.c_str(), path.c_str())
                         : ::link(temporary.c_str(), path.c_str());
  const int error = errno;
  if (!replace || rc != 0) ::unlink(temporary.c_str());
  if (rc != 0) {
    if (error == EEXIST) {
      return absl::AlreadyExistsError(absl::StrCat(path, " exists"));
    }
    return ErrnoStatus(absl::StrCat(replace ? "rename " : "link ", path),
                       error);
  }
  return absl::OkStatus();
}

absl::Status MakePrivateDirectory(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", path));
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) {
    return ErrnoStatus(absl::StrCat("lstat ", path));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a directory"));
  }
  if (::geteuid() == 0 && (st.st_uid != 0 || (st.st_mode & 077) != 0)) {
    // Whoever could write here could take uids from every daemon.
    if (st.st_uid != 0 || ::chmod(path.c_str(), 0700) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, " must be a directory owned by root with mode 0700"));
    }
  }
  return absl::OkStatus();
}

// The published entries of a registry directory (files being written are
// named "*.tmp-*"), sorted; none when it cannot be read.
std::vector<std::string> ListNames(const std::string& dir) {
  std::vector<std::string> names =
      ListDirectory(dir).value_or(std::vector<std::string>());
  names.erase(std::remove_if(names.begin(), names.end(),
                             [](const std::string& name) {
                               return absl::StrContains(name, ".tmp-");
                             }),
              names.end());
  std::sort(names.begin(), names.end());
  return names;
}

absl::StatusOr<UidClaim> ParseClaim(absl::string_view text) {
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::StripAsciiWhitespace(text), ' ');
  if (fields.size() != 2 || !ValidInstanceId(fields[0]) ||
      !IsHexId(fields[1], 32)) {
    return absl::InvalidArgumentError("not a uid claim");
  }
  return UidClaim{std::string(fields[0]), std::string(fields[1])};
}

}  // namespace

absl::StatusOr<std::string> LoadOrCreateInstanceId(
    const std::string& state_dir) {
  const std::string path = absl::StrCat(state_dir, "/", kInstanceFile);
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto text = ReadSmallFile(path);
    if (text.ok()) {
      const std::string id(absl::StripAsciiWhitespace(*text));
      if (!ValidInstanceId(id)) {
        return absl::InvalidArgumentError(absl::StrCat(
            path,
            " does not hold an instance id (16 lowercase hex "
            "characters); remove it only if no sandbox of this state "
            "directory runs"));
      }
      return id;
    }
    if (!absl::IsNotFound(text.status())) return text.status();
    ASSIGN_OR_RETURN(const std::string id, RandomHexId(8));
    absl::Status published =
        PublishFile(path, absl::StrCat(id, "\n"), /*replace=*/false);
    if (published.ok()) return id;
    // Someone else made it meanwhile: read theirs.
    if (!absl::IsAlreadyExists(published)) return published;
  }
  return absl::InternalError(absl::StrCat("cannot settle ", path));
}

absl::StatusOr<HostRegistry> HostRegistry::Open(const std::string& root) {
  RETURN_IF_ERROR(MakePrivateDirectory(root));
  RETURN_IF_ERROR(MakePrivateDirectory(absl::StrCat(root, "/instances")));
  RETURN_IF_ERROR(MakePrivateDirectory(absl::StrCat(root, "/uids")));
  return HostRegistry(root);
}

std::string HostRegistry::InstancePath(const std::string& id) const {
  return absl::StrCat(root_, "/instances/", id);
}

std::string HostRegistry::UidPath(uint32_t uid) const {
  return absl::StrCat(root_, "/uids/", uid);
}

absl::Status HostRegistry::Register(const InstanceRecord& record) const {
  if (!ValidInstanceId(record.id)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid instance id '", record.id, "'"));
  }
  for (const std::string* path : {&record.state_dir, &record.socket}) {
    if (path->find('\n') != std::string::npos) {
      return absl::InvalidArgumentError("a path with a newline");
    }
  }
  return PublishFile(InstancePath(record.id),
                     absl::StrCat("state_dir=", record.state_dir,
                                  "\nsocket=", record.socket, "\n"),
                     /*replace=*/true);
}

std::vector<InstanceRecord> HostRegistry::Instances() const {
  std::vector<InstanceRecord> records;
  for (const std::string& name : ListNames(absl::StrCat(root_, "/instances"))) {
    if (!ValidInstanceId(name)) continue;
    auto text = ReadSmallFile(InstancePath(name));
    if (!text.ok()) continue;
    InstanceRecord record;
    record.id = name;
    for (absl::string_view line : absl::StrSplit(*text, '\n')) {
      if (absl::ConsumePrefix(&line, "state_dir=")) {
        record.state_dir = std::string(line);
      } else if (absl::ConsumePrefix(&line, "socket=")) {
        record.socket = std::string(line);
      }
    }
    if (!record.state_dir.empty()) records.push_back(std::move(record));
  }
  return records;
}

absl::Status HostRegistry::Unregister(const std::string& instance_id) const {
  if (!ValidInstanceId(instance_id)) {
    return absl::InvalidArgumentError("invalid instance id");
  }
  if (::unlink(InstancePath(instance_id).c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(absl::StrCat("unlink ", InstancePath(instance_id)));
  }
  return absl::OkStatus();
}

bool HostRegistry::IsLive(const InstanceRecord& record) {
  auto text = ReadSmallFile(absl::StrCat(record.state_dir, "/", kInstanceFile));
  return text.ok() && absl::StripAsciiWhitespace(*text) == record.id;
}

absl::StatusOr<bool> HostRegistry::ClaimUid(
    uint32_t uid, const std::string& instance_id,
    const std::string& sandbox_id) const {
  if (!ValidInstanceId(instance_id) || !IsHexId(sandbox_id, 32)) {
    return absl::InvalidArgumentError("invalid instance or sandbox id");
  }
  const std::string path = UidPath(uid);
  absl::Status published = PublishFile(
      path, absl::StrCat(instance_id, " ", sandbox_id, "\n"), false);
  if (published.ok()) return true;
  if (!absl::IsAlreadyExists(published)) return published;
  auto text = ReadSmallFile(path);
  if (!text.ok()) {
    // Released meanwhile: the next allocation round may take it.
    if (absl::IsNotFound(text.status())) return false;
    return text.status();
  }
  auto claim = ParseClaim(*text);
  return claim.ok() && claim->instance_id == instance_id &&
         claim->sandbox_id == sandbox_id;
}

absl::Status HostRegistry::ReleaseUid(uint32_t uid,
                                      const std::string& instance_id) const {
  const std::string path = UidPath(uid);
  auto text = ReadSmallFile(path);
  if (!text.ok()) {
    return absl::IsNotFound(text.status()) ? absl::OkStatus() : text.status();
  }
  auto claim = ParseClaim(*text);
  if (claim.ok() && claim->instance_id != instance_id) {
    return absl::OkStatus();  // someone else's
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(absl::StrCat("unlink ", path));
  }
  return absl::OkStatus();
}

std::map<uint32_t, UidClaim> HostRegistry::Claims() const {
  std::map<uint32_t, UidClaim> claims;
  for (const std::string& name : ListNames(absl::StrCat(root_, "/uids"))) {
    uint32_t uid = 0;
    if (!absl::SimpleAtoi(name, &uid)) continue;
    auto text = ReadSmallFile(UidPath(uid));
    if (!text.ok()) continue;
    auto claim = ParseClaim(*text);
    if (claim.ok()) claims[uid] = *std::move(claim);
  }
  return claims;
}

}  // namespace corral::daemon
