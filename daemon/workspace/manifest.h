// Manifests: the record of a workspace's content (see manifest.proto).
// Built from entry streams, merged from an agent's listing, replayed into an
// agent, and walked for garbage collection.
#ifndef CORRAL_DAEMON_WORKSPACE_MANIFEST_H_
#define CORRAL_DAEMON_WORKSPACE_MANIFEST_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "corral/agent/v1/agent.pb.h"
#include "corral/workspace/v1/manifest.pb.h"
#include "daemon/workspace/content_store.h"
#include "daemon/workspace/entry_sink.h"
#include "daemon/workspace/path_rules.h"

namespace corral::daemon::workspace {

// Mtimes this close to the listing's clock (or later) are not trusted: a
// file written again within the filesystem's timestamp granularity could
// keep its mtime and size with new content.
inline constexpr int64_t kRacyWindowNs = 2'000'000'000;
inline constexpr int64_t kRacyWindow = kRacyWindowNs;

// Bounds on what a ManifestBuilder accepts; a hostile agent could otherwise
// stream entries without end. 0 means no limit.
struct ManifestLimits {
  uint64_t max_entries = 0;
  uint64_t max_bytes = 0;
};

// Collects an entry stream (an agent's Pack output, or a validated upload)
// into a manifest, storing regular files' content in the store. Hard links
// become regular entries with their target's hash, size and mode;
// directories and symlinks are recorded as they are. Later entries replace
// earlier ones of the same path (a directory replaced by anything else
// takes its contents with it), as the agent's Unpack does.
//
// Everything is validated, since the stream can come from a hostile agent:
// paths follow PathProblem's rules, no entry lies beneath a file or symlink
// of the stream, types are REGULAR, DIRECTORY, SYMLINK or (to an earlier
// regular file) HARDLINK, and each file gets exactly `size` bytes of data:
// INVALID_ARGUMENT or DATA_LOSS naming the path otherwise. Mode bits above
// 07777 are dropped. A Pack entry flagged `changed` is stored with
// mtime_ns 0, so its content is compared again next time.
class ManifestBuilder : public EntrySink {
 public:
  // `store` must outlive the builder.
  explicit ManifestBuilder(ContentStore* store);
  ManifestBuilder(ContentStore* store, const ManifestLimits& limits);
  ~ManifestBuilder() override;

  absl::Status OnEntry(const corral::agent::v1::FsEntry& entry) override;
  absl::Status OnData(std::string_view data) override;
  // The manifest, sorted by path. Fails if a file's data is incomplete or an
  // earlier call failed; the builder is spent afterwards.
  [[nodiscard]] absl::StatusOr<corral::workspace::v1::Manifest> Finish();

  // Content bytes that were new to the store.
  [[nodiscard]] uint64_t new_bytes() const { return new_bytes_; }
  // Content bytes of every regular file (hard links included).
  [[nodiscard]] uint64_t total_bytes() const { return total_bytes_; }

 private:
  // Refuses to go on after an error or Finish, and while the last file
  // still misses data (`when` says where it ended).
  absl::Status StartNext(std::string_view when);
  absl::Status Fail(absl::Status status);
  absl::Status CommitFile();
  void EraseBeneath(const std::string& path);

  ContentStore* store_;
  const ManifestLimits limits_;
  std::map<std::string, corral::workspace::v1::ManifestEntry> entries_;
  EntryTree tree_;
  // The regular file whose data is arriving.
  std::unique_ptr<ContentStore::Writer> writer_;
  corral::workspace::v1::ManifestEntry* pending_ = nullptr;
  uint64_t remaining_ = 0;
  uint64_t entries_seen_ = 0;
  uint64_t new_bytes_ = 0;
  uint64_t total_bytes_ = 0;
  absl::Status status_;
  bool finished_ = false;
};

// Regular files of `listing` (an FsList of the workspace, paths relative to
// it) whose content must be read to hash it: `reference` has no regular
// entry of that path, or its size or mtime_ns differ, or its mtime_ns is 0.
// In listing order. Entries with invalid paths are left out (MergeListing
// refuses them).
[[nodiscard]] std::vector<std::string> PathsToHash(
    const corral::workspace::v1::Manifest& reference,
    const std::vector<corral::agent::v1::FsEntry>& listing);

// The workspace as listed, with hashes: regular files take theirs from
// `hashed` (a manifest built from packing PathsToHash's paths) or else from
// `reference` (when its size and mtime match); INTERNAL if a file has
// neither (it changed between the listing and the pack: list again). Where
// the packed content does not match the listing's size and mtime, and for
// mtimes within kRacyWindowNs of now_ns or in the future, mtime_ns is stored
// as 0, so the content is compared next time. OTHER entries are left out;
// the listing is hostile input and validated like ManifestBuilder's.
[[nodiscard]] absl::StatusOr<corral::workspace::v1::Manifest> MergeListing(
    const corral::workspace::v1::Manifest& reference,
    const std::vector<corral::agent::v1::FsEntry>& listing,
    const corral::workspace::v1::Manifest& hashed, int64_t now_ns);

// Streams a manifest's entries in its (bytewise path) order, so parents come
// first, with its files' content from the store, into `sink` (for reset and
// fork the sink forwards to the agent's Unpack). DATA_LOSS if an object's
// size does not match its entry.
[[nodiscard]] absl::Status EmitManifest(
    const corral::workspace::v1::Manifest& manifest, const ContentStore& store,
    EntrySink& sink);

// Adds every object the manifest references (for garbage collection). The
// manifest's own object is the caller's to add.
void CollectReferences(const corral::workspace::v1::Manifest& manifest,
                       absl::flat_hash_set<std::string>* live);

// Checks a manifest's invariants (sorted, unique, valid paths and types,
// hashes well formed): for manifests read back from disk.
[[nodiscard]] absl::Status ValidateManifest(
    const corral::workspace::v1::Manifest& manifest);

}  // namespace corral::daemon::workspace

#endif  // CORRAL_DAEMON_WORKSPACE_MANIFEST_H_
