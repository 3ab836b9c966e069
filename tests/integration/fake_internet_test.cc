// Self-test of the fake internet (fake_internet.h): everything a network
// test may rely on, checked from the host namespace with small clients that
// run on a thread of this process there, and with `ip` and `openssl`.
#include "tests/integration/fake_internet.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "corral/unique_fd.h"

namespace {

namespace fs = std::filesystem;
using corral::UniqueFd;
using corral::testing::FakeInternet;
using Clock = std::chrono::steady_clock;

void RequireAvailable() {
  std::string why;
  bool available = FakeInternet::Available(&why);
  INFO("the fake internet cannot run here: " << why);
  REQUIRE(available);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && line.back() == ' ') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

// Runs a shell command line in this process's namespaces.
std::string Shell(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen");
  char buffer[4096];
  for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;) {
    out.append(buffer, n);
  }
  ::pclose(pipe);
  return out;
}

// Processes whose command line mentions `text`.
int ProcessesMentioning(const std::string& text) {
  int count = 0;
  for (const auto& entry : fs::directory_iterator("/proc")) {
    std::ifstream in(entry.path() / "cmdline");
    std::string cmdline((std::istreambuf_iterator<char>(in)), {});
    if (cmdline.find(text) != std::string::npos) ++count;
  }
  return count;
}

sockaddr_in Address(const std::string& address, int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (::inet_pton(AF_INET, address.c_str(), &a.sin_addr) != 1) {
    throw std::invalid_argument(address);
  }
  return a;
}

void SetTimeouts(int fd) {
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
}

// A TCP connection from the calling thread's namespace; on failure an
// invalid fd and the errno in *error.
UniqueFd Connect(const std::string& address, int port, int* error) {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  SetTimeouts(fd.get());
  sockaddr_in a = Address(address, port);
  *error = 0;
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    *error = errno;
    fd.Reset();
  }
  return fd;
}

// Sends `request` and reads until the server closes.
std::string Exchange(const std::string& address, int port,
                     const std::string& request) {
  int error;
  UniqueFd fd = Connect(address, port, &error);
  if (!fd) throw std::runtime_error(std::strerror(error));
  if (::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    throw std::runtime_error("send");
  }
  std::string response;
  char buffer[4096];
  for (ssize_t n; (n = ::recv(fd.get(), buffer, sizeof buffer, 0)) > 0;) {
    response.append(buffer, n);
  }
  return response;
}

struct HttpResponse {
  std::string head;  // status line and headers
  std::string body;
};

HttpResponse Split(const std::string& response) {
  size_t end = response.find("\r\n\r\n");
  if (end == std::string::npos) return {response, ""};
  return {response.substr(0, end + 2), response.substr(end + 4)};
}

// --- DNS, by hand: a query for an A record, and the answer's parts ---

std::string DnsQuery(const std::string& name) {
  std::string q("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", 12);
  std::istringstream labels(name);
  for (std::string label; std::getline(labels, label, '.');) {
    q += static_cast<char>(label.size()) + label;
  }
  q += std::string("\x00\x00\x01\x00\x01", 5);  // end of name, A, IN
  return q;
}

struct DnsAnswer {
  int rcode = -1;  // 0 NOERROR, 3 NXDOMAIN
  std::vector<std::string> addresses;
};

DnsAnswer ParseDns(const std::string& m) {
  auto u8 = [&m](size_t i) { return static_cast<unsigned char>(m.at(i)); };
  auto u16 = [&u8](size_t i) { return u8(i) << 8 | u8(i + 1); };
  DnsAnswer answer;
  answer.rcode = u8(3) & 0x0f;
  size_t at = 12;
  auto skip_name = [&] {
    for (;;) {
      unsigned length = u8(at);
      if (length == 0) return void(at += 1);
      if ((length & 0xc0) == 0xc0) return void(at += 2);  // a pointer
      at += 1 + length;
    }
  };
  for (int i = u16(4); i > 0; --i) {
    skip_name();
    at += 4;  // type, class
  }
  for (int i = u16(6); i > 0; --i) {
    skip_name();
    int type = u16(at), length = u16(at + 8);
    at += 10;
    if (type == 1 && length == 4) {
      answer.addresses.push_back(
          std::to_string(u8(at)) + "." + std::to_string(u8(at + 1)) + "." +
          std::to_string(u8(at + 2)) + "." + std::to_string(u8(at + 3)));
    }
    at += length;
  }
  return answer;
}

DnsAnswer AskOverUdp(const std::string& name) {
  UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  SetTimeouts(fd.get());
  sockaddr_in server = Address(FakeInternet::kDnsServer, 53);
  std::string query = DnsQuery(name);
  if (::sendto(fd.get(), query.data(), query.size(), 0,
               reinterpret_cast<sockaddr*>(&server), sizeof server) < 0) {
    throw std::runtime_error(std::string("sendto: ") + std::strerror(errno));
  }
  char buffer[1500];
  ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
  if (n <= 0) throw std::runtime_error("no DNS answer over UDP");
  return ParseDns(std::string(buffer, n));
}

// Over TCP a query and its answer go with their length in front; the
// server keeps the connection open for more.
DnsAnswer AskOverTcp(const std::string& name) {
  int error;
  UniqueFd fd = Connect(FakeInternet::kDnsServer, 53, &error);
  if (!fd) throw std::runtime_error(std::strerror(error));
  std::string query = DnsQuery(name);
  std::string framed =
      std::string(1, '\0') + static_cast<char>(query.size()) + query;
  ::send(fd.get(), framed.data(), framed.size(), MSG_NOSIGNAL);
  std::string reply;
  char buffer[4096];
  while (reply.size() < 2 ||
         reply.size() < 2 + (static_cast<unsigned char>(reply[0]) << 8 |
                             static_cast<unsigned char>(reply[1]))) {
    ssize_t n = ::recv(fd.get(), buffer, sizeof buffer, 0);
    if (n <= 0) throw std::runtime_error("no DNS answer over TCP");
    reply.append(buffer, n);
  }
  return ParseDns(reply.substr(2));
}

// --- TLS: a client that verifies as a careful program would ---------

struct TlsResult {
  bool handshake = false;
  long verify = -1;  // X509_V_OK when the chain and the name check out
  std::string response;
};

// Connects to address:443 sending `sni`, trusting only `ca_file` (none when
// empty), and checking the certificate for `sni` (or for the address when
// `check_address`).
TlsResult TlsExchange(const std::string& address, const std::string& sni,
                      const std::string& ca_file, const std::string& request,
                      bool check_address = false) {
  TlsResult result;
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(
      SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (!ca_file.empty() &&
      SSL_CTX_load_verify_locations(ctx.get(), ca_file.c_str(), nullptr) != 1) {
    throw std::runtime_error("cannot load " + ca_file);
  }
  int error;
  UniqueFd fd = Connect(address, 443, &error);
  if (!fd) throw std::runtime_error(std::strerror(error));
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  SSL_set_fd(ssl.get(), fd.get());
  SSL_set_tlsext_host_name(ssl.get(), sni.c_str());
  if (check_address) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), address.c_str());
  } else {
    SSL_set1_host(ssl.get(), sni.c_str());
  }
  result.handshake = SSL_connect(ssl.get()) == 1;
  result.verify = SSL_get_verify_result(ssl.get());
  if (result.handshake) {
    SSL_write(ssl.get(), request.data(), static_cast<int>(request.size()));
    char buffer[4096];
    for (int n; (n = SSL_read(ssl.get(), buffer, sizeof buffer)) > 0;) {
      result.response.append(buffer, n);
    }
  }
  ERR_clear_error();
  return result;
}

}  // namespace

TEST_CASE("fake internet: DNS answers added names and NXDOMAIN for others",
          "[network]") {
  RequireAvailable();
  FakeInternet net(
      {{"example.test", "203.0.113.10"}, {"other.test", "203.0.113.11"}});
  DnsAnswer known, unknown, subdomain, over_tcp;
  net.InHost([&] {
    known = AskOverUdp("example.test");
    unknown = AskOverUdp("nowhere.test");
    subdomain = AskOverUdp("www.example.test");
    over_tcp = AskOverTcp("other.test");
  });
  CHECK(known.rcode == 0);
  CHECK(known.addresses == std::vector<std::string>{"203.0.113.10"});
  CHECK(unknown.rcode == 3);
  CHECK(unknown.addresses.empty());
  CHECK(subdomain.rcode == 3);
  CHECK(over_tcp.rcode == 0);
  CHECK(over_tcp.addresses == std::vector<std::string>{"203.0.113.11"});
  CHECK(net.dns_queries() ==
        std::vector<std::string>{"example.test", "nowhere.test",
                                 "www.example.test", "other.test"});
}

TEST_CASE("fake internet: HTTP echoes the request", "[network]") {
  RequireAvailable();
  FakeInternet net({{"example.test", "203.0.113.10"}});
  const std::string get =
      "GET /a/b?c=1 HTTP/1.1\r\nHost: example.test\r\n"
      "X-Probe: one  two\r\n\r\n";
  const std::string post =
      "POST /upload HTTP/1.1\r\nHost: example.test\r\nContent-Length: 11\r\n"
      "\r\nhello\nworld";
  std::string get_response, post_response;
  net.InHost([&] {
    get_response = Exchange("203.0.113.10", 80, get);
    post_response = Exchange("203.0.113.10", 80, post);
  });

  HttpResponse r = Split(get_response);
  CHECK(r.head.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(r.head.find("\r\nContent-Type: text/plain\r\n") != std::string::npos);
  CHECK(r.head.find("\r\nConnection: close\r\n") != std::string::npos);
  CHECK(r.head.find("\r\nContent-Length: " + std::to_string(r.body.size()) +
                    "\r\n") != std::string::npos);
  CHECK(r.body == "server 203.0.113.10:80\n" + get);
  CHECK(Split(post_response).body == "server 203.0.113.10:80\n" + post);

  auto connections = net.connections();
  REQUIRE(connections.size() == 2);
  CHECK(connections[0].local == "203.0.113.10");
  CHECK(connections[0].port == 80);
  CHECK(connections[0].peer == FakeInternet::kHostAddress);
  CHECK(net.Reached("203.0.113.10", 80));
  CHECK_FALSE(net.Reached("203.0.113.10", 443));
  CHECK_FALSE(net.Reached("203.0.113.11", 80));
}

TEST_CASE("fake internet: TLS verifies against the test CA and sees SNI",
          "[network]") {
  RequireAvailable();
  FakeInternet net(
      {{"example.test", "203.0.113.10"}, {"www.example.test", "203.0.113.10"}});
  const std::string request =
      "GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n";
  TlsResult good, by_address, wrong_name, untrusted;
  net.InHost([&] {
    good = TlsExchange("203.0.113.10", "www.example.test", net.ca_cert_path(),
                       request);
    by_address = TlsExchange("203.0.113.10", "", net.ca_cert_path(), request,
                             /*check_address=*/true);
    wrong_name =
        TlsExchange("203.0.113.10", "evil.test", net.ca_cert_path(), request);
    untrusted = TlsExchange("203.0.113.10", "www.example.test", "", request);
  });
  REQUIRE(good.handshake);
  CHECK(good.verify == X509_V_OK);
  CHECK(Split(good.response).head.rfind("HTTP/1.1 200 OK\r\n", 0) == 0);
  CHECK(Split(good.response).body ==
        "server 203.0.113.10:443\nsni www.example.test\n" + request);
  CHECK(by_address.verify == X509_V_OK);
  CHECK(Split(by_address.response)
            .body.rfind("server 203.0.113.10:443\nsni \n", 0) == 0);
  // The checks are not vacuous: a name not added, or no trust in the CA,
  // fails verification.
  CHECK_FALSE(wrong_name.handshake);
  CHECK(wrong_name.verify == X509_V_ERR_HOSTNAME_MISMATCH);
  CHECK_FALSE(untrusted.handshake);
  CHECK(untrusted.verify == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);

  // And a real client, run in the host namespace by RunInHost.
  auto r = net.RunInHost(
      {"openssl", "s_client", "-connect", "203.0.113.10:443", "-servername",
       "example.test", "-verify_hostname", "example.test", "-CAfile",
       net.ca_cert_path(), "-verify_return_error", "-quiet", "-ign_eof"},
      "GET / HTTP/1.1\r\nHost: example.test\r\n\r\n", std::chrono::seconds(20));
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out.find("\r\n\r\nserver 203.0.113.10:443\nsni example.test\n"
                   "GET / HTTP/1.1\r\n") != std::string::npos);
}

TEST_CASE("fake internet: extra TCP ports say hello", "[network]") {
  RequireAvailable();
  FakeInternet net({}, {"203.0.113.50:22", "203.0.113.51:6379"});
  std::string ssh, redis;
  net.InHost([&] {
    ssh = Exchange("203.0.113.50", 22, "");
    redis = Exchange("203.0.113.51", 6379, "");
  });
  CHECK(ssh == "hello 203.0.113.50:22\n");
  CHECK(redis == "hello 203.0.113.51:6379\n");
  CHECK(net.Reached("203.0.113.50", 22));
  CHECK(net.Reached("203.0.113.51", 6379));
  CHECK_FALSE(net.Reached("203.0.113.50", 80));
}

TEST_CASE("fake internet: no packet can leave it", "[network]") {
  RequireAvailable();
  FakeInternet net({{"example.test", "203.0.113.10"}});

  // The host namespace has these routes and no other, and each namespace
  // only its own links: nothing leads to the machine's network.
  auto routes = net.RunInHost({"ip", "-4", "route", "show", "table", "main"});
  REQUIRE(routes.exit_code == 0);
  CHECK(Lines(routes.out) ==
        std::vector<std::string>{
            "198.51.100.0/24 dev eth0 proto kernel scope link src "
            "198.51.100.2",
            "203.0.113.0/24 via 198.51.100.1 dev eth0"});
  auto routes6 = net.RunInHost({"ip", "-6", "route", "show", "table", "main"});
  REQUIRE(routes6.exit_code == 0);
  CHECK(routes6.out.empty());
  auto host_links = net.RunInHost({"ip", "-o", "link", "show"});
  auto inet_links =
      net.RunInHost({"ip", "-n", net.internet_netns(), "-o", "link", "show"});
  REQUIRE(Lines(host_links.out).size() == 2);
  CHECK(host_links.out.find(": lo: ") != std::string::npos);
  CHECK(host_links.out.find(": eth0@") != std::string::npos);
  REQUIRE(Lines(inet_links.out).size() == 2);
  CHECK(inet_links.out.find(": lo: ") != std::string::npos);
  CHECK(inet_links.out.find(": host0@") != std::string::npos);

  int public_tcp = 0, other_range = 0, unused_web = 0, public_udp = 0;
  int public_v6 = 0;
  auto start = Clock::now();
  net.InHost([&] {
    Connect("8.8.8.8", 53, &public_tcp);
    Connect("192.0.2.1", 80, &other_range);
    Connect("203.0.113.99", 80, &unused_web);
    UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    sockaddr_in a = Address("1.1.1.1", 53);
    if (::sendto(udp.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&a),
                 sizeof a) < 0) {
      public_udp = errno;
    }
    UniqueFd v6(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in6 b{};
    b.sin6_family = AF_INET6;
    b.sin6_port = htons(53);
    ::inet_pton(AF_INET6, "2001:4860:4860::8888", &b.sin6_addr);
    if (::connect(v6.get(), reinterpret_cast<sockaddr*>(&b), sizeof b) != 0) {
      public_v6 = errno;
    }
  });
  auto elapsed_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        Clock::now() - start)
                        .count();
  CHECK(public_tcp == ENETUNREACH);
  CHECK(other_range == ENETUNREACH);
  CHECK(public_udp == ENETUNREACH);
  CHECK(public_v6 == ENETUNREACH);
  // An address of the fake internet without a server refuses at once.
  CHECK(unused_web == ECONNREFUSED);
  CHECK(elapsed_ms < 1000);
  CHECK(net.connections().empty());
}

TEST_CASE("fake internet: destruction removes everything even after a failure",
          "[network]") {
  RequireAvailable();
  std::string inet, host, dir;
  UniqueFd idle;  // open until the end, as a client a test forgot
  try {
    FakeInternet net({{"example.test", "203.0.113.10"}}, {"203.0.113.20:22"});
    inet = net.internet_netns();
    host = net.host_netns();
    dir = fs::path(net.ca_cert_path()).parent_path();
    REQUIRE(fs::exists("/run/netns/" + inet));
    REQUIRE(fs::exists(net.host_netns_path()));
    REQUIRE(fs::exists(net.ca_cert_path()));
    REQUIRE(ProcessesMentioning(dir) == 1);  // dnsmasq: its log is in dir
    // A connection still open in a server, as a test failing midway might
    // leave one.
    net.InHost([&] {
      int error;
      idle = Connect("203.0.113.10", 443, &error);
    });
    REQUIRE(idle);
    throw std::runtime_error("a test failing midway");
  } catch (const std::runtime_error& e) {
    REQUIRE(std::string(e.what()) == "a test failing midway");
  }
  std::string listed = Shell("ip netns list");
  CHECK(listed.find(inet) == std::string::npos);
  CHECK(listed.find(host) == std::string::npos);
  CHECK_FALSE(fs::exists("/run/netns/" + inet));
  CHECK_FALSE(fs::exists("/run/netns/" + host));
  CHECK_FALSE(fs::exists(dir));
  CHECK(ProcessesMentioning(dir) == 0);
}

TEST_CASE("fake internet: two at once do not collide", "[network]") {
  RequireAvailable();
  FakeInternet a({{"a.test", "203.0.113.10"}});
  FakeInternet b({{"b.test", "203.0.113.10"}});
  CHECK(a.host_netns() != b.host_netns());
  CHECK(a.internet_netns() != b.internet_netns());
  CHECK(a.ca_cert_path() != b.ca_cert_path());
  DnsAnswer from_a;
  a.InHost([&] {
    from_a = AskOverUdp("b.test");
    Exchange("203.0.113.10", 80, "GET / HTTP/1.1\r\nHost: a.test\r\n\r\n");
  });
  CHECK(from_a.rcode == 3);
  CHECK(a.Reached("203.0.113.10", 80));
  CHECK_FALSE(b.Reached("203.0.113.10", 80));
  CHECK(b.dns_queries().empty());
}

TEST_CASE("fake internet: bad arguments are refused and nothing is left",
          "[network]") {
  using Names = std::map<std::string, std::string>;
  CHECK_THROWS_AS(FakeInternet(Names{{"x.test", "8.8.8.8"}}),
                  std::invalid_argument);
  CHECK_THROWS_AS(FakeInternet(Names{{"x.test", "10.0.0.1"}}),
                  std::invalid_argument);
  CHECK_THROWS_AS(FakeInternet(Names{{"x.test", "203.0.113.0"}}),
                  std::invalid_argument);
  CHECK_THROWS_AS(FakeInternet(Names{{"bad name", "203.0.113.1"}}),
                  std::invalid_argument);
  CHECK_THROWS_AS(FakeInternet(Names{{"x.test,8.8.8.8", "203.0.113.1"}}),
                  std::invalid_argument);
  CHECK_THROWS_AS(FakeInternet({}, {"203.0.113.5"}), std::invalid_argument);
  CHECK_THROWS_AS(FakeInternet({}, {"8.8.8.8:53"}), std::invalid_argument);

  // A setup that fails halfway (port 80 is taken by the web server) undoes
  // what it made.
  RequireAvailable();
  std::string prefix = "-" + std::to_string(::getpid()) + "-";
  auto ours = [&] {
    std::string listed = Shell("ip netns list");
    return listed.find("cinet" + prefix) != std::string::npos ||
           listed.find("chost" + prefix) != std::string::npos;
  };
  REQUIRE_FALSE(ours());
  CHECK_THROWS_WITH(
      FakeInternet(Names{{"x.test", "203.0.113.10"}}, {"203.0.113.10:80"}),
      Catch::Contains("bind 203.0.113.10:80"));
  CHECK_FALSE(ours());
}

TEST_CASE("fake internet: what a killed test left is removed", "[network]") {
  RequireAvailable();
  // No process has this pid: it is above the kernel's largest.
  std::string stale = "chost-4194999-0000aa";
  Shell("ip netns add " + stale);
  REQUIRE(fs::exists("/run/netns/" + stale));
  FakeInternet net({});
  CHECK_FALSE(fs::exists("/run/netns/" + stale));
}
