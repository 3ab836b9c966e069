// Per-uid counts of the RPCs in progress, so that one client holding many
// calls or idle streams cannot take every server thread from the others.
#ifndef CORRAL_DAEMON_RPC_CALL_QUOTA_H_
#define CORRAL_DAEMON_RPC_CALL_QUOTA_H_

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <mutex>
#include <string_view>

#include "absl/status/statusor.h"

namespace corral::daemon {

class CallQuota {
 public:
  // One call in progress; gives its place back when destroyed. Movable.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept : quota_(other.quota_), uid_(other.uid_) {
      other.quota_ = nullptr;
    }
    Slot& operator=(Slot&& other) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { Release(); }

   private:
    friend class CallQuota;
    Slot(CallQuota* quota, uid_t uid) : quota_(quota), uid_(uid) {}
    void Release();

    CallQuota* quota_ = nullptr;  // not owned; outlives its slots
    uid_t uid_ = 0;
  };

  // Takes a place for one more call of `uid`, which may have at most
  // `limit` at once (0: no limit). RESOURCE_EXHAUSTED naming the quota, its
  // value and `policy` when it has them all.
  [[nodiscard]] absl::StatusOr<Slot> Acquire(uid_t uid, uint32_t limit,
                                             std::string_view policy);

  // Calls of `uid` in progress now.
  [[nodiscard]] uint32_t InProgress(uid_t uid) const;

 private:
  mutable std::mutex mutex_;
  std::map<uid_t, uint32_t> in_progress_;  // guarded by mutex_; no zeros
};

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_RPC_CALL_QUOTA_H_
