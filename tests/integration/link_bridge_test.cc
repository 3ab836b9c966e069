// Both ends of the serial link (guest-agent/wire/link_bridge.h) in one
// process: a host bridge and a guest bridge joined by a socketpair standing
// in for the virtio-serial port, a client on the host's listening socket
// standing in for the daemon, and a listening socket standing in for the
// agent. What the test checks is what the daemon and the agent rely on:
// bytes arrive intact in both directions, a new connection replaces the old
// one on both sides, and either side closing ends the other's.
#include "guest-agent/wire/link_bridge.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <string>
#include <thread>

#include "corral/unique_fd.h"
#include "guest-agent/wire/serial_link.h"

namespace {

namespace wire = corral::agent::wire;
using corral::UniqueFd;

sockaddr_un AbstractAddress(const std::string& name, socklen_t* length) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  // Abstract: a leading NUL, then the name.
  std::memcpy(address.sun_path + 1, name.data(), name.size());
  *length =
      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  return address;
}

UniqueFd Listen(const std::string& name) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd);
  socklen_t length = 0;
  sockaddr_un address = AbstractAddress(name, &length);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), length) == 0);
  REQUIRE(::listen(fd.get(), 8) == 0);
  return fd;
}

int Connect(const std::string& name) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  socklen_t length = 0;
  sockaddr_un address = AbstractAddress(name, &length);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), length) != 0) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

bool Readable(int fd, int timeout_ms) {
  pollfd poll_fd{fd, POLLIN, 0};
  return ::poll(&poll_fd, 1, timeout_ms) == 1;
}

UniqueFd AcceptWithin(int listen_fd, int timeout_ms = 5000) {
  if (!Readable(listen_fd, timeout_ms)) return UniqueFd();
  return UniqueFd(::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
}

// Reads exactly n bytes (or less at EOF / after 10 s).
std::string ReadBytes(int fd, size_t n) {
  std::string out;
  char buffer[65536];
  while (out.size() < n && Readable(fd, 10000)) {
    ssize_t got = ::read(fd, buffer, std::min(sizeof(buffer), n - out.size()));
    if (got <= 0) break;
    out.append(buffer, static_cast<size_t>(got));
  }
  return out;
}

// True when the peer closed: EOF (or reset) within 5 s.
bool ClosedWithin(int fd) {
  char byte;
  if (!Readable(fd, 5000)) return false;
  return ::read(fd, &byte, 1) <= 0;
}

void WriteAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    REQUIRE(n > 0);
    done += static_cast<size_t>(n);
  }
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 random(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(random());
  return out;
}

// A host bridge and a guest bridge on threads, joined by a socketpair.
// `before` is written into both ends of the link before the bridges start,
// as a restored VM's queues may hold the rest of a torn record.
class Bridges {
 public:
  explicit Bridges(const std::string& before = "") {
    static std::atomic<int> counter{0};
    const std::string tag =
        std::to_string(::getpid()) + "-" + std::to_string(counter.fetch_add(1));
    host_name_ = "corral-link-test-host-" + tag;
    agent_name_ = "corral-link-test-agent-" + tag;
    int link[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, link) == 0);
    if (!before.empty()) {
      WriteAll(link[0], before);
      WriteAll(link[1], before);
    }
    // The threads inherit the mask: a SIGTERM that comes before a bridge
    // blocked it must not end the test process.
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    ::pthread_sigmask(SIG_BLOCK, &term, nullptr);
    agent_listen_ = Listen(agent_name_);
    UniqueFd host_listen = Listen(host_name_);

    wire::LinkBridgeOptions host;
    host.role = wire::LinkBridgeOptions::Role::kHost;
    host.link_fd = link[0];
    host.listen_fd = host_listen.Release();
    wire::LinkBridgeOptions guest;
    guest.role = wire::LinkBridgeOptions::Role::kGuest;
    guest.link_fd = link[1];
    const std::string agent_name = agent_name_;
    guest.connect_agent = [agent_name](const std::string&) {
      return Connect(agent_name);
    };
    host_ = std::thread([host] { wire::RunLinkBridge(host); });
    guest_ = std::thread([guest] { wire::RunLinkBridge(guest); });
  }
  ~Bridges() {
    ::pthread_kill(host_.native_handle(), SIGTERM);
    ::pthread_kill(guest_.native_handle(), SIGTERM);
    host_.join();
    guest_.join();
  }

  // A daemon-side connection and the agent-side connection it became.
  std::pair<UniqueFd, UniqueFd> Connection() {
    UniqueFd client(Connect(host_name_));
    REQUIRE(client);
    UniqueFd agent = AcceptWithin(agent_listen_.get());
    REQUIRE(agent);
    return {std::move(client), std::move(agent)};
  }
  int agent_listen() const { return agent_listen_.get(); }

 private:
  std::string host_name_, agent_name_;
  UniqueFd agent_listen_;
  std::thread host_, guest_;
};

}  // namespace

TEST_CASE("the link carries a connection's bytes both ways, intact",
          "[link_bridge]") {
  Bridges bridges;
  auto [client, agent] = bridges.Connection();
  WriteAll(client.get(), "hello agent");
  CHECK(ReadBytes(agent.get(), 11) == "hello agent");

  // Megabytes both ways at once: each side's writes are read by a thread of
  // its own, so neither direction waits for the other.
  const std::string down = RandomBytes(6u << 20, 1);
  const std::string up = RandomBytes(5u << 20, 2);
  std::string got_down, got_up;
  std::thread reader_down(
      [&] { got_down = ReadBytes(agent.get(), down.size()); });
  std::thread reader_up([&] { got_up = ReadBytes(client.get(), up.size()); });
  std::thread writer_up([&] { WriteAll(agent.get(), up); });
  WriteAll(client.get(), down);
  writer_up.join();
  reader_down.join();
  reader_up.join();
  CHECK(got_down.size() == down.size());
  CHECK(got_down == down);
  CHECK(got_up.size() == up.size());
  CHECK(got_up == up);
}

TEST_CASE(
    "a new connection replaces the current one on both sides, and either "
    "side closing ends the other",
    "[link_bridge]") {
  Bridges bridges;
  auto [first_client, first_agent] = bridges.Connection();
  WriteAll(first_client.get(), "one");
  CHECK(ReadBytes(first_agent.get(), 3) == "one");

  // A second daemon connection: the first one's agent side closes, the
  // first client is hung up on, and only the new pair carries bytes.
  auto [second_client, second_agent] = bridges.Connection();
  CHECK(ClosedWithin(first_agent.get()));
  CHECK(ClosedWithin(first_client.get()));
  WriteAll(second_client.get(), "two");
  CHECK(ReadBytes(second_agent.get(), 3) == "two");
  WriteAll(second_agent.get(), "back");
  CHECK(ReadBytes(second_client.get(), 4) == "back");

  // The daemon goes away: the agent's connection ends.
  second_client.Reset();
  CHECK(ClosedWithin(second_agent.get()));

  // The agent closes its side: the daemon's connection ends.
  auto [third_client, third_agent] = bridges.Connection();
  third_agent.Reset();
  CHECK(ClosedWithin(third_client.get()));
}

TEST_CASE(
    "bytes left on the port from before (a torn record, noise) are dropped "
    "and the link works",
    "[link_bridge]") {
  std::string torn;
  wire::AppendLinkRecord(wire::LinkRecordType::kData, 12345,
                         RandomBytes(5000, 3), &torn);
  // The tail of a record (no delimiter at its start) and some noise.
  Bridges bridges(torn.substr(2000) + "noise without delimiter");
  auto [client, agent] = bridges.Connection();
  WriteAll(agent.get(), "hello daemon");
  CHECK(ReadBytes(client.get(), 12) == "hello daemon");
  WriteAll(client.get(), "hello agent");
  CHECK(ReadBytes(agent.get(), 11) == "hello agent");
}
