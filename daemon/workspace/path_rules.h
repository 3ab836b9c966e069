// The rules every workspace entry path follows, wherever it comes from (a
// client's archive, an agent's stream, a stored manifest), and a compact
// record of a stream's entries that refuses paths beneath a file or symlink.
#ifndef CORRAL_DAEMON_WORKSPACE_PATH_RULES_H_
#define CORRAL_DAEMON_WORKSPACE_PATH_RULES_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "corral/agent/v1/agent.pb.h"

namespace corral::daemon::workspace {

inline constexpr size_t kMaxPathBytes = 4096;
inline constexpr size_t kMaxComponentBytes = 255;
// Data chunks handed to an EntrySink, as FsRecord data records carry.
inline constexpr size_t kMaxChunkBytes = 64 * 1024;

// Why `path` is not a valid entry path, or nullopt when it is. Valid: not
// empty, relative, components separated by single '/', none of them empty,
// "." or "..", no NUL byte, at most `max_path` bytes in all and
// `max_component` per component.
[[nodiscard]] std::optional<std::string> PathProblem(
    std::string_view path, size_t max_path = kMaxPathBytes,
    size_t max_component = kMaxComponentBytes);

// Debian's Abseil keeps its own string_view (ABSL_OPTION_USE_STD_STRING_VIEW
// is 0), which does not convert from std::string_view.
inline absl::string_view Sv(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

// `path` between single quotes with non-printable bytes, quotes and
// backslashes escaped: safe to put in a message or a log line.
[[nodiscard]] std::string QuotePath(std::string_view path);

// INVALID_ARGUMENT "<what> '<path>': <reason>", the form of every complaint
// about one entry ("archive entry", "exported entry", ...).
[[nodiscard]] absl::Status EntryError(std::string_view what,
                                      std::string_view path,
                                      std::string_view reason);

// "regular file", "directory", ...
[[nodiscard]] std::string_view EntryTypeName(corral::agent::v1::EntryType type);

// The latest type of every path seen in a stream of entries, kept as 128-bit
// keyed hashes rather than strings, so that a million 4 KiB paths cost tens
// of megabytes, not gigabytes, and checking the ancestors of a path costs
// O(path length) however deep it is. The hash keys are random per object,
// so an archive cannot be crafted to collide.
class EntryTree {
 public:
  EntryTree();

  // The type last recorded for `path`; ENTRY_TYPE_UNSPECIFIED if none.
  [[nodiscard]] corral::agent::v1::EntryType TypeOf(
      std::string_view path) const;

  // The shortest proper ancestor of `path` (a prefix ending before a '/')
  // last recorded as anything but a directory, or nullopt. `path` must
  // follow PathProblem's rules.
  [[nodiscard]] std::optional<std::string_view> NonDirectoryAncestor(
      std::string_view path) const;

  // Why `path` may not come after the entries recorded so far ("lies
  // beneath the symlink 'a'"), or nullopt. `path` must follow PathProblem's
  // rules.
  [[nodiscard]] std::optional<std::string> PlacementProblem(
      std::string_view path) const;

  // Records (or replaces) the type of `path`. HARDLINK counts as REGULAR.
  void Record(std::string_view path, corral::agent::v1::EntryType type);
  void Erase(std::string_view path);

  [[nodiscard]] size_t size() const { return types_.size(); }

 private:
  using Key = std::pair<uint64_t, uint64_t>;
  Key KeyOf(std::string_view path) const;

  uint64_t multiplier_[2];
  absl::flat_hash_map<Key, corral::agent::v1::EntryType> types_;
};

}  // namespace corral::daemon::workspace

#endif  // CORRAL_DAEMON_WORKSPACE_PATH_RULES_H_
