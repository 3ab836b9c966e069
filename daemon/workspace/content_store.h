// Content-addressed storage of workspace files and manifests in the daemon's
// state directory: each object is named by the SHA-256 of its bytes, so a
// file that several snapshots (or sandboxes) share is stored once.
//
// Layout under the root (dirs 0700, files 0600):
//   objects/<first 2 hex digits>/<other 62 hex digits>
//   tmp/          objects being written; removed at Open
#ifndef CORRAL_DAEMON_WORKSPACE_CONTENT_STORE_H_
#define CORRAL_DAEMON_WORKSPACE_CONTENT_STORE_H_

#include <cstdint>
#include <filesystem>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "corral/unique_fd.h"
#include "corral/workspace/v1/manifest.pb.h"

namespace corral::daemon::workspace {

class Sha256;

// Thread-safe: any number of writers and readers at once. Objects are never
// modified once committed; CollectGarbage waits for commits in progress.
class ContentStore {
 public:
  // Creates the layout when missing and clears tmp/ (left by a crash).
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<ContentStore>> Open(
      const std::filesystem::path& root);

  struct Committed {
    // Lowercase hex SHA-256 of the content: the object's name.
    std::string sha256;
    uint64_t size = 0;
    // False when the store held this content already.
    bool is_new = false;
  };

  // Streams one object into the store. Not thread-safe itself; use one per
  // thread. Destroying it before Commit discards what was written.
  class Writer {
   public:
    ~Writer();
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;

    [[nodiscard]] absl::Status Append(std::string_view data);
    // Makes the content durable (fsync) and visible under its hash. The
    // writer is spent afterwards, whatever the result.
    [[nodiscard]] absl::StatusOr<Committed> Commit();
    [[nodiscard]] uint64_t size() const { return size_; }

   private:
    friend class ContentStore;
    Writer(ContentStore* store, std::filesystem::path temp_path, UniqueFd fd);

    ContentStore* store_;
    std::filesystem::path temp_path_;
    UniqueFd fd_;
    std::unique_ptr<Sha256> sha256_;
    uint64_t size_ = 0;
    bool done_ = false;
  };

  ~ContentStore();
  ContentStore(const ContentStore&) = delete;
  ContentStore& operator=(const ContentStore&) = delete;

  [[nodiscard]] absl::StatusOr<std::unique_ptr<Writer>> NewWriter();
  [[nodiscard]] absl::StatusOr<Committed> Put(std::string_view data);

  // False too for a name that is not 64 lowercase hex digits.
  [[nodiscard]] bool Has(std::string_view sha256) const;
  // Read-only, close-on-exec. NOT_FOUND if absent; INVALID_ARGUMENT for a
  // malformed name.
  [[nodiscard]] absl::StatusOr<corral::UniqueFd> OpenObject(
      std::string_view sha256) const;
  // The whole object; RESOURCE_EXHAUSTED if it is larger than max_bytes.
  [[nodiscard]] absl::StatusOr<std::string> ReadObject(
      std::string_view sha256, uint64_t max_bytes) const;
  // At most `max_bytes` from the start of the object.
  [[nodiscard]] absl::StatusOr<std::string> ReadObjectPrefix(
      std::string_view sha256, uint64_t max_bytes) const;

  // Removes every object whose name is not in `live` and returns the bytes
  // freed. The caller must make sure nothing still being assembled (a
  // snapshot whose manifest is not stored yet) needs an object missing from
  // `live`: objects deduplicated by such work are not otherwise protected.
  [[nodiscard]] absl::StatusOr<uint64_t> CollectGarbage(
      const absl::flat_hash_set<std::string>& live);

  // Manifests are objects too: their serialized bytes.
  [[nodiscard]] absl::StatusOr<Committed> PutManifest(
      const corral::workspace::v1::Manifest& manifest);
  // DATA_LOSS if the object does not parse.
  [[nodiscard]] absl::StatusOr<corral::workspace::v1::Manifest> ReadManifest(
      std::string_view sha256) const;

  [[nodiscard]] const std::filesystem::path& root() const { return root_; }

 private:
  explicit ContentStore(std::filesystem::path root);
  absl::StatusOr<Committed> CommitTemp(const std::filesystem::path& temp_path,
                                       std::string sha256, uint64_t size);
  std::filesystem::path ObjectPath(std::string_view sha256) const;

  const std::filesystem::path root_;
  // Shared by commits, exclusive for garbage collection: a commit that
  // found its object present must not see it vanish before it returns.
  std::shared_mutex gc_mutex_;
};

// Largest manifest ReadManifest accepts (a million entries with long paths
// fit comfortably).
inline constexpr uint64_t kMaxManifestBytes = uint64_t{1} << 30;

}  // namespace corral::daemon::workspace

#endif  // CORRAL_DAEMON_WORKSPACE_CONTENT_STORE_H_
