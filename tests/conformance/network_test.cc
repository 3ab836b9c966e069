// The egress path on every runtime that claims egress-policy, through the
// real daemon, CLI and sandboxes: corrald runs in the host namespace of a
// FakeInternet (tests/integration/fake_internet.h), so no packet goes to a
// real address. Inside each sandbox, net_probe (tests/network/net_probe.c)
// resolves and connects. A runtime that does not claim egress-policy must
// refuse every network mode but none, which is what is checked there.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/conformance/conformance.h"
#include "tests/integration/fake_internet.h"

namespace corral::testing::conformance {
namespace {

constexpr int kNobody = 65534;

struct UniqueFdForTest {
  explicit UniqueFdForTest(int f) : fd(f) {}
  ~UniqueFdForTest() {
    if (fd >= 0) ::close(fd);
  }
  int fd;
};

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The daemon resolves through the fake DNS server and trusts the fake
// internet's CA for the servers whose TLS it terminates.
std::string Config(const FakeInternet& internet, const std::string& extra) {
  return std::string("[network]\ndns_upstream = \"") +
         FakeInternet::kDnsServer + "\"\nupstream_ca_file = \"" +
         internet.ca_cert_path() + "\"\n" + extra;
}

// A FakeInternet and the variant's corrald inside its host namespace, which
// resolves through the fake DNS server.
class NetworkWorld {
 public:
  explicit NetworkWorld(const std::string& extra_config = "")
      : internet_({{"allowed.test", "203.0.113.10"},
                   {"shared.test", "203.0.113.10"},
                   {"other.test", "203.0.113.11"},
                   {"cdn.allowed.test", "203.0.113.12"}},
                  {"203.0.113.50:22"}),
        suite_(Config(internet_, extra_config), internet_.host_netns_path()) {}

  Daemon& daemon() { return suite_.daemon(); }
  Conformance& suite() { return suite_; }
  FakeInternet& internet() { return internet_; }

  // Whether the runtime puts sandboxes on the egress path. When it does
  // not, checks that it refuses network access and says so.
  bool Enforced() {
    if (suite_.RuntimeClaims(v1::GUARANTEE_EGRESS_POLICY)) return true;
    auto refused = suite_.Cli(
        {"create", "--runtime", suite_.runtime(), "--network", "egress"});
    INFO(refused.err);
    CHECK(refused.exit_code == 125);
    CHECK(Contains(refused.err, "cannot guarantee GUARANTEE_EGRESS_POLICY"));
    // (Not WARN: Catch2's console reporter asserts on some of these test
    // names when it prints a warning under them.)
    std::cout << suite_.runtime() << " does not claim egress-policy: network "
              << "access is refused there, not checked" << std::endl;
    return false;
  }

  // A sandbox made with these flags, with net_probe in /workspace.
  std::string Create(const std::vector<std::string>& flags) {
    const std::string id = suite_.Create(flags);
    auto copied =
        suite_.Cli({"cp", std::string(CORRAL_BINARY_DIR) + "/tests/net_probe",
                    id + ":/workspace/probe"});
    INFO(copied.err);
    REQUIRE(copied.exit_code == 0);
    return id;
  }

  // net_probe's output.
  std::string Probe(const std::string& id,
                    const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"exec",
                                     id,
                                     "--",
                                     "sh",
                                     "-c",
                                     "chmod +x /workspace/probe && exec "
                                     "/workspace/probe \"$@\"",
                                     "probe"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto probed = suite_.Cli(argv);
    INFO(probed.err);
    return probed.out;
  }

  // How many sandboxes the daemon lists.
  size_t SandboxCount() {
    const std::string listed = suite_.Cli({"--json", "ls"}).out;
    size_t n = 0;
    for (size_t at = 0; (at = listed.find("\"id\":", at)) != std::string::npos;
         ++at) {
      ++n;
    }
    return n;
  }

  std::string NetLog(const std::string& id) {
    return suite_.Cli({"net", "log", id}).out;
  }

 private:
  FakeInternet internet_;
  Conformance suite_;
};

// Root, iproute2 and dnsmasq (deploy/install-deps.sh installs it): without
// them the suite fails rather than passing unchecked.
bool Skip() {
  std::string why;
  const bool available = FakeInternet::Available(&why);
  INFO("the fake internet cannot run here: " << why);
  REQUIRE(available);
  return false;
}

TEST_CASE(
    "allow-domain: an allowed name resolves and connects, checked by HTTP "
    "Host and TLS server name; another name neither resolves nor connects, "
    "by IP, by a shared address or through another DNS server") {
  if (Skip()) return;
  NetworkWorld world;
  if (!world.Enforced()) return;
  const std::string id = world.Create({"--allow-domain", "allowed.test"});

  CHECK(world.Probe(id, {"resolve", "allowed.test"}) == "A 203.0.113.10\n");
  CHECK(world.Probe(id, {"resolve", "other.test"}) == "NXDOMAIN\n");
  // Another server, over UDP and TCP: the sandbox's resolver answers.
  CHECK(world.Probe(id, {"resolve", "other.test", "198.51.100.53"}) ==
        "NXDOMAIN\n");
  CHECK(world.Probe(id, {"resolve-tcp", "other.test", "192.0.2.1"}) ==
        "NXDOMAIN\n");
  CHECK(world.Probe(id, {"resolve-tcp", "allowed.test", "192.0.2.1"}) ==
        "A 203.0.113.10\n");
  // A refused name never reaches the upstream server.
  for (const auto& name : world.internet().dns_queries()) {
    CHECK(name != "other.test");
  }

  const std::string http =
      world.Probe(id, {"http", "203.0.113.10", "80", "allowed.test"});
  CHECK(Contains(http, "HTTP/1.1 200"));
  CHECK(Contains(http, "Host: allowed.test"));
  CHECK(world.Probe(id, {"tls", "203.0.113.10", "443", "allowed.test"}) ==
        "tls answered\n");

  // The same address under a name that is not allowed.
  CHECK(Contains(world.Probe(id, {"http", "203.0.113.10", "80", "shared.test"}),
                 "failed"));
  CHECK(Contains(world.Probe(id, {"tls", "203.0.113.10", "443", "shared.test"}),
                 "failed"));
  // An address no allowed name resolved to, on any port, and raw UDP.
  CHECK(
      Contains(world.Probe(id, {"http", "203.0.113.11", "80", "allowed.test"}),
               "failed"));
  CHECK(Contains(world.Probe(id, {"connect", "203.0.113.50", "22"}), "failed"));
  CHECK(world.Probe(id, {"udp", "203.0.113.10", "9999"}) == "no answer\n");
  CHECK_FALSE(world.internet().Reached("203.0.113.11", 80));
  CHECK_FALSE(world.internet().Reached("203.0.113.50", 22));
  // Exactly the two allowed connections reached the web server.
  int reached = 0;
  for (const auto& c : world.internet().connections()) {
    if (c.local == "203.0.113.10") ++reached;
  }
  CHECK(reached == 2);

  // Every query and connection is in the audit, with why.
  const std::string log = world.NetLog(id);
  INFO(log);
  CHECK(Contains(log, "REFUSED dns - other.test (A: not an allowed name)"));
  CHECK(Contains(log, "allowed dns 203.0.113.10 allowed.test"));
  CHECK(Contains(log, "allowed tcp 203.0.113.10:80 allowed.test out "));
  CHECK(Contains(log, "(TLS server name allowed.test)"));
  CHECK(Contains(log,
                 "REFUSED tcp 203.0.113.10:80 shared.test (HTTP Host "
                 "shared.test is not an allowed name)"));
  CHECK(Contains(log,
                 "REFUSED tcp 203.0.113.11:80 - (not an address an "
                 "allowed name resolved to"));
  auto json = world.daemon().Cli({"--json", "net", "log", id});
  CHECK(Contains(json.out, "\"allowed\":true"));
  // --follow prints what happens after it started; --after skips what the
  // JSON output already gave (its last "sequence").
  std::string last = Lines(Trim(json.out)).back();
  const size_t at = last.find("\"sequence\":\"");
  REQUIRE(at != std::string::npos);
  last = last.substr(at + 12);
  const std::string after = last.substr(0, last.find('"'));
  CommandResult followed;
  std::thread follower([&] {
    followed = RunProcess({"/usr/bin/timeout", "5",
                           std::string(CORRAL_BINARY_DIR) + "/bin/corral",
                           "--socket", world.daemon().socket(), "net", "log",
                           "--follow", "--after", after, id});
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  CHECK(world.Probe(id, {"resolve", "late.test"}) == "NXDOMAIN\n");
  follower.join();
  INFO(followed.out << followed.err);
  CHECK(Contains(followed.out, "late.test (A: not an allowed name)"));
  CHECK_FALSE(Contains(followed.out, "other.test"));
}

TEST_CASE(
    "allow-cidr opens a public range and port, nothing else; egress opens "
    "every public address but never the host, private, link-local or "
    "metadata ranges, nor the sandboxes' own network") {
  if (Skip()) return;
  NetworkWorld world;
  if (!world.Enforced()) return;
  const std::string cidr = world.Create({"--allow-cidr", "203.0.113.50/32:22"});
  CHECK(world.Probe(cidr, {"connect", "203.0.113.50", "22"}) ==
        "hello 203.0.113.50:22\n");
  CHECK(Contains(
      world.Probe(cidr, {"http", "203.0.113.10", "80", "allowed.test"}),
      "failed"));
  CHECK(world.Probe(cidr, {"resolve", "allowed.test"}) == "NXDOMAIN\n");

  const std::string open = world.Create({"--network", "egress"});
  CHECK(world.Probe(open, {"resolve", "other.test"}) == "A 203.0.113.11\n");
  CHECK(Contains(world.Probe(open, {"http", "203.0.113.11", "80", "x.test"}),
                 "HTTP/1.1 200"));
  auto shown = world.daemon().Cli({"inspect", cidr});
  INFO(shown.out);
  CHECK(Contains(shown.out, "203.0.113.50/32:22"));
  std::string gateway;
  for (const auto& line : Lines(shown.out)) {
    if (Contains(line, "Address"))
      gateway = Trim(line.substr(line.find(':') + 1));
  }
  REQUIRE_FALSE(gateway.empty());
  const std::vector<std::pair<std::string, std::string>> refused = {
      {FakeInternet::kHostAddress, "an address of the host"},
      {"10.0.0.1", "RFC 1918"},
      {"172.16.5.5", "RFC 1918"},
      {"192.168.1.1", "RFC 1918"},
      {"100.64.0.1", "CGNAT"},
      {"169.254.169.254", "metadata"},
      {"198.18.0.1", "benchmarking"},
      {"192.0.0.8", "IETF protocol assignments"},
      {gateway, "the sandboxes' own network"},
  };
  for (const auto& [address, why] : refused) {
    INFO(address);
    CHECK(Contains(world.Probe(open, {"connect", address, "80"}), "failed"));
  }
  const std::string log = world.NetLog(open);
  INFO(log);
  for (const auto& [address, why] : refused) {
    CHECK(Contains(log, "REFUSED tcp " + address + ":80"));
    CHECK(Contains(log, why));
  }
}

TEST_CASE(
    "learn mode records what a run needs; suggest prints the narrowest "
    "flags, and the same run passes with them") {
  if (Skip()) return;
  NetworkWorld world;
  if (!world.Enforced()) return;
  const std::string learner = world.Create({"--network", "learn"});
  auto run = [&](const std::string& id) {
    // In this order (the operands of + have none).
    std::string out = world.Probe(id, {"resolve", "allowed.test"});
    out += world.Probe(id, {"http", "203.0.113.10", "80", "allowed.test"});
    out += world.Probe(id, {"connect", "203.0.113.50", "22"});
    return out;
  };
  const std::string learned = run(learner);
  REQUIRE(Contains(learned, "HTTP/1.1 200"));
  REQUIRE(Contains(learned, "hello 203.0.113.50:22"));
  auto suggested = world.daemon().Cli({"net", "suggest", learner});
  INFO(suggested.err);
  REQUIRE(suggested.exit_code == 0);
  CHECK(Trim(suggested.out) ==
        "--allow-domain allowed.test --allow-cidr 203.0.113.50/32:22");

  std::vector<std::string> flags;
  std::istringstream words(Trim(suggested.out));
  for (std::string word; words >> word;) flags.push_back(word);
  const std::string narrow = world.Create(flags);
  const std::string again = run(narrow);
  INFO(again << world.NetLog(narrow));
  CHECK(Contains(again, "A 203.0.113.10"));
  CHECK(Contains(again, "HTTP/1.1 200"));
  CHECK(Contains(again, "hello 203.0.113.50:22"));
  // And nothing more.
  CHECK(world.Probe(narrow, {"resolve", "other.test"}) == "NXDOMAIN\n");
}

TEST_CASE(
    "network requests are checked: bad entries, allowlists without egress, "
    "and modes the caller's policy does not allow change nothing") {
  if (Skip()) return;
  NetworkWorld world(
      "[daemon]\nsocket_mode = 0o666\n"
      "[default_policy]\nnetwork = [\"none\", \"allowlist\"]\n");
  if (!world.Enforced()) return;
  auto& daemon = world.daemon();
  auto count = [&] { return world.SandboxCount(); };
  const size_t before = count();
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
      {{"create", "--allow-domain", "*.org"}, "domain \"*.org\""},
      {{"create", "--allow-cidr", "203.0.113.1/24"}, "did you mean"},
      {{"create", "--allow-cidr", "2001:db8::/32"}, "IPv6"},
      {{"create", "--network", "none", "--allow-domain", "a.test"},
       "need network mode egress"},
      {{"create", "--network", "everything"}, "--network expects"},
  };
  for (auto [args, message] : bad) {
    args.insert(args.begin() + 1, {"--runtime", world.suite().runtime()});
    auto result = daemon.Cli(args);
    INFO(result.err);
    CHECK(result.exit_code == 125);
    CHECK(Contains(result.err, message));
  }
  // Root is an admin: every mode. Another user gets what the policy says.
  const std::string runtime = world.suite().runtime();
  auto denied = daemon.Cli(
      {"create", "--runtime", runtime, "--network", "egress"}, "", kNobody);
  INFO(denied.err);
  CHECK(denied.exit_code == 125);
  CHECK(
      Contains(denied.err, "network egress is not allowed by default_policy"));
  auto allowed = daemon.Cli(
      {"create", "--runtime", runtime, "--allow-domain", "allowed.test"}, "",
      kNobody);
  INFO(allowed.err);
  CHECK(allowed.exit_code == 0);
  CHECK(count() == before + 1);
}

TEST_CASE(
    "a sandbox's network survives a daemon restart and kill -9, and delete "
    "removes its namespace and link") {
  if (Skip()) return;
  NetworkWorld world;
  if (!world.Enforced()) return;
  const std::string id = world.Create({"--allow-domain", "allowed.test"});
  // Connections go only where an allowed name resolved to, for this
  // sandbox: not before it resolved the name.
  CHECK(
      Contains(world.Probe(id, {"http", "203.0.113.10", "80", "allowed.test"}),
               "failed"));
  CHECK(world.Probe(id, {"resolve", "allowed.test"}) == "A 203.0.113.10\n");
  CHECK(
      Contains(world.Probe(id, {"http", "203.0.113.10", "80", "allowed.test"}),
               "HTTP/1.1 200"));
  // The resolved addresses are the daemon's memory: a restarted daemon
  // resolves the allowed names again itself, so that a program that keeps
  // its own answers still connects.
  world.daemon().Kill9();
  world.daemon().Start();
  std::string again;
  for (int i = 0; i < 50; ++i) {
    again = world.Probe(id, {"http", "203.0.113.10", "80", "allowed.test"});
    if (Contains(again, "HTTP/1.1 200")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  CHECK(Contains(again, "HTTP/1.1 200"));
  CHECK(world.Probe(id, {"resolve", "allowed.test"}) == "A 203.0.113.10\n");
  CHECK(
      Contains(world.Probe(id, {"http", "203.0.113.10", "80", "allowed.test"}),
               "HTTP/1.1 200"));
  world.daemon().Stop();
  world.daemon().Start();
  CHECK(world.Probe(id, {"resolve", "allowed.test"}) == "A 203.0.113.10\n");
  CHECK(
      Contains(world.Probe(id, {"http", "203.0.113.10", "80", "allowed.test"}),
               "HTTP/1.1 200"));
  CHECK(Contains(world.Probe(id, {"http", "203.0.113.10", "80", "shared.test"}),
                 "failed"));

  std::ifstream instance_file(world.daemon().state_dir() + "/instance-id");
  std::string instance;
  std::getline(instance_file, instance);
  const std::string dir = "/run/corral-net/" + Trim(instance);
  CHECK(std::filesystem::exists(dir + "/egress"));
  REQUIRE(world.daemon().Cli({"rm", id}).exit_code == 0);
  CHECK_FALSE(std::filesystem::exists(dir + "/" + id));
  // With no sandbox with network left, a stopped daemon leaves nothing.
  world.daemon().Stop();
  CHECK_FALSE(std::filesystem::exists(dir));
}

TEST_CASE(
    "published ports reach a server in the sandbox, with network none too; "
    "the host side binds 127.0.0.1 by default; taken, privileged and "
    "public ports are refused and change nothing") {
  if (Skip()) return;
  NetworkWorld world("[daemon]\nsocket_mode = 0o666\n");
  if (!world.Enforced()) return;
  auto& suite = world.suite();
  const std::string id = world.Create({"-p", "18080:8000", "-p", "9000"});
  for (const char* port : {"8000", "9000"}) {
    auto started = suite.Cli({"exec", "-d", id, "--", "sh", "-c",
                              std::string("chmod +x /workspace/probe && exec "
                                          "/workspace/probe serve ") +
                                  port});
    INFO(started.err);
    REQUIRE(started.exit_code == 0);
  }
  auto listed = suite.Cli({"port", id});
  INFO(listed.out << listed.err);
  REQUIRE(listed.exit_code == 0);
  const auto lines = Lines(Trim(listed.out));
  REQUIRE(lines.size() == 2);
  CHECK(lines[0] == "8000 -> 127.0.0.1:18080");
  REQUIRE(lines[1].rfind("9000 -> 127.0.0.1:", 0) == 0);
  const std::string any_port = lines[1].substr(lines[1].rfind(':') + 1);

  // From the daemon's host namespace, as a local client would.
  const std::string probe = std::string(CORRAL_BINARY_DIR) + "/tests/net_probe";
  auto reach = [&](const std::string& address, const std::string& port) {
    std::string out;
    for (int i = 0; i < 50; ++i) {  // the servers start in the background
      out = world.internet().RunInHost({probe, "connect", address, port}).out;
      if (!Contains(out, "failed")) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return out;
  };
  CHECK(reach("127.0.0.1", "18080") == "hello from sandbox 8000\n");
  CHECK(reach("127.0.0.1", any_port) == "hello from sandbox 9000\n");
  // Bound to loopback only.
  CHECK(Contains(
      world.internet()
          .RunInHost({probe, "connect", FakeInternet::kHostAddress, "18080"})
          .out,
      "failed"));
  // A restarted daemon publishes them again.
  world.daemon().Kill9();
  world.daemon().Start();
  CHECK(reach("127.0.0.1", "18080") == "hello from sandbox 8000\n");
  // Network none: nothing goes out, names do not resolve.
  CHECK(Contains(world.Probe(id, {"connect", "203.0.113.10", "80"}), "failed"));
  CHECK(world.Probe(id, {"resolve", "allowed.test"}) == "rcode 5\n");
  const std::string log = world.NetLog(id);
  INFO(log);
  CHECK(Contains(log, "allowed inbound"));
  CHECK(Contains(log, "REFUSED tcp 203.0.113.10:80 - (network none"));

  auto count = [&] { return world.SandboxCount(); };
  const size_t before = count();
  auto taken =
      suite.Cli({"create", "--runtime", suite.runtime(), "-p", "18080:8000"});
  INFO(taken.err);
  CHECK(taken.exit_code == 125);
  CHECK(Contains(taken.err, "127.0.0.1:18080"));
  const std::string runtime = suite.runtime();
  auto exposed = world.daemon().Cli(
      {"create", "--runtime", runtime, "-p", "0.0.0.0:18081:8000"}, "",
      kNobody);
  INFO(exposed.err);
  CHECK(exposed.exit_code == 125);
  CHECK(Contains(exposed.err, "publish-public"));
  auto privileged = world.daemon().Cli(
      {"create", "--runtime", runtime, "-p", "80:8000"}, "", kNobody);
  INFO(privileged.err);
  CHECK(privileged.exit_code == 125);
  CHECK(Contains(privileged.err, "privileged"));
  auto bad = suite.Cli({"create", "--runtime", runtime, "-p", "x:1"});
  CHECK(bad.exit_code == 125);
  CHECK(Contains(bad.err, "-p expects"));
  CHECK(count() == before);

  // Deleting the sandbox closes its ports.
  REQUIRE(suite.Cli({"rm", id}).exit_code == 0);
  CHECK(Contains(
      world.internet().RunInHost({probe, "connect", "127.0.0.1", "18080"}).out,
      "failed"));
}

// Whether `needle` is anywhere in the readable memory of process `pid`
// (read from the host, through /proc/PID/mem).
bool InMemoryOf(pid_t pid, const std::string& needle) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  const std::string mem_path = "/proc/" + std::to_string(pid) + "/mem";
  UniqueFdForTest mem(::open(mem_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (mem.fd < 0) return false;
  std::string line;
  std::vector<char> buffer(1 << 20);
  while (std::getline(maps, line)) {
    unsigned long start = 0, end = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %4s", &start, &end, perms) != 3 ||
        perms[0] != 'r' || line.find("[vvar") != std::string::npos) {
      continue;
    }
    std::string carry;
    for (unsigned long at = start; at < end;) {
      const size_t want = std::min<unsigned long>(buffer.size(), end - at);
      const ssize_t n =
          ::pread(mem.fd, buffer.data(), want, static_cast<off_t>(at));
      if (n <= 0) break;
      std::string chunk = carry + std::string(buffer.data(), n);
      if (chunk.find(needle) != std::string::npos) return true;
      carry =
          chunk.substr(chunk.size() - std::min(chunk.size(), needle.size()));
      at += static_cast<unsigned long>(n);
    }
  }
  return false;
}

// A secret's value, unique to the run, and a file with it.
struct TestSecret {
  std::string value;
  std::string file;
};

// A sandbox with network egress whose $API_TOKEN is a placeholder for
// `secret`, bound to `hosts`.
std::string CreateWithSecret(NetworkWorld& world, const TestSecret& secret,
                             const std::vector<std::string>& hosts) {
  std::vector<std::string> flags = {"--network", "egress", "--secret",
                                    "API_TOKEN=@" + secret.file};
  for (const auto& host : hosts) {
    flags.push_back("--secret-host");
    flags.push_back("API_TOKEN=" + host);
  }
  return world.Create(flags);
}

TestSecret MakeSecret(NetworkWorld& world) {
  char suffix[17] = {};
  std::snprintf(suffix, sizeof(suffix), "%08x%08x",
                static_cast<unsigned>(::getpid()),
                static_cast<unsigned>(::time(nullptr)));
  TestSecret secret{std::string("s3cr3t-value-") + suffix,
                    world.daemon().dir() + "/token"};
  std::ofstream(secret.file) << secret.value << "\n";
  return secret;
}

// The value is nowhere inside sandbox `id`, whose $API_TOKEN holds the
// placeholder: not in its environment, files, `outputs` (what its commands
// printed), record or memory, nor in the daemon's log.
void CheckSecretNowhereInside(NetworkWorld& world, const std::string& id,
                              const std::string& value,
                              const std::string& outputs) {
  auto env = world.suite().Sh(id,
                              "echo $API_TOKEN; cat /proc/*/environ | tr "
                              "'\\0' '\\n' | grep -c corral-secret-");
  INFO(env.out << env.err);
  CHECK(Contains(env.out, "corral-secret-"));
  CHECK_FALSE(Contains(env.out + outputs, value));
  // The pattern must not hold the value, nor let grep rebuild it as one
  // literal: a command's memory is the sandbox's too (a VM's guest keeps
  // freed pages), and it is searched below.
  const std::string pattern =
      "s3cr3t-valu[ex]-" + value.substr(std::string("s3cr3t-value-").size());
  auto files = world.suite().Sh(
      id, "grep -rlE '" + pattern +
              "' /workspace /tmp /etc /root /var 2>/dev/null; echo done");
  CHECK(Trim(files.out) == "done");
  CHECK_FALSE(Contains(world.suite().Get(id).DebugString(), value));
  // Memory of every host process of the sandbox (a VM's guest memory is
  // QEMU's). The placeholder, which a process holds in its environment, is
  // found the same way: the search works.
  const std::string placeholder = Trim(Lines(env.out).at(0));
  REQUIRE(
      world.suite().Cli({"exec", "-d", id, "--", "sleep", "300"}).exit_code ==
      0);
  const auto processes = SandboxHostProcesses(world.suite(), id);
  REQUIRE_FALSE(processes.empty());
  bool placeholder_found = false;
  for (const auto& process : processes) {
    INFO("pid " << process.pid);
    CHECK_FALSE(InMemoryOf(process.pid, value));
    placeholder_found =
        placeholder_found || InMemoryOf(process.pid, placeholder);
  }
  CHECK(placeholder_found);
  // The daemon's own log never has it.
  CHECK_FALSE(Contains(world.daemon().log(), value));
}

// What the fake internet's servers received with `host`, joined.
std::string RequestsTo(NetworkWorld& world, const std::string& host) {
  std::string got;
  for (const auto& request : world.internet().requests()) {
    if (Contains(request, "Host: " + host + "\r\n")) got += request + "\n---\n";
  }
  return got;
}

TEST_CASE(
    "a secret reaches only the hosts it is bound to, over HTTP, at an "
    "address the host's name resolved to, and is found nowhere in the "
    "sandbox: not in its environment, files, output or memory") {
  if (Skip()) return;
  NetworkWorld world;
  if (!world.Enforced()) return;
  const TestSecret secret = MakeSecret(world);
  const std::string id = CreateWithSecret(world, secret, {"allowed.test"});
  const std::string header = "Authorization: Bearer $API_TOKEN";
  auto send = [&](const std::string& address, const std::string& host) {
    return world.suite()
        .Sh(id, "chmod +x /workspace/probe && /workspace/probe http " +
                    address + " 80 " + host + " \"" + header + "\" /quiet")
        .out;
  };
  // Plain HTTP proves nothing about the server: the value goes only to an
  // address that the name resolved to for this sandbox, which it has not
  // asked yet.
  const std::string early = send("203.0.113.10", "allowed.test");
  CHECK(Contains(early, "HTTP/1.1 200"));
  CHECK(world.Probe(id, {"resolve", "allowed.test"}) == "A 203.0.113.10\n");
  const std::string bound = send("203.0.113.10", "allowed.test");
  INFO(bound);
  CHECK(Contains(bound, "HTTP/1.1 200"));
  // The same name at an address it did not resolve to, and another name.
  const std::string elsewhere = send("203.0.113.11", "allowed.test");
  CHECK(Contains(elsewhere, "HTTP/1.1 200"));
  const std::string other = send("203.0.113.10", "shared.test");
  CHECK(Contains(other, "HTTP/1.1 200"));

  const std::string to_bound = RequestsTo(world, "allowed.test");
  const std::string to_other = RequestsTo(world, "shared.test");
  INFO(to_bound);
  CHECK(Contains(to_bound, "Authorization: Bearer " + secret.value));
  int with_value = 0, with_placeholder = 0;
  for (const auto& request : world.internet().requests()) {
    with_value += Contains(request, secret.value) ? 1 : 0;
    with_placeholder += Contains(request, "Bearer corral-secret-") ? 1 : 0;
  }
  CHECK(with_value == 1);
  CHECK(with_placeholder == 3);
  CHECK(Contains(to_other, "Bearer corral-secret-"));
  const std::string log = world.NetLog(id);
  INFO(log);
  CHECK(Contains(log, "secrets put in 1 request"));
  CHECK(Contains(log,
                 "no secrets: allowed.test did not resolve to this "
                 "address"));
  CHECK_FALSE(Contains(log, secret.value));

  CheckSecretNowhereInside(world, id, secret.value,
                           early + bound + elsewhere + other);
}

TEST_CASE(
    "a secret reaches its hosts over HTTPS through a CA of the sandbox's "
    "own, only after the real server proved its name, and is found nowhere "
    "in the sandbox") {
  if (Skip()) return;
  NetworkWorld world;
  if (!world.Enforced()) return;
  const TestSecret secret = MakeSecret(world);
  const std::string id =
      CreateWithSecret(world, secret, {"allowed.test", "*.allowed.test"});
  auto copied = world.suite().Cli(
      {"cp", std::string(CORRAL_BINARY_DIR) + "/tests/https_probe",
       id + ":/workspace/https"});
  REQUIRE(copied.exit_code == 0);
  auto send = [&](const std::string& name) {
    return world.suite()
        .Sh(id,
            "chmod +x /workspace/https && /workspace/https 203.0.113.10 443 " +
                name + " \"Authorization: Bearer $API_TOKEN\" /quiet")
        .out;
  };
  // What the sandbox trusts: the CAs the daemon does, and its own CA,
  // whose key it never gets.
  auto trust = world.suite().Sh(
      id,
      "echo $SSL_CERT_FILE; grep -c 'BEGIN CERTIFICATE' $SSL_CERT_FILE; "
      "grep -c PRIVATE $SSL_CERT_FILE");
  INFO(trust.out << trust.err);
  const auto trust_lines = Lines(trust.out);
  REQUIRE(trust_lines.size() == 3);
  CHECK(trust_lines[0] == "/tmp/corral-ca-certificates.pem");
  CHECK(std::stoi(trust_lines[1]) >= 2);
  CHECK(trust_lines[2] == "0");

  const std::string bound = send("allowed.test");
  INFO(bound);
  CHECK(Contains(bound,
                 "verified /O=Corral/CN=Corral secrets CA of sandbox " + id));
  CHECK(Contains(bound, "HTTP/1.1 200"));
  const std::string to_bound = RequestsTo(world, "allowed.test");
  INFO(to_bound);
  CHECK(Contains(to_bound, "Authorization: Bearer " + secret.value));

  // Another host: not terminated (the sandbox sees the real server's
  // certificate), and the placeholder goes out as it is.
  const std::string other = send("shared.test");
  INFO(other);
  CHECK(Contains(other, "HTTP/1.1 200"));
  CHECK_FALSE(Contains(other, "Corral secrets CA"));
  CHECK(Contains(RequestsTo(world, "shared.test"), "Bearer corral-secret-"));
  CHECK_FALSE(Contains(RequestsTo(world, "shared.test"), secret.value));

  // A bound name whose server cannot prove it (its certificate does not
  // name x.allowed.test): the sandbox gets no certificate and no
  // connection, and nothing is sent.
  const size_t requests_before = world.internet().requests().size();
  const std::string unproven = send("x.allowed.test");
  INFO(unproven);
  CHECK(Contains(unproven, "failed: TLS"));
  CHECK(world.internet().requests().size() == requests_before);

  const std::string log = world.NetLog(id);
  INFO(log);
  CHECK(Contains(log, "TLS terminated, secrets put in 1 request"));
  CHECK(Contains(log, "x.allowed.test"));
  CHECK(Contains(log, "the server's certificate does not verify"));
  CHECK_FALSE(Contains(log, secret.value));

  // A daemon killed and started again terminates with the same CA (kept in
  // its store), which the sandbox still trusts.
  world.daemon().Kill9();
  world.daemon().Start();
  const std::string again = send("allowed.test");
  INFO(again);
  CHECK(Contains(again,
                 "verified /O=Corral/CN=Corral secrets CA of sandbox " + id));
  int reached = 0;
  for (const auto& request : world.internet().requests()) {
    reached += Contains(request, "Bearer " + secret.value) ? 1 : 0;
  }
  CHECK(reached == 2);

  CheckSecretNowhereInside(world, id, secret.value,
                           bound + other + unproven + again);
}

}  // namespace
}  // namespace corral::testing::conformance
