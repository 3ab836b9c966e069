// What RPC handlers share: admission of a call (its caller as the listener
// recorded it for the connection, the caller's policy and call quota), and
// the unary answer.
#ifndef CORRAL_DAEMON_RPC_HANDLER_H_
#define CORRAL_DAEMON_RPC_HANDLER_H_

#include "absl/status/statusor.h"
#include "daemon/rpc/call_quota.h"
#include "daemon/rpc/listener.h"
#include "daemon/rpc/services.h"
#include "grpcpp/grpcpp.h"

namespace corral::daemon {

// A call let in: who made it, and its place in the caller's call quota
// (given back when the handler returns).
struct AdmittedCall {
  Caller caller;
  CallQuota::Slot slot;
};

// Lets a call in, or says why not: UNAUTHENTICATED when the caller's
// credentials or groups are unknown, PERMISSION_DENIED when its policy
// denies it (never for admins), RESOURCE_EXHAUSTED when it already has as
// many calls in progress as its quota allows.
absl::StatusOr<AdmittedCall> AdmitCall(const ServiceDeps& deps,
                                       const grpc::ServerContext& context);

// Runs `call` (returning absl::StatusOr<Result>) and copies its result into
// the response, or answers with its error.
template <typename Result, typename Response, typename Call>
grpc::Status Answer(Call call, Response* response) {
  absl::StatusOr<Result> result = call();
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(*result);
  return grpc::Status::OK;
}

}  // namespace corral::daemon

// Declares `const Caller& var` for the call of `context` (a handler's
// grpc::ServerContext*) and holds the call's quota place until the handler
// returns; or answers with why the call is not let in. Needs `deps_`.
#define CALLER_OR_RETURN(var)                                         \
  auto var##_admitted = ::corral::daemon::AdmitCall(deps_, *context); \
  if (!var##_admitted.ok()) {                                         \
    return ::corral::daemon::ToGrpcStatus(var##_admitted.status());   \
  }                                                                   \
  [[maybe_unused]] const Caller& var = var##_admitted->caller

#endif  // CORRAL_DAEMON_RPC_HANDLER_H_
