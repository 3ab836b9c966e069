#ifndef CORRAL_DAEMON_NET_EGRESS_H_
#define CORRAL_DAEMON_NET_EGRESS_H_

// The daemon's egress path. Every sandbox with network access gets a
// network namespace of its own whose only link (eth0, a veth) leads into
// the daemon instance's egress namespace. Nothing is routed there: nftables
// sends every TCP connection to the egress proxy and every UDP datagram to
// port 53 to the sandbox resolver, and drops the rest (other UDP, ICMP,
// IPv6, traffic between sandboxes). The proxy and the resolver are threads
// of corrald that listen inside the egress namespace and reach out from the
// host's: each connection and query is judged against the sandbox's policy
// and recorded. See docs/security.md ("Network").
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "corral/unique_fd.h"
#include "daemon/net/dns_message.h"
#include "daemon/net/egress_policy.h"
#include "daemon/net/http_rewrite.h"
#include "daemon/net/tls.h"

namespace corral::net {

// One judged query or connection of a sandbox.
struct NetEvent {
  std::string sandbox_id;
  absl::Time time;
  std::string kind;     // "dns" or "tcp"
  std::string address;  // destination (dns: the answer's addresses)
  uint32_t port = 0;
  std::string name;  // from DNS, TLS SNI or HTTP Host; may be empty
  bool allowed = false;
  std::string reason;
  uint64_t bytes_out = 0;  // sandbox -> destination
  uint64_t bytes_in = 0;
};

struct EgressOptions {
  // Holds the egress namespace ("egress") and each sandbox's ("<id>").
  std::string dir;
  // Addresses of the sandboxes' links: a /30 each.
  Cidr subnet;
  // Where allowed names are resolved (UDP port 53).
  uint32_t dns_upstream = 0;
  uint16_t dns_upstream_port = 53;
  // Refused ranges the operator opened (network.allow_private).
  std::vector<Cidr> allow_private;
  // CAs trusted for upstream servers whose TLS the proxy terminates, beside
  // the system's (network.upstream_ca_file); empty: the system's only.
  std::string upstream_ca_file;
  // Most connections open at once, per sandbox.
  uint32_t max_connections = 256;
  // Called from the proxy's and resolver's threads, for every event.
  std::function<void(const NetEvent&)> on_event;
};

struct SandboxPolicy {
  // False for network mode none with published ports: the link carries
  // inbound connections only; every query and connection out is refused.
  bool outbound = true;
  AllowList allow;  // empty: every public address
  std::vector<SecretSubstitution> secrets;
  // The sandbox's own CA (MakeSandboxCa), with which the proxy terminates
  // TLS to the hosts of its secrets; unset without secrets.
  std::optional<SandboxCa> ca;
};

// A sandbox port published on the host.
struct Published {
  uint32_t host_address = 0;  // host order
  uint16_t host_port = 0;     // 0: any free port (Publish fills it in)
  uint16_t sandbox_port = 0;
};

class Egress {
 public:
  // Makes (or, after a restart, takes up again) the egress namespace, its
  // rules, the proxy and the resolver.
  static absl::StatusOr<std::unique_ptr<Egress>> Start(EgressOptions options);
  ~Egress();
  Egress(const Egress&) = delete;
  Egress& operator=(const Egress&) = delete;

  // A network namespace for sandbox `id`, linked to the egress path, at
  // NetnsPath(id); the runtime makes the sandbox join it. Returns the
  // sandbox's address.
  absl::StatusOr<std::string> Attach(const std::string& id,
                                     const SandboxPolicy& policy);
  // For a VM: instead of a namespace, a tap device in the egress namespace
  // that the runtime opens there and gives the guest's network card; the
  // guest takes `address`/30 with `gateway`.
  struct Tap {
    std::string netns_path;  // the egress namespace
    std::string name;
    std::string address;
    std::string gateway;
    int prefix = 30;
  };
  absl::StatusOr<Tap> AttachTap(const std::string& id,
                                const SandboxPolicy& policy);
  // Moves an Attached sandbox's link into `netns_path` (a runtime that made
  // its own namespace, /proc/PID/ns/net) and removes the namespace Attach
  // made. The sandbox keeps its address.
  absl::Status Adopt(const std::string& id, const std::string& netns_path);
  // After a restart: the sandbox made earlier, at `address`.
  absl::Status Restore(const std::string& id, const std::string& address,
                       const SandboxPolicy& policy);
  // Listens on each host address and port (in the daemon's namespace) and
  // relays every connection to the sandbox's port over its link. Fills in
  // host ports chosen by the kernel. Nothing stays published on failure.
  absl::Status Publish(const std::string& id, std::vector<Published>* ports);
  // Removes the sandbox's link and namespace file, and its published ports.
  void Detach(const std::string& id);
  // Removes links and namespace files of sandboxes not Attached or
  // Restored (what a killed daemon left).
  void Prune();

  // The CAs a sandbox with `ca` trusts: the system's, the operator's for
  // upstream servers, and its own (SandboxTrustBundle).
  absl::StatusOr<std::string> TrustBundle(const SandboxCa& ca) const;

  // No sandbox is attached or restored.
  bool idle() const;
  std::string NetnsPath(const std::string& id) const;
  std::string gateway_of(const std::string& address) const;

  // Removes everything an instance's egress path left under `dir`.
  static absl::Status RemoveAll(const std::string& dir);

 private:
  struct Sandbox;
  struct Verdict {
    bool allowed = false;
    bool sniff = false;  // allowed if the name sniffed is allowed
    std::string reason;
  };
  explicit Egress(EgressOptions options);
  absl::Status Setup();
  std::shared_ptr<Sandbox> SandboxAt(uint32_t address) const;
  absl::StatusOr<uint32_t> AllocateIndex(std::optional<uint32_t> wanted);
  std::string LinkName(uint32_t index) const;
  // The veth pair of block `index`: eth0 in `sandbox_ns`, configured, and
  // its peer in the egress namespace.
  absl::Status Link(uint32_t index, int sandbox_ns);
  void Register(const std::string& id, uint32_t index,
                const SandboxPolicy& policy,
                std::shared_ptr<CertificateIssuer> issuer);
  Verdict Decide(const Sandbox& sandbox, uint32_t address, uint16_t port);
  bool IsHostAddress(uint32_t address);
  std::string Resolve(Sandbox& sandbox, const std::string& query);
  // The upstream server's answer to `query` (raw bytes in *wire), or
  // nullopt after two tries.
  std::optional<DnsAnswer> AskUpstream(const std::string& query,
                                       const DnsQuestion& question,
                                       std::string* wire);
  // Records the answer's addresses as resolved from `name` for the
  // sandbox; returns them as text.
  std::vector<std::string> Remember(Sandbox& sandbox, const std::string& name,
                                    const DnsAnswer& answer);
  // Resolves the sandbox's exact allowed names again, in the background.
  void WarmUp(const std::shared_ptr<Sandbox>& sandbox);
  void Emit(NetEvent event) const;

  void ResolverLoop();
  // Waits for the proxy's next connection and serves it; one worker at a
  // time is the acceptor.
  void Accept();
  void Unpublish(Sandbox& sandbox);
  void PublishLoop(std::shared_ptr<Sandbox> sandbox, int listener,
                   uint16_t host_port, uint16_t sandbox_port);
  void ServeInbound(const Sandbox& sandbox, UniqueFd client, uint16_t host_port,
                    uint16_t sandbox_port);
  void Serve(UniqueFd client);
  // A connection to a host of the sandbox's secrets over TLS: terminated,
  // its requests given the secrets. False when a side failed (the event
  // says why).
  bool ServeTerminated(Sandbox& sandbox, int client, int upstream,
                       const std::string& first,
                       std::vector<std::pair<std::string, std::string>> secrets,
                       NetEvent* event);
  void ServeDnsOverTcp(Sandbox& sandbox, int client);

  EgressOptions options_;
  UniqueFd egress_ns_;
  UniqueFd listener_;
  UniqueFd dns_socket_;
  UniqueFd stop_;  // eventfd: readable once stopping
  std::unique_ptr<TlsContexts> tls_;

  mutable std::mutex mutex_;
  std::map<std::string, std::shared_ptr<Sandbox>> by_id_;
  std::map<uint32_t, std::shared_ptr<Sandbox>> by_address_;
  std::set<uint32_t> indexes_;

  std::mutex host_mutex_;
  std::set<uint32_t> host_addresses_;
  absl::Time host_addresses_read_ = absl::InfinitePast();

  std::vector<std::thread> threads_;
  // Connections (proxy, published ports) and background lookups run on
  // worker threads that wait a while for the next one when done: a thread
  // per connection without its creation on every connection.
  void Dispatch(std::function<void()> work);
  void Work();
  std::mutex workers_mutex_;
  std::condition_variable work_ready_, workers_done_;
  std::deque<std::function<void()>> work_;
  int workers_ = 0;
  int idle_workers_ = 0;
  bool stopping_ = false;
};

}  // namespace corral::net

#endif  // CORRAL_DAEMON_NET_EGRESS_H_
