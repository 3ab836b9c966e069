// Integration tests: file operations (ExecStart.fs) on the real corral-agent
// from the build tree, on one end of a socketpair, driven through the
// daemon's AgentConnection: stdin/stdout windows, exit codes, cancellation.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "daemon/agent/agent_connection.h"
#include "guest-agent/wire/fs_record_codec.h"
#include "tests/integration/agent_test_util.h"

namespace {

namespace v1 = corral::agent::v1;
namespace wire = corral::agent::wire;
namespace fs = std::filesystem;
using corral::agent::testing::Agent;
using corral::agent::testing::ReadFile;
using corral::agent::testing::Run;
using corral::agent::testing::StartAgent;
using corral::agent::testing::TempDir;
using corral::agent::testing::WaitGone;
using corral::daemon::AgentConnection;
using corral::daemon::ExecEvent;
using corral::daemon::ExecResult;

v1::ExecStart FsStart(const v1::FsRequest& request, bool stdin_open) {
  v1::ExecStart start;
  *start.mutable_fs() = request;
  start.set_stdin_open(stdin_open);
  return start;
}

// Runs a file operation to its end. Moving 64 MiB through the windows takes
// a while: a generous deadline.
ExecResult RunFs(AgentConnection& connection, const v1::FsRequest& request,
                 bool stdin_open, std::string_view input = "") {
  return Run(connection, FsStart(request, stdin_open), input,
             absl::Seconds(60));
}

std::vector<v1::FsRecord> Decode(const std::string& bytes) {
  wire::FsRecordDecoder decoder;
  decoder.Feed(bytes);
  std::vector<v1::FsRecord> records;
  v1::FsRecord record;
  while (decoder.Next(&record)) records.push_back(record);
  REQUIRE_FALSE(decoder.failed());
  REQUIRE(decoder.buffered_bytes() == 0);
  return records;
}

std::string Encode(const v1::FsRecord& record) {
  std::string out;
  REQUIRE(wire::AppendFsRecord(record, &out));
  return out;
}

}  // namespace

TEST_CASE("agent announces the fs capability", "[agent_fs_exec]") {
  Agent agent = StartAgent();
  const auto& caps = agent.connection->hello().capabilities();
  CHECK(std::find(caps.begin(), caps.end(), "fs") != caps.end());
}

TEST_CASE("pack and unpack a 64 MiB file through the agent's windows",
          "[agent_fs_exec]") {
  Agent agent = StartAgent();
  TempDir dir;
  fs::create_directories(dir / "src/sub");
  std::string big(64u << 20, '\0');
  uint64_t state = 0x9e3779b97f4a7c15ull;
  for (size_t i = 0; i < big.size(); i += 8) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    std::memcpy(&big[i], &state, 8);
  }
  {
    std::ofstream out(dir / "src/sub/big", std::ios::binary);
    out.write(big.data(), static_cast<std::streamsize>(big.size()));
  }
  {
    std::ofstream out(dir / "src/small");
    out << "small";
  }
  REQUIRE(::symlink("sub/big", (dir / "src/link").c_str()) == 0);

  v1::FsRequest pack;
  pack.mutable_pack()->set_root(dir / "src");
  ExecResult packed = RunFs(*agent.connection, pack, false);
  INFO(packed.stderr_data);
  REQUIRE(packed.exit.exit_code() == 0);
  CHECK(packed.stderr_data.empty());
  std::vector<v1::FsRecord> records = Decode(packed.stdout_data);
  REQUIRE(!records.empty());
  REQUIRE(records.back().has_summary());
  CHECK(records.back().summary().entries() == 4);
  CHECK(records.back().summary().bytes() == big.size() + 5);
  std::vector<std::string> paths;
  for (const auto& record : records) {
    if (record.has_entry()) paths.push_back(record.entry().path());
    if (record.has_data()) {
      CHECK(record.data().size() <= wire::kFsDataChunkBytes);
    }
  }
  CHECK(paths == std::vector<std::string>{"link", "small", "sub", "sub/big"});

  // Feed everything but the summary back into Unpack, over stdin.
  std::string input;
  for (size_t i = 0; i + 1 < records.size(); ++i) input += Encode(records[i]);
  records.clear();
  v1::FsRequest unpack;
  unpack.mutable_unpack()->set_root(dir / "dst/nested");
  ExecResult unpacked = RunFs(*agent.connection, unpack, true, input);
  INFO(unpacked.stderr_data);
  REQUIRE(unpacked.exit.exit_code() == 0);
  std::vector<v1::FsRecord> summary = Decode(unpacked.stdout_data);
  REQUIRE(summary.size() == 1);
  CHECK(summary[0].summary().entries() == 4);
  CHECK(summary[0].summary().bytes() == big.size() + 5);
  CHECK(ReadFile(dir / "dst/nested/sub/big") == big);
  CHECK(ReadFile(dir / "dst/nested/small") == "small");
  CHECK(fs::read_symlink(dir / "dst/nested/link") == "sub/big");
}

TEST_CASE("a failing file operation exits 1 with one line on stderr",
          "[agent_fs_exec]") {
  Agent agent = StartAgent();
  TempDir dir;
  v1::FsRecord entry;
  entry.mutable_entry()->set_path("../escape");
  entry.mutable_entry()->set_type(v1::ENTRY_TYPE_REGULAR);
  v1::FsRequest unpack;
  unpack.mutable_unpack()->set_root(dir / "root");
  ExecResult result = RunFs(*agent.connection, unpack, true, Encode(entry));
  CHECK(result.exit.exit_code() == 1);
  CHECK(result.exit.signal() == 0);
  CHECK(result.stdout_data.empty());
  CHECK(result.stderr_data == "entry '../escape': path component '..'\n");
  CHECK_FALSE(fs::exists(dir / "escape"));

  v1::FsRequest stat;
  stat.mutable_stat()->set_path(dir / "root");
  ExecResult ok = RunFs(*agent.connection, stat, false);
  CHECK(ok.exit.exit_code() == 0);
  std::vector<v1::FsRecord> records = Decode(ok.stdout_data);
  REQUIRE(records.size() == 1);
  CHECK(records[0].summary().entry().type() == v1::ENTRY_TYPE_DIRECTORY);
}

TEST_CASE("argv together with fs is a stream error", "[agent_fs_exec]") {
  Agent agent = StartAgent();
  v1::FsRequest stat;
  stat.mutable_stat()->set_path("/");
  v1::ExecStart start = FsStart(stat, false);
  start.add_argv("true");
  auto session = agent.connection->StartExec(start);
  REQUIRE(session.ok());
  auto event = (*session)->Next(absl::Now() + absl::Seconds(5));
  CHECK(event.status().code() == absl::StatusCode::kInternal);
  CHECK(event.status().message().find("argv must be empty") !=
        std::string::npos);
  // The connection is still fine.
  CHECK(agent.connection->Ping(absl::Seconds(2)).ok());
}

TEST_CASE("destroying the session kills the file operation's child",
          "[agent_fs_exec]") {
  Agent agent = StartAgent();
  TempDir dir;
  v1::FsRequest unpack;
  unpack.mutable_unpack()->set_root(dir / "root");
  auto session = agent.connection->StartExec(FsStart(unpack, true));
  REQUIRE(session.ok());
  auto started = (*session)->Next(absl::Now() + absl::Seconds(5));
  REQUIRE(started.ok());
  REQUIRE(started->kind == ExecEvent::Kind::kStarted);
  const pid_t pid = started->pid;
  // Its own session and process group, like a command's.
  CHECK(::getpgid(pid) == pid);
  CHECK(::getsid(pid) == pid);

  // An entry whose data never ends: the child waits for more stdin.
  v1::FsRecord entry;
  entry.mutable_entry()->set_path("endless");
  entry.mutable_entry()->set_type(v1::ENTRY_TYPE_REGULAR);
  entry.mutable_entry()->set_size(uint64_t{1} << 40);
  v1::FsRecord data;
  data.set_data(std::string(1000, 'x'));
  REQUIRE((*session)
              ->WriteStdin(Encode(entry) + Encode(data), /*eof=*/false,
                           absl::Now() + absl::Seconds(5))
              .ok());
  // Wait until the child has created its temporary file.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  bool writing = false;
  while (!writing && absl::Now() < deadline) {
    std::error_code ignored;
    writing = !fs::is_empty(dir / "root", ignored) && !ignored;
    if (!writing) absl::SleepFor(absl::Milliseconds(10));
  }
  CHECK(writing);
  // The child holds nothing of the agent's (its connection socket, epoll,
  // signalfd, other streams' pipes): only its stdio pipes and what it opened
  // beneath the root.
  int count = 0;
  for (const auto& fd :
       fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    std::error_code error;
    const std::string target = fs::read_symlink(fd.path(), error).string();
    INFO(fd.path().string() << " -> " << target);
    const int number = std::stoi(fd.path().filename().string());
    if (number <= 2) {
      CHECK(target.rfind("pipe:", 0) == 0);
    } else {
      CHECK(target.rfind(dir.path, 0) == 0);
    }
    ++count;
  }
  CHECK(count >= 4);
  CHECK(::kill(pid, 0) == 0);

  session->reset();
  CHECK(WaitGone(pid, absl::Seconds(5)));
  CHECK(agent.connection->Ping(absl::Seconds(2)).ok());
}
