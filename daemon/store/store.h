// The daemon's durable state: sandboxes, images, the event log and the command
// log in one SQLite database (WAL, synchronous=FULL), with versioned schema
// migrations. Every acknowledged write survives kill -9 and power loss.
#ifndef CORRAL_DAEMON_STORE_STORE_H_
#define CORRAL_DAEMON_STORE_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

struct sqlite3;
struct sqlite3_stmt;

namespace corral::daemon {

// One sandbox as the store keeps it. The store interprets only the columns it
// filters on; `spec` and `backend_handle` are opaque bytes.
struct SandboxRecord {
  // 32 lowercase hex characters.
  std::string id;
  uint32_t owner_uid = 0;
  uint32_t owner_gid = 0;
  std::string runtime;
  std::string image;
  // A corral.v1.SandboxState value.
  int state = 0;
  absl::Time created_at = absl::UnixEpoch();
  // absl::InfiniteFuture() means "never expires".
  absl::Time expires_at = absl::InfiniteFuture();
  // Host uid that root inside the sandbox maps to; 0 means none.
  uint32_t host_uid = 0;
  // Why the sandbox failed; empty otherwise.
  std::string failure;
  // A serialized corral.v1.Sandbox (the public view).
  std::string spec;
  // Whatever the backend needs to find the sandbox again after a restart.
  std::string backend_handle;
};

// One imported image. Built-in images ("host") are not stored.
struct ImageRecord {
  std::string name;
  // A corral.v1.ImageSource value.
  int source = 0;
  uint64_t size_bytes = 0;
  uint64_t entries = 0;
  // Hex SHA-256 of the archive bytes.
  std::string archive_sha256;
  absl::Time created_at = absl::UnixEpoch();
  // Serialized labels (the image store chooses the encoding).
  std::string labels;
  // Directory holding the image (its rootfs/ and any later artefacts).
  std::string directory;
};

struct EventRecord {
  // Increases strictly; never reused, even after trimming.
  int64_t sequence = 0;
  absl::Time time = absl::UnixEpoch();
  // Empty for daemon-wide events.
  std::string sandbox_id;
  std::string type;
  std::string message;
};

struct SecretRecord {
  std::string name;
  std::string placeholder;
  std::string value;
  std::string hosts;  // comma-separated domain patterns
};

struct NetEventRecord {
  int64_t sequence = 0;
  std::string sandbox_id;
  // A serialized corral.v1.NetworkEvent (its sequence field unset).
  std::string event;
};

struct CommandRecord {
  // Increases strictly across all sandboxes.
  int64_t sequence = 0;
  std::string sandbox_id;
  // The command line, serialized by the caller.
  std::string argv;
  int exit_code = 0;
  // Signal that ended the command; 0 when it exited.
  int signal = 0;
  absl::Time started_at = absl::UnixEpoch();
  absl::Duration duration;
  // Everything else about the command, serialized by the caller.
  std::string details;
};

// A named manifest of a sandbox's workspace; the empty name is its baseline.
struct SnapshotRecord {
  std::string sandbox_id;
  std::string name;
  // SHA-256 (hex) of the manifest object in the content store.
  std::string manifest;
  absl::Time created_at = absl::UnixEpoch();
  uint64_t entries = 0;
  uint64_t size_bytes = 0;
  uint64_t new_bytes = 0;
  // The runtime's saved state of the whole sandbox (a memory snapshot), or
  // empty for a snapshot of the workspace alone.
  std::string memory;
  uint64_t memory_bytes = 0;  // what the saved state takes on the host
};

// A range of host uids, [base, base + count).
struct HostUidRange {
  uint32_t base = 0;
  uint32_t count = 0;
};

// Host-wide holders of host uids, consulted when the store picks one: a
// uid this store has free may be held by another daemon's sandbox.
struct HostUidClaims {
  // Takes the uid for the sandbox being inserted: true when it is now held
  // by it, false when someone else holds it.
  std::function<absl::StatusOr<bool>(uint32_t uid)> claim;
  // Gives back a uid `claim` took, when the insert then fails.
  std::function<void(uint32_t uid)> release;
};

struct StoreOptions {
  // Events beyond this many (the oldest) are trimmed on append; 0 keeps all.
  int64_t max_events = 100000;
  // How long a statement waits for a lock held by another connection.
  absl::Duration busy_timeout = absl::Seconds(5);
};

// Thread-safe: one connection serialized by a mutex. Do not fork while a
// Store is open unless the child only calls exec or _exit.
class Store {
 public:
  // The schema version this code writes. A database at a newer version is
  // refused, because the old code could silently lose the newer columns.
  static constexpr int kSchemaVersion = 6;

  // Opens (creating if missing) the database at `path` (mode 0600) and
  // applies the pending migrations, each in its own transaction.
  [[nodiscard]] static absl::StatusOr<std::unique_ptr<Store>> Open(
      const std::string& path, StoreOptions options = {});

  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Highest migration applied to the database.
  [[nodiscard]] absl::StatusOr<int> SchemaVersion();

  // --- Sandboxes ---

  // ALREADY_EXISTS when the id is taken.
  [[nodiscard]] absl::Status InsertSandbox(const SandboxRecord& record);
  // Like InsertSandbox, but sets host_uid to the lowest uid of `range` that no
  // sandbox holds (and, with `claims`, that no other daemon holds), chosen
  // in the same transaction as the insert so that two creations never get
  // the same uid. Returns that uid. RESOURCE_EXHAUSTED when every uid of the
  // range is taken.
  [[nodiscard]] absl::StatusOr<uint32_t> InsertSandboxWithHostUid(
      const SandboxRecord& record, HostUidRange range,
      const HostUidClaims* claims = nullptr);
  // The lowest uid of [base, base + count) no sandbox holds now. Nothing is
  // reserved: use InsertSandboxWithHostUid to take it.
  [[nodiscard]] absl::StatusOr<uint32_t> AllocateHostUid(uint32_t base,
                                                         uint32_t count);
  // NOT_FOUND when there is no such sandbox.
  [[nodiscard]] absl::StatusOr<SandboxRecord> GetSandbox(std::string_view id);
  // Ordered by creation time, then id.
  [[nodiscard]] absl::StatusOr<std::vector<SandboxRecord>> ListSandboxes();
  [[nodiscard]] absl::StatusOr<std::vector<SandboxRecord>> ListSandboxesByOwner(
      uint32_t owner_uid);
  // Sandboxes whose expires_at <= now, soonest first.
  [[nodiscard]] absl::StatusOr<std::vector<SandboxRecord>> ListExpired(
      absl::Time now);
  // The update functions fail with NOT_FOUND when there is no such sandbox.
  [[nodiscard]] absl::Status UpdateSandboxState(std::string_view id, int state,
                                                std::string_view failure);
  // Sets the state only if it is `expected` now; returns whether it did. For
  // transitions that must not race (RUNNING -> DELETING).
  [[nodiscard]] absl::StatusOr<bool> CompareAndSetSandboxState(
      std::string_view id, int expected, int state);
  [[nodiscard]] absl::Status UpdateSandboxHandle(std::string_view id,
                                                 std::string_view handle);
  [[nodiscard]] absl::Status UpdateSandboxSpec(std::string_view id,
                                               std::string_view spec);
  [[nodiscard]] absl::Status SetExpiry(std::string_view id,
                                       absl::Time expires_at);
  // Also deletes its command log. NOT_FOUND when there is no such sandbox.
  [[nodiscard]] absl::Status DeleteSandbox(std::string_view id);
  [[nodiscard]] absl::StatusOr<int64_t> CountSandboxes();
  [[nodiscard]] absl::StatusOr<int64_t> CountSandboxesByOwner(
      uint32_t owner_uid);
  [[nodiscard]] absl::StatusOr<int64_t> CountSandboxesUsingImage(
      std::string_view image);
  // Bytes of the named snapshots (workspace and memory) of every sandbox
  // `owner_uid` owns; baselines are left out (a workspace's seed lies
  // within its disk).
  [[nodiscard]] absl::StatusOr<uint64_t> SnapshotBytesByOwner(
      uint32_t owner_uid);

  // --- Images ---

  // ALREADY_EXISTS when the name is taken.
  [[nodiscard]] absl::Status InsertImage(const ImageRecord& record);
  // Inserts or overwrites the record of that name.
  [[nodiscard]] absl::Status ReplaceImage(const ImageRecord& record);
  [[nodiscard]] absl::StatusOr<ImageRecord> GetImage(std::string_view name);
  // Ordered by name.
  [[nodiscard]] absl::StatusOr<std::vector<ImageRecord>> ListImages();
  // NOT_FOUND when there is no such image.
  [[nodiscard]] absl::Status DeleteImage(std::string_view name);

  // --- Events ---

  // Appends an event stamped with the current time; returns its sequence.
  // Trims the oldest events beyond StoreOptions::max_events.
  [[nodiscard]] absl::StatusOr<int64_t> AppendEvent(std::string_view sandbox_id,
                                                    std::string_view type,
                                                    std::string_view message);
  // Events with sequence > after_sequence, oldest first, at most `limit`
  // (<= 0: no limit). A non-empty sandbox_id keeps only that sandbox's.
  [[nodiscard]] absl::StatusOr<std::vector<EventRecord>> ListEvents(
      int64_t after_sequence, int64_t limit, std::string_view sandbox_id = {});
  // Keeps only the newest `keep` events; returns how many were removed.
  [[nodiscard]] absl::StatusOr<int64_t> TrimEvents(int64_t keep);

  // --- Egress audit ---

  // Appends network events (their sandbox_id and event; sequence is
  // ignored) in one transaction, and keeps the newest `keep` of each
  // sandbox. Events of sandboxes that no longer exist are dropped.
  [[nodiscard]] absl::Status AppendNetEvents(
      const std::vector<NetEventRecord>& events, int64_t keep);
  // Its events with sequence > after_sequence, oldest first, at most limit.
  [[nodiscard]] absl::StatusOr<std::vector<NetEventRecord>> ListNetEvents(
      std::string_view sandbox_id, int64_t after_sequence, int64_t limit);

  // --- Secrets ---

  // NOT_FOUND when the sandbox does not exist; all or nothing.
  [[nodiscard]] absl::Status PutSecrets(
      std::string_view sandbox_id, const std::vector<SecretRecord>& secrets);
  [[nodiscard]] absl::StatusOr<std::vector<SecretRecord>> ListSecrets(
      std::string_view sandbox_id);
  // The CA of a sandbox with secrets (PEM certificate and key). Put: a
  // sandbox has one at most; ALREADY_EXISTS otherwise (or when there is no
  // such sandbox). Get: NOT_FOUND when it has none.
  [[nodiscard]] absl::Status PutSandboxCa(std::string_view sandbox_id,
                                          const std::string& certificate_pem,
                                          const std::string& key_pem);
  [[nodiscard]] absl::StatusOr<std::pair<std::string, std::string>>
  GetSandboxCa(std::string_view sandbox_id);

  // --- Command log ---

  // NOT_FOUND when the sandbox does not exist. Returns the sequence.
  [[nodiscard]] absl::StatusOr<int64_t> AppendCommand(
      const CommandRecord& record);
  // Oldest first.
  [[nodiscard]] absl::StatusOr<std::vector<CommandRecord>> ListCommands(
      std::string_view sandbox_id);

  // --- Snapshots (deleted with their sandbox) ---

  // NOT_FOUND when the sandbox does not exist; ALREADY_EXISTS when the name
  // is taken and !replace.
  [[nodiscard]] absl::Status PutSnapshot(const SnapshotRecord& record,
                                         bool replace);
  [[nodiscard]] absl::StatusOr<SnapshotRecord> GetSnapshot(
      std::string_view sandbox_id, std::string_view name);
  // Oldest first; the baseline (empty name) included.
  [[nodiscard]] absl::StatusOr<std::vector<SnapshotRecord>> ListSnapshots(
      std::string_view sandbox_id);
  [[nodiscard]] absl::Status DeleteSnapshot(std::string_view sandbox_id,
                                            std::string_view name);
  // Every manifest any snapshot names, for garbage collection.
  [[nodiscard]] absl::StatusOr<std::vector<std::string>>
  ListSnapshotManifests();

 private:
  class Statement;
  class Transaction;

  Store(sqlite3* db, StoreOptions options);

  // The private helpers expect mutex_ held.
  absl::Status Configure();
  absl::Status Migrate();
  // A cached prepared statement, reset when the returned handle goes away.
  absl::StatusOr<Statement> Prepare(const char* sql);
  absl::Status SqliteError(int rc, std::string_view context) const;
  absl::StatusOr<uint32_t> LowestFreeHostUid(HostUidRange range);
  absl::Status InsertSandboxLocked(const SandboxRecord& record,
                                   uint32_t host_uid);
  absl::StatusOr<std::vector<SandboxRecord>> QuerySandboxes(Statement& stmt);
  absl::StatusOr<std::vector<SnapshotRecord>> QuerySnapshots(Statement& stmt);
  static ImageRecord ImageFromRow(Statement& stmt);
  absl::StatusOr<int64_t> TrimEventsLocked(int64_t keep);

  std::mutex mutex_;
  sqlite3* const db_;  // owned; guarded by mutex_
  // Prepared statements keyed by their SQL literal's address; guarded by
  // mutex_ and finalized in the destructor.
  std::unordered_map<const char*, sqlite3_stmt*> statements_;
  const StoreOptions options_;
};

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_STORE_STORE_H_
