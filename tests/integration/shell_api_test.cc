// Shells through the API: a real pty in a real sandbox, output kept in the
// daemon's ring and read back through cursors and attached streams. Typing
// into a shell on a terminal is checked on every runtime by the conformance
// suite (tests/conformance/).
#include <unistd.h>

#include <catch2/catch.hpp>

#include "corral/v1/shells.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace corral::testing {
namespace {

namespace v1 = corral::v1;

struct ShellApi {
  explicit ShellApi(const Daemon& daemon)
      : shells(v1::Shells::NewStub(daemon.Channel())) {}

  v1::Shell Open(const std::string& id, std::vector<std::string> argv = {},
                 uint32_t rows = 0, uint32_t columns = 0) {
    grpc::ClientContext context;
    v1::OpenShellRequest request;
    request.set_sandbox_id(id);
    for (auto& arg : argv) request.add_argv(arg);
    request.mutable_size()->set_rows(rows);
    request.mutable_size()->set_columns(columns);
    v1::Shell shell;
    auto status = shells->OpenShell(&context, request, &shell);
    INFO(status.error_message());
    REQUIRE(status.ok());
    return shell;
  }

  void Write(const v1::Shell& shell, const std::string& text) {
    grpc::ClientContext context;
    v1::WriteShellRequest request;
    request.set_sandbox_id(shell.sandbox_id());
    request.set_shell_id(shell.shell_id());
    request.set_input(text);
    v1::WriteShellResponse response;
    auto status = shells->WriteShell(&context, request, &response);
    INFO(status.error_message());
    REQUIRE(status.ok());
  }

  v1::ReadShellResponse Read(const v1::Shell& shell, uint64_t cursor,
                             uint32_t max = 0) {
    grpc::ClientContext context;
    v1::ReadShellRequest request;
    request.set_sandbox_id(shell.sandbox_id());
    request.set_shell_id(shell.shell_id());
    request.set_cursor(cursor);
    request.set_max_bytes(max);
    v1::ReadShellResponse response;
    auto status = shells->ReadShell(&context, request, &response);
    INFO(status.error_message());
    REQUIRE(status.ok());
    return response;
  }

  // Reads from *cursor until `needle` shows up in what was read (or 10 s
  // pass); returns everything read.
  std::string ReadUntil(const v1::Shell& shell, uint64_t* cursor,
                        const std::string& needle) {
    std::string seen;
    for (int i = 0; i < 200; ++i) {
      auto r = Read(shell, *cursor);
      seen += r.output();
      *cursor = r.next_cursor();
      if (seen.find(needle) != std::string::npos) return seen;
      if (r.output().empty()) usleep(50000);
    }
    return seen;
  }

  v1::Shell Get(const v1::Shell& shell) {
    grpc::ClientContext context;
    v1::ListShellsRequest request;
    request.set_sandbox_id(shell.sandbox_id());
    v1::ListShellsResponse response;
    REQUIRE(shells->ListShells(&context, request, &response).ok());
    for (const auto& s : response.shells()) {
      if (s.shell_id() == shell.shell_id()) return s;
    }
    FAIL("shell not listed");
    return {};
  }

  std::unique_ptr<v1::Shells::Stub> shells;
};

TEST_CASE(
    "a client that detaches and comes back continues from its cursor with "
    "nothing lost or repeated") {
  Daemon daemon;
  ShellApi api(daemon);
  const std::string id = daemon.CreateSandbox();
  v1::Shell shell = api.Open(
      id, {"sh", "-c",
           "stty -echo; for i in $(seq 1 300); do echo line$i; sleep 0.005; "
           "done; exit 0"});
  std::string collected;
  uint64_t cursor = 0;
  // Two attachments in turn, each cancelled after some output.
  for (int round = 0; round < 2; ++round) {
    grpc::ClientContext context;
    auto stream = api.shells->AttachShell(&context);
    v1::AttachShellRequest attach;
    attach.mutable_attach()->set_sandbox_id(id);
    attach.mutable_attach()->set_shell_id(shell.shell_id());
    attach.mutable_attach()->set_cursor(cursor);
    REQUIRE(stream->Write(attach));
    v1::AttachShellResponse response;
    int messages = 0;
    while (messages < 3 && stream->Read(&response)) {
      if (response.output().empty()) continue;
      CHECK(response.offset() == cursor);
      collected += response.output();
      cursor = response.offset() + response.output().size();
      ++messages;
    }
    context.TryCancel();
    stream->Finish();
  }
  // The rest through the cursor calls, after the shell is done.
  for (int i = 0; i < 200 && api.Get(shell).running(); ++i) usleep(50000);
  for (;;) {
    auto r = api.Read(shell, cursor);
    CHECK(r.missed() == 0);
    CHECK(r.offset() == cursor);
    collected += r.output();
    cursor = r.next_cursor();
    if (r.exited()) break;
  }
  std::string expected;
  for (int i = 1; i <= 300; ++i)
    expected += "line" + std::to_string(i) + "\r\n";
  CHECK(collected == expected);
}

TEST_CASE(
    "output beyond the ring is dropped oldest first, the reader learns how "
    "much it missed, and the daemon's memory stays bounded") {
  Daemon daemon;
  ShellApi api(daemon);
  const std::string id = daemon.CreateSandbox();
  const long before = ProcStatusKib(daemon.pid(), "VmHWM");
  v1::Shell shell = api.Open(
      id, {"sh", "-c", "head -c 200000000 /dev/zero | tr '\\0' x; exit 0"});
  for (int i = 0; i < 1200 && api.Get(shell).running(); ++i) usleep(50000);
  v1::Shell done = api.Get(shell);
  REQUIRE_FALSE(done.running());
  CHECK(done.output_end() >= 200000000);
  CHECK(done.output_end() - done.output_start() == 1 << 20);
  auto r = api.Read(shell, 0, 4096);
  CHECK(r.missed() == done.output_start());
  CHECK(r.offset() == done.output_start());
  CHECK(r.output() == std::string(4096, 'x'));
  const long peak = ProcStatusKib(daemon.pid(), "VmHWM");
  INFO("daemon peak RSS " << before << " -> " << peak << " KiB");
#ifndef __SANITIZE_ADDRESS__
  CHECK(peak - before < 64 * 1024);
#else
  // ASan's quarantine keeps freed buffers (256 MiB by default): the peak
  // says nothing about the daemon's own use.
  WARN("ASan build: memory bound not checked");
#endif
}

TEST_CASE("shells are listed, closed, and bounded per sandbox") {
  Daemon daemon;
  ShellApi api(daemon);
  const std::string id = daemon.CreateSandbox();
  v1::Shell a = api.Open(id);
  v1::Shell b = api.Open(id, {"sleep", "1000"});
  grpc::ClientContext list_context;
  v1::ListShellsRequest list;
  list.set_sandbox_id(id);
  v1::ListShellsResponse listed;
  REQUIRE(api.shells->ListShells(&list_context, list, &listed).ok());
  REQUIRE(listed.shells_size() == 2);
  CHECK(listed.shells(0).shell_id() == a.shell_id());
  CHECK(listed.shells(1).argv(0) == "sleep");

  grpc::ClientContext close_context;
  v1::CloseShellRequest close;
  close.set_sandbox_id(id);
  close.set_shell_id(b.shell_id());
  v1::Shell closed;
  REQUIRE(api.shells->CloseShell(&close_context, close, &closed).ok());
  CHECK_FALSE(closed.running());
  grpc::ClientContext again;
  CHECK(api.shells->CloseShell(&again, close, &closed).error_code() ==
        grpc::StatusCode::NOT_FOUND);
  // The sleep is gone from the sandbox.
  auto ps = daemon.Cli({"exec", id, "--", "sh", "-c", "ps -eo comm"});
  CHECK(ps.out.find("sleep") == std::string::npos);

  grpc::ClientContext bad_context;
  v1::ReadShellRequest bad;
  bad.set_sandbox_id(id);
  bad.set_shell_id(a.shell_id());
  bad.set_cursor(1ull << 40);
  v1::ReadShellResponse ignored;
  CHECK(api.shells->ReadShell(&bad_context, bad, &ignored).error_code() ==
        grpc::StatusCode::OUT_OF_RANGE);
}

}  // namespace
}  // namespace corral::testing
