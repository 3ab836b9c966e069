#include "daemon/net/egress.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <linux/if_tun.h>
#include <linux/netfilter_ipv4.h>
#include <net/if.h>
#include <netinet/in.h>
#include <nftables/libnftables.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <condition_variable>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "corral/directory.h"
#include "corral/logging.h"
#include "corral/status_macros.h"
#include "daemon/net/dns_message.h"
#include "daemon/net/netlink.h"
#include "daemon/net/netns.h"
#include "daemon/net/rewrite_relay.h"
#include "daemon/net/sniff.h"
#include "daemon/net/wait.h"

namespace corral::net {
namespace {

// Ports inside the egress namespace, which holds nothing else.
constexpr uint16_t kProxyPort = 15001;
constexpr uint16_t kResolverPort = 15053;
constexpr char kEgressName[] = "egress";
constexpr char kLinkPrefix[] = "cs";  // the egress side of each sandbox
constexpr char kSandboxLink[] = "eth0";
constexpr int kResolverThreads = 2;
// The host's CA store as one file (Debian's ca-certificates).
constexpr char kSystemCaBundle[] = "/etc/ssl/certs/ca-certificates.crt";
constexpr size_t kMaxResolvedAddresses = 4096;
constexpr absl::Duration kSniffTimeout = absl::Seconds(5);
constexpr absl::Duration kConnectTimeout = absl::Seconds(10);
constexpr absl::Duration kUpstreamDnsTimeout = absl::Seconds(2);
// A worker thread with nothing to do for this long ends.
constexpr absl::Duration kWorkerIdle = absl::Seconds(10);

std::shared_ptr<spdlog::logger> Log() { return corral::Logger("egress"); }

// Everything from a sandbox's link goes to the proxy (TCP) or the resolver
// (UDP 53) and nowhere else; nothing is forwarded. Applied as one
// transaction, which replaces the tables of an earlier start.
std::string Ruleset() {
  return absl::StrCat(
      R"(
table ip corral
delete table ip corral
table ip corral {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    iifname ")",
      kLinkPrefix, R"(*" udp dport 53 redirect to :)", kResolverPort, R"(
    iifname ")",
      kLinkPrefix, R"(*" meta l4proto tcp redirect to :)", kProxyPort, R"(
  }
  chain input {
    type filter hook input priority filter; policy drop;
    iif "lo" accept
    ct state established,related accept
    iifname ")",
      kLinkPrefix, R"(*" tcp dport )", kProxyPort, R"( accept
    iifname ")",
      kLinkPrefix, R"(*" udp dport )", kResolverPort, R"( accept
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
  }
}
table ip6 corral6
delete table ip6 corral6
table ip6 corral6 {
  chain input {
    type filter hook input priority filter; policy drop;
    iif "lo" accept
  }
  chain forward {
    type filter hook forward priority filter; policy drop;
  }
}
)");
}

// Inside each sandbox's namespace: DNS sent to a loopback address (no
// /etc/resolv.conf, or systemd-resolved's 127.0.0.53 in a host image) goes
// to the gateway like any other query. The namespace belongs to the
// daemon's user namespace, so the sandbox cannot change this.
std::string SandboxRuleset(uint32_t gateway) {
  const std::string to = FormatIpv4(gateway);
  return absl::StrCat(R"(
table ip corral {
  chain output {
    type nat hook output priority -100; policy accept;
    ip daddr 127.0.0.0/8 udp dport 53 dnat to )",
                      to, R"(
    ip daddr 127.0.0.0/8 tcp dport 53 dnat to )",
                      to, R"(
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    oifname ")",
                      kSandboxLink, R"(" ip saddr 127.0.0.0/8 masquerade
  }
}
)");
}

absl::Status ApplyRuleset(const std::string& rules) {
  nft_ctx* context = nft_ctx_new(NFT_CTX_DEFAULT);
  if (context == nullptr) return absl::InternalError("nft_ctx_new failed");
  nft_ctx_buffer_output(context);
  nft_ctx_buffer_error(context);
  const int rc = nft_run_cmd_from_buffer(context, rules.c_str());
  std::string error = nft_ctx_get_error_buffer(context);
  nft_ctx_free(context);
  if (rc != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("nftables refused the egress rules: ", error));
  }
  return absl::OkStatus();
}

absl::Status SetNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return ErrnoStatus("fcntl O_NONBLOCK");
  }
  return absl::OkStatus();
}

sockaddr_in Ipv4Address(uint32_t address, uint16_t port) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(address);
  in.sin_port = htons(port);
  return in;
}

// Connects the non-blocking socket `fd` to address:port within
// kConnectTimeout (or until `stop`); false with errno set otherwise.
bool ConnectWithin(int fd, uint32_t address, uint16_t port, int stop) {
  sockaddr_in to = Ipv4Address(address, port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof(to)) == 0) {
    return true;
  }
  if (errno != EINPROGRESS) return false;
  if (!WaitFor(fd, POLLOUT, stop, absl::Now() + kConnectTimeout)) {
    errno = ETIMEDOUT;
    return false;
  }
  int error = 0;
  socklen_t size = sizeof(error);
  ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size);
  errno = error;
  return error == 0;
}

// Closing with RST: a refused client learns at once, not at a timeout.
void Reset(int fd) {
  linger hard{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &hard, sizeof(hard));
}

bool SendAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Moves bytes both ways between two connected non-blocking sockets until
// both directions are closed (half-closes pass through). A direction's
// first bytes are copied through a buffer (most connections are short, and
// a pipe costs four descriptors); once it has carried kSpliceAfter it moves
// them through a pipe with splice(2), so that the data of a long transfer
// never enters this process. `first` goes to `b` before anything else.
// False when a side failed.
bool Relay(int a, int b, const std::string& first, int stop, uint64_t* a_to_b,
           uint64_t* b_to_a) {
  constexpr size_t kCopy = 64 * 1024;
  constexpr uint64_t kSpliceAfter = 256 * 1024;
  constexpr size_t kChunk = 1 << 20;
  constexpr uint64_t kBigPipeAfter = 4 << 20;
  struct Direction {
    int from, to;
    uint64_t* count;
    std::string held;  // copied, not yet sent
    size_t sent = 0;
    UniqueFd pipe_read, pipe_write;  // once splicing
    size_t in_pipe = 0;
    bool open = true;   // `from` may still send
    bool shut = false;  // `to` was told the end
    bool pending() const { return sent < held.size() || in_pipe > 0; }
    bool may_read() const {
      return open && (pipe_read ? in_pipe < kChunk : !pending());
    }
  };
  Direction dirs[2] = {{a, b, a_to_b}, {b, a, b_to_a}};
  dirs[0].held = first;
  char buffer[kCopy];
  *a_to_b += first.size();
  for (;;) {
    for (Direction& d : dirs) {
      if (!d.open && !d.pending() && !d.shut) {
        ::shutdown(d.to, SHUT_WR);
        d.shut = true;
      }
    }
    if (dirs[0].shut && dirs[1].shut) return true;
    short events[2] = {0, 0};  // a, b
    for (Direction& d : dirs) {
      if (d.may_read()) events[d.from == a ? 0 : 1] |= POLLIN;
      if (d.pending()) events[d.to == a ? 0 : 1] |= POLLOUT;
    }
    const Woken woken = WaitEither(a, events[0], b, events[1], stop);
    if (woken == Woken::kFailed) return false;
    if (woken == Woken::kStop) return true;  // the daemon stops
    for (Direction& d : dirs) {
      if (d.may_read() && !d.pipe_read) {
        const ssize_t n = ::recv(d.from, buffer, sizeof(buffer), 0);
        d.held.assign(buffer, n > 0 ? static_cast<size_t>(n) : 0);
        d.sent = 0;
        if (n > 0) {
          *d.count += static_cast<uint64_t>(n);
        } else if (n == 0) {
          d.open = false;
        } else if (errno != EAGAIN && errno != EINTR) {
          return false;
        }
      } else if (d.may_read()) {
        const ssize_t n =
            ::splice(d.from, nullptr, d.pipe_write.get(), nullptr,
                     kChunk - d.in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          d.in_pipe += static_cast<size_t>(n);
          // A long transfer gets a bigger pipe, which moves more per call.
          if (*d.count < kBigPipeAfter &&
              *d.count + static_cast<uint64_t>(n) >= kBigPipeAfter) {
            (void)::fcntl(d.pipe_write.get(), F_SETPIPE_SZ, 1 << 20);
          }
          *d.count += static_cast<uint64_t>(n);
        } else if (n == 0) {
          d.open = false;
        } else if (errno != EAGAIN && errno != EINTR) {
          return false;
        }
      }
      if (d.sent < d.held.size()) {
        const ssize_t n = ::send(d.to, d.held.data() + d.sent,
                                 d.held.size() - d.sent, MSG_NOSIGNAL);
        if (n > 0) {
          d.sent += static_cast<size_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          return false;
        }
      } else if (d.in_pipe > 0) {
        const ssize_t n =
            ::splice(d.pipe_read.get(), nullptr, d.to, nullptr, d.in_pipe,
                     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (n > 0) {
          d.in_pipe -= static_cast<size_t>(n);
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          return false;
        }
      }
      // A long transfer moves on to splice once its buffer is sent.
      if (!d.pipe_read && d.open && !d.pending() && *d.count >= kSpliceAfter) {
        int fds[2];
        if (::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0) {
          d.pipe_read.Reset(fds[0]);
          d.pipe_write.Reset(fds[1]);
        }
      }
    }
  }
}

}  // namespace

struct Egress::Sandbox {
  std::string id;
  uint32_t index = 0;
  uint32_t address = 0;
  SandboxPolicy policy;
  // Published ports: their listening sockets' threads, and the eventfd
  // that ends them (Detach).
  UniqueFd unpublish;
  std::vector<std::thread> publishers;
  mutable std::mutex mutex;
  // Address -> the names resolved to it for this sandbox.
  std::map<uint32_t, std::set<std::string>> resolved;
  std::atomic<int> connections{0};
  // Certificates for the hosts of its secrets (policy.ca).
  std::shared_ptr<CertificateIssuer> issuer;
};

namespace {

absl::StatusOr<std::shared_ptr<CertificateIssuer>> IssuerOf(
    const SandboxPolicy& policy) {
  if (!policy.ca) return nullptr;
  return CertificateIssuer::Load(*policy.ca);
}

}  // namespace

Egress::Egress(EgressOptions options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<Egress>> Egress::Start(EgressOptions options) {
  std::unique_ptr<Egress> egress(new Egress(std::move(options)));
  RETURN_IF_ERROR(egress->Setup());
  return egress;
}

absl::Status Egress::Setup() {
  if (options_.subnet.prefix > 28) {
    return absl::InvalidArgumentError(
        "network.sandbox_subnet must be a /28 or larger");
  }
  if (::mkdir(options_.dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return ErrnoStatus(absl::StrCat("mkdir ", options_.dir));
  }
  const std::string path = absl::StrCat(options_.dir, "/", kEgressName);
  if (!IsNamedNetns(path)) {
    // A file without its mount: the host rebooted, or a start failed.
    (void)RemoveNamedNetns(path);
    RETURN_IF_ERROR(CreateNamedNetns(path));
  }
  ASSIGN_OR_RETURN(egress_ns_, OpenNetns(path));
  RETURN_IF_ERROR(RunInNetns(egress_ns_.get(), [&]() -> absl::Status {
    RETURN_IF_ERROR(LinkUp("lo"));
    RETURN_IF_ERROR(WriteNetSysctl("net/ipv4/ip_forward", "0"));
    // A sandbox that changes its address cannot pass for another.
    RETURN_IF_ERROR(WriteNetSysctl("net/ipv4/conf/all/rp_filter", "1"));
    RETURN_IF_ERROR(WriteNetSysctl("net/ipv4/conf/default/rp_filter", "1"));
    (void)WriteNetSysctl("net/ipv6/conf/default/disable_ipv6", "1");
    RETURN_IF_ERROR(ApplyRuleset(Ruleset()));

    listener_.Reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!listener_) return ErrnoStatus("proxy socket");
    const int one = 1;
    ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in any = Ipv4Address(INADDR_ANY, kProxyPort);
    if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&any),
               sizeof(any)) != 0 ||
        ::listen(listener_.get(), 1024) != 0) {
      return ErrnoStatus("proxy listen");
    }
    dns_socket_.Reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (!dns_socket_) return ErrnoStatus("resolver socket");
    sockaddr_in dns = Ipv4Address(INADDR_ANY, kResolverPort);
    if (::bind(dns_socket_.get(), reinterpret_cast<sockaddr*>(&dns),
               sizeof(dns)) != 0) {
      return ErrnoStatus("resolver bind");
    }
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(SetNonBlocking(listener_.get()));
  RETURN_IF_ERROR(SetNonBlocking(dns_socket_.get()));
  ASSIGN_OR_RETURN(tls_, TlsContexts::Create(options_.upstream_ca_file));
  stop_.Reset(::eventfd(0, EFD_CLOEXEC));
  if (!stop_) return ErrnoStatus("eventfd");
  Dispatch([this] { Accept(); });
  for (int i = 0; i < kResolverThreads; ++i) {
    threads_.emplace_back([this] { ResolverLoop(); });
  }
  return absl::OkStatus();
}

Egress::~Egress() {
  if (stop_) {
    const uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
  }
  for (auto& thread : threads_) thread.join();
  std::map<std::string, std::shared_ptr<Sandbox>> sandboxes;
  {
    std::lock_guard lock(mutex_);
    sandboxes = by_id_;
  }
  for (auto& [id, sandbox] : sandboxes) Unpublish(*sandbox);
  // Idle workers leave at once, busy ones when their connection sees stop_.
  std::unique_lock lock(workers_mutex_);
  stopping_ = true;
  work_ready_.notify_all();
  workers_done_.wait(lock, [this] { return workers_ == 0; });
}

void Egress::Dispatch(std::function<void()> work) {
  std::lock_guard lock(workers_mutex_);
  const bool idle_worker = idle_workers_ > static_cast<int>(work_.size());
  work_.push_back(std::move(work));
  if (idle_worker) {
    work_ready_.notify_one();
    return;
  }
  ++workers_;
  std::thread([this] { Work(); }).detach();
}

void Egress::Work() {
  std::unique_lock lock(workers_mutex_);
  for (;;) {
    ++idle_workers_;
    const bool got =
        work_ready_.wait_for(lock, absl::ToChronoMilliseconds(kWorkerIdle),
                             [this] { return !work_.empty() || stopping_; });
    --idle_workers_;
    if (!got || work_.empty()) break;  // idle for long, or stopping
    std::function<void()> work = std::move(work_.front());
    work_.pop_front();
    lock.unlock();
    work();
    lock.lock();
  }
  if (--workers_ == 0) workers_done_.notify_all();
}

absl::StatusOr<std::string> Egress::TrustBundle(const SandboxCa& ca) const {
  return SandboxTrustBundle(ca, kSystemCaBundle, options_.upstream_ca_file);
}

bool Egress::idle() const {
  std::lock_guard lock(mutex_);
  return by_id_.empty();
}

std::string Egress::NetnsPath(const std::string& id) const {
  return absl::StrCat(options_.dir, "/", id);
}

std::string Egress::LinkName(uint32_t index) const {
  return absl::StrCat(kLinkPrefix, index);
}

std::string Egress::gateway_of(const std::string& address) const {
  auto parsed = ParseIpv4(address);
  return parsed ? FormatIpv4(*parsed - 1) : "";
}

absl::StatusOr<uint32_t> Egress::AllocateIndex(std::optional<uint32_t> wanted) {
  const uint32_t blocks = uint32_t{1} << (32 - options_.subnet.prefix - 2);
  std::lock_guard lock(mutex_);
  if (wanted) {
    if (*wanted == 0 || *wanted >= blocks || indexes_.count(*wanted) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("network block ", *wanted, " is not free"));
    }
    indexes_.insert(*wanted);
    return *wanted;
  }
  // Block 0 holds the subnet's network address: skipped.
  for (uint32_t index = 1; index < blocks; ++index) {
    if (indexes_.insert(index).second) return index;
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("every address of network.sandbox_subnet ",
                   options_.subnet.ToString(), " is in use"));
}

absl::Status Egress::Link(uint32_t index, int sandbox_ns) {
  const uint32_t gateway = options_.subnet.network + 4 * index + 1;
  const uint32_t address = gateway + 1;
  const std::string link = LinkName(index);
  RETURN_IF_ERROR(
      CreateVethPair(kSandboxLink, sandbox_ns, link, egress_ns_.get()));
  RETURN_IF_ERROR(RunInNetns(egress_ns_.get(), [&]() -> absl::Status {
    (void)WriteNetSysctl(absl::StrCat("net/ipv6/conf/", link, "/disable_ipv6"),
                         "1");
    return AddAddressAndUp(link, gateway, 30);
  }));
  return RunInNetns(sandbox_ns, [&]() -> absl::Status {
    (void)WriteNetSysctl("net/ipv6/conf/all/disable_ipv6", "1");
    RETURN_IF_ERROR(LinkUp("lo"));
    RETURN_IF_ERROR(AddAddressAndUp(kSandboxLink, address, 30));
    RETURN_IF_ERROR(AddDefaultRoute(gateway));
    // Loopback-sourced DNS may leave through eth0 once rewritten.
    RETURN_IF_ERROR(WriteNetSysctl(
        absl::StrCat("net/ipv4/conf/", kSandboxLink, "/route_localnet"), "1"));
    return ApplyRuleset(SandboxRuleset(gateway));
  });
}

absl::StatusOr<std::string> Egress::Attach(const std::string& id,
                                           const SandboxPolicy& policy) {
  ASSIGN_OR_RETURN(auto issuer, IssuerOf(policy));
  ASSIGN_OR_RETURN(const uint32_t index, AllocateIndex(std::nullopt));
  const uint32_t address = options_.subnet.network + 4 * index + 2;
  const std::string path = NetnsPath(id);
  auto undo = [&](absl::Status status) {
    const std::string link = LinkName(index);
    (void)RunInNetns(egress_ns_.get(), [&] { return DeleteLink(link); });
    (void)RemoveNamedNetns(path);
    std::lock_guard lock(mutex_);
    indexes_.erase(index);
    return Annotate(status, absl::StrCat("network of sandbox ", id));
  };
  if (auto s = CreateNamedNetns(path); !s.ok()) return undo(s);
  auto sandbox_ns = OpenNetns(path);
  if (!sandbox_ns.ok()) return undo(sandbox_ns.status());
  if (auto s = Link(index, sandbox_ns->get()); !s.ok()) return undo(s);
  Register(id, index, policy, std::move(issuer));
  return FormatIpv4(address);
}

void Egress::Register(const std::string& id, uint32_t index,
                      const SandboxPolicy& policy,
                      std::shared_ptr<CertificateIssuer> issuer) {
  auto sandbox = std::make_shared<Sandbox>();
  sandbox->issuer = std::move(issuer);
  sandbox->id = id;
  sandbox->index = index;
  sandbox->address = options_.subnet.network + 4 * index + 2;
  sandbox->policy = policy;
  std::lock_guard lock(mutex_);
  by_id_[id] = sandbox;
  by_address_[sandbox->address] = sandbox;
}

absl::StatusOr<Egress::Tap> Egress::AttachTap(const std::string& id,
                                              const SandboxPolicy& policy) {
  ASSIGN_OR_RETURN(auto issuer, IssuerOf(policy));
  ASSIGN_OR_RETURN(const uint32_t index, AllocateIndex(std::nullopt));
  const uint32_t gateway = options_.subnet.network + 4 * index + 1;
  const std::string link = LinkName(index);
  absl::Status made = RunInNetns(egress_ns_.get(), [&]() -> absl::Status {
    // Persistent, so that it outlives this fd: the runtime's launcher opens
    // it again by name for the VM, and Detach deletes it.
    UniqueFd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
    if (!tun) return ErrnoStatus("open /dev/net/tun");
    ifreq request{};
    std::strncpy(request.ifr_name, link.c_str(), IFNAMSIZ - 1);
    request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (::ioctl(tun.get(), TUNSETIFF, &request) != 0) {
      return ErrnoStatus(absl::StrCat("make tap ", link));
    }
    if (::ioctl(tun.get(), TUNSETPERSIST, 1) != 0) {
      return ErrnoStatus(absl::StrCat("keep tap ", link));
    }
    (void)WriteNetSysctl(absl::StrCat("net/ipv6/conf/", link, "/disable_ipv6"),
                         "1");
    return AddAddressAndUp(link, gateway, 30);
  });
  if (!made.ok()) {
    (void)RunInNetns(egress_ns_.get(), [&] { return DeleteLink(link); });
    std::lock_guard lock(mutex_);
    indexes_.erase(index);
    return Annotate(made, absl::StrCat("network of sandbox ", id));
  }
  Register(id, index, policy, std::move(issuer));
  Tap tap;
  tap.netns_path = absl::StrCat(options_.dir, "/", kEgressName);
  tap.name = link;
  tap.address = FormatIpv4(gateway + 1);
  tap.gateway = FormatIpv4(gateway);
  return tap;
}

absl::Status Egress::Adopt(const std::string& id,
                           const std::string& netns_path) {
  std::shared_ptr<Sandbox> sandbox;
  {
    std::lock_guard lock(mutex_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) {
      return absl::NotFoundError(
          absl::StrCat("sandbox ", id, " has no network to move"));
    }
    sandbox = it->second;
  }
  UniqueFd target(::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!target) return ErrnoStatus(absl::StrCat("open ", netns_path));
  // Deleting one end of a veth pair deletes both.
  const std::string link = LinkName(sandbox->index);
  RETURN_IF_ERROR(
      RunInNetns(egress_ns_.get(), [&] { return DeleteLink(link); }));
  RETURN_IF_ERROR(RemoveNamedNetns(NetnsPath(id)));
  return Annotate(Link(sandbox->index, target.get()),
                  absl::StrCat("network of sandbox ", id));
}

absl::Status Egress::Restore(const std::string& id, const std::string& address,
                             const SandboxPolicy& policy) {
  auto parsed = ParseIpv4(address);
  if (!parsed || !options_.subnet.Contains(*parsed) || (*parsed & 3) != 2) {
    return absl::FailedPreconditionError(absl::StrCat(
        "sandbox ", id, ": its address ", address, " is not one of ",
        options_.subnet.ToString(), " (was network.sandbox_subnet changed?)"));
  }
  const uint32_t index = (*parsed - options_.subnet.network) / 4;
  ASSIGN_OR_RETURN(auto issuer, IssuerOf(policy));
  ASSIGN_OR_RETURN(const uint32_t got, AllocateIndex(index));
  Register(id, got, policy, std::move(issuer));
  // What the sandbox resolved before was this daemon's memory, now gone:
  // its allowed names are resolved again, so that a program that keeps
  // its own answers can still connect.
  std::shared_ptr<Sandbox> sandbox;
  {
    std::lock_guard lock(mutex_);
    sandbox = by_id_[id];
  }
  WarmUp(sandbox);
  return absl::OkStatus();
}

void Egress::Detach(const std::string& id) {
  std::shared_ptr<Sandbox> sandbox;
  {
    std::lock_guard lock(mutex_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) return;
    sandbox = it->second;
    by_id_.erase(it);
    by_address_.erase(sandbox->address);
  }
  Unpublish(*sandbox);
  const std::string link = LinkName(sandbox->index);
  if (auto s = RunInNetns(egress_ns_.get(), [&] { return DeleteLink(link); });
      !s.ok()) {
    Log()->warn("sandbox {}: {}", id, s.ToString());
  }
  if (auto s = RemoveNamedNetns(NetnsPath(id)); !s.ok()) {
    Log()->warn("sandbox {}: {}", id, s.ToString());
  }
  std::lock_guard lock(mutex_);
  indexes_.erase(sandbox->index);
}

void Egress::Prune() {
  std::set<std::string> known_links, known_files = {kEgressName};
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, sandbox] : by_id_) {
      known_links.insert(LinkName(sandbox->index));
      known_files.insert(id);
    }
  }
  (void)RunInNetns(egress_ns_.get(), [&]() -> absl::Status {
    struct if_nameindex* names = ::if_nameindex();
    if (names == nullptr) return ErrnoStatus("if_nameindex");
    std::vector<std::string> stale;
    for (struct if_nameindex* n = names; n->if_index != 0; ++n) {
      const std::string name = n->if_name;
      if (absl::StartsWith(name, kLinkPrefix) && !known_links.count(name)) {
        stale.push_back(name);
      }
    }
    ::if_freenameindex(names);
    for (const auto& name : stale) {
      Log()->info("removing the stale link {}", name);
      (void)DeleteLink(name);
    }
    return absl::OkStatus();
  });
  auto files = ListDirectory(options_.dir);
  if (!files.ok()) return;
  for (const auto& name : *files) {
    if (known_files.count(name)) continue;
    Log()->info("removing the stale network namespace {}", name);
    (void)RemoveNamedNetns(absl::StrCat(options_.dir, "/", name));
  }
}

absl::Status Egress::RemoveAll(const std::string& dir) {
  auto files = ListDirectory(dir);
  if (!files.ok()) {
    return absl::IsNotFound(files.status()) ? absl::OkStatus() : files.status();
  }
  for (const auto& name : *files) {
    RETURN_IF_ERROR(RemoveNamedNetns(absl::StrCat(dir, "/", name)));
  }
  if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) {
    return ErrnoStatus(absl::StrCat("rmdir ", dir));
  }
  return absl::OkStatus();
}

std::shared_ptr<Egress::Sandbox> Egress::SandboxAt(uint32_t address) const {
  std::lock_guard lock(mutex_);
  auto it = by_address_.find(address);
  return it == by_address_.end() ? nullptr : it->second;
}

void Egress::Emit(NetEvent event) const {
  event.time = absl::Now();
  Log()->debug("sandbox {}: {} {} {}:{} {} ({})", event.sandbox_id,
               event.allowed ? "allowed" : "refused", event.kind, event.address,
               event.port, event.name, event.reason);
  if (options_.on_event) options_.on_event(event);
}

bool Egress::IsHostAddress(uint32_t address) {
  std::lock_guard lock(host_mutex_);
  // Addresses come and go (DHCP, VPNs): read again now and then.
  if (absl::Now() - host_addresses_read_ > absl::Seconds(5)) {
    host_addresses_.clear();
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) == 0) {
      for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
        if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) {
          continue;
        }
        host_addresses_.insert(ntohl(
            reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr.s_addr));
      }
      ::freeifaddrs(list);
    }
    host_addresses_read_ = absl::Now();
  }
  return host_addresses_.count(address) != 0;
}

Egress::Verdict Egress::Decide(const Sandbox& sandbox, uint32_t address,
                               uint16_t port) {
  if (!sandbox.policy.outbound) {
    return {false, false, "network none: published ports only, no egress"};
  }
  if (options_.subnet.Contains(address)) {
    return {false, false, "the sandboxes' own network"};
  }
  if (IsHostAddress(address)) return {false, false, "an address of the host"};
  if (auto range = RefusedRange(address)) {
    bool opened = false;
    for (const auto& cidr : options_.allow_private) {
      opened = opened || cidr.Contains(address);
    }
    if (!opened) return {false, false, *range};
  }
  const AllowList& allow = sandbox.policy.allow;
  if (allow.empty()) return {true, false, "egress"};
  for (const auto& cidr : allow.cidrs) {
    if (cidr.Allows(address, port)) {
      return {true, false, absl::StrCat("allow-cidr ", cidr.ToString())};
    }
  }
  std::lock_guard lock(sandbox.mutex);
  auto it = sandbox.resolved.find(address);
  if (it == sandbox.resolved.end()) {
    return {false, false,
            "not an address an allowed name resolved to, nor in an allowed "
            "CIDR"};
  }
  if (port == 80 || port == 443) return {true, true, ""};
  return {true, false,
          absl::StrCat("resolved from ", absl::StrJoin(it->second, ","))};
}

// ---- Published ports
// ---------------------------------------------------------

void Egress::Unpublish(Sandbox& sandbox) {
  if (sandbox.unpublish) {
    const uint64_t one = 1;
    (void)!::write(sandbox.unpublish.get(), &one, sizeof(one));
  }
  for (auto& thread : sandbox.publishers) thread.join();
  sandbox.publishers.clear();
}

absl::Status Egress::Publish(const std::string& id,
                             std::vector<Published>* ports) {
  std::shared_ptr<Sandbox> sandbox;
  {
    std::lock_guard lock(mutex_);
    auto it = by_id_.find(id);
    if (it == by_id_.end()) {
      return absl::NotFoundError(
          absl::StrCat("sandbox ", id, " has no network link"));
    }
    sandbox = it->second;
  }
  // Every listener is bound before any serves: a taken port fails the
  // whole request.
  std::vector<UniqueFd> listeners;
  for (Published& port : *ports) {
    UniqueFd listener(
        ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!listener) return ErrnoStatus("socket");
    const int one = 1;
    ::setsockopt(listener.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in at = Ipv4Address(port.host_address, port.host_port);
    if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&at), sizeof(at)) !=
            0 ||
        ::listen(listener.get(), 128) != 0) {
      return ErrnoStatus(absl::StrCat(
          "publish on ", FormatIpv4(port.host_address), ":", port.host_port));
    }
    socklen_t size = sizeof(at);
    ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&at), &size);
    port.host_port = ntohs(at.sin_port);
    listeners.push_back(std::move(listener));
  }
  if (listeners.empty()) return absl::OkStatus();
  if (!sandbox->unpublish) {
    sandbox->unpublish.Reset(::eventfd(0, EFD_CLOEXEC));
    if (!sandbox->unpublish) return ErrnoStatus("eventfd");
  }
  for (size_t i = 0; i < listeners.size(); ++i) {
    sandbox->publishers.emplace_back([this, sandbox,
                                      listener = listeners[i].Release(),
                                      host_port = (*ports)[i].host_port,
                                      sandbox_port = (*ports)[i].sandbox_port] {
      PublishLoop(sandbox, listener, host_port, sandbox_port);
    });
  }
  return absl::OkStatus();
}

void Egress::PublishLoop(std::shared_ptr<Sandbox> sandbox, int listener_fd,
                         uint16_t host_port, uint16_t sandbox_port) {
  UniqueFd listener(listener_fd);
  for (;;) {
    pollfd fds[3] = {{listener.get(), POLLIN, 0},
                     {stop_.get(), POLLIN, 0},
                     {sandbox->unpublish.get(), POLLIN, 0}};
    if (::poll(fds, 3, -1) < 0 && errno != EINTR) return;
    if ((fds[1].revents | fds[2].revents) & POLLIN) return;
    UniqueFd client(::accept4(listener.get(), nullptr, nullptr,
                              SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!client) continue;
    Dispatch([this, sandbox, fd = client.Release(), host_port, sandbox_port] {
      ServeInbound(*sandbox, UniqueFd(fd), host_port, sandbox_port);
    });
  }
}

void Egress::ServeInbound(const Sandbox& sandbox, UniqueFd client,
                          uint16_t host_port, uint16_t sandbox_port) {
  NetEvent event;
  event.sandbox_id = sandbox.id;
  event.kind = "inbound";
  event.port = sandbox_port;
  sockaddr_in peer{};
  socklen_t size = sizeof(peer);
  if (::getpeername(client.get(), reinterpret_cast<sockaddr*>(&peer), &size) ==
      0) {
    event.name =
        absl::StrCat("from ", FormatIpv4(ntohl(peer.sin_addr.s_addr)), ":",
                     ntohs(peer.sin_port), " to host port ", host_port);
  }
  event.address = FormatIpv4(sandbox.address);
  // The sandbox is reached over its link, from inside the egress namespace.
  auto upstream =
      SocketInNetns(egress_ns_.get(), AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  const bool connected =
      upstream.ok() && ConnectWithin(upstream->get(), sandbox.address,
                                     sandbox_port, stop_.get());
  if (!connected) {
    event.reason = absl::StrCat("nothing answers on the sandbox's port: ",
                                std::strerror(errno));
    Emit(event);
    Reset(client.get());
    return;
  }
  event.allowed = true;
  event.reason = "published port";
  // bytes_out: what the sandbox sent back.
  if (!Relay(client.get(), upstream->get(), "", stop_.get(), &event.bytes_in,
             &event.bytes_out)) {
    Reset(client.get());
  }
  Emit(event);
}

// ---- The resolver -----------------------------------------------------------

std::optional<DnsAnswer> Egress::AskUpstream(const std::string& query,
                                             const DnsQuestion& question,
                                             std::string* wire) {
  UniqueFd upstream(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in server =
      Ipv4Address(options_.dns_upstream, options_.dns_upstream_port);
  std::optional<DnsAnswer> answer;
  wire->assign(4096, '\0');
  for (int attempt = 0; attempt < 2 && upstream && !answer; ++attempt) {
    if (::connect(upstream.get(), reinterpret_cast<sockaddr*>(&server),
                  sizeof(server)) != 0 ||
        ::send(upstream.get(), query.data(), query.size(), 0) < 0) {
      break;
    }
    const absl::Time deadline = absl::Now() + kUpstreamDnsTimeout;
    while (!answer && WaitFor(upstream.get(), POLLIN, stop_.get(), deadline)) {
      const ssize_t n = ::recv(upstream.get(), wire->data(), wire->size(), 0);
      if (n <= 0) break;
      answer = ParseDnsAnswer(absl::string_view(wire->data(), n), question);
      if (answer) wire->resize(static_cast<size_t>(n));
    }
  }
  return answer;
}

std::vector<std::string> Egress::Remember(Sandbox& sandbox,
                                          const std::string& name,
                                          const DnsAnswer& answer) {
  std::vector<std::string> addresses;
  std::lock_guard lock(sandbox.mutex);
  for (const auto& a : answer.addresses) {
    addresses.push_back(FormatIpv4(a.address));
    if (sandbox.resolved.size() < kMaxResolvedAddresses ||
        sandbox.resolved.count(a.address)) {
      sandbox.resolved[a.address].insert(name);
    }
  }
  return addresses;
}

void Egress::WarmUp(const std::shared_ptr<Sandbox>& sandbox) {
  std::vector<std::string> names;
  for (const auto& domain : sandbox->policy.allow.domains) {
    if (!absl::StartsWith(domain, "*.")) names.push_back(domain);
  }
  if (names.empty()) return;
  // In the background: recovery must not wait for the upstream server.
  Dispatch([this, sandbox, names] {
    for (const auto& name : names) {
      DnsQuestion question;
      const std::string query = DnsQuery(name, kDnsTypeA, &question);
      std::string wire;
      if (auto answer = AskUpstream(query, question, &wire)) {
        Remember(*sandbox, name, *answer);
      }
    }
  });
}

std::string Egress::Resolve(Sandbox& sandbox, const std::string& query) {
  NetEvent event;
  event.sandbox_id = sandbox.id;
  event.kind = "dns";
  event.port = 53;
  auto question = ParseDnsQuery(query);
  if (!question) {
    event.reason = "not a DNS query";
    Emit(event);
    return {};
  }
  event.name = question->name;
  if (!sandbox.policy.outbound) {
    event.reason = absl::StrCat(question->type_name,
                                ": network none: published ports only");
    Emit(event);
    return EmptyDnsAnswer(*question, kDnsRefused);
  }
  const AllowList& allow = sandbox.policy.allow;
  if (!allow.empty() && !allow.AllowsName(question->name)) {
    event.reason = absl::StrCat(question->type_name, ": not an allowed name");
    Emit(event);
    return EmptyDnsAnswer(*question, kDnsNxDomain);
  }
  event.allowed = true;
  if (question->type == kDnsTypeAaaa) {
    // No IPv6 egress: an empty answer sends clients to IPv4 at once.
    event.reason = "AAAA: no IPv6 egress, empty answer";
    Emit(event);
    return EmptyDnsAnswer(*question, kDnsNoError);
  }
  std::string wire;
  std::optional<DnsAnswer> answer = AskUpstream(query, *question, &wire);
  if (!answer) {
    event.reason = absl::StrCat(question->type_name,
                                ": the upstream server did not answer");
    Emit(event);
    return EmptyDnsAnswer(*question, kDnsServFail);
  }
  event.address =
      absl::StrJoin(Remember(sandbox, question->name, *answer), ",");
  event.reason = question->type_name;
  if (answer->rcode != kDnsNoError) {
    absl::StrAppend(&event.reason, " rcode ", answer->rcode);
  }
  Emit(event);
  return wire;
}

void Egress::ResolverLoop() {
  std::string buffer(4096, '\0');
  for (;;) {
    pollfd fds[2] = {{dns_socket_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[1].revents & POLLIN) return;
    sockaddr_in from{};
    socklen_t from_size = sizeof(from);
    const ssize_t n =
        ::recvfrom(dns_socket_.get(), buffer.data(), buffer.size(), 0,
                   reinterpret_cast<sockaddr*>(&from), &from_size);
    if (n <= 0) continue;  // another thread took it
    auto sandbox = SandboxAt(ntohl(from.sin_addr.s_addr));
    if (!sandbox) continue;
    const std::string answer =
        Resolve(*sandbox, std::string(buffer.data(), static_cast<size_t>(n)));
    if (answer.empty()) continue;
    (void)::sendto(dns_socket_.get(), answer.data(), answer.size(), 0,
                   reinterpret_cast<sockaddr*>(&from), from_size);
  }
}

// ---- The proxy ------------------------------------------------------------

void Egress::Accept() {
  for (;;) {
    pollfd fds[2] = {{listener_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) return;
    if (fds[1].revents & POLLIN) return;
    UniqueFd client(::accept4(listener_.get(), nullptr, nullptr,
                              SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!client) continue;
    // Another worker accepts the next connection while this one serves
    // the one it took: no hand-over between accepting and serving, which
    // would cost a thread's wake-up on every connection.
    Dispatch([this] { Accept(); });
    Serve(std::move(client));
    return;
  }
}

void Egress::ServeDnsOverTcp(Sandbox& sandbox, int client) {
  const int stop = stop_.get();
  for (;;) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    std::string message;
    auto read_exactly = [&](size_t size) {
      std::string data;
      while (data.size() < size) {
        if (!WaitFor(client, POLLIN, stop, deadline)) return false;
        char chunk[512];
        const ssize_t n = ::recv(
            client, chunk, std::min(sizeof(chunk), size - data.size()), 0);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (n <= 0) return false;
        data.append(chunk, static_cast<size_t>(n));
      }
      message = std::move(data);
      return true;
    };
    if (!read_exactly(2)) return;
    const size_t size = (static_cast<uint8_t>(message[0]) << 8) |
                        static_cast<uint8_t>(message[1]);
    if (size == 0 || !read_exactly(size)) return;
    const std::string answer = Resolve(sandbox, message);
    if (answer.empty() || answer.size() > 65535) return;
    std::string framed;
    framed.push_back(static_cast<char>(answer.size() >> 8));
    framed.push_back(static_cast<char>(answer.size() & 0xff));
    framed += answer;
    if (!SendAll(client, framed)) return;
  }
}

void Egress::Serve(UniqueFd client) {
  sockaddr_in peer{}, original{};
  socklen_t size = sizeof(peer);
  if (::getpeername(client.get(), reinterpret_cast<sockaddr*>(&peer), &size) !=
      0) {
    return;
  }
  auto sandbox = SandboxAt(ntohl(peer.sin_addr.s_addr));
  size = sizeof(original);
  if (!sandbox || ::getsockopt(client.get(), SOL_IP, SO_ORIGINAL_DST, &original,
                               &size) != 0) {
    Reset(client.get());
    return;
  }
  const uint32_t address = ntohl(original.sin_addr.s_addr);
  const uint16_t port = ntohs(original.sin_port);
  if (port == 53) {
    // DNS over TCP, to whatever server: the sandbox's resolver answers.
    ServeDnsOverTcp(*sandbox, client.get());
    return;
  }
  NetEvent event;
  event.sandbox_id = sandbox->id;
  event.kind = "tcp";
  event.address = FormatIpv4(address);
  event.port = port;
  struct Counted {
    std::atomic<int>& count;
    ~Counted() { --count; }
  } counted{sandbox->connections};
  if (++sandbox->connections > static_cast<int>(options_.max_connections)) {
    event.reason = absl::StrCat("more than ", options_.max_connections,
                                " connections open at once");
    Emit(event);
    Reset(client.get());
    return;
  }
  Verdict verdict = Decide(*sandbox, address, port);
  std::string first;  // what sniffing read; sent upstream first
  // On 80 and 443 the name is read from the first bytes: enforced with an
  // allowlist, recorded without one (for the audit and for learning; a
  // protocol where the server speaks first waits a second there).
  const bool named_port = port == 80 || port == 443;
  const bool has_secrets = !sandbox->policy.secrets.empty();
  const bool want_name = verdict.allowed && named_port &&
                         (sandbox->policy.allow.empty() || has_secrets);
  if (verdict.allowed && (verdict.sniff || want_name)) {
    const absl::Time deadline =
        absl::Now() + (verdict.sniff ? kSniffTimeout : absl::Seconds(1));
    Sniffed sniffed = Sniffed::kNeedMore;
    std::string name;
    while (sniffed == Sniffed::kNeedMore) {
      if (first.size() >= kMaxSniffBytes ||
          !WaitFor(client.get(), POLLIN, stop_.get(), deadline)) {
        sniffed = Sniffed::kNotProtocol;
        break;
      }
      char chunk[4096];
      const ssize_t n =
          ::recv(client.get(), chunk,
                 std::min(sizeof(chunk), kMaxSniffBytes - first.size()), 0);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n <= 0) return;  // the client gave up
      first.append(chunk, static_cast<size_t>(n));
      sniffed = port == 443 ? SniffTlsServerName(first, &name)
                            : SniffHttpHost(first, &name);
    }
    event.name = name;
    const char* what = port == 443 ? "TLS server name" : "HTTP Host";
    if (!verdict.sniff) {
      // Recorded only.
    } else if (sniffed == Sniffed::kName &&
               sandbox->policy.allow.AllowsName(name)) {
      verdict.reason = absl::StrCat(what, " ", name);
    } else {
      verdict.allowed = false;
      verdict.reason =
          sniffed == Sniffed::kName
              ? absl::StrCat(what, " ", name, " is not an allowed name")
          : sniffed == Sniffed::kNoName
              ? absl::StrCat("no ", what, " to check")
              : absl::StrCat("not ", port == 443 ? "TLS" : "HTTP", " on port ",
                             port);
    }
  }
  // The requests to a host that secrets are bound to get them: over TLS
  // the proxy terminates it (the server proves the name with its
  // certificate); plain HTTP proves nothing, so there the address must be
  // one the name resolved to for this sandbox.
  std::vector<std::pair<std::string, std::string>> secrets;
  if (verdict.allowed && has_secrets && named_port && !event.name.empty()) {
    secrets = SecretsFor(sandbox->policy.secrets, event.name);
  }
  if (!secrets.empty() && port == 443 && sandbox->issuer == nullptr) {
    secrets.clear();
  }
  if (!secrets.empty() && port == 80) {
    std::lock_guard lock(sandbox->mutex);
    auto it = sandbox->resolved.find(address);
    if (it == sandbox->resolved.end() || !it->second.count(event.name)) {
      secrets.clear();
      absl::StrAppend(&verdict.reason, verdict.reason.empty() ? "" : "; ",
                      "no secrets: ", event.name,
                      " did not resolve to this address");
    }
  }
  if (verdict.allowed && event.name.empty()) {
    std::lock_guard lock(sandbox->mutex);
    auto it = sandbox->resolved.find(address);
    if (it != sandbox->resolved.end()) event.name = *it->second.begin();
  }
  if (!verdict.allowed) {
    event.reason = verdict.reason;
    Emit(event);
    Reset(client.get());
    return;
  }

  UniqueFd upstream(
      ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  const bool connected =
      upstream && ConnectWithin(upstream.get(), address, port, stop_.get());
  event.allowed = true;
  if (!connected) {
    event.reason = absl::StrCat(verdict.reason,
                                "; connect failed: ", std::strerror(errno));
    Emit(event);
    Reset(client.get());
    return;
  }
  event.reason = verdict.reason;

  bool relayed = false;
  if (secrets.empty()) {
    relayed = Relay(client.get(), upstream.get(), first, stop_.get(),
                    &event.bytes_out, &event.bytes_in);
  } else if (port == 80) {
    RequestRewriter rewriter(std::move(secrets));
    relayed = RelayRewriting({client.get()}, {upstream.get()}, rewriter, first,
                             stop_.get(), &event.bytes_out, &event.bytes_in);
    absl::StrAppend(&event.reason, "; secrets put in ", rewriter.heads(),
                    rewriter.heads() == 1 ? " request" : " requests");
  } else {
    relayed = ServeTerminated(*sandbox, client.get(), upstream.get(), first,
                              std::move(secrets), &event);
  }
  if (!relayed) Reset(client.get());
  Emit(event);
}

bool Egress::ServeTerminated(
    Sandbox& sandbox, int client, int upstream, const std::string& first,
    std::vector<std::pair<std::string, std::string>> secrets, NetEvent* event) {
  struct SslFree {
    void operator()(SSL* ssl) const { SSL_free(ssl); }
  };
  auto fail = [&](absl::string_view what, const absl::Status& status) {
    absl::StrAppend(&event->reason, "; ", what, ": ", status.message());
    return false;
  };
  // The server first: a sandbox must not get a certificate for a name
  // whose real server did not prove it.
  auto to_server = tls_->ToUpstream(upstream, event->name);
  if (!to_server.ok()) return fail("TLS to the server", to_server.status());
  std::unique_ptr<SSL, SslFree> server(*to_server);
  if (auto s = Handshake(server.get(), upstream, stop_.get(),
                         absl::Now() + kConnectTimeout);
      !s.ok()) {
    return fail("TLS to the server", s);
  }
  auto to_sandbox = tls_->ToSandbox(client, first);
  if (!to_sandbox.ok()) return fail("TLS to the sandbox", to_sandbox.status());
  std::unique_ptr<SSL, SslFree> sandbox_side(*to_sandbox);
  if (auto s = sandbox.issuer->UseFor(sandbox_side.get(), event->name);
      !s.ok()) {
    return fail("TLS to the sandbox", s);
  }
  if (auto s = Handshake(sandbox_side.get(), client, stop_.get(),
                         absl::Now() + kSniffTimeout);
      !s.ok()) {
    // Most often: a program that does not read SSL_CERT_FILE.
    return fail("the sandbox refused the TLS of its CA", s);
  }
  RequestRewriter rewriter(std::move(secrets));
  const bool relayed = RelayRewriting(
      {client, sandbox_side.get()}, {upstream, server.get()}, rewriter, "",
      stop_.get(), &event->bytes_out, &event->bytes_in);
  absl::StrAppend(&event->reason, "; TLS terminated, secrets put in ",
                  rewriter.heads(),
                  rewriter.heads() == 1 ? " request" : " requests");
  return relayed;
}

}  // namespace corral::net
