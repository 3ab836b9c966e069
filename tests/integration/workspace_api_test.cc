// Workspaces through the API: seed, exec, diff, export, files, sync,
// snapshots, reset, fork and the command log, against the real corrald, its
// real agent and real linux sandboxes.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>

#include "tests/integration/daemon_harness.h"
#include "tests/integration/workspace_util.h"

namespace corral::testing {
namespace {

namespace v1 = corral::v1;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

const v1::FileChange* FindChange(const v1::DiffWorkspaceResponse& diff,
                                 const std::string& path) {
  for (const auto& change : diff.changes()) {
    if (change.path() == path) return &change;
  }
  return nullptr;
}

size_t CountSandboxes(Api& api) {
  grpc::ClientContext context;
  v1::ListSandboxesResponse response;
  api.sandboxes->ListSandboxes(&context, {}, &response);
  return static_cast<size_t>(response.sandboxes_size());
}

size_t CountFiles(const std::string& dir) {
  std::error_code error;
  size_t n = 0;
  for (auto it = std::filesystem::recursive_directory_iterator(dir, error);
       !error && it != std::filesystem::recursive_directory_iterator();
       it.increment(error)) {
    ++n;
  }
  return n;
}

// Waits up to 5 s for a directory tree to hold no files (directories may
// stay).
bool EventuallyEmpty(const std::string& dir) {
  for (int i = 0; i < 100; ++i) {
    size_t files = 0;
    std::error_code error;
    for (auto it = std::filesystem::recursive_directory_iterator(dir, error);
         !error && it != std::filesystem::recursive_directory_iterator();
         it.increment(error)) {
      if (!it->is_directory()) ++files;
    }
    if (files == 0) return true;
    usleep(50000);
  }
  return false;
}

std::vector<TarEntry> ProjectSeed() {
  return {
      {"README.md", TarEntry::kFile, "line1\nline2\nline3\n"},
      {"src/", TarEntry::kDir, "", 0755},
      {"src/main.c", TarEntry::kFile, "int main() { return 0; }\n"},
      {"data.bin", TarEntry::kFile, std::string("\0\1\2binary", 9)},
      {"link", TarEntry::kSymlink, "", 0777, "README.md"},
      {"docs/", TarEntry::kDir, "", 0755},
      {"old.txt", TarEntry::kFile, "remove me\n"},
      {"mode.sh", TarEntry::kFile, "#!/bin/sh\n"},
      {"kind", TarEntry::kFile, "a file that becomes a directory\n"},
  };
}

TEST_CASE(
    "a seeded workspace changed by commands shows exactly those changes in "
    "its diff and exports exactly its files") {
  Daemon daemon;
  Api api(daemon.Channel());
  v1::Sandbox sandbox;
  auto status = api.CreateSeeded(Tar(ProjectSeed()), &sandbox, 100);
  INFO(status.error_message() << daemon.log());
  REQUIRE(status.ok());
  const std::string id = sandbox.id();
  CHECK(sandbox.state() == v1::SANDBOX_STATE_RUNNING);
  CHECK(api.Sh(id, "cat /workspace/README.md /workspace/src/main.c") ==
        "line1\nline2\nline3\nint main() { return 0; }\n");

  // Nothing changed yet.
  v1::DiffWorkspaceResponse clean;
  REQUIRE(api.Diff(id, &clean).ok());
  CHECK(clean.changes_size() == 0);
  CHECK(clean.patch().empty());

  int exit_code = -1;
  api.Sh(id,
         "cd /workspace && sed -i s/line2/LINE2/ README.md && rm old.txt && "
         "echo new > new.txt && chmod 755 mode.sh && printf '\\003' >> "
         "data.bin && ln -sfn src/main.c link && rm kind && mkdir kind",
         &exit_code);
  REQUIRE(exit_code == 0);

  v1::DiffWorkspaceResponse diff;
  REQUIRE(api.Diff(id, &diff).ok());
  INFO(diff.DebugString());
  CHECK(diff.counts().added() == 1);
  CHECK(diff.counts().deleted() == 1);
  CHECK(diff.counts().modified() == 4);
  CHECK(diff.counts().type_changed() == 1);
  CHECK(diff.changes_size() == 7);
  auto* readme = FindChange(diff, "README.md");
  REQUIRE(readme != nullptr);
  CHECK(readme->kind() == v1::CHANGE_KIND_MODIFIED);
  CHECK(readme->content_changed());
  CHECK_FALSE(readme->binary());
  auto* added = FindChange(diff, "new.txt");
  REQUIRE(added != nullptr);
  CHECK(added->kind() == v1::CHANGE_KIND_ADDED);
  auto* deleted = FindChange(diff, "old.txt");
  REQUIRE(deleted != nullptr);
  CHECK(deleted->kind() == v1::CHANGE_KIND_DELETED);
  auto* mode = FindChange(diff, "mode.sh");
  REQUIRE(mode != nullptr);
  CHECK(mode->kind() == v1::CHANGE_KIND_MODIFIED);
  CHECK_FALSE(mode->content_changed());
  CHECK(mode->old_mode() == 0644);
  CHECK(mode->new_mode() == 0755);
  auto* binary = FindChange(diff, "data.bin");
  REQUIRE(binary != nullptr);
  CHECK(binary->binary());
  auto* link = FindChange(diff, "link");
  REQUIRE(link != nullptr);
  CHECK(link->type() == v1::FILE_TYPE_SYMLINK);
  CHECK(link->kind() == v1::CHANGE_KIND_MODIFIED);
  auto* kind = FindChange(diff, "kind");
  REQUIRE(kind != nullptr);
  CHECK(kind->kind() == v1::CHANGE_KIND_TYPE_CHANGED);
  CHECK(kind->old_type() == v1::FILE_TYPE_REGULAR);
  CHECK(kind->type() == v1::FILE_TYPE_DIRECTORY);
  CHECK(FindChange(diff, "src/main.c") == nullptr);
  CHECK(FindChange(diff, "docs") == nullptr);

  const std::string& patch = diff.patch();
  CHECK(Contains(patch, "diff --git a/README.md b/README.md\n"));
  CHECK(Contains(patch, "-line2\n+LINE2\n"));
  CHECK(Contains(patch, "new file mode 100644\n"));
  CHECK(Contains(patch, "+new\n"));
  CHECK(Contains(patch, "deleted file mode 100644\n"));
  CHECK(Contains(patch, "-remove me\n"));
  CHECK(Contains(patch, "old mode 100644\nnew mode 100755\n"));
  CHECK(Contains(patch, "Binary files a/data.bin and b/data.bin differ"));
  CHECK(Contains(patch, "+src/main.c"));

  // Export of the whole workspace and of one file.
  std::string tar;
  REQUIRE(api.Export(id, "/workspace", &tar).ok());
  auto entries = Untar(tar);
  CHECK(entries.count("workspace/README.md") == 1);
  CHECK(entries["workspace/README.md"].content == "line1\nLINE2\nline3\n");
  CHECK(entries["workspace/new.txt"].content == "new\n");
  CHECK(entries["workspace/link"].link == "src/main.c");
  CHECK(entries["workspace/mode.sh"].mode == 0755);
  CHECK(entries.count("workspace/old.txt") == 0);
  CHECK(entries["workspace/kind"].type == AE_IFDIR);
  std::string one;
  REQUIRE(api.Export(id, "new.txt", &one).ok());
  auto single = Untar(one);
  REQUIRE(single.size() == 1);
  CHECK(single.begin()->first == "new.txt");
  std::string missing;
  auto not_found = api.Export(id, "/workspace/nope", &missing);
  CHECK(not_found.error_code() == grpc::StatusCode::NOT_FOUND);

  REQUIRE(api.Delete(id).ok());
  CHECK(CountSandboxes(api) == 0);
}

TEST_CASE(
    "hostile seeds are refused with the offending entry named and leave "
    "nothing behind") {
  Daemon daemon;
  Api api(daemon.Channel());
  struct Case {
    const char* name;
    std::vector<TarEntry> entries;
    std::string expect;  // in the error message
  };
  const std::string long_path = std::string(4097 - 2, 'a') + "/b";
  const std::vector<Case> cases = {
      {"traversal",
       {{"ok.txt"}, {"../escape.txt", TarEntry::kFile, "x"}},
       "escape.txt"},
      {"absolute path",
       {{"/tmp/corral-abs-escape", TarEntry::kFile, "x"}},
       "corral-abs-escape"},
      {"write through a symlink",
       {{"a", TarEntry::kSymlink, "", 0777, "/tmp"},
        {"a/corral-through-link", TarEntry::kFile, "x"}},
       "a/corral-through-link"},
      {"symlink loop",
       {{"a", TarEntry::kSymlink, "", 0777, "b"},
        {"b", TarEntry::kSymlink, "", 0777, "a"},
        {"a/loop.txt", TarEntry::kFile, "x"}},
       "a/loop.txt"},
      {"hard link out of the tree",
       {{"h", TarEntry::kHardlink, "", 0644, "../../../etc/passwd"}},
       "'h'"},
      {"device node", {{"null", TarEntry::kCharDevice}}, "'null'"},
      {"fifo", {{"pipe", TarEntry::kFifo}}, "'pipe'"},
      {"4097-byte path", {{long_path, TarEntry::kFile, "x"}}, "aaaa"},
      {"256-byte name",
       {{std::string(256, 'n'), TarEntry::kFile, "x"}},
       "nnnn"},
      {"not a tar archive", {}, "tar"},
  };
  for (const auto& c : cases) {
    DYNAMIC_SECTION(c.name) {
      std::string archive = c.entries.empty()
                                ? std::string("PK\3\4 this is no tar at all")
                                : Tar(c.entries);
      v1::Sandbox sandbox;
      auto status = api.CreateSeeded(archive, &sandbox);
      INFO(status.error_message());
      CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
      CHECK(Contains(status.error_message(), c.expect));
      CHECK(CountSandboxes(api) == 0);
      CHECK(CountFiles(daemon.state_dir() + "/workspaces") == 0);
      // Content the refused seed stored before the bad entry is collected.
      CHECK(EventuallyEmpty(daemon.state_dir() + "/content/objects"));
      CHECK_FALSE(std::filesystem::exists("/tmp/corral-abs-escape"));
      CHECK_FALSE(std::filesystem::exists("/tmp/corral-through-link"));
    }
  }
}

TEST_CASE("a seed's setuid bits are dropped and in-tree hard links kept") {
  Daemon daemon;
  Api api(daemon.Channel());
  v1::Sandbox sandbox;
  auto status = api.CreateSeeded(
      Tar({{"suid", TarEntry::kFile, "#!/bin/sh\n", 04755},
           {"original", TarEntry::kFile, "same\n"},
           {"alias", TarEntry::kHardlink, "", 0644, "original"}}),
      &sandbox);
  INFO(status.error_message() << daemon.log());
  REQUIRE(status.ok());
  CHECK(api.Sh(sandbox.id(), "stat -c %a /workspace/suid") == "755\n");
  CHECK(api.Sh(sandbox.id(), "cat /workspace/alias") == "same\n");
  v1::DiffWorkspaceResponse diff;
  REQUIRE(api.Diff(sandbox.id(), &diff).ok());
  CHECK(diff.changes_size() == 0);
}

TEST_CASE("the Files API reads, writes, lists, moves and removes") {
  Daemon daemon;
  Api api(daemon.Channel());
  v1::Sandbox sandbox;
  REQUIRE(
      api.CreateSeeded(Tar({{"a.txt", TarEntry::kFile, "alpha\n"}}), &sandbox)
          .ok());
  const std::string id = sandbox.id();

  // Write 3 MiB in several messages, creating parents.
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 7);
  {
    grpc::ClientContext context;
    v1::FileInfo info;
    auto writer = api.files->WriteFile(&context, &info);
    v1::WriteFileRequest request;
    request.mutable_header()->set_sandbox_id(id);
    request.mutable_header()->set_path("deep/er/big.bin");
    request.mutable_header()->set_mode(0600);
    request.mutable_header()->set_create_parents(true);
    REQUIRE(writer->Write(request));
    for (size_t offset = 0; offset < big.size(); offset += 1 << 20) {
      request.set_data(big.substr(offset, 1 << 20));
      REQUIRE(writer->Write(request));
    }
    writer->WritesDone();
    auto status = writer->Finish();
    INFO(status.error_message());
    REQUIRE(status.ok());
    CHECK(info.path() == "/workspace/deep/er/big.bin");
    CHECK(info.size() == big.size());
    CHECK(info.mode() == 0600);
  }
  {
    grpc::ClientContext context;
    v1::ReadFileRequest request;
    request.set_sandbox_id(id);
    request.set_path("/workspace/deep/er/big.bin");
    request.set_offset(1000);
    request.set_length(200000);
    auto reader = api.files->ReadFile(&context, request);
    std::string data;
    v1::FileChunk chunk;
    uint64_t expected_offset = 1000;
    while (reader->Read(&chunk)) {
      CHECK(chunk.offset() == expected_offset);
      expected_offset += chunk.data().size();
      data += chunk.data();
    }
    REQUIRE(reader->Finish().ok());
    CHECK(data == big.substr(1000, 200000));
  }
  {
    grpc::ClientContext context;
    v1::ListDirectoryRequest request;
    request.set_sandbox_id(id);
    request.set_path("/workspace");
    request.set_recursive(true);
    v1::ListDirectoryResponse response;
    REQUIRE(api.files->ListDirectory(&context, request, &response).ok());
    std::vector<std::string> paths;
    for (const auto& e : response.entries()) paths.push_back(e.path());
    CHECK(paths == std::vector<std::string>{"a.txt", "deep", "deep/er",
                                            "deep/er/big.bin"});
  }
  {
    grpc::ClientContext context;
    v1::MoveFileRequest request;
    request.set_sandbox_id(id);
    request.set_from("a.txt");
    request.set_to("deep/b.txt");
    v1::FileInfo info;
    REQUIRE(api.files->MoveFile(&context, request, &info).ok());
    CHECK(api.Sh(id, "cat /workspace/deep/b.txt") == "alpha\n");
  }
  {
    grpc::ClientContext context;
    v1::StatFileRequest request;
    request.set_sandbox_id(id);
    request.set_path("a.txt");
    v1::FileInfo info;
    CHECK(api.files->StatFile(&context, request, &info).error_code() ==
          grpc::StatusCode::NOT_FOUND);
  }
  {
    grpc::ClientContext context;
    v1::RemoveFileRequest request;
    request.set_sandbox_id(id);
    request.set_path("deep");
    v1::RemoveFileResponse response;
    auto refused = api.files->RemoveFile(&context, request, &response);
    CHECK(refused.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
    grpc::ClientContext again;
    request.set_recursive(true);
    REQUIRE(api.files->RemoveFile(&again, request, &response).ok());
    CHECK(response.removed() == 4);
    CHECK(api.Sh(id, "ls -A /workspace") == "");
  }
  {
    grpc::ClientContext context;
    v1::MakeDirectoryRequest request;
    request.set_sandbox_id(id);
    request.set_path("x/y");
    v1::FileInfo info;
    CHECK_FALSE(api.files->MakeDirectory(&context, request, &info).ok());
    grpc::ClientContext again;
    request.set_parents(true);
    REQUIRE(api.files->MakeDirectory(&again, request, &info).ok());
    CHECK(info.type() == v1::FILE_TYPE_DIRECTORY);
  }
}

TEST_CASE(
    "sync pushes an archive into a live sandbox, with --delete semantics, "
    "and a hostile one changes nothing") {
  Daemon daemon;
  Api api(daemon.Channel());
  v1::Sandbox sandbox;
  REQUIRE(
      api.CreateSeeded(Tar({{"keep.txt", TarEntry::kFile, "keep\n"}}), &sandbox)
          .ok());
  const std::string id = sandbox.id();
  v1::SyncWorkspaceResponse response;
  REQUIRE(api.Sync(id,
                   Tar({{"a.txt", TarEntry::kFile, "a\n"},
                        {"sub/b.txt", TarEntry::kFile, "bb\n"}}),
                   "", false, &response)
              .ok());
  CHECK(response.entries() >= 2);
  CHECK(response.bytes() == 5);
  CHECK(api.Sh(id, "cd /workspace && find . | sort") ==
        ".\n./a.txt\n./keep.txt\n./sub\n./sub/b.txt\n");
  REQUIRE(api.Sync(id, Tar({{"only.txt", TarEntry::kFile, "o\n"}}), "sub", true)
              .ok());
  CHECK(api.Sh(id, "cd /workspace && find . | sort") ==
        ".\n./a.txt\n./keep.txt\n./sub\n./sub/only.txt\n");
  auto hostile =
      api.Sync(id, Tar({{"fine.txt", TarEntry::kFile, "f\n"},
                        {"../../etc/corral-evil", TarEntry::kFile, "x"}}));
  CHECK(hostile.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(Contains(hostile.error_message(), "corral-evil"));
  CHECK(api.Sh(id, "test -e /etc/corral-evil || echo absent") == "absent\n");
}

TEST_CASE(
    "snapshots store content once, reset restores it, and fork starts a new "
    "sandbox from it") {
  Daemon daemon;
  Api api(daemon.Channel());
  v1::Sandbox sandbox;
  std::string large(1 << 20, 'L');
  REQUIRE(api.CreateSeeded(Tar({{"large.bin", TarEntry::kFile, large},
                                {"note.txt", TarEntry::kFile, "v0\n"}}),
                           &sandbox)
              .ok());
  const std::string id = sandbox.id();
  auto snapshot = [&](const std::string& name, v1::Snapshot* out) {
    grpc::ClientContext context;
    v1::CreateSnapshotRequest request;
    request.set_sandbox_id(id);
    request.set_name(name);
    return api.snapshots->CreateSnapshot(&context, request, out);
  };
  api.Sh(id, "echo v1 > /workspace/note.txt");
  v1::Snapshot one;
  REQUIRE(snapshot("one", &one).ok());
  CHECK(one.entries() == 2);
  CHECK(one.size_bytes() == large.size() + 3);
  // The 1 MiB file is the baseline's: only the note is new.
  CHECK(one.new_bytes() < 4096);
  v1::Snapshot duplicate;
  CHECK(snapshot("one", &duplicate).error_code() ==
        grpc::StatusCode::ALREADY_EXISTS);
  CHECK(snapshot("../bad", &duplicate).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);

  api.Sh(id,
         "echo v2 > /workspace/note.txt; rm /workspace/large.bin; "
         "echo extra > /workspace/extra.txt");
  v1::Snapshot two;
  REQUIRE(snapshot("two", &two).ok());
  {
    grpc::ClientContext context;
    v1::ListSnapshotsRequest request;
    request.set_sandbox_id(id);
    v1::ListSnapshotsResponse response;
    REQUIRE(api.snapshots->ListSnapshots(&context, request, &response).ok());
    REQUIRE(response.snapshots_size() == 2);
    CHECK(response.snapshots(0).name() == "one");
    CHECK(response.snapshots(1).name() == "two");
  }
  // Diff against a snapshot.
  v1::DiffWorkspaceResponse since_one;
  REQUIRE(api.Diff(id, &since_one, "one").ok());
  CHECK(since_one.counts().added() == 1);
  CHECK(since_one.counts().deleted() == 1);
  CHECK(since_one.counts().modified() == 1);

  auto restore = [&](const std::string& name) {
    grpc::ClientContext context;
    v1::RestoreSnapshotRequest request;
    request.set_sandbox_id(id);
    request.set_name(name);
    v1::Sandbox out;
    return api.snapshots->RestoreSnapshot(&context, request, &out);
  };
  REQUIRE(restore("one").ok());
  CHECK(api.Sh(id, "cat /workspace/note.txt; ls /workspace") ==
        "v1\nlarge.bin\nnote.txt\n");
  CHECK(api.Sh(id, "stat -c %s /workspace/large.bin") ==
        std::to_string(large.size()) + "\n");
  REQUIRE(restore("").ok());
  v1::DiffWorkspaceResponse after_reset;
  REQUIRE(api.Diff(id, &after_reset).ok());
  CHECK(after_reset.changes_size() == 0);
  CHECK(api.Sh(id, "cat /workspace/note.txt") == "v0\n");
  CHECK(restore("nope").error_code() == grpc::StatusCode::NOT_FOUND);

  // Fork from snapshot "two": the new sandbox has two's content as its
  // baseline.
  v1::Sandbox forked;
  {
    grpc::ClientContext context;
    v1::ForkSnapshotRequest request;
    request.set_sandbox_id(id);
    request.set_name("two");
    request.mutable_sandbox()->set_ttl_seconds(600);
    auto status = api.snapshots->ForkSnapshot(&context, request, &forked);
    INFO(status.error_message());
    REQUIRE(status.ok());
  }
  CHECK(forked.id() != id);
  CHECK(api.Sh(forked.id(), "cat /workspace/note.txt; ls /workspace") ==
        "v2\nextra.txt\nnote.txt\n");
  v1::DiffWorkspaceResponse fork_diff;
  REQUIRE(api.Diff(forked.id(), &fork_diff).ok());
  CHECK(fork_diff.changes_size() == 0);
  // Fork of the current workspace (no snapshot).
  api.Sh(id, "echo live > /workspace/live.txt");
  v1::Sandbox live_fork;
  {
    grpc::ClientContext context;
    v1::ForkSnapshotRequest request;
    request.set_sandbox_id(id);
    REQUIRE(api.snapshots->ForkSnapshot(&context, request, &live_fork).ok());
  }
  CHECK(api.Sh(live_fork.id(), "cat /workspace/live.txt") == "live\n");

  {
    grpc::ClientContext context;
    v1::DeleteSnapshotRequest request;
    request.set_sandbox_id(id);
    request.set_name("one");
    v1::DeleteSnapshotResponse response;
    REQUIRE(api.snapshots->DeleteSnapshot(&context, request, &response).ok());
    grpc::ClientContext again;
    CHECK(api.snapshots->DeleteSnapshot(&again, request, &response)
              .error_code() == grpc::StatusCode::NOT_FOUND);
  }
  REQUIRE(api.Delete(forked.id()).ok());
  REQUIRE(api.Delete(live_fork.id()).ok());
  REQUIRE(api.Delete(id).ok());
}

TEST_CASE("the command log records every exec with its cwd, exit and output") {
  Daemon daemon;
  Api api(daemon.Channel());
  v1::Sandbox sandbox;
  REQUIRE(api.CreateSeeded(Tar({{"f", TarEntry::kFile, "x"}}), &sandbox).ok());
  const std::string id = sandbox.id();
  api.Sh(id, "echo hello; echo oops >&2; exit 3");
  api.Sh(id, "head -c 100000 /dev/zero | tr '\\0' z");
  {
    grpc::ClientContext context;
    v1::ExecRequest request;
    request.mutable_start()->set_sandbox_id(id);
    request.mutable_start()->add_argv("pwd");
    request.mutable_start()->set_cwd("/tmp");
    v1::ExecResponse response;
    REQUIRE(api.exec->Exec(&context, request, &response).ok());
  }
  grpc::ClientContext context;
  v1::GetCommandLogRequest request;
  request.set_sandbox_id(id);
  v1::GetCommandLogResponse log;
  REQUIRE(api.files->GetCommandLog(&context, request, &log).ok());
  REQUIRE(log.commands_size() == 3);
  const auto& first = log.commands(0);
  CHECK(first.exit_code() == 3);
  CHECK(first.stdout() == "hello\n");
  CHECK(first.stderr() == "oops\n");
  CHECK_FALSE(first.stdout_truncated());
  const auto& second = log.commands(1);
  CHECK(second.stdout_bytes() == 100000);
  CHECK(second.stdout().size() == 64 * 1024);
  CHECK(second.stdout_truncated());
  CHECK(log.commands(2).cwd() == "/tmp");
  CHECK(log.commands(2).argv(0) == "pwd");
  CHECK(first.sequence() < second.sequence());
  grpc::ClientContext after;
  request.set_after_sequence(second.sequence());
  v1::GetCommandLogResponse tail;
  REQUIRE(api.files->GetCommandLog(&after, request, &tail).ok());
  CHECK(tail.commands_size() == 1);
}

}  // namespace
}  // namespace corral::testing

namespace corral::testing {
namespace {

TEST_CASE(
    "seed bombs by size and by entry count stop at the configured limits") {
  Daemon daemon("[workspace]\nmax_upload_bytes = 1048576\nmax_entries = 100\n");
  Api api(daemon.Channel());
  v1::Sandbox sandbox;
  auto big = api.CreateSeeded(
      Tar({{"big.bin", TarEntry::kFile, std::string(2 << 20, 'b')}}), &sandbox);
  CHECK(big.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(big.error_message().find("big.bin") != std::string::npos);
  std::vector<TarEntry> many;
  for (int i = 0; i < 150; ++i) many.push_back({"f" + std::to_string(i)});
  auto count = api.CreateSeeded(Tar(many), &sandbox);
  CHECK(count.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(count.error_message().find("100") != std::string::npos);
  CHECK(CountSandboxes(api) == 0);
}

}  // namespace
}  // namespace corral::testing

namespace corral::testing {
namespace {

TEST_CASE(
    "baselines and snapshots survive kill -9 of the daemon and still diff "
    "and reset") {
  Daemon daemon;
  v1::Sandbox sandbox;
  {
    Api api(daemon.Channel());
    REQUIRE(api.CreateSeeded(Tar({{"a.txt", TarEntry::kFile, "before\n"}}),
                             &sandbox)
                .ok());
    api.Sh(sandbox.id(), "echo during > /workspace/a.txt");
    grpc::ClientContext context;
    v1::CreateSnapshotRequest request;
    request.set_sandbox_id(sandbox.id());
    request.set_name("kept");
    v1::Snapshot snapshot;
    REQUIRE(api.snapshots->CreateSnapshot(&context, request, &snapshot).ok());
    api.Sh(sandbox.id(), "echo after > /workspace/a.txt");
  }
  daemon.Kill9();
  daemon.Start();
  Api api(daemon.Channel());
  v1::DiffWorkspaceResponse diff;
  auto status = api.Diff(sandbox.id(), &diff);
  INFO(status.error_message() << daemon.log());
  REQUIRE(status.ok());
  CHECK(diff.patch().find("-before\n+after\n") != std::string::npos);
  grpc::ClientContext context;
  v1::RestoreSnapshotRequest restore;
  restore.set_sandbox_id(sandbox.id());
  restore.set_name("kept");
  v1::Sandbox restored;
  REQUIRE(api.snapshots->RestoreSnapshot(&context, restore, &restored).ok());
  CHECK(api.Sh(sandbox.id(), "cat /workspace/a.txt") == "during\n");
  REQUIRE(api.Delete(sandbox.id()).ok());
  CHECK(EventuallyEmpty(daemon.state_dir() + "/content/objects"));
}

}  // namespace
}  // namespace corral::testing
