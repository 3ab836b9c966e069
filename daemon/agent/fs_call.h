// The daemon's side of one file operation on a sandbox's agent (agent.proto,
// "File operations"): an exec stream whose ExecStart carries an FsRequest,
// with FsRecords on its stdin and stdout. Everything the agent sends is
// hostile: records are size-checked and parsed incrementally, and a record
// after the summary, an oversized one, or a summary missing at exit ends
// the call with an error.
#ifndef CORRAL_DAEMON_AGENT_FS_CALL_H_
#define CORRAL_DAEMON_AGENT_FS_CALL_H_

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "corral/agent/v1/agent.pb.h"
#include "daemon/agent/agent_connection.h"
#include "guest-agent/wire/fs_record_codec.h"

namespace corral::daemon {

class FsCall {
 public:
  // Starts `request` on the agent. `with_input`: the operation reads records
  // from stdin (Write, Unpack); otherwise stdin is empty. The whole call is
  // bounded by `deadline`.
  static absl::StatusOr<std::unique_ptr<FsCall>> Start(
      AgentConnection& agent, const corral::agent::v1::FsRequest& request,
      bool with_input, absl::Time deadline = absl::InfiniteFuture());

  FsCall(const FsCall&) = delete;
  FsCall& operator=(const FsCall&) = delete;
  // An unfinished call is cancelled (its process group killed).
  ~FsCall() = default;

  // Input records, waiting for the stream's window.
  absl::Status SendEntry(const corral::agent::v1::FsEntry& entry);
  // Splits into data records of at most kFsDataChunkBytes.
  absl::Status SendData(std::string_view data);
  // Ends the input.
  absl::Status CloseInput();

  // The next output record before the summary, or std::nullopt once the
  // operation has sent its summary and exited 0 (summary() then holds it).
  // A failed operation gives its one-line reason with a code derived from
  // it (NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION, INVALID_ARGUMENT,
  // RESOURCE_EXHAUSTED, PERMISSION_DENIED).
  absl::StatusOr<std::optional<corral::agent::v1::FsRecord>> Next();
  // Reads to the end, refusing any record but the summary.
  absl::StatusOr<corral::agent::v1::FsSummary> Finish();
  const corral::agent::v1::FsSummary& summary() const { return summary_; }
  // Until the next call of Next: give up waiting at `until` (Next then
  // fails with DEADLINE_EXCEEDED and the call goes on), for callers that
  // must look at something else while an operation is quiet (a watch).
  void set_wait_until(absl::Time until) { wait_until_ = until; }

 private:
  FsCall(std::unique_ptr<ExecSession> session, absl::Time deadline)
      : session_(std::move(session)), deadline_(deadline) {}
  absl::Status SendRecord(const corral::agent::v1::FsRecord& record);
  // Reads events until a record is decoded or the operation exits.
  absl::Status Pump();
  absl::Status Failure(const corral::agent::v1::ExecExit& exit) const;

  std::unique_ptr<ExecSession> session_;
  const absl::Time deadline_;
  absl::Time wait_until_ = absl::InfiniteFuture();
  agent::wire::FsRecordDecoder decoder_;
  std::string stderr_;
  bool have_summary_ = false;
  bool exited_ = false;
  bool input_closed_ = false;
  corral::agent::v1::ExecExit exit_;
  corral::agent::v1::FsSummary summary_;
  std::string scratch_;
};

// Maps an operation's failure line to a status code by the errno text or
// rule it names; used for Files RPC errors.
absl::StatusCode FsFailureCode(std::string_view message);

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_AGENT_FS_CALL_H_
