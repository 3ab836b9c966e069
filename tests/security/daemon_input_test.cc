// Bad input and other users: every refusal is a clear error and changes
// nothing.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <condition_variable>
#include <mutex>

#include "corral/v1/shells.grpc.pb.h"
#include "corral/v1/snapshots.grpc.pb.h"
#include "corral/v1/system.grpc.pb.h"
#include "grpcpp/generic/generic_stub.h"
#include "tests/integration/daemon_harness.h"

namespace corral::testing {
namespace {

constexpr int kNobody = 65534;

// Sandboxes and images as the daemon lists them to root.
std::string State(const Daemon& daemon) {
  return daemon.Cli({"--json", "ls"}).out +
         daemon.Cli({"--json", "image", "ls"}).out +
         Sh("ls -A '" + daemon.state_dir() + "/workspaces' '" +
            daemon.state_dir() + "/images'")
             .out;
}

TEST_CASE("the socket is private to root and the corral group") {
  Daemon daemon;
  struct stat st {};
  REQUIRE(::stat(daemon.socket().c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0660);
  auto denied = daemon.Cli({"ls"}, "", kNobody);
  CHECK(denied.exit_code == 125);
  CHECK(denied.err.find("cannot reach corrald") != std::string::npos);
}

TEST_CASE("a sandbox belongs to the uid that created it") {
  Daemon daemon("[daemon]\nsocket_mode = 0o666\n");
  auto mine = daemon.Cli({"create"});
  REQUIRE(mine.exit_code == 0);
  const std::string id = Trim(mine.out);

  auto ls = daemon.Cli({"--json", "ls"}, "", kNobody);
  REQUIRE(ls.exit_code == 0);
  CHECK(ls.out.find(id) == std::string::npos);
  for (auto args : std::vector<std::vector<std::string>>{
           {"inspect", id},
           {"exec", id, "--", "true"},
           {"rm", id},
           {"extend", id, "--ttl", "60"},
           {"diff", id},
           {"logs", id},
           {"file", "cat", id, "/etc/hostname"},
           {"snapshot", "create", id, "s"},
           {"snapshot", "ls", id},
           {"reset", id},
           {"fork", id}}) {
    auto r = daemon.Cli(args, "", kNobody);
    CHECK(r.exit_code == 125);
    CHECK(r.err.find("no sandbox") != std::string::npos);
  }
  // Still there and usable by its owner.
  CHECK(daemon.Cli({"exec", id, "--", "true"}).exit_code == 0);

  // The other user's own sandbox: theirs to use, visible to root (admin).
  auto theirs = daemon.Cli({"create"}, "", kNobody);
  INFO(theirs.err);
  REQUIRE(theirs.exit_code == 0);
  const std::string their_id = Trim(theirs.out);
  CHECK(daemon.Cli({"exec", their_id, "--", "true"}, "", kNobody).exit_code ==
        0);
  CHECK(daemon.Cli({"--json", "ls"}).out.find(their_id) != std::string::npos);
  CHECK(daemon.Cli({"--json", "inspect", their_id}).out.find("65534") !=
        std::string::npos);
  // Importing images is for root and admins.
  auto import = daemon.Cli({"image", "import", "x", "-"}, "garbage", kNobody);
  CHECK(import.exit_code == 125);
  CHECK(daemon.Cli({"rm", their_id}, "", kNobody).exit_code == 0);
}

TEST_CASE("bad create requests are refused with a message and change nothing") {
  Daemon daemon;
  const std::string before = State(daemon);
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  std::vector<Case> cases = {
      {{"create", "--runtime", "nope"}, "unknown runtime"},
      {{"create", "--image", "no-such-image"}, "no-such-image"},
      {{"create", "--memory", "1"}, "below the minimum"},
      {{"create", "--memory", "99999999"}, "exceeds the maximum"},
      {{"create", "--pids", "4000000000"}, "pids"},
      {{"create", "--ttl", "999999999"}, "exceeds the maximum"},
      {{"create", "--workdir", "relative/path"}, "absolute"},
      {{"create", "--hostname", "Bad_Name"}, "hostname"},
      {{"create", "--label", "bad key=v"}, "label"},
      {{"create", "--allow-domain", "-bad-.example"}, "domain"},
      {{"create", "--allow-cidr", "10.0.0.1/8"}, "host bits are set"},
      {{"create", "--network", "none", "--allow-cidr", "203.0.113.0/24"},
       "need network mode egress"},
      {{"create", "--require", "separate-kernel"}, "cannot guarantee"},
      {{"inspect", "../../etc/passwd"}, "invalid sandbox id"},
      {{"exec", "0123456789abcdef0123456789abcdef", "--", "true"},
       "no sandbox"},
  };
  for (const auto& c : cases) {
    auto r = daemon.Cli(c.args);
    INFO(c.args[1] << " " << (c.args.size() > 2 ? c.args[2] : "") << ": "
                   << r.err);
    CHECK(r.exit_code == 125);
    CHECK(r.err.find(c.message) != std::string::npos);
    CHECK(Lines(r.err).size() == 1);
  }
  CHECK(State(daemon) == before);
}

TEST_CASE("oversized requests are refused") {
  Daemon daemon;
  auto stub = corral::v1::Sandboxes::NewStub(daemon.Channel());
  grpc::ClientContext context;
  corral::v1::CreateSandboxRequest request;
  (*request.mutable_env())["BIG"] = std::string(9 << 20, 'x');
  corral::v1::Sandbox response;
  auto status = stub->CreateSandbox(&context, request, &response);
  CHECK(status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED);
  // Many variables within the message limit are still refused by validation.
  grpc::ClientContext context2;
  corral::v1::CreateSandboxRequest many;
  for (int i = 0; i < 2000; ++i)
    (*many.mutable_env())["V" + std::to_string(i)] = "x";
  status = stub->CreateSandbox(&context2, many, &response);
  CHECK(status.error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(Trim(daemon.Cli({"--json", "ls"}).out).find("\"id\"") ==
        std::string::npos);
}

TEST_CASE("a hostile rootfs tar is refused and leaves no image behind") {
  Daemon daemon;
  const std::string before = State(daemon);
  const std::string dir = daemon.dir();
  // An entry that climbs out of the tree, built with the host's tar.
  REQUIRE(Sh("cd '" + dir +
             "' && mkdir -p h/a && echo x > h/a/f && "
             "tar --transform 's,^h/a/f,../../escape,' -cf evil.tar -P h/a/f")
              .exit_code == 0);
  auto evil = daemon.Cli({"image", "import", "evil", dir + "/evil.tar"});
  CHECK(evil.exit_code == 125);
  CHECK(evil.err.find("..") != std::string::npos);
  auto garbage =
      daemon.Cli({"image", "import", "garbage", "-"}, std::string(4096, 'g'));
  CHECK(garbage.exit_code == 125);
  auto bad_name = daemon.Cli({"image", "import", "../up", "-"}, "");
  CHECK(bad_name.exit_code == 125);
  CHECK(Sh("test -e '" + dir + "/escape' || test -e /escape").exit_code != 0);
  CHECK(State(daemon) == before);
}

TEST_CASE("declared but unbuilt RPCs answer UNIMPLEMENTED with a message") {
  Daemon daemon;
  auto system = corral::v1::System::NewStub(daemon.Channel());
  grpc::ClientContext context;
  auto events = system->WatchEvents(&context, corral::v1::WatchEventsRequest());
  corral::v1::Event event;
  CHECK_FALSE(events->Read(&event));
  auto status = events->Finish();
  CHECK(status.error_code() == grpc::StatusCode::UNIMPLEMENTED);
  CHECK(status.error_message().find("WatchEvents is not built yet") !=
        std::string::npos);
  auto sandboxes = corral::v1::Sandboxes::NewStub(daemon.Channel());
  grpc::ClientContext stop_context;
  corral::v1::StopSandboxRequest stop;
  corral::v1::Sandbox stopped;
  auto refused = sandboxes->StopSandbox(&stop_context, stop, &stopped);
  CHECK(refused.error_code() == grpc::StatusCode::UNIMPLEMENTED);
  CHECK(refused.error_message().find("StopSandbox is not built yet") !=
        std::string::npos);
}

TEST_CASE(
    "pause and memory snapshots on a runtime without them are refused naming "
    "the guarantee, and change nothing") {
  Daemon daemon;
  const std::string id = daemon.CreateSandbox();
  auto sandboxes = corral::v1::Sandboxes::NewStub(daemon.Channel());
  grpc::ClientContext pause_context;
  corral::v1::PauseSandboxRequest pause;
  pause.set_id(id);
  corral::v1::Sandbox paused;
  auto refused = sandboxes->PauseSandbox(&pause_context, pause, &paused);
  CHECK(refused.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(refused.error_message().find("GUARANTEE_PAUSE") != std::string::npos);
  auto snapshots = corral::v1::Snapshots::NewStub(daemon.Channel());
  grpc::ClientContext memory_context;
  corral::v1::CreateSnapshotRequest memory;
  memory.set_sandbox_id(id);
  memory.set_name("warm");
  memory.set_memory(true);
  corral::v1::Snapshot snapshot;
  refused = snapshots->CreateSnapshot(&memory_context, memory, &snapshot);
  CHECK(refused.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(refused.error_message().find("GUARANTEE_MEMORY_SNAPSHOT") !=
        std::string::npos);
  // No snapshot was kept, and the sandbox still runs.
  auto listed = daemon.Cli({"snapshot", "ls", id});
  CHECK(listed.out.find("warm") == std::string::npos);
  CHECK(daemon.Cli({"exec", id, "--", "true"}).exit_code == 0);
}

TEST_CASE("the standard gRPC health service answers SERVING") {
  Daemon daemon;
  grpc::GenericStub stub(daemon.Channel());
  grpc::ClientContext context;
  // grpc.health.v1.HealthCheckRequest{service: ""} serializes to no bytes;
  // HealthCheckResponse{status: SERVING} to 08 01.
  grpc::ByteBuffer request, response;
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  grpc::Status status;
  std::mutex mutex;
  std::condition_variable cv;
  bool done = false;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                 &request, &response, [&](grpc::Status s) {
                   std::lock_guard lock(mutex);
                   status = s;
                   done = true;
                   cv.notify_all();
                 });
  std::unique_lock lock(mutex);
  cv.wait(lock, [&] { return done; });
  REQUIRE(status.ok());
  std::vector<grpc::Slice> slices;
  REQUIRE(response.Dump(&slices).ok());
  std::string bytes;
  for (auto& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  CHECK(bytes == std::string("\x08\x01", 2));
}

}  // namespace
}  // namespace corral::testing
