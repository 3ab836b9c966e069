// envd's Connect endpoint and its process.Process service, over Corral's
// background processes (Exec.StartProcess and friends) and shells (a PTY
// process is a Corral shell).
#include <signal.h>

#include <algorithm>
#include <cstring>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "client/e2b/gateway.h"
#include "corral/status_macros.h"
#include "google/protobuf/util/time_util.h"

namespace corral::e2b {
namespace {

namespace v1 = corral::v1;
using google::protobuf::util::TimeUtil;

constexpr size_t kMaxInputChunk = 64 << 10;
// How long a follower waits for output before it checks on its client.
constexpr uint32_t kReadWaitMs = 1000;
// Exited processes are forgotten this long after their exit.
constexpr absl::Duration kKeepExited = absl::Seconds(60);
// Corral allows 32 processes per sandbox, exited ones included.
constexpr int kCrowded = 24;

absl::Status NotServed(const std::string& method) {
  return absl::UnimplementedError(absl::StrCat(
      method, " is not served by Corral's E2B gateway (see docs/e2b.md)"));
}

bool IsStream(const std::string& service, const std::string& method) {
  return (service == "process.Process" &&
          (method == "Start" || method == "Connect" ||
           method == "StreamInput")) ||
         (service == "filesystem.Filesystem" && method == "WatchDir");
}

// Go's names of the signals that end processes ("signal: killed").
std::string SignalName(int signal) {
  switch (signal) {
    case SIGKILL:
      return "killed";
    case SIGTERM:
      return "terminated";
    case SIGINT:
      return "interrupt";
    case SIGHUP:
      return "hangup";
    case SIGQUIT:
      return "quit";
    case SIGABRT:
      return "aborted";
    case SIGSEGV:
      return "segmentation fault";
    case SIGPIPE:
      return "broken pipe";
    default:
      return absl::StrCat("signal ", signal);
  }
}

// envd's EndEvent for an exited Corral process.
Json EndEvent(const v1::Process& process) {
  Json end;
  if (process.signal() > 0) {
    end["exitCode"] = -1;
    end["exited"] = false;
    end["status"] = "signal: " + SignalName(process.signal());
    end["error"] = end["status"];
  } else if (!process.error().empty() && process.exit_code() == 0) {
    end["exitCode"] = -1;
    end["exited"] = false;
    end["status"] = process.error();
    end["error"] = process.error();
  } else {
    end["exitCode"] = process.exit_code();
    end["exited"] = true;
    end["status"] = absl::StrCat("exit status ", process.exit_code());
    if (process.exit_code() != 0) end["error"] = end["status"];
  }
  return {{"event", {{"end", end}}}};
}

Json Event(const char* kind, Json value) {
  return {{"event", {{kind, std::move(value)}}}};
}

// A process selector's pid or tag: {"pid": 12} or {"tag": "x"}.
struct Selector {
  uint32_t pid = 0;
  std::string tag;
};

absl::StatusOr<Selector> SelectorOf(const Json& body) {
  const Json* process = body.contains("process") ? &body["process"] : nullptr;
  Selector selector;
  if (process != nullptr && process->is_object()) {
    if (process->contains("pid") && (*process)["pid"].is_number_unsigned()) {
      selector.pid = (*process)["pid"].get<uint32_t>();
      return selector;
    }
    if (process->contains("tag") && (*process)["tag"].is_string()) {
      selector.tag = (*process)["tag"].get<std::string>();
      return selector;
    }
  }
  return absl::InvalidArgumentError(
      "process: expected a selector, {\"pid\": N} or {\"tag\": \"...\"}");
}

absl::StatusOr<std::string> BytesField(const Json& object, const char* key) {
  if (!object.contains(key) || !object[key].is_string()) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": expected base64 bytes"));
  }
  std::string out;
  if (!absl::Base64Unescape(object[key].get<std::string>(), &out)) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": bad base64"));
  }
  return out;
}

// The terminal size of a PTY message: {"size": {"cols": C, "rows": R}}.
absl::StatusOr<v1::TerminalSize> SizeOf(const Json& pty) {
  v1::TerminalSize size;
  if (!pty.is_object() || !pty.contains("size") || !pty["size"].is_object()) {
    return absl::InvalidArgumentError("pty.size: expected {cols, rows}");
  }
  const Json& s = pty["size"];
  for (const char* key : {"cols", "rows"}) {
    if (s.contains(key) &&
        (!s[key].is_number_unsigned() || s[key].get<uint64_t>() > 1000)) {
      return absl::InvalidArgumentError(
          absl::StrCat("pty.size.", key, ": expected 0 to 1000"));
    }
  }
  size.set_columns(s.value("cols", 0u));
  size.set_rows(s.value("rows", 0u));
  return size;
}

}  // namespace

// ---- the Connect endpoint --------------------------------------------------

void Gateway::Rpc(const httplib::Request& request, httplib::Response& response,
                  const std::string& service, const std::string& method) {
  const bool stream = IsStream(service, method);
  const std::string type = MediaType(request);
  const char* expected = stream ? kStreamContentType : kUnaryContentType;
  if (type != expected) {
    // Connect answers a content type it does not speak with 415.
    response.status = 415;
    response.set_header("Accept-Post", expected);
    return;
  }
  auto call = OpenEnvd(request, response, "", true);
  if (!call) return;
  if (!stream) {
    absl::StatusOr<Json> answer = ParseUnaryRequest(request.body);
    if (answer.ok()) answer = Unary(*call, service + "/" + method, *answer);
    if (!answer.ok()) {
      const ConnectError error = ToConnectError(answer.status());
      return ReplyJson(response, HttpStatusOf(error.code), ErrorBody(error));
    }
    return ReplyJson(response, 200, *answer);
  }
  auto body = ParseStreamRequest(request.body);
  if (!body.ok()) {
    // Before the stream: a unary-style error, as Connect allows.
    const ConnectError error = ToConnectError(body.status());
    return ReplyJson(response, HttpStatusOf(error.code), ErrorBody(error));
  }
  Stream(*call, service + "/" + method, *body, response);
}

absl::StatusOr<Json> Gateway::Unary(const EnvdCall& call,
                                    const std::string& method,
                                    const Json& body) {
  if (method == "process.Process/List") return ListProcesses(call);
  if (method == "process.Process/SendInput") return SendInput(call, body);
  if (method == "process.Process/SendSignal") return SendSignal(call, body);
  if (method == "process.Process/Update") return UpdateProcess(call, body);
  if (method == "process.Process/CloseStdin") return CloseStdin(call, body);
  if (method == "filesystem.Filesystem/Stat") return Stat(call, body);
  if (method == "filesystem.Filesystem/ListDir") return ListDir(call, body);
  if (method == "filesystem.Filesystem/MakeDir") return MakeDir(call, body);
  if (method == "filesystem.Filesystem/Move") return Move(call, body);
  if (method == "filesystem.Filesystem/Remove") return Remove(call, body);
  return NotServed(method);
}

void Gateway::Stream(const EnvdCall& call, const std::string& method,
                     const Json& body, httplib::Response& response) {
  response.status = 200;
  response.set_chunked_content_provider(
      kStreamContentType,
      [this, call, method, body](size_t, httplib::DataSink& sink) {
        return RunStream(call, method, body, sink);
      });
}

bool Gateway::RunStream(const EnvdCall& call, const std::string& method,
                        const Json& body, httplib::DataSink& sink) {
  const auto send = [&](const Json& message) {
    const std::string frame = Envelope(
        0, message.dump(-1, ' ', false, Json::error_handler_t::replace));
    return sink.is_writable() && sink.write(frame.data(), frame.size());
  };
  const auto finish = [&](const absl::Status& status) {
    std::optional<ConnectError> error;
    if (!status.ok()) error = ToConnectError(status);
    const std::string frame = EndOfStream(error);
    if (sink.is_writable()) sink.write(frame.data(), frame.size());
    sink.done();
    return true;
  };
  if (method == "filesystem.Filesystem/WatchDir") {
    return finish(WatchDir(call, body, send));
  }
  absl::StatusOr<std::pair<v1::Process, uint64_t>> followed = NotServed(method);
  if (method == "process.Process/Start") {
    followed = StartProcess(call, body);
  } else if (method == "process.Process/Connect") {
    followed = ConnectProcess(call, body);
  }
  if (!followed.ok()) return finish(followed.status());
  const v1::Process process = followed->first;
  if (!send(Event("start", {{"pid", process.pid()}}))) return false;

  // Follows the output until the exit, the deadline, or the client
  // leaving (which leaves the process running, as envd does).
  const absl::Time deadline =
      call.timeout ? absl::Now() + *call.timeout : absl::InfiniteFuture();
  const char* stream_name = process.pty() ? "pty" : nullptr;
  v1::ReadProcessRequest read;
  read.set_sandbox_id(call.sandbox_id);
  read.set_process_id(process.process_id());
  read.set_cursor(followed->second);
  absl::Time last_sent = absl::Now();
  for (;;) {
    const absl::Duration left = deadline - absl::Now();
    if (left <= absl::ZeroDuration()) {
      return finish(absl::DeadlineExceededError(
          "the request's Connect-Timeout-Ms passed"));
    }
    read.set_wait_ms(static_cast<uint32_t>(std::min<int64_t>(
        kReadWaitMs, std::max<int64_t>(1, absl::ToInt64Milliseconds(left)))));
    v1::ReadProcessResponse chunk;
    auto context = Context(absl::Seconds(30));
    grpc::Status s = exec_->ReadProcess(context.get(), read, &chunk);
    if (!s.ok()) {
      absl::Status why = SandboxError(call.sandbox_id, s);
      if (absl::IsNotFound(why)) {
        // Removed under us: a PTY killed through SendSignal.
        v1::Process killed = process;
        killed.set_running(false);
        killed.set_signal(SIGKILL);
        if (!send(EndEvent(killed))) return false;
        return finish(absl::OkStatus());
      }
      return finish(why);
    }
    for (const v1::ProcessOutput& piece : chunk.output()) {
      const char* name = stream_name != nullptr ? stream_name
                         : piece.stream() == v1::OUTPUT_STREAM_STDERR
                             ? "stderr"
                             : "stdout";
      if (!send(Event("data", {{name, absl::Base64Escape(piece.data())}}))) {
        return false;
      }
      last_sent = absl::Now();
    }
    read.set_cursor(chunk.next_cursor());
    if (chunk.exited()) {
      // Lost with its sandbox (killed, expired): the stream breaks, as
      // envd's connection does when its sandbox goes.
      if (!chunk.process().error().empty()) {
        auto sandbox = FindSandbox(call.sandbox_id);
        if (!sandbox.ok() || sandbox->state() != v1::SANDBOX_STATE_RUNNING) {
          return finish(absl::UnavailableError(absl::StrCat(
              "sandbox ", call.sandbox_id, " is not running any more")));
        }
      }
      const bool delivered = send(EndEvent(chunk.process()));
      // Corral keeps an exited process until it is removed (and counts it
      // against the sandbox's 32); envd forgets it once reaped. The stream
      // that started it removes it once its end is delivered.
      if (delivered && method == "process.Process/Start") {
        RemoveProcess(call.sandbox_id, process.process_id());
      }
      if (!delivered) return false;
      return finish(absl::OkStatus());
    }
    if (!sink.is_writable()) return false;
    if (absl::Now() - last_sent >= absl::Seconds(call.keepalive_seconds)) {
      if (!send(Event("keepalive", Json::object()))) return false;
      last_sent = absl::Now();
    }
  }
}

// ---- process.Process -------------------------------------------------------

absl::StatusOr<std::pair<v1::Process, uint64_t>> Gateway::StartProcess(
    const EnvdCall& call, const Json& body) {
  if (!body.contains("process") || !body["process"].is_object()) {
    return absl::InvalidArgumentError("process: expected a ProcessConfig");
  }
  const Json& config = body["process"];
  if (!config.contains("cmd") || !config["cmd"].is_string() ||
      config["cmd"].get<std::string>().empty()) {
    return absl::InvalidArgumentError("process.cmd: expected a command");
  }
  std::vector<std::string> argv = {config["cmd"].get<std::string>()};
  if (config.contains("args")) {
    if (!config["args"].is_array()) {
      return absl::InvalidArgumentError("process.args: expected strings");
    }
    for (const Json& arg : config["args"]) {
      if (!arg.is_string()) {
        return absl::InvalidArgumentError("process.args: expected strings");
      }
      argv.push_back(arg.get<std::string>());
    }
  }
  ASSIGN_OR_RETURN(const std::string cwd,
                   ResolvePath(call, config.value("cwd", std::string())));
  std::map<std::string, std::string> env = {{"HOME", call.home},
                                            {"USER", call.user},
                                            {"LOGNAME", call.user},
                                            {"PWD", cwd}};
  if (config.contains("envs")) {
    if (!config["envs"].is_object()) {
      return absl::InvalidArgumentError("process.envs: expected an object");
    }
    for (const auto& [key, value] : config["envs"].items()) {
      if (!value.is_string()) {
        return absl::InvalidArgumentError(
            absl::StrCat("process.envs.", key, ": expected a string"));
      }
      env[key] = value.get<std::string>();
    }
  }
  SweepProcesses(call.sandbox_id);
  v1::Process process;
  if (body.contains("pty") && !body["pty"].is_null()) {
    ASSIGN_OR_RETURN(const v1::TerminalSize size, SizeOf(body["pty"]));
    v1::OpenShellRequest open;
    open.set_sandbox_id(call.sandbox_id);
    for (const auto& arg : argv) open.add_argv(arg);
    open.set_cwd(cwd);
    open.mutable_env()->insert(env.begin(), env.end());
    *open.mutable_size() = size;
    v1::Shell shell;
    auto context = Context();
    grpc::Status s = shells_->OpenShell(context.get(), open, &shell);
    if (!s.ok()) return SandboxError(call.sandbox_id, s);
    v1::GetProcessRequest get;
    get.set_sandbox_id(call.sandbox_id);
    get.set_process_id(shell.shell_id());
    auto get_context = Context();
    s = exec_->GetProcess(get_context.get(), get, &process);
    if (!s.ok()) return SandboxError(call.sandbox_id, s);
    return std::make_pair(process, uint64_t{0});
  }
  v1::StartProcessRequest start;
  v1::ExecStart& exec = *start.mutable_start();
  exec.set_sandbox_id(call.sandbox_id);
  for (const auto& arg : argv) exec.add_argv(arg);
  exec.set_cwd(cwd);
  exec.mutable_env()->insert(env.begin(), env.end());
  exec.set_stdin_open(body.value("stdin", false));
  if (call.timeout && *call.timeout > absl::ZeroDuration()) {
    // envd kills the process when the request's deadline passes.
    exec.set_timeout_seconds(static_cast<uint32_t>(std::min<int64_t>(
        UINT32_MAX,
        absl::ToInt64Seconds(absl::Ceil(*call.timeout, absl::Seconds(1))))));
  }
  // The daemon checks the tag (INVALID_ARGUMENT, as envd's).
  if (body.contains("tag") && body["tag"].is_string()) {
    start.set_tag(body["tag"].get<std::string>());
  }
  auto context = Context();
  grpc::Status s = exec_->StartProcess(context.get(), start, &process);
  if (!s.ok()) {
    absl::Status why = SandboxError(call.sandbox_id, s);
    // A command that cannot start (no such program, no such cwd) is
    // envd's InvalidArgument.
    if (absl::IsFailedPrecondition(why)) {
      return absl::InvalidArgumentError(why.message());
    }
    return why;
  }
  return std::make_pair(process, uint64_t{0});
}

absl::StatusOr<std::pair<v1::Process, uint64_t>> Gateway::ConnectProcess(
    const EnvdCall& call, const Json& body) {
  ASSIGN_OR_RETURN(v1::Process process, FindProcess(call, body));
  // From now on, as envd streams: what the process writes next (an exited
  // one, kept a minute, ends the stream at once).
  return std::make_pair(process, process.output_end());
}

absl::StatusOr<v1::Process> Gateway::FindProcess(const EnvdCall& call,
                                                 const Json& body) {
  ASSIGN_OR_RETURN(const Selector selector, SelectorOf(body));
  v1::ListProcessesRequest list;
  list.set_sandbox_id(call.sandbox_id);
  v1::ListProcessesResponse listed;
  auto context = Context();
  grpc::Status s = exec_->ListProcesses(context.get(), list, &listed);
  if (!s.ok()) return SandboxError(call.sandbox_id, s);
  const v1::Process* found = nullptr;
  for (const v1::Process& process : listed.processes()) {
    const bool match = selector.tag.empty()
                           ? process.pid() == static_cast<int32_t>(selector.pid)
                           : process.tag() == selector.tag;
    // Pids are reused: a running one wins, else the newest that exited.
    if (match && (found == nullptr || !found->running())) found = &process;
  }
  if (found == nullptr) {
    return absl::NotFoundError(
        selector.tag.empty()
            ? absl::StrCat("process with pid ", selector.pid, " not found")
            : absl::StrCat("process with tag ", selector.tag, " not found"));
  }
  return *found;
}

absl::StatusOr<Json> Gateway::ListProcesses(const EnvdCall& call) {
  v1::ListProcessesRequest list;
  list.set_sandbox_id(call.sandbox_id);
  v1::ListProcessesResponse listed;
  auto context = Context(call.timeout);
  grpc::Status s = exec_->ListProcesses(context.get(), list, &listed);
  if (!s.ok()) return SandboxError(call.sandbox_id, s);
  Json processes = Json::array();
  for (const v1::Process& process : listed.processes()) {
    if (!process.running()) continue;
    Json args = Json::array();
    for (int i = 1; i < process.argv_size(); ++i)
      args.push_back(process.argv(i));
    Json info = {{"pid", process.pid()},
                 {"config",
                  {{"cmd", process.argv_size() > 0 ? process.argv(0) : ""},
                   {"args", args},
                   {"envs", Json::object()}}}};
    if (!process.tag().empty()) info["tag"] = process.tag();
    processes.push_back(info);
  }
  return Json{{"processes", processes}};
}

absl::StatusOr<Json> Gateway::SendInput(const EnvdCall& call,
                                        const Json& body) {
  ASSIGN_OR_RETURN(const v1::Process process, FindProcess(call, body));
  if (!process.running()) {
    return absl::NotFoundError(
        absl::StrCat("process with pid ", process.pid(), " not found"));
  }
  if (!body.contains("input") || !body["input"].is_object()) {
    return absl::InvalidArgumentError("input: expected {stdin} or {pty}");
  }
  const Json& input = body["input"];
  const bool pty = input.contains("pty");
  ASSIGN_OR_RETURN(const std::string data,
                   BytesField(input, pty ? "pty" : "stdin"));
  if (pty != process.pty()) {
    return absl::InternalError(
        pty ? "error writing to pty: the process has no pty"
            : "error writing to stdin: the process runs on a pty");
  }
  for (size_t at = 0; at < data.size() || at == 0; at += kMaxInputChunk) {
    const std::string piece = data.substr(at, kMaxInputChunk);
    grpc::Status s;
    auto context = Context(call.timeout);
    if (pty) {
      v1::WriteShellRequest write;
      write.set_sandbox_id(call.sandbox_id);
      write.set_shell_id(process.process_id());
      write.set_input(piece);
      v1::WriteShellResponse written;
      s = shells_->WriteShell(context.get(), write, &written);
    } else {
      if (!process.stdin_open()) {
        return absl::InternalError(
            "error writing to stdin: stdin not enabled or closed");
      }
      v1::WriteProcessRequest write;
      write.set_sandbox_id(call.sandbox_id);
      write.set_process_id(process.process_id());
      write.set_data(piece);
      v1::WriteProcessResponse written;
      s = exec_->WriteProcess(context.get(), write, &written);
    }
    if (!s.ok()) {
      absl::Status why = SandboxError(call.sandbox_id, s);
      if (absl::IsFailedPrecondition(why)) {
        return absl::InternalError(
            absl::StrCat("error writing to stdin: ", why.message()));
      }
      return why;
    }
    if (data.empty()) break;
  }
  return Json::object();
}

absl::StatusOr<Json> Gateway::SendSignal(const EnvdCall& call,
                                         const Json& body) {
  int signal = 0;
  if (body.contains("signal")) {
    const Json& value = body["signal"];
    if (value == "SIGNAL_SIGKILL" || value == 9) signal = SIGKILL;
    if (value == "SIGNAL_SIGTERM" || value == 15) signal = SIGTERM;
  }
  if (signal == 0) {
    return absl::UnimplementedError(
        "signal: only SIGNAL_SIGKILL and SIGNAL_SIGTERM are supported");
  }
  ASSIGN_OR_RETURN(const v1::Process process, FindProcess(call, body));
  if (!process.running()) {
    return absl::NotFoundError(
        absl::StrCat("process with pid ", process.pid(), " not found"));
  }
  grpc::Status s;
  auto context = Context(call.timeout);
  v1::Process answer;
  if (process.pty() && signal == SIGKILL) {
    // A shell's signals go to its terminal's foreground job; killing the
    // process itself is removing it (its follower then ends "killed").
    v1::RemoveProcessRequest remove;
    remove.set_sandbox_id(call.sandbox_id);
    remove.set_process_id(process.process_id());
    s = exec_->RemoveProcess(context.get(), remove, &answer);
  } else {
    v1::SignalProcessRequest request;
    request.set_sandbox_id(call.sandbox_id);
    request.set_process_id(process.process_id());
    request.set_signal(signal);
    s = exec_->SignalProcess(context.get(), request, &answer);
  }
  if (!s.ok()) {
    absl::Status why = SandboxError(call.sandbox_id, s);
    // It exited meanwhile.
    if (absl::IsFailedPrecondition(why)) {
      return absl::NotFoundError(
          absl::StrCat("process with pid ", process.pid(), " not found"));
    }
    return why;
  }
  return Json::object();
}

absl::StatusOr<Json> Gateway::UpdateProcess(const EnvdCall& call,
                                            const Json& body) {
  ASSIGN_OR_RETURN(const v1::Process process, FindProcess(call, body));
  if (!body.contains("pty") || body["pty"].is_null()) return Json::object();
  ASSIGN_OR_RETURN(const v1::TerminalSize size, SizeOf(body["pty"]));
  if (!process.pty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("process with pid ", process.pid(), " has no pty"));
  }
  v1::ResizeShellRequest resize;
  resize.set_sandbox_id(call.sandbox_id);
  resize.set_shell_id(process.process_id());
  *resize.mutable_size() = size;
  v1::Shell shell;
  auto context = Context(call.timeout);
  grpc::Status s = shells_->ResizeShell(context.get(), resize, &shell);
  if (!s.ok()) return SandboxError(call.sandbox_id, s);
  return Json::object();
}

absl::StatusOr<Json> Gateway::CloseStdin(const EnvdCall& call,
                                         const Json& body) {
  ASSIGN_OR_RETURN(const v1::Process process, FindProcess(call, body));
  if (process.pty()) {
    return absl::UnknownError("cannot close the stdin of a pty process");
  }
  if (!process.stdin_open()) return Json::object();
  v1::WriteProcessRequest write;
  write.set_sandbox_id(call.sandbox_id);
  write.set_process_id(process.process_id());
  write.set_eof(true);
  v1::WriteProcessResponse written;
  auto context = Context(call.timeout);
  grpc::Status s = exec_->WriteProcess(context.get(), write, &written);
  if (!s.ok() && s.error_code() != grpc::StatusCode::FAILED_PRECONDITION) {
    return SandboxError(call.sandbox_id, s);
  }
  return Json::object();
}

void Gateway::RemoveProcess(const std::string& sandbox_id,
                            const std::string& process_id) {
  v1::RemoveProcessRequest remove;
  remove.set_sandbox_id(sandbox_id);
  remove.set_process_id(process_id);
  v1::Process removed;
  auto context = Context();
  (void)exec_->RemoveProcess(context.get(), remove, &removed);
}

void Gateway::SweepProcesses(const std::string& sandbox_id) {
  v1::ListProcessesRequest list;
  list.set_sandbox_id(sandbox_id);
  v1::ListProcessesResponse listed;
  auto context = Context();
  if (!exec_->ListProcesses(context.get(), list, &listed).ok()) return;
  // Near Corral's limit every exited one goes, else those that exited a
  // while ago (kept so that a client that lost its stream can still see
  // how the process ended).
  const bool crowded = listed.processes_size() >= kCrowded;
  const absl::Time now = absl::Now();
  for (const v1::Process& process : listed.processes()) {
    if (process.running()) continue;
    const absl::Time ended = absl::FromUnixMicros(
        TimeUtil::TimestampToMicroseconds(process.ended_at()));
    if (!crowded && now - ended < kKeepExited) continue;
    RemoveProcess(sandbox_id, process.process_id());
  }
}

}  // namespace corral::e2b
