#ifndef CORRAL_DAEMON_CORE_NET_AUDIT_H_
#define CORRAL_DAEMON_CORE_NET_AUDIT_H_

// The egress audit's way into the store: the proxy's and resolver's threads
// hand events over without waiting, and one writer thread stores them in
// batches (one transaction, one sync, per batch; a sync per event would cap
// the proxy at a few thousand connections a second).
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

#include "absl/time/time.h"
#include "daemon/net/egress.h"

namespace corral::daemon {

class Store;

class NetAudit {
 public:
  // `keep`: the newest events kept per sandbox.
  NetAudit(Store* store, int64_t keep);
  // Stores what is queued, then stops.
  ~NetAudit();
  NetAudit(const NetAudit&) = delete;
  NetAudit& operator=(const NetAudit&) = delete;

  // Queues one event; past kMaxQueued (a store that cannot keep up) it is
  // counted as dropped and the count logged.
  void Record(const net::NetEvent& event);
  // Blocks until everything recorded so far is stored (for tests, and
  // readers that must see their own events).
  void Flush();

  static constexpr size_t kMaxQueued = 65536;
  static constexpr absl::Duration kBatchInterval = absl::Milliseconds(50);

 private:
  void Run();

  Store* store_;
  const int64_t keep_;
  std::mutex mutex_;
  std::condition_variable wake_, stored_;
  std::deque<net::NetEvent> queue_;
  uint64_t recorded_ = 0, written_ = 0, dropped_ = 0;
  bool stopping_ = false;
  std::thread writer_;
};

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_CORE_NET_AUDIT_H_
