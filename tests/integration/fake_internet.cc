#include "tests/integration/fake_internet.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <list>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <utility>

#include "corral/unique_fd.h"

namespace corral::testing {
namespace {

namespace fs = std::filesystem;

constexpr const char* kInternetAddress = "198.51.100.1";
constexpr const char* kWebRange = "203.0.113.0/24";
constexpr size_t kMaxHead = 64 * 1024;
constexpr size_t kMaxBody = 1024 * 1024;

std::system_error Errno(const std::string& what) {
  return std::system_error(errno, std::generic_category(), what);
}

// Looks in PATH and then the sbin directories, which a root shell under sudo
// or CI may lack (ip and dnsmasq live there).
std::string FindProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* env = std::getenv("PATH");
  std::string dirs = std::string(env ? env : "") +
                     ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                     "/sbin:/bin";
  std::istringstream in(dirs);
  for (std::string dir; std::getline(in, dir, ':');) {
    if (dir.empty()) continue;
    std::string path = dir + "/" + name;
    if (::access(path.c_str(), X_OK) == 0) return path;
  }
  return "";
}

// OpenSSL writes to its socket with write(), which raises SIGPIPE when the
// client has gone and would kill the test. Blocked in the calling thread,
// the signal stays pending on that thread and ends with it, and the write
// fails with EPIPE.
void BlockSigpipeInThisThread() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

// Runs `work` on a new thread that entered the network namespace `netns_fd`
// (-1: the caller's), with SIGPIPE blocked; sockets made there stay in it
// after the thread ends.
void RunInNetns(int netns_fd, const std::function<void()>& work) {
  std::exception_ptr error;
  std::thread thread([&] {
    BlockSigpipeInThisThread();
    try {
      if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) {
        throw Errno("setns");
      }
      work();
    } catch (...) {
      error = std::current_exception();
    }
  });
  thread.join();
  if (error) std::rethrow_exception(error);
}

// A command started through a small waiter process, which is its parent and
// writes its pid and then its wait status to `status`. The daemon harness
// reaps every child of the test process with waitpid(-1); a status sent
// through a pipe cannot be taken that way.
struct Child {
  pid_t pid = -1;
  pid_t waiter = -1;
  UniqueFd status;
};

Child Spawn(const std::vector<std::string>& argv, int netns_fd, int in, int out,
            int err) {
  std::string path = FindProgram(argv.at(0));
  if (path.empty()) throw std::runtime_error(argv[0] + ": not found");
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  int status[2];
  if (::pipe2(status, O_CLOEXEC) != 0) throw Errno("pipe2");
  pid_t parent = ::getpid();
  pid_t waiter = ::fork();
  if (waiter < 0) {
    ::close(status[0]);
    ::close(status[1]);
    throw Errno("fork");
  }
  if (waiter == 0) {
    // Only async-signal-safe calls: the test process has threads. Both
    // processes die with their parent, so a killed test leaves no dnsmasq.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    if (netns_fd >= 0 && ::setns(netns_fd, CLONE_NEWNET) != 0) ::_exit(1);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(err, 2);
    ::dup2(status[1], 3);
    ::close_range(4, ~0U, 0);
    pid_t self = ::getpid();
    pid_t pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != self) ::_exit(1);
      ::close(3);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execv(path.c_str(), args.data());
      ::_exit(127);
    }
    (void)!::write(3, &pid, sizeof pid);
    int wait_status = 0;
    while (pid > 0 && ::waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
    }
    (void)!::write(3, &wait_status, sizeof wait_status);
    ::_exit(0);
  }
  ::close(status[1]);
  Child child;
  child.waiter = waiter;
  child.status.Reset(status[0]);
  if (::read(child.status.get(), &child.pid, sizeof child.pid) !=
          sizeof child.pid ||
      child.pid <= 0) {
    ::waitpid(waiter, nullptr, 0);
    throw std::runtime_error("could not start " + argv[0]);
  }
  return child;
}

// Waits up to timeout_ms (-1: for ever) for the command to end; true and
// its wait status (-1 if unknown) once it has.
bool WaitChild(Child& child, int timeout_ms, int* wait_status) {
  if (!child.status) return false;
  pollfd p{child.status.get(), POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) <= 0) return false;
  int status = -1;
  if (::read(child.status.get(), &status, sizeof status) != sizeof status) {
    status = -1;
  }
  child.status.Reset();
  // ECHILD when the harness's reaper took the waiter first: fine.
  while (::waitpid(child.waiter, nullptr, 0) < 0 && errno == EINTR) {
  }
  *wait_status = status;
  return true;
}

void KillChild(Child& child) {
  if (!child.status) return;
  // The waiter has not reported yet, so the pid is still its child.
  ::kill(child.pid, SIGKILL);
  int status;
  WaitChild(child, -1, &status);
}

int ExitCode(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

FakeInternet::Result Run(const std::vector<std::string>& argv, int netns_fd,
                         const std::string& input,
                         std::chrono::milliseconds timeout) {
  // stdin is a socket, so writing to a command that closed it fails with
  // EPIPE (MSG_NOSIGNAL) instead of raising SIGPIPE in the test.
  int in[2], out[2], err[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0) {
    throw Errno("socketpair");
  }
  UniqueFd in_w(in[0]), in_r(in[1]);
  if (::pipe2(out, O_CLOEXEC) != 0) throw Errno("pipe2");
  UniqueFd out_r(out[0]), out_w(out[1]);
  if (::pipe2(err, O_CLOEXEC) != 0) throw Errno("pipe2");
  UniqueFd err_r(err[0]), err_w(err[1]);
  Child child = Spawn(argv, netns_fd, in_r.get(), out_w.get(), err_w.get());
  in_r.Reset();
  out_w.Reset();
  err_w.Reset();
  if (input.empty()) in_w.Reset();

  FakeInternet::Result result;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t written = 0;
  int wait_status = 0;
  bool exited = false;
  while (out_r || err_r || !exited) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p[4] = {{in_w.get(), POLLOUT, 0},
                   {out_r.get(), POLLIN, 0},
                   {err_r.get(), POLLIN, 0},
                   {child.status.get(), POLLIN, 0}};
    if (::poll(p, 4, static_cast<int>(left.count())) < 0 && errno != EINTR) {
      throw Errno("poll");
    }
    if (p[0].revents) {
      ssize_t n = ::send(in_w.get(), input.data() + written,
                         input.size() - written, MSG_NOSIGNAL);
      if (n > 0) written += n;
      if (n <= 0 || written == input.size()) in_w.Reset();
    }
    UniqueFd* sources[2] = {&out_r, &err_r};
    std::string* sinks[2] = {&result.out, &result.err};
    for (int i = 0; i < 2; ++i) {
      if (!p[i + 1].revents) continue;
      char buffer[16384];
      ssize_t n = ::read(sources[i]->get(), buffer, sizeof buffer);
      if (n > 0) {
        sinks[i]->append(buffer, n);
      } else if (n == 0 || errno != EINTR) {
        sources[i]->Reset();
      }
    }
    if (p[3].revents && WaitChild(child, 0, &wait_status)) {
      exited = true;
      // Something it left in the background may hold its output open.
      deadline = std::min(
          deadline, std::chrono::steady_clock::now() + std::chrono::seconds(1));
    }
  }
  if (exited) {
    result.exit_code = ExitCode(wait_status);
  } else {
    KillChild(child);
    result.exit_code = -1;
  }
  return result;
}

// `ip ARGS...` in the caller's namespace; throws with its message.
void Ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = Run(argv, -1, "", std::chrono::seconds(30));
  if (r.exit_code != 0) {
    std::string line;
    for (const auto& a : argv) line += a + " ";
    throw std::runtime_error(line + "failed: " + r.err);
  }
}

void IpNoThrow(const std::vector<std::string>& args) {
  try {
    Ip(args);
  } catch (const std::exception&) {
  }
}

// Our namespaces and temporary directories are named c{inet,host}-PID-HEX.
// Those of a test process that no longer exists (killed by a CTest timeout,
// say) are removed.
void RemoveStale() {
  for (const char* dir : {"/run/netns", "/tmp"}) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
      std::string name = entry.path().filename();
      if (name.rfind("cinet-", 0) != 0 && name.rfind("chost-", 0) != 0) {
        continue;
      }
      pid_t pid = std::atoi(name.c_str() + 6);
      if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
      if (std::string(dir) == "/run/netns") {
        IpNoThrow({"netns", "delete", name});
      } else {
        fs::remove_all(entry.path(), ec);
      }
    }
  }
}

std::string RandomHex(int digits) {
  std::random_device random;
  std::string hex;
  for (int i = 0; i < digits; ++i) hex += "0123456789abcdef"[random() % 16];
  return hex;
}

bool IsWebAddress(const std::string& address) {
  in_addr a{};
  if (::inet_pton(AF_INET, address.c_str(), &a) != 1) return false;
  uint32_t host = ntohl(a.s_addr);
  uint32_t last = host & 0xff;
  return (host >> 8) == ((203u << 16) | 113u) && last != 0 && last != 255;
}

bool IsDnsName(const std::string& name) {
  if (name.empty() || name.size() > 253 || name.front() == '.' ||
      name.back() == '.' || name.find("..") != std::string::npos) {
    return false;
  }
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.') {
      return false;
    }
  }
  return true;
}

// --- The test CA and the web servers' certificate ---------------------

using KeyPtr = std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)>;
using CertPtr = std::unique_ptr<X509, decltype(&X509_free)>;

void CheckSsl(bool ok, const std::string& what) {
  if (ok) return;
  char text[256];
  ERR_error_string_n(ERR_get_error(), text, sizeof text);
  throw std::runtime_error("openssl: " + what + ": " + text);
}

KeyPtr MakeKey() {
  KeyPtr key(EVP_EC_gen("P-256"), EVP_PKEY_free);
  CheckSsl(key != nullptr, "key");
  return key;
}

// A certificate for `key` signed by issuer/issuer_key (self-signed when
// issuer is null), valid from an hour ago for 30 days.
CertPtr MakeCert(const std::string& common_name, EVP_PKEY* key, X509* issuer,
                 EVP_PKEY* issuer_key,
                 const std::vector<std::pair<int, std::string>>& extensions) {
  CertPtr cert(X509_new(), X509_free);
  CheckSsl(cert != nullptr, "X509_new");
  X509* c = cert.get();
  std::random_device random;
  uint64_t serial = (uint64_t{random()} << 31) ^ random();
  CheckSsl(
      X509_set_version(c, X509_VERSION_3) &&
          ASN1_INTEGER_set_uint64(X509_get_serialNumber(c), serial) &&
          X509_gmtime_adj(X509_getm_notBefore(c), -3600) &&
          X509_gmtime_adj(X509_getm_notAfter(c), 30L * 86400) &&
          X509_NAME_add_entry_by_txt(
              X509_get_subject_name(c), "CN", MBSTRING_UTF8,
              reinterpret_cast<const unsigned char*>(common_name.c_str()), -1,
              -1, 0) &&
          X509_set_issuer_name(c, X509_get_subject_name(issuer ? issuer : c)) &&
          X509_set_pubkey(c, key),
      "certificate fields");
  for (const auto& [nid, value] : extensions) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer ? issuer : c, c, nullptr, nullptr, 0);
    X509_EXTENSION* ext =
        X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
    bool added = ext && X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    CheckSsl(added, value);
  }
  CheckSsl(X509_sign(c, issuer_key, EVP_sha256()) > 0, "sign");
  return cert;
}

// --- Servers -------------------------------------------------------------

enum class Kind { kHttp, kTls, kHello };

struct Listener {
  UniqueFd fd;
  Kind kind;
  std::string address;
  int port;
};

// One connection being served; fd is -1 once it is closed.
struct Worker {
  std::thread thread;
  int fd = -1;
  bool done = false;
};

size_t ContentLength(const std::string& head) {
  std::istringstream in(head);
  std::string line;
  std::getline(in, line);  // the request line
  while (std::getline(in, line)) {
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    for (char& c : name) c = std::tolower(static_cast<unsigned char>(c));
    if (name == "content-length") {
      return std::strtoull(line.c_str() + colon + 1, nullptr, 10);
    }
  }
  return 0;
}

// Reads a request's head and its Content-Length body (bounded), exactly as
// sent. `read_some` returns <= 0 at the end or on an error.
std::string ReadRequest(const std::function<long(char*, size_t)>& read_some) {
  std::string data;
  char buffer[16384];
  size_t head_end = std::string::npos;
  while (head_end == std::string::npos && data.size() < kMaxHead) {
    long n = read_some(buffer, sizeof buffer);
    if (n <= 0) return data;
    data.append(buffer, n);
    head_end = data.find("\r\n\r\n");
  }
  if (head_end == std::string::npos) return data;
  size_t want = head_end + 4 +
                std::min(ContentLength(data.substr(0, head_end)), kMaxBody);
  while (data.size() < want) {
    long n = read_some(buffer, sizeof buffer);
    if (n <= 0) break;
    data.append(buffer, n);
  }
  return data;
}

std::string Response(const std::string& body) {
  return "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
}

void SendAll(int fd, const std::string& data) {
  size_t at = 0;
  while (at < data.size()) {
    ssize_t n = ::send(fd, data.data() + at, data.size() - at, MSG_NOSIGNAL);
    if (n <= 0 && errno != EINTR) return;
    if (n > 0) at += n;
  }
}

std::string AddressOf(const sockaddr_in& a) {
  char text[INET_ADDRSTRLEN] = "";
  ::inet_ntop(AF_INET, &a.sin_addr, text, sizeof text);
  return text;
}

}  // namespace

struct FakeInternet::Impl {
  std::string inet_name, host_name, dir;
  bool made_inet = false, made_host = false;
  UniqueFd inet_ns, host_ns;
  std::map<std::string, std::string> names;
  std::vector<Listener> listeners;
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> tls{nullptr, SSL_CTX_free};
  Child dnsmasq;
  UniqueFd stop;  // eventfd, readable once stopping
  std::thread acceptor;

  mutable std::mutex mutex;
  std::vector<Connection> connections;
  std::vector<std::string> requests;
  std::list<Worker> workers;

  void Record(const std::string& request) {
    std::lock_guard lock(mutex);
    requests.push_back(request);
  }
  // A request for /quiet... is answered "ok", without the echo.
  static bool Quiet(const std::string& request) {
    const size_t space = request.find(' ');
    return space != std::string::npos &&
           request.compare(space + 1, 6, "/quiet") == 0;
  }

  void Setup(const std::vector<std::pair<std::string, int>>& extra_tcp);
  void MakeNamespaces();
  void MakeCertificates();
  void Listen(const std::vector<std::pair<std::string, int>>& extra_tcp);
  void StartDnsmasq();
  void Teardown();
  void AcceptLoop();
  void Serve(Worker* worker, Kind kind, const std::string& local, int port);
};

void FakeInternet::Impl::Setup(
    const std::vector<std::pair<std::string, int>>& extra_tcp) {
  RemoveStale();
  std::string id = std::to_string(::getpid()) + "-" + RandomHex(6);
  inet_name = "cinet-" + id;
  host_name = "chost-" + id;
  char pattern[64];
  std::snprintf(pattern, sizeof pattern, "/tmp/cinet-%s-XXXXXX", id.c_str());
  if (!::mkdtemp(pattern)) throw Errno("mkdtemp");
  dir = pattern;
  MakeNamespaces();
  MakeCertificates();
  Listen(extra_tcp);
  StartDnsmasq();
  stop.Reset(::eventfd(0, EFD_CLOEXEC));
  if (!stop) throw Errno("eventfd");
  acceptor = std::thread(&Impl::AcceptLoop, this);
}

void FakeInternet::Impl::MakeNamespaces() {
  Ip({"netns", "add", inet_name});
  made_inet = true;
  Ip({"netns", "add", host_name});
  made_host = true;
  // Made inside the namespaces, so no name is ever taken in the root one.
  Ip({"link", "add", "eth0", "netns", host_name, "type", "veth", "peer", "name",
      "host0", "netns", inet_name});
  // The internet: every address of the web range is local (a route of type
  // local on lo), so ports without a server refuse at once.
  Ip({"-n", inet_name, "link", "set", "lo", "up"});
  Ip({"-n", inet_name, "addr", "add", std::string(kDnsServer) + "/32", "dev",
      "lo"});
  Ip({"-n", inet_name, "route", "add", "local", kWebRange, "dev", "lo"});
  // No IPv6 link-local addresses: nothing but the IPv4 set up here.
  Ip({"-n", inet_name, "link", "set", "host0", "addrgenmode", "none"});
  Ip({"-n", inet_name, "addr", "add", std::string(kInternetAddress) + "/24",
      "dev", "host0"});
  Ip({"-n", inet_name, "link", "set", "host0", "up"});
  // The host: a route to the web range only, no default route, so any
  // other address is unreachable without a packet being sent.
  Ip({"-n", host_name, "link", "set", "lo", "up"});
  Ip({"-n", host_name, "link", "set", "eth0", "addrgenmode", "none"});
  Ip({"-n", host_name, "addr", "add", std::string(kHostAddress) + "/24", "dev",
      "eth0"});
  Ip({"-n", host_name, "link", "set", "eth0", "up"});
  Ip({"-n", host_name, "route", "add", kWebRange, "via", kInternetAddress});
  inet_ns.Reset(
      ::open(("/run/netns/" + inet_name).c_str(), O_RDONLY | O_CLOEXEC));
  host_ns.Reset(
      ::open(("/run/netns/" + host_name).c_str(), O_RDONLY | O_CLOEXEC));
  if (!inet_ns || !host_ns) throw Errno("open /run/netns");
}

void FakeInternet::Impl::MakeCertificates() {
  KeyPtr ca_key = MakeKey();
  CertPtr ca = MakeCert("Corral fake internet CA " + inet_name, ca_key.get(),
                        nullptr, ca_key.get(),
                        {{NID_basic_constraints, "critical,CA:TRUE"},
                         {NID_key_usage, "critical,keyCertSign,cRLSign"},
                         {NID_subject_key_identifier, "hash"}});
  FILE* out = std::fopen((dir + "/ca.pem").c_str(), "w");
  if (!out) throw Errno("ca.pem");
  bool written = PEM_write_X509(out, ca.get());
  written = std::fclose(out) == 0 && written;
  CheckSsl(written, "write ca.pem");
  if (names.empty()) return;  // no web server, so no TLS

  std::string san;
  std::set<std::string> addresses;
  for (const auto& [name, address] : names) {
    san += (san.empty() ? "DNS:" : ",DNS:") + name;
    addresses.insert(address);
  }
  for (const auto& address : addresses) san += ",IP:" + address;
  KeyPtr key = MakeKey();
  CertPtr cert =
      MakeCert(names.begin()->first, key.get(), ca.get(), ca_key.get(),
               {{NID_basic_constraints, "critical,CA:FALSE"},
                {NID_key_usage, "critical,digitalSignature"},
                {NID_ext_key_usage, "serverAuth"},
                {NID_subject_alt_name, san},
                {NID_subject_key_identifier, "hash"},
                {NID_authority_key_identifier, "keyid:always"}});
  tls.reset(SSL_CTX_new(TLS_server_method()));
  CheckSsl(tls && SSL_CTX_set_min_proto_version(tls.get(), TLS1_2_VERSION) &&
               SSL_CTX_use_certificate(tls.get(), cert.get()) &&
               SSL_CTX_use_PrivateKey(tls.get(), key.get()),
           "server context");
}

void FakeInternet::Impl::Listen(
    const std::vector<std::pair<std::string, int>>& extra_tcp) {
  struct Want {
    std::string address;
    int port;
    Kind kind;
  };
  std::vector<Want> wanted;
  std::set<std::string> web;
  for (const auto& [name, address] : names) web.insert(address);
  for (const auto& address : web) {
    wanted.push_back({address, 80, Kind::kHttp});
    wanted.push_back({address, 443, Kind::kTls});
  }
  for (const auto& [address, port] : extra_tcp) {
    wanted.push_back({address, port, Kind::kHello});
  }
  RunInNetns(inet_ns.get(), [&] {
    for (const auto& w : wanted) {
      UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      if (!fd) throw Errno("socket");
      int one = 1;
      ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(w.port);
      ::inet_pton(AF_INET, w.address.c_str(), &a.sin_addr);
      if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
        throw Errno("bind " + w.address + ":" + std::to_string(w.port));
      }
      if (::listen(fd.get(), 64) != 0) throw Errno("listen");
      listeners.push_back({std::move(fd), w.kind, w.address, w.port});
    }
  });
}

void FakeInternet::Impl::StartDnsmasq() {
  // --no-daemon: in the foreground, and TCP queries answered in the process
  // itself (otherwise each is served by a fork that would outlive a kill).
  std::vector<std::string> argv = {
      "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--no-resolv",
      "--no-hosts", "--pid-file=" + dir + "/dnsmasq.pid", "--bind-interfaces",
      std::string("--listen-address=") + kDnsServer, "--port=53",
      "--log-queries", "--log-facility=" + dir + "/dnsmasq.log",
      // Any name not given below is NXDOMAIN (not REFUSED, as it would be
      // with no upstream server).
      "--address=/#/"};
  // Host records are exact names; --address=/name/ would add every
  // subdomain too.
  for (const auto& [name, address] : names) {
    argv.push_back("--host-record=" + name + "," + address);
  }
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  UniqueFd err(::open((dir + "/dnsmasq.err").c_str(),
                      O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!null || !err) throw Errno("open");
  dnsmasq = Spawn(argv, inet_ns.get(), null.get(), err.get(), err.get());

  // Ready once its TCP port takes a connection.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    bool ready = false;
    RunInNetns(inet_ns.get(), [&] {
      UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(53);
      ::inet_pton(AF_INET, kDnsServer, &a.sin_addr);
      ready = fd && ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a),
                              sizeof a) == 0;
    });
    if (ready) return;
    int status;
    bool ended = WaitChild(dnsmasq, 0, &status);
    if (ended || std::chrono::steady_clock::now() > deadline) {
      std::ifstream in(dir + "/dnsmasq.err");
      std::string text((std::istreambuf_iterator<char>(in)), {});
      throw std::runtime_error(std::string("dnsmasq ") +
                               (ended ? "exited" : "did not start") + ": " +
                               text);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

void FakeInternet::Impl::AcceptLoop() {
  for (;;) {
    std::vector<pollfd> p = {{stop.get(), POLLIN, 0}};
    for (const auto& l : listeners) p.push_back({l.fd.get(), POLLIN, 0});
    if (::poll(p.data(), p.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (p[0].revents) return;
    {  // Join the workers that are done, so threads do not pile up.
      std::lock_guard lock(mutex);
      for (auto it = workers.begin(); it != workers.end();) {
        if (!it->done) {
          ++it;
          continue;
        }
        it->thread.join();
        it = workers.erase(it);
      }
    }
    for (size_t i = 0; i < listeners.size(); ++i) {
      if (!(p[i + 1].revents & POLLIN)) continue;
      const Listener& l = listeners[i];
      sockaddr_in peer{};
      socklen_t length = sizeof peer;
      int fd = ::accept4(l.fd.get(), reinterpret_cast<sockaddr*>(&peer),
                         &length, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard lock(mutex);
      connections.push_back({l.address, l.port, AddressOf(peer),
                             std::chrono::system_clock::now()});
      if (l.kind == Kind::kHello) {
        SendAll(fd, "hello " + l.address + ":" + std::to_string(l.port) + "\n");
        ::close(fd);
        continue;
      }
      // A client that stops talking holds its worker 10 s at most.
      timeval timeout{10, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
      ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
      Worker& worker = workers.emplace_back();
      worker.fd = fd;
      worker.thread =
          std::thread(&Impl::Serve, this, &worker, l.kind, l.address, l.port);
    }
  }
}

void FakeInternet::Impl::Serve(Worker* worker, Kind kind,
                               const std::string& local, int port) {
  BlockSigpipeInThisThread();
  int fd = worker->fd;
  std::string body = "server " + local + ":" + std::to_string(port) + "\n";
  if (kind == Kind::kHttp) {
    const std::string request = ReadRequest([fd](char* buffer, size_t size) {
      return ::recv(fd, buffer, size, 0);
    });
    Record(request);
    body = Quiet(request) ? "ok\n" : body + request;
    SendAll(fd, Response(body));
    // Read what the client may still send before closing, or the close
    // would reset the connection and could lose the response.
    ::shutdown(fd, SHUT_WR);
    char drain[4096];
    while (::recv(fd, drain, sizeof drain, 0) > 0) {
    }
  } else {
    SSL* ssl = SSL_new(tls.get());
    if (ssl && SSL_set_fd(ssl, fd) && SSL_accept(ssl) == 1) {
      const char* sni = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
      body += std::string("sni ") + (sni ? sni : "") + "\n";
      const std::string request = ReadRequest([ssl](char* buffer, size_t size) {
        return static_cast<long>(SSL_read(ssl, buffer, static_cast<int>(size)));
      });
      Record(request);
      body = Quiet(request) ? "ok\n" : body + request;
      std::string response = Response(body);
      if (SSL_write(ssl, response.data(), static_cast<int>(response.size())) >
          0) {
        SSL_shutdown(ssl);
      }
    }
    SSL_free(ssl);
    ERR_clear_error();
  }
  std::lock_guard lock(mutex);
  ::close(fd);
  worker->fd = -1;
  worker->done = true;
}

void FakeInternet::Impl::Teardown() {
  if (acceptor.joinable()) {
    uint64_t one = 1;
    (void)!::write(stop.get(), &one, sizeof one);
    acceptor.join();
  }
  {
    std::lock_guard lock(mutex);
    for (auto& w : workers) {
      if (w.fd >= 0) ::shutdown(w.fd, SHUT_RDWR);
    }
  }
  for (auto& w : workers) w.thread.join();
  workers.clear();
  listeners.clear();
  KillChild(dnsmasq);
  tls.reset();
  inet_ns.Reset();
  host_ns.Reset();
  // Deleting a namespace deletes its veth end, and so the other end.
  if (made_host) IpNoThrow({"netns", "delete", host_name});
  if (made_inet) IpNoThrow({"netns", "delete", inet_name});
  made_host = made_inet = false;
  if (!dir.empty()) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    dir.clear();
  }
}

bool FakeInternet::Available(std::string* why) {
  auto fail = [why](const std::string& reason) {
    if (why) *why = reason;
    return false;
  };
  if (::geteuid() != 0) return fail("needs root");
  if (FindProgram("ip").empty()) return fail("`ip` (iproute2) not found");
  if (FindProgram("dnsmasq").empty()) {
    return fail("`dnsmasq` not found (Debian package dnsmasq-base)");
  }
  int error = 0;
  std::thread([&error] {
    if (::unshare(CLONE_NEWNET) != 0) error = errno;
  }).join();
  if (error) {
    return fail(std::string("cannot make a network namespace: ") +
                std::strerror(error));
  }
  return true;
}

FakeInternet::FakeInternet(std::map<std::string, std::string> names,
                           std::vector<std::string> extra_tcp)
    : impl_(std::make_unique<Impl>()) {
  // Checked before anything is made.
  for (const auto& [name, address] : names) {
    if (!IsDnsName(name)) throw std::invalid_argument("bad name: " + name);
    if (!IsWebAddress(address)) {
      throw std::invalid_argument("not in " + std::string(kWebRange) + ": " +
                                  address);
    }
  }
  std::vector<std::pair<std::string, int>> extra;
  for (const auto& listener : extra_tcp) {
    size_t colon = listener.rfind(':');
    std::string address = listener.substr(0, colon);
    int port = colon == std::string::npos
                   ? 0
                   : std::atoi(listener.c_str() + colon + 1);
    if (!IsWebAddress(address) || port <= 0 || port > 65535) {
      throw std::invalid_argument("bad listener (want 203.0.113.N:PORT): " +
                                  listener);
    }
    extra.emplace_back(address, port);
  }
  impl_->names = std::move(names);
  try {
    impl_->Setup(extra);
  } catch (...) {
    impl_->Teardown();  // no destructor runs after a throwing constructor
    throw;
  }
}

FakeInternet::~FakeInternet() { impl_->Teardown(); }

const std::string& FakeInternet::host_netns() const { return impl_->host_name; }

std::string FakeInternet::host_netns_path() const {
  return "/run/netns/" + impl_->host_name;
}

const std::string& FakeInternet::internet_netns() const {
  return impl_->inet_name;
}

std::string FakeInternet::ca_cert_path() const {
  return impl_->dir + "/ca.pem";
}

std::vector<std::string> FakeInternet::dns_queries() const {
  // Lines like "Dec  7 09:11:41 dnsmasq[12266]: query[A] example.test from
  // 198.51.100.2".
  std::vector<std::string> queries;
  std::ifstream in(impl_->dir + "/dnsmasq.log");
  for (std::string line; std::getline(in, line);) {
    size_t at = line.find("]: query[");
    if (at == std::string::npos) continue;
    size_t start = line.find("] ", at + 2);
    size_t end = line.find(" from ", start);
    if (start == std::string::npos || end == std::string::npos) continue;
    queries.push_back(line.substr(start + 2, end - start - 2));
  }
  return queries;
}

std::vector<std::string> FakeInternet::requests() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->requests;
}

std::vector<FakeInternet::Connection> FakeInternet::connections() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->connections;
}

bool FakeInternet::Reached(const std::string& address, int port) const {
  for (const auto& c : connections()) {
    if (c.local == address && c.port == port) return true;
  }
  return false;
}

FakeInternet::Result FakeInternet::RunInHost(
    const std::vector<std::string>& argv, const std::string& input,
    std::chrono::seconds timeout) const {
  return Run(argv, impl_->host_ns.get(), input, timeout);
}

void FakeInternet::InHost(const std::function<void()>& work) const {
  RunInNetns(impl_->host_ns.get(), work);
}

}  // namespace corral::testing
