// What RPC handlers share: the caller of the call, as the listener
// recorded it for the connection, and the unary answer.
#ifndef CORRAL_DAEMON_RPC_HANDLER_H_
#define CORRAL_DAEMON_RPC_HANDLER_H_

#include "daemon/rpc/listener.h"
#include "daemon/rpc/services.h"
#include "grpcpp/grpcpp.h"

// Declares `const Caller& var` for the call of `context` (a handler's
// grpc::ServerContext*), or answers UNAUTHENTICATED. Needs `deps_` with a
// `listener`.
#define CALLER_OR_RETURN(var)                                    \
  auto var##_optional = deps_.listener->CallerOf(*context);      \
  if (!var##_optional) {                                         \
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,       \
                        "the caller's credentials are unknown"); \
  }                                                              \
  const Caller& var = *var##_optional

namespace corral::daemon {

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

#endif  // CORRAL_DAEMON_RPC_HANDLER_H_
