// Tests of the SQLite store: migrations, durability, sandboxes, uid
// allocation, images, events and the command log.
#include "daemon/store/store.h"

#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "tests/test_util.h"

namespace corral::daemon {
namespace {

namespace fs = std::filesystem;

using corral::testing::TempDir;

std::string Id(int n) { return absl::StrFormat("%032x", n); }

SandboxRecord MakeSandbox(int n, uint32_t owner = 1000) {
  SandboxRecord r;
  r.id = Id(n);
  r.owner_uid = owner;
  r.owner_gid = owner;
  r.runtime = "linux";
  r.image = "host";
  r.state = 2;
  r.created_at = absl::FromUnixSeconds(1700000000 + n);
  r.expires_at = absl::FromUnixSeconds(1700003600 + n);
  r.spec = std::string("spec\0bytes", 10);
  r.backend_handle = "handle";
  return r;
}

std::unique_ptr<Store> OpenOrDie(const fs::path& path,
                                 StoreOptions options = {}) {
  auto store = Store::Open(path.string(), options);
  INFO(store.status().ToString());
  REQUIRE(store.ok());
  return std::move(store).value();
}

int64_t MigrationRows(const fs::path& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT COUNT(*) FROM schema_migrations", -1,
                             &stmt, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(stmt) == SQLITE_ROW);
  const int64_t rows = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return rows;
}

TEST_CASE("store: migrations apply once and are idempotent across reopen",
          "[store]") {
  TempDir dir;
  const fs::path db = dir.path() / "state.db";
  {
    auto store = OpenOrDie(db);
    auto version = store->SchemaVersion();
    REQUIRE(version.ok());
    CHECK(*version == Store::kSchemaVersion);
  }
  CHECK(MigrationRows(db) == Store::kSchemaVersion);
  {
    auto store = OpenOrDie(db);
    CHECK(*store->SchemaVersion() == Store::kSchemaVersion);
  }
  CHECK(MigrationRows(db) == Store::kSchemaVersion);
  // The database holds callers' environments: owner-only.
  CHECK((fs::status(db).permissions() & fs::perms::others_read) ==
        fs::perms::none);
  CHECK((fs::status(db).permissions() & fs::perms::group_read) ==
        fs::perms::none);
}

TEST_CASE("store: WAL journal and full sync are on", "[store]") {
  TempDir dir;
  const fs::path db = dir.path() / "state.db";
  auto store = OpenOrDie(db);
  REQUIRE(store->InsertSandbox(MakeSandbox(1)).ok());
  CHECK(fs::exists(dir.path() / "state.db-wal"));
}

TEST_CASE("store: a newer schema is refused", "[store]") {
  TempDir dir;
  const fs::path db = dir.path() / "state.db";
  { OpenOrDie(db); }
  {
    sqlite3* raw = nullptr;
    REQUIRE(sqlite3_open(db.c_str(), &raw) == SQLITE_OK);
    REQUIRE(sqlite3_exec(raw, "INSERT INTO schema_migrations VALUES (999, 0)",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(raw);
  }
  auto store = Store::Open(db.string());
  REQUIRE_FALSE(store.ok());
  CHECK(store.status().code() == absl::StatusCode::kFailedPrecondition);
  CHECK_THAT(std::string(store.status().message()),
             Catch::Contains("999") && Catch::Contains("newer"));
}

TEST_CASE("store: records survive reopen unchanged", "[store]") {
  TempDir dir;
  const fs::path db = dir.path() / "state.db";
  SandboxRecord original = MakeSandbox(7);
  original.host_uid = 1500000007;
  original.failure = "boom";
  {
    auto store = OpenOrDie(db);
    REQUIRE(store->InsertSandbox(original).ok());
    REQUIRE(store->UpdateSandboxHandle(original.id, "new-handle").ok());
    REQUIRE(store->AppendEvent(original.id, "created", "hello").ok());
  }
  auto store = OpenOrDie(db);
  auto got = store->GetSandbox(original.id);
  REQUIRE(got.ok());
  CHECK(got->id == original.id);
  CHECK(got->owner_uid == 1000);
  CHECK(got->owner_gid == 1000);
  CHECK(got->runtime == "linux");
  CHECK(got->image == "host");
  CHECK(got->state == 2);
  CHECK(got->created_at == original.created_at);
  CHECK(got->expires_at == original.expires_at);
  CHECK(got->host_uid == 1500000007);
  CHECK(got->failure == "boom");
  CHECK(got->spec == original.spec);
  CHECK(got->spec.size() == 10);
  CHECK(got->backend_handle == "new-handle");
  auto events = store->ListEvents(0, 0);
  REQUIRE(events.ok());
  REQUIRE(events->size() == 1);
  CHECK((*events)[0].type == "created");
}

TEST_CASE("store: a write acknowledged before kill -9 survives", "[store]") {
  TempDir dir;
  const fs::path db = dir.path() / "state.db";
  { OpenOrDie(db); }
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // The child opens its own connection (none is inherited), writes, and
    // dies without closing anything.
    auto store = Store::Open(db.string());
    if (!store.ok()) ::_exit(1);
    if (!(*store)->InsertSandbox(MakeSandbox(42)).ok()) ::_exit(2);
    ::kill(::getpid(), SIGKILL);
    ::_exit(3);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  REQUIRE(WIFSIGNALED(status));
  auto store = OpenOrDie(db);
  CHECK(store->GetSandbox(Id(42)).ok());
}

TEST_CASE("store: sandbox operations", "[store]") {
  TempDir dir;
  auto store = OpenOrDie(dir.path() / "state.db");

  REQUIRE(store->InsertSandbox(MakeSandbox(1, 1000)).ok());
  REQUIRE(store->InsertSandbox(MakeSandbox(2, 1001)).ok());
  REQUIRE(store->InsertSandbox(MakeSandbox(3, 1000)).ok());

  SECTION("duplicate id") {
    absl::Status status = store->InsertSandbox(MakeSandbox(1));
    CHECK(status.code() == absl::StatusCode::kAlreadyExists);
    CHECK_THAT(std::string(status.message()), Catch::Contains(Id(1)));
  }
  SECTION("missing id") {
    CHECK(store->GetSandbox(Id(99)).status().code() ==
          absl::StatusCode::kNotFound);
    CHECK(store->UpdateSandboxState(Id(99), 6, "x").code() ==
          absl::StatusCode::kNotFound);
    CHECK(store->UpdateSandboxHandle(Id(99), "x").code() ==
          absl::StatusCode::kNotFound);
    CHECK(store->UpdateSandboxSpec(Id(99), "x").code() ==
          absl::StatusCode::kNotFound);
    CHECK(store->SetExpiry(Id(99), absl::Now()).code() ==
          absl::StatusCode::kNotFound);
    CHECK(store->DeleteSandbox(Id(99)).code() == absl::StatusCode::kNotFound);
  }
  SECTION("lists and counts") {
    auto all = store->ListSandboxes();
    REQUIRE(all.ok());
    REQUIRE(all->size() == 3);
    CHECK((*all)[0].id == Id(1));
    CHECK((*all)[2].id == Id(3));
    auto mine = store->ListSandboxesByOwner(1000);
    REQUIRE(mine.ok());
    REQUIRE(mine->size() == 2);
    CHECK((*mine)[1].id == Id(3));
    CHECK(*store->CountSandboxes() == 3);
    CHECK(*store->CountSandboxesByOwner(1001) == 1);
    CHECK(*store->CountSandboxesUsingImage("host") == 3);
    CHECK(*store->CountSandboxesUsingImage("other") == 0);
  }
  SECTION("updates") {
    REQUIRE(store->UpdateSandboxState(Id(2), 6, "agent went away").ok());
    REQUIRE(store->UpdateSandboxSpec(Id(2), "spec2").ok());
    auto got = store->GetSandbox(Id(2));
    REQUIRE(got.ok());
    CHECK(got->state == 6);
    CHECK(got->failure == "agent went away");
    CHECK(got->spec == "spec2");

    auto swapped = store->CompareAndSetSandboxState(Id(2), 2, 5);
    REQUIRE(swapped.ok());
    CHECK_FALSE(*swapped);
    swapped = store->CompareAndSetSandboxState(Id(2), 6, 5);
    REQUIRE(swapped.ok());
    CHECK(*swapped);
    CHECK(store->GetSandbox(Id(2))->state == 5);
    CHECK(store->CompareAndSetSandboxState(Id(99), 0, 1).status().code() ==
          absl::StatusCode::kNotFound);
  }
  SECTION("expired listing") {
    const absl::Time now = absl::FromUnixSeconds(1700003602);
    REQUIRE(store->SetExpiry(Id(3), absl::InfiniteFuture()).ok());
    auto expired = store->ListExpired(now);
    REQUIRE(expired.ok());
    // Sandbox 1 expires at ...3601, 2 at ...3602 (inclusive), 3 never.
    REQUIRE(expired->size() == 2);
    CHECK((*expired)[0].id == Id(1));
    CHECK((*expired)[1].id == Id(2));
    CHECK(store->GetSandbox(Id(3))->expires_at == absl::InfiniteFuture());
    CHECK(store->ListExpired(absl::FromUnixSeconds(0))->empty());
  }
  SECTION("delete also drops the command log") {
    CommandRecord command;
    command.sandbox_id = Id(1);
    command.argv = "echo\0hi";
    command.exit_code = 0;
    command.signal = 9;
    command.started_at = absl::FromUnixSeconds(1700000100);
    command.duration = absl::Milliseconds(1500);
    REQUIRE(store->AppendCommand(command).ok());
    auto commands = store->ListCommands(Id(1));
    REQUIRE(commands.ok());
    REQUIRE(commands->size() == 1);
    CHECK((*commands)[0].signal == 9);
    CHECK((*commands)[0].duration == absl::Milliseconds(1500));
    CHECK((*commands)[0].started_at == command.started_at);

    REQUIRE(store->DeleteSandbox(Id(1)).ok());
    CHECK(store->GetSandbox(Id(1)).status().code() ==
          absl::StatusCode::kNotFound);
    CHECK(store->ListCommands(Id(1))->empty());
    command.sandbox_id = Id(1);
    CHECK(store->AppendCommand(command).status().code() ==
          absl::StatusCode::kNotFound);
  }
}

TEST_CASE("store: host uid allocation", "[store]") {
  TempDir dir;
  auto store = OpenOrDie(dir.path() / "state.db");
  const HostUidRange range{1500000000, 3};

  auto first = store->InsertSandboxWithHostUid(MakeSandbox(1), range);
  auto second = store->InsertSandboxWithHostUid(MakeSandbox(2), range);
  auto third = store->InsertSandboxWithHostUid(MakeSandbox(3), range);
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  REQUIRE(third.ok());
  CHECK(*first == 1500000000);
  CHECK(*second == 1500000001);
  CHECK(*third == 1500000002);
  CHECK(store->GetSandbox(Id(2))->host_uid == 1500000001);

  SECTION("exhaustion") {
    auto fourth = store->InsertSandboxWithHostUid(MakeSandbox(4), range);
    CHECK(fourth.status().code() == absl::StatusCode::kResourceExhausted);
    // Nothing was inserted.
    CHECK(store->GetSandbox(Id(4)).status().code() ==
          absl::StatusCode::kNotFound);
    CHECK(store->AllocateHostUid(range.base, range.count).status().code() ==
          absl::StatusCode::kResourceExhausted);
  }
  SECTION("lowest free uid is reused after delete") {
    REQUIRE(store->DeleteSandbox(Id(2)).ok());
    CHECK(*store->AllocateHostUid(range.base, range.count) == 1500000001);
    auto reused = store->InsertSandboxWithHostUid(MakeSandbox(4), range);
    REQUIRE(reused.ok());
    CHECK(*reused == 1500000001);
    REQUIRE(store->DeleteSandbox(Id(1)).ok());
    REQUIRE(store->DeleteSandbox(Id(3)).ok());
    CHECK(*store->AllocateHostUid(range.base, range.count) == 1500000000);
  }
  SECTION("uids outside the range do not count") {
    SandboxRecord outside = MakeSandbox(5);
    outside.host_uid = 1400000000;
    REQUIRE(store->InsertSandbox(outside).ok());
    CHECK(*store->AllocateHostUid(1400000001, 5) == 1400000001);
    CHECK(*store->AllocateHostUid(1400000000, 5) == 1400000001);
  }
  SECTION("a duplicate host uid is refused") {
    SandboxRecord clash = MakeSandbox(6);
    clash.host_uid = 1500000000;
    CHECK(store->InsertSandbox(clash).code() ==
          absl::StatusCode::kAlreadyExists);
  }
  SECTION("sandboxes without a host uid do not collide") {
    REQUIRE(store->InsertSandbox(MakeSandbox(7)).ok());
    REQUIRE(store->InsertSandbox(MakeSandbox(8)).ok());
    CHECK(store->GetSandbox(Id(8))->host_uid == 0);
  }
}

TEST_CASE("store: concurrent writers from threads", "[store]") {
  TempDir dir;
  auto store = OpenOrDie(dir.path() / "state.db");
  constexpr int kThreads = 8;
  constexpr int kPerThread = 25;
  const HostUidRange range{1500000000, kThreads * kPerThread};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  std::vector<std::vector<uint32_t>> uids(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const int n = t * kPerThread + i;
        auto uid = store->InsertSandboxWithHostUid(MakeSandbox(n), range);
        if (!uid.ok()) {
          ++failures;
          continue;
        }
        uids[t].push_back(*uid);
        if (!store->AppendEvent(Id(n), "created", "").ok()) ++failures;
        if (!store->UpdateSandboxState(Id(n), 2, "").ok()) ++failures;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK(failures == 0);
  std::set<uint32_t> distinct;
  for (const auto& list : uids) distinct.insert(list.begin(), list.end());
  CHECK(distinct.size() == kThreads * kPerThread);
  CHECK(*distinct.begin() == range.base);
  CHECK(*distinct.rbegin() == range.base + range.count - 1);
  CHECK(*store->CountSandboxes() == kThreads * kPerThread);
  CHECK(store->ListEvents(0, 0)->size() == kThreads * kPerThread);
}

TEST_CASE("store: two connections to one database", "[store]") {
  TempDir dir;
  const fs::path db = dir.path() / "state.db";
  auto a = OpenOrDie(db);
  auto b = OpenOrDie(db);
  const HostUidRange range{1500000000, 10};
  REQUIRE(a->InsertSandboxWithHostUid(MakeSandbox(1), range).ok());
  auto uid = b->InsertSandboxWithHostUid(MakeSandbox(2), range);
  REQUIRE(uid.ok());
  CHECK(*uid == 1500000001);
  CHECK(a->GetSandbox(Id(2)).ok());
}

TEST_CASE("store: events", "[store]") {
  TempDir dir;
  StoreOptions options;
  options.max_events = 5;
  auto store = OpenOrDie(dir.path() / "state.db", options);
  for (int i = 1; i <= 8; ++i) {
    auto sequence = store->AppendEvent(i % 2 == 0 ? Id(1) : Id(2), "type",
                                       absl::StrCat("event ", i));
    REQUIRE(sequence.ok());
    CHECK(*sequence == i);
  }
  auto all = store->ListEvents(0, 0);
  REQUIRE(all.ok());
  // Only the newest five are kept.
  REQUIRE(all->size() == 5);
  CHECK(all->front().sequence == 4);
  CHECK(all->back().message == "event 8");

  auto page = store->ListEvents(5, 2);
  REQUIRE(page.ok());
  REQUIRE(page->size() == 2);
  CHECK((*page)[0].sequence == 6);
  CHECK((*page)[1].sequence == 7);

  auto filtered = store->ListEvents(0, 0, Id(1));
  REQUIRE(filtered.ok());
  REQUIRE(filtered->size() == 3);  // 4, 6, 8
  for (const auto& event : *filtered) CHECK(event.sandbox_id == Id(1));

  auto removed = store->TrimEvents(2);
  REQUIRE(removed.ok());
  CHECK(*removed == 3);
  all = store->ListEvents(0, 0);
  REQUIRE(all->size() == 2);
  CHECK(all->front().sequence == 7);
  // Sequences are never reused after trimming.
  CHECK(*store->AppendEvent("", "daemon", "x") == 9);
}

TEST_CASE("store: images", "[store]") {
  TempDir dir;
  auto store = OpenOrDie(dir.path() / "state.db");
  ImageRecord image;
  image.name = "alpine";
  image.source = 2;
  image.size_bytes = uint64_t{5} << 40;
  image.entries = 1234;
  image.archive_sha256 = std::string(64, 'a');
  image.created_at = absl::FromUnixMillis(1700000000123);
  image.labels = std::string("\x0a\x01k", 3);
  image.directory = "/var/lib/corral/images/alpine";
  REQUIRE(store->InsertImage(image).ok());
  CHECK(store->InsertImage(image).code() == absl::StatusCode::kAlreadyExists);

  auto got = store->GetImage("alpine");
  REQUIRE(got.ok());
  CHECK(got->size_bytes == image.size_bytes);
  CHECK(got->entries == 1234);
  CHECK(got->labels == image.labels);
  CHECK(got->created_at == image.created_at);
  CHECK(got->directory == image.directory);

  image.entries = 99;
  REQUIRE(store->ReplaceImage(image).ok());
  CHECK(store->GetImage("alpine")->entries == 99);

  image.name = "busybox";
  REQUIRE(store->InsertImage(image).ok());
  auto list = store->ListImages();
  REQUIRE(list.ok());
  REQUIRE(list->size() == 2);
  CHECK((*list)[0].name == "alpine");

  REQUIRE(store->DeleteImage("alpine").ok());
  CHECK(store->DeleteImage("alpine").code() == absl::StatusCode::kNotFound);
  CHECK(store->GetImage("alpine").status().code() ==
        absl::StatusCode::kNotFound);
}

TEST_CASE("store: opening a directory or a non-database fails cleanly",
          "[store]") {
  TempDir dir;
  CHECK_FALSE(Store::Open(dir.path().string()).ok());
  const fs::path junk = dir.path() / "junk.db";
  {
    FILE* f = std::fopen(junk.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs("this is not a database, not at all, no sir.........", f);
    std::fclose(f);
  }
  auto store = Store::Open(junk.string());
  REQUIRE_FALSE(store.ok());
  CHECK(store.status().code() == absl::StatusCode::kDataLoss);
}

}  // namespace
}  // namespace corral::daemon
