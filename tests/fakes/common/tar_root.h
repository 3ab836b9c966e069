// Members of a tar (read with libarchive) written into a root directory
// without ever reaching outside it: every parent resolved inside the root
// (openat2 RESOLVE_IN_ROOT), made when missing, a non-directory in its way
// replaced; owners, modes and times kept. What to refuse (`..`, devices,
// whiteouts) and how to fail is the caller's.
#ifndef CORRAL_TESTS_FAKES_COMMON_TAR_ROOT_H_
#define CORRAL_TESTS_FAKES_COMMON_TAR_ROOT_H_

#include <unistd.h>

#include <functional>
#include <string>
#include <vector>

struct archive;
struct archive_entry;

namespace corral::fakes {

// A descriptor closed with the object.
struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

// The components of a member's name: empty ones and `.` left out (`..`
// kept, for the caller to judge).
std::vector<std::string> Components(const std::string& path);
// The first `n` components joined with `/` ("" for none).
std::string JoinComponents(const std::vector<std::string>& parts, size_t n);

// The directory `parts[0..n)` resolved inside the root, made when missing
// (a non-directory in the way replaced; `made` told of each directory made,
// by its joined name); -1 when it cannot be had.
int DirectoryInRoot(int root_fd, const std::vector<std::string>& parts,
                    size_t n,
                    const std::function<void(const std::string&)>& made = {});

enum class CopyResult { kOk, kReadFailed, kWriteFailed };
// Copies the current member's data into `fd` (at its offsets: sparse).
CopyResult CopyEntryData(struct archive* reader, int fd);

enum class Placed {
  kDone,
  kSkipped,      // nothing to make (an empty link target, another type)
  kLinkOutside,  // a hard link whose target has `..`
  kNoFile,       // the regular file could not be created
  kReadFailed,   // its data could not be read from the archive
  kWriteFailed,  // or not written
};
// Makes the member `entry` (a directory, hard link, symlink, fifo or
// regular file) as `name` in the directory `parent_fd`, replacing what is
// there (a directory stays a directory); hard links are resolved inside
// the root.
Placed PlaceEntry(struct archive* reader, struct archive_entry* entry,
                  int root_fd, int parent_fd, const std::string& name);

}  // namespace corral::fakes

#endif  // CORRAL_TESTS_FAKES_COMMON_TAR_ROOT_H_
