// corral.v1.Network: a sandbox's egress record, from the store.
#include "absl/time/clock.h"
#include "corral/v1/network.grpc.pb.h"
#include "daemon/core/net_audit.h"
#include "daemon/core/sandbox_manager.h"
#include "daemon/rpc/handler.h"
#include "daemon/rpc/services.h"
#include "daemon/store/store.h"

namespace corral::daemon {
namespace {

namespace v1 = corral::v1;

constexpr uint32_t kMaxEvents = 1000;
constexpr uint32_t kMaxWaitMs = 30000;
// How often a waiting call looks again.
constexpr absl::Duration kWaitSlice = absl::Milliseconds(100);

class NetworkService final : public v1::Network::Service {
 public:
  explicit NetworkService(const ServiceDeps& deps) : deps_(deps) {}

  grpc::Status ListNetworkEvents(
      grpc::ServerContext* context, const v1::ListNetworkEventsRequest* request,
      v1::ListNetworkEventsResponse* response) override {
    CALLER_OR_RETURN(caller);
    // Another user's sandbox is NOT_FOUND, like everywhere else.
    if (auto sandbox = deps_.manager->GetSandbox(caller, request->sandbox_id());
        !sandbox.ok()) {
      return ToGrpcStatus(sandbox.status());
    }
    if (request->wait_ms() > kMaxWaitMs) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "wait_ms: at most 30000");
    }
    const uint32_t limit =
        request->max_events() == 0 || request->max_events() > kMaxEvents
            ? kMaxEvents
            : request->max_events();
    const absl::Time deadline =
        absl::Now() + absl::Milliseconds(request->wait_ms());
    response->set_next_sequence(request->after_sequence());
    // What the sandbox did until now is in the store, not in flight.
    if (deps_.net_audit != nullptr) deps_.net_audit->Flush();
    for (;;) {
      auto records = deps_.store->ListNetEvents(
          request->sandbox_id(),
          static_cast<int64_t>(request->after_sequence()), limit);
      if (!records.ok()) return ToGrpcStatus(records.status());
      for (const auto& record : *records) {
        v1::NetworkEvent* event = response->add_events();
        if (!event->ParseFromString(record.event)) {
          return grpc::Status(grpc::StatusCode::INTERNAL,
                              "an unreadable network event in the store");
        }
        event->set_sequence(static_cast<uint64_t>(record.sequence));
        response->set_next_sequence(static_cast<uint64_t>(record.sequence));
      }
      if (!records->empty() || absl::Now() >= deadline ||
          context->IsCancelled()) {
        return grpc::Status::OK;
      }
      absl::SleepFor(std::min(kWaitSlice, deadline - absl::Now()));
    }
  }

 private:
  const ServiceDeps deps_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeNetworkService(const ServiceDeps& deps) {
  return std::make_unique<NetworkService>(deps);
}

}  // namespace corral::daemon
