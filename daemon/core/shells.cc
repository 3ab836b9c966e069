#include "daemon/core/shells.h"

#include <signal.h>
#include <sys/random.h>

#include <algorithm>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "corral/status_macros.h"
#include "google/protobuf/util/time_util.h"

namespace corral::daemon {
namespace {

namespace v1 = corral::v1;

constexpr size_t kMaxInputBytes = 64 << 10;
constexpr size_t kDefaultReadBytes = 64 << 10;
constexpr uint32_t kMaxTerminalSide = 1000;
// How often a pump thread looks up from the agent to see whether it should
// stop.
constexpr absl::Duration kPumpSlice = absl::Milliseconds(200);

absl::StatusOr<std::string> NewShellId() {
  unsigned char bytes[8];
  if (::getrandom(bytes, sizeof(bytes), 0) != sizeof(bytes)) {
    return absl::InternalError("getrandom failed");
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

absl::Status ValidateSize(const v1::TerminalSize& size) {
  if (size.rows() > kMaxTerminalSide || size.columns() > kMaxTerminalSide) {
    return absl::InvalidArgumentError(absl::StrCat(
        "size: ", size.rows(), "x", size.columns(), " is larger than ",
        kMaxTerminalSide, "x", kMaxTerminalSide));
  }
  return absl::OkStatus();
}

v1::TerminalSize WithDefaults(v1::TerminalSize size) {
  if (size.rows() == 0) size.set_rows(24);
  if (size.columns() == 0) size.set_columns(80);
  return size;
}

}  // namespace

void OutputRing::Append(std::string_view data) {
  const size_t capacity = buffer_.size();
  if (data.size() > capacity) {
    end_ += data.size() - capacity;
    data.remove_prefix(data.size() - capacity);
  }
  for (size_t done = 0; done < data.size();) {
    const size_t at = static_cast<size_t>(end_ % capacity);
    const size_t n = std::min(data.size() - done, capacity - at);
    std::copy_n(data.data() + done, n, buffer_.data() + at);
    done += n;
    end_ += n;
  }
}

absl::StatusOr<OutputRing::Slice> OutputRing::Read(uint64_t cursor,
                                                   size_t max_bytes) const {
  if (cursor > end_) {
    return absl::OutOfRangeError(absl::StrCat(
        "cursor ", cursor, " is past the end of the output (", end_, ")"));
  }
  Slice slice;
  const uint64_t first = start();
  if (cursor < first) {
    slice.missed = first - cursor;
    cursor = first;
  }
  slice.offset = cursor;
  const size_t capacity = buffer_.size();
  size_t n = static_cast<size_t>(std::min<uint64_t>(end_ - cursor, max_bytes));
  slice.data.reserve(n);
  while (n > 0) {
    const size_t at = static_cast<size_t>(cursor % capacity);
    const size_t chunk = std::min(n, capacity - at);
    slice.data.append(buffer_.data() + at, chunk);
    cursor += chunk;
    n -= chunk;
  }
  return slice;
}

struct Shells::Shell {
  Shell(size_t ring_bytes) : ring(ring_bytes) {}
  std::string sandbox_id, shell_id;
  std::vector<std::string> argv;
  absl::Time created_at;

  std::mutex mutex;  // guards the fields below
  std::condition_variable changed;
  OutputRing ring;
  v1::TerminalSize size;
  bool running = true;
  int exit_code = 0;
  int signal = 0;
  bool stopping = false;

  // Serializes input, resizes and signals, and guards `session` against
  // Stop. The pump thread calls session->Next without it (ExecSession
  // allows one other thread beside the reader).
  std::mutex input_mutex;
  std::unique_ptr<ExecSession> session;
  std::thread pump;
};

Shells::~Shells() {
  std::map<std::string, std::map<std::string, std::shared_ptr<Shell>>> all;
  {
    std::lock_guard lock(mutex_);
    all.swap(shells_);
  }
  for (auto& [sandbox, shells] : all) {
    for (auto& [id, shell] : shells) Stop(shell);
  }
}

void Shells::Pump(Shell* shell) {
  ExecSession* session = shell->session.get();
  for (;;) {
    {
      std::lock_guard lock(shell->mutex);
      if (shell->stopping) return;
    }
    auto event = session->Next(absl::Now() + kPumpSlice);
    if (!event.ok() && absl::IsDeadlineExceeded(event.status())) continue;
    std::lock_guard lock(shell->mutex);
    if (!event.ok()) {
      // The agent went away (the sandbox ended or the daemon stops).
      shell->running = false;
      shell->signal = SIGKILL;
      shell->changed.notify_all();
      return;
    }
    if (event->kind == ExecEvent::Kind::kOutput) {
      shell->ring.Append(event->data);
    } else if (event->kind == ExecEvent::Kind::kExit) {
      shell->running = false;
      shell->exit_code = event->exit.exit_code();
      shell->signal = event->exit.signal();
      shell->changed.notify_all();
      return;
    }
    shell->changed.notify_all();
  }
}

void Shells::Stop(const std::shared_ptr<Shell>& shell) {
  {
    std::lock_guard lock(shell->mutex);
    shell->stopping = true;
  }
  if (shell->pump.joinable()) shell->pump.join();
  std::lock_guard input(shell->input_mutex);
  // Ending the session kills what still runs of it.
  shell->session.reset();
  std::lock_guard lock(shell->mutex);
  if (shell->running) {
    shell->running = false;
    shell->signal = SIGKILL;
  }
  shell->changed.notify_all();
}

v1::Shell Shells::View(Shell& shell) {
  v1::Shell view;
  view.set_sandbox_id(shell.sandbox_id);
  view.set_shell_id(shell.shell_id);
  for (const auto& arg : shell.argv) view.add_argv(arg);
  *view.mutable_created_at() =
      google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
          absl::ToUnixMicros(shell.created_at));
  std::lock_guard lock(shell.mutex);
  *view.mutable_size() = shell.size;
  view.set_running(shell.running);
  view.set_exit_code(shell.exit_code);
  view.set_signal(shell.signal);
  view.set_output_start(shell.ring.start());
  view.set_output_end(shell.ring.end());
  return view;
}

absl::StatusOr<std::shared_ptr<Shells::Shell>> Shells::Find(
    const Caller& caller, const std::string& sandbox_id,
    const std::string& shell_id) {
  // Another user's sandbox is NOT_FOUND, and so are its shells.
  RETURN_IF_ERROR(sandboxes_->GetSandbox(caller, sandbox_id).status());
  std::lock_guard lock(mutex_);
  auto sandbox = shells_.find(sandbox_id);
  if (sandbox != shells_.end()) {
    auto it = sandbox->second.find(shell_id);
    if (it != sandbox->second.end()) return it->second;
  }
  return absl::NotFoundError(
      absl::StrCat("no shell ", shell_id, " in sandbox ", sandbox_id));
}

absl::StatusOr<v1::Shell> Shells::Open(const Caller& caller,
                                       const v1::OpenShellRequest& request) {
  RETURN_IF_ERROR(ValidateSize(request.size()));
  {
    std::lock_guard lock(mutex_);
    auto it = shells_.find(request.sandbox_id());
    if (it != shells_.end() && it->second.size() >= limits_.max_per_sandbox) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "sandbox ", request.sandbox_id(), " already has ",
          limits_.max_per_sandbox, " shells, the maximum; close one first"));
    }
  }
  auto shell = std::make_shared<Shell>(limits_.ring_bytes);
  shell->sandbox_id = request.sandbox_id();
  ASSIGN_OR_RETURN(shell->shell_id, NewShellId());
  shell->created_at = absl::Now();
  shell->size = WithDefaults(request.size());
  v1::ExecStart exec;
  exec.set_sandbox_id(request.sandbox_id());
  if (request.argv().empty()) {
    exec.add_argv("/bin/sh");
    exec.add_argv("-i");
  } else {
    *exec.mutable_argv() = request.argv();
  }
  exec.set_cwd(request.cwd());
  exec.mutable_env()->insert(request.env().begin(), request.env().end());
  exec.set_stdin_open(true);
  for (const auto& arg : exec.argv()) shell->argv.push_back(arg);
  const v1::TerminalSize size = shell->size;
  ASSIGN_OR_RETURN(shell->session,
                   sandboxes_->StartSession(
                       caller, exec, [&](corral::agent::v1::ExecStart& start) {
                         start.mutable_pty()->set_rows(size.rows());
                         start.mutable_pty()->set_columns(size.columns());
                         // The ring bounds what is kept; a shell
                         // runs until it exits or is closed.
                         start.set_output_limit_bytes(0);
                         start.set_timeout_ms(0);
                         start.set_stdin_open(true);
                       }));
  shell->pump = std::thread(&Shells::Pump, shell.get());
  {
    std::lock_guard lock(mutex_);
    shells_[shell->sandbox_id][shell->shell_id] = shell;
  }
  return View(*shell);
}

absl::StatusOr<v1::ReadShellResponse> Shells::Read(
    const Caller& caller, const v1::ReadShellRequest& request) {
  return WaitRead(caller, request, absl::InfinitePast());
}

absl::StatusOr<v1::ReadShellResponse> Shells::WaitRead(
    const Caller& caller, const v1::ReadShellRequest& request,
    absl::Time deadline) {
  ASSIGN_OR_RETURN(auto shell,
                   Find(caller, request.sandbox_id(), request.shell_id()));
  const size_t max = request.max_bytes() == 0
                         ? kDefaultReadBytes
                         : std::min<size_t>(request.max_bytes(), 4 << 20);
  std::unique_lock lock(shell->mutex);
  while (shell->running && shell->ring.end() <= request.cursor() &&
         absl::Now() < deadline) {
    const absl::Duration left = deadline - absl::Now();
    shell->changed.wait_for(lock, absl::ToChronoNanoseconds(left));
  }
  ASSIGN_OR_RETURN(auto slice, shell->ring.Read(request.cursor(), max));
  v1::ReadShellResponse response;
  response.set_offset(slice.offset);
  response.set_next_cursor(slice.offset + slice.data.size());
  response.set_missed(slice.missed);
  response.set_exited(!shell->running &&
                      response.next_cursor() == shell->ring.end());
  response.set_output(std::move(slice.data));
  return response;
}

absl::Status Shells::Write(const Caller& caller,
                           const v1::WriteShellRequest& request) {
  if (request.input().size() > kMaxInputBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("input: more than ", kMaxInputBytes, " bytes"));
  }
  ASSIGN_OR_RETURN(auto shell,
                   Find(caller, request.sandbox_id(), request.shell_id()));
  std::string input = request.input();
  if (request.newline()) input.push_back('\n');
  std::lock_guard input_lock(shell->input_mutex);
  if (!shell->session) {
    return absl::FailedPreconditionError(
        absl::StrCat("shell ", request.shell_id(), " has ended"));
  }
  absl::Status s = shell->session->WriteStdin(
      input, false, absl::Now() + limits_.input_timeout);
  if (absl::IsDeadlineExceeded(s)) {
    return absl::DeadlineExceededError(absl::StrCat(
        "shell ", request.shell_id(), " has not read its input for ",
        absl::FormatDuration(limits_.input_timeout)));
  }
  if (absl::IsFailedPrecondition(s)) {
    return absl::FailedPreconditionError(
        absl::StrCat("shell ", request.shell_id(), " has exited"));
  }
  return s;
}

absl::StatusOr<v1::Shell> Shells::Resize(
    const Caller& caller, const v1::ResizeShellRequest& request) {
  RETURN_IF_ERROR(ValidateSize(request.size()));
  ASSIGN_OR_RETURN(auto shell,
                   Find(caller, request.sandbox_id(), request.shell_id()));
  const v1::TerminalSize size = WithDefaults(request.size());
  {
    std::lock_guard input_lock(shell->input_mutex);
    if (shell->session) {
      absl::Status s = shell->session->Resize(size.rows(), size.columns());
      if (!s.ok() && !absl::IsFailedPrecondition(s)) return s;
    }
  }
  {
    std::lock_guard lock(shell->mutex);
    shell->size = size;
  }
  return View(*shell);
}

absl::StatusOr<v1::Shell> Shells::Signal(
    const Caller& caller, const v1::SignalShellRequest& request) {
  if (request.signal() <= 0 || request.signal() >= 65) {
    return absl::InvalidArgumentError(
        absl::StrCat("signal: ", request.signal(), " is not a signal"));
  }
  ASSIGN_OR_RETURN(auto shell,
                   Find(caller, request.sandbox_id(), request.shell_id()));
  {
    std::lock_guard input_lock(shell->input_mutex);
    if (!shell->session) {
      return absl::FailedPreconditionError(
          absl::StrCat("shell ", request.shell_id(), " has ended"));
    }
    absl::Status s = shell->session->Signal(request.signal());
    if (absl::IsFailedPrecondition(s)) {
      return absl::FailedPreconditionError(
          absl::StrCat("shell ", request.shell_id(), " has exited"));
    }
    RETURN_IF_ERROR(s);
  }
  return View(*shell);
}

absl::StatusOr<v1::Shell> Shells::Close(const Caller& caller,
                                        const v1::CloseShellRequest& request) {
  ASSIGN_OR_RETURN(auto shell,
                   Find(caller, request.sandbox_id(), request.shell_id()));
  {
    std::lock_guard input_lock(shell->input_mutex);
    if (shell->session) (void)shell->session->Signal(SIGHUP);
  }
  {
    std::lock_guard lock(mutex_);
    auto sandbox = shells_.find(request.sandbox_id());
    if (sandbox != shells_.end()) {
      sandbox->second.erase(request.shell_id());
      if (sandbox->second.empty()) shells_.erase(sandbox);
    }
  }
  Stop(shell);
  return View(*shell);
}

absl::StatusOr<v1::ListShellsResponse> Shells::List(
    const Caller& caller, const v1::ListShellsRequest& request) {
  RETURN_IF_ERROR(
      sandboxes_->GetSandbox(caller, request.sandbox_id()).status());
  std::vector<std::shared_ptr<Shell>> found;
  {
    std::lock_guard lock(mutex_);
    auto sandbox = shells_.find(request.sandbox_id());
    if (sandbox != shells_.end()) {
      for (auto& [id, shell] : sandbox->second) found.push_back(shell);
    }
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    return a->created_at < b->created_at;
  });
  v1::ListShellsResponse response;
  for (auto& shell : found) *response.add_shells() = View(*shell);
  return response;
}

absl::StatusOr<v1::Shell> Shells::Get(const Caller& caller,
                                      const std::string& sandbox_id,
                                      const std::string& shell_id) {
  ASSIGN_OR_RETURN(auto shell, Find(caller, sandbox_id, shell_id));
  return View(*shell);
}

void Shells::ForgetSandbox(const std::string& sandbox_id) {
  std::map<std::string, std::shared_ptr<Shell>> gone;
  {
    std::lock_guard lock(mutex_);
    auto it = shells_.find(sandbox_id);
    if (it == shells_.end()) return;
    gone.swap(it->second);
    shells_.erase(it);
  }
  for (auto& [id, shell] : gone) Stop(shell);
}

}  // namespace corral::daemon
