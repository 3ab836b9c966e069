// Files.WatchDirectory against the real daemon, sandboxes and agent
// (inotify inside the sandbox): events as commands change files, recursion
// into directories made later, the end when the directory goes, and bad
// paths refused.
#include <catch2/catch.hpp>
#include <chrono>
#include <set>
#include <string>

#include "corral/v1/exec.grpc.pb.h"
#include "corral/v1/files.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace corral::testing {
namespace {

namespace v1 = corral::v1;

struct Watch {
  Watch(v1::Files::Stub& files, const std::string& id, const std::string& path,
        bool recursive) {
    v1::WatchDirectoryRequest request;
    request.set_sandbox_id(id);
    request.set_path(path);
    request.set_recursive(recursive);
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(60));
    reader = files.WatchDirectory(&context, request);
  }
  // "create d/x", ... until `until` is among them, or the stream ends.
  std::set<std::string> EventsUntil(const std::string& until) {
    v1::WatchDirectoryResponse response;
    while (seen.count(until) == 0 && reader->Read(&response)) {
      if (response.started()) started = true;
      for (const auto& event : response.events()) {
        std::string kind = v1::FileEventKind_Name(event.kind());
        kind = kind.substr(kind.rfind('_') + 1);
        seen.insert(kind + " " + event.path() +
                    (event.type() == v1::FILE_TYPE_DIRECTORY ? "/" : ""));
      }
    }
    return seen;
  }
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<v1::WatchDirectoryResponse>> reader;
  std::set<std::string> seen;
  bool started = false;
};

void Run(v1::Exec::Stub& exec, const std::string& id,
         const std::string& shell) {
  grpc::ClientContext context;
  v1::ExecRequest request;
  request.mutable_start()->set_sandbox_id(id);
  request.mutable_start()->set_shell(shell);
  v1::ExecResponse response;
  REQUIRE(exec.Exec(&context, request, &response).ok());
  INFO(response.stderr());
  REQUIRE(response.exit().exit_code() == 0);
}

TEST_CASE(
    "WatchDirectory streams a directory's changes as commands make them, "
    "recursively when asked, ends when the directory goes, and refuses "
    "what is not a directory") {
  Daemon daemon;
  auto exec = v1::Exec::NewStub(daemon.Channel());
  auto files = v1::Files::NewStub(daemon.Channel());
  const std::string id = daemon.CreateSandbox();
  Run(*exec, id, "mkdir -p /workspace/w/old");

  Watch flat(*files, id, "w", false);
  // The first response says the watch is in place: changes from now on
  // are seen.
  v1::WatchDirectoryResponse first;
  REQUIRE(flat.reader->Read(&first));
  CHECK(first.started());
  Run(*exec, id,
      "cd /workspace/w && mkdir d && echo x > f && chmod 600 f && "
      "mv f g && rm g && echo y > old/deep");
  auto seen = flat.EventsUntil("REMOVE g");
  INFO(::Catch::Detail::stringify(seen));
  for (const char* want : {"CREATE d/", "CREATE f", "WRITE f", "CHMOD f",
                           "RENAME f", "CREATE g", "REMOVE g"}) {
    CHECK(seen.count(want) == 1);
  }
  CHECK(seen.count("CREATE old/deep") == 0);  // not recursive
  flat.context.TryCancel();

  Watch deep(*files, id, "/workspace/w", true);
  REQUIRE(deep.reader->Read(&first));
  CHECK(first.started());
  Run(*exec, id,
      "cd /workspace/w && echo z >> old/deep && mkdir -p n/m && "
      "echo q > n/m/file");
  // n/m/file may be written before n/m is watched: found by the scan of
  // the new directory, it is reported created and written all the same.
  auto below = deep.EventsUntil("WRITE n/m/file");
  INFO(::Catch::Detail::stringify(below));
  CHECK(below.count("WRITE old/deep") == 1);
  CHECK(below.count("CREATE n/m/file") == 1);
  // A directory moved in whole: what it holds was written before any watch
  // could see it, and is reported so.
  Run(*exec, id,
      "mkdir -p /workspace/pre/in && echo data > /workspace/pre/in/full && "
      ": > /workspace/pre/empty && mv /workspace/pre /workspace/w/moved");
  below = deep.EventsUntil("WRITE moved/in/full");
  CHECK(below.count("CREATE moved/") == 1);
  CHECK(below.count("CREATE moved/in/") == 1);
  CHECK(below.count("CREATE moved/in/full") == 1);
  CHECK(below.count("WRITE moved/in/full") == 1);
  CHECK(below.count("CREATE moved/empty") == 1);
  CHECK(below.count("WRITE moved/empty") == 0);
  // Removing the watched directory ends the stream, OK.
  Run(*exec, id, "rm -rf /workspace/w");
  deep.EventsUntil("never");
  CHECK(deep.reader->Finish().ok());

  Run(*exec, id, "echo > /workspace/file");
  Watch missing(*files, id, "/workspace/nope", false);
  missing.EventsUntil("never");
  CHECK(missing.reader->Finish().error_code() == grpc::StatusCode::NOT_FOUND);
  Watch file(*files, id, "file", false);
  file.EventsUntil("never");
  CHECK(file.reader->Finish().error_code() ==
        grpc::StatusCode::FAILED_PRECONDITION);
  CHECK_FALSE(file.started);
}

TEST_CASE(
    "corral file watch prints a directory's changes until the directory "
    "goes, and says why it cannot watch") {
  Daemon daemon;
  const std::string id = daemon.CreateSandbox();
  REQUIRE(daemon.Cli({"exec", id, "--", "mkdir", "/workspace/cw"}).exit_code ==
          0);
  const std::string corral =
      BinaryDir() + "/corral --socket " + daemon.socket() + " ";
  auto watched = Sh(
      "d=$(mktemp -d); " + corral + "file watch " + id +
      " cw >$d/out 2>$d/err & pid=$!; "
      "for i in $(seq 200); do grep -q watching $d/err && break; sleep 0.05; "
      "done; " +
      corral + "exec " + id +
      " -- sh -c 'cd /workspace/cw && echo x > new && mkdir sub && rm new'; "
      "sleep 0.5; " +
      corral + "exec " + id +
      " -- rm -rf /workspace/cw; wait $pid; "
      "echo rc=$?; cat $d/out; cat $d/err; rm -rf $d");
  INFO(watched.out);
  CHECK(watched.out.find("rc=0") != std::string::npos);
  for (const char* line : {"create new\n", "write new\n", "create sub/\n",
                           "remove new\n", "watching cw (Ctrl-C stops)"}) {
    CHECK(watched.out.find(line) != std::string::npos);
  }
  auto missing = daemon.Cli({"file", "watch", id, "/workspace/nope"});
  CHECK(missing.exit_code == 125);
  CHECK(missing.err.find("No such file or directory") != std::string::npos);
}

}  // namespace
}  // namespace corral::testing
