#include "tests/fakes/tart/tart_util.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "tests/fakes/common/fake_util.h"
#include "tests/fakes/common/tar_root.h"

namespace corral::fake_tart {

using fakes::CliExit;

void Runtime(const std::string& message, int code) {
  throw CliExit{message, code};
}

void VmDoesNotExist(const std::string& name) {
  Runtime("the specified VM \"" + name + "\" does not exist", 2);
}

void VmNotRunning(const std::string& name) {
  Runtime("VM \"" + name + "\" is not running", 2);
}

void Refuse(const std::string& message) {
  throw CliExit{"Error: tart fake (tests/fakes/tart): " + message, 1};
}

pid_t PidLockHolder(const std::string& config_path) {
  int fd = ::open(config_path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return -1;
  struct flock lock {};
  lock.l_type = F_RDLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = 0;
  lock.l_len = 0;
  pid_t holder = 0;
  if (::fcntl(fd, F_GETLK, &lock) == 0 && lock.l_type != F_UNLCK) {
    holder = lock.l_pid;
  }
  ::close(fd);
  return holder;
}

Flock::Flock(const std::string& path, bool create, bool wait) {
  fd_ = create ? ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600)
               : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) return;
  int op = LOCK_EX | (wait ? 0 : LOCK_NB);
  int r;
  while ((r = ::flock(fd_, op)) != 0 && errno == EINTR) {
  }
  held_ = r == 0;
}

Flock::~Flock() {
  // Unlocked explicitly: a child forked meanwhile shares the open file
  // description, and closing ours alone would leave the lock held.
  if (fd_ >= 0) {
    if (held_) ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
}

bool WaitFlockFree(const std::string& path, int timeout_ms) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  for (;;) {
    {
      Flock lock(path, true, false);
      if (lock.held()) return true;
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

std::string RandomMac() {
  std::random_device device;
  unsigned char bytes[6];
  for (auto& b : bytes) b = static_cast<unsigned char>(device() & 0xff);
  bytes[0] = static_cast<unsigned char>((bytes[0] | 0x02) & 0xfe);
  char text[18];
  std::snprintf(text, sizeof(text), "%02x:%02x:%02x:%02x:%02x:%02x", bytes[0],
                bytes[1], bytes[2], bytes[3], bytes[4], bytes[5]);
  return text;
}

void UnpackRootfs(const std::string& archive, const std::string& root) {
  using ArchivePtr = std::unique_ptr<struct archive, int (*)(struct archive*)>;
  ArchivePtr reader(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(reader.get());
  archive_read_support_format_all(reader.get());
  if (archive_read_open_filename(reader.get(), archive.c_str(), 1 << 16) !=
      ARCHIVE_OK) {
    const char* why = archive_error_string(reader.get());
    Refuse("cannot read " + archive + ": " + (why ? why : "unknown error"));
  }
  fakes::Fd root_fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (root_fd.fd < 0) Refuse("cannot open " + root);
  struct archive_entry* entry = nullptr;
  for (;;) {
    int r = archive_read_next_header(reader.get(), &entry);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      const char* why = archive_error_string(reader.get());
      Refuse("cannot read " + archive + ": " + (why ? why : "unknown error"));
    }
    const char* raw = archive_entry_pathname(entry);
    if (raw == nullptr) continue;
    std::vector<std::string> parts = fakes::Components(raw);
    for (const auto& part : parts) {
      if (part == "..") {
        Refuse(std::string("the root filesystem tar has a member with '..': ") +
               raw);
      }
    }
    if (parts.empty()) continue;  // the root itself
    const std::string name = parts.back();
    const mode_t type = archive_entry_filetype(entry);
    if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFSOCK) continue;
    fakes::Fd parent(
        fakes::DirectoryInRoot(root_fd.fd, parts, parts.size() - 1));
    if (parent.fd < 0) Refuse(std::string("cannot unpack ") + raw);
    switch (
        fakes::PlaceEntry(reader.get(), entry, root_fd.fd, parent.fd, name)) {
      case fakes::Placed::kLinkOutside:
        Refuse(std::string("the root filesystem tar has a link with '..': ") +
               raw);
      case fakes::Placed::kNoFile:
      case fakes::Placed::kReadFailed:
        Refuse(std::string("cannot unpack ") + raw);
      case fakes::Placed::kWriteFailed:
        Refuse(std::string("cannot write ") + raw);
      default:
        break;
    }
  }
}

}  // namespace corral::fake_tart
