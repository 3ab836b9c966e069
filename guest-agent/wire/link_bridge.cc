#include "guest-agent/wire/link_bridge.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "corral/unique_fd.h"
#include "guest-agent/wire/serial_link.h"

namespace corral::agent::wire {
namespace {

using Role = LinkBridgeOptions::Role;

// Past this many bytes queued towards one side, the bridge stops reading the
// other side until it drains.
constexpr size_t kMaxQueuedBytes = 1u << 20;
constexpr size_t kReadChunk = 64u << 10;
// A guest's port whose host side is gone is tried again this often.
constexpr long kPortRetryNs = 100L * 1000 * 1000;

enum Tag : uint32_t { kLink, kListen, kConnection, kSignal, kTimer };

void SetNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
  ::fcntl(fd, F_SETFD, FD_CLOEXEC);
}

// One fd in the epoll set, with the events it is registered for.
struct Watched {
  UniqueFd fd;
  uint32_t events = 0;  // 0: not registered
};

class Bridge {
 public:
  explicit Bridge(const LinkBridgeOptions& options)
      : role_(options.role),
        connect_agent_(options.connect_agent),
        on_accept_(options.on_accept),
        on_opened_(options.on_opened),
        log_(options.log) {
    link_.fd.Reset(options.link_fd);
    listen_.fd.Reset(options.listen_fd);
  }

  int Run();

 private:
  enum class State { kNone, kOpening, kOpen };

  void Log(const std::string& line) const {
    if (log_) log_(line);
  }
  void Interest(Watched& watched, Tag tag, uint32_t events);
  void Refresh();

  void OnLinkEvent(uint32_t events);
  void OnConnectionEvent(uint32_t events);
  void OnAccept();
  void OnSignal();
  void OnTimer();

  void ReadLink();
  void WriteLink();
  void HandleRecord(const LinkRecord& record);
  void ReadConnection();
  void WriteConnection();
  void CloseConnection(bool tell_peer);
  void LinkGone(const char* why);
  void Queue(LinkRecordType type, std::string_view payload = {});
  uint32_t NewEpoch();

  const Role role_;
  const std::function<int(const std::string&)> connect_agent_;
  const std::function<bool(int, std::string*)> on_accept_;
  const std::function<void(int)> on_opened_;
  const std::function<void(const std::string&)> log_;

  UniqueFd epoll_;
  Watched link_, listen_, connection_, signal_, timer_;
  LinkDecoder decoder_;
  std::string link_out_;  // encoded records for the link
  size_t link_out_at_ = 0;
  std::string connection_out_;  // payload for the connection
  size_t connection_out_at_ = 0;
  State state_ = State::kNone;
  uint32_t epoch_ = 0;
  bool link_resting_ = false;  // kGuest: the host side is gone for now
  bool done_ = false;
};

void Bridge::Interest(Watched& watched, Tag tag, uint32_t events) {
  if (!watched.fd || events == watched.events) return;
  if (events == 0) {
    ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, watched.fd.get(), nullptr);
    watched.events = 0;
    return;
  }
  epoll_event event{};
  event.events = events;
  event.data.u32 = tag;
  const int op = watched.events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
  if (::epoll_ctl(epoll_.get(), op, watched.fd.get(), &event) != 0) {
    Log(std::string("epoll_ctl: ") + std::strerror(errno));
    return;
  }
  watched.events = events;
}

// What each fd waits for follows from the queues and the state.
void Bridge::Refresh() {
  uint32_t link = 0;
  if (!link_resting_) {
    if (connection_out_.size() - connection_out_at_ < kMaxQueuedBytes) {
      link |= EPOLLIN;
    }
    if (link_out_.size() > link_out_at_) link |= EPOLLOUT;
  }
  Interest(link_, kLink, link);
  uint32_t connection = 0;
  if (state_ == State::kOpen &&
      link_out_.size() - link_out_at_ < kMaxQueuedBytes) {
    connection |= EPOLLIN;
  }
  if (connection_out_.size() > connection_out_at_) connection |= EPOLLOUT;
  // A connection still opening is watched for its hang-up alone.
  if (connection_.fd && connection == 0) connection = EPOLLRDHUP;
  Interest(connection_, kConnection, connection);
}

uint32_t Bridge::NewEpoch() {
  uint32_t epoch = 0;
  while (epoch == 0 || epoch == epoch_) {
    if (::getrandom(&epoch, sizeof(epoch), 0) != sizeof(epoch)) {
      epoch = epoch_ + 1;  // no entropy: still distinct from the last one
    }
  }
  return epoch;
}

void Bridge::Queue(LinkRecordType type, std::string_view payload) {
  if (link_out_at_ > 0 && link_out_at_ == link_out_.size()) {
    link_out_.clear();
    link_out_at_ = 0;
  }
  AppendLinkRecord(type, epoch_, payload, &link_out_);
}

void Bridge::CloseConnection(bool tell_peer) {
  if (!connection_.fd) return;
  if (tell_peer && state_ != State::kNone) Queue(LinkRecordType::kClose);
  Interest(connection_, kConnection, 0);
  connection_.fd.Reset();
  connection_out_.clear();
  connection_out_at_ = 0;
  state_ = State::kNone;
}

void Bridge::OnAccept() {
  for (;;) {
    int fd = ::accept4(listen_.fd.get(), nullptr, nullptr,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) {
        Log(std::string("accept: ") + std::strerror(errno));
      }
      return;
    }
    std::string payload;
    if (on_accept_) {
      // The hook reads with blocking calls and a deadline of its own.
      int flags = ::fcntl(fd, F_GETFL);
      ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
      const bool accepted = on_accept_(fd, &payload);
      ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
      if (!accepted) {
        ::close(fd);
        continue;
      }
    }
    // The newest connection wins, as on the agent's own socket.
    CloseConnection(/*tell_peer=*/true);
    connection_.fd.Reset(fd);
    epoch_ = NewEpoch();
    state_ = State::kOpening;
    Queue(LinkRecordType::kOpen, payload);
  }
}

void Bridge::HandleRecord(const LinkRecord& record) {
  if (role_ == Role::kGuest && record.type == LinkRecordType::kOpen) {
    CloseConnection(/*tell_peer=*/false);
    epoch_ = record.epoch;
    int fd = connect_agent_ ? connect_agent_(record.payload) : -1;
    if (fd < 0) {
      Log(std::string("connecting to the agent: ") + std::strerror(errno));
      Queue(LinkRecordType::kClose);
      return;
    }
    SetNonBlocking(fd);
    connection_.fd.Reset(fd);
    state_ = State::kOpen;
    Queue(LinkRecordType::kOpened);
    return;
  }
  // Everything else belongs to the current connection or to none.
  if (record.epoch != epoch_ || state_ == State::kNone) return;
  switch (record.type) {
    case LinkRecordType::kOpened:
      if (role_ == Role::kHost && state_ == State::kOpening) {
        state_ = State::kOpen;
        if (on_opened_) on_opened_(connection_.fd.get());
      }
      break;
    case LinkRecordType::kData:
      if (state_ == State::kOpen) {
        connection_out_.append(record.payload);
      }
      break;
    case LinkRecordType::kClose:
      CloseConnection(/*tell_peer=*/false);
      break;
    case LinkRecordType::kOpen:
      break;  // only a host sends OPEN
  }
}

void Bridge::LinkGone(const char* why) {
  if (role_ == Role::kHost) {
    // The VM is gone: so is every connection to it.
    if (why != nullptr) Log(std::string("link: ") + why);
    done_ = true;
    return;
  }
  // A guest's port reads end-of-file while the host side is disconnected:
  // the connection (if any) is over; rest, then read again.
  CloseConnection(/*tell_peer=*/false);
  link_resting_ = true;
  itimerspec retry{};
  retry.it_value.tv_nsec = kPortRetryNs;
  ::timerfd_settime(timer_.fd.get(), 0, &retry, nullptr);
}

void Bridge::ReadLink() {
  char buffer[kReadChunk];
  for (int i = 0; i < 16; ++i) {
    ssize_t n = ::read(link_.fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      LinkGone(std::strerror(errno));
      return;
    }
    if (n == 0) {
      LinkGone(nullptr);
      return;
    }
    decoder_.Feed(std::string_view(buffer, static_cast<size_t>(n)));
    LinkRecord record;
    while (decoder_.Next(&record)) HandleRecord(record);
    if (connection_out_.size() - connection_out_at_ >= kMaxQueuedBytes) {
      return;
    }
  }
}

void Bridge::WriteLink() {
  while (link_out_at_ < link_out_.size()) {
    ssize_t n = ::write(link_.fd.get(), link_out_.data() + link_out_at_,
                        link_out_.size() - link_out_at_);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      LinkGone(std::strerror(errno));
      return;
    }
    link_out_at_ += static_cast<size_t>(n);
  }
  if (link_out_at_ == link_out_.size()) {
    link_out_.clear();
    link_out_at_ = 0;
  } else if (link_out_at_ >= kMaxQueuedBytes) {
    link_out_.erase(0, link_out_at_);
    link_out_at_ = 0;
  }
}

void Bridge::ReadConnection() {
  char buffer[kMaxLinkPayloadBytes];
  for (int i = 0; i < 16 && state_ == State::kOpen; ++i) {
    ssize_t n = ::read(connection_.fd.get(), buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      CloseConnection(/*tell_peer=*/true);
      return;
    }
    if (n == 0) {
      CloseConnection(/*tell_peer=*/true);
      return;
    }
    Queue(LinkRecordType::kData,
          std::string_view(buffer, static_cast<size_t>(n)));
    if (link_out_.size() - link_out_at_ >= kMaxQueuedBytes) return;
  }
}

void Bridge::WriteConnection() {
  while (connection_out_at_ < connection_out_.size()) {
    ssize_t n = ::write(connection_.fd.get(),
                        connection_out_.data() + connection_out_at_,
                        connection_out_.size() - connection_out_at_);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) break;
      CloseConnection(/*tell_peer=*/true);
      return;
    }
    connection_out_at_ += static_cast<size_t>(n);
  }
  if (connection_out_at_ == connection_out_.size()) {
    connection_out_.clear();
    connection_out_at_ = 0;
  } else if (connection_out_at_ >= kMaxQueuedBytes) {
    connection_out_.erase(0, connection_out_at_);
    connection_out_at_ = 0;
  }
}

void Bridge::OnLinkEvent(uint32_t events) {
  if (events & EPOLLOUT) WriteLink();
  if (done_ || link_resting_) return;
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) ReadLink();
}

void Bridge::OnConnectionEvent(uint32_t events) {
  if (events & EPOLLOUT) WriteConnection();
  if (!connection_.fd) return;
  if (state_ == State::kOpen && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
    ReadConnection();
  } else if (events & (EPOLLHUP | EPOLLERR | EPOLLRDHUP)) {
    CloseConnection(/*tell_peer=*/true);
  }
}

void Bridge::OnSignal() {
  signalfd_siginfo info{};
  while (::read(signal_.fd.get(), &info, sizeof(info)) == sizeof(info)) {
    if (info.ssi_signo == SIGTERM || info.ssi_signo == SIGINT) done_ = true;
  }
}

void Bridge::OnTimer() {
  uint64_t expirations = 0;
  (void)!::read(timer_.fd.get(), &expirations, sizeof(expirations));
  link_resting_ = false;
}

int Bridge::Run() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  ::sigprocmask(SIG_BLOCK, &mask, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  epoll_.Reset(::epoll_create1(EPOLL_CLOEXEC));
  signal_.fd.Reset(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  timer_.fd.Reset(
      ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
  if (!epoll_ || !signal_.fd || !timer_.fd || !link_.fd ||
      (role_ == Role::kHost && !listen_.fd)) {
    Log(std::string("setup: ") + std::strerror(errno));
    return 1;
  }
  SetNonBlocking(link_.fd.get());
  Interest(signal_, kSignal, EPOLLIN);
  Interest(timer_, kTimer, EPOLLIN);
  if (listen_.fd) {
    SetNonBlocking(listen_.fd.get());
    Interest(listen_, kListen, EPOLLIN);
  }
  // A receiver in the middle of a torn record drops it at this delimiter.
  link_out_.push_back(kLinkDelimiter);

  epoll_event events[16];
  while (!done_) {
    Refresh();
    int n = ::epoll_wait(epoll_.get(), events, 16, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      Log(std::string("epoll_wait: ") + std::strerror(errno));
      return 1;
    }
    for (int i = 0; i < n && !done_; ++i) {
      switch (events[i].data.u32) {
        case kLink:
          OnLinkEvent(events[i].events);
          break;
        case kListen:
          OnAccept();
          break;
        case kConnection:
          if (connection_.fd) OnConnectionEvent(events[i].events);
          break;
        case kSignal:
          OnSignal();
          break;
        case kTimer:
          OnTimer();
          break;
      }
    }
    if (!done_ && !link_resting_) WriteLink();
    if (connection_.fd) WriteConnection();
  }
  return 0;
}

}  // namespace

int RunLinkBridge(const LinkBridgeOptions& options) {
  Bridge bridge(options);
  return bridge.Run();
}

}  // namespace corral::agent::wire
