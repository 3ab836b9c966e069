#include "daemon/agent/fs_call.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "corral/status_macros.h"

namespace corral::daemon {
namespace {

namespace av1 = corral::agent::v1;

// Keep at most this much of an operation's stderr: one line is expected.
constexpr size_t kMaxStderrBytes = 4096;

// The failure line, made safe to show: first line only, printable ASCII.
std::string CleanLine(std::string_view text) {
  std::string line;
  for (char c : text) {
    if (c == '\n') break;
    if (line.size() >= 1024) break;
    const unsigned char u = static_cast<unsigned char>(c);
    line.push_back(u >= 0x20 && u < 0x7f ? c : '?');
  }
  return line;
}

}  // namespace

absl::StatusCode FsFailureCode(std::string_view message) {
  struct Rule {
    const char* text;
    absl::StatusCode code;
  };
  static constexpr Rule kRules[] = {
      {"No such file or directory", absl::StatusCode::kNotFound},
      {"File exists", absl::StatusCode::kAlreadyExists},
      {"already exists", absl::StatusCode::kAlreadyExists},
      {"No space left", absl::StatusCode::kResourceExhausted},
      {"Disk quota exceeded", absl::StatusCode::kResourceExhausted},
      {"exceeds", absl::StatusCode::kResourceExhausted},
      {"limit", absl::StatusCode::kResourceExhausted},
      {"Permission denied", absl::StatusCode::kPermissionDenied},
      {"Operation not permitted", absl::StatusCode::kPermissionDenied},
      {"Read-only file system", absl::StatusCode::kFailedPrecondition},
      {"Not a directory", absl::StatusCode::kFailedPrecondition},
      {"Is a directory", absl::StatusCode::kFailedPrecondition},
      {"Directory not empty", absl::StatusCode::kFailedPrecondition},
      {"not a regular file", absl::StatusCode::kFailedPrecondition},
  };
  for (const Rule& rule : kRules) {
    if (message.find(rule.text) != std::string_view::npos) return rule.code;
  }
  return absl::StatusCode::kInvalidArgument;
}

absl::StatusOr<std::unique_ptr<FsCall>> FsCall::Start(
    AgentConnection& agent, const av1::FsRequest& request, bool with_input,
    absl::Time deadline) {
  av1::ExecStart start;
  *start.mutable_fs() = request;
  start.set_stdin_open(with_input);
  if (deadline != absl::InfiniteFuture()) {
    const int64_t ms = absl::ToInt64Milliseconds(deadline - absl::Now());
    start.set_timeout_ms(static_cast<uint64_t>(std::max<int64_t>(ms, 1)));
  }
  ASSIGN_OR_RETURN(auto session, agent.StartExec(start));
  auto call = std::unique_ptr<FsCall>(new FsCall(std::move(session), deadline));
  call->input_closed_ = !with_input;
  return call;
}

absl::Status FsCall::SendRecord(const av1::FsRecord& record) {
  if (input_closed_) {
    return absl::FailedPreconditionError("file operation input is closed");
  }
  scratch_.clear();
  if (!agent::wire::AppendFsRecord(record, &scratch_)) {
    return absl::InvalidArgumentError("file operation record too large");
  }
  absl::Status s = session_->WriteStdin(scratch_, false, deadline_);
  if (!s.ok() && absl::IsFailedPrecondition(s)) {
    // The operation stopped reading (it failed): report why.
    while (!exited_) {
      if (!Pump().ok()) break;
    }
    if (exited_) return Failure(exit_);
  }
  return s;
}

absl::Status FsCall::SendEntry(const av1::FsEntry& entry) {
  av1::FsRecord record;
  *record.mutable_entry() = entry;
  return SendRecord(record);
}

absl::Status FsCall::SendData(std::string_view data) {
  av1::FsRecord record;
  while (!data.empty()) {
    const size_t n = std::min(data.size(), agent::wire::kFsDataChunkBytes);
    record.set_data(data.data(), n);
    RETURN_IF_ERROR(SendRecord(record));
    data.remove_prefix(n);
  }
  return absl::OkStatus();
}

absl::Status FsCall::CloseInput() {
  if (input_closed_) return absl::OkStatus();
  input_closed_ = true;
  absl::Status s = session_->WriteStdin({}, true, deadline_);
  // A command that already exited has no stdin left to close.
  if (absl::IsFailedPrecondition(s)) return absl::OkStatus();
  return s;
}

absl::Status FsCall::Pump() {
  ASSIGN_OR_RETURN(ExecEvent event,
                   session_->Next(std::min(deadline_, wait_until_)));
  switch (event.kind) {
    case ExecEvent::Kind::kStarted:
      break;
    case ExecEvent::Kind::kOutput:
      if (event.fd == av1::FD_STDOUT) {
        decoder_.Feed(event.data);
      } else if (stderr_.size() < kMaxStderrBytes) {
        stderr_.append(event.data, 0, kMaxStderrBytes - stderr_.size());
      }
      break;
    case ExecEvent::Kind::kExit:
      exited_ = true;
      exit_ = event.exit;
      break;
  }
  return absl::OkStatus();
}

absl::Status FsCall::Failure(const av1::ExecExit& exit) const {
  if (exit.timed_out()) {
    return absl::DeadlineExceededError("file operation timed out");
  }
  if (exit.signal() != 0) {
    return absl::AbortedError(
        absl::StrCat("file operation was killed by signal ", exit.signal()));
  }
  if (exit.exit_code() != 0) {
    std::string line = CleanLine(stderr_);
    if (line.empty()) {
      line = absl::StrCat("file operation failed with exit code ",
                          exit.exit_code());
    }
    return absl::Status(FsFailureCode(line), line);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<av1::FsRecord>> FsCall::Next() {
  av1::FsRecord record;
  for (;;) {
    if (decoder_.Next(&record)) {
      if (have_summary_) {
        return absl::InternalError("agent: a record after the summary");
      }
      if (record.has_summary()) {
        have_summary_ = true;
        summary_ = record.summary();
        continue;
      }
      if (record.body_case() == av1::FsRecord::BODY_NOT_SET) {
        return absl::InternalError("agent: an empty file record");
      }
      return std::optional<av1::FsRecord>(std::move(record));
    }
    if (decoder_.failed()) {
      return absl::InternalError(
          absl::StrCat("agent: bad file record: ", decoder_.error()));
    }
    if (exited_) {
      RETURN_IF_ERROR(Failure(exit_));
      if (decoder_.buffered_bytes() != 0) {
        return absl::InternalError("agent: a file record was cut short");
      }
      if (!have_summary_) {
        return absl::InternalError(
            "agent: file operation ended without a summary");
      }
      return std::optional<av1::FsRecord>();
    }
    if (absl::Status s = Pump(); !s.ok()) {
      if (absl::IsDeadlineExceeded(s)) {
        return absl::DeadlineExceededError("file operation timed out");
      }
      return s;
    }
  }
}

absl::StatusOr<av1::FsSummary> FsCall::Finish() {
  RETURN_IF_ERROR(CloseInput());
  ASSIGN_OR_RETURN(auto record, Next());
  if (record.has_value()) {
    return absl::InternalError("agent: unexpected output from file operation");
  }
  return summary_;
}

}  // namespace corral::daemon
