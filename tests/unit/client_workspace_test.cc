// Tests of the workspace commands of the CLI (seed, sync, cp, export, diff,
// logs, snapshots, reset, fork, file) against an in-process fake corrald on a
// Unix socket: what the fake received (headers, archive contents, file
// bytes) and what the CLI printed and exited with. Archives the fake sends
// are packed from real directories with the CLI's own packer, or written
// byte by byte (ustar) for hostile ones; no libarchive header here, it
// clashes with corral.v1's enums.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "client/commands.h"
#include "client/options.h"
#include "client/tar_extract.h"
#include "client/tar_packer.h"
#include "client/workspace_format.h"
#include "corral/unique_fd.h"
#include "corral/v1/exec.grpc.pb.h"
#include "corral/v1/files.grpc.pb.h"
#include "corral/v1/sandboxes.grpc.pb.h"
#include "corral/v1/snapshots.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/test_util.h"
#include "tests/unit/client_fake_daemon.h"

namespace corral::cli {
namespace {

namespace fs = std::filesystem;
using corral::testing::TempDir;

constexpr char kId[] = "0123456789abcdef0123456789abcdef";
constexpr char kNewId[] = "fedcba9876543210fedcba9876543210";

// --- archives ---------------------------------------------------------------

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const fs::path& path, const std::string& content) {
  fs::create_directories(path.parent_path());
  std::ofstream out(path, std::ios::binary);
  out << content;
}

// A pax tar of the tree under `directory`, packed by the CLI's packer.
std::string PackTree(const fs::path& directory) {
  std::string tar;
  auto packed =
      PackDirectory(directory.string(), [&tar](absl::string_view chunk) {
        tar.append(chunk.data(), chunk.size());
        return absl::OkStatus();
      });
  REQUIRE(packed.ok());
  return tar;
}

// One ustar entry written by hand, for archives no well-behaved writer makes.
std::string UstarEntry(const std::string& name, char type,
                       const std::string& data = "",
                       const std::string& link = "") {
  std::string header(512, '\0');
  auto put = [&header](size_t offset, const std::string& value) {
    header.replace(offset, value.size(), value);
  };
  auto octal = [](uint64_t value, int width) {
    char buffer[32];
    std::snprintf(buffer, sizeof(buffer), "%0*llo", width - 1,
                  static_cast<unsigned long long>(value));
    return std::string(buffer);
  };
  put(0, name.substr(0, 99));
  put(100, octal(0644, 8));
  put(108, octal(0, 8));
  put(116, octal(0, 8));
  put(124, octal(data.size(), 12));
  put(136, octal(1700000000, 12));
  header[156] = type;
  put(157, link.substr(0, 99));
  put(257, std::string("ustar\0"
                       "00",
                       8));
  put(148, "        ");
  unsigned sum = 0;
  for (const char c : header) sum += static_cast<unsigned char>(c);
  put(148, octal(sum, 7));
  std::string padded = data;
  padded.resize((data.size() + 511) / 512 * 512, '\0');
  return header + padded;
}
std::string UstarEnd() { return std::string(1024, '\0'); }

// Extracts `tar` into a fresh directory with the CLI's extractor and returns
// {relative path -> content, "->target" for symlinks, "/" for directories}.
std::map<std::string, std::string> Unpack(const std::string& tar) {
  TempDir dir("corral-unpack");
  UniqueFd fd(::open(dir.path().c_str(), O_RDONLY | O_DIRECTORY));
  bool served = false;
  auto result = ExtractTarAt(
      [&](std::string& chunk) -> absl::StatusOr<bool> {
        if (served) return false;
        served = true;
        chunk = tar;
        return true;
      },
      fd.get(), {});
  REQUIRE(result.ok());
  std::map<std::string, std::string> tree;
  for (auto it = fs::recursive_directory_iterator(dir.path());
       it != fs::recursive_directory_iterator(); ++it) {
    // Not fs::relative: it resolves symlinks.
    const std::string name =
        it->path().string().substr(dir.path().string().size() + 1);
    if (it->is_symlink()) {
      tree[name] = "->" + fs::read_symlink(it->path()).string();
    } else if (it->is_directory()) {
      tree[name] = "/";
    } else {
      tree[name] = ReadFile(it->path());
    }
  }
  return tree;
}

// --- the fake daemon
// ----------------------------------------------------------

class FakeSandboxes final : public corral::v1::Sandboxes::Service {
 public:
  std::mutex mutex;
  ReceivedUpload<corral::v1::CreateSeededSandboxRequest> seeded;
  std::vector<std::string> deleted;

  grpc::Status CreateSeededSandbox(
      grpc::ServerContext*,
      grpc::ServerReader<corral::v1::CreateSeededSandboxRequest>* reader,
      corral::v1::Sandbox* sandbox) override {
    std::lock_guard<std::mutex> lock(mutex);
    const grpc::Status status =
        ReadUpload(reader, &corral::v1::CreateSeededSandboxRequest::has_sandbox,
                   "sandbox", seeded);
    if (!status.ok()) return status;
    if (seeded.data.find("hostile") != std::string::npos) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "archive entry '../hostile': path contains '..'"};
    }
    sandbox->set_id(kNewId);
    return grpc::Status::OK;
  }

  grpc::Status DeleteSandbox(grpc::ServerContext*,
                             const corral::v1::DeleteSandboxRequest* request,
                             corral::v1::DeleteSandboxResponse*) override {
    std::lock_guard<std::mutex> lock(mutex);
    deleted.push_back(request->id());
    return grpc::Status::OK;
  }
};

class FakeExec final : public corral::v1::Exec::Service {
 public:
  std::string sandbox_id;

  grpc::Status ExecStream(
      grpc::ServerContext*,
      grpc::ServerReaderWriter<corral::v1::ExecStreamResponse,
                               corral::v1::ExecStreamRequest>* stream)
      override {
    corral::v1::ExecStreamRequest request;
    if (!stream->Read(&request)) return grpc::Status::CANCELLED;
    sandbox_id = request.start().sandbox_id();
    if (request.start().argv(0) == "fail") {
      return {grpc::StatusCode::FAILED_PRECONDITION, "agent is gone"};
    }
    corral::v1::ExecStreamResponse response;
    response.mutable_output()->set_data("seeded\n");
    response.mutable_output()->set_stream(corral::v1::OUTPUT_STREAM_STDOUT);
    stream->Write(response);
    response.mutable_exit()->set_exit_code(7);
    stream->Write(response);
    return grpc::Status::OK;
  }
};

class FakeFiles final : public corral::v1::Files::Service {
 public:
  // ExportPath: path -> archive to send.
  std::map<std::string, std::string> exports;
  ReceivedUpload<corral::v1::SyncWorkspaceRequest> sync;
  ReceivedUpload<corral::v1::WriteFileRequest> write;
  std::string read_content;
  corral::v1::DiffWorkspaceRequest diff_request;
  corral::v1::ListDirectoryRequest list_request;
  corral::v1::MakeDirectoryRequest mkdir_request;
  corral::v1::RemoveFileRequest remove_request;
  corral::v1::MoveFileRequest move_request;
  corral::v1::ReadFileRequest read_request;

  grpc::Status SyncWorkspace(
      grpc::ServerContext*,
      grpc::ServerReader<corral::v1::SyncWorkspaceRequest>* reader,
      corral::v1::SyncWorkspaceResponse* response) override {
    const grpc::Status status = ReadUpload(
        reader, &corral::v1::SyncWorkspaceRequest::has_header, "header", sync);
    if (!status.ok()) return status;
    response->set_entries(3);
    response->set_bytes(12345);
    return grpc::Status::OK;
  }

  grpc::Status WriteFile(
      grpc::ServerContext*,
      grpc::ServerReader<corral::v1::WriteFileRequest>* reader,
      corral::v1::FileInfo* info) override {
    const grpc::Status status = ReadUpload(
        reader, &corral::v1::WriteFileRequest::has_header, "header", write);
    if (!status.ok()) return status;
    info->set_path(write.first.header().path());
    info->set_type(corral::v1::FILE_TYPE_REGULAR);
    info->set_size(write.data.size());
    info->set_mode(write.first.header().mode());
    return grpc::Status::OK;
  }

  grpc::Status ExportPath(
      grpc::ServerContext*, const corral::v1::ExportPathRequest* request,
      grpc::ServerWriter<corral::v1::ArchiveChunk>* writer) override {
    auto it = exports.find(request->path());
    if (request->sandbox_id() != kId || it == exports.end()) {
      return {grpc::StatusCode::NOT_FOUND, "no such path: " + request->path()};
    }
    // Odd-sized chunks: the reader must not depend on block alignment.
    corral::v1::ArchiveChunk chunk;
    for (size_t offset = 0; offset < it->second.size(); offset += 1000) {
      chunk.set_data(it->second.substr(offset, 1000));
      writer->Write(chunk);
    }
    return grpc::Status::OK;
  }

  grpc::Status ReadFile(
      grpc::ServerContext*, const corral::v1::ReadFileRequest* request,
      grpc::ServerWriter<corral::v1::FileChunk>* writer) override {
    read_request = *request;
    corral::v1::FileChunk chunk;
    for (size_t offset = 0; offset < read_content.size(); offset += 65536) {
      chunk.set_data(read_content.substr(offset, 65536));
      chunk.set_offset(offset);
      writer->Write(chunk);
    }
    return grpc::Status::OK;
  }

  grpc::Status StatFile(grpc::ServerContext*,
                        const corral::v1::StatFileRequest* request,
                        corral::v1::FileInfo* info) override {
    if (request->path() == "/missing") {
      return {grpc::StatusCode::NOT_FOUND, "/missing: no such file"};
    }
    info->set_path(request->path());
    info->set_type(corral::v1::FILE_TYPE_SYMLINK);
    info->set_mode(0777);
    info->set_size(5);
    info->set_link_target("evil\x1b[2Jtarget");
    return grpc::Status::OK;
  }

  grpc::Status ListDirectory(
      grpc::ServerContext*, const corral::v1::ListDirectoryRequest* request,
      corral::v1::ListDirectoryResponse* response) override {
    list_request = *request;
    auto* dir = response->add_entries();
    dir->set_path("src");
    dir->set_type(corral::v1::FILE_TYPE_DIRECTORY);
    dir->set_mode(0755);
    auto* file = response->add_entries();
    file->set_path("src/main.c");
    file->set_type(corral::v1::FILE_TYPE_REGULAR);
    file->set_mode(0644);
    file->set_size(2048);
    return grpc::Status::OK;
  }

  grpc::Status MakeDirectory(grpc::ServerContext*,
                             const corral::v1::MakeDirectoryRequest* request,
                             corral::v1::FileInfo* info) override {
    mkdir_request = *request;
    info->set_path(request->path());
    info->set_type(corral::v1::FILE_TYPE_DIRECTORY);
    return grpc::Status::OK;
  }

  grpc::Status RemoveFile(grpc::ServerContext*,
                          const corral::v1::RemoveFileRequest* request,
                          corral::v1::RemoveFileResponse* response) override {
    remove_request = *request;
    response->set_removed(4);
    return grpc::Status::OK;
  }

  grpc::Status MoveFile(grpc::ServerContext*,
                        const corral::v1::MoveFileRequest* request,
                        corral::v1::FileInfo* info) override {
    move_request = *request;
    info->set_path(request->to());
    info->set_type(corral::v1::FILE_TYPE_REGULAR);
    return grpc::Status::OK;
  }

  grpc::Status DiffWorkspace(
      grpc::ServerContext*, const corral::v1::DiffWorkspaceRequest* request,
      corral::v1::DiffWorkspaceResponse* response) override {
    diff_request = *request;
    auto* added = response->add_changes();
    added->set_path("new.txt");
    added->set_kind(corral::v1::CHANGE_KIND_ADDED);
    added->set_type(corral::v1::FILE_TYPE_REGULAR);
    added->set_new_mode(0644);
    added->set_content_changed(true);
    added->set_new_size(6);
    auto* chmod = response->add_changes();
    chmod->set_path("run.sh");
    chmod->set_kind(corral::v1::CHANGE_KIND_MODIFIED);
    chmod->set_type(corral::v1::FILE_TYPE_REGULAR);
    chmod->set_old_type(corral::v1::FILE_TYPE_REGULAR);
    chmod->set_old_mode(0644);
    chmod->set_new_mode(0755);
    auto* gone = response->add_changes();
    gone->set_path("old.bin");
    gone->set_kind(corral::v1::CHANGE_KIND_DELETED);
    gone->set_type(corral::v1::FILE_TYPE_REGULAR);
    gone->set_binary(true);
    auto* typed = response->add_changes();
    typed->set_path("lib");
    typed->set_kind(corral::v1::CHANGE_KIND_TYPE_CHANGED);
    typed->set_type(corral::v1::FILE_TYPE_SYMLINK);
    typed->set_old_type(corral::v1::FILE_TYPE_DIRECTORY);
    response->mutable_counts()->set_added(1);
    response->mutable_counts()->set_modified(1);
    response->mutable_counts()->set_deleted(1);
    response->mutable_counts()->set_type_changed(1);
    if (!request->no_patch()) {
      response->set_patch(
          "diff --git a/new.txt b/new.txt\nnew file mode 100644\n"
          "--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1 @@\n+hello\n");
    }
    return grpc::Status::OK;
  }

  grpc::Status GetCommandLog(
      grpc::ServerContext*, const corral::v1::GetCommandLogRequest* request,
      corral::v1::GetCommandLogResponse* response) override {
    auto* make = response->add_commands();
    make->set_sequence(request->after_sequence() + 1);
    make->add_argv("make");
    make->add_argv("-j2");
    make->set_exit_code(0);
    make->set_duration_us(1500000);
    make->set_stdout("built\n");
    make->set_stdout_bytes(6);
    auto* killed = response->add_commands();
    killed->set_sequence(request->after_sequence() + 2);
    killed->add_argv("sh");
    killed->add_argv("-c");
    killed->add_argv("yes | head");
    killed->set_signal(9);
    killed->set_duration_us(2000);
    killed->set_stdout(std::string(10, 'y'));
    killed->set_stdout_bytes(1000000);
    killed->set_stdout_truncated(true);
    auto* slow = response->add_commands();
    slow->set_sequence(request->after_sequence() + 3);
    slow->add_argv("sleep");
    slow->add_argv("99");
    slow->set_signal(9);
    slow->set_timed_out(true);
    slow->set_duration_us(5000000);
    return grpc::Status::OK;
  }
};

class FakeSnapshots final : public corral::v1::Snapshots::Service {
 public:
  corral::v1::CreateSnapshotRequest create_request;
  corral::v1::RestoreSnapshotRequest restore_request;
  corral::v1::ForkSnapshotRequest fork_request;
  corral::v1::DeleteSnapshotRequest delete_request;

  grpc::Status CreateSnapshot(grpc::ServerContext*,
                              const corral::v1::CreateSnapshotRequest* request,
                              corral::v1::Snapshot* snapshot) override {
    create_request = *request;
    snapshot->set_sandbox_id(request->sandbox_id());
    snapshot->set_name(request->name().empty() ? "snap-20260101-000000"
                                               : request->name());
    return grpc::Status::OK;
  }
  grpc::Status ListSnapshots(
      grpc::ServerContext*, const corral::v1::ListSnapshotsRequest*,
      corral::v1::ListSnapshotsResponse* response) override {
    auto* snapshot = response->add_snapshots();
    snapshot->set_name("before-refactor");
    snapshot->set_entries(120);
    snapshot->set_size_bytes(3 * 1024 * 1024);
    snapshot->set_new_bytes(2048);
    return grpc::Status::OK;
  }
  grpc::Status RestoreSnapshot(
      grpc::ServerContext*, const corral::v1::RestoreSnapshotRequest* request,
      corral::v1::Sandbox* sandbox) override {
    restore_request = *request;
    if (request->name() == "nope") {
      return {grpc::StatusCode::NOT_FOUND, "no snapshot nope"};
    }
    sandbox->set_id(request->sandbox_id());
    return grpc::Status::OK;
  }
  grpc::Status ForkSnapshot(grpc::ServerContext*,
                            const corral::v1::ForkSnapshotRequest* request,
                            corral::v1::Sandbox* sandbox) override {
    fork_request = *request;
    sandbox->set_id(kNewId);
    return grpc::Status::OK;
  }
  grpc::Status DeleteSnapshot(grpc::ServerContext*,
                              const corral::v1::DeleteSnapshotRequest* request,
                              corral::v1::DeleteSnapshotResponse*) override {
    delete_request = *request;
    return grpc::Status::OK;
  }
};

class FakeDaemon {
 public:
  FakeSandboxes sandboxes;
  FakeExec exec;
  FakeFiles files;
  FakeSnapshots snapshots;

  // Runs the CLI against this daemon with fds 0, 1 and 2 on temp files.
  CliRun Cli(std::vector<std::string> args, const std::string& input = "") {
    return server_.Cli(std::move(args), input);
  }

 private:
  FakeServer server_{{&sandboxes, &exec, &files, &snapshots}};
};

// --- argument parsing
// -----------------------------------------------------------

TEST_CASE("cp tells ID:PATH from local paths", "[client][workspace]") {
  auto upload = PlanCopy("./a", std::string(kId) + ":/workspace/a");
  REQUIRE(upload.ok());
  CHECK(upload->upload);
  CHECK(upload->local == "./a");
  CHECK(upload->remote.sandbox_id == kId);
  CHECK(upload->remote.path == "/workspace/a");

  auto download = PlanCopy("abc123:out", "./a:b");
  REQUIRE(download.ok());
  CHECK_FALSE(download->upload);
  CHECK(download->remote.sandbox_id == "abc123");
  CHECK(download->remote.path == "out");
  CHECK(download->local == "./a:b");

  // Not hex before the colon, or a path: local.
  CHECK_FALSE(ParseRemotePath("notes:txt").has_value());
  CHECK_FALSE(ParseRemotePath("./abc:x").has_value());
  CHECK_FALSE(ParseRemotePath("/abc:x").has_value());
  CHECK_FALSE(ParseRemotePath(":x").has_value());
  CHECK(ParseRemotePath("ABCDEF:/x").has_value());

  auto both = PlanCopy("abc:x", "def:y");
  REQUIRE_FALSE(both.ok());
  CHECK_THAT(std::string(both.status().message()),
             Catch::Contains("one side must be a local path"));
  auto neither = PlanCopy("./x", "./y");
  REQUIRE_FALSE(neither.ok());
  CHECK_THAT(std::string(neither.status().message()),
             Catch::Contains("ID:PATH"));
  CHECK_FALSE(PlanCopy("abc:", "./y").ok());
}

TEST_CASE("fork sources and modes parse", "[client][workspace]") {
  auto plain = ParseSnapshotRef("abc");
  REQUIRE(plain.ok());
  CHECK(plain->first == "abc");
  CHECK(plain->second.empty());
  auto snap = ParseSnapshotRef("abc@before-refactor");
  REQUIRE(snap.ok());
  CHECK(snap->first == "abc");
  CHECK(snap->second == "before-refactor");
  CHECK_FALSE(ParseSnapshotRef("abc@").ok());
  CHECK_FALSE(ParseSnapshotRef("@snap").ok());

  CHECK(*ParseFileMode("644") == 0644);
  CHECK(*ParseFileMode("0755") == 0755);
  CHECK(*ParseFileMode("4755") == 04755);
  CHECK_FALSE(ParseFileMode("0800").ok());
  CHECK_FALSE(ParseFileMode("rwx").ok());
  CHECK_FALSE(ParseFileMode("").ok());
  CHECK_FALSE(ParseFileMode("17777").ok());
}

TEST_CASE("workspace formatting helpers", "[client][workspace]") {
  CHECK(SignalName(9) == "SIGKILL");
  CHECK(SignalName(15) == "SIGTERM");
  CHECK(SignalName(200) == "SIG200");
  CHECK(FormatDuration(850) == "850us");
  CHECK(FormatDuration(12300) == "12ms");
  CHECK(FormatDuration(1500000) == "1.5s");
  CHECK(FormatDuration(125000000) == "2m05s");
  CHECK(ModeString(corral::v1::FILE_TYPE_DIRECTORY, 0755) == "drwxr-xr-x");
  CHECK(ModeString(corral::v1::FILE_TYPE_REGULAR, 04755) == "-rwsr-xr-x");
  CHECK(ModeString(corral::v1::FILE_TYPE_SYMLINK, 0777) == "lrwxrwxrwx");
  CHECK(EscapeControl("a\nb\x1b[0m") == "a\\nb\\x1b[0m");
}

// --- seeding ----------------------------------------------------------------

TEST_CASE("create --seed packs a directory and streams it after the request",
          "[client][workspace]") {
  FakeDaemon daemon;
  TempDir work("corral-seed");
  WriteFile(work.path() / "project" / "src" / "main.c", "int main;\n");
  WriteFile(work.path() / "project" / "big.bin",
            std::string(2 * 1024 * 1024 + 300, 'b'));
  fs::create_symlink("src/main.c", work.path() / "project" / "link");
  REQUIRE(::mkfifo((work.path() / "project" / "pipe").c_str(), 0600) == 0);

  auto run = daemon.Cli({"create", "--memory", "256", "--label", "k=v",
                         "--seed", (work.path() / "project").string()});
  CHECK(run.exit_code == 0);
  CHECK(run.out == std::string(kNewId) + "\n");
  // The FIFO cannot go into a workspace: skipped with a warning.
  CHECK_THAT(run.err, Catch::Contains("pipe: FIFO, skipped"));
  CHECK(daemon.sandboxes.seeded.first.sandbox().limits().memory_mib() == 256);
  CHECK(daemon.sandboxes.seeded.first.sandbox().labels().at("k") == "v");
  CHECK(daemon.sandboxes.seeded.largest_chunk == 1024 * 1024);
  const auto tree = Unpack(daemon.sandboxes.seeded.data);
  CHECK(tree.size() == 4);
  CHECK(tree.at("src") == "/");
  CHECK(tree.at("src/main.c") == "int main;\n");
  CHECK(tree.at("link") == "->src/main.c");
  CHECK(tree.at("big.bin").size() == 2 * 1024 * 1024 + 300);
}

TEST_CASE("create --seed sends an archive as is and reports refusals",
          "[client][workspace]") {
  FakeDaemon daemon;
  TempDir work("corral-seed");
  const std::string bytes = "\x28\xb5\x2f\xfd not really zstd";
  WriteFile(work.path() / "seed.tar.zst", bytes);
  auto file = daemon.Cli(
      {"--json", "create", "--seed", (work.path() / "seed.tar.zst").string()});
  CHECK(file.exit_code == 0);
  CHECK(daemon.sandboxes.seeded.data == bytes);
  CHECK_THAT(file.out, Catch::Contains(std::string("\"id\":\"") + kNewId));

  auto from_stdin = daemon.Cli({"create", "--seed", "-"}, "tar on stdin");
  CHECK(from_stdin.exit_code == 0);
  CHECK(daemon.sandboxes.seeded.data == "tar on stdin");

  WriteFile(work.path() / "bad.tar", "hostile");
  auto refused =
      daemon.Cli({"create", "--seed", (work.path() / "bad.tar").string()});
  CHECK(refused.exit_code == 125);
  CHECK(refused.err ==
        "corral: archive entry '../hostile': path contains '..'\n");
  CHECK(refused.out.empty());

  auto missing =
      daemon.Cli({"create", "--seed", (work.path() / "nope").string()});
  CHECK(missing.exit_code == 125);
  CHECK_THAT(missing.err, Catch::StartsWith("corral: cannot open "));
}

TEST_CASE("run --seed creates, execs, and always deletes",
          "[client][workspace]") {
  FakeDaemon daemon;
  TempDir work("corral-seed");
  WriteFile(work.path() / "p" / "f", "x");
  auto run = daemon.Cli({"run", "--cpus", "1", "--seed",
                         (work.path() / "p").string(), "--", "make"});
  CHECK(run.exit_code == 7);
  CHECK(run.out == "seeded\n");
  CHECK(daemon.exec.sandbox_id == kNewId);
  CHECK(daemon.sandboxes.seeded.first.sandbox().limits().cpu_millis() == 1000);
  CHECK(daemon.sandboxes.deleted == std::vector<std::string>{kNewId});
  CHECK(Unpack(daemon.sandboxes.seeded.data).at("f") == "x");

  // The exec fails: corral's error, and the sandbox is still deleted.
  auto failed =
      daemon.Cli({"run", "--seed", (work.path() / "p").string(), "--", "fail"});
  CHECK(failed.exit_code == 125);
  CHECK(failed.err == "corral: agent is gone\n");
  CHECK(daemon.sandboxes.deleted.size() == 2);

  // A bad command is refused before any sandbox exists.
  auto nothing = daemon.Cli({"run", "--seed", (work.path() / "p").string()});
  CHECK(nothing.exit_code == 125);
  CHECK(daemon.sandboxes.deleted.size() == 2);
}

// --- sync and cp
// ----------------------------------------------------------------

TEST_CASE("sync pushes a packed directory or an archive",
          "[client][workspace]") {
  FakeDaemon daemon;
  TempDir work("corral-sync");
  WriteFile(work.path() / "tree" / "a.txt", "alpha");
  auto run = daemon.Cli({"sync", kId, (work.path() / "tree").string(),
                         "/workspace/sub", "--delete"});
  CHECK(run.exit_code == 0);
  CHECK(run.out == "3 entries, 12345 bytes\n");
  CHECK(daemon.files.sync.first.header().sandbox_id() == kId);
  CHECK(daemon.files.sync.first.header().destination() == "/workspace/sub");
  CHECK(daemon.files.sync.first.header().delete_missing());
  CHECK(Unpack(daemon.files.sync.data).at("a.txt") == "alpha");

  WriteFile(work.path() / "x.tar.gz", "gzipped bytes");
  auto json =
      daemon.Cli({"--json", "sync", kId, (work.path() / "x.tar.gz").string()});
  CHECK(json.exit_code == 0);
  CHECK(daemon.files.sync.first.header().destination().empty());
  CHECK_FALSE(daemon.files.sync.first.header().delete_missing());
  CHECK(daemon.files.sync.data == "gzipped bytes");
  CHECK(json.out == "{\"entries\":\"3\",\"bytes\":\"12345\"}\n");
}

TEST_CASE("cp uploads a file with its mode and a directory by sync",
          "[client][workspace]") {
  FakeDaemon daemon;
  TempDir work("corral-cp");
  const fs::path script = work.path() / "run.sh";
  WriteFile(script, "#!/bin/sh\necho hi\n");
  fs::permissions(script, static_cast<fs::perms>(04750));
  auto file = daemon.Cli(
      {"cp", script.string(), std::string(kId) + ":/workspace/run.sh"});
  CHECK(file.exit_code == 0);
  CHECK(file.out.empty());
  CHECK(daemon.files.write.first.header().sandbox_id() == kId);
  CHECK(daemon.files.write.first.header().path() == "/workspace/run.sh");
  CHECK(daemon.files.write.first.header().mode() == 0750);
  CHECK(daemon.files.write.first.header().create_parents());
  CHECK(daemon.files.write.data == "#!/bin/sh\necho hi\n");

  WriteFile(work.path() / "a" / "nested" / "n.txt", "nn");
  auto dir = daemon.Cli(
      {"cp", (work.path() / "a").string(), std::string(kId) + ":/workspace/a"});
  CHECK(dir.exit_code == 0);
  CHECK(daemon.files.sync.first.header().destination() == "/workspace/a");
  CHECK_FALSE(daemon.files.sync.first.header().delete_missing());
  CHECK(Unpack(daemon.files.sync.data).at("nested/n.txt") == "nn");

  auto bad = daemon.Cli({"cp", "./x", "./y"});
  CHECK(bad.exit_code == 125);
  CHECK(bad.err ==
        "corral: one of SRC and DST must be a sandbox path ID:PATH\n");
}

TEST_CASE("cp downloads into a new path and never overwrites unasked",
          "[client][workspace]") {
  FakeDaemon daemon;
  TempDir work("corral-cp");
  WriteFile(work.path() / "remote" / "out" / "result.txt", "42\n");
  WriteFile(work.path() / "remote" / "out" / "logs" / "build.log", "ok\n");
  daemon.files.exports["/workspace/out"] = PackTree(work.path() / "remote");
  const fs::path local = work.path() / "local";
  fs::create_directories(local);

  const std::string remote = std::string(kId) + ":/workspace/out";
  auto first = daemon.Cli({"cp", remote, (local / "out").string()});
  CHECK(first.exit_code == 0);
  CHECK(first.err.empty());
  CHECK(ReadFile(local / "out" / "result.txt") == "42\n");
  CHECK(ReadFile(local / "out" / "logs" / "build.log") == "ok\n");

  WriteFile(local / "out" / "result.txt", "mine");
  auto again = daemon.Cli({"cp", remote, (local / "out").string()});
  CHECK(again.exit_code == 125);
  CHECK(again.err == "corral: " + (local / "out").string() +
                         " exists; use --force to replace it\n");
  CHECK(ReadFile(local / "out" / "result.txt") == "mine");

  auto forced = daemon.Cli({"cp", "-f", remote, (local / "out").string()});
  CHECK(forced.exit_code == 0);
  CHECK(ReadFile(local / "out" / "result.txt") == "42\n");
  // No staging directory is left beside the target.
  CHECK(std::distance(fs::directory_iterator(local), {}) == 1);

  auto missing = daemon.Cli(
      {"cp", std::string(kId) + ":/nope", (local / "nope").string()});
  CHECK(missing.exit_code == 125);
  CHECK(missing.err == "corral: no such path: /nope\n");
  CHECK(std::distance(fs::directory_iterator(local), {}) == 1);
}

TEST_CASE("a hostile export is refused and leaves nothing behind",
          "[client][workspace]") {
  FakeDaemon daemon;
  TempDir work("corral-cp");
  daemon.files.exports["/workspace/out"] =
      UstarEntry("out/", '5') + UstarEntry("out/ok.txt", '0', "fine") +
      UstarEntry("../../escaped.txt", '0', "pwned") + UstarEnd();
  daemon.files.exports["/workspace/link"] =
      UstarEntry("link", '2', "", "/etc") +
      UstarEntry("link/evil.txt", '0', "pwned") + UstarEnd();
  daemon.files.exports["/workspace/dev"] = UstarEntry("dev", '3') + UstarEnd();
  const fs::path dest = work.path() / "a" / "b";
  fs::create_directories(dest);

  auto traversal = daemon.Cli({"export", kId, "/workspace/out", dest.string()});
  CHECK(traversal.exit_code == 125);
  CHECK(traversal.err ==
        "corral: archive entry '../../escaped.txt': path contains '..'\n");
  auto symlink = daemon.Cli(
      {"cp", std::string(kId) + ":/workspace/link", (dest / "l").string()});
  CHECK(symlink.exit_code == 125);
  CHECK_THAT(symlink.err, Catch::Contains("archive entry 'link/evil.txt'"));
  auto device = daemon.Cli({"export", kId, "/workspace/dev", dest.string()});
  CHECK(device.exit_code == 125);
  CHECK_THAT(device.err, Catch::Contains("device node refused"));

  CHECK(fs::is_empty(dest));
  CHECK_FALSE(fs::exists(work.path() / "escaped.txt"));
  CHECK_FALSE(fs::exists(work.path() / "a" / "escaped.txt"));
  CHECK_FALSE(fs::exists("/etc/evil.txt"));
}

TEST_CASE("export extracts into DEST or writes the tar to stdout",
          "[client][workspace]") {
  FakeDaemon daemon;
  TempDir work("corral-export");
  WriteFile(work.path() / "remote" / "report.md", "# report\n");
  const std::string tar = PackTree(work.path() / "remote");
  daemon.files.exports["/workspace/report.md"] = tar;
  const fs::path dest = work.path() / "new" / "dest";

  auto run = daemon.Cli({"export", kId, "/workspace/report.md", dest.string()});
  CHECK(run.exit_code == 0);
  CHECK(run.out == "1 entries, 9 bytes\n");
  CHECK(ReadFile(dest / "report.md") == "# report\n");

  WriteFile(dest / "report.md", "edited");
  auto refused =
      daemon.Cli({"export", kId, "/workspace/report.md", dest.string()});
  CHECK(refused.exit_code == 125);
  CHECK_THAT(refused.err,
             Catch::EndsWith("exists; use --force to replace it\n"));
  CHECK(ReadFile(dest / "report.md") == "edited");
  auto forced = daemon.Cli({"--json", "export", "--force", kId,
                            "/workspace/report.md", dest.string()});
  CHECK(forced.exit_code == 0);
  CHECK(forced.out ==
        "{\"entries\":1,\"bytes\":9,\"top_level\":[\"report.md\"]}\n");
  CHECK(ReadFile(dest / "report.md") == "# report\n");

  auto raw = daemon.Cli({"export", kId, "/workspace/report.md", "-"});
  CHECK(raw.exit_code == 0);
  const bool same = raw.out == tar;
  CHECK(same);
}

// --- diff, logs, snapshots, fork
// ----------------------------------------------

TEST_CASE("diff prints the patch, names, stats or JSON",
          "[client][workspace]") {
  FakeDaemon daemon;
  auto patch = daemon.Cli({"diff", kId});
  CHECK(patch.exit_code == 0);
  CHECK_THAT(patch.out, Catch::StartsWith("diff --git a/new.txt b/new.txt\n"));
  CHECK_FALSE(daemon.files.diff_request.no_patch());

  auto names = daemon.Cli({"diff", kId, "--name-status", "--snapshot", "s1"});
  CHECK(names.exit_code == 0);
  CHECK(names.out == "A\tnew.txt\nM\trun.sh\nD\told.bin\nT\tlib\n");
  CHECK(daemon.files.diff_request.no_patch());
  CHECK(daemon.files.diff_request.snapshot() == "s1");

  auto stat = daemon.Cli({"diff", kId, "--stat"});
  CHECK(stat.exit_code == 0);
  CHECK_THAT(stat.out, Catch::Contains("M  run.sh  (mode 0644 -> 0755)\n"));
  CHECK_THAT(stat.out, Catch::Contains("T  lib  (directory -> symlink)\n"));
  CHECK_THAT(stat.out,
             Catch::EndsWith("4 changed: 1 added, 1 modified, 1 deleted, 1 "
                             "type changed\n"));

  auto json = daemon.Cli({"--json", "diff", kId});
  CHECK(json.exit_code == 0);
  CHECK_THAT(json.out,
             Catch::Contains("{\"path\":\"run.sh\",\"kind\":\"modified\","
                             "\"type\":\"file\",\"old_type\":\"file\","
                             "\"old_mode\":420,\"new_mode\":493,"));
  CHECK_THAT(json.out, Catch::Contains("\"counts\":{\"added\":1,"));
  CHECK_THAT(json.out, Catch::Contains("\"patch\":\"diff --git a/new.txt"));
  CHECK_THAT(json.out, Catch::Contains("\"binary\":true"));

  auto both = daemon.Cli({"diff", kId, "--stat", "--name-status"});
  CHECK(both.exit_code == 125);
}

TEST_CASE("logs shows the command table, output and JSON",
          "[client][workspace]") {
  FakeDaemon daemon;
  auto table = daemon.Cli({"logs", kId});
  CHECK(table.exit_code == 0);
  CHECK_THAT(table.out, Catch::StartsWith(
                            "SEQ   STARTED   DURATION   EXIT      COMMAND\n"));
  CHECK_THAT(table.out, Catch::Contains("1.5s       0         make -j2\n"));
  CHECK_THAT(table.out, Catch::Contains("SIGKILL   sh -c 'yes | head'\n"));
  CHECK_THAT(table.out, Catch::Contains("timeout   sleep 99\n"));

  auto output = daemon.Cli({"logs", kId, "--output", "--after", "10"});
  CHECK(output.exit_code == 0);
  CHECK_THAT(output.out, Catch::Contains("=== 11: make -j2"));
  CHECK_THAT(output.out, Catch::Contains("--- stdout (6 B)\nbuilt\n"));
  CHECK_THAT(
      output.out,
      Catch::Contains("--- stdout (976.6 KiB) [truncated]\nyyyyyyyyyy\n"));

  auto json = daemon.Cli({"--json", "logs", kId, "--output"});
  CHECK(json.exit_code == 0);
  CHECK_THAT(json.out, Catch::Contains("\"argv\":[\"make\",\"-j2\"]"));
  CHECK_THAT(json.out, Catch::Contains("\"stdout_truncated\":true"));
  auto short_json = daemon.Cli({"--json", "logs", kId});
  CHECK_THAT(short_json.out, !Catch::Contains("\"stdout\":"));
}

TEST_CASE("snapshot create, ls, rm; reset; fork", "[client][workspace]") {
  FakeDaemon daemon;
  auto create = daemon.Cli({"snapshot", "create", kId, "before-refactor"});
  CHECK(create.exit_code == 0);
  CHECK(create.out == "before-refactor\n");
  CHECK(daemon.snapshots.create_request.sandbox_id() == kId);
  auto unnamed = daemon.Cli({"snapshot", "create", kId});
  CHECK(unnamed.out == "snap-20260101-000000\n");
  CHECK(daemon.snapshots.create_request.name().empty());
  CHECK_FALSE(daemon.snapshots.create_request.memory());
  CHECK(daemon.Cli({"snapshot", "create", "--memory", kId, "warm"}).exit_code ==
        0);
  CHECK(daemon.snapshots.create_request.memory());
  CHECK(daemon.snapshots.create_request.name() == "warm");

  auto list = daemon.Cli({"snapshot", "ls", kId});
  CHECK(list.exit_code == 0);
  CHECK(list.out ==
        "NAME              CREATED   ENTRIES   SIZE      NEW       MEMORY\n"
        "before-refactor   -         120       3.0 MiB   2.0 KiB   -\n");

  auto remove = daemon.Cli({"snapshot", "rm", kId, "old"});
  CHECK(remove.exit_code == 0);
  CHECK(remove.out == "old\n");
  CHECK(daemon.snapshots.delete_request.name() == "old");

  auto reset = daemon.Cli({"reset", kId});
  CHECK(reset.exit_code == 0);
  CHECK(reset.out == std::string(kId) + " reset to its baseline\n");
  CHECK(daemon.snapshots.restore_request.name().empty());
  auto to = daemon.Cli({"reset", kId, "--to", "nope"});
  CHECK(to.exit_code == 125);
  CHECK(to.err == "corral: no snapshot nope\n");

  auto fork =
      daemon.Cli({"fork", std::string(kId) + "@before-refactor", "--ttl", "600",
                  "--label", "role=fork", "--memory", "64"});
  CHECK(fork.exit_code == 0);
  CHECK(fork.out == std::string(kNewId) + "\n");
  CHECK(daemon.snapshots.fork_request.sandbox_id() == kId);
  CHECK(daemon.snapshots.fork_request.name() == "before-refactor");
  CHECK(daemon.snapshots.fork_request.sandbox().ttl_seconds() == 600);
  CHECK(daemon.snapshots.fork_request.sandbox().labels().at("role") == "fork");
  CHECK(daemon.snapshots.fork_request.sandbox().limits().memory_mib() == 64);
  CHECK(daemon.snapshots.fork_request.sandbox().runtime().empty());

  auto live = daemon.Cli({"fork", kId});
  CHECK(live.exit_code == 0);
  CHECK(daemon.snapshots.fork_request.name().empty());
  auto seeded = daemon.Cli({"fork", kId, "--seed", "/tmp"});
  CHECK(seeded.exit_code == 125);
}

// --- file ...
// ------------------------------------------------------------------

TEST_CASE("file cat, write, stat, ls, mkdir, rm, mv", "[client][workspace]") {
  FakeDaemon daemon;
  daemon.files.read_content = std::string(200000, 'r') + "end";
  auto cat = daemon.Cli({"file", "cat", kId, "/workspace/big"});
  CHECK(cat.exit_code == 0);
  const bool same = cat.out == daemon.files.read_content;
  CHECK(same);
  CHECK(daemon.files.read_request.path() == "/workspace/big");

  const std::string input(3 * 1024 * 1024 + 1, 'w');
  auto write = daemon.Cli({"--json", "file", "write", kId, "notes/a.txt",
                           "--mode", "0600", "--parents"},
                          input);
  CHECK(write.exit_code == 0);
  CHECK(daemon.files.write.first.header().path() == "notes/a.txt");
  CHECK(daemon.files.write.first.header().mode() == 0600);
  CHECK(daemon.files.write.first.header().create_parents());
  const bool written = daemon.files.write.data == input;
  CHECK(written);
  CHECK_THAT(write.out, Catch::StartsWith("{\"path\":\"notes/a.txt\",\"type\":"
                                          "\"file\",\"size\":3145729,"
                                          "\"mode\":384,"));
  auto bad_mode = daemon.Cli({"file", "write", kId, "x", "--mode", "999"});
  CHECK(bad_mode.exit_code == 125);

  auto stat = daemon.Cli({"file", "stat", kId, "/workspace/l"});
  CHECK(stat.exit_code == 0);
  CHECK_THAT(stat.out, Catch::Contains("Type:         symlink\n"));
  CHECK_THAT(stat.out, Catch::Contains("Mode:         0777 (lrwxrwxrwx)\n"));
  // The sandbox's escape sequence reaches the terminal escaped.
  CHECK_THAT(stat.out, Catch::Contains("Link target:  evil\\x1b[2Jtarget\n"));
  auto missing = daemon.Cli({"file", "stat", kId, "/missing"});
  CHECK(missing.exit_code == 125);
  CHECK(missing.err == "corral: /missing: no such file\n");

  auto ls = daemon.Cli({"file", "ls", kId, "/workspace", "-r"});
  CHECK(ls.exit_code == 0);
  CHECK(daemon.files.list_request.recursive());
  CHECK_THAT(ls.out,
             Catch::StartsWith("MODE         SIZE      MODIFIED   NAME\n"
                               "drwxr-xr-x   -         -          src\n"
                               "-rw-r--r--   2.0 KiB   -          "
                               "src/main.c\n"));

  auto mkdir = daemon.Cli({"file", "mkdir", kId, "a/b/c", "-p"});
  CHECK(mkdir.exit_code == 0);
  CHECK(mkdir.out.empty());
  CHECK(daemon.files.mkdir_request.parents());
  CHECK(daemon.files.mkdir_request.path() == "a/b/c");

  auto rm = daemon.Cli({"--json", "file", "rm", kId, "a", "-r"});
  CHECK(rm.exit_code == 0);
  CHECK(rm.out == "{\"removed\":4}\n");
  CHECK(daemon.files.remove_request.recursive());

  auto mv = daemon.Cli({"file", "mv", kId, "from.txt", "to.txt"});
  CHECK(mv.exit_code == 0);
  CHECK(daemon.files.move_request.from() == "from.txt");
  CHECK(daemon.files.move_request.to() == "to.txt");
}

}  // namespace
}  // namespace corral::cli
