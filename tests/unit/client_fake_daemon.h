// Scaffolding for testing the CLI against an in-process fake corrald: a
// gRPC server on a Unix socket in a fresh directory, running the CLI with
// its stdin, stdout and stderr on files or on a pseudo-terminal, and reading
// an upload the way the daemon does (header first, then data).
#ifndef CORRAL_TESTS_UNIT_CLIENT_FAKE_DAEMON_H_
#define CORRAL_TESTS_UNIT_CLIENT_FAKE_DAEMON_H_

#include <poll.h>
#include <pty.h>
#include <stdlib.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
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

// The master side of the pseudo-terminal that RunCliOnPty gives the CLI:
// what the test types, and everything the CLI wrote so far. Used from the
// test's driver thread while the CLI runs on the test's main thread.
class PtyMaster {
 public:
  PtyMaster(int master, int slave) : master_(master), slave_(slave) {}

  int slave() const { return slave_; }

  // Types `keys` (one write, so the CLI normally reads them in one go).
  bool Type(const std::string& keys) const {
    return ::write(master_, keys.data(), keys.size()) ==
           static_cast<ssize_t>(keys.size());
  }

  // Everything the CLI wrote to the terminal until now.
  std::string output() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return output_;
  }

  // Reads what the CLI writes until Stop(); runs on its own thread, so the
  // CLI never blocks on a full terminal.
  void Collect() {
    while (!stop_.load()) {
      struct pollfd fd = {master_, POLLIN, 0};
      if (::poll(&fd, 1, 20) <= 0) continue;
      char buffer[4096];
      const ssize_t got = ::read(master_, buffer, sizeof(buffer));
      if (got <= 0) continue;
      std::lock_guard<std::mutex> lock(mutex_);
      output_.append(buffer, static_cast<size_t>(got));
    }
  }
  void Stop() { stop_.store(true); }

 private:
  const int master_;
  const int slave_;
  mutable std::mutex mutex_;
  std::string output_;
  std::atomic<bool> stop_{false};
};

struct PtyRun {
  int exit_code = -1;
  // What the CLI wrote to the terminal (stdout and stderr both).
  std::string output;
  // The terminal's settings before and after the CLI ran.
  struct termios before = {};
  struct termios after = {};
};

// Runs the CLI with fds 0, 1 and 2 on the slave side of a new pty of
// `size`, while `drive` gets the master on another thread. `drive` must not
// use Catch's assertions (they are not thread-safe): it records what it
// saw for the test to check afterwards.
inline PtyRun RunCliOnPty(const std::vector<std::string>& args,
                          struct winsize size,
                          const std::function<void(PtyMaster&)>& drive) {
  int master_fd = -1;
  int slave_fd = -1;
  REQUIRE(::openpty(&master_fd, &slave_fd, nullptr, nullptr, &size) == 0);
  UniqueFd master(master_fd);
  UniqueFd slave(slave_fd);
  PtyRun run;
  REQUIRE(::tcgetattr(slave.get(), &run.before) == 0);

  PtyMaster terminal(master.get(), slave.get());
  std::thread collector([&terminal] { terminal.Collect(); });
  std::thread driver([&terminal, &drive] { drive(terminal); });
  UniqueFd saved[3] = {UniqueFd(::dup(0)), UniqueFd(::dup(1)),
                       UniqueFd(::dup(2))};
  for (int fd = 0; fd < 3; ++fd) ::dup2(slave.get(), fd);
  run.exit_code = corral::cli::RunCli(args);
  for (int fd = 0; fd < 3; ++fd) ::dup2(saved[fd].get(), fd);
  driver.join();
  ::tcgetattr(slave.get(), &run.after);
  // Let the last output through before the collector stops.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  terminal.Stop();
  collector.join();
  run.output = terminal.output();
  return run;
}

// True when two terminal settings are the same in every field a program
// changes (flags and control characters).
inline bool SameTerminalSettings(const struct termios& a,
                                 const struct termios& b) {
  return a.c_iflag == b.c_iflag && a.c_oflag == b.c_oflag &&
         a.c_cflag == b.c_cflag && a.c_lflag == b.c_lflag &&
         std::equal(std::begin(a.c_cc), std::end(a.c_cc), std::begin(b.c_cc));
}

// Waits up to `timeout` for `condition`, polling; true when it held.
inline bool Eventually(
    const std::function<bool()>& condition,
    std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
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
