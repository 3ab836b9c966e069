#include "daemon/rpc/call_quota.h"

#include "absl/strings/str_cat.h"

namespace corral::daemon {

CallQuota::Slot& CallQuota::Slot::operator=(Slot&& other) noexcept {
  if (this != &other) {
    Release();
    quota_ = other.quota_;
    uid_ = other.uid_;
    other.quota_ = nullptr;
  }
  return *this;
}

void CallQuota::Slot::Release() {
  if (quota_ == nullptr) return;
  std::lock_guard lock(quota_->mutex_);
  auto it = quota_->in_progress_.find(uid_);
  if (it != quota_->in_progress_.end() && --it->second == 0) {
    quota_->in_progress_.erase(it);
  }
  quota_ = nullptr;
}

absl::StatusOr<CallQuota::Slot> CallQuota::Acquire(uid_t uid, uint32_t limit,
                                                   std::string_view policy) {
  std::lock_guard lock(mutex_);
  uint32_t& count = in_progress_[uid];
  if (limit != 0 && count >= limit) {
    if (count == 0) in_progress_.erase(uid);
    return absl::ResourceExhaustedError(
        absl::StrCat("quota calls = ", limit, " reached: uid ", uid,
                     " already has ", limit, " calls in progress (",
                     std::string(policy), "); wait for some to end"));
  }
  ++count;
  return Slot(this, uid);
}

uint32_t CallQuota::InProgress(uid_t uid) const {
  std::lock_guard lock(mutex_);
  auto it = in_progress_.find(uid);
  return it == in_progress_.end() ? 0 : it->second;
}

}  // namespace corral::daemon
