// A client of one shell through the Shells API, as the conformance cases
// use it: open, type, read on from a cursor, resize, wait for the exit.
#ifndef CORRAL_TESTS_CONFORMANCE_SHELL_CLIENT_H_
#define CORRAL_TESTS_CONFORMANCE_SHELL_CLIENT_H_

#include <unistd.h>

#include <catch2/catch.hpp>
#include <memory>
#include <string>

#include "corral/v1/shells.grpc.pb.h"
#include "tests/conformance/conformance.h"

namespace corral::testing::conformance {

class ShellClient {
 public:
  ShellClient(const Daemon& daemon, const std::string& sandbox_id)
      : shells_(v1::Shells::NewStub(daemon.Channel())),
        sandbox_id_(sandbox_id) {}

  void Open(uint32_t rows, uint32_t columns) {
    grpc::ClientContext context;
    v1::OpenShellRequest request;
    request.set_sandbox_id(sandbox_id_);
    request.mutable_size()->set_rows(rows);
    request.mutable_size()->set_columns(columns);
    auto status = shells_->OpenShell(&context, request, &shell_);
    INFO(status.error_message());
    REQUIRE(status.ok());
  }

  void Write(const std::string& text) {
    grpc::ClientContext context;
    v1::WriteShellRequest request;
    request.set_sandbox_id(sandbox_id_);
    request.set_shell_id(shell_.shell_id());
    request.set_input(text);
    v1::WriteShellResponse response;
    auto status = shells_->WriteShell(&context, request, &response);
    INFO(status.error_message());
    REQUIRE(status.ok());
  }

  // Output from `cursor`, as it is now.
  v1::ReadShellResponse Read(uint64_t cursor) {
    grpc::ClientContext context;
    v1::ReadShellRequest request;
    request.set_sandbox_id(sandbox_id_);
    request.set_shell_id(shell_.shell_id());
    request.set_cursor(cursor);
    v1::ReadShellResponse response;
    auto status = shells_->ReadShell(&context, request, &response);
    INFO(status.error_message());
    REQUIRE(status.ok());
    return response;
  }

  // Reads on until `needle` shows up (or 10 s pass); what was read.
  std::string ReadUntil(const std::string& needle) {
    std::string seen;
    for (int i = 0; i < 200 && seen.find(needle) == std::string::npos; ++i) {
      v1::ReadShellResponse response = Read(cursor_);
      seen += response.output();
      cursor_ = response.next_cursor();
      if (response.output().empty()) usleep(50000);
    }
    return seen;
  }

  void Resize(uint32_t rows, uint32_t columns) {
    grpc::ClientContext context;
    v1::ResizeShellRequest request;
    request.set_sandbox_id(sandbox_id_);
    request.set_shell_id(shell_.shell_id());
    request.mutable_size()->set_rows(rows);
    request.mutable_size()->set_columns(columns);
    v1::Shell resized;
    REQUIRE(shells_->ResizeShell(&context, request, &resized).ok());
    CHECK(resized.size().columns() == columns);
  }

  v1::Shell Get() {
    grpc::ClientContext context;
    v1::ListShellsRequest request;
    request.set_sandbox_id(sandbox_id_);
    v1::ListShellsResponse response;
    REQUIRE(shells_->ListShells(&context, request, &response).ok());
    for (const auto& s : response.shells()) {
      if (s.shell_id() == shell_.shell_id()) return s;
    }
    FAIL("shell not listed");
    return {};
  }

  // Waits up to 5 s for the shell to end; its last view.
  v1::Shell WaitExit() {
    for (int i = 0; i < 100 && Get().running(); ++i) usleep(50000);
    return Get();
  }

  // After a daemon restart: a new channel.
  void Reconnect(const Daemon& daemon) {
    shells_ = v1::Shells::NewStub(daemon.Channel());
  }
  // The next ReadUntil starts over from the oldest byte kept.
  void Rewind() { cursor_ = 0; }

  const v1::Shell& shell() const { return shell_; }

 private:
  std::unique_ptr<v1::Shells::Stub> shells_;
  std::string sandbox_id_;
  v1::Shell shell_;
  uint64_t cursor_ = 0;
};

}  // namespace corral::testing::conformance

#endif  // CORRAL_TESTS_CONFORMANCE_SHELL_CLIENT_H_
