#include "daemon/core/net_audit.h"

#include <vector>

#include "corral/logging.h"
#include "corral/v1/network.pb.h"
#include "daemon/store/store.h"
#include "google/protobuf/util/time_util.h"

namespace corral::daemon {
namespace {

constexpr size_t kMaxBatch = 4096;

std::string Serialize(const net::NetEvent& e) {
  corral::v1::NetworkEvent event;
  *event.mutable_time() =
      google::protobuf::util::TimeUtil::NanosecondsToTimestamp(
          absl::ToUnixNanos(e.time));
  event.set_kind(e.kind);
  event.set_address(e.address);
  event.set_port(e.port);
  event.set_name(e.name);
  event.set_allowed(e.allowed);
  event.set_reason(e.reason);
  event.set_bytes_out(e.bytes_out);
  event.set_bytes_in(e.bytes_in);
  return event.SerializeAsString();
}

}  // namespace

NetAudit::NetAudit(Store* store, int64_t keep)
    : store_(store), keep_(keep), writer_([this] { Run(); }) {}

NetAudit::~NetAudit() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  writer_.join();
}

void NetAudit::Record(const net::NetEvent& event) {
  std::lock_guard lock(mutex_);
  if (queue_.size() >= kMaxQueued) {
    ++dropped_;
    return;
  }
  queue_.push_back(event);
  ++recorded_;
  if (queue_.size() >= kMaxBatch) wake_.notify_one();
}

void NetAudit::Flush() {
  std::unique_lock lock(mutex_);
  const uint64_t target = recorded_;
  wake_.notify_one();
  stored_.wait(lock, [&] { return written_ >= target || stopping_; });
}

void NetAudit::Run() {
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait_for(lock, absl::ToChronoMilliseconds(kBatchInterval),
                   [this] { return stopping_ || queue_.size() >= kMaxBatch; });
    if (dropped_ > 0) {
      corral::Logger("egress")->warn(
          "the egress audit dropped {} events: the store did not keep up",
          dropped_);
      dropped_ = 0;
    }
    if (queue_.empty()) {
      stored_.notify_all();
      if (stopping_) return;
      continue;
    }
    std::vector<NetEventRecord> batch;
    while (!queue_.empty() && batch.size() < kMaxBatch) {
      NetEventRecord record;
      record.sandbox_id = queue_.front().sandbox_id;
      record.event = Serialize(queue_.front());
      batch.push_back(std::move(record));
      queue_.pop_front();
    }
    lock.unlock();
    if (auto s = store_->AppendNetEvents(batch, keep_); !s.ok()) {
      corral::Logger("egress")->error("storing {} network events: {}",
                                      batch.size(), s.ToString());
    }
    lock.lock();
    written_ += batch.size();
    stored_.notify_all();
  }
}

}  // namespace corral::daemon
