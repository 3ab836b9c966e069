// What one client may hold of a shared daemon: per-uid quotas on sandboxes,
// storage and calls in progress, a maximum lifetime, idle timeouts, and a
// bound on the output the daemon buffers. One user at their limits leaves
// another user's calls working.
#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "corral/v1/exec.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace corral::testing {
namespace {

namespace v1 = corral::v1;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Plain uids with no account.
constexpr int kBusy = 61001;
constexpr int kOther = 61002;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

std::string Create(const Daemon& daemon, std::vector<std::string> flags,
                   int uid = -1) {
  std::vector<std::string> args = {"create"};
  args.insert(args.end(), flags.begin(), flags.end());
  auto made = daemon.Cli(args, "", uid);
  INFO(made.err);
  REQUIRE(made.exit_code == 0);
  return Trim(made.out);
}

// Milliseconds one `corral exec ID -- true` of `uid` takes.
long ExecMs(const Daemon& daemon, const std::string& id, int uid) {
  const auto start = Clock::now();
  auto ran = daemon.Cli({"exec", id, "--", "true"}, "", uid);
  INFO(ran.err);
  CHECK(ran.exit_code == 0);
  return std::chrono::duration_cast<milliseconds>(Clock::now() - start).count();
}

TEST_CASE(
    "per-uid quotas on sandboxes and storage are refused naming the quota, "
    "and another uid is not held to them") {
  Daemon daemon(
      "[daemon]\nsocket_mode = 0o666\n[quotas]\nsandboxes = 2\n"
      "storage_mib = 200\n");
  Create(daemon, {"--disk", "64"}, kBusy);
  const std::string second = Create(daemon, {"--disk", "64"}, kBusy);
  auto third = daemon.Cli({"create", "--disk", "16"}, "", kBusy);
  CHECK(third.exit_code == 125);
  CHECK(Contains(third.err, "quota sandboxes = 2 reached"));
  CHECK(Contains(third.err, "default_policy"));
  // Storage: the disks of its sandboxes count, and a snapshot's content.
  const std::string big = Create(daemon, {"--disk", "150"}, kOther);
  auto over = daemon.Cli({"create", "--disk", "64"}, "", kOther);
  CHECK(over.exit_code == 125);
  CHECK(Contains(over.err, "quota storage_mib = 200 reached"));
  CHECK(Contains(over.err, "holds 150 MiB"));
  REQUIRE(daemon
              .Cli({"exec", big, "--", "sh", "-c",
                    "head -c 60000000 /dev/zero > /workspace/f"},
                   "", kOther)
              .exit_code == 0);
  auto snapshot = daemon.Cli({"snapshot", "create", big, "s1"}, "", kOther);
  CHECK(snapshot.exit_code == 125);
  CHECK(Contains(snapshot.err, "quota storage_mib = 200"));
  CHECK(Contains(snapshot.err, "snapshot s1"));
  CHECK_FALSE(
      Contains(daemon.Cli({"snapshot", "ls", big}, "", kOther).out, "s1"));
  // Room again once something goes; admins are held to none of it.
  REQUIRE(daemon.Cli({"rm", second}, "", kBusy).exit_code == 0);
  Create(daemon, {"--disk", "64"}, kBusy);
  for (int i = 0; i < 3; ++i) Create(daemon, {"--disk", "512"});
}

TEST_CASE(
    "a uid at its quota of calls in progress is refused more, and another "
    "uid's calls go on as before") {
  Daemon daemon("[daemon]\nsocket_mode = 0o666\n[quotas]\ncalls = 4\n");
  const std::string busy = Create(daemon, {}, kBusy);
  const std::string other = Create(daemon, {}, kOther);
  std::vector<long> before;
  for (int i = 0; i < 5; ++i) before.push_back(ExecMs(daemon, other, kOther));

  // Four streams held open by the busy uid: its quota.
  std::vector<std::thread> holders;
  for (int i = 0; i < 4; ++i) {
    holders.emplace_back([&] {
      (void)daemon.Cli({"exec", busy, "--", "sleep", "30"}, "", kBusy);
    });
  }
  // Until all four are in, a fifth may still get through: wait for the
  // refusal (up to 20 s: a loaded host starts the holders slowly, and they
  // hold for 30).
  CommandResult refused;
  const auto give_up = std::chrono::steady_clock::now() + seconds(20);
  while (std::chrono::steady_clock::now() < give_up) {
    refused = daemon.Cli({"ls"}, "", kBusy);
    if (refused.exit_code != 0) break;
    std::this_thread::sleep_for(milliseconds(50));
  }
  CHECK(refused.exit_code == 125);
  CHECK(Contains(refused.err, "quota calls = 4 reached"));
  CHECK(Contains(refused.err, "uid " + std::to_string(kBusy)));
  // Many more tries change nothing for anyone else.
  std::vector<std::thread> hammer;
  for (int i = 0; i < 8; ++i) {
    hammer.emplace_back([&] {
      for (int j = 0; j < 5; ++j) (void)daemon.Cli({"ls"}, "", kBusy);
    });
  }
  std::vector<long> during;
  for (int i = 0; i < 5; ++i) during.push_back(ExecMs(daemon, other, kOther));
  for (auto& thread : hammer) thread.join();
  std::sort(before.begin(), before.end());
  std::sort(during.begin(), during.end());
  WARN("exec of the other uid: median " << before[2] << " ms before, "
                                        << during[2]
                                        << " ms while the busy uid is at "
                                           "its quota");
  // Not a timing target (tests/bench has those): the other uid is served,
  // not starved.
  CHECK(during[2] < 10 * before[2] + 2000);
  // Ending the busy uid's sandbox ends its streams; its calls go again.
  REQUIRE(daemon.Cli({"rm", busy}).exit_code == 0);
  for (auto& thread : holders) thread.join();
  CHECK(daemon.Cli({"ls"}, "", kBusy).exit_code == 0);
}

TEST_CASE("no sandbox outlives its maximum lifetime, however it is extended") {
  Daemon daemon("[limits]\nlifetime_seconds = 120\n");
  // The default TTL (an hour) is cut to the lifetime.
  const std::string id = Create(daemon, {});
  CHECK(daemon.Cli({"extend", id, "--ttl", "100"}).exit_code == 0);
  auto past = daemon.Cli({"extend", id, "--ttl", "200"});
  CHECK(past.exit_code == 125);
  CHECK(Contains(past.err, "lifetime_seconds = 120 reached"));
  auto made = daemon.Cli({"create", "--ttl", "121"});
  CHECK(made.exit_code == 125);
  CHECK(Contains(made.err, "maximum lifetime 120 s"));
}

TEST_CASE(
    "an idle timeout removes a sandbox nobody uses, never one that runs a "
    "command, and inspect shows its last activity") {
  Daemon daemon;
  const auto made = Clock::now();
  const std::string idle = Create(daemon, {"--idle-timeout", "3"});
  const std::string working = Create(daemon, {"--idle-timeout", "3"});
  auto inspect = daemon.Cli({"inspect", idle});
  CHECK(Contains(inspect.out, "Last activity"));
  // A command longer than the timeout keeps its sandbox; the other goes.
  auto ran = daemon.Cli({"exec", working, "--", "sleep", "5"});
  CHECK(ran.exit_code == 0);
  auto gone = daemon.Cli({"inspect", idle});
  CHECK(gone.exit_code == 125);
  CHECK(Contains(gone.err, "no sandbox"));
  CHECK(Contains(daemon.log(), "idle sandbox " + idle));
  CHECK(daemon.Cli({"inspect", working}).exit_code == 0);
  // Idle from the end of that command on: gone some 3 s later.
  bool removed = false;
  for (int i = 0; i < 80 && !removed; ++i) {
    std::this_thread::sleep_for(milliseconds(100));
    removed = daemon.Cli({"inspect", working}).exit_code != 0;
  }
  CHECK(removed);
  // A daemon restart does not reset the idle clock of a sandbox.
  const std::string survivor = Create(daemon, {"--idle-timeout", "4"});
  const auto created = Clock::now();
  std::this_thread::sleep_for(milliseconds(3000));
  daemon.Kill9();
  daemon.Start();
  bool ended = false;
  while (!ended && Clock::now() - created < std::chrono::seconds(12)) {
    ended = daemon.Cli({"inspect", survivor}).exit_code != 0;
    if (!ended) std::this_thread::sleep_for(milliseconds(100));
  }
  const auto after =
      std::chrono::duration_cast<milliseconds>(Clock::now() - created).count();
  INFO("removed " << after << " ms after creation");
  CHECK(ended);
  // About 4 s after its last activity (its creation); a restart that reset
  // the clock would have kept it until some 7 s.
  CHECK(after < 6000);
  (void)made;
}

// Peak RSS of the daemon so far, KiB.
long PeakKib(const Daemon& daemon) {
  return ProcStatusKib(daemon.pid(), "VmHWM");
}

uint64_t EnvMib(const char* name, uint64_t fallback) {
  const char* value = std::getenv(name);
  return value == nullptr ? fallback : std::strtoull(value, nullptr, 10);
}

TEST_CASE(
    "20 clients with large outputs at once leave the daemon's memory flat: "
    "unary calls share a bounded buffer, streams flow as they are read") {
  // CORRAL_OUTPUT_TEST_MIB raises the size per stream (the long run: 2048,
  // 20 clients streaming 2 GiB each).
  const uint64_t stream_mib = EnvMib("CORRAL_OUTPUT_TEST_MIB", 256);
  constexpr int kClients = 20;
  // A 32 MiB buffer for unary calls; streams may be as long as asked.
  Daemon daemon(
      "[daemon]\noutput_buffer_bytes = 33554432\n[limits]\n"
      "output_limit_bytes = 4398046511104\n");
  v1::CreateSandboxRequest request;
  request.mutable_limits()->set_pids(256);
  const std::string id = daemon.CreateSandbox(request).id();
  auto stub = v1::Exec::NewStub(daemon.Channel());
  const long start_kib = PeakKib(daemon);

  SECTION("unary Exec: each asks for 64 MiB") {
    std::vector<std::thread> clients;
    std::vector<v1::ExecResponse> responses(kClients);
    std::vector<grpc::Status> statuses(kClients);
    for (int i = 0; i < kClients; ++i) {
      clients.emplace_back([&, i] {
        v1::ExecRequest exec;
        exec.mutable_start()->set_sandbox_id(id);
        exec.mutable_start()->set_shell("head -c 67108864 /dev/zero");
        exec.mutable_start()->set_output_limit_bytes(128u << 20);
        grpc::ClientContext context;
        statuses[i] = stub->Exec(&context, exec, &responses[i]);
        // Let go of what this client got as soon as it is counted.
        responses[i].mutable_stdout()->resize(0);
      });
    }
    for (auto& client : clients) client.join();
    int cut = 0;
    for (int i = 0; i < kClients; ++i) {
      INFO(statuses[i].error_message());
      CHECK(statuses[i].ok());
      CHECK(responses[i].exit().exit_code() == 0);
      if (responses[i].exit().stdout_truncated()) ++cut;
    }
    const long grown = PeakKib(daemon) - start_kib;
    WARN("unary: " << kClients << " x 64 MiB asked, " << cut
                   << " cut at the daemon's 32 MiB buffer; daemon peak RSS "
                      "grew by "
                   << grown / 1024 << " MiB");
    CHECK(cut > 0);  // 20 x 64 MiB cannot all fit
    // Without the buffer's bound the daemon's peak grows by some 2.3 GiB
    // here (20 x 64 MiB, held and serialized); with it, by the buffer
    // times a few (string growth, the serialized copies, malloc arenas).
    CHECK(grown < (512 << 10));
  }
  SECTION("ExecStream") {
    std::vector<std::thread> clients;
    std::vector<uint64_t> received(kClients, 0);
    std::vector<int> exits(kClients, -1);
    for (int i = 0; i < kClients; ++i) {
      clients.emplace_back([&, i] {
        grpc::ClientContext context;
        auto stream = stub->ExecStream(&context);
        v1::ExecStreamRequest first;
        first.mutable_start()->set_sandbox_id(id);
        first.mutable_start()->set_shell(
            "head -c " + std::to_string(stream_mib << 20) + " /dev/zero");
        first.mutable_start()->set_output_limit_bytes(stream_mib << 20);
        first.mutable_start()->set_timeout_seconds(3600);
        if (!stream->Write(first)) return;
        stream->WritesDone();
        v1::ExecStreamResponse event;
        while (stream->Read(&event)) {
          if (event.has_output()) received[i] += event.output().data().size();
          if (event.has_exit()) exits[i] = event.exit().exit_code();
        }
        (void)stream->Finish();
      });
    }
    for (auto& client : clients) client.join();
    for (int i = 0; i < kClients; ++i) {
      CHECK(exits[i] == 0);
      CHECK(received[i] == (stream_mib << 20));
    }
    const long grown = PeakKib(daemon) - start_kib;
    WARN("streams: " << kClients << " x " << stream_mib
                     << " MiB; daemon peak RSS grew by " << grown / 1024
                     << " MiB");
    CHECK(grown < (256 << 10));
  }
}

}  // namespace
}  // namespace corral::testing
