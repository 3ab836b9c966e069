// Writes the entries an agent packs (hostile input) as an uncompressed pax
// tar stream, for ExportPath.
#ifndef CORRAL_DAEMON_WORKSPACE_ARCHIVE_OUT_H_
#define CORRAL_DAEMON_WORKSPACE_ARCHIVE_OUT_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "corral/agent/v1/agent.pb.h"
#include "daemon/workspace/entry_sink.h"
#include "daemon/workspace/path_rules.h"

struct archive;
struct archive_entry;

namespace corral::daemon::workspace {

// Every entry is checked before it is written: paths follow PathProblem's
// rules and do not lie beneath a file or symlink written earlier; types are
// REGULAR, DIRECTORY or SYMLINK only; a regular file gets exactly `size`
// bytes (more is an error, and so is a new entry or Finish before `size`
// bytes arrived). Entries are owned by 0:0, keep mode & 0777 and their mtime.
// After an error the writer refuses everything; the output is then
// incomplete and the caller must abort the export.
class TarWriter : public EntrySink {
 public:
  // `sink` receives the archive in chunks of at most 1 MiB; its error stops
  // the writer and is returned.
  explicit TarWriter(std::function<absl::Status(std::string_view)> sink);
  ~TarWriter() override;
  TarWriter(const TarWriter&) = delete;
  TarWriter& operator=(const TarWriter&) = delete;

  absl::Status OnEntry(const corral::agent::v1::FsEntry& entry) override;
  absl::Status OnData(std::string_view data) override;
  // Writes the end-of-archive marker.
  [[nodiscard]] absl::Status Finish();

  // Entries and content bytes written.
  [[nodiscard]] uint64_t entries() const { return entries_; }
  [[nodiscard]] uint64_t bytes() const { return bytes_; }

 private:
  static long WriteCallback(struct archive* archive, void* self,
                            const void* buffer, size_t length);
  absl::Status Open();
  // Refuses to go on after an error or Finish, and while the last file
  // still misses data (`when` says where it ended); opens the archive on
  // first use.
  absl::Status StartNext(std::string_view when);
  absl::Status Fail(absl::Status status);
  absl::Status ArchiveError(std::string_view what);

  std::function<absl::Status(std::string_view)> sink_;
  struct ArchiveFree {
    void operator()(struct archive* archive) const;
  };
  std::unique_ptr<struct archive, ArchiveFree> archive_;
  EntryTree tree_;
  std::string pending_path_;
  uint64_t pending_size_ = 0;
  uint64_t remaining_ = 0;
  uint64_t entries_ = 0;
  uint64_t bytes_ = 0;
  absl::Status status_;
  // The sink's own error, reported as is rather than as libarchive's.
  absl::Status sink_status_;
  bool opened_ = false;
  bool finished_ = false;
  // Set once nothing more may reach the sink: after an error, and while the
  // destructor frees an unfinished archive (libarchive then pads and ends
  // it, which must not look like a complete export).
  bool discard_output_ = false;
};

}  // namespace corral::daemon::workspace

#endif  // CORRAL_DAEMON_WORKSPACE_ARCHIVE_OUT_H_
