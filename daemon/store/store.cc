#include "daemon/store/store.h"

#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <limits>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "corral/logging.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral::daemon {
namespace {

// Each migration runs once, in its own transaction, in order. Never edit a
// migration that has shipped: append a new one and bump kSchemaVersion.
struct Migration {
  int version;
  const char* sql;
};

// Times are microseconds since the Unix epoch; the infinite times map to the
// extremes of int64 so that "never expires" sorts last.
// Host uid 0 ("none") is stored as NULL so that the UNIQUE index on host_uid
// covers every real allocation.
constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE sandboxes (
  id TEXT PRIMARY KEY NOT NULL,
  owner_uid INTEGER NOT NULL,
  owner_gid INTEGER NOT NULL,
  runtime TEXT NOT NULL,
  image TEXT NOT NULL,
  state INTEGER NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  host_uid INTEGER UNIQUE,
  failure TEXT NOT NULL,
  spec BLOB NOT NULL,
  backend_handle BLOB NOT NULL
) STRICT;
CREATE INDEX sandboxes_owner ON sandboxes(owner_uid);
CREATE INDEX sandboxes_expires ON sandboxes(expires_at);
CREATE INDEX sandboxes_image ON sandboxes(image);

CREATE TABLE images (
  name TEXT PRIMARY KEY NOT NULL,
  source INTEGER NOT NULL,
  size_bytes INTEGER NOT NULL,
  entries INTEGER NOT NULL,
  archive_sha256 TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  labels BLOB NOT NULL,
  directory TEXT NOT NULL
) STRICT;

CREATE TABLE events (
  sequence INTEGER PRIMARY KEY AUTOINCREMENT,
  time INTEGER NOT NULL,
  sandbox_id TEXT NOT NULL,
  type TEXT NOT NULL,
  message TEXT NOT NULL
) STRICT;
CREATE INDEX events_sandbox ON events(sandbox_id, sequence);

CREATE TABLE commands (
  sequence INTEGER PRIMARY KEY AUTOINCREMENT,
  sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
  argv BLOB NOT NULL,
  exit_code INTEGER NOT NULL,
  signal INTEGER NOT NULL,
  started_at INTEGER NOT NULL,
  duration_us INTEGER NOT NULL
) STRICT;
CREATE INDEX commands_sandbox ON commands(sandbox_id, sequence);
)sql"},
    // Workspaces: the command log keeps details (cwd, output) as a blob the
    // caller serializes; snapshots name content-addressed manifests, the
    // baseline under the empty name.
    {2, R"sql(
ALTER TABLE commands ADD COLUMN details BLOB NOT NULL DEFAULT x'';
CREATE TABLE snapshots (
  sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  manifest TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  entries INTEGER NOT NULL,
  size_bytes INTEGER NOT NULL,
  new_bytes INTEGER NOT NULL,
  PRIMARY KEY (sandbox_id, name)
) STRICT;
)sql"},
    // Memory snapshots: the runtime's opaque saved state beside the
    // workspace's manifest; empty for a workspace-only snapshot.
    {3, R"sql(
ALTER TABLE snapshots ADD COLUMN memory BLOB NOT NULL DEFAULT x'';
ALTER TABLE snapshots ADD COLUMN memory_bytes INTEGER NOT NULL DEFAULT 0;
)sql"},
    // The egress audit: each DNS query and connection of a sandbox, as a
    // serialized corral.v1.NetworkEvent.
    {4, R"sql(
CREATE TABLE net_events (
  sequence INTEGER PRIMARY KEY AUTOINCREMENT,
  sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
  event BLOB NOT NULL
) STRICT;
CREATE INDEX net_events_sandbox ON net_events(sandbox_id, sequence);
)sql"},
    // Secrets of sandboxes: what the egress proxy puts in place of their
    // placeholders. Never part of a Sandbox record.
    {5, R"sql(
CREATE TABLE secrets (
  sandbox_id TEXT NOT NULL REFERENCES sandboxes(id) ON DELETE CASCADE,
  name TEXT NOT NULL,
  placeholder TEXT NOT NULL,
  value BLOB NOT NULL,
  hosts TEXT NOT NULL,
  PRIMARY KEY (sandbox_id, name)
) STRICT;
)sql"},
    // The CA of a sandbox with secrets, with which the egress proxy
    // terminates TLS to their hosts. Its key never leaves the daemon.
    {6, R"sql(
CREATE TABLE sandbox_cas (
  sandbox_id TEXT PRIMARY KEY REFERENCES sandboxes(id) ON DELETE CASCADE,
  certificate TEXT NOT NULL,
  key BLOB NOT NULL
) STRICT;
)sql"},
};
static_assert(std::size(kMigrations) == Store::kSchemaVersion);

// Debian's Abseil keeps its own string_view (ABSL_OPTION_USE_STD_STRING_VIEW
// is 0), which does not convert from std::string_view.
absl::string_view Sv(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

int64_t TimeToMicros(absl::Time time) {
  if (time == absl::InfiniteFuture())
    return std::numeric_limits<int64_t>::max();
  if (time == absl::InfinitePast()) return std::numeric_limits<int64_t>::min();
  return absl::ToUnixMicros(time);
}

absl::Time MicrosToTime(int64_t micros) {
  if (micros == std::numeric_limits<int64_t>::max()) {
    return absl::InfiniteFuture();
  }
  if (micros == std::numeric_limits<int64_t>::min()) {
    return absl::InfinitePast();
  }
  return absl::FromUnixMicros(micros);
}

absl::StatusCode CodeForSqlite(int rc) {
  switch (rc & 0xff) {
    case SQLITE_CONSTRAINT:
      return absl::StatusCode::kAlreadyExists;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::StatusCode::kUnavailable;
    case SQLITE_FULL:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return absl::StatusCode::kDataLoss;
    case SQLITE_CANTOPEN:
    case SQLITE_PERM:
    case SQLITE_READONLY:
      return absl::StatusCode::kFailedPrecondition;
    default:
      return absl::StatusCode::kInternal;
  }
}

}  // namespace

// A borrowed, cached sqlite3_stmt; resets it and clears its bindings when it
// goes away so that the next user starts clean. Text and blobs are bound as
// SQLITE_TRANSIENT copies: callers' buffers may die before the step.
class Store::Statement {
 public:
  Statement(sqlite3_stmt* stmt, const Store* store)
      : stmt_(stmt), store_(store) {}
  Statement(Statement&& other) noexcept
      : stmt_(std::exchange(other.stmt_, nullptr)), store_(other.store_) {}
  Statement& operator=(Statement&&) = delete;
  ~Statement() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }

  // Steps through every remaining row, turning each into a value with
  // `from_row(*this)`.
  template <typename FromRow>
  auto Collect(FromRow from_row)
      -> absl::StatusOr<std::vector<decltype(from_row(*this))>> {
    std::vector<decltype(from_row(*this))> rows;
    for (;;) {
      ASSIGN_OR_RETURN(bool row, Step());
      if (!row) return rows;
      rows.push_back(from_row(*this));
    }
  }

  Statement& Int(int index, int64_t value) {
    Check(sqlite3_bind_int64(stmt_, index, value));
    return *this;
  }
  Statement& Text(int index, std::string_view value) {
    Check(sqlite3_bind_text64(stmt_, index, value.data(), value.size(),
                              SQLITE_TRANSIENT, SQLITE_UTF8));
    return *this;
  }
  Statement& Blob(int index, std::string_view value) {
    // A zero-length blob with a null pointer would bind NULL, which the
    // NOT NULL columns refuse.
    Check(sqlite3_bind_blob64(stmt_, index, value.empty() ? "" : value.data(),
                              value.size(), SQLITE_TRANSIENT));
    return *this;
  }
  Statement& Null(int index) {
    Check(sqlite3_bind_null(stmt_, index));
    return *this;
  }
  Statement& Time(int index, absl::Time value) {
    return Int(index, TimeToMicros(value));
  }

  // True when a row is available, false when done.
  absl::StatusOr<bool> Step() {
    if (!bind_status_.ok()) return bind_status_;
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return store_->SqliteError(rc, sqlite3_sql(stmt_));
  }
  // Runs a statement that returns no rows.
  absl::Status Run() {
    ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return absl::OkStatus();
  }

  int64_t ColumnInt(int column) const {
    return sqlite3_column_int64(stmt_, column);
  }
  bool ColumnIsNull(int column) const {
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
  }
  absl::Time ColumnTime(int column) const {
    return MicrosToTime(ColumnInt(column));
  }
  std::string ColumnBytes(int column) const {
    // Blob first, then bytes: the documented order that avoids a conversion.
    const void* data = sqlite3_column_blob(stmt_, column);
    const int size = sqlite3_column_bytes(stmt_, column);
    if (data == nullptr || size <= 0) return std::string();
    return std::string(static_cast<const char*>(data), size);
  }

 private:
  void Check(int rc) {
    if (rc != SQLITE_OK && bind_status_.ok()) {
      bind_status_ = store_->SqliteError(rc, "bind");
    }
  }

  sqlite3_stmt* stmt_;
  const Store* store_;
  absl::Status bind_status_;
};

// BEGIN IMMEDIATE takes the write lock up front, so a transaction that reads
// then writes (uid allocation) cannot be overtaken by another writer.
// Rolls back unless Commit() succeeded.
class Store::Transaction {
 public:
  static absl::StatusOr<Transaction> Begin(Store* store) {
    static constexpr char kBegin[] = "BEGIN IMMEDIATE";
    ASSIGN_OR_RETURN(Statement begin, store->Prepare(kBegin));
    RETURN_IF_ERROR(begin.Run());
    return Transaction(store);
  }
  Transaction(Transaction&& other) noexcept
      : store_(std::exchange(other.store_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;
  ~Transaction() {
    if (store_ == nullptr) return;
    static constexpr char kRollback[] = "ROLLBACK";
    auto rollback = store_->Prepare(kRollback);
    absl::Status status = rollback.ok() ? rollback->Run() : rollback.status();
    if (!status.ok()) {
      Logger("store")->error("rollback failed: {}", status.ToString());
    }
  }

  absl::Status Commit() {
    static constexpr char kCommit[] = "COMMIT";
    ASSIGN_OR_RETURN(Statement commit, store_->Prepare(kCommit));
    RETURN_IF_ERROR(commit.Run());
    store_ = nullptr;
    return absl::OkStatus();
  }

 private:
  explicit Transaction(Store* store) : store_(store) {}
  Store* store_;  // not owned; null once committed
};

Store::Store(sqlite3* db, StoreOptions options)
    : db_(db), options_(std::move(options)) {}

Store::~Store() {
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  // sqlite3_close_v2 checkpoints the WAL when this is the last connection.
  sqlite3_close_v2(db_);
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(const std::string& path,
                                                   StoreOptions options) {
  // Create the file ourselves so that it is 0600 from the start: sandbox
  // specs hold callers' environment variables. SQLite gives the -wal and -shm
  // files the database's mode.
  {
    UniqueFd fd(
        ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!fd) return ErrnoStatus(absl::StrCat("open ", path));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) {
      return ErrnoStatus(absl::StrCat("fstat ", path));
    }
    if (!S_ISREG(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " is not a regular file"));
    }
    if ((st.st_mode & 0077) != 0 && ::fchmod(fd.get(), 0600) != 0) {
      return ErrnoStatus(absl::StrCat("fchmod 0600 ", path));
    }
  }
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(
      path.c_str(), &db,
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_NOFOLLOW,
      nullptr);
  if (rc != SQLITE_OK) {
    std::string message = db != nullptr ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close_v2(db);
    return absl::Status(CodeForSqlite(rc),
                        absl::StrCat("open store ", path, ": ", message));
  }
  std::unique_ptr<Store> store(new Store(db, std::move(options)));
  std::lock_guard lock(store->mutex_);
  RETURN_IF_ERROR(Annotate(store->Configure(), path));
  RETURN_IF_ERROR(Annotate(store->Migrate(), path));
  return store;
}

absl::Status Store::Configure() {
  sqlite3_extended_result_codes(db_, 1);
  sqlite3_busy_timeout(
      db_, static_cast<int>(absl::ToInt64Milliseconds(options_.busy_timeout)));
  // WAL lets readers run beside the writer; FULL syncs the WAL on every
  // commit, which is what makes an acknowledged RPC survive power loss.
  ASSIGN_OR_RETURN(Statement wal, Prepare("PRAGMA journal_mode=WAL"));
  ASSIGN_OR_RETURN(bool row, wal.Step());
  if (!row || wal.ColumnBytes(0) != "wal") {
    return absl::FailedPreconditionError(
        "the store's file system cannot hold a WAL journal");
  }
  for (const char* pragma :
       {"PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON",
        "PRAGMA trusted_schema=OFF", "PRAGMA secure_delete=ON"}) {
    char* error = nullptr;
    const int rc = sqlite3_exec(db_, pragma, nullptr, nullptr, &error);
    std::string message = error != nullptr ? error : "";
    sqlite3_free(error);
    if (rc != SQLITE_OK) {
      return absl::Status(CodeForSqlite(rc),
                          absl::StrCat(pragma, ": ", message));
    }
  }
  return absl::OkStatus();
}

absl::Status Store::Migrate() {
  char* error = nullptr;
  int rc = sqlite3_exec(db_,
                        "CREATE TABLE IF NOT EXISTS schema_migrations ("
                        "version INTEGER PRIMARY KEY NOT NULL, "
                        "applied_at INTEGER NOT NULL) STRICT",
                        nullptr, nullptr, &error);
  if (rc != SQLITE_OK) {
    std::string message = error != nullptr ? error : "";
    sqlite3_free(error);
    return absl::Status(CodeForSqlite(rc),
                        absl::StrCat("create schema_migrations: ", message));
  }
  static constexpr char kCurrent[] =
      "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";
  int64_t current = 0;
  {
    ASSIGN_OR_RETURN(Statement stmt, Prepare(kCurrent));
    ASSIGN_OR_RETURN(bool row, stmt.Step());
    if (row) current = stmt.ColumnInt(0);
  }
  if (current > kSchemaVersion) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store schema version ", current, " is newer than this corrald knows (",
        kSchemaVersion,
        "); run a corrald at least as new as the one that wrote it"));
  }
  for (const Migration& migration : kMigrations) {
    if (migration.version <= current) continue;
    ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this));
    // Multi-statement DDL from a constant in this file: sqlite3_exec is the
    // one place where no parameter is bound.
    rc = sqlite3_exec(db_, migration.sql, nullptr, nullptr, &error);
    if (rc != SQLITE_OK) {
      std::string message = error != nullptr ? error : "";
      sqlite3_free(error);
      return absl::Status(
          CodeForSqlite(rc),
          absl::StrCat("migration ", migration.version, ": ", message));
    }
    static constexpr char kRecord[] =
        "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)";
    {
      ASSIGN_OR_RETURN(Statement stmt, Prepare(kRecord));
      RETURN_IF_ERROR(
          stmt.Int(1, migration.version).Time(2, absl::Now()).Run());
    }
    RETURN_IF_ERROR(transaction.Commit());
    Logger("store")->info("applied schema migration {}", migration.version);
  }
  return absl::OkStatus();
}

absl::StatusOr<Store::Statement> Store::Prepare(const char* sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT,
                                      &stmt, nullptr);
    if (rc != SQLITE_OK) return SqliteError(rc, sql);
    it = statements_.emplace(sql, stmt).first;
  }
  return Statement(it->second, this);
}

absl::Status Store::SqliteError(int rc, std::string_view context) const {
  return absl::Status(CodeForSqlite(rc),
                      absl::StrCat("sqlite: ", sqlite3_errmsg(db_), " (",
                                   sqlite3_errstr(rc), ") in ", Sv(context)));
}

absl::StatusOr<int> Store::SchemaVersion() {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] =
      "SELECT COALESCE(MAX(version), 0) FROM schema_migrations";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  ASSIGN_OR_RETURN(bool row, stmt.Step());
  return row ? static_cast<int>(stmt.ColumnInt(0)) : 0;
}

// --- Sandboxes ---

namespace {

constexpr char kSandboxColumns[] =
    "id, owner_uid, owner_gid, runtime, image, state, created_at, expires_at, "
    "host_uid, failure, spec, backend_handle";

}  // namespace

absl::Status Store::InsertSandboxLocked(const SandboxRecord& record,
                                        uint32_t host_uid) {
  static constexpr char kSql[] =
      "INSERT INTO sandboxes (id, owner_uid, owner_gid, runtime, image, state, "
      "created_at, expires_at, host_uid, failure, spec, backend_handle) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  stmt.Text(1, record.id)
      .Int(2, record.owner_uid)
      .Int(3, record.owner_gid)
      .Text(4, record.runtime)
      .Text(5, record.image)
      .Int(6, record.state)
      .Time(7, record.created_at)
      .Time(8, record.expires_at)
      .Text(10, record.failure)
      .Blob(11, record.spec)
      .Blob(12, record.backend_handle);
  if (host_uid == 0) {
    stmt.Null(9);
  } else {
    stmt.Int(9, host_uid);
  }
  absl::Status status = stmt.Run();
  if (absl::IsAlreadyExists(status)) {
    // The only unique columns are the id (the primary key) and host_uid.
    if (sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_PRIMARYKEY) {
      return absl::AlreadyExistsError(
          absl::StrCat("sandbox ", record.id, " already exists"));
    }
    return absl::AlreadyExistsError(
        absl::StrCat("host uid ", host_uid, " is taken by another sandbox"));
  }
  return status;
}

absl::Status Store::InsertSandbox(const SandboxRecord& record) {
  std::lock_guard lock(mutex_);
  return InsertSandboxLocked(record, record.host_uid);
}

absl::StatusOr<uint32_t> Store::LowestFreeHostUid(HostUidRange range) {
  const int64_t begin = range.base;
  const int64_t end = begin + range.count;
  if (range.base == 0 || end > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat("bad host uid range [", begin, ", ", end, ")"));
  }
  // Either the base is free, or the lowest free uid directly follows a taken
  // one: the smallest taken uid whose successor is free.
  static constexpr char kSql[] =
      "SELECT CASE WHEN NOT EXISTS "
      "(SELECT 1 FROM sandboxes WHERE host_uid = ?1) THEN ?1 "
      "ELSE (SELECT MIN(s.host_uid) + 1 FROM sandboxes AS s "
      "WHERE s.host_uid >= ?1 AND s.host_uid < ?2 AND NOT EXISTS "
      "(SELECT 1 FROM sandboxes AS t WHERE t.host_uid = s.host_uid + 1)) END";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  stmt.Int(1, begin).Int(2, end);
  ASSIGN_OR_RETURN(bool row, stmt.Step());
  if (!row || stmt.ColumnIsNull(0) || stmt.ColumnInt(0) >= end ||
      range.count == 0) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "every host uid of [", begin, ", ", end, ") is taken by a sandbox"));
  }
  return static_cast<uint32_t>(stmt.ColumnInt(0));
}

absl::StatusOr<uint32_t> Store::AllocateHostUid(uint32_t base, uint32_t count) {
  std::lock_guard lock(mutex_);
  return LowestFreeHostUid({base, count});
}

absl::StatusOr<uint32_t> Store::InsertSandboxWithHostUid(
    const SandboxRecord& record, HostUidRange range,
    const HostUidClaims* claims) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this));
  const uint64_t end = uint64_t{range.base} + range.count;
  HostUidRange left = range;
  uint32_t host_uid = 0;
  for (;;) {
    ASSIGN_OR_RETURN(host_uid, LowestFreeHostUid(left));
    if (claims == nullptr) break;
    ASSIGN_OR_RETURN(bool ours, claims->claim(host_uid));
    if (ours) break;
    // Held by another daemon: try the next uid this store has free.
    if (uint64_t{host_uid} + 1 >= end) {
      return absl::ResourceExhaustedError(
          absl::StrCat("every host uid of [", range.base, ", ", end,
                       ") is taken by a sandbox of this or another corrald"));
    }
    left = {host_uid + 1, static_cast<uint32_t>(end - host_uid - 1)};
  }
  absl::Status inserted = InsertSandboxLocked(record, host_uid);
  if (inserted.ok()) inserted = transaction.Commit();
  if (!inserted.ok()) {
    if (claims != nullptr) claims->release(host_uid);
    return inserted;
  }
  return host_uid;
}

absl::StatusOr<std::vector<SandboxRecord>> Store::QuerySandboxes(
    Statement& stmt) {
  return stmt.Collect([](Statement& row) {
    SandboxRecord r;
    r.id = row.ColumnBytes(0);
    r.owner_uid = static_cast<uint32_t>(row.ColumnInt(1));
    r.owner_gid = static_cast<uint32_t>(row.ColumnInt(2));
    r.runtime = row.ColumnBytes(3);
    r.image = row.ColumnBytes(4);
    r.state = static_cast<int>(row.ColumnInt(5));
    r.created_at = row.ColumnTime(6);
    r.expires_at = row.ColumnTime(7);
    r.host_uid =
        row.ColumnIsNull(8) ? 0 : static_cast<uint32_t>(row.ColumnInt(8));
    r.failure = row.ColumnBytes(9);
    r.spec = row.ColumnBytes(10);
    r.backend_handle = row.ColumnBytes(11);
    return r;
  });
}

absl::StatusOr<SandboxRecord> Store::GetSandbox(std::string_view id) {
  std::lock_guard lock(mutex_);
  static const std::string kSql =
      absl::StrCat("SELECT ", kSandboxColumns, " FROM sandboxes WHERE id = ?1");
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql.c_str()));
  stmt.Text(1, id);
  ASSIGN_OR_RETURN(std::vector<SandboxRecord> records, QuerySandboxes(stmt));
  if (records.empty()) {
    return absl::NotFoundError(absl::StrCat("no sandbox ", Sv(id)));
  }
  return std::move(records.front());
}

absl::StatusOr<std::vector<SandboxRecord>> Store::ListSandboxes() {
  std::lock_guard lock(mutex_);
  static const std::string kSql = absl::StrCat(
      "SELECT ", kSandboxColumns, " FROM sandboxes ORDER BY created_at, id");
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql.c_str()));
  return QuerySandboxes(stmt);
}

absl::StatusOr<std::vector<SandboxRecord>> Store::ListSandboxesByOwner(
    uint32_t owner_uid) {
  std::lock_guard lock(mutex_);
  static const std::string kSql =
      absl::StrCat("SELECT ", kSandboxColumns,
                   " FROM sandboxes WHERE owner_uid = ?1 ORDER BY created_at, "
                   "id");
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql.c_str()));
  stmt.Int(1, owner_uid);
  return QuerySandboxes(stmt);
}

absl::StatusOr<std::vector<SandboxRecord>> Store::ListExpired(absl::Time now) {
  std::lock_guard lock(mutex_);
  static const std::string kSql =
      absl::StrCat("SELECT ", kSandboxColumns,
                   " FROM sandboxes WHERE expires_at <= ?1 ORDER BY "
                   "expires_at, id");
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql.c_str()));
  stmt.Time(1, now);
  return QuerySandboxes(stmt);
}

namespace {

absl::Status NotFoundUnlessChanged(sqlite3* db, std::string_view id) {
  if (sqlite3_changes(db) > 0) return absl::OkStatus();
  return absl::NotFoundError(absl::StrCat("no sandbox ", Sv(id)));
}

}  // namespace

absl::Status Store::UpdateSandboxState(std::string_view id, int state,
                                       std::string_view failure) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] =
      "UPDATE sandboxes SET state = ?2, failure = ?3 WHERE id = ?1";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  RETURN_IF_ERROR(stmt.Text(1, id).Int(2, state).Text(3, failure).Run());
  return NotFoundUnlessChanged(db_, id);
}

absl::StatusOr<bool> Store::CompareAndSetSandboxState(std::string_view id,
                                                      int expected, int state) {
  std::lock_guard lock(mutex_);
  {
    static constexpr char kSql[] =
        "UPDATE sandboxes SET state = ?3 WHERE id = ?1 AND state = ?2";
    ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
    RETURN_IF_ERROR(stmt.Text(1, id).Int(2, expected).Int(3, state).Run());
    if (sqlite3_changes(db_) > 0) return true;
  }
  static constexpr char kExists[] = "SELECT 1 FROM sandboxes WHERE id = ?1";
  ASSIGN_OR_RETURN(Statement exists, Prepare(kExists));
  ASSIGN_OR_RETURN(bool row, exists.Text(1, id).Step());
  if (!row) return absl::NotFoundError(absl::StrCat("no sandbox ", Sv(id)));
  return false;
}

absl::Status Store::UpdateSandboxHandle(std::string_view id,
                                        std::string_view handle) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] =
      "UPDATE sandboxes SET backend_handle = ?2 WHERE id = ?1";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  RETURN_IF_ERROR(stmt.Text(1, id).Blob(2, handle).Run());
  return NotFoundUnlessChanged(db_, id);
}

absl::Status Store::UpdateSandboxSpec(std::string_view id,
                                      std::string_view spec) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] = "UPDATE sandboxes SET spec = ?2 WHERE id = ?1";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  RETURN_IF_ERROR(stmt.Text(1, id).Blob(2, spec).Run());
  return NotFoundUnlessChanged(db_, id);
}

absl::Status Store::SetExpiry(std::string_view id, absl::Time expires_at) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] =
      "UPDATE sandboxes SET expires_at = ?2 WHERE id = ?1";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  RETURN_IF_ERROR(stmt.Text(1, id).Time(2, expires_at).Run());
  return NotFoundUnlessChanged(db_, id);
}

absl::Status Store::DeleteSandbox(std::string_view id) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] = "DELETE FROM sandboxes WHERE id = ?1";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  RETURN_IF_ERROR(stmt.Text(1, id).Run());
  return NotFoundUnlessChanged(db_, id);
}

absl::StatusOr<int64_t> Store::CountSandboxes() {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] = "SELECT COUNT(*) FROM sandboxes";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  ASSIGN_OR_RETURN(bool row, stmt.Step());
  return row ? stmt.ColumnInt(0) : 0;
}

absl::StatusOr<int64_t> Store::CountSandboxesByOwner(uint32_t owner_uid) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] =
      "SELECT COUNT(*) FROM sandboxes WHERE owner_uid = ?1";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  ASSIGN_OR_RETURN(bool row, stmt.Int(1, owner_uid).Step());
  return row ? stmt.ColumnInt(0) : 0;
}

absl::StatusOr<int64_t> Store::CountSandboxesUsingImage(
    std::string_view image) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] =
      "SELECT COUNT(*) FROM sandboxes WHERE image = ?1";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  ASSIGN_OR_RETURN(bool row, stmt.Text(1, image).Step());
  return row ? stmt.ColumnInt(0) : 0;
}

absl::StatusOr<uint64_t> Store::SnapshotBytesByOwner(uint32_t owner_uid) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] =
      "SELECT COALESCE(SUM(s.size_bytes + s.memory_bytes), 0) "
      "FROM snapshots s JOIN sandboxes b ON b.id = s.sandbox_id "
      "WHERE b.owner_uid = ?1 AND s.name != ''";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  ASSIGN_OR_RETURN(bool row, stmt.Int(1, owner_uid).Step());
  return row ? static_cast<uint64_t>(stmt.ColumnInt(0)) : 0;
}

// --- Images ---

namespace {

// INSERT and INSERT OR REPLACE share the column list and bindings.
constexpr char kInsertImage[] =
    "INSERT INTO images (name, source, size_bytes, entries, archive_sha256, "
    "created_at, labels, directory) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
constexpr char kReplaceImage[] =
    "INSERT OR REPLACE INTO images (name, source, size_bytes, entries, "
    "archive_sha256, created_at, labels, directory) "
    "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

}  // namespace

absl::Status Store::InsertImage(const ImageRecord& record) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kInsertImage));
  absl::Status status = stmt.Text(1, record.name)
                            .Int(2, record.source)
                            .Int(3, static_cast<int64_t>(record.size_bytes))
                            .Int(4, static_cast<int64_t>(record.entries))
                            .Text(5, record.archive_sha256)
                            .Time(6, record.created_at)
                            .Blob(7, record.labels)
                            .Text(8, record.directory)
                            .Run();
  if (absl::IsAlreadyExists(status)) {
    return absl::AlreadyExistsError(
        absl::StrCat("image ", record.name, " already exists"));
  }
  return status;
}

absl::Status Store::ReplaceImage(const ImageRecord& record) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kReplaceImage));
  return stmt.Text(1, record.name)
      .Int(2, record.source)
      .Int(3, static_cast<int64_t>(record.size_bytes))
      .Int(4, static_cast<int64_t>(record.entries))
      .Text(5, record.archive_sha256)
      .Time(6, record.created_at)
      .Blob(7, record.labels)
      .Text(8, record.directory)
      .Run();
}

namespace {

constexpr char kSelectImages[] =
    "SELECT name, source, size_bytes, entries, archive_sha256, created_at, "
    "labels, directory FROM images";

}  // namespace

// One row of kSelectImages.
ImageRecord Store::ImageFromRow(Statement& stmt) {
  ImageRecord r;
  r.name = stmt.ColumnBytes(0);
  r.source = static_cast<int>(stmt.ColumnInt(1));
  r.size_bytes = static_cast<uint64_t>(stmt.ColumnInt(2));
  r.entries = static_cast<uint64_t>(stmt.ColumnInt(3));
  r.archive_sha256 = stmt.ColumnBytes(4);
  r.created_at = stmt.ColumnTime(5);
  r.labels = stmt.ColumnBytes(6);
  r.directory = stmt.ColumnBytes(7);
  return r;
}

absl::StatusOr<ImageRecord> Store::GetImage(std::string_view name) {
  std::lock_guard lock(mutex_);
  static const std::string kSql =
      absl::StrCat(kSelectImages, " WHERE name = ?1");
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql.c_str()));
  ASSIGN_OR_RETURN(bool row, stmt.Text(1, name).Step());
  if (!row) return absl::NotFoundError(absl::StrCat("no image ", Sv(name)));
  return ImageFromRow(stmt);
}

absl::StatusOr<std::vector<ImageRecord>> Store::ListImages() {
  std::lock_guard lock(mutex_);
  static const std::string kSql = absl::StrCat(kSelectImages, " ORDER BY name");
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql.c_str()));
  return stmt.Collect(ImageFromRow);
}

absl::Status Store::DeleteImage(std::string_view name) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] = "DELETE FROM images WHERE name = ?1";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  RETURN_IF_ERROR(stmt.Text(1, name).Run());
  if (sqlite3_changes(db_) == 0) {
    return absl::NotFoundError(absl::StrCat("no image ", Sv(name)));
  }
  return absl::OkStatus();
}

// --- Events ---

absl::StatusOr<int64_t> Store::AppendEvent(std::string_view sandbox_id,
                                           std::string_view type,
                                           std::string_view message) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] =
      "INSERT INTO events (time, sandbox_id, type, message) "
      "VALUES (?1, ?2, ?3, ?4)";
  int64_t sequence = 0;
  {
    ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
    RETURN_IF_ERROR(stmt.Time(1, absl::Now())
                        .Text(2, sandbox_id)
                        .Text(3, type)
                        .Text(4, message)
                        .Run());
    sequence = sqlite3_last_insert_rowid(db_);
  }
  if (options_.max_events > 0 && sequence > options_.max_events) {
    // Deleting by sequence keeps this an index range scan, whatever the size
    // of the log.
    static constexpr char kTrim[] = "DELETE FROM events WHERE sequence <= ?1";
    ASSIGN_OR_RETURN(Statement trim, Prepare(kTrim));
    RETURN_IF_ERROR(trim.Int(1, sequence - options_.max_events).Run());
  }
  return sequence;
}

absl::StatusOr<std::vector<EventRecord>> Store::ListEvents(
    int64_t after_sequence, int64_t limit, std::string_view sandbox_id) {
  std::lock_guard lock(mutex_);
  static constexpr char kAll[] =
      "SELECT sequence, time, sandbox_id, type, message FROM events "
      "WHERE sequence > ?1 ORDER BY sequence LIMIT ?2";
  static constexpr char kOne[] =
      "SELECT sequence, time, sandbox_id, type, message FROM events "
      "WHERE sequence > ?1 AND sandbox_id = ?3 ORDER BY sequence LIMIT ?2";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(sandbox_id.empty() ? kAll : kOne));
  // LIMIT -1 means no limit in SQLite.
  stmt.Int(1, after_sequence).Int(2, limit > 0 ? limit : -1);
  if (!sandbox_id.empty()) stmt.Text(3, sandbox_id);
  return stmt.Collect([](Statement& row) {
    EventRecord e;
    e.sequence = row.ColumnInt(0);
    e.time = row.ColumnTime(1);
    e.sandbox_id = row.ColumnBytes(2);
    e.type = row.ColumnBytes(3);
    e.message = row.ColumnBytes(4);
    return e;
  });
}

absl::StatusOr<int64_t> Store::TrimEventsLocked(int64_t keep) {
  static constexpr char kSql[] =
      "DELETE FROM events WHERE sequence <= "
      "(SELECT COALESCE(MAX(sequence), 0) FROM events) - ?1";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  RETURN_IF_ERROR(stmt.Int(1, keep < 0 ? 0 : keep).Run());
  return sqlite3_changes64(db_);
}

absl::StatusOr<int64_t> Store::TrimEvents(int64_t keep) {
  std::lock_guard lock(mutex_);
  return TrimEventsLocked(keep);
}

// --- Command log ---

absl::StatusOr<int64_t> Store::AppendCommand(const CommandRecord& record) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] =
      "INSERT INTO commands (sandbox_id, argv, exit_code, signal, started_at, "
      "duration_us, details) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  absl::Status status = stmt.Text(1, record.sandbox_id)
                            .Blob(2, record.argv)
                            .Int(3, record.exit_code)
                            .Int(4, record.signal)
                            .Time(5, record.started_at)
                            .Int(6, absl::ToInt64Microseconds(record.duration))
                            .Blob(7, record.details)
                            .Run();
  // The foreign key is the only constraint that can fail here.
  if (absl::IsAlreadyExists(status)) {
    return absl::NotFoundError(absl::StrCat("no sandbox ", record.sandbox_id));
  }
  RETURN_IF_ERROR(status);
  return sqlite3_last_insert_rowid(db_);
}

absl::StatusOr<std::vector<CommandRecord>> Store::ListCommands(
    std::string_view sandbox_id) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] =
      "SELECT sequence, sandbox_id, argv, exit_code, signal, started_at, "
      "duration_us, details FROM commands WHERE sandbox_id = ?1 "
      "ORDER BY sequence";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  stmt.Text(1, sandbox_id);
  return stmt.Collect([](Statement& row) {
    CommandRecord c;
    c.sequence = row.ColumnInt(0);
    c.sandbox_id = row.ColumnBytes(1);
    c.argv = row.ColumnBytes(2);
    c.exit_code = static_cast<int>(row.ColumnInt(3));
    c.signal = static_cast<int>(row.ColumnInt(4));
    c.started_at = row.ColumnTime(5);
    c.duration = absl::Microseconds(row.ColumnInt(6));
    c.details = row.ColumnBytes(7);
    return c;
  });
}

// --- Egress audit ---

absl::Status Store::AppendNetEvents(const std::vector<NetEventRecord>& events,
                                    int64_t keep) {
  std::lock_guard lock(mutex_);
  // One transaction, so one sync for the batch.
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this));
  static constexpr char kInsert[] =
      "INSERT INTO net_events (sandbox_id, event) VALUES (?1, ?2)";
  std::set<std::string> sandboxes;
  for (const NetEventRecord& record : events) {
    ASSIGN_OR_RETURN(Statement stmt, Prepare(kInsert));
    absl::Status status =
        stmt.Text(1, record.sandbox_id).Blob(2, record.event).Run();
    // The foreign key: the sandbox was deleted meanwhile.
    if (absl::IsAlreadyExists(status)) continue;
    RETURN_IF_ERROR(status);
    sandboxes.insert(record.sandbox_id);
  }
  static constexpr char kTrim[] =
      "DELETE FROM net_events WHERE sandbox_id = ?1 AND sequence < "
      "(SELECT sequence FROM net_events WHERE sandbox_id = ?1 "
      "ORDER BY sequence DESC LIMIT 1 OFFSET ?2)";
  for (const std::string& id : sandboxes) {
    ASSIGN_OR_RETURN(Statement trim, Prepare(kTrim));
    RETURN_IF_ERROR(trim.Text(1, id).Int(2, keep - 1).Run());
  }
  return transaction.Commit();
}

absl::StatusOr<std::vector<NetEventRecord>> Store::ListNetEvents(
    std::string_view sandbox_id, int64_t after_sequence, int64_t limit) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] =
      "SELECT sequence, event FROM net_events WHERE sandbox_id = ?1 AND "
      "sequence > ?2 ORDER BY sequence LIMIT ?3";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  stmt.Text(1, sandbox_id).Int(2, after_sequence).Int(3, limit);
  return stmt.Collect([&](Statement& row) {
    NetEventRecord record;
    record.sequence = row.ColumnInt(0);
    record.sandbox_id = std::string(sandbox_id);
    record.event = row.ColumnBytes(1);
    return record;
  });
}

// --- Secrets ---

absl::Status Store::PutSecrets(std::string_view sandbox_id,
                               const std::vector<SecretRecord>& secrets) {
  std::lock_guard lock(mutex_);
  ASSIGN_OR_RETURN(Transaction transaction, Transaction::Begin(this));
  static constexpr char kInsert[] =
      "INSERT INTO secrets (sandbox_id, name, placeholder, value, hosts) "
      "VALUES (?1, ?2, ?3, ?4, ?5)";
  for (const SecretRecord& secret : secrets) {
    ASSIGN_OR_RETURN(Statement stmt, Prepare(kInsert));
    absl::Status status = stmt.Text(1, sandbox_id)
                              .Text(2, secret.name)
                              .Text(3, secret.placeholder)
                              .Blob(4, secret.value)
                              .Text(5, secret.hosts)
                              .Run();
    if (absl::IsAlreadyExists(status)) {
      return absl::NotFoundError(
          absl::StrCat("no sandbox ", std::string(sandbox_id)));
    }
    RETURN_IF_ERROR(status);
  }
  return transaction.Commit();
}

absl::StatusOr<std::vector<SecretRecord>> Store::ListSecrets(
    std::string_view sandbox_id) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] =
      "SELECT name, placeholder, value, hosts FROM secrets WHERE "
      "sandbox_id = ?1 ORDER BY name";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  stmt.Text(1, sandbox_id);
  return stmt.Collect([](Statement& row) {
    SecretRecord record;
    record.name = row.ColumnBytes(0);
    record.placeholder = row.ColumnBytes(1);
    record.value = row.ColumnBytes(2);
    record.hosts = row.ColumnBytes(3);
    return record;
  });
}

absl::Status Store::PutSandboxCa(std::string_view sandbox_id,
                                 const std::string& certificate_pem,
                                 const std::string& key_pem) {
  std::lock_guard lock(mutex_);
  static constexpr char kInsert[] =
      "INSERT INTO sandbox_cas (sandbox_id, certificate, key) "
      "VALUES (?1, ?2, ?3)";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kInsert));
  absl::Status status =
      stmt.Text(1, sandbox_id).Text(2, certificate_pem).Blob(3, key_pem).Run();
  if (absl::IsAlreadyExists(status)) {
    return absl::AlreadyExistsError(absl::StrCat(
        "sandbox ", std::string(sandbox_id), " has a CA, or does not exist"));
  }
  return status;
}

absl::StatusOr<std::pair<std::string, std::string>> Store::GetSandboxCa(
    std::string_view sandbox_id) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] =
      "SELECT certificate, key FROM sandbox_cas WHERE sandbox_id = ?1";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  stmt.Text(1, sandbox_id);
  ASSIGN_OR_RETURN(auto rows, stmt.Collect([](Statement& row) {
    return std::make_pair(row.ColumnBytes(0), row.ColumnBytes(1));
  }));
  if (rows.empty()) {
    return absl::NotFoundError(
        absl::StrCat("sandbox ", std::string(sandbox_id), " has no CA"));
  }
  return rows.front();
}

// --- Snapshots ---

absl::Status Store::PutSnapshot(const SnapshotRecord& record, bool replace) {
  std::lock_guard lock(mutex_);
  static constexpr char kInsert[] =
      "INSERT INTO snapshots (sandbox_id, name, manifest, created_at, entries, "
      "size_bytes, new_bytes, memory, memory_bytes) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
  static constexpr char kReplace[] =
      "INSERT OR REPLACE INTO snapshots (sandbox_id, name, manifest, "
      "created_at, entries, size_bytes, new_bytes, memory, memory_bytes) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
  {
    static constexpr char kExists[] = "SELECT 1 FROM sandboxes WHERE id = ?1";
    ASSIGN_OR_RETURN(Statement check, Prepare(kExists));
    ASSIGN_OR_RETURN(bool row, check.Text(1, record.sandbox_id).Step());
    if (!row) {
      return absl::NotFoundError(
          absl::StrCat("no sandbox ", record.sandbox_id));
    }
  }
  ASSIGN_OR_RETURN(Statement stmt, Prepare(replace ? kReplace : kInsert));
  absl::Status status = stmt.Text(1, record.sandbox_id)
                            .Text(2, record.name)
                            .Text(3, record.manifest)
                            .Time(4, record.created_at)
                            .Int(5, static_cast<int64_t>(record.entries))
                            .Int(6, static_cast<int64_t>(record.size_bytes))
                            .Int(7, static_cast<int64_t>(record.new_bytes))
                            .Blob(8, record.memory)
                            .Int(9, static_cast<int64_t>(record.memory_bytes))
                            .Run();
  if (absl::IsAlreadyExists(status)) {
    return absl::AlreadyExistsError(absl::StrCat("sandbox ", record.sandbox_id,
                                                 " already has a snapshot ",
                                                 record.name));
  }
  return status;
}

namespace {
constexpr char kSnapshotColumns[] =
    "SELECT sandbox_id, name, manifest, created_at, entries, size_bytes, "
    "new_bytes, memory, memory_bytes FROM snapshots ";
}  // namespace

absl::StatusOr<std::vector<SnapshotRecord>> Store::QuerySnapshots(
    Statement& stmt) {
  return stmt.Collect([](Statement& row) {
    SnapshotRecord r;
    r.sandbox_id = row.ColumnBytes(0);
    r.name = row.ColumnBytes(1);
    r.manifest = row.ColumnBytes(2);
    r.created_at = row.ColumnTime(3);
    r.entries = static_cast<uint64_t>(row.ColumnInt(4));
    r.size_bytes = static_cast<uint64_t>(row.ColumnInt(5));
    r.new_bytes = static_cast<uint64_t>(row.ColumnInt(6));
    r.memory = row.ColumnBytes(7);
    r.memory_bytes = static_cast<uint64_t>(row.ColumnInt(8));
    return r;
  });
}

absl::StatusOr<SnapshotRecord> Store::GetSnapshot(std::string_view sandbox_id,
                                                  std::string_view name) {
  std::lock_guard lock(mutex_);
  static const std::string kSql =
      absl::StrCat(kSnapshotColumns, "WHERE sandbox_id = ?1 AND name = ?2");
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql.c_str()));
  stmt.Text(1, sandbox_id).Text(2, name);
  ASSIGN_OR_RETURN(auto rows, QuerySnapshots(stmt));
  if (rows.empty()) {
    return absl::NotFoundError(
        name.empty()
            ? absl::StrCat("sandbox ", Sv(sandbox_id), " has no baseline")
            : absl::StrCat("sandbox ", Sv(sandbox_id), " has no snapshot ",
                           Sv(name)));
  }
  return std::move(rows.front());
}

absl::StatusOr<std::vector<SnapshotRecord>> Store::ListSnapshots(
    std::string_view sandbox_id) {
  std::lock_guard lock(mutex_);
  static const std::string kSql = absl::StrCat(
      kSnapshotColumns, "WHERE sandbox_id = ?1 ORDER BY created_at, name");
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql.c_str()));
  stmt.Text(1, sandbox_id);
  return QuerySnapshots(stmt);
}

absl::Status Store::DeleteSnapshot(std::string_view sandbox_id,
                                   std::string_view name) {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] =
      "DELETE FROM snapshots WHERE sandbox_id = ?1 AND name = ?2";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  RETURN_IF_ERROR(stmt.Text(1, sandbox_id).Text(2, name).Run());
  if (sqlite3_changes(db_) == 0) {
    return absl::NotFoundError(absl::StrCat("sandbox ", Sv(sandbox_id),
                                            " has no snapshot ", Sv(name)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> Store::ListSnapshotManifests() {
  std::lock_guard lock(mutex_);
  static constexpr char kSql[] = "SELECT DISTINCT manifest FROM snapshots";
  ASSIGN_OR_RETURN(Statement stmt, Prepare(kSql));
  return stmt.Collect([](Statement& row) { return row.ColumnBytes(0); });
}

}  // namespace corral::daemon
