// Human-readable and JSON renderings of corral.v1 messages for the CLI. Pure
// functions from messages to strings, with "now" passed in so tests are
// deterministic.
#ifndef CORRAL_CLIENT_FORMAT_H_
#define CORRAL_CLIENT_FORMAT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "corral/v1/exec.pb.h"
#include "corral/v1/images.pb.h"
#include "corral/v1/sandboxes.pb.h"
#include "corral/v1/system.pb.h"
#include "google/protobuf/message.h"
#include "google/protobuf/timestamp.pb.h"

namespace corral::cli {

// Columns left-aligned, separated by three spaces, one row per line, each
// line ending in '\n'; no trailing blanks. Rows shorter than the header are
// padded with empty cells.
std::string FormatTable(const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows);

// "5s ago", "3m ago", "2h ago", "4d ago"; "in 3m" for the future; "now".
std::string FormatRelative(int64_t seconds_from_now);
// RFC 3339 in UTC ("2024-05-01T12:00:00Z"); "-" when unset.
std::string FormatTimestamp(const google::protobuf::Timestamp& time);
// "512 B", "1.5 KiB", "3.0 MiB", ...
std::string FormatBytes(uint64_t bytes);
// 500 -> "0.5", 2000 -> "2"; 0 -> "default".
std::string FormatCpus(uint32_t cpu_millis);
// "1000 (alice)" or "1000" when the uid has no name on this host.
std::string FormatOwner(uint32_t uid);
// "cgroup-limits, seccomp" or "-".
std::string FormatGuarantees(
    const google::protobuf::RepeatedField<int>& guarantees);

// `corral runtimes`: NAME AVAILABLE DEFAULT GUARANTEES REASON.
std::string FormatRuntimes(const corral::v1::ListRuntimesResponse& response);

// `corral ls`: ID RUNTIME IMAGE STATE CREATED EXPIRES OWNER.
std::string FormatSandboxes(const corral::v1::ListSandboxesResponse& response,
                            int64_t now_seconds);

// `corral inspect`: "Key:   value" lines.
// Published ports, "8000 -> 127.0.0.1:8080" comma-separated (inspect) or
// one per line with `lines` (corral port).
std::string FormatPorts(const corral::v1::Sandbox& sandbox, bool lines = false);

std::string FormatSandbox(const corral::v1::Sandbox& sandbox,
                          int64_t now_seconds);

// `corral image ls`: NAME SOURCE SIZE ENTRIES SANDBOXES CREATED.
std::string FormatImages(const corral::v1::ListImagesResponse& response,
                         int64_t now_seconds);

// `corral image inspect`: "Key:   value" lines.
std::string FormatImage(const corral::v1::Image& image, int64_t now_seconds);

// `corral version`.
std::string FormatVersion(absl::string_view client_version,
                          const corral::v1::GetVersionResponse& daemon);

// One line of `corral doctor`.
struct DoctorCheck {
  bool ok = false;
  std::string name;
  std::string detail;
  // False for what this host may lack without anything being wrong (a
  // runtime other than the default): printed "no" rather than "FAIL".
  bool required = true;
};

// The runtime lines of `corral doctor`, one per runtime, with its reason,
// guarantees and details.
std::vector<DoctorCheck> RuntimeChecks(
    const corral::v1::ListRuntimesResponse& response);
// True when some runtime is the default and it is available.
bool DefaultRuntimeAvailable(const corral::v1::ListRuntimesResponse& response);
// "ok   name: detail" / "FAIL name: detail" lines.
std::string FormatDoctor(const std::vector<DoctorCheck>& checks);
// {"ok":..., "checks":[{"name":..., "ok":..., "detail":...}]}.
std::string FormatDoctorJson(const std::vector<DoctorCheck>& checks, bool ok);

// A message as one line of JSON with the proto's own field names and every
// field present, zero values included, so scripts need no defaults.
absl::StatusOr<std::string> ToJson(const google::protobuf::Message& message);

// A JSON string literal, quotes included. Invalid UTF-8 (command output need
// not be text) becomes U+FFFD, so the document always parses.
std::string JsonString(absl::string_view text);

// The object `run --json` and `exec --json` print: sandbox_id, exit_code,
// signal, timed_out, oom_killed, stdout, stderr, stdout_truncated,
// stderr_truncated, duration_us, plus error (empty unless the command could
// not start).
std::string FormatExecResultJson(absl::string_view sandbox_id,
                                 const corral::v1::ExecExit& exit,
                                 absl::string_view stdout_data,
                                 absl::string_view stderr_data);

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_FORMAT_H_
