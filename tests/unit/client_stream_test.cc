// Tests of the CLI against a scripted in-process fake of corrald on a Unix
// socket: streamed output, exit codes, stdin forwarding, Ctrl-C, JSON, and
// how daemon errors are reported. The real daemon is covered by the
// integration tests.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "client/commands.h"
#include "corral/unique_fd.h"
#include "corral/v1/exec.grpc.pb.h"
#include "corral/v1/images.grpc.pb.h"
#include "corral/v1/sandboxes.grpc.pb.h"
#include "corral/v1/system.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/unit/client_fake_daemon.h"

namespace corral::cli {
namespace {

namespace fs = std::filesystem;
using corral::v1::ExecExit;
using corral::v1::OutputChunk;

OutputChunk Chunk(corral::v1::OutputStream stream, std::string data,
                  uint64_t sequence) {
  OutputChunk chunk;
  chunk.set_stream(stream);
  chunk.set_data(std::move(data));
  chunk.set_sequence(sequence);
  return chunk;
}

// What the fake ExecStream does depends on argv[0]:
//   "greet"  -> "hello\n" on stdout, "warn\n" on stderr, exit 3
//   "cat"    -> echoes stdin until eof, exit 0
//   "wait"   -> waits for a signal message, exits with that signal
//   "slow"   -> timed out after being killed with SIGKILL
//   "hog"    -> OOM-killed
class FakeExec final : public corral::v1::Exec::Service {
 public:
  std::atomic<int> waiting{0};

  grpc::Status ExecStream(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<corral::v1::ExecStreamResponse,
                               corral::v1::ExecStreamRequest>* stream)
      override {
    corral::v1::ExecStreamRequest request;
    if (!stream->Read(&request) || !request.has_start()) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "start first"};
    }
    const corral::v1::ExecStart start = request.start();
    if (start.sandbox_id() != "box1") {
      return {grpc::StatusCode::NOT_FOUND, "no sandbox box1x"};
    }
    corral::v1::ExecStreamResponse response;
    response.mutable_started()->set_pid(42);
    stream->Write(response);
    ExecExit exit;
    const std::string program = start.argv_size() ? start.argv(0) : "";
    uint64_t sequence = 0;
    if (program == "greet") {
      *response.mutable_output() =
          Chunk(corral::v1::OUTPUT_STREAM_STDOUT, "hello\n", sequence++);
      stream->Write(response);
      *response.mutable_output() =
          Chunk(corral::v1::OUTPUT_STREAM_STDERR, "warn\n", sequence++);
      stream->Write(response);
      exit.set_exit_code(3);
    } else if (program == "cat") {
      if (!start.stdin_open()) return {grpc::StatusCode::INTERNAL, "no stdin"};
      while (stream->Read(&request)) {
        if (!request.has_stdin()) continue;
        if (!request.stdin().data().empty()) {
          *response.mutable_output() =
              Chunk(corral::v1::OUTPUT_STREAM_STDOUT, request.stdin().data(),
                    sequence++);
          stream->Write(response);
        }
        if (request.stdin().eof()) break;
      }
    } else if (program == "wait") {
      waiting = 1;
      while (stream->Read(&request)) {
        if (request.payload_case() == request.kSignal) {
          exit.set_signal(request.signal());
          break;
        }
      }
      if (context->IsCancelled()) return grpc::Status::CANCELLED;
    } else if (program == "slow") {
      exit.set_signal(9);
      exit.set_timed_out(true);
    } else if (program == "hog") {
      exit.set_signal(9);
      exit.set_oom_killed(true);
    } else {
      exit.set_exit_code(127);
      exit.set_error("no such file: " + program);
    }
    *response.mutable_exit() = exit;
    stream->Write(response);
    return grpc::Status::OK;
  }
};

class FakeSandboxes final : public corral::v1::Sandboxes::Service {
 public:
  std::atomic<int> running{0};
  corral::v1::CreateSandboxRequest last_create;

  grpc::Status CreateSandbox(grpc::ServerContext*,
                             const corral::v1::CreateSandboxRequest* request,
                             corral::v1::Sandbox* sandbox) override {
    last_create = *request;
    if (request->runtime() == "qemu") {
      // The daemon's own UNAVAILABLE must not read as "cannot reach".
      return {grpc::StatusCode::UNAVAILABLE,
              "runtime qemu is unavailable: /dev/kvm missing"};
    }
    sandbox->set_id("0123456789abcdef0123456789abcdef");
    return grpc::Status::OK;
  }

  grpc::Status Run(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<corral::v1::RunResponse, corral::v1::RunRequest>*
          stream) override {
    corral::v1::RunRequest request;
    if (!stream->Read(&request)) return grpc::Status::CANCELLED;
    corral::v1::RunResponse response;
    response.mutable_created()->set_id("run1");
    stream->Write(response);
    const auto& command = request.start().command();
    if (command.argv_size() && command.argv(0) == "wait") {
      // Like exec's "wait": ends with the first signal the client forwards.
      running = 1;
      while (stream->Read(&request)) {
        if (request.payload_case() == request.kSignal) {
          response.mutable_exit()->set_signal(request.signal());
          stream->Write(response);
          return grpc::Status::OK;
        }
      }
      return grpc::Status::CANCELLED;
    }
    *response.mutable_output() = Chunk(
        corral::v1::OUTPUT_STREAM_STDOUT,
        std::to_string(request.start().sandbox().limits().cpu_millis()), 0);
    stream->Write(response);
    // A gap in the sequence: chunk 1 "lost".
    *response.mutable_output() =
        Chunk(corral::v1::OUTPUT_STREAM_STDOUT, "\xff\n", 2);
    stream->Write(response);
    response.mutable_exit()->set_exit_code(0);
    response.mutable_exit()->set_duration_us(7);
    stream->Write(response);
    return grpc::Status::OK;
  }
};

// Records what an import sent.
class FakeImages final : public corral::v1::Images::Service {
 public:
  ReceivedUpload<corral::v1::ImportImageRequest> upload;

  grpc::Status ImportImage(
      grpc::ServerContext*,
      grpc::ServerReader<corral::v1::ImportImageRequest>* reader,
      corral::v1::Image* image) override {
    const grpc::Status status =
        ReadUpload(reader, &corral::v1::ImportImageRequest::has_metadata,
                   "metadata", upload);
    if (status.ok()) image->set_name(upload.first.metadata().name());
    return status;
  }
};

// The fake daemon, listening on a socket in a fresh directory.
class FakeDaemon {
 public:
  const std::string& socket() const { return server_.socket(); }

  FakeExec exec;
  FakeSandboxes sandboxes;
  FakeImages images;

 private:
  FakeServer server_{{&exec, &sandboxes, &images}};
};

CliRun RunCli(const std::vector<std::string>& args,
              const std::string& input = "") {
  return RunCliCaptured(args, input);
}

TEST_CASE("exec streams output and exits with the command's code",
          "[client][stream]") {
  FakeDaemon daemon;
  CliRun run = RunCli({"--socket", daemon.socket(), "exec", "box1", "--",
                       "greet", "--flag-for-greet"});
  CHECK(run.exit_code == 3);
  CHECK(run.out == "hello\n");
  CHECK(run.err == "warn\n");

  // Without "--", everything from the first positional on is the command.
  CliRun no_separator =
      RunCli({"--socket", daemon.socket(), "exec", "box1", "greet", "-x"});
  CHECK(no_separator.exit_code == 3);
}

TEST_CASE("exec maps timeouts, OOM and start failures", "[client][stream]") {
  FakeDaemon daemon;
  CliRun slow = RunCli({"--socket", daemon.socket(), "exec", "--timeout", "5",
                        "box1", "--", "slow"});
  CHECK(slow.exit_code == 124);
  CHECK(slow.err == "corral: command timed out after 5 s\n");

  CliRun hog = RunCli({"--socket", daemon.socket(), "exec", "box1", "hog"});
  CHECK(hog.exit_code == 137);
  CHECK(hog.err == "corral: command killed: out of memory\n");

  CliRun missing =
      RunCli({"--socket", daemon.socket(), "exec", "box1", "nosuch"});
  CHECK(missing.exit_code == 127);
  CHECK(missing.err == "corral: no such file: nosuch\n");

  CliRun unknown = RunCli({"--socket", daemon.socket(), "exec", "nope", "x"});
  CHECK(unknown.exit_code == 125);
  CHECK(unknown.err == "corral: no sandbox box1x\n");
}

TEST_CASE("exec -i forwards stdin, without -i there is none",
          "[client][stream]") {
  FakeDaemon daemon;
  const std::string input(200000, 'z');
  CliRun cat = RunCli(
      {"--socket", daemon.socket(), "exec", "-i", "box1", "--", "cat"}, input);
  CHECK(cat.exit_code == 0);
  CHECK(cat.out == input);

  CliRun closed =
      RunCli({"--socket", daemon.socket(), "exec", "box1", "--", "cat"});
  CHECK(closed.exit_code == 125);
  CHECK(closed.err == "corral: no stdin\n");
}

TEST_CASE("the first Ctrl-C is forwarded to the command", "[client][stream]") {
  FakeDaemon daemon;
  struct sigaction before;
  ::sigaction(SIGINT, nullptr, &before);
  auto interrupter = std::async(std::launch::async, [&] {
    while (daemon.exec.waiting == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ::kill(::getpid(), SIGINT);
  });
  CliRun run = RunCli({"--socket", daemon.socket(), "exec", "box1", "wait"});
  interrupter.get();
  CHECK(run.exit_code == 130);
  // corral's handler was removed afterwards: the previous one is back.
  struct sigaction after;
  ::sigaction(SIGINT, nullptr, &after);
  CHECK(after.sa_handler == before.sa_handler);
}

TEST_CASE("run sends limits, streams output, warns on gaps, prints JSON",
          "[client][stream]") {
  FakeDaemon daemon;
  CliRun run = RunCli(
      {"--socket", daemon.socket(), "run", "--cpus", "0.5", "--", "anything"});
  CHECK(run.exit_code == 0);
  CHECK(run.out == "500\xff\n");
  CHECK_THAT(run.err, Catch::Contains("output chunk 2 arrived, expected 1"));

  CliRun json = RunCli({"--socket", daemon.socket(), "--json", "run", "--cpus",
                        "2", "--", "anything"});
  CHECK(json.exit_code == 0);
  CHECK(json.out ==
        "{\"sandbox_id\":\"run1\",\"exit_code\":0,\"signal\":0,"
        "\"timed_out\":false,\"oom_killed\":false,"
        "\"stdout\":\"2000\xef\xbf\xbd\\n\",\"stderr\":\"\","
        "\"stdout_truncated\":false,\"stderr_truncated\":false,"
        "\"duration_us\":7,\"error\":\"\"}\n");
}

TEST_CASE("Ctrl-C during run is forwarded to the command", "[client][stream]") {
  FakeDaemon daemon;
  auto interrupter = std::async(std::launch::async, [&] {
    while (daemon.sandboxes.running == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    ::kill(::getpid(), SIGINT);
  });
  CliRun run = RunCli({"--socket", daemon.socket(), "run", "--", "wait"});
  interrupter.get();
  CHECK(run.exit_code == 130);
}

TEST_CASE("create prints the id and daemon errors keep their message",
          "[client][stream]") {
  FakeDaemon daemon;
  CliRun create =
      RunCli({"--socket", daemon.socket(), "create", "--memory", "256",
              "--require", "seccomp", "--label", "a=b", "--no-userns"});
  CHECK(create.exit_code == 0);
  CHECK(create.out == "0123456789abcdef0123456789abcdef\n");
  CHECK(daemon.sandboxes.last_create.limits().memory_mib() == 256);
  CHECK(daemon.sandboxes.last_create.labels().at("a") == "b");
  CHECK(daemon.sandboxes.last_create.runtime_options().at("userns") == "false");

  CliRun unavailable =
      RunCli({"--socket", daemon.socket(), "create", "--runtime", "qemu"});
  CHECK(unavailable.exit_code == 125);
  CHECK(unavailable.err ==
        "corral: runtime qemu is unavailable: /dev/kvm missing\n");

  CliRun timeout =
      RunCli({"--socket", daemon.socket(), "create", "--timeout", "3"});
  CHECK(timeout.exit_code == 125);
  CHECK_THAT(timeout.err, Catch::StartsWith("corral: --timeout applies to"));

  // A service the fake does not serve: the daemon's answer, not "unreachable".
  CliRun unimplemented = RunCli({"--socket", daemon.socket(), "runtimes"});
  CHECK(unimplemented.exit_code == 125);
  CHECK_THAT(unimplemented.err, !Catch::Contains("cannot reach"));
}

TEST_CASE("image import streams a file, stdin or a packed directory",
          "[client][stream]") {
  FakeDaemon daemon;
  const fs::path work = fs::temp_directory_path() /
                        ("corral-cli-import-" + std::to_string(::getpid()));
  fs::create_directories(work / "tree" / "bin");
  {
    std::ofstream file(work / "rootfs.tar.gz", std::ios::binary);
    file << std::string(3 * 1024 * 1024 + 5, 'q');
  }
  {
    std::ofstream file(work / "tree" / "bin" / "sh", std::ios::binary);
    file << "#!/bin/true";
  }

  CliRun file = RunCli({"--socket", daemon.socket(), "image", "import",
                        "--label", "os=test", "--replace", "img1",
                        (work / "rootfs.tar.gz").string()});
  CHECK(file.exit_code == 0);
  CHECK(file.out == "img1\n");
  CHECK(daemon.images.upload.first.metadata().name() == "img1");
  CHECK(daemon.images.upload.first.metadata().replace());
  CHECK(daemon.images.upload.first.metadata().labels().at("os") == "test");
  CHECK(daemon.images.upload.first.metadata().compression() ==
        corral::v1::COMPRESSION_AUTO);
  const bool same_bytes =
      daemon.images.upload.data == std::string(3 * 1024 * 1024 + 5, 'q');
  CHECK(same_bytes);
  CHECK(daemon.images.upload.largest_chunk == 1024 * 1024);

  CliRun from_stdin = RunCli(
      {"--socket", daemon.socket(), "image", "import", "img2", "-"}, "tar!");
  CHECK(from_stdin.exit_code == 0);
  CHECK(daemon.images.upload.data == "tar!");

  CliRun directory = RunCli({"--socket", daemon.socket(), "image", "import",
                             "img3", (work / "tree").string()});
  CHECK(directory.exit_code == 0);
  CHECK(daemon.images.upload.first.metadata().compression() ==
        corral::v1::COMPRESSION_NONE);
  // A tar: 512-byte blocks, holding the file's name and content.
  CHECK(daemon.images.upload.data.size() % 512 == 0);
  CHECK(daemon.images.upload.data.find("bin/sh") != std::string::npos);
  CHECK(daemon.images.upload.data.find("#!/bin/true") != std::string::npos);

  CliRun missing = RunCli({"--socket", daemon.socket(), "image", "import",
                           "img4", (work / "nope.tar").string()});
  CHECK(missing.exit_code == 125);
  CHECK_THAT(missing.err, Catch::StartsWith("corral: cannot open "));

  std::error_code ignored;
  fs::remove_all(work, ignored);
}

}  // namespace
}  // namespace corral::cli
