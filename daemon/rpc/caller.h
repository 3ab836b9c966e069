// What every RPC handler starts with: the caller of the call, as the
// listener recorded it for the connection.
#ifndef CORRAL_DAEMON_RPC_CALLER_H_
#define CORRAL_DAEMON_RPC_CALLER_H_

#include "daemon/rpc/listener.h"
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

#endif  // CORRAL_DAEMON_RPC_CALLER_H_
