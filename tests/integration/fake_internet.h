// A private "internet" for network tests: two network namespaces made with
// iproute2, a DNS server and web servers, so that a test (and the corrald it
// runs) can reach names and addresses while no packet ever goes to a real
// address.
//
//   host netns (chost-<pid>-<hex>)        internet netns (cinet-<pid>-<hex>)
//   lo, eth0 198.51.100.2/24  <-- veth -->  198.51.100.1/24
//   routes: 198.51.100.0/24 (link)          198.51.100.53 on lo: dnsmasq :53
//           203.0.113.0/24 via .1           203.0.113.0/24 local (on lo):
//                                             HTTP :80, TLS :443 of each
//                                             web address, extra TCP ports
//
// The host netns has no default route: an address outside the two test
// ranges fails at once with ENETUNREACH, without a packet being sent. Every
// address of 203.0.113.0/24 belongs to the internet netns, so a port with
// no server there is refused at once (RST) instead of timing out. Both
// ranges are documentation ranges (RFC 5737), routed nowhere on a real
// network, which is why the addresses given must lie in 203.0.113.0/24.
//
// Servers:
//  - DNS (dnsmasq, UDP and TCP at kDnsServer): each added name answers its
//    address (A only; AAAA is empty), any other name is NXDOMAIN. Names are
//    exact: www.<name> is not added by <name>.
//  - HTTP on :80: answers every request with 200, text/plain, Connection:
//    close and the body
//        server <address>:<port>\n
//        <the request exactly as received: request line, headers, the blank
//         line, and the body of Content-Length bytes>
//  - TLS on :443: the same over TLS, with "sni <name>\n" (empty name when the
//    client sent none) after the server line. Its certificate is signed by
//    a CA made for this fixture (ca_cert_path()) and names every added name
//    and web address.
//  - Each extra TCP listener writes "hello <address>:<port>\n" and closes.
//
// Usage:
//   std::string why;
//   if (!FakeInternet::Available(&why)) { ...report why and skip... }
//   FakeInternet net({{"example.test", "203.0.113.10"}});
//   // run corrald in net.host_netns_path() (setns, or `ip netns exec`),
//   // with kDnsServer as its upstream resolver, then:
//   CHECK(net.Reached("203.0.113.10", 443));
//
// The destructor stops every server and dnsmasq, deletes both namespaces
// and the temporary directory; it runs after a failed REQUIRE too. dnsmasq
// also dies with the thread that made the fixture (PR_SET_PDEATHSIG), so
// make it on a thread that outlives it (the test's). A test process killed
// outright leaves its namespaces behind: the next fixture made on the
// machine removes those of processes that no longer exist.
// Needs root, iproute2 and dnsmasq (Debian: dnsmasq-base).
#ifndef CORRAL_TESTS_INTEGRATION_FAKE_INTERNET_H_
#define CORRAL_TESTS_INTEGRATION_FAKE_INTERNET_H_

#include <chrono>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace corral::testing {

class FakeInternet {
 public:
  static constexpr const char* kDnsServer = "198.51.100.53";
  // The host netns's address: the peer of every connection from there.
  static constexpr const char* kHostAddress = "198.51.100.2";

  // Whether this machine can run the fixture (root, the power to make
  // network namespaces, `ip` and `dnsmasq`); if not, `why` says what lacks.
  static bool Available(std::string* why);

  // `names`: DNS name -> address in 203.0.113.0/24 (several names may share
  // one); each such address serves HTTP on :80 and TLS on :443.
  // `extra_tcp`: "203.0.113.50:22"-style listeners that say hello.
  // Throws std::invalid_argument for a bad name, address or port, and
  // std::runtime_error when the setup fails (having undone what it did).
  explicit FakeInternet(std::map<std::string, std::string> names,
                        std::vector<std::string> extra_tcp = {});
  // So that FakeInternet net({{"a.test", "203.0.113.10"}}) is not taken for
  // a copy of a FakeInternet made from one pair.
  explicit FakeInternet(
      std::initializer_list<std::pair<const std::string, std::string>> names,
      std::vector<std::string> extra_tcp = {})
      : FakeInternet(std::map<std::string, std::string>(names),
                     std::move(extra_tcp)) {}
  ~FakeInternet();
  FakeInternet(const FakeInternet&) = delete;
  FakeInternet& operator=(const FakeInternet&) = delete;

  const std::string& host_netns() const;  // e.g. chost-4242-ab12cd
  std::string host_netns_path() const;    // /run/netns/<host_netns()>
  const std::string& internet_netns() const;
  std::string ca_cert_path() const;  // PEM of the test CA

  // The names dnsmasq was asked, in order, one per query (a lookup asking
  // A and AAAA shows twice).
  std::vector<std::string> dns_queries() const;

  // Every connection accepted by the HTTP, TLS and extra TCP servers.
  struct Connection {
    std::string local;  // the server's address
    int port = 0;
    std::string peer;  // the client's address
    std::chrono::system_clock::time_point time;
  };
  std::vector<Connection> connections() const;
  // Every HTTP request the HTTP and TLS servers received (decrypted), as
  // sent, in order. A request whose path starts with /quiet is answered
  // "ok\n" instead of the echo, so that its headers do not come back.
  std::vector<std::string> requests() const;
  // Whether any connection to address:port was accepted.
  bool Reached(const std::string& address, int port) const;

  // Runs argv (argv[0] a path or a name looked up in PATH) in the host
  // netns, with `input` on its stdin. exit_code is 128+N when signal N
  // ended it, and -1 when it outlived `timeout` (it is then killed).
  struct Result {
    int exit_code = -1;
    std::string out;
    std::string err;
  };
  Result RunInHost(
      const std::vector<std::string>& argv, const std::string& input = "",
      std::chrono::seconds timeout = std::chrono::seconds(60)) const;
  // Runs `work` on a thread of this process that entered the host netns, so
  // the sockets it makes are there; rethrows what it throws. SIGPIPE is
  // blocked there: a write to a closed socket fails with EPIPE. Catch2's
  // assertions are not thread-safe: return results and check them after.
  void InHost(const std::function<void()>& work) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace corral::testing

#endif  // CORRAL_TESTS_INTEGRATION_FAKE_INTERNET_H_
