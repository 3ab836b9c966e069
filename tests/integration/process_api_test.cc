// Background processes through the API, and processes surviving kill -9
// and a clean restart of the daemon: the real daemon, real sandboxes, the
// real agent. A shell surviving kill -9 is checked on every runtime by the
// conformance suite (tests/conformance/).
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <thread>

#include "corral/v1/exec.grpc.pb.h"
#include "corral/v1/shells.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace corral::testing {
namespace {

namespace v1 = corral::v1;

struct ProcessApi {
  explicit ProcessApi(const Daemon& daemon) { Connect(daemon); }

  // After a daemon restart: new channel, new stubs.
  void Connect(const Daemon& daemon) {
    auto channel = daemon.Channel();
    sandboxes = v1::Sandboxes::NewStub(channel);
    exec = v1::Exec::NewStub(channel);
    shells = v1::Shells::NewStub(channel);
  }

  grpc::Status TryStart(const std::string& id, const std::string& shell,
                        const std::string& tag, v1::Process* process,
                        bool stdin_open = false) {
    grpc::ClientContext context;
    v1::StartProcessRequest request;
    request.mutable_start()->set_sandbox_id(id);
    request.mutable_start()->set_shell(shell);
    request.mutable_start()->set_stdin_open(stdin_open);
    request.set_tag(tag);
    return exec->StartProcess(&context, request, process);
  }

  v1::Process Start(const std::string& id, const std::string& shell,
                    const std::string& tag = "") {
    v1::Process process;
    auto status = TryStart(id, shell, tag, &process);
    INFO(status.error_message());
    REQUIRE(status.ok());
    return process;
  }

  grpc::Status TryGet(const std::string& id, const std::string& name,
                      v1::Process* process) {
    grpc::ClientContext context;
    v1::GetProcessRequest request;
    request.set_sandbox_id(id);
    request.set_process_id(name);
    return exec->GetProcess(&context, request, process);
  }

  v1::Process Get(const std::string& id, const std::string& name) {
    v1::Process process;
    auto status = TryGet(id, name, &process);
    INFO(status.error_message());
    REQUIRE(status.ok());
    return process;
  }

  v1::ReadProcessResponse Read(const std::string& id, const std::string& name,
                               uint64_t cursor, uint32_t wait_ms = 0,
                               uint32_t max = 4 << 20) {
    grpc::ClientContext context;
    v1::ReadProcessRequest request;
    request.set_sandbox_id(id);
    request.set_process_id(name);
    request.set_cursor(cursor);
    request.set_wait_ms(wait_ms);
    request.set_max_bytes(max);
    v1::ReadProcessResponse response;
    auto status = exec->ReadProcess(&context, request, &response);
    INFO(status.error_message());
    REQUIRE(status.ok());
    return response;
  }

  // Everything from `cursor` until the process exits (at most 60 s), as
  // (stream, data) runs with the same stream merged.
  std::vector<std::pair<int, std::string>> ReadToExit(const std::string& id,
                                                      const std::string& name,
                                                      uint64_t cursor = 0) {
    std::vector<std::pair<int, std::string>> runs;
    for (int i = 0; i < 600; ++i) {
      auto r = Read(id, name, cursor, 100);
      for (const auto& out : r.output()) {
        if (!runs.empty() && runs.back().first == out.stream()) {
          runs.back().second += out.data();
        } else {
          runs.emplace_back(out.stream(), out.data());
        }
      }
      cursor = r.next_cursor();
      if (r.exited()) return runs;
    }
    FAIL("the process did not exit in time");
    return runs;
  }

  grpc::Status Signal(const std::string& id, const std::string& name,
                      int signal, v1::Process* process) {
    grpc::ClientContext context;
    v1::SignalProcessRequest request;
    request.set_sandbox_id(id);
    request.set_process_id(name);
    request.set_signal(signal);
    return exec->SignalProcess(&context, request, process);
  }

  grpc::Status Remove(const std::string& id, const std::string& name) {
    grpc::ClientContext context;
    v1::RemoveProcessRequest request;
    request.set_sandbox_id(id);
    request.set_process_id(name);
    v1::Process process;
    return exec->RemoveProcess(&context, request, &process);
  }

  v1::ListProcessesResponse List(const std::string& id) {
    grpc::ClientContext context;
    v1::ListProcessesRequest request;
    request.set_sandbox_id(id);
    v1::ListProcessesResponse response;
    REQUIRE(exec->ListProcesses(&context, request, &response).ok());
    return response;
  }

  v1::Process WaitExit(const std::string& id, const std::string& name) {
    for (int i = 0; i < 600; ++i) {
      v1::Process process = Get(id, name);
      if (!process.running()) return process;
      usleep(50000);
    }
    FAIL("the process did not exit in time");
    return {};
  }

  std::unique_ptr<v1::Sandboxes::Stub> sandboxes;
  std::unique_ptr<v1::Exec::Stub> exec;
  std::unique_ptr<v1::Shells::Stub> shells;
};

// "1\n2\n...n\n"
std::string Numbers(int n) {
  std::string out;
  for (int i = 1; i <= n; ++i) out += std::to_string(i) + "\n";
  return out;
}

TEST_CASE(
    "a background process runs detached: tagged, listed, its stdout and "
    "stderr kept in order, its exit status recorded") {
  Daemon daemon;
  ProcessApi api(daemon);
  const std::string id = daemon.CreateSandbox();
  v1::Process started = api.Start(
      id, "echo out1; sleep 0.3; echo err1 >&2; sleep 0.3; echo out2; exit 3",
      "job");
  CHECK(started.running());
  CHECK(started.pid() > 1);
  CHECK(started.tag() == "job");
  CHECK_FALSE(started.pty());
  CHECK(started.argv(0) == "/bin/sh");

  auto runs = api.ReadToExit(id, "job");
  REQUIRE(runs.size() == 3);
  CHECK(runs[0] ==
        std::make_pair(int{v1::OUTPUT_STREAM_STDOUT}, std::string("out1\n")));
  CHECK(runs[1] ==
        std::make_pair(int{v1::OUTPUT_STREAM_STDERR}, std::string("err1\n")));
  CHECK(runs[2] ==
        std::make_pair(int{v1::OUTPUT_STREAM_STDOUT}, std::string("out2\n")));
  v1::Process done = api.Get(id, started.process_id());
  CHECK_FALSE(done.running());
  CHECK(done.exit_code() == 3);
  CHECK(done.signal() == 0);
  CHECK(done.output_end() == 15);
  CHECK(done.has_ended_at());

  // Reading from an offset in the middle, and past the end.
  auto middle = api.Read(id, "job", 7);
  REQUIRE(middle.output_size() == 2);
  CHECK(middle.output(0).offset() == 7);
  CHECK(middle.output(0).data() == "r1\n");
  CHECK(middle.exited());
  grpc::ClientContext context;
  v1::ReadProcessRequest past;
  past.set_sandbox_id(id);
  past.set_process_id("job");
  past.set_cursor(16);
  v1::ReadProcessResponse ignored;
  CHECK(api.exec->ReadProcess(&context, past, &ignored).error_code() ==
        grpc::StatusCode::OUT_OF_RANGE);

  // AttachProcess streams from a cursor to the exit.
  v1::Process counter =
      api.Start(id, "for i in 1 2 3 4 5; do echo $i; sleep 0.1; done");
  grpc::ClientContext attach_context;
  v1::ReadProcessRequest attach;
  attach.set_sandbox_id(id);
  attach.set_process_id(counter.process_id());
  auto reader = api.exec->AttachProcess(&attach_context, attach);
  v1::ReadProcessResponse response;
  std::string streamed;
  bool exited = false;
  int responses = 0;
  while (reader->Read(&response)) {
    if (responses++ == 0) CHECK(response.has_process());
    for (const auto& out : response.output()) streamed += out.data();
    if (response.exited()) {
      exited = true;
      CHECK(response.process().exit_code() == 0);
    }
  }
  CHECK(reader->Finish().ok());
  CHECK(exited);
  CHECK(streamed == "1\n2\n3\n4\n5\n");

  auto listed = api.List(id);
  REQUIRE(listed.processes_size() == 2);
  CHECK(listed.processes(0).tag() == "job");
  CHECK(listed.processes(1).process_id() == counter.process_id());
}

// Writes to a background process's stdin; the status of the call.
grpc::Status WriteStdin(ProcessApi& api, const std::string& id,
                        const std::string& name, const std::string& data,
                        bool eof) {
  grpc::ClientContext context;
  v1::WriteProcessRequest request;
  request.set_sandbox_id(id);
  request.set_process_id(name);
  request.set_data(data);
  request.set_eof(eof);
  v1::WriteProcessResponse response;
  return api.exec->WriteProcess(&context, request, &response);
}

TEST_CASE(
    "a background process started with stdin_open reads what WriteProcess "
    "sends, sees EOF when it is closed, and bad writes are refused") {
  Daemon daemon;
  ProcessApi api(daemon);
  const std::string id = daemon.CreateSandbox();
  v1::Process process;
  auto started = api.TryStart(id, "tr a-z A-Z; echo done", "upper", &process,
                              /*stdin_open=*/true);
  REQUIRE(started.ok());
  CHECK(process.stdin_open());
  v1::Process quiet = api.Start(id, "exec sleep 1000", "quiet");
  CHECK_FALSE(quiet.stdin_open());

  REQUIRE(WriteStdin(api, id, "upper", "hello ", false).ok());
  REQUIRE(WriteStdin(api, id, "upper", "world\n", true).ok());
  std::string output;
  uint64_t cursor = 0;
  for (int i = 0; i < 100; ++i) {
    auto read = api.Read(id, "upper", cursor, 200);
    for (const auto& piece : read.output()) output += piece.data();
    cursor = read.next_cursor();
    if (read.exited()) break;
  }
  CHECK(output == "HELLO WORLD\ndone\n");
  CHECK_FALSE(api.Get(id, "upper").stdin_open());

  // Closed, exited, never opened, a shell, too much, nobody there.
  CHECK(WriteStdin(api, id, "upper", "more", false).error_code() ==
        grpc::StatusCode::FAILED_PRECONDITION);
  auto refused = WriteStdin(api, id, "quiet", "x", false);
  CHECK(refused.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(refused.error_message().find("stdin_open") != std::string::npos);
  CHECK(WriteStdin(api, id, "quiet", std::string((64 << 10) + 1, 'x'), false)
            .error_code() == grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(WriteStdin(api, id, "nosuch", "x", false).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  {
    grpc::ClientContext context;
    v1::OpenShellRequest open;
    open.set_sandbox_id(id);
    v1::Shell shell;
    REQUIRE(api.shells->OpenShell(&context, open, &shell).ok());
    CHECK(WriteStdin(api, id, shell.shell_id(), "x", false).error_code() ==
          grpc::StatusCode::FAILED_PRECONDITION);
  }
}

TEST_CASE(
    "processes started, listed, read and removed at once from many "
    "threads: a process still starting is never seen half-made") {
  Daemon daemon;
  const std::string id = daemon.CreateSandbox();
  std::atomic<bool> done{false};
  std::atomic<int> started{0}, listed{0};
  std::vector<std::thread> threads;
  constexpr int kStarters = 6, kEach = 20;
  for (int t = 0; t < kStarters; ++t) {
    threads.emplace_back([&, t] {
      ProcessApi api(daemon);
      for (int i = 0; i < kEach; ++i) {
        v1::Process process;
        const std::string tag =
            "p" + std::to_string(t) + "-" + std::to_string(i);
        if (!api.TryStart(id, "echo hi", tag, &process).ok()) continue;
        ++started;
        grpc::ClientContext context;
        v1::RemoveProcessRequest remove;
        remove.set_sandbox_id(id);
        remove.set_process_id(process.process_id());
        v1::Process removed;
        api.exec->RemoveProcess(&context, remove, &removed);
      }
    });
  }
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      ProcessApi api(daemon);
      // Raw calls: Catch2's assertions are for the main thread only.
      while (!done) {
        v1::ListProcessesResponse list;
        {
          grpc::ClientContext context;
          v1::ListProcessesRequest request;
          request.set_sandbox_id(id);
          if (!api.exec->ListProcesses(&context, request, &list).ok()) break;
        }
        for (const auto& process : list.processes()) {
          // By tag too: a tag is known before its process is.
          v1::Process got;
          (void)api.TryGet(id, process.tag(), &got);
          grpc::ClientContext context;
          v1::ReadProcessRequest read;
          read.set_sandbox_id(id);
          read.set_process_id(process.process_id());
          v1::ReadProcessResponse response;
          (void)api.exec->ReadProcess(&context, read, &response);
        }
        for (int i = 0; i < kEach; ++i) {
          v1::Process got;
          (void)api.TryGet(
              id, "p" + std::to_string(t) + "-" + std::to_string(i), &got);
        }
        ++listed;
      }
    });
  }
  for (int t = 0; t < kStarters; ++t) threads[t].join();
  done = true;
  for (size_t t = kStarters; t < threads.size(); ++t) threads[t].join();
  CHECK(started == kStarters * kEach);
  CHECK(listed > 0);
  REQUIRE(daemon.running());
  ProcessApi api(daemon);
  CHECK(api.List(id).processes_size() == 0);
}

TEST_CASE(
    "background processes are signalled and removed, and bad requests "
    "change nothing") {
  Daemon daemon;
  ProcessApi api(daemon);
  const std::string id = daemon.CreateSandbox();
  v1::Process sleeper = api.Start(id, "exec sleep 1000", "sleeper");

  v1::Process process;
  CHECK(api.TryStart(id, "true", "sleeper", &process).error_code() ==
        grpc::StatusCode::ALREADY_EXISTS);
  CHECK(api.TryStart(id, "true", "-bad", &process).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(api.TryStart(id, "true", std::string(65, 'a'), &process).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);
  std::string missing = id;
  missing.back() = missing.back() == '0' ? '1' : '0';
  CHECK(api.TryStart(missing, "true", "", &process).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  {
    grpc::ClientContext context;
    v1::StartProcessRequest request;
    request.mutable_start()->set_sandbox_id(id);
    request.mutable_start()->add_argv("/no/such/program");
    auto status = api.exec->StartProcess(&context, request, &process);
    CHECK(status.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK(status.error_message().find("/no/such/program") != std::string::npos);
  }
  CHECK(api.List(id).processes_size() == 1);

  CHECK(api.Signal(id, "sleeper", 0, &process).error_code() ==
        grpc::StatusCode::INVALID_ARGUMENT);
  CHECK(api.Signal(id, "nosuch", 15, &process).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  REQUIRE(api.Signal(id, "sleeper", 15, &process).ok());
  v1::Process ended = api.WaitExit(id, "sleeper");
  CHECK(ended.signal() == 15);
  CHECK(api.Signal(id, "sleeper", 15, &process).error_code() ==
        grpc::StatusCode::FAILED_PRECONDITION);

  // Remove kills a running process and forgets it and its files.
  v1::Process other = api.Start(id, "exec sleep 1000");
  const std::string files = daemon.state_dir() + "/processes/" + id;
  CHECK(std::filesystem::exists(files + "/" + other.process_id() + ".log"));
  REQUIRE(api.Remove(id, other.process_id()).ok());
  CHECK(api.TryGet(id, other.process_id(), &process).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  CHECK_FALSE(
      std::filesystem::exists(files + "/" + other.process_id() + ".log"));
  // Neither sleeper is left in the sandbox.
  auto ps = daemon.Cli({"exec", id, "--", "sh", "-c",
                        "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"});
  INFO(ps.out << ps.err);
  CHECK(ps.out.find("corral-agent") != std::string::npos);
  CHECK(ps.out.find("sleep 1000") == std::string::npos);
  REQUIRE(api.Remove(id, "sleeper").ok());
  CHECK(api.List(id).processes_size() == 0);

  // At most 32 per sandbox, shells included.
  for (int i = 0; i < 31; ++i) api.Start(id, "exec sleep 1000");
  grpc::ClientContext context;
  v1::OpenShellRequest open;
  open.set_sandbox_id(id);
  v1::Shell shell;
  REQUIRE(api.shells->OpenShell(&context, open, &shell).ok());
  CHECK(api.TryStart(id, "true", "", &process).error_code() ==
        grpc::StatusCode::RESOURCE_EXHAUSTED);
  auto listed = api.List(id);
  CHECK(listed.processes_size() == 32);
  CHECK(listed.processes(31).pty());

  // Deleting the sandbox removes its processes' files.
  grpc::ClientContext delete_context;
  v1::DeleteSandboxRequest remove;
  remove.set_id(id);
  v1::DeleteSandboxResponse removed;
  REQUIRE(api.sandboxes->DeleteSandbox(&delete_context, remove, &removed).ok());
  CHECK_FALSE(std::filesystem::exists(files));
}

TEST_CASE(
    "deleting sandboxes whose processes keep writing returns at once: no "
    "process's output thread waits for the sandbox being deleted") {
  // Each output thread notes the sandbox's activity once a second, which
  // takes the sandbox's lock; deleting joins those threads. A delete that
  // held that lock while joining hung whenever a note fell between its
  // start and the agent's close: with 31 writers that is rare on an idle
  // host and common under disk load (it was found by a full ctest run;
  // widening that window by hand made this test fail at every round).
  Daemon daemon;
  ProcessApi api(daemon);
  for (int round = 0; round < 3; ++round) {
    const std::string id = daemon.CreateSandbox();
    for (int i = 0; i < 31; ++i) {
      api.Start(id, "while :; do echo tick; sleep 0.01; done");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(60));
    v1::DeleteSandboxRequest remove;
    remove.set_id(id);
    v1::DeleteSandboxResponse removed;
    auto status = api.sandboxes->DeleteSandbox(&context, remove, &removed);
    INFO("round " << round << ": " << status.error_message());
    REQUIRE(status.ok());
  }
}

TEST_CASE(
    "kill -9 of the daemon while a process writes a numbered stream: after "
    "a restart every number still in the ring arrives once and in order") {
  Daemon daemon;
  ProcessApi api(daemon);
  const std::string id = daemon.CreateSandbox();
  constexpr int kCount = 300000;  // about 2 MB: more than the 1 MiB ring
  const std::string expected = Numbers(kCount);
  v1::Process writer =
      api.Start(id,
                "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); echo $i; "
                "[ $((i % 2000)) = 0 ] && sleep 0.02; done; exit 0",
                "numbers");

  // Everything a client gets is checked against the exact stream: each
  // byte at its offset. Stdout is the only stream, so output offsets are
  // stdout offsets.
  uint64_t cursor = 0, missed = 0, received = 0;
  auto consume = [&](const v1::ReadProcessResponse& r) {
    missed += r.missed();
    for (const auto& out : r.output()) {
      REQUIRE(out.stream() == v1::OUTPUT_STREAM_STDOUT);
      REQUIRE(out.offset() + out.data().size() <= expected.size());
      REQUIRE(out.data() == expected.substr(out.offset(), out.data().size()));
      REQUIRE(out.offset() >= cursor);
      received += out.data().size();
    }
    cursor = r.next_cursor();
  };
  while (cursor < 200000) consume(api.Read(id, "numbers", cursor, 1000));

  daemon.Kill9();
  usleep(500000);  // the process runs on without a daemon
  daemon.Start();
  api.Connect(daemon);
  v1::Process after = api.Get(id, "numbers");
  CHECK(after.pid() == writer.pid());
  CHECK(after.output_end() >= cursor);

  // A clean restart in the middle, too.
  while (cursor < 1000000) consume(api.Read(id, "numbers", cursor, 1000));
  daemon.Stop();
  daemon.Start();
  api.Connect(daemon);
  // Bounded by time, not by reads: each read answers as soon as any byte
  // arrives, so a slow writer (a loaded CI machine) takes many more reads.
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(90);
  while (std::chrono::steady_clock::now() < deadline) {
    auto r = api.Read(id, "numbers", cursor, 1000);
    consume(r);
    if (r.exited()) break;
  }
  v1::Process done = api.Get(id, "numbers");
  INFO("received " << received << " bytes, missed " << missed);
  CHECK_FALSE(done.running());
  CHECK(done.exit_code() == 0);
  CHECK(done.error().empty());
  CHECK(done.output_end() == expected.size());
  CHECK(cursor == expected.size());
  CHECK(received + missed == expected.size());
  // The reader never fell a ring behind, so nothing may be missing.
  CHECK(missed == 0);
}

TEST_CASE(
    "a process writing faster than anyone reads keeps the daemon's memory "
    "and its output file bounded") {
  Daemon daemon;
  ProcessApi api(daemon);
  const std::string id = daemon.CreateSandbox();
  const long before = ProcStatusKib(daemon.pid(), "VmHWM");
  v1::Process flood =
      api.Start(id, "head -c 200000000 /dev/zero | tr '\\0' x; echo done >&2");
  v1::Process done = api.WaitExit(id, flood.process_id());
  CHECK(done.exit_code() == 0);
  CHECK(done.output_end() == 200000005);
  CHECK(done.output_end() - done.output_start() == 1 << 20);
  auto r = api.Read(id, flood.process_id(), 0, 0, 4096);
  CHECK(r.missed() == done.output_start());
  // The oldest bytes may end one of the ring's pieces and begin the next.
  std::string oldest;
  for (const auto& out : r.output()) {
    CHECK(out.stream() == v1::OUTPUT_STREAM_STDOUT);
    CHECK(out.offset() == done.output_start() + oldest.size());
    oldest += out.data();
  }
  CHECK(oldest == std::string(4096, 'x'));
  auto tail = api.Read(id, flood.process_id(), done.output_end() - 5);
  REQUIRE(tail.output_size() == 1);
  CHECK(tail.output(0).stream() == v1::OUTPUT_STREAM_STDERR);
  CHECK(tail.output(0).data() == "done\n");
  struct stat st {};
  REQUIRE(::stat((daemon.state_dir() + "/processes/" + id + "/" +
                  flood.process_id() + ".log")
                     .c_str(),
                 &st) == 0);
  CHECK(st.st_size < 3 << 20);
  const long peak = ProcStatusKib(daemon.pid(), "VmHWM");
  INFO("daemon peak RSS " << before << " -> " << peak << " KiB");
#ifndef __SANITIZE_ADDRESS__
  CHECK(peak - before < 64 * 1024);
#else
  WARN("ASan build: memory bound not checked");
#endif
}

}  // namespace
}  // namespace corral::testing
