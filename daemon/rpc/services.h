// The gRPC services of corral.v1. Each handler finds its caller, hands the
// request to the core, and converts the result; the conversion of internal
// errors to gRPC status happens in one function, ToGrpcStatus.
#ifndef CORRAL_DAEMON_RPC_SERVICES_H_
#define CORRAL_DAEMON_RPC_SERVICES_H_

#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/impl/codegen/service_type.h"

namespace corral::daemon {

class NetAudit;

class SandboxManager;
class ImageStore;
class PluginHost;
class Listener;
class Store;
class Workspaces;
class Processes;
class CallQuota;
class OutputBudget;

// The one place where internal errors become gRPC errors. absl and gRPC share
// their code numbering; the message is kept as it is.
grpc::Status ToGrpcStatus(const absl::Status& status);

struct ServiceDeps {
  SandboxManager* manager = nullptr;  // none owned
  ImageStore* images = nullptr;
  PluginHost* plugins = nullptr;
  Listener* listener = nullptr;
  Store* store = nullptr;
  Workspaces* workspaces = nullptr;
  Processes* processes = nullptr;
  CallQuota* calls = nullptr;  // null: no call quota
  // The egress audit's writer, flushed before a read; null without egress.
  NetAudit* net_audit = nullptr;
  // Output held for unary Exec calls, all together; null: no budget.
  OutputBudget* output_budget = nullptr;
  std::string default_runtime;
  absl::Time started_at;
  // Largest image archive accepted, in bytes of extracted content.
  uint64_t max_image_bytes = 8ull << 30;
};

// Every corral.v1 service, built or answering UNIMPLEMENTED with a message.
std::vector<std::unique_ptr<grpc::Service>> MakeServices(
    const ServiceDeps& deps);

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_RPC_SERVICES_H_
