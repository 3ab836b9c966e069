// A worker thread that polls a stop pipe beside its own fds, so that Stop()
// can wake it from a blocking poll() and join it.
#ifndef CORRAL_CLIENT_STOPPABLE_THREAD_H_
#define CORRAL_CLIENT_STOPPABLE_THREAD_H_

#include <fcntl.h>
#include <unistd.h>

#include <functional>
#include <thread>

#include "absl/status/status.h"
#include "corral/platform.h"
#include "corral/unique_fd.h"

namespace corral::cli {

class StoppableThread {
 public:
  StoppableThread() = default;
  StoppableThread(const StoppableThread&) = delete;
  StoppableThread& operator=(const StoppableThread&) = delete;
  ~StoppableThread() { Stop(); }

  // Runs `loop` on a new thread; the loop should return once stop_fd() is
  // readable.
  absl::Status Start(std::function<void()> loop) {
    int fds[2];
    if (platform::MakePipe(fds) != 0) {
      return absl::ErrnoToStatus(errno, "pipe");
    }
    stop_read_.Reset(fds[0]);
    stop_write_.Reset(fds[1]);
    thread_ = std::thread(std::move(loop));
    return absl::OkStatus();
  }

  // Wakes the loop and joins it; safe to call more than once.
  void Stop() {
    if (!thread_.joinable()) return;
    const char byte = 0;
    (void)!::write(stop_write_.get(), &byte, 1);
    thread_.join();
  }

  int stop_fd() const { return stop_read_.get(); }

 private:
  UniqueFd stop_read_;
  UniqueFd stop_write_;
  std::thread thread_;
};

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_STOPPABLE_THREAD_H_
