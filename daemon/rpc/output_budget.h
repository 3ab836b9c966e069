// The daemon-wide budget for the output it holds for unary Exec calls,
// which must keep a command's whole output until it exits: however many
// calls run at once, together they hold at most the budget.
#ifndef CORRAL_DAEMON_RPC_OUTPUT_BUDGET_H_
#define CORRAL_DAEMON_RPC_OUTPUT_BUDGET_H_

#include <algorithm>
#include <cstdint>
#include <mutex>

namespace corral::daemon {

class OutputBudget {
 public:
  explicit OutputBudget(uint64_t capacity) : capacity_(capacity) {}

  // Takes up to `bytes` of the budget; how many it got (0 when it is spent).
  uint64_t Take(uint64_t bytes) {
    std::lock_guard lock(mutex_);
    const uint64_t granted = std::min(bytes, capacity_ - used_);
    used_ += granted;
    return granted;
  }
  // Gives back what Take granted.
  void Give(uint64_t bytes) {
    std::lock_guard lock(mutex_);
    used_ -= std::min(bytes, used_);
  }
  uint64_t used() const {
    std::lock_guard lock(mutex_);
    return used_;
  }

 private:
  const uint64_t capacity_;
  mutable std::mutex mutex_;
  uint64_t used_ = 0;  // guarded by mutex_
};

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_RPC_OUTPUT_BUDGET_H_
