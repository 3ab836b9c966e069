#include "client/mcp/stdio.h"

#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

namespace corral::cli::mcp {
namespace {

class Output {
 public:
  explicit Output(int fd) : fd_(fd) {}
  // One message, one line. Invalid UTF-8 (command output) is replaced.
  void Send(const Json& message) {
    std::string line =
        message.dump(-1, ' ', false, Json::error_handler_t::replace);
    line += '\n';
    std::lock_guard lock(mutex_);
    for (size_t at = 0; at < line.size();) {
      const ssize_t n = ::write(fd_, line.data() + at, line.size() - at);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;  // the client went away
      at += static_cast<size_t>(n);
    }
  }

 private:
  const int fd_;
  std::mutex mutex_;
};

}  // namespace

int ServeStdio(McpServer& server, int in_fd, int out_fd) {
  Output output(out_fd);
  std::mutex mutex;
  std::condition_variable done;
  int running = 0;
  auto start = [&](const std::string& line) {
    Json message = Json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (message.is_discarded()) {
      output.Send(ErrorMessage(nullptr, kParseError, "not valid JSON"));
      return;
    }
    // initialize and notifications are handled in order, before what the
    // client sends after them; other requests run side by side.
    if (!message.is_object() || !message.contains("id") ||
        message.value("method", Json()) == "initialize") {
      if (auto response = server.Handle(message)) output.Send(*response);
      return;
    }
    {
      std::lock_guard lock(mutex);
      ++running;
    }
    std::thread([&, message = std::move(message)] {
      if (auto response = server.Handle(message)) output.Send(*response);
      std::lock_guard lock(mutex);
      if (--running == 0) done.notify_all();
    }).detach();
  };

  std::string pending;
  bool skipping = false;  // the rest of a line that is too long
  char buffer[64 * 1024];
  for (;;) {
    const ssize_t n = ::read(in_fd, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    size_t from = 0;
    for (size_t i = 0; i < static_cast<size_t>(n); ++i) {
      if (buffer[i] != '\n') continue;
      if (skipping) {
        skipping = false;
      } else {
        pending.append(buffer + from, i - from);
        if (pending.find_first_not_of(" \t\r") != std::string::npos) {
          start(pending);
        }
      }
      pending.clear();
      from = i + 1;
    }
    if (!skipping) {
      pending.append(buffer + from, static_cast<size_t>(n) - from);
      if (pending.size() > kMaxMessageBytes) {
        pending.clear();
        skipping = true;
        output.Send(ErrorMessage(nullptr, kInvalidRequest,
                                 "message larger than 64 MiB: skipped"));
      }
    }
  }
  if (!skipping && pending.find_first_not_of(" \t\r") != std::string::npos) {
    start(pending);
  }
  std::unique_lock lock(mutex);
  done.wait(lock, [&] { return running == 0; });
  return 0;
}

}  // namespace corral::cli::mcp
