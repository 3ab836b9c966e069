// File operations of corral-agent; see fs_ops.h and agent.proto.
//
// Everything here runs in a forked child with blocking fds, so plain blocking
// I/O is fine: a slow disk stalls only this child, and the agent can kill it.
// The sandbox itself is the security boundary for the path-based operations
// (Stat, Read, Write, ...). Unpack is different: its input comes from outside
// (a seed, a sync) and must never write outside its root, so it resolves
// every component beneath the root's fd without following symlinks.
#include "guest-agent/fs_ops.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "corral/unique_fd.h"
#include "guest-agent/wire/fs_record_codec.h"

namespace corral::agent {
namespace {

constexpr size_t kMaxPathBytes = 4096;
constexpr size_t kMaxNameBytes = 255;
// Output is written in batches of about this size.
constexpr size_t kOutputFlushBytes = 256u << 10;
constexpr size_t kInputReadBytes = 64u << 10;
// Watch: at most this many directories.
constexpr size_t kMaxWatchedDirectories = 10000;
// Paths longer than this are cut in error messages.
constexpr size_t kMaxQuotedBytes = 512;

std::string ErrnoText(int error) { return std::strerror(error); }

// A path for an error line: single-quoted, control bytes escaped (the line
// must stay one line), long paths cut.
std::string Quote(std::string_view path) {
  std::string out = "'";
  const size_t shown = std::min(path.size(), kMaxQuotedBytes);
  for (size_t i = 0; i < shown; ++i) {
    const auto c = static_cast<unsigned char>(path[i]);
    if (c < 0x20 || c == 0x7f || c == '\\' || c == '\'') {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (shown < path.size()) out += "...";
  out += "'";
  return out;
}

int64_t RealtimeNs() {
  timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  return int64_t{now.tv_sec} * 1000000000 + now.tv_nsec;
}

v1::EntryType TypeOf(mode_t mode) {
  if (S_ISREG(mode)) return v1::ENTRY_TYPE_REGULAR;
  if (S_ISDIR(mode)) return v1::ENTRY_TYPE_DIRECTORY;
  if (S_ISLNK(mode)) return v1::ENTRY_TYPE_SYMLINK;
  return v1::ENTRY_TYPE_OTHER;
}

// Reads a symlink's target relative to dirfd. Returns false with errno set.
bool ReadLink(int dirfd, const char* name, std::string* target) {
  std::string buffer(256, '\0');
  for (;;) {
    ssize_t n = ::readlinkat(dirfd, name, buffer.data(), buffer.size());
    if (n < 0) return false;
    if (static_cast<size_t>(n) < buffer.size()) {
      buffer.resize(static_cast<size_t>(n));
      *target = std::move(buffer);
      return true;
    }
    if (buffer.size() > (64u << 10)) {
      errno = ENAMETOOLONG;
      return false;
    }
    buffer.resize(buffer.size() * 2);
  }
}

// Fills `entry` from lstat data; symlink targets are read from dirfd/name.
bool FillEntry(const struct stat& st, int dirfd, const char* name,
               v1::FsEntry* entry) {
  entry->set_type(TypeOf(st.st_mode));
  entry->set_mode(st.st_mode & 07777);
  if (S_ISREG(st.st_mode)) entry->set_size(static_cast<uint64_t>(st.st_size));
  entry->set_mtime_ns(int64_t{st.st_mtim.tv_sec} * 1000000000 +
                      st.st_mtim.tv_nsec);
  if (S_ISLNK(st.st_mode)) {
    std::string target;
    if (!ReadLink(dirfd, name, &target)) return false;
    entry->set_link_target(std::move(target));
  }
  return true;
}

// Why `path` is not a valid stream path (agent.proto), or "".
std::string CheckStreamPath(std::string_view path) {
  if (path.empty()) return "empty path";
  if (path.size() > kMaxPathBytes) {
    return "path longer than " + std::to_string(kMaxPathBytes) + " bytes";
  }
  if (path.find('\0') != std::string_view::npos) {
    return "path contains a NUL byte";
  }
  if (path.front() == '/') return "absolute path";
  size_t begin = 0;
  while (begin <= path.size()) {
    size_t end = path.find('/', begin);
    if (end == std::string_view::npos) end = path.size();
    std::string_view component = path.substr(begin, end - begin);
    if (component.empty()) return "empty path component";
    if (component == "." || component == "..") {
      return "path component " + Quote(component);
    }
    if (component.size() > kMaxNameBytes) {
      return "path component longer than " + std::to_string(kMaxNameBytes) +
             " bytes";
    }
    begin = end + 1;
  }
  return "";
}

std::vector<std::string> SplitPath(std::string_view path) {
  std::vector<std::string> components;
  size_t begin = 0;
  while (begin < path.size()) {
    size_t end = path.find('/', begin);
    if (end == std::string_view::npos) end = path.size();
    if (end > begin) components.emplace_back(path.substr(begin, end - begin));
    begin = end + 1;
  }
  return components;
}

std::string JoinPath(const std::vector<std::string>& components, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    if (i > 0) out += '/';
    out += components[i];
  }
  return out;
}

// The names in a directory (not "." and ".."), sorted bytewise (std::string
// compares as unsigned char). Reads from the start whatever the fd's offset.
bool ReadNames(int dirfd, std::vector<std::string>* names) {
  names->clear();
  int copy = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) return false;
  ::lseek(copy, 0, SEEK_SET);
  DIR* dir = ::fdopendir(copy);
  if (dir == nullptr) {
    int saved = errno;
    ::close(copy);
    errno = saved;
    return false;
  }
  ::rewinddir(dir);
  for (;;) {
    errno = 0;
    dirent* entry = ::readdir(dir);
    if (entry == nullptr) break;
    if (std::strcmp(entry->d_name, ".") == 0 ||
        std::strcmp(entry->d_name, "..") == 0) {
      continue;
    }
    names->emplace_back(entry->d_name);
  }
  int saved = errno;
  ::closedir(dir);
  if (saved != 0) {
    errno = saved;
    return false;
  }
  std::sort(names->begin(), names->end());
  return true;
}

UniqueFd OpenDirNoFollow(int dirfd, const char* name) {
  return UniqueFd(
      ::openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
}

// Removes dirfd/name and, for a directory, everything beneath it, relative
// to open directory fds and never following symlinks. A name that is already
// gone counts as removed. Counts removed entries in *removed. On failure sets
// *why to "<relative path>: <reason>" with paths relative to dirfd.
bool RemoveTree(int dirfd, const std::string& name, const std::string& shown,
                uint64_t* removed, std::string* why);

bool RemoveContents(int dirfd, const std::string& shown, uint64_t* removed,
                    std::string* why) {
  std::vector<std::string> names;
  if (!ReadNames(dirfd, &names)) {
    *why = Quote(shown) + ": reading directory: " + ErrnoText(errno);
    return false;
  }
  for (const std::string& name : names) {
    const std::string child = shown.empty() ? name : shown + "/" + name;
    if (!RemoveTree(dirfd, name, child, removed, why)) return false;
  }
  return true;
}

bool RemoveTree(int dirfd, const std::string& name, const std::string& shown,
                uint64_t* removed, std::string* why) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return true;
    *why = Quote(shown) + ": " + ErrnoText(errno);
    return false;
  }
  if (S_ISDIR(st.st_mode)) {
    UniqueFd dir = OpenDirNoFollow(dirfd, name.c_str());
    if (!dir) {
      if (errno == ENOENT) return true;
      *why = Quote(shown) + ": " + ErrnoText(errno);
      return false;
    }
    if (!RemoveContents(dir.get(), shown, removed, why)) return false;
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
      *why = Quote(shown) + ": " + ErrnoText(errno);
      return false;
    }
  } else if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) {
    *why = Quote(shown) + ": " + ErrnoText(errno);
    return false;
  }
  ++*removed;
  return true;
}

// Opens a regular file for reading without blocking on fifos or devices:
// O_NONBLOCK for the open, then fstat, then back to blocking. Returns an
// invalid fd with errno EINVAL for anything but a regular file.
UniqueFd OpenRegular(int dirfd, const char* name, bool follow,
                     struct stat* st) {
  int flags = O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC;
  if (!follow) flags |= O_NOFOLLOW;
  UniqueFd fd(::openat(dirfd, name, flags));
  if (!fd) return fd;
  if (::fstat(fd.get(), st) != 0) return UniqueFd();
  if (!S_ISREG(st->st_mode)) {
    errno = EINVAL;
    return UniqueFd();
  }
  int fl = ::fcntl(fd.get(), F_GETFL);
  if (fl < 0 || ::fcntl(fd.get(), F_SETFL, fl & ~O_NONBLOCK) != 0) {
    return UniqueFd();
  }
  return fd;
}

bool WriteAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// utimensat/futimens times that set the modification time to mtime_ns and
// leave the access time.
void MtimeTimes(int64_t mtime_ns, timespec times[2]) {
  times[0].tv_sec = 0;
  times[0].tv_nsec = UTIME_OMIT;
  int64_t sec = mtime_ns / 1000000000;
  int64_t nsec = mtime_ns % 1000000000;
  if (nsec < 0) {
    nsec += 1000000000;
    sec -= 1;
  }
  times[1].tv_sec = static_cast<time_t>(sec);
  times[1].tv_nsec = static_cast<long>(nsec);
}

// Sets the modification time of dirfd/name; mtime_ns 0 leaves it.
bool SetMtime(int dirfd, const char* name, int64_t mtime_ns, int flags) {
  if (mtime_ns == 0) return true;
  timespec times[2];
  MtimeTimes(mtime_ns, times);
  return ::utimensat(dirfd, name, times, flags) == 0;
}

bool SetMtimeFd(int fd, int64_t mtime_ns) {
  if (mtime_ns == 0) return true;
  timespec times[2];
  MtimeTimes(mtime_ns, times);
  return ::futimens(fd, times) == 0;
}

// The unique-enough name of a temporary entry beside its final name. Short,
// so that it fits whatever the final name's length.
std::string TempName() {
  static uint64_t counter = 0;
  timespec now;
  ::clock_gettime(CLOCK_MONOTONIC, &now);
  return ".corral-tmp-" + std::to_string(::getpid()) + "-" +
         std::to_string(++counter) + "-" +
         std::to_string(static_cast<uint64_t>(now.tv_nsec) & 0xffffff);
}

// Creates a temporary regular file (0600) in dirfd. Returns its fd and name.
UniqueFd CreateTemp(int dirfd, std::string* name) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    *name = TempName();
    UniqueFd fd(::openat(dirfd, name->c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                         0600));
    if (fd || errno != EEXIST) return fd;
  }
  return UniqueFd();
}

// ---- The operation ----------------------------------------------------------

class FsOperation {
 public:
  FsOperation(int in_fd, int out_fd, const FsOptions& options)
      : in_fd_(in_fd), out_fd_(out_fd), options_(options) {}

  // Runs the request; on failure error() says why.
  bool Run(const v1::FsRequest& request);
  const std::string& error() const { return error_; }

 private:
  bool Fail(std::string message) {
    if (error_.empty()) error_ = std::move(message);
    return false;
  }
  bool FailErrno(const std::string& what) {
    return Fail(what + ": " + ErrnoText(errno));
  }

  // Output and input.
  bool Emit(const v1::FsRecord& record);
  bool Flush();
  bool EmitSummary(v1::FsSummary summary);
  // 1: a record, 0: clean end of input, -1: failure (error set).
  int NextInput(v1::FsRecord* record);

  // Request path -> absolute path; fails on NUL bytes and empty paths.
  bool Resolve(const std::string& path, std::string* absolute);
  bool ResolvedEntry(const std::string& absolute, v1::FsEntry* entry);
  bool MkdirAll(const std::string& absolute, mode_t last_mode);

  bool Stat(const v1::FsStat& request);
  bool List(const v1::FsList& request);
  bool Read(const v1::FsRead& request);
  bool Write(const v1::FsWrite& request);
  bool WriteContent(int fd, uint64_t* bytes);
  bool Mkdir(const v1::FsMkdir& request);
  bool Remove(const v1::FsRemove& request);
  bool Move(const v1::FsMove& request);
  bool Watch(const v1::FsWatch& request);
  // Watch: adds a watch on root/relative and, when `recursive`, on every
  // directory beneath it, into `watches` (wd -> relative path). With
  // `announce` (a directory made while watching), every entry found beneath
  // it gets a CREATE event: it may have been made before its directory was
  // watched.
  bool AddWatches(int inotify_fd, const std::string& root,
                  const std::string& relative, bool recursive, bool announce,
                  std::map<int, std::string>* watches);
  bool Pack(const v1::FsPack& request);
  bool PackOne(int dirfd, const std::string& name, const std::string& path,
               bool recursive, bool ignore_missing);
  bool PackFile(int dirfd, const std::string& name, const std::string& path);

  // Calls visit(dirfd, name, relative path, lstat) for every entry beneath
  // dirfd in List order; descends into directories when `recursive`. visit
  // returns false to stop (with error_ set, or not for a clean stop).
  using Visitor = std::function<bool(int, const std::string&,
                                     const std::string&, const struct stat&)>;
  bool Walk(int dirfd, const std::string& prefix, bool recursive,
            const Visitor& visit);

  const int in_fd_;
  const int out_fd_;
  const FsOptions& options_;
  std::string error_;
  std::string outbox_;
  wire::FsRecordDecoder decoder_;
  bool input_ended_ = false;
  // Counted by List and Pack.
  uint64_t entries_ = 0;
  uint64_t bytes_ = 0;
  // List: stop here (0: no limit); set once reached.
  uint64_t max_entries_ = 0;
  bool truncated_ = false;

  friend class Unpacker;
};

bool FsOperation::Emit(const v1::FsRecord& record) {
  if (!wire::AppendFsRecord(record, &outbox_)) {
    return Fail("internal error: record cannot be encoded");
  }
  if (outbox_.size() >= kOutputFlushBytes) return Flush();
  return true;
}

bool FsOperation::Flush() {
  if (!WriteAll(out_fd_, outbox_.data(), outbox_.size())) {
    return FailErrno("writing output");
  }
  outbox_.clear();
  return true;
}

bool FsOperation::EmitSummary(v1::FsSummary summary) {
  summary.set_now_ns(RealtimeNs());
  v1::FsRecord record;
  *record.mutable_summary() = std::move(summary);
  return Emit(record) && Flush();
}

int FsOperation::NextInput(v1::FsRecord* record) {
  for (;;) {
    if (decoder_.Next(record)) return 1;
    if (decoder_.failed()) {
      Fail("input: " + decoder_.error());
      return -1;
    }
    if (input_ended_) {
      if (decoder_.buffered_bytes() > 0) {
        Fail("input: ended inside a record");
        return -1;
      }
      return 0;
    }
    char buffer[kInputReadBytes];
    ssize_t n = ::read(in_fd_, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      FailErrno("reading input");
      return -1;
    }
    if (n == 0) {
      input_ended_ = true;
      continue;
    }
    decoder_.Feed(std::string_view(buffer, static_cast<size_t>(n)));
  }
}

bool FsOperation::Resolve(const std::string& path, std::string* absolute) {
  if (path.empty()) return Fail("empty path");
  if (path.find('\0') != std::string::npos) {
    return Fail("path " + Quote(path) + " contains a NUL byte");
  }
  const std::string joined =
      path.front() == '/' ? path : options_.workspace + "/" + path;
  // Drop empty and "." components; ".." stays for the kernel to resolve,
  // since lexical resolution would be wrong across symlinks.
  std::string out;
  for (const std::string& component : SplitPath(joined)) {
    if (component == ".") continue;
    out += '/';
    out += component;
  }
  if (out.empty()) out = "/";
  *absolute = std::move(out);
  return true;
}

bool FsOperation::ResolvedEntry(const std::string& absolute,
                                v1::FsEntry* entry) {
  struct stat st;
  if (::lstat(absolute.c_str(), &st) != 0) {
    return FailErrno(Quote(absolute));
  }
  if (!FillEntry(st, AT_FDCWD, absolute.c_str(), entry)) {
    return FailErrno(Quote(absolute));
  }
  entry->set_path(absolute);
  return true;
}

// mkdir -p: intermediate directories 0755, the last one last_mode. Existing
// directories (also through symlinks) are fine.
bool FsOperation::MkdirAll(const std::string& absolute, mode_t last_mode) {
  const std::vector<std::string> components = SplitPath(absolute);
  std::string path;
  for (size_t i = 0; i < components.size(); ++i) {
    path += "/" + components[i];
    const bool last = i + 1 == components.size();
    if (::mkdir(path.c_str(), last ? 0700 : 0755) == 0) {
      if (last && ::chmod(path.c_str(), last_mode) != 0) {
        return FailErrno(Quote(path));
      }
      continue;
    }
    if (errno != EEXIST) return FailErrno(Quote(path));
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) return FailErrno(Quote(path));
    if (!S_ISDIR(st.st_mode)) {
      return Fail(Quote(path) + ": " + ErrnoText(ENOTDIR));
    }
  }
  return true;
}

bool FsOperation::Walk(int dirfd, const std::string& prefix, bool recursive,
                       const Visitor& visit) {
  std::vector<std::string> names;
  if (!ReadNames(dirfd, &names)) {
    return FailErrno(Quote(prefix.empty() ? "." : prefix) +
                     ": reading directory");
  }
  for (const std::string& name : names) {
    const std::string path = prefix.empty() ? name : prefix + "/" + name;
    if (path.size() > kMaxPathBytes) {
      return Fail(Quote(path) + ": path longer than " +
                  std::to_string(kMaxPathBytes) + " bytes");
    }
    struct stat st;
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // removed since readdir
      return FailErrno(Quote(path));
    }
    if (!visit(dirfd, name, path, st)) return false;
    if (recursive && S_ISDIR(st.st_mode)) {
      UniqueFd child = OpenDirNoFollow(dirfd, name.c_str());
      if (!child) {
        // Replaced since the fstatat: skip it, like an entry that vanished.
        if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) continue;
        return FailErrno(Quote(path));
      }
      if (!Walk(child.get(), path, recursive, visit)) return false;
    }
  }
  return true;
}

bool FsOperation::Stat(const v1::FsStat& request) {
  std::string absolute;
  if (!Resolve(request.path(), &absolute)) return false;
  v1::FsSummary summary;
  if (!ResolvedEntry(absolute, summary.mutable_entry())) return false;
  summary.set_entries(1);
  return EmitSummary(std::move(summary));
}

bool FsOperation::List(const v1::FsList& request) {
  std::string absolute;
  if (!Resolve(request.path(), &absolute)) return false;
  UniqueFd dir = OpenDirNoFollow(AT_FDCWD, absolute.c_str());
  if (!dir) return FailErrno(Quote(absolute));
  max_entries_ = request.max_entries();
  v1::FsRecord record;
  const bool completed =
      Walk(dir.get(), "", request.recursive(),
           [&](int dirfd, const std::string& name, const std::string& path,
               const struct stat& st) {
             if (max_entries_ > 0 && entries_ >= max_entries_) {
               truncated_ = true;
               return false;
             }
             v1::FsEntry* entry = record.mutable_entry();
             entry->Clear();
             if (!FillEntry(st, dirfd, name.c_str(), entry)) {
               if (errno == ENOENT) return true;
               return FailErrno(Quote(path));
             }
             entry->set_path(path);
             ++entries_;
             return Emit(record);
           });
  if (!completed && !truncated_) return false;
  v1::FsSummary summary;
  summary.set_entries(entries_);
  summary.set_truncated(truncated_);
  return EmitSummary(std::move(summary));
}

bool FsOperation::Read(const v1::FsRead& request) {
  std::string absolute;
  if (!Resolve(request.path(), &absolute)) return false;
  struct stat st;
  UniqueFd fd = OpenRegular(AT_FDCWD, absolute.c_str(), /*follow=*/true, &st);
  if (!fd) {
    if (errno == EINVAL) return Fail(Quote(absolute) + ": not a regular file");
    return FailErrno(Quote(absolute));
  }
  uint64_t offset = request.offset();
  uint64_t left = request.length() == 0 ? UINT64_MAX : request.length();
  v1::FsRecord record;
  while (left > 0) {
    std::string* data = record.mutable_data();
    data->resize(std::min<uint64_t>(wire::kFsDataChunkBytes, left));
    ssize_t n = ::pread(fd.get(), data->data(), data->size(),
                        static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return FailErrno(Quote(absolute));
    }
    if (n == 0) break;
    data->resize(static_cast<size_t>(n));
    if (!Emit(record)) return false;
    offset += static_cast<uint64_t>(n);
    left -= static_cast<uint64_t>(n);
    bytes_ += static_cast<uint64_t>(n);
  }
  v1::FsSummary summary;
  summary.set_bytes(bytes_);
  return EmitSummary(std::move(summary));
}

bool FsOperation::WriteContent(int fd, uint64_t* bytes) {
  v1::FsRecord record;
  for (;;) {
    int got = NextInput(&record);
    if (got < 0) return false;
    if (got == 0) return true;
    if (record.body_case() != v1::FsRecord::kData) {
      return Fail("input: expected data records only");
    }
    const std::string& data = record.data();
    if (!WriteAll(fd, data.data(), data.size())) return FailErrno("write");
    *bytes += data.size();
  }
}

bool FsOperation::Write(const v1::FsWrite& request) {
  std::string absolute;
  if (!Resolve(request.path(), &absolute)) return false;
  if (absolute == "/") return Fail("'/': " + ErrnoText(EISDIR));
  const size_t slash = absolute.rfind('/');
  const std::string parent = slash == 0 ? "/" : absolute.substr(0, slash);
  const std::string name = absolute.substr(slash + 1);
  if (request.create_parents() && !MkdirAll(parent, 0755)) return false;
  UniqueFd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return FailErrno(Quote(parent));
  struct stat st;
  if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
      S_ISDIR(st.st_mode)) {
    return Fail(Quote(absolute) + ": " + ErrnoText(EISDIR));
  }
  std::string temp;
  UniqueFd file = CreateTemp(dir.get(), &temp);
  if (!file) return FailErrno(Quote(absolute) + ": creating a temporary file");
  const mode_t mode = request.mode() == 0 ? 0644 : (request.mode() & 0777);
  uint64_t bytes = 0;
  bool ok = WriteContent(file.get(), &bytes);
  if (ok && ::fchmod(file.get(), mode) != 0) {
    ok = FailErrno(Quote(absolute) + ": chmod");
  }
  if (ok && ::close(file.Release()) != 0) {
    ok = FailErrno(Quote(absolute) + ": close");
  }
  if (ok && ::renameat(dir.get(), temp.c_str(), dir.get(), name.c_str()) != 0) {
    ok = FailErrno(Quote(absolute));
  }
  if (!ok) {
    ::unlinkat(dir.get(), temp.c_str(), 0);
    // Say which path failed when the cause was the input or the write.
    if (error_.rfind('\'', 0) != 0) error_ = Quote(absolute) + ": " + error_;
    return false;
  }
  v1::FsSummary summary;
  summary.set_entries(1);
  summary.set_bytes(bytes);
  if (!ResolvedEntry(absolute, summary.mutable_entry())) return false;
  return EmitSummary(std::move(summary));
}

bool FsOperation::Mkdir(const v1::FsMkdir& request) {
  std::string absolute;
  if (!Resolve(request.path(), &absolute)) return false;
  const mode_t mode = request.mode() == 0 ? 0755 : (request.mode() & 0777);
  if (request.parents()) {
    if (!MkdirAll(absolute, mode)) return false;
  } else {
    if (::mkdir(absolute.c_str(), 0700) != 0) return FailErrno(Quote(absolute));
    // mkdir's mode is subject to the umask; the request's is not.
    if (::chmod(absolute.c_str(), mode) != 0) {
      return FailErrno(Quote(absolute));
    }
  }
  v1::FsSummary summary;
  summary.set_entries(1);
  if (!ResolvedEntry(absolute, summary.mutable_entry())) return false;
  return EmitSummary(std::move(summary));
}

bool FsOperation::Remove(const v1::FsRemove& request) {
  std::string absolute;
  if (!Resolve(request.path(), &absolute)) return false;
  if (absolute == "/") return Fail("'/': refusing to remove the root");
  struct stat st;
  if (::lstat(absolute.c_str(), &st) != 0) return FailErrno(Quote(absolute));
  uint64_t removed = 0;
  if (S_ISDIR(st.st_mode)) {
    if (request.recursive()) {
      const size_t slash = absolute.rfind('/');
      const std::string parent = slash == 0 ? "/" : absolute.substr(0, slash);
      UniqueFd dir(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!dir) return FailErrno(Quote(parent));
      std::string why;
      if (!RemoveTree(dir.get(), absolute.substr(slash + 1), absolute, &removed,
                      &why)) {
        return Fail(why);
      }
    } else {
      if (::rmdir(absolute.c_str()) != 0) return FailErrno(Quote(absolute));
      removed = 1;
    }
  } else {
    if (::unlink(absolute.c_str()) != 0) return FailErrno(Quote(absolute));
    removed = 1;
  }
  v1::FsSummary summary;
  summary.set_entries(removed);
  return EmitSummary(std::move(summary));
}

bool FsOperation::Move(const v1::FsMove& request) {
  std::string from, to;
  if (!Resolve(request.from(), &from) || !Resolve(request.to(), &to)) {
    return false;
  }
  if (::rename(from.c_str(), to.c_str()) != 0) {
    return FailErrno("moving " + Quote(from) + " to " + Quote(to));
  }
  v1::FsSummary summary;
  summary.set_entries(1);
  if (!ResolvedEntry(to, summary.mutable_entry())) return false;
  return EmitSummary(std::move(summary));
}

bool FsOperation::AddWatches(int inotify_fd, const std::string& root,
                             const std::string& relative, bool recursive,
                             bool announce,
                             std::map<int, std::string>* watches) {
  constexpr uint32_t kMask = IN_CREATE | IN_MODIFY | IN_DELETE | IN_MOVED_FROM |
                             IN_MOVED_TO | IN_ATTRIB | IN_DELETE_SELF |
                             IN_MOVE_SELF | IN_ONLYDIR | IN_DONT_FOLLOW;
  const std::string absolute = relative.empty() ? root : root + "/" + relative;
  if (watches->size() >= kMaxWatchedDirectories) {
    return Fail("more than " + std::to_string(kMaxWatchedDirectories) +
                " directories to watch: exceeds the limit");
  }
  // The watched directory itself may be reached through symlinks; those
  // beneath it are never followed.
  const int wd =
      ::inotify_add_watch(inotify_fd, absolute.c_str(),
                          relative.empty() ? (kMask & ~IN_DONT_FOLLOW) : kMask);
  if (wd < 0) {
    // Gone, or no longer a directory, since it was listed: not watched.
    if (!relative.empty() && (errno == ENOENT || errno == ENOTDIR)) return true;
    if (errno == ENOSPC) {
      return Fail("watching " + Quote(absolute) +
                  ": the sandbox's inotify watch limit is reached");
    }
    return FailErrno("watching " + Quote(absolute));
  }
  (*watches)[wd] = relative;
  if (!recursive) return true;
  UniqueFd dir(
      ::open(absolute.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC |
                                   (relative.empty() ? 0 : O_NOFOLLOW)));
  if (!dir) return true;  // vanished meanwhile
  std::vector<std::string> names;
  if (!ReadNames(dir.get(), &names)) return true;
  for (const std::string& name : names) {
    struct stat st;
    if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      continue;
    }
    const std::string child = relative.empty() ? name : relative + "/" + name;
    if (announce) {
      v1::FsRecord record;
      v1::FsEvent& event = *record.mutable_event();
      event.set_kind(v1::FS_EVENT_CREATE);
      event.set_path(child);
      event.set_type(S_ISDIR(st.st_mode) ? v1::ENTRY_TYPE_DIRECTORY
                                         : v1::ENTRY_TYPE_REGULAR);
      if (!Emit(record)) return false;
      // A file that already holds bytes when found was written before its
      // directory could be watched: that write is reported too. One still
      // empty is written after the watch is in place, and inotify says so.
      if (S_ISREG(st.st_mode) && st.st_size > 0) {
        event.set_kind(v1::FS_EVENT_WRITE);
        if (!Emit(record)) return false;
      }
    }
    if (!S_ISDIR(st.st_mode)) continue;
    if (!AddWatches(inotify_fd, root, child, true, announce, watches)) {
      return false;
    }
  }
  return true;
}

bool FsOperation::Watch(const v1::FsWatch& request) {
  std::string root;
  if (!Resolve(request.path(), &root)) return false;
  struct stat st;
  if (::stat(root.c_str(), &st) != 0) return FailErrno(Quote(root));
  if (!S_ISDIR(st.st_mode)) {
    errno = ENOTDIR;
    return FailErrno(Quote(root));
  }
  UniqueFd inotify(::inotify_init1(IN_CLOEXEC));
  if (!inotify) return FailErrno("inotify");
  std::map<int, std::string> watches;
  if (!AddWatches(inotify.get(), root, "", request.recursive(),
                  /*announce=*/false, &watches)) {
    return false;
  }
  v1::FsRecord record;
  v1::FsEvent& event = *record.mutable_event();
  event.set_kind(v1::FS_EVENT_STARTED);
  if (!Emit(record) || !Flush()) return false;

  alignas(struct inotify_event) char buffer[64 << 10];
  for (;;) {
    const ssize_t n = ::read(inotify.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      return FailErrno("reading inotify events");
    }
    for (ssize_t at = 0; at < n;) {
      const auto* raw =
          reinterpret_cast<const struct inotify_event*>(buffer + at);
      at += static_cast<ssize_t>(sizeof(struct inotify_event) + raw->len);
      if (raw->mask & IN_Q_OVERFLOW) {
        return Fail(
            "inotify: more changes than its queue holds, some were "
            "lost: exceeds the limit");
      }
      auto watched = watches.find(raw->wd);
      if (watched == watches.end()) continue;
      const std::string dir = watched->second;
      if (raw->mask & IN_IGNORED) {
        watches.erase(watched);
        continue;
      }
      const bool self = raw->mask & (IN_DELETE_SELF | IN_MOVE_SELF);
      if (self) {
        // The watched directory itself went: the watch is over.
        if (dir.empty()) {
          if (!Flush()) return false;
          v1::FsSummary summary;
          return EmitSummary(std::move(summary));
        }
        continue;  // a subdirectory: its parent reports it
      }
      const std::string name(raw->len > 0 ? raw->name : "");
      const std::string path = dir.empty() ? name : dir + "/" + name;
      const bool is_dir = raw->mask & IN_ISDIR;
      struct {
        uint32_t bits;
        v1::FsEventKind kind;
      } static constexpr kKinds[] = {
          {IN_CREATE | IN_MOVED_TO, v1::FS_EVENT_CREATE},
          {IN_MODIFY, v1::FS_EVENT_WRITE},
          {IN_DELETE, v1::FS_EVENT_REMOVE},
          {IN_MOVED_FROM, v1::FS_EVENT_RENAME},
          {IN_ATTRIB, v1::FS_EVENT_CHMOD},
      };
      for (const auto& k : kKinds) {
        if (!(raw->mask & k.bits)) continue;
        event.set_kind(k.kind);
        event.set_path(path);
        event.set_type(is_dir ? v1::ENTRY_TYPE_DIRECTORY
                              : v1::ENTRY_TYPE_REGULAR);
        if (!Emit(record)) return false;
      }
      if (request.recursive() && is_dir &&
          (raw->mask & (IN_CREATE | IN_MOVED_TO)) &&
          !AddWatches(inotify.get(), root, path, true, /*announce=*/true,
                      &watches)) {
        return false;
      }
    }
    if (!Flush()) return false;
  }
}

// Sends the FsEntry, then exactly `size` bytes: a file that grew is cut, one
// that shrank is padded with zeros (the entry is already out, so its size is
// the promise). See FsEntry.changed in agent.proto.
bool FsOperation::PackFile(int dirfd, const std::string& name,
                           const std::string& path) {
  struct stat st;
  UniqueFd fd = OpenRegular(dirfd, name.c_str(), /*follow=*/false, &st);
  if (!fd) {
    // Vanished or replaced by something else since it was listed: skip it,
    // as if the walk had not seen it.
    if (errno == ENOENT || errno == ELOOP || errno == EINVAL) return true;
    return FailErrno(Quote(path));
  }
  v1::FsRecord record;
  v1::FsEntry* entry = record.mutable_entry();
  FillEntry(st, dirfd, name.c_str(), entry);
  entry->set_path(path);
  if (!Emit(record)) return false;
  ++entries_;
  uint64_t left = static_cast<uint64_t>(st.st_size);
  bool at_eof = false;
  while (left > 0) {
    std::string* data = record.mutable_data();
    data->resize(std::min<uint64_t>(wire::kFsDataChunkBytes, left));
    size_t filled = 0;
    while (!at_eof && filled < data->size()) {
      ssize_t n =
          ::read(fd.get(), data->data() + filled, data->size() - filled);
      if (n < 0) {
        if (errno == EINTR) continue;
        return FailErrno(Quote(path));
      }
      if (n == 0) at_eof = true;
      filled += static_cast<size_t>(n);
    }
    // Shrunk: the rest of the promised size is zeros.
    std::fill(data->begin() + static_cast<ptrdiff_t>(filled), data->end(),
              '\0');
    left -= data->size();
    bytes_ += data->size();
    if (!Emit(record)) return false;
  }
  return true;
}

bool FsOperation::PackOne(int dirfd, const std::string& name,
                          const std::string& path, bool recursive,
                          bool ignore_missing) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT && ignore_missing) return true;
    return FailErrno(Quote(path));
  }
  if (S_ISREG(st.st_mode)) return PackFile(dirfd, name, path);
  if (!S_ISDIR(st.st_mode) && !S_ISLNK(st.st_mode)) return true;  // skipped
  v1::FsRecord record;
  if (!FillEntry(st, dirfd, name.c_str(), record.mutable_entry())) {
    if (errno == ENOENT) return true;
    return FailErrno(Quote(path));
  }
  record.mutable_entry()->set_path(path);
  if (!Emit(record)) return false;
  ++entries_;
  if (!S_ISDIR(st.st_mode) || !recursive) return true;
  UniqueFd dir = OpenDirNoFollow(dirfd, name.c_str());
  if (!dir) {
    if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP) return true;
    return FailErrno(Quote(path));
  }
  // Walk descends into directories itself: each entry is packed alone.
  return Walk(dir.get(), path, /*recursive=*/true,
              [this](int parent, const std::string& child,
                     const std::string& child_path, const struct stat&) {
                return PackOne(parent, child, child_path,
                               /*recursive=*/false, /*ignore_missing=*/true);
              });
}

bool FsOperation::Pack(const v1::FsPack& request) {
  std::string absolute;
  if (!Resolve(request.root(), &absolute)) return false;
  UniqueFd root = OpenDirNoFollow(AT_FDCWD, absolute.c_str());
  if (!root) return FailErrno("root " + Quote(absolute));
  if (request.paths().empty()) {
    if (!Walk(root.get(), "", /*recursive=*/true,
              [this](int dirfd, const std::string& name,
                     const std::string& path, const struct stat&) {
                return PackOne(dirfd, name, path, /*recursive=*/false,
                               /*ignore_missing=*/true);
              })) {
      return false;
    }
  }
  for (const std::string& path : request.paths()) {
    std::string invalid = CheckStreamPath(path);
    if (!invalid.empty()) return Fail("path " + Quote(path) + ": " + invalid);
    // Parents are opened without following symlinks: the entry's path must
    // say where its content really is.
    const std::vector<std::string> components = SplitPath(path);
    UniqueFd parent;
    int dirfd = root.get();
    bool missing = false;
    for (size_t i = 0; i + 1 < components.size(); ++i) {
      UniqueFd next = OpenDirNoFollow(dirfd, components[i].c_str());
      if (!next) {
        const int error = errno;
        struct stat st;
        if (::fstatat(dirfd, components[i].c_str(), &st, AT_SYMLINK_NOFOLLOW) ==
                0 &&
            S_ISLNK(st.st_mode)) {
          return Fail("path " + Quote(path) + ": refusing to pack through " +
                      "symlink " + Quote(JoinPath(components, i + 1)));
        }
        if ((error == ENOENT || error == ENOTDIR) && request.ignore_missing()) {
          missing = true;
          break;
        }
        return Fail("path " + Quote(path) + ": " + ErrnoText(error));
      }
      parent = std::move(next);
      dirfd = parent.get();
    }
    if (missing) continue;
    if (!PackOne(dirfd, components.back(), path, request.recursive(),
                 request.ignore_missing())) {
      return false;
    }
  }
  v1::FsSummary summary;
  summary.set_entries(entries_);
  summary.set_bytes(bytes_);
  return EmitSummary(std::move(summary));
}

// ---- Unpack -----------------------------------------------------------------

class Unpacker {
 public:
  Unpacker(FsOperation& op, const v1::FsUnpack& request)
      : op_(op), request_(request) {}
  ~Unpacker() { DiscardPending(); }

  bool Run();

 private:
  struct PendingFile {
    UniqueFd fd;
    UniqueFd dir;  // the parent, for the rename
    std::string temp;
    std::string name;
    std::string path;
    uint64_t left = 0;
    uint32_t mode = 0;
    int64_t mtime_ns = 0;
  };
  struct DirMeta {
    std::string path;
    uint32_t mode;
    int64_t mtime_ns;
  };

  bool Fail(std::string message) { return op_.Fail(std::move(message)); }
  bool FailEntry(const std::string& path, const std::string& why) {
    return Fail("entry " + Quote(path) + ": " + why);
  }

  bool OpenRoot();
  // Opens the first n components of `components` beneath the root, one at a
  // time and never through a symlink; creates missing ones (0755) when
  // `create`. On failure sets *why.
  UniqueFd OpenBeneath(const std::vector<std::string>& components, size_t n,
                       bool create, std::string* why);
  // The parent directory of an entry, cached for consecutive entries of the
  // same directory.
  int ParentOf(const std::string& path,
               const std::vector<std::string>& components);
  bool HandleEntry(const v1::FsEntry& entry);
  bool HandleData(const std::string& data);
  bool FinishFile();
  void DiscardPending();
  // Makes room for a new entry at dirfd/name: removes an existing entry
  // unless it is a directory and `keep_directory`.
  bool Clear(int dirfd, const std::string& name, const std::string& path,
             bool keep_directory);
  // Renames dirfd/temp over dirfd/name, removing the temporary on failure.
  bool Place(int dirfd, const std::string& temp, const std::string& name,
             const std::string& path);
  bool DeleteMissing(int dirfd, const std::string& prefix);
  bool ApplyDirectoryMeta();
  void Forget(const std::string& path, bool with_contents);

  FsOperation& op_;
  const v1::FsUnpack& request_;
  std::string root_path_;
  UniqueFd root_;
  std::string cached_parent_path_;
  UniqueFd cached_parent_;
  PendingFile pending_;
  bool has_pending_ = false;
  std::string last_path_;
  uint64_t entries_ = 0;
  uint64_t bytes_ = 0;
  // Paths of REGULAR entries of this stream still in place: hard link
  // targets.
  std::set<std::string> regular_;
  // delete_missing: every entry path received, and all their ancestors.
  std::set<std::string> received_;
  std::set<std::string> ancestors_;
  std::map<std::string, DirMeta> directories_;
};

bool Unpacker::OpenRoot() {
  if (!op_.Resolve(request_.root(), &root_path_)) return false;
  const std::vector<std::string> components = SplitPath(root_path_);
  UniqueFd dir(::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return op_.FailErrno("root: opening '/'");
  std::string walked;
  for (const std::string& component : components) {
    walked += "/" + component;
    if (component == "..") {
      return Fail("root " + Quote(root_path_) + ": '..' component");
    }
    UniqueFd next = OpenDirNoFollow(dir.get(), component.c_str());
    if (!next && errno == ENOENT) {
      if (::mkdirat(dir.get(), component.c_str(), 0755) != 0 &&
          errno != EEXIST) {
        return op_.FailErrno("root " + Quote(root_path_) + ": creating " +
                             Quote(walked));
      }
      next = OpenDirNoFollow(dir.get(), component.c_str());
    }
    if (!next) {
      const int error = errno;
      struct stat st;
      if (::fstatat(dir.get(), component.c_str(), &st, AT_SYMLINK_NOFOLLOW) ==
              0 &&
          S_ISLNK(st.st_mode)) {
        return Fail("root " + Quote(root_path_) +
                    ": refusing to follow symlink " + Quote(walked));
      }
      return Fail("root " + Quote(root_path_) + ": " + Quote(walked) + ": " +
                  ErrnoText(error));
    }
    dir = std::move(next);
  }
  root_ = std::move(dir);
  return true;
}

UniqueFd Unpacker::OpenBeneath(const std::vector<std::string>& components,
                               size_t n, bool create, std::string* why) {
  UniqueFd dir(::fcntl(root_.get(), F_DUPFD_CLOEXEC, 3));
  if (!dir) {
    *why = ErrnoText(errno);
    return dir;
  }
  for (size_t i = 0; i < n; ++i) {
    const char* name = components[i].c_str();
    UniqueFd next = OpenDirNoFollow(dir.get(), name);
    if (!next && errno == ENOENT && create) {
      if (::mkdirat(dir.get(), name, 0755) != 0 && errno != EEXIST) {
        *why = "creating " + Quote(JoinPath(components, i + 1)) + ": " +
               ErrnoText(errno);
        return UniqueFd();
      }
      next = OpenDirNoFollow(dir.get(), name);
    }
    if (!next) {
      const int error = errno;
      struct stat st;
      if (::fstatat(dir.get(), name, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if (S_ISLNK(st.st_mode)) {
          *why = "refusing to write through symlink " +
                 Quote(JoinPath(components, i + 1));
          return UniqueFd();
        }
        if (!S_ISDIR(st.st_mode)) {
          *why = Quote(JoinPath(components, i + 1)) + " is not a directory";
          return UniqueFd();
        }
      }
      *why = Quote(JoinPath(components, i + 1)) + ": " + ErrnoText(error);
      return UniqueFd();
    }
    dir = std::move(next);
  }
  return dir;
}

int Unpacker::ParentOf(const std::string& path,
                       const std::vector<std::string>& components) {
  const std::string parent = JoinPath(components, components.size() - 1);
  if (cached_parent_ && parent == cached_parent_path_) {
    return cached_parent_.get();
  }
  cached_parent_.Reset();
  std::string why;
  UniqueFd dir = OpenBeneath(components, components.size() - 1,
                             /*create=*/true, &why);
  if (!dir) {
    FailEntry(path, why);
    return -1;
  }
  cached_parent_ = std::move(dir);
  cached_parent_path_ = parent;
  return cached_parent_.get();
}

// Drops bookkeeping for `path` (and what was beneath it) once it is replaced.
void Unpacker::Forget(const std::string& path, bool with_contents) {
  regular_.erase(path);
  directories_.erase(path);
  if (!with_contents) return;
  const std::string prefix = path + "/";
  auto beneath = [&prefix](const std::string& other) {
    return other.compare(0, prefix.size(), prefix) == 0;
  };
  for (auto it = regular_.lower_bound(prefix);
       it != regular_.end() && beneath(*it);) {
    it = regular_.erase(it);
  }
  for (auto it = directories_.lower_bound(prefix);
       it != directories_.end() && beneath(it->first);) {
    it = directories_.erase(it);
  }
}

bool Unpacker::Clear(int dirfd, const std::string& name,
                     const std::string& path, bool keep_directory) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return true;
    return FailEntry(path, ErrnoText(errno));
  }
  if (S_ISDIR(st.st_mode)) {
    if (keep_directory) return true;
    // The cached parent may lie beneath the directory about to go.
    cached_parent_.Reset();
    uint64_t removed = 0;
    std::string why;
    if (!RemoveTree(dirfd, name, path, &removed, &why)) {
      return FailEntry(path, "replacing a directory: " + why);
    }
    return true;
  }
  // Other types are replaced by rename; a directory in the way is not.
  return true;
}

bool Unpacker::Place(int dirfd, const std::string& temp,
                     const std::string& name, const std::string& path) {
  if (::renameat(dirfd, temp.c_str(), dirfd, name.c_str()) != 0) {
    const int error = errno;
    ::unlinkat(dirfd, temp.c_str(), 0);
    return FailEntry(path, ErrnoText(error));
  }
  return true;
}

bool Unpacker::HandleEntry(const v1::FsEntry& entry) {
  const std::string& path = entry.path();
  if (has_pending_ && pending_.left > 0) {
    return FailEntry(pending_.path, "the next entry came " +
                                        std::to_string(pending_.left) +
                                        " bytes before the end of its data");
  }
  std::string invalid = CheckStreamPath(path);
  if (!invalid.empty()) return FailEntry(path, invalid);
  const v1::EntryType type = entry.type();
  if (type != v1::ENTRY_TYPE_REGULAR && type != v1::ENTRY_TYPE_DIRECTORY &&
      type != v1::ENTRY_TYPE_SYMLINK && type != v1::ENTRY_TYPE_HARDLINK) {
    return FailEntry(path, "unsupported entry type " +
                               std::to_string(static_cast<int>(type)));
  }
  if (request_.max_entries() > 0 && entries_ >= request_.max_entries()) {
    return FailEntry(path, "entry count exceeds max_entries (" +
                               std::to_string(request_.max_entries()) + ")");
  }
  if (type == v1::ENTRY_TYPE_REGULAR && request_.max_bytes() > 0 &&
      entry.size() > request_.max_bytes() - bytes_) {
    return FailEntry(path, "content exceeds max_bytes (" +
                               std::to_string(request_.max_bytes()) + ")");
  }
  const std::string& target = entry.link_target();
  if (type == v1::ENTRY_TYPE_SYMLINK) {
    if (target.empty()) return FailEntry(path, "empty symlink target");
    if (target.size() > kMaxPathBytes) {
      return FailEntry(path, "symlink target longer than " +
                                 std::to_string(kMaxPathBytes) + " bytes");
    }
    if (target.find('\0') != std::string::npos) {
      return FailEntry(path, "symlink target contains a NUL byte");
    }
  }
  if (type == v1::ENTRY_TYPE_HARDLINK) {
    std::string bad = CheckStreamPath(target);
    if (!bad.empty()) {
      return FailEntry(path, "hard link target " + Quote(target) + ": " + bad);
    }
    if (regular_.count(target) == 0) {
      return FailEntry(path, "hard link target " + Quote(target) +
                                 " is not an earlier regular file of this "
                                 "stream");
    }
  }

  const std::vector<std::string> components = SplitPath(path);
  const int cached = ParentOf(path, components);
  if (cached < 0) return false;
  // Our own fd: replacing a directory drops the cache.
  UniqueFd dir(::fcntl(cached, F_DUPFD_CLOEXEC, 3));
  if (!dir) return FailEntry(path, ErrnoText(errno));
  const int dirfd = dir.get();
  const std::string& name = components.back();
  ++entries_;
  last_path_ = path;
  if (request_.delete_missing()) {
    received_.insert(path);
    for (size_t i = 1; i < components.size(); ++i) {
      ancestors_.insert(JoinPath(components, i));
    }
  }
  Forget(path, /*with_contents=*/type != v1::ENTRY_TYPE_DIRECTORY);
  const uint32_t mode = entry.mode() & 0777;

  switch (type) {
    case v1::ENTRY_TYPE_DIRECTORY: {
      struct stat st;
      const bool exists =
          ::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0;
      if (exists && !S_ISDIR(st.st_mode) &&
          ::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) {
        return FailEntry(path, ErrnoText(errno));
      }
      if (!exists || !S_ISDIR(st.st_mode)) {
        // Owner-writable while unpacking; the final mode comes at the end.
        if (::mkdirat(dirfd, name.c_str(), 0700) != 0) {
          return FailEntry(path, ErrnoText(errno));
        }
      } else if ((st.st_mode & 0700) != 0700) {
        UniqueFd existing = OpenDirNoFollow(dirfd, name.c_str());
        if (existing) ::fchmod(existing.get(), (st.st_mode & 0777) | 0700);
      }
      directories_[path] = DirMeta{path, mode, entry.mtime_ns()};
      return true;
    }
    case v1::ENTRY_TYPE_REGULAR: {
      if (!Clear(dirfd, name, path, /*keep_directory=*/false)) return false;
      pending_ = PendingFile{};
      pending_.fd = CreateTemp(dir.get(), &pending_.temp);
      if (!pending_.fd) return FailEntry(path, ErrnoText(errno));
      pending_.dir = std::move(dir);
      pending_.name = name;
      pending_.path = path;
      pending_.left = entry.size();
      pending_.mode = mode;
      pending_.mtime_ns = entry.mtime_ns();
      has_pending_ = true;
      bytes_ += entry.size();
      if (pending_.left == 0) return FinishFile();
      return true;
    }
    case v1::ENTRY_TYPE_SYMLINK: {
      if (!Clear(dirfd, name, path, /*keep_directory=*/false)) return false;
      std::string temp;
      int error = EEXIST;
      for (int attempt = 0; attempt < 100 && error == EEXIST; ++attempt) {
        temp = TempName();
        error = ::symlinkat(target.c_str(), dir.get(), temp.c_str()) == 0
                    ? 0
                    : errno;
      }
      if (error != 0) return FailEntry(path, ErrnoText(error));
      if (!SetMtime(dir.get(), temp.c_str(), entry.mtime_ns(),
                    AT_SYMLINK_NOFOLLOW)) {
        const int saved = errno;
        ::unlinkat(dir.get(), temp.c_str(), 0);
        return FailEntry(path, ErrnoText(saved));
      }
      return Place(dir.get(), temp, name, path);
    }
    case v1::ENTRY_TYPE_HARDLINK: {
      const std::vector<std::string> target_components = SplitPath(target);
      std::string why;
      UniqueFd target_dir = OpenBeneath(
          target_components, target_components.size() - 1, false, &why);
      if (!target_dir) {
        return FailEntry(path,
                         "hard link target " + Quote(target) + ": " + why);
      }
      struct stat st;
      const char* target_name = target_components.back().c_str();
      if (::fstatat(target_dir.get(), target_name, &st, AT_SYMLINK_NOFOLLOW) !=
              0 ||
          !S_ISREG(st.st_mode)) {
        return FailEntry(path, "hard link target " + Quote(target) +
                                   " is not a regular file");
      }
      if (!Clear(dirfd, name, path, /*keep_directory=*/false)) return false;
      std::string temp;
      int error = EEXIST;
      for (int attempt = 0; attempt < 100 && error == EEXIST; ++attempt) {
        temp = TempName();
        // No AT_SYMLINK_FOLLOW: links the entry itself, never a symlink's
        // target.
        error = ::linkat(target_dir.get(), target_name, dir.get(), temp.c_str(),
                         0) == 0
                    ? 0
                    : errno;
      }
      if (error != 0) {
        return FailEntry(
            path, "hard link to " + Quote(target) + ": " + ErrnoText(error));
      }
      return Place(dir.get(), temp, name, path);
    }
    default:
      return FailEntry(path, "unsupported entry type");
  }
}

bool Unpacker::HandleData(const std::string& data) {
  if (!has_pending_) {
    if (last_path_.empty()) return Fail("input: data before any entry");
    return FailEntry(last_path_, "unexpected data after this entry");
  }
  if (data.size() > pending_.left) {
    return FailEntry(pending_.path, "more data than its size");
  }
  if (!WriteAll(pending_.fd.get(), data.data(), data.size())) {
    return FailEntry(pending_.path, ErrnoText(errno));
  }
  pending_.left -= data.size();
  if (pending_.left == 0) return FinishFile();
  return true;
}

bool Unpacker::FinishFile() {
  PendingFile& file = pending_;
  int error = 0;
  if (::fchmod(file.fd.get(), file.mode) != 0) error = errno;
  if (error == 0 && !SetMtimeFd(file.fd.get(), file.mtime_ns)) error = errno;
  if (error == 0 && ::close(file.fd.Release()) != 0) error = errno;
  if (error != 0) {
    DiscardPending();
    return FailEntry(file.path, ErrnoText(error));
  }
  has_pending_ = false;
  UniqueFd dir = std::move(file.dir);
  if (!Place(dir.get(), file.temp, file.name, file.path)) return false;
  regular_.insert(file.path);
  return true;
}

void Unpacker::DiscardPending() {
  if (!has_pending_) return;
  has_pending_ = false;
  pending_.fd.Reset();
  if (pending_.dir) ::unlinkat(pending_.dir.get(), pending_.temp.c_str(), 0);
  pending_.dir.Reset();
}

bool Unpacker::DeleteMissing(int dirfd, const std::string& prefix) {
  std::vector<std::string> names;
  if (!ReadNames(dirfd, &names)) {
    return op_.FailErrno("delete_missing: " +
                         Quote(prefix.empty() ? "." : prefix));
  }
  for (const std::string& name : names) {
    const std::string path = prefix.empty() ? name : prefix + "/" + name;
    const bool keep = received_.count(path) > 0 || ancestors_.count(path) > 0;
    if (!keep) {
      uint64_t removed = 0;
      std::string why;
      if (!RemoveTree(dirfd, name, path, &removed, &why)) {
        return Fail("delete_missing: " + why);
      }
      continue;
    }
    struct stat st;
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
        !S_ISDIR(st.st_mode)) {
      continue;
    }
    UniqueFd child = OpenDirNoFollow(dirfd, name.c_str());
    if (!child) continue;
    if (!DeleteMissing(child.get(), path)) return false;
  }
  return true;
}

bool Unpacker::ApplyDirectoryMeta() {
  // Deepest first, after everything else: creating entries changes a
  // directory's mtime, and a read-only parent must not block its children.
  std::vector<const DirMeta*> order;
  for (const auto& [path, meta] : directories_) order.push_back(&meta);
  auto depth = [](const std::string& p) {
    return std::count(p.begin(), p.end(), '/');
  };
  std::stable_sort(order.begin(), order.end(),
                   [&](const DirMeta* a, const DirMeta* b) {
                     return depth(a->path) > depth(b->path);
                   });
  for (const DirMeta* meta : order) {
    const std::vector<std::string> components = SplitPath(meta->path);
    std::string why;
    UniqueFd dir =
        OpenBeneath(components, components.size(), /*create=*/false, &why);
    if (!dir) return FailEntry(meta->path, why);
    if (::fchmod(dir.get(), meta->mode) != 0) {
      return FailEntry(meta->path, ErrnoText(errno));
    }
    if (!SetMtimeFd(dir.get(), meta->mtime_ns)) {
      return FailEntry(meta->path, ErrnoText(errno));
    }
  }
  return true;
}

bool Unpacker::Run() {
  if (!OpenRoot()) return false;
  if (request_.clear()) {
    uint64_t removed = 0;
    std::string why;
    if (!RemoveContents(root_.get(), "", &removed, &why)) {
      return Fail("clear: " + why);
    }
  }
  v1::FsRecord record;
  for (;;) {
    const int got = op_.NextInput(&record);
    if (got < 0) return false;
    if (got == 0) break;
    switch (record.body_case()) {
      case v1::FsRecord::kEntry:
        if (!HandleEntry(record.entry())) return false;
        break;
      case v1::FsRecord::kData:
        if (!HandleData(record.data())) return false;
        break;
      default:
        return Fail("input: unexpected record");
    }
  }
  if (has_pending_ && pending_.left > 0) {
    return FailEntry(pending_.path, "input ended " +
                                        std::to_string(pending_.left) +
                                        " bytes before the end of its data");
  }
  cached_parent_.Reset();
  if (request_.delete_missing() && !DeleteMissing(root_.get(), "")) {
    return false;
  }
  if (!ApplyDirectoryMeta()) return false;
  v1::FsSummary summary;
  summary.set_entries(entries_);
  summary.set_bytes(bytes_);
  return op_.EmitSummary(std::move(summary));
}

bool FsOperation::Run(const v1::FsRequest& request) {
  switch (request.op_case()) {
    case v1::FsRequest::kStat:
      return Stat(request.stat());
    case v1::FsRequest::kList:
      return List(request.list());
    case v1::FsRequest::kRead:
      return Read(request.read());
    case v1::FsRequest::kWrite:
      return Write(request.write());
    case v1::FsRequest::kMkdir:
      return Mkdir(request.mkdir());
    case v1::FsRequest::kRemove:
      return Remove(request.remove());
    case v1::FsRequest::kMove:
      return Move(request.move());
    case v1::FsRequest::kWatch:
      return Watch(request.watch());
    case v1::FsRequest::kPack:
      return Pack(request.pack());
    case v1::FsRequest::kUnpack: {
      Unpacker unpacker(*this, request.unpack());
      return unpacker.Run();
    }
    default:
      return Fail("no file operation in the request");
  }
}

}  // namespace

int RunFsOperation(const v1::FsRequest& request, int in_fd, int out_fd,
                   int err_fd, const FsOptions& options) {
  FsOperation operation(in_fd, out_fd, options);
  if (operation.Run(request)) return 0;
  std::string line = operation.error();
  if (line.empty()) line = "file operation failed";
  line += '\n';
  WriteAll(err_fd, line.data(), line.size());
  return 1;
}

int RunFsOperation(const v1::FsRequest& request, int in_fd, int out_fd,
                   int err_fd) {
  return RunFsOperation(request, in_fd, out_fd, err_fd, FsOptions());
}

}  // namespace corral::agent
