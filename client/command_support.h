// What the command implementations (commands.cc, workspace_commands.cc)
// share: printing to stdout, "now" for the formatters, and a unary call with
// the CLI's error mapping.
#ifndef CORRAL_CLIENT_COMMAND_SUPPORT_H_
#define CORRAL_CLIENT_COMMAND_SUPPORT_H_

#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "client/connection.h"
#include "corral/v1/sandboxes.pb.h"
#include "google/protobuf/message.h"
#include "grpcpp/grpcpp.h"

namespace corral::cli {

// Seconds since the epoch: the "now" the formatters take.
int64_t NowSeconds();

// Writes `text` to stdout.
absl::Status Print(absl::string_view text);

// `message` as one line of JSON (see ToJson) on stdout.
absl::Status PrintMessage(const google::protobuf::Message& message);

// What create and fork print: the new sandbox's id, or with `json` the whole
// Sandbox.
absl::Status PrintSandboxId(const corral::v1::Sandbox& sandbox, bool json);

// Calls the unary `method` of `stub` with `context`; a failure becomes the
// CLI's error (Connection::CallError).
template <typename Stub, typename Request, typename Response>
absl::StatusOr<Response> UnaryCall(
    Connection& connection, std::unique_ptr<grpc::ClientContext> context,
    Stub& stub,
    grpc::Status (Stub::*method)(grpc::ClientContext*, const Request&,
                                 Response*),
    const Request& request) {
  Response response;
  const grpc::Status status = (stub.*method)(context.get(), request, &response);
  if (!status.ok()) return connection.CallError(status);
  return response;
}

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_COMMAND_SUPPORT_H_
