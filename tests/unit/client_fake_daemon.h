// Scaffolding for testing the CLI against an in-process fake corrald: a
// gRPC server on a Unix socket in a fresh directory, running the CLI with
// its stdin, stdout and stderr on files, and reading an upload the way the
// daemon does (header first, then data).
#ifndef CORRAL_TESTS_UNIT_CLIENT_FAKE_DAEMON_H_
#define CORRAL_TESTS_UNIT_CLIENT_FAKE_DAEMON_H_

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "client/commands.h"
#include "corral/unique_fd.h"
#include "grpcpp/grpcpp.h"
#include "tests/test_util.h"

namespace corral::cli {

struct CliRun {
  int exit_code;
  std::string out;
  std::string err;
};

inline std::string ReadAll(int fd) {
  std::string data;
  char buffer[4096];
  ::lseek(fd, 0, SEEK_SET);
  ssize_t got;
  while ((got = ::read(fd, buffer, sizeof(buffer))) > 0) {
    data.append(buffer, static_cast<size_t>(got));
  }
  return data;
}

// Runs the CLI with fds 0, 1 and 2 redirected to files; `input` is stdin.
inline CliRun RunCliCaptured(const std::vector<std::string>& args,
                             const std::string& input = "") {
  char out_name[] = "/tmp/corral-cli-out-XXXXXX";
  char err_name[] = "/tmp/corral-cli-err-XXXXXX";
  char in_name[] = "/tmp/corral-cli-in-XXXXXX";
  UniqueFd out(::mkstemp(out_name));
  UniqueFd err(::mkstemp(err_name));
  UniqueFd in(::mkstemp(in_name));
  ::unlink(out_name);
  ::unlink(err_name);
  ::unlink(in_name);
  REQUIRE(::write(in.get(), input.data(), input.size()) ==
          static_cast<ssize_t>(input.size()));
  ::lseek(in.get(), 0, SEEK_SET);
  UniqueFd saved[3] = {UniqueFd(::dup(0)), UniqueFd(::dup(1)),
                       UniqueFd(::dup(2))};
  ::dup2(in.get(), 0);
  ::dup2(out.get(), 1);
  ::dup2(err.get(), 2);
  const int code = corral::cli::RunCli(args);
  for (int fd = 0; fd < 3; ++fd) ::dup2(saved[fd].get(), fd);
  return {code, ReadAll(out.get()), ReadAll(err.get())};
}

// A gRPC server with `services` on "corrald.sock" in a fresh directory. The
// services must outlive it.
class FakeServer {
 public:
  explicit FakeServer(const std::vector<grpc::Service*>& services) {
    socket_ = (directory_.path() / "corrald.sock").string();
    grpc::ServerBuilder builder;
    builder.AddListeningPort("unix:" + socket_,
                             grpc::InsecureServerCredentials());
    for (grpc::Service* service : services) builder.RegisterService(service);
    server_ = builder.BuildAndStart();
    REQUIRE(server_ != nullptr);
  }
  ~FakeServer() {
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::seconds(2));
  }
  FakeServer(const FakeServer&) = delete;
  FakeServer& operator=(const FakeServer&) = delete;

  const std::string& socket() const { return socket_; }

  // RunCliCaptured with "--socket" of this server first.
  CliRun Cli(std::vector<std::string> args,
             const std::string& input = "") const {
    args.insert(args.begin(), {"--socket", socket_});
    return RunCliCaptured(args, input);
  }

 private:
  corral::testing::TempDir directory_{"corral-cli-fake"};
  std::string socket_;
  std::unique_ptr<grpc::Server> server_;
};

// What a client-streaming upload carried: the first message (its header)
// and the data of the rest, concatenated.
template <typename Request>
struct ReceivedUpload {
  Request first;
  std::string data;
  size_t largest_chunk = 0;
};

// Reads an upload as the daemon does: the first message must carry the
// header (`has_header`), no later one may. `what` names the header in the
// errors ("metadata first", "metadata twice").
template <typename Request>
grpc::Status ReadUpload(grpc::ServerReader<Request>* reader,
                        bool (Request::*has_header)() const,
                        const std::string& what,
                        ReceivedUpload<Request>& upload) {
  upload = ReceivedUpload<Request>();
  if (!reader->Read(&upload.first) || !(upload.first.*has_header)()) {
    return {grpc::StatusCode::INVALID_ARGUMENT, what + " first"};
  }
  Request request;
  while (reader->Read(&request)) {
    if ((request.*has_header)()) {
      return {grpc::StatusCode::INVALID_ARGUMENT, what + " twice"};
    }
    upload.largest_chunk =
        std::max(upload.largest_chunk, request.data().size());
    upload.data += request.data();
  }
  return grpc::Status::OK;
}

}  // namespace corral::cli

#endif  // CORRAL_TESTS_UNIT_CLIENT_FAKE_DAEMON_H_
