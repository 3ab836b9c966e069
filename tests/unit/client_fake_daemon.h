// Scaffolding for testing the CLI against an in-process fake corrald: a
// gRPC server on a Unix socket in a fresh directory, running the CLI with
// its stdin, stdout and stderr on files or on a pseudo-terminal, reading an
// upload the way the daemon does (header first, then data), and a fake of
// the daemon's background processes (FakeProcesses).
#ifndef CORRAL_TESTS_UNIT_CLIENT_FAKE_DAEMON_H_
#define CORRAL_TESTS_UNIT_CLIENT_FAKE_DAEMON_H_

#include <fcntl.h>
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
#include <ctime>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "client/commands.h"
#include "corral/unique_fd.h"
#include "corral/v1/exec.grpc.pb.h"
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

// What a CLI run wrote so far, for a test's driver thread to watch while
// the CLI runs. pread(2) leaves the file offset alone, which the CLI's
// fds 1 and 2 share with these.
class CliOutput {
 public:
  CliOutput(int out, int err) : out_(out), err_(err) {}
  std::string out() const { return Contents(out_); }
  std::string err() const { return Contents(err_); }

 private:
  static std::string Contents(int fd) {
    std::string data;
    char buffer[4096];
    ssize_t got;
    while ((got = ::pread(fd, buffer, sizeof(buffer),
                          static_cast<off_t>(data.size()))) > 0) {
      data.append(buffer, static_cast<size_t>(got));
    }
    return data;
  }

  const int out_;
  const int err_;
};

// How RunCliWith sets up the CLI's fds.
struct CliIo {
  // stdin's content.
  std::string input;
  // stderr goes into stdout's file, so that the order of the two shows.
  bool merge_stderr = false;
  // stdout is a pipe whose reader has gone (`corral ... | head`).
  bool closed_stdout = false;
  // Runs on another thread while the CLI runs, joined after it returns. It
  // must not use Catch's assertions (they are not thread-safe): it records
  // what it saw for the test to check afterwards.
  std::function<void(const CliOutput&)> drive;
};

// Runs the CLI with fds 0, 1 and 2 redirected to files (see CliIo).
inline CliRun RunCliWith(const std::vector<std::string>& args,
                         const CliIo& io) {
  char out_name[] = "/tmp/corral-cli-out-XXXXXX";
  char err_name[] = "/tmp/corral-cli-err-XXXXXX";
  char in_name[] = "/tmp/corral-cli-in-XXXXXX";
  UniqueFd out(::mkstemp(out_name));
  UniqueFd err(::mkstemp(err_name));
  UniqueFd in(::mkstemp(in_name));
  ::unlink(out_name);
  ::unlink(err_name);
  ::unlink(in_name);
  REQUIRE(::write(in.get(), io.input.data(), io.input.size()) ==
          static_cast<ssize_t>(io.input.size()));
  ::lseek(in.get(), 0, SEEK_SET);
  UniqueFd stdout_target(::dup(out.get()));
  if (io.closed_stdout) {
    int pipe_fds[2];
    REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
    ::close(pipe_fds[0]);
    stdout_target.Reset(pipe_fds[1]);
  }
  UniqueFd saved[3] = {UniqueFd(::dup(0)), UniqueFd(::dup(1)),
                       UniqueFd(::dup(2))};
  ::dup2(in.get(), 0);
  ::dup2(stdout_target.get(), 1);
  ::dup2(io.merge_stderr ? out.get() : err.get(), 2);
  const CliOutput output(out.get(), err.get());
  std::thread driver;
  if (io.drive) driver = std::thread([&] { io.drive(output); });
  const int code = corral::cli::RunCli(args);
  for (int fd = 0; fd < 3; ++fd) ::dup2(saved[fd].get(), fd);
  if (driver.joinable()) driver.join();
  return {code, ReadAll(out.get()), ReadAll(err.get())};
}

// Runs the CLI with fds 0, 1 and 2 redirected to files; `input` is stdin.
inline CliRun RunCliCaptured(const std::vector<std::string>& args,
                             const std::string& input = "") {
  CliIo io;
  io.input = input;
  return RunCliWith(args, io);
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

  // RunCliWith with "--socket" of this server first.
  CliRun CliWith(std::vector<std::string> args, const CliIo& io) const {
    args.insert(args.begin(), {"--socket", socket_});
    return RunCliWith(args, io);
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

// A fake of the daemon's background processes: the process calls of the
// Exec service (StartProcess ... RemoveProcess) over an in-memory table, with
// the semantics of exec.proto: processes named by id or tag, output kept as
// pieces at growing offsets (both streams counted together), cursors older
// than the ring reading from its oldest byte and reporting `missed`, a
// cursor past the end refused, and AttachProcess streaming what follows
// until the process exits or the client leaves. Tests set processes up with
// AddSandbox/Add/Write/End, also while the CLI runs, and check Received.
class FakeProcesses final : public corral::v1::Exec::Service {
 public:
  using Process = corral::v1::Process;
  using ReadProcessRequest = corral::v1::ReadProcessRequest;
  using ReadProcessResponse = corral::v1::ReadProcessResponse;

  // What the fake got, in order.
  struct Received {
    std::vector<corral::v1::StartProcessRequest> starts;
    std::vector<corral::v1::GetProcessRequest> gets;
    std::vector<ReadProcessRequest> reads;
    std::vector<ReadProcessRequest> attaches;
    std::vector<corral::v1::SignalProcessRequest> signals;
    std::vector<corral::v1::RemoveProcessRequest> removes;
    // AttachProcess streams that ended because the client cancelled.
    int attach_cancels = 0;
  };

  void AddSandbox(const std::string& sandbox_id) {
    std::lock_guard<std::mutex> lock(mutex_);
    sandboxes_.insert(sandbox_id);
  }

  // Adds `process` to its sandbox (which must have been added), with an
  // empty ring that starts at offset `output_start` (bytes before it were
  // "written" and dropped already).
  void Add(Process process, uint64_t output_start = 0) {
    std::lock_guard<std::mutex> lock(mutex_);
    process.set_output_start(output_start);
    process.set_output_end(output_start);
    entries_.push_back({std::move(process), {}});
  }

  // The process writes `data` on `stream`. False when there is no such
  // process. (Callable from a test's driver thread: no Catch assertions.)
  bool Write(const std::string& sandbox_id, const std::string& process_id,
             corral::v1::OutputStream stream, const std::string& data) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      Entry* entry = FindLocked(sandbox_id, process_id);
      if (entry == nullptr) return false;
      corral::v1::ProcessOutput piece;
      piece.set_stream(stream);
      piece.set_data(data);
      piece.set_offset(entry->process.output_end());
      entry->output.push_back(piece);
      entry->process.set_output_end(entry->process.output_end() + data.size());
    }
    changed_.notify_all();
    return true;
  }

  // The process ends with `exit_code`, or killed by `signal`. False when
  // there is no such process.
  bool End(const std::string& sandbox_id, const std::string& process_id,
           int exit_code, int signal = 0) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      Entry* entry = FindLocked(sandbox_id, process_id);
      if (entry == nullptr) return false;
      entry->process.set_running(false);
      entry->process.set_exit_code(exit_code);
      entry->process.set_signal(signal);
      entry->process.mutable_ended_at()->set_seconds(std::time(nullptr));
    }
    changed_.notify_all();
    return true;
  }

  Received received() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return received_;
  }

  // AttachProcess streams open now.
  int open_attaches() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return open_attaches_;
  }

  grpc::Status StartProcess(grpc::ServerContext*,
                            const corral::v1::StartProcessRequest* request,
                            Process* response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    received_.starts.push_back(*request);
    const corral::v1::ExecStart& start = request->start();
    if (sandboxes_.count(start.sandbox_id()) == 0) {
      return {grpc::StatusCode::NOT_FOUND, "no sandbox " + start.sandbox_id()};
    }
    if (start.argv().empty() == start.shell().empty()) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "exactly one of argv and shell"};
    }
    if (start.stdin_open() || start.output_limit_bytes() != 0) {
      return {grpc::StatusCode::INVALID_ARGUMENT,
              "stdin_open and output_limit_bytes must be unset"};
    }
    if (!request->tag().empty() &&
        FindLocked(start.sandbox_id(), request->tag()) != nullptr) {
      return {grpc::StatusCode::ALREADY_EXISTS,
              "tag " + request->tag() + " is taken"};
    }
    ++started_;
    Process process;
    process.set_sandbox_id(start.sandbox_id());
    process.set_process_id("p" + std::to_string(started_));
    process.set_tag(request->tag());
    if (start.argv().empty()) {
      for (const char* arg : {"/bin/sh", "-c"}) process.add_argv(arg);
      process.add_argv(start.shell());
    } else {
      *process.mutable_argv() = start.argv();
    }
    process.set_pid(1000 + started_);
    process.set_running(true);
    process.mutable_created_at()->set_seconds(std::time(nullptr));
    entries_.push_back({process, {}});
    *response = process;
    return grpc::Status::OK;
  }

  grpc::Status GetProcess(grpc::ServerContext*,
                          const corral::v1::GetProcessRequest* request,
                          Process* response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    received_.gets.push_back(*request);
    Entry* entry = nullptr;
    grpc::Status status =
        Find(request->sandbox_id(), request->process_id(), entry);
    if (status.ok()) *response = entry->process;
    return status;
  }

  grpc::Status ListProcesses(
      grpc::ServerContext*, const corral::v1::ListProcessesRequest* request,
      corral::v1::ListProcessesResponse* response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (sandboxes_.count(request->sandbox_id()) == 0) {
      return {grpc::StatusCode::NOT_FOUND,
              "no sandbox " + request->sandbox_id()};
    }
    for (const Entry& entry : entries_) {
      if (entry.process.sandbox_id() == request->sandbox_id()) {
        *response->add_processes() = entry.process;
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status ReadProcess(grpc::ServerContext*,
                           const ReadProcessRequest* request,
                           ReadProcessResponse* response) override {
    std::unique_lock<std::mutex> lock(mutex_);
    received_.reads.push_back(*request);
    Entry* entry = nullptr;
    grpc::Status status =
        Find(request->sandbox_id(), request->process_id(), entry);
    if (!status.ok()) return status;
    if (request->wait_ms() > 0) {
      changed_.wait_for(
          lock, std::chrono::milliseconds(request->wait_ms()), [&] {
            return entry->process.output_end() > request->cursor() ||
                   !entry->process.running();
          });
    }
    return Slice(*entry, request->cursor(), request->max_bytes(), *response);
  }

  grpc::Status AttachProcess(
      grpc::ServerContext* context, const ReadProcessRequest* request,
      grpc::ServerWriter<ReadProcessResponse>* writer) override {
    std::unique_lock<std::mutex> lock(mutex_);
    received_.attaches.push_back(*request);
    Entry* entry = nullptr;
    grpc::Status status =
        Find(request->sandbox_id(), request->process_id(), entry);
    if (!status.ok()) return status;
    ++open_attaches_;
    uint64_t cursor = request->cursor();
    bool first = true;
    while (true) {
      ReadProcessResponse response;
      status = Slice(*entry, cursor, request->max_bytes(), response);
      if (!status.ok()) break;
      if (first || !response.output().empty() || response.exited()) {
        // `missed` and the process go on the first response, the process
        // also on the last.
        if (!first) response.clear_missed();
        if (!first && !response.exited()) response.clear_process();
        first = false;
        cursor = response.next_cursor();
        lock.unlock();
        const bool written = writer->Write(response);
        lock.lock();
        if (!written || response.exited()) break;
        continue;
      }
      if (context->IsCancelled()) break;
      // `entry` stays valid (a list's elements do not move) as long as
      // tests do not remove a process they attach to.
      changed_.wait_for(lock, std::chrono::milliseconds(20));
    }
    if (context->IsCancelled()) ++received_.attach_cancels;
    --open_attaches_;
    return status;
  }

  grpc::Status SignalProcess(grpc::ServerContext*,
                             const corral::v1::SignalProcessRequest* request,
                             Process* response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    received_.signals.push_back(*request);
    Entry* entry = nullptr;
    grpc::Status status =
        Find(request->sandbox_id(), request->process_id(), entry);
    if (!status.ok()) return status;
    if (!entry->process.running()) {
      return {grpc::StatusCode::FAILED_PRECONDITION,
              "process " + request->process_id() + " has exited"};
    }
    *response = entry->process;
    return grpc::Status::OK;
  }

  grpc::Status RemoveProcess(grpc::ServerContext*,
                             const corral::v1::RemoveProcessRequest* request,
                             Process* response) override {
    std::lock_guard<std::mutex> lock(mutex_);
    received_.removes.push_back(*request);
    Entry* entry = nullptr;
    grpc::Status status =
        Find(request->sandbox_id(), request->process_id(), entry);
    if (!status.ok()) return status;
    *response = entry->process;
    if (response->running()) {
      response->set_running(false);
      response->set_signal(9);
    }
    entries_.remove_if([entry](const Entry& e) { return &e == entry; });
    return grpc::Status::OK;
  }

 private:
  struct Entry {
    Process process;
    // The ring: pieces from output_start to output_end, in order.
    std::vector<corral::v1::ProcessOutput> output;
  };

  Entry* FindLocked(const std::string& sandbox_id, const std::string& name) {
    for (Entry& entry : entries_) {
      if (entry.process.sandbox_id() != sandbox_id) continue;
      if (entry.process.process_id() == name ||
          (!entry.process.tag().empty() && entry.process.tag() == name)) {
        return &entry;
      }
    }
    return nullptr;
  }

  grpc::Status Find(const std::string& sandbox_id, const std::string& name,
                    Entry*& entry) {
    if (sandboxes_.count(sandbox_id) == 0) {
      return {grpc::StatusCode::NOT_FOUND, "no sandbox " + sandbox_id};
    }
    entry = FindLocked(sandbox_id, name);
    if (entry == nullptr) {
      return {grpc::StatusCode::NOT_FOUND,
              "no process " + name + " in sandbox " + sandbox_id};
    }
    return grpc::Status::OK;
  }

  // The output from `cursor`, at most `max_bytes` (0: 64 KiB), as
  // ReadProcess answers.
  static grpc::Status Slice(const Entry& entry, uint64_t cursor,
                            uint32_t max_bytes, ReadProcessResponse& response) {
    const Process& process = entry.process;
    if (cursor > process.output_end()) {
      return {grpc::StatusCode::OUT_OF_RANGE,
              "cursor " + std::to_string(cursor) + " is past the end " +
                  std::to_string(process.output_end())};
    }
    const uint64_t from = std::max(cursor, process.output_start());
    response.set_missed(from - cursor);
    uint64_t budget = max_bytes != 0 ? max_bytes : 64 << 10;
    uint64_t position = from;
    for (const corral::v1::ProcessOutput& piece : entry.output) {
      const uint64_t piece_end = piece.offset() + piece.data().size();
      if (budget == 0) break;
      if (piece_end <= position) continue;
      const uint64_t skip = position - piece.offset();
      const uint64_t take = std::min<uint64_t>(piece_end - position, budget);
      corral::v1::ProcessOutput* out = response.add_output();
      out->set_stream(piece.stream());
      out->set_offset(position);
      out->set_data(piece.data().substr(skip, take));
      position += take;
      budget -= take;
    }
    response.set_next_cursor(position);
    response.set_exited(!process.running() && position == process.output_end());
    *response.mutable_process() = process;
    return grpc::Status::OK;
  }

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::set<std::string> sandboxes_;
  // Oldest first, as ListProcesses answers.
  std::list<Entry> entries_;
  int started_ = 0;
  int open_attaches_ = 0;
  Received received_;
};

}  // namespace corral::cli

#endif  // CORRAL_TESTS_UNIT_CLIENT_FAKE_DAEMON_H_
