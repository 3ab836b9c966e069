#include "daemon/core/processes.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "corral/hex_id.h"
#include "corral/logging.h"
#include "corral/status_macros.h"
#include "daemon/agent/fs_call.h"
#include "google/protobuf/util/time_util.h"

namespace corral::daemon {
namespace {

namespace v1 = corral::v1;
namespace agent_v1 = corral::agent::v1;
using google::protobuf::util::TimeUtil;

constexpr size_t kMaxInputBytes = 64 << 10;
constexpr size_t kDefaultReadBytes = 64 << 10;
constexpr size_t kMaxReadBytes = 4 << 20;
constexpr uint32_t kMaxTerminalSide = 1000;
constexpr size_t kMaxTagBytes = 64;
// How often a pump thread looks up from the agent to see whether it should
// stop.
constexpr absl::Duration kPumpSlice = absl::Milliseconds(200);
// How long a new command has to report that it started.
constexpr absl::Duration kStartTimeout = absl::Seconds(30);

absl::StatusOr<std::string> NewId() { return RandomHexId(8); }

bool IsProcessId(std::string_view id) {
  return IsHexId(absl::string_view(id.data(), id.size()), 16);
}

absl::Status ValidateTag(const std::string& tag) {
  if (tag.empty()) return absl::OkStatus();
  const bool allowed =
      tag.size() <= kMaxTagBytes && tag[0] != '.' && tag[0] != '-' &&
      std::all_of(tag.begin(), tag.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
               c == '_' || c == '-';
      });
  if (!allowed) {
    return absl::InvalidArgumentError(
        absl::StrCat("tag: \"", absl::CHexEscape(tag.substr(0, kMaxTagBytes)),
                     "\" must be 1 to 64 characters of [A-Za-z0-9._-], not "
                     "starting with '.' or '-'"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSize(const v1::TerminalSize& size) {
  if (size.rows() > kMaxTerminalSide || size.columns() > kMaxTerminalSide) {
    return absl::InvalidArgumentError(absl::StrCat(
        "size: ", size.rows(), "x", size.columns(), " is larger than ",
        kMaxTerminalSide, "x", kMaxTerminalSide));
  }
  return absl::OkStatus();
}

absl::Status ValidateSignal(int signal) {
  if (signal <= 0 || signal >= 65) {
    return absl::InvalidArgumentError(
        absl::StrCat("signal: ", signal, " is not a signal"));
  }
  return absl::OkStatus();
}

v1::TerminalSize WithDefaults(v1::TerminalSize size) {
  if (size.rows() == 0) size.set_rows(24);
  if (size.columns() == 0) size.set_columns(80);
  return size;
}

google::protobuf::Timestamp Now() {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(absl::Now()));
}

v1::Shell ToShell(const v1::Process& process) {
  v1::Shell shell;
  shell.set_sandbox_id(process.sandbox_id());
  shell.set_shell_id(process.process_id());
  *shell.mutable_argv() = process.argv();
  *shell.mutable_size() = process.size();
  shell.set_running(process.running());
  shell.set_exit_code(process.exit_code());
  shell.set_signal(process.signal());
  shell.set_output_start(process.output_start());
  shell.set_output_end(process.output_end());
  *shell.mutable_created_at() = process.created_at();
  return shell;
}

Caller SystemCaller() {
  Caller caller;
  caller.admin = true;
  return caller;
}

constexpr absl::Duration kReadyInterval = absl::Milliseconds(200);
constexpr absl::Duration kProbeTimeout = absl::Seconds(5);
constexpr uint32_t kDefaultReadySeconds = 60;
constexpr uint32_t kMaxReadySeconds = 3600;

// A readiness check that can be tried at all; checked before the process
// starts, so that a bad one changes nothing.
absl::Status ValidateReadiness(const v1::ReadinessCheck& check) {
  if (check.timeout_seconds() > kMaxReadySeconds) {
    return absl::InvalidArgumentError(
        absl::StrCat("ready.timeout_seconds: at most ", kMaxReadySeconds));
  }
  switch (check.check_case()) {
    case v1::ReadinessCheck::kPath:
      if (check.path().empty() || check.path().size() > 4096 ||
          check.path().find('\0') != std::string::npos) {
        return absl::InvalidArgumentError(
            "ready.path: 1 to 4096 bytes, no NUL");
      }
      return absl::OkStatus();
    case v1::ReadinessCheck::kTcpPort:
      if (check.tcp_port() == 0 || check.tcp_port() > 65535) {
        return absl::InvalidArgumentError("ready.tcp_port: 1 to 65535");
      }
      return absl::OkStatus();
    case v1::ReadinessCheck::kHttpUrl:
      if (!absl::StartsWith(check.http_url(), "http://") ||
          check.http_url().size() > 2048 ||
          check.http_url().find_first_of(" \n\r\t\0'\"") != std::string::npos) {
        return absl::InvalidArgumentError(
            "ready.http_url: an http:// URL of at most 2048 characters, "
            "without spaces or quotes");
      }
      return absl::OkStatus();
    case v1::ReadinessCheck::kCommand:
      if (check.command().empty() || check.command().size() > 4096) {
        return absl::InvalidArgumentError("ready.command: 1 to 4096 bytes");
      }
      return absl::OkStatus();
    default:
      return absl::InvalidArgumentError(
          "ready: set one of path, tcp_port, http_url and command");
  }
}

}  // namespace

bool ListensOn(absl::string_view proc_net_tcp, uint32_t port) {
  // "  sl  local_address rem_address   st ..." then one socket a line:
  // "   0: 0100007F:1F40 00000000:0000 0A ..." (0A: LISTEN).
  bool header = true;
  for (absl::string_view line : absl::StrSplit(proc_net_tcp, '\n')) {
    if (header) {
      header = false;
      continue;
    }
    std::vector<absl::string_view> fields =
        absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (fields.size() < 4 || fields[3] != "0A") continue;
    const size_t colon = fields[1].rfind(':');
    uint32_t local = 0;
    if (colon != absl::string_view::npos &&
        absl::SimpleHexAtoi(fields[1].substr(colon + 1), &local) &&
        local == port) {
      return true;
    }
  }
  return false;
}

namespace {}  // namespace

struct Processes::Entry {
  std::string sandbox_id, id;
  // Told of the process's output (idle timeouts); not owned.
  SandboxManager* sandboxes = nullptr;
  std::string meta_path, log_path;

  std::mutex mutex;  // guards the fields below
  std::condition_variable changed;
  v1::Process record;  // output_start/end are filled in by View
  std::unique_ptr<OutputLog> log;
  bool log_failed = false;
  bool stopping = false;
  // Set once it started (or was recovered): until then its place is only
  // reserved, `log` may not be open yet, and nobody may look at it.
  bool launched = false;
  // When its output last counted as its sandbox's activity (at most once a
  // second, not at every chunk).
  absl::Time activity_noted = absl::InfinitePast();

  // Serializes input, resizes and signals, and guards `session` against
  // Stop. The pump thread calls session->Next and Acknowledge without it
  // (ExecSession allows one other thread beside the reader).
  std::mutex input_mutex;
  std::unique_ptr<ExecSession> session;
  std::thread pump;

  // Writes the record beside the log, replacing the old one at once.
  // Called with `mutex` held.
  void SaveLocked() {
    v1::Process saved = record;
    saved.clear_output_start();
    saved.clear_output_end();
    const std::string temp = meta_path + ".tmp";
    bool ok = false;
    {
      std::ofstream out(temp, std::ios::binary | std::ios::trunc);
      ok = out && saved.SerializeToOstream(&out) && out.flush();
    }
    if (!ok || ::rename(temp.c_str(), meta_path.c_str()) != 0) {
      ::unlink(temp.c_str());
      corral::Logger("processes")
          ->warn("cannot save the record of process {} of sandbox {}: {}", id,
                 sandbox_id, std::strerror(errno));
    }
  }

  void EndLocked(int exit_code, int signal, std::string error) {
    if (!record.running()) return;
    record.set_running(false);
    record.set_stdin_open(false);
    record.set_exit_code(exit_code);
    record.set_signal(signal);
    record.set_error(std::move(error));
    *record.mutable_ended_at() = Now();
    SaveLocked();
    changed.notify_all();
  }
};

Processes::Processes(SandboxManager* sandboxes, std::string dir,
                     ProcessLimits limits)
    : sandboxes_(sandboxes), dir_(std::move(dir)), limits_(limits) {}

Processes::~Processes() { Shutdown(); }

std::string Processes::SandboxDir(const std::string& sandbox_id) const {
  return dir_ + "/" + sandbox_id;
}

// ---- Pumping ---------------------------------------------------------------

void Processes::Pump(Entry* entry) {
  ExecSession* session = entry->session.get();
  for (;;) {
    {
      std::lock_guard lock(entry->mutex);
      if (entry->stopping) return;
    }
    auto event = session->Next(absl::Now() + kPumpSlice);
    if (!event.ok() && absl::IsDeadlineExceeded(event.status())) continue;
    std::unique_lock lock(entry->mutex);
    if (!event.ok()) {
      if (entry->stopping) return;
      // The agent went away (its sandbox ended or failed), or it no longer
      // had the command when a restarted daemon asked for it.
      entry->EndLocked(0, 0, absl::StrCat("lost: ", event.status().message()));
      return;
    }
    switch (event->kind) {
      case ExecEvent::Kind::kStarted:
        entry->record.set_pid(event->pid);
        break;
      case ExecEvent::Kind::kOutput: {
        const int stream = event->fd == agent_v1::FD_STDERR ? 2 : 1;
        absl::Status stored =
            entry->log->Append(stream, event->offset, event->data);
        if (!stored.ok() && !entry->log_failed) {
          entry->log_failed = true;
          corral::Logger("processes")
              ->warn(
                  "process {} of sandbox {}: {}; its output is kept in "
                  "memory only from now on",
                  entry->id, entry->sandbox_id, std::string(stored.message()));
        }
        entry->changed.notify_all();
        const absl::Time now = absl::Now();
        const bool note = now - entry->activity_noted > absl::Seconds(1);
        if (note) entry->activity_noted = now;
        lock.unlock();
        if (note) entry->sandboxes->NoteActivity(entry->sandbox_id);
        // Only now may the agent forget these bytes: a daemon killed before
        // this point gets them again when it resumes the command.
        (void)session->Acknowledge(event->data.size());
        break;
      }
      case ExecEvent::Kind::kExit: {
        const auto& exit = event->exit;
        entry->record.set_timed_out(exit.timed_out());
        entry->EndLocked(exit.exit_code(), exit.signal(), exit.error());
        return;
      }
    }
  }
}

void Processes::Stop(const EntryPtr& entry, bool kill) {
  {
    std::lock_guard lock(entry->mutex);
    entry->stopping = true;
  }
  if (entry->pump.joinable()) entry->pump.join();
  {
    std::lock_guard input(entry->input_mutex);
    if (entry->session && !kill) entry->session->Abandon();
    // Ending a session that was not abandoned kills what still runs of it.
    entry->session.reset();
  }
  std::lock_guard lock(entry->mutex);
  if (kill && entry->record.running()) {
    entry->record.set_running(false);
    entry->record.set_stdin_open(false);
    entry->record.set_signal(SIGKILL);
    *entry->record.mutable_ended_at() = Now();
  }
  entry->changed.notify_all();
}

void Processes::StopAll(const std::vector<EntryPtr>& entries, bool kill) {
  // Every pump is told first, so that their waits for the agent (up to a
  // pump slice each) end together rather than one after another.
  for (const auto& entry : entries) {
    std::lock_guard lock(entry->mutex);
    entry->stopping = true;
  }
  for (const auto& entry : entries) Stop(entry, kill);
}

void Processes::Shutdown() {
  std::vector<EntryPtr> all;
  {
    std::lock_guard lock(mutex_);
    shut_down_ = true;
    for (auto& [sandbox, entries] : entries_) {
      for (auto& [id, entry] : entries) all.push_back(entry);
    }
  }
  StopAll(all, /*kill=*/false);
}

void Processes::Drop(const EntryPtr& entry) {
  {
    std::lock_guard lock(mutex_);
    auto sandbox = entries_.find(entry->sandbox_id);
    if (sandbox != entries_.end()) {
      sandbox->second.erase(entry->id);
      if (sandbox->second.empty()) entries_.erase(sandbox);
    }
  }
  Stop(entry, /*kill=*/true);
  ::unlink(entry->meta_path.c_str());
  ::unlink(entry->log_path.c_str());
}

void Processes::ForgetSandbox(const std::string& sandbox_id) {
  std::map<std::string, EntryPtr> gone;
  {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(sandbox_id);
    if (it != entries_.end()) {
      gone.swap(it->second);
      entries_.erase(it);
    }
  }
  std::vector<EntryPtr> stopping;
  for (auto& [id, entry] : gone) stopping.push_back(entry);
  StopAll(stopping, /*kill=*/true);
  std::error_code ignored;
  std::filesystem::remove_all(SandboxDir(sandbox_id), ignored);
}

// ---- Starting and resuming -------------------------------------------------

absl::StatusOr<Processes::EntryPtr> Processes::Launch(
    const Caller& caller, const v1::ExecStart& exec, const std::string& tag,
    bool pty, const v1::TerminalSize& size, uint32_t timeout_seconds) {
  RETURN_IF_ERROR(ValidateTag(tag));
  // Another user's sandbox is NOT_FOUND before anything else is said.
  RETURN_IF_ERROR(sandboxes_->GetSandbox(caller, exec.sandbox_id()).status());
  auto entry = std::make_shared<Entry>();
  entry->sandboxes = sandboxes_;
  entry->sandbox_id = exec.sandbox_id();
  ASSIGN_OR_RETURN(entry->id, NewId());
  const std::string dir = SandboxDir(entry->sandbox_id);
  entry->meta_path = absl::StrCat(dir, "/", entry->id, ".meta");
  entry->log_path = absl::StrCat(dir, "/", entry->id, ".log");
  v1::Process& record = entry->record;
  record.set_sandbox_id(entry->sandbox_id);
  record.set_process_id(entry->id);
  record.set_tag(tag);
  record.set_pty(pty);
  record.set_stdin_open(!pty && exec.stdin_open());
  record.set_running(true);
  if (pty) *record.mutable_size() = size;
  *record.mutable_created_at() = Now();

  // Reserve the place (and the tag) before starting anything.
  {
    std::lock_guard lock(mutex_);
    if (shut_down_) return absl::UnavailableError("corrald is shutting down");
    auto& entries = entries_[entry->sandbox_id];
    if (entries.size() >= limits_.max_per_sandbox) {
      return absl::ResourceExhaustedError(
          absl::StrCat("sandbox ", entry->sandbox_id, " already has ",
                       limits_.max_per_sandbox,
                       " processes and shells, the maximum; remove one first"));
    }
    if (!tag.empty()) {
      for (auto& [id, other] : entries) {
        std::lock_guard other_lock(other->mutex);
        if (other->record.tag() == tag) {
          return absl::AlreadyExistsError(absl::StrCat(
              "sandbox ", entry->sandbox_id, " already has a process tagged ",
              tag, " (", id, ")"));
        }
      }
    }
    entries[entry->id] = entry;
  }
  auto unreserve = [&] {
    std::lock_guard lock(mutex_);
    auto it = entries_.find(entry->sandbox_id);
    if (it == entries_.end()) return;
    it->second.erase(entry->id);
    if (it->second.empty()) entries_.erase(it);
  };

  auto started = [&]() -> absl::Status {
    if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
      return absl::InternalError(
          absl::StrCat("cannot create ", dir, ": ", std::strerror(errno)));
    }
    ASSIGN_OR_RETURN(entry->log,
                     OutputLog::Open(entry->log_path, limits_.output));
    {
      std::lock_guard lock(entry->mutex);
      entry->SaveLocked();
    }
    ASSIGN_OR_RETURN(
        entry->session,
        sandboxes_->StartSession(caller, exec, [&](agent_v1::ExecStart& start) {
          start.set_detach_key(entry->id);
          // The log bounds what is kept; the process runs until it
          // exits, is killed, or its timeout passes.
          start.set_output_limit_bytes(0);
          start.set_timeout_ms(uint64_t{timeout_seconds} * 1000);
          start.set_stdin_open(pty || exec.stdin_open());
          if (pty) {
            start.mutable_pty()->set_rows(size.rows());
            start.mutable_pty()->set_columns(size.columns());
          }
        }));
    entry->session->SetManualAck();
    ASSIGN_OR_RETURN(ExecEvent first,
                     entry->session->Next(absl::Now() + kStartTimeout));
    if (first.kind == ExecEvent::Kind::kExit) {
      return absl::FailedPreconditionError(
          absl::StrCat("cannot start ", entry->session->start().argv(0), ": ",
                       first.exit.error()));
    }
    std::lock_guard lock(entry->mutex);
    for (const auto& arg : entry->session->start().argv()) {
      record.add_argv(arg);
    }
    record.set_pid(first.pid);
    entry->SaveLocked();
    entry->launched = true;
    return absl::OkStatus();
  }();
  if (!started.ok()) {
    entry->session.reset();  // kills the command if it did start
    unreserve();
    ::unlink(entry->meta_path.c_str());
    ::unlink(entry->log_path.c_str());
    return started;
  }
  entry->pump = std::thread(&Processes::Pump, entry.get());
  return entry;
}

absl::Status Processes::Resume(const EntryPtr& entry, AgentConnection& agent) {
  agent_v1::Resume resume;
  resume.set_key(entry->id);
  resume.set_stdout_offset(entry->log->stream_end(1));
  resume.set_stderr_offset(entry->log->stream_end(2));
  ASSIGN_OR_RETURN(entry->session,
                   agent.ResumeExec(resume, entry->record.pty()));
  entry->session->SetManualAck();
  entry->pump = std::thread(&Processes::Pump, entry.get());
  return absl::OkStatus();
}

absl::Status Processes::Recover() {
  if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(
        absl::StrCat("cannot create ", dir_, ": ", std::strerror(errno)));
  }
  auto log = corral::Logger("processes");
  std::error_code error;
  for (const auto& sandbox_dir :
       std::filesystem::directory_iterator(dir_, error)) {
    const std::string sandbox_id = sandbox_dir.path().filename();
    auto access = sandboxes_->Access(SystemCaller(), sandbox_id, Action::kExec,
                                     /*activity=*/false);
    if (!access.ok()) {
      // The sandbox is gone or no longer runs: so are its processes.
      std::error_code ignored;
      std::filesystem::remove_all(sandbox_dir.path(), ignored);
      continue;
    }
    std::set<std::string> known;
    std::vector<std::filesystem::path> stray;
    for (const auto& file :
         std::filesystem::directory_iterator(sandbox_dir.path(), error)) {
      const std::string name = file.path().filename();
      const std::string id = file.path().stem();
      if (!absl::EndsWith(name, ".meta") || !IsProcessId(id)) {
        if (!absl::EndsWith(name, ".log")) stray.push_back(file.path());
        continue;
      }
      auto entry = std::make_shared<Entry>();
      entry->sandboxes = sandboxes_;
      entry->sandbox_id = sandbox_id;
      entry->id = id;
      entry->meta_path = file.path();
      entry->log_path =
          absl::StrCat(sandbox_dir.path().string(), "/", id, ".log");
      std::ifstream in(entry->meta_path, std::ios::binary);
      auto opened = OutputLog::Open(entry->log_path, limits_.output);
      if (!in || !entry->record.ParseFromIstream(&in) ||
          entry->record.process_id() != id || !opened.ok()) {
        log->warn("dropping the unreadable record of process {} of sandbox {}",
                  id, sandbox_id);
        stray.push_back(entry->meta_path);
        stray.push_back(entry->log_path);
        continue;
      }
      entry->log = std::move(*opened);
      entry->launched = true;
      known.insert(id);
      if (entry->record.running()) {
        if (auto s = Resume(entry, *access->agent); !s.ok()) {
          std::lock_guard lock(entry->mutex);
          entry->EndLocked(0, 0, absl::StrCat("lost: ", s.message()));
        }
      }
      std::lock_guard lock(mutex_);
      entries_[sandbox_id][id] = entry;
    }
    for (const auto& path : stray) {
      std::error_code ignored;
      std::filesystem::remove(path, ignored);
    }
    // Detached commands no record names (a daemon killed between starting
    // one and saving its record, or a sandbox replacing its agent): end
    // them, so that nothing runs that no one can see.
    for (const std::string& key : access->agent->hello().detached()) {
      if (known.count(key) > 0) continue;
      agent_v1::Resume resume;
      resume.set_key(key);
      auto orphan = access->agent->ResumeExec(resume, false);
      // Dropping the session kills the command.
      if (orphan.ok())
        log->info("ended unknown detached command in sandbox {}", sandbox_id);
    }
  }
  return absl::OkStatus();
}

// ---- Lookup and views -------------------------------------------------------

absl::StatusOr<Processes::EntryPtr> Processes::Find(
    const Caller& caller, const std::string& sandbox_id,
    const std::string& name, bool shell) {
  RETURN_IF_ERROR(sandboxes_->GetSandbox(caller, sandbox_id).status());
  EntryPtr found;
  {
    std::lock_guard lock(mutex_);
    auto sandbox = entries_.find(sandbox_id);
    if (sandbox != entries_.end()) {
      auto it = sandbox->second.find(name);
      if (it != sandbox->second.end()) {
        found = it->second;
      } else if (!shell && !name.empty()) {
        for (auto& [id, entry] : sandbox->second) {
          std::lock_guard entry_lock(entry->mutex);
          if (entry->record.tag() == name) found = entry;
        }
      }
      // One still starting is not there yet.
      if (found) {
        std::lock_guard entry_lock(found->mutex);
        if (!found->launched) found.reset();
      }
    }
  }
  if (found && (!shell || found->record.pty())) {
    // Input, signals, reads: someone works with the sandbox.
    sandboxes_->NoteActivity(sandbox_id);
    return found;
  }
  return absl::NotFoundError(absl::StrCat(shell ? "no shell " : "no process ",
                                          name, " in sandbox ", sandbox_id));
}

v1::Process Processes::View(Entry& entry) {
  std::lock_guard lock(entry.mutex);
  v1::Process view = entry.record;
  view.set_output_start(entry.log->start());
  view.set_output_end(entry.log->end());
  return view;
}

v1::Shell Processes::ShellView(Entry& entry) { return ToShell(View(entry)); }

absl::StatusOr<OutputLog::Slice> Processes::Read(const EntryPtr& entry,
                                                 uint64_t cursor,
                                                 uint32_t max_bytes,
                                                 absl::Time deadline,
                                                 bool* exited) {
  const size_t max = max_bytes == 0
                         ? kDefaultReadBytes
                         : std::min<size_t>(max_bytes, kMaxReadBytes);
  std::unique_lock lock(entry->mutex);
  while (entry->record.running() && entry->log->end() <= cursor &&
         absl::Now() < deadline) {
    entry->changed.wait_for(lock,
                            absl::ToChronoNanoseconds(deadline - absl::Now()));
  }
  ASSIGN_OR_RETURN(auto slice, entry->log->Read(cursor, max));
  *exited = !entry->record.running() && slice.next == entry->log->end();
  return slice;
}

absl::Status Processes::SendSignal(const EntryPtr& entry, int signal) {
  RETURN_IF_ERROR(ValidateSignal(signal));
  std::lock_guard input(entry->input_mutex);
  const std::string what = entry->record.pty() ? "shell " : "process ";
  if (!entry->session) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, entry->id, " has ended"));
  }
  absl::Status s = entry->session->Signal(signal);
  if (absl::IsFailedPrecondition(s)) {
    return absl::FailedPreconditionError(
        absl::StrCat(what, entry->id, " has exited"));
  }
  return s;
}

// ---- Background processes --------------------------------------------------

absl::StatusOr<v1::Process> Processes::Start(
    const Caller& caller, const v1::StartProcessRequest& request) {
  const v1::ExecStart& exec = request.start();
  if (exec.output_limit_bytes() != 0) {
    return absl::InvalidArgumentError(
        "start.output_limit_bytes: must be 0 for a background process (its "
        "output ring bounds what is kept)");
  }
  if (request.has_ready()) RETURN_IF_ERROR(ValidateReadiness(request.ready()));
  ASSIGN_OR_RETURN(auto entry, Launch(caller, exec, request.tag(), false, {},
                                      exec.timeout_seconds()));
  if (request.has_ready()) {
    SetReadiness(entry, v1::READINESS_WAITING, "");
    const absl::Status ready = WaitReady(caller, entry, request.ready());
    SetReadiness(entry, ready.ok() ? v1::READINESS_READY : v1::READINESS_FAILED,
                 std::string(ready.message()));
  }
  return View(*entry);
}

void Processes::SetReadiness(const EntryPtr& entry, v1::Readiness readiness,
                             const std::string& error) {
  std::lock_guard lock(entry->mutex);
  entry->record.set_readiness(readiness);
  entry->record.set_readiness_error(error);
  entry->SaveLocked();
}

absl::Status Processes::WaitReady(const Caller& caller, const EntryPtr& entry,
                                  const v1::ReadinessCheck& check) {
  const uint32_t seconds = check.timeout_seconds() == 0
                               ? kDefaultReadySeconds
                               : check.timeout_seconds();
  const absl::Time deadline = absl::Now() + absl::Seconds(seconds);
  std::string why = "not checked yet";
  for (;;) {
    {
      std::unique_lock lock(entry->mutex);
      if (!entry->record.running()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "it exited (",
            entry->record.signal() > 0
                ? absl::StrCat("signal ", entry->record.signal())
                : absl::StrCat("exit code ", entry->record.exit_code()),
            ") before it was ready"));
      }
    }
    ASSIGN_OR_RETURN(const bool ready,
                     Probe(caller, entry->sandbox_id, check, &why));
    if (ready) return absl::OkStatus();
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat("not ready after ", seconds, " s: ", why));
    }
    // Woken early when the process exits.
    std::unique_lock lock(entry->mutex);
    entry->changed.wait_for(lock, absl::ToChronoMilliseconds(kReadyInterval),
                            [&] { return !entry->record.running(); });
  }
}

absl::StatusOr<bool> Processes::Probe(const Caller& caller,
                                      const std::string& sandbox_id,
                                      const v1::ReadinessCheck& check,
                                      std::string* why) {
  const absl::Time deadline = absl::Now() + kProbeTimeout;
  if (check.has_path() || check.has_tcp_port()) {
    ASSIGN_OR_RETURN(auto access,
                     sandboxes_->Access(caller, sandbox_id, Action::kExec,
                                        /*activity=*/false));
    if (check.has_path()) {
      corral::agent::v1::FsRequest stat;
      stat.mutable_stat()->set_path(check.path().front() == '/'
                                        ? check.path()
                                        : "/workspace/" + check.path());
      ASSIGN_OR_RETURN(auto call,
                       FsCall::Start(*access.agent, stat, false, deadline));
      auto found = call->Finish();
      if (found.ok()) return true;
      if (!absl::IsNotFound(found.status())) return found.status();
      *why = absl::StrCat(check.path(), " does not exist");
      return false;
    }
    for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
      corral::agent::v1::FsRequest read;
      read.mutable_read()->set_path(table);
      read.mutable_read()->set_length(4 << 20);
      ASSIGN_OR_RETURN(auto call,
                       FsCall::Start(*access.agent, read, false, deadline));
      std::string text;
      for (;;) {
        auto record = call->Next();
        if (!record.ok()) break;  // no IPv6 in the sandbox: no tcp6
        if (!record->has_value()) break;
        text += (*record)->data();
      }
      if (ListensOn(text, check.tcp_port())) return true;
    }
    *why = absl::StrCat("nothing listens on TCP port ", check.tcp_port());
    return false;
  }
  v1::ExecStart probe;
  probe.set_sandbox_id(sandbox_id);
  probe.set_timeout_seconds(
      static_cast<uint32_t>(absl::ToInt64Seconds(kProbeTimeout)));
  if (check.has_http_url()) {
    probe.set_shell(absl::StrCat(
        "u='", check.http_url(),
        "'; if command -v curl >/dev/null 2>&1; then curl -fsS -o /dev/null "
        "--max-time 4 \"$u\"; elif command -v wget >/dev/null 2>&1; then "
        "wget -q -T 4 -O /dev/null \"$u\"; else echo 'neither curl nor wget "
        "in the sandbox' >&2; exit 127; fi"));
  } else {
    probe.set_shell(check.command());
  }
  ASSIGN_OR_RETURN(auto session, sandboxes_->StartSession(caller, probe, {}));
  ASSIGN_OR_RETURN(
      ExecResult result,
      CollectExec(*session, "", deadline + absl::Seconds(1), 4096));
  if (result.exit.exit_code() == 0 && result.exit.signal() == 0 &&
      result.exit.error().empty()) {
    return true;
  }
  std::string said(absl::StripAsciiWhitespace(result.stderr_data));
  *why = absl::StrCat(check.has_http_url() ? check.http_url() : "the check",
                      " exited ", result.exit.exit_code(),
                      said.empty() ? "" : ": ", said.substr(0, 300));
  return false;
}

absl::StatusOr<v1::Process> Processes::GetProcess(const Caller& caller,
                                                  const std::string& sandbox_id,
                                                  const std::string& name) {
  ASSIGN_OR_RETURN(auto entry, Find(caller, sandbox_id, name, false));
  return View(*entry);
}

absl::StatusOr<v1::ListProcessesResponse> Processes::ListProcesses(
    const Caller& caller, const std::string& sandbox_id) {
  RETURN_IF_ERROR(sandboxes_->GetSandbox(caller, sandbox_id).status());
  std::vector<v1::Process> found;
  {
    std::lock_guard lock(mutex_);
    auto sandbox = entries_.find(sandbox_id);
    if (sandbox != entries_.end()) {
      for (auto& [id, entry] : sandbox->second) {
        {
          std::lock_guard entry_lock(entry->mutex);
          if (!entry->launched) continue;  // still starting
        }
        found.push_back(View(*entry));
      }
    }
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    return std::make_pair(TimeUtil::TimestampToMicroseconds(a.created_at()),
                          a.process_id()) <
           std::make_pair(TimeUtil::TimestampToMicroseconds(b.created_at()),
                          b.process_id());
  });
  v1::ListProcessesResponse response;
  for (auto& process : found) *response.add_processes() = std::move(process);
  return response;
}

absl::StatusOr<v1::ReadProcessResponse> Processes::ReadProcess(
    const Caller& caller, const v1::ReadProcessRequest& request,
    absl::Time deadline) {
  ASSIGN_OR_RETURN(auto entry, Find(caller, request.sandbox_id(),
                                    request.process_id(), false));
  bool exited = false;
  ASSIGN_OR_RETURN(auto slice, Read(entry, request.cursor(),
                                    request.max_bytes(), deadline, &exited));
  v1::ReadProcessResponse response;
  for (auto& piece : slice.pieces) {
    v1::ProcessOutput* output = response.add_output();
    output->set_stream(piece.stream == 2 ? v1::OUTPUT_STREAM_STDERR
                                         : v1::OUTPUT_STREAM_STDOUT);
    output->set_offset(piece.offset);
    output->set_data(std::move(piece.data));
  }
  response.set_next_cursor(slice.next);
  response.set_missed(slice.missed);
  response.set_exited(exited);
  *response.mutable_process() = View(*entry);
  return response;
}

absl::StatusOr<v1::Process> Processes::SignalProcess(
    const Caller& caller, const v1::SignalProcessRequest& request) {
  RETURN_IF_ERROR(ValidateSignal(request.signal()));
  ASSIGN_OR_RETURN(auto entry, Find(caller, request.sandbox_id(),
                                    request.process_id(), false));
  RETURN_IF_ERROR(SendSignal(entry, request.signal()));
  return View(*entry);
}

absl::StatusOr<v1::Process> Processes::RemoveProcess(
    const Caller& caller, const std::string& sandbox_id,
    const std::string& name) {
  ASSIGN_OR_RETURN(auto entry, Find(caller, sandbox_id, name, false));
  Drop(entry);
  return View(*entry);
}

absl::Status Processes::WriteProcess(const Caller& caller,
                                     const v1::WriteProcessRequest& request) {
  if (request.data().size() > kMaxInputBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("data: more than ", kMaxInputBytes, " bytes"));
  }
  ASSIGN_OR_RETURN(auto entry, Find(caller, request.sandbox_id(),
                                    request.process_id(), false));
  const std::string what = "process " + request.process_id();
  {
    std::lock_guard lock(entry->mutex);
    if (entry->record.pty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, " is a shell: write to it with WriteShell"));
    }
    if (!entry->record.stdin_open()) {
      return absl::FailedPreconditionError(absl::StrCat(
          what, entry->record.running() ? " has no open stdin (start it with "
                                          "start.stdin_open)"
                                        : " has exited"));
    }
  }
  RETURN_IF_ERROR(WriteInput(entry, request.data(), request.eof(), what));
  if (request.eof()) {
    std::lock_guard lock(entry->mutex);
    entry->record.set_stdin_open(false);
    entry->SaveLocked();
  }
  return absl::OkStatus();
}

// ---- Shells ----------------------------------------------------------------

absl::StatusOr<v1::Shell> Processes::OpenShell(
    const Caller& caller, const v1::OpenShellRequest& request) {
  RETURN_IF_ERROR(ValidateSize(request.size()));
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
  ASSIGN_OR_RETURN(auto entry, Launch(caller, exec, "", true,
                                      WithDefaults(request.size()), 0));
  return ShellView(*entry);
}

absl::StatusOr<v1::ReadShellResponse> Processes::ReadShell(
    const Caller& caller, const v1::ReadShellRequest& request,
    absl::Time deadline) {
  ASSIGN_OR_RETURN(
      auto entry, Find(caller, request.sandbox_id(), request.shell_id(), true));
  bool exited = false;
  ASSIGN_OR_RETURN(auto slice, Read(entry, request.cursor(),
                                    request.max_bytes(), deadline, &exited));
  v1::ReadShellResponse response;
  std::string output;
  for (const auto& piece : slice.pieces) output.append(piece.data);
  response.set_offset(slice.offset);
  response.set_next_cursor(slice.next);
  response.set_missed(slice.missed);
  response.set_exited(exited);
  response.set_output(std::move(output));
  return response;
}

absl::Status Processes::WriteShell(const Caller& caller,
                                   const v1::WriteShellRequest& request) {
  if (request.input().size() > kMaxInputBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("input: more than ", kMaxInputBytes, " bytes"));
  }
  ASSIGN_OR_RETURN(
      auto entry, Find(caller, request.sandbox_id(), request.shell_id(), true));
  std::string input = request.input();
  if (request.newline()) input.push_back('\n');
  return WriteInput(entry, input, false, "shell " + request.shell_id());
}

absl::Status Processes::WriteInput(const EntryPtr& entry,
                                   const std::string& input, bool eof,
                                   const std::string& what) {
  std::lock_guard input_lock(entry->input_mutex);
  if (!entry->session) {
    return absl::FailedPreconditionError(absl::StrCat(what, " has ended"));
  }
  absl::Status s = entry->session->WriteStdin(
      input, eof, absl::Now() + limits_.input_timeout);
  if (absl::IsDeadlineExceeded(s)) {
    return absl::DeadlineExceededError(
        absl::StrCat(what, " has not read its input for ",
                     absl::FormatDuration(limits_.input_timeout)));
  }
  if (absl::IsFailedPrecondition(s)) {
    return absl::FailedPreconditionError(absl::StrCat(what, " has exited"));
  }
  return s;
}

absl::StatusOr<v1::Shell> Processes::ResizeShell(
    const Caller& caller, const v1::ResizeShellRequest& request) {
  RETURN_IF_ERROR(ValidateSize(request.size()));
  ASSIGN_OR_RETURN(
      auto entry, Find(caller, request.sandbox_id(), request.shell_id(), true));
  const v1::TerminalSize size = WithDefaults(request.size());
  {
    std::lock_guard input_lock(entry->input_mutex);
    if (entry->session) {
      absl::Status s = entry->session->Resize(size.rows(), size.columns());
      if (!s.ok() && !absl::IsFailedPrecondition(s)) return s;
    }
  }
  {
    std::lock_guard lock(entry->mutex);
    *entry->record.mutable_size() = size;
    entry->SaveLocked();
  }
  return ShellView(*entry);
}

absl::StatusOr<v1::Shell> Processes::SignalShell(
    const Caller& caller, const v1::SignalShellRequest& request) {
  RETURN_IF_ERROR(ValidateSignal(request.signal()));
  ASSIGN_OR_RETURN(
      auto entry, Find(caller, request.sandbox_id(), request.shell_id(), true));
  RETURN_IF_ERROR(SendSignal(entry, request.signal()));
  return ShellView(*entry);
}

absl::StatusOr<v1::Shell> Processes::CloseShell(
    const Caller& caller, const v1::CloseShellRequest& request) {
  ASSIGN_OR_RETURN(
      auto entry, Find(caller, request.sandbox_id(), request.shell_id(), true));
  {
    std::lock_guard input_lock(entry->input_mutex);
    if (entry->session) (void)entry->session->Signal(SIGHUP);
  }
  Drop(entry);
  return ShellView(*entry);
}

absl::StatusOr<v1::ListShellsResponse> Processes::ListShells(
    const Caller& caller, const std::string& sandbox_id) {
  ASSIGN_OR_RETURN(auto processes, ListProcesses(caller, sandbox_id));
  v1::ListShellsResponse response;
  for (const auto& process : processes.processes()) {
    if (process.pty()) *response.add_shells() = ToShell(process);
  }
  return response;
}

absl::StatusOr<v1::Shell> Processes::GetShell(const Caller& caller,
                                              const std::string& sandbox_id,
                                              const std::string& shell_id) {
  ASSIGN_OR_RETURN(auto entry, Find(caller, sandbox_id, shell_id, true));
  return ShellView(*entry);
}

}  // namespace corral::daemon
