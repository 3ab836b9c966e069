// `corral mcp`, the MCP front door, against the real daemon and sandboxes:
// JSON-RPC over its stdio transport driven here line by line (lifecycle,
// protocol errors, a daemon that dies and comes back), and a whole agent
// session driven by the official MCP TypeScript SDK (tests/js), which needs
// Node.js 20 and `npm ci` in tests/js (tests/js/install.sh).
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <string>

#include "client/mcp/http.h"
#include "client/mcp/plain_text.h"
#include "nlohmann/json.hpp"
#include "tests/integration/daemon_harness.h"
#include "tests/integration/front_door.h"

namespace corral::testing {
namespace {

using Json = nlohmann::json;
namespace mcp = corral::cli::mcp;

// `corral mcp` with pipes for its stdin and stdout, as nobody.
class McpProcess {
 public:
  McpProcess(const std::string& socket, const std::string& profile) {
    int in[2], out[2];
    REQUIRE(::pipe2(in, O_CLOEXEC) == 0);
    REQUIRE(::pipe2(out, O_CLOEXEC) == 0);
    const std::string corral = BinaryDir() + "/corral";
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      DropToNobody();
      ::execl(corral.c_str(), corral.c_str(), "--socket", socket.c_str(), "mcp",
              "--profile", profile.c_str(), nullptr);
      ::_exit(127);
    }
    REQUIRE(pid_ > 0);
    ::close(in[0]);
    ::close(out[1]);
    in_ = in[1];
    out_ = out[0];
  }
  ~McpProcess() {
    if (in_ >= 0) ::close(in_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    ::close(out_);
  }

  void SendLine(const std::string& line) {
    const std::string data = line + "\n";
    REQUIRE(::write(in_, data.data(), data.size()) ==
            static_cast<ssize_t>(data.size()));
  }
  void Send(const Json& message) { SendLine(message.dump()); }
  // The next line the server writes, parsed; null after 30 s or at EOF.
  Json Receive() {
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(30);
    for (;;) {
      const size_t newline = buffer_.find('\n');
      if (newline != std::string::npos) {
        const std::string line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        return Json::parse(line);
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      pollfd p{out_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, left.count()) <= 0) return {};
      char chunk[65536];
      const ssize_t n = ::read(out_, chunk, sizeof(chunk));
      if (n <= 0) return {};
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }
  Json Request(int id, const std::string& method, Json params) {
    Send({{"jsonrpc", "2.0"},
          {"id", id},
          {"method", method},
          {"params", std::move(params)}});
    return Receive();
  }
  // Closes stdin; the exit status once the server ended.
  int Finish() {
    ::close(in_);
    in_ = -1;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

 private:
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1;
  std::string buffer_;
};

Json Initialize(McpProcess& mcp, const std::string& version) {
  return mcp.Request(1, "initialize",
                     {{"protocolVersion", version},
                      {"capabilities", Json::object()},
                      {"clientInfo", {{"name", "test"}, {"version", "1"}}}});
}

std::string ToolText(const Json& response) {
  return response["result"]["content"][0]["text"].get<std::string>();
}

TEST_CASE(
    "corral mcp speaks the MCP lifecycle and JSON-RPC, and answers "
    "malformed messages with errors while it keeps serving") {
  Daemon daemon(kOpenSocket);
  McpProcess mcp(daemon.socket(), "run");
  // Before initialize: only ping.
  CHECK(mcp.Request(7, "ping", Json::object())["result"] == Json::object());
  Json early = mcp.Request(8, "tools/list", Json::object());
  CHECK(early["error"]["code"] == -32600);

  // Each revision spoken is agreed to; another gets the newest.
  for (const char* version : {"2025-03-26", "2025-06-18", "2025-11-25"}) {
    McpProcess other(daemon.socket(), "run");
    CHECK(Initialize(other, version)["result"]["protocolVersion"] == version);
  }
  Json init = Initialize(mcp, "2024-01-01");
  INFO(init.dump());
  CHECK(init["result"]["protocolVersion"] == "2025-11-25");
  CHECK(init["result"]["serverInfo"]["name"] == "corral");
  CHECK(init["result"]["capabilities"].contains("tools"));
  // A notification gets no answer: the next line answers the ping.
  mcp.Send({{"jsonrpc", "2.0"}, {"method", "notifications/initialized"}});
  CHECK(mcp.Request(2, "ping", Json::object())["id"] == 2);

  // The run profile has the one-shot tool only.
  Json tools = mcp.Request(3, "tools/list", Json::object());
  REQUIRE(tools["result"]["tools"].size() == 1);
  CHECK(tools["result"]["tools"][0]["name"] == "sandbox_run");
  CHECK(mcp.Request(4, "logging/setLevel", {{"level", "debug"}})["result"] ==
        Json::object());
  CHECK(mcp.Request(5, "logging/setLevel",
                    {{"level", "loud"}})["error"]["code"] == -32602);

  mcp.SendLine("{not json");
  CHECK(mcp.Receive()["error"]["code"] == -32700);
  mcp.SendLine("[1, 2]");
  CHECK(mcp.Receive()["error"]["code"] == -32600);
  mcp.Send({{"jsonrpc", "1.0"}, {"id", 9}, {"method", "ping"}});
  CHECK(mcp.Receive()["error"]["code"] == -32600);
  CHECK(mcp.Request(10, "resources/list", Json::object())["error"]["code"] ==
        -32601);
  Json unknown = mcp.Request(11, "tools/call", {{"name", "workspace_exec"}});
  CHECK(unknown["error"]["code"] == -32602);  // not in this profile
  // A message past the limit is refused without reading it whole.
  mcp.SendLine(std::string(65 << 20, ' ') + "x");
  CHECK(mcp.Receive()["error"]["message"] ==
        "message larger than 64 MiB: skipped");

  Json ran = mcp.Request(
      12, "tools/call",
      {{"name", "sandbox_run"},
       {"arguments", {{"argv", {"sh", "-c", "printf '\\377ok'; exit 3"}}}}});
  INFO(ran.dump());
  CHECK(ran["result"]["isError"] == false);
  CHECK(ran["result"]["structuredContent"]["exit_code"] == 3);
  // Output that is not UTF-8 arrives with the bad byte replaced.
  CHECK(ran["result"]["structuredContent"]["stdout"] == "\xEF\xBF\xBDok");
  CHECK(mcp.Finish() == 0);
}

TEST_CASE(
    "corral mcp outlives its daemon: calls fail as tool errors while "
    "the daemon is down and work again once it is back") {
  Daemon daemon(kOpenSocket);
  McpProcess mcp(daemon.socket(), "workspace");
  REQUIRE(Initialize(mcp, "2025-11-25")["result"].contains("serverInfo"));
  Json listed = mcp.Request(2, "tools/call", {{"name", "workspace_list"}});
  CHECK(listed["result"]["isError"] == false);

  daemon.Kill9();
  Json down = mcp.Request(3, "tools/call", {{"name", "workspace_list"}});
  INFO(down.dump());
  CHECK(down["result"]["isError"] == true);
  CHECK(ToolText(down).find("cannot reach corrald at " + daemon.socket()) !=
        std::string::npos);
  CHECK(mcp.Request(4, "ping", Json::object())["result"] == Json::object());

  daemon.Start();
  Json back = mcp.Request(5, "tools/call", {{"name", "workspace_list"}});
  INFO(back.dump());
  CHECK(back["result"]["isError"] == false);
  CHECK(mcp.Finish() == 0);
}

// `corral mcp --listen 127.0.0.1:PORT` on a free port, until destroyed.
// `corral mcp --listen` on a free port, as nobody.
class McpHttpServer : public FrontDoorServer {
 public:
  explicit McpHttpServer(const std::string& socket)
      : FrontDoorServer(
            {"--socket", socket, "mcp", "--listen", "127.0.0.1:0"}) {}
};

TEST_CASE(
    "terminal output becomes plain text: escapes removed, backspace "
    "and carriage return applied") {
  using mcp::PlainText;
  CHECK(PlainText("\x1b[1;32mgreen\x1b[0m plain\r\n") == "green plain\n");
  CHECK(PlainText("abc\bX") == "abX");
  CHECK(PlainText("abc\b \b\b \bd") == "ad");
  CHECK(PlainText("10%\r20%\r30%\n") == "30%\n");
  CHECK(PlainText("hello\rhi") == "hillo");
  CHECK(PlainText("\x1b]0;title\aprompt$ ") == "prompt$ ");
  CHECK(PlainText("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "link");
  CHECK(PlainText("a\x1b=b\x07"
                  "c\x7f\td") == "abc\td");
  CHECK(PlainText("cut \x1b[1") == "cut ");
  CHECK(PlainText("caf\xc3\xa9") == "caf\xc3\xa9");
}

TEST_CASE("the HTTP transport's checks: loopback names only") {
  using mcp::LoopbackHost;
  using mcp::LoopbackOrigin;
  for (const char* host : {"localhost", "localhost:8765", "127.0.0.1:1",
                           "[::1]:80", "LOCALHOST"}) {
    INFO(host);
    CHECK(LoopbackHost(host));
  }
  for (const char* host : {"", "evil.example.com", "127.0.0.1.evil.com",
                           "localhost.evil.com:80", "[::2]", "10.0.0.1"}) {
    INFO(host);
    CHECK_FALSE(LoopbackHost(host));
  }
  CHECK(LoopbackOrigin("http://localhost:3000"));
  CHECK(LoopbackOrigin("https://127.0.0.1"));
  CHECK_FALSE(LoopbackOrigin("null"));
  CHECK_FALSE(LoopbackOrigin("http://evil.example.com"));
  CHECK_FALSE(LoopbackOrigin("file://localhost"));
  CHECK(mcp::ParseListenAddress("[::1]:0")->host == "::1");
  CHECK(mcp::ParseListenAddress("127.0.0.1:8765")->port == 8765);
  CHECK_FALSE(mcp::ParseListenAddress("0.0.0.0:1").ok());
}

TEST_CASE(
    "corral mcp refuses to run as root, and --listen accepts "
    "loopback addresses only") {
  auto root = Sh("echo | " + BinaryDir() + "/corral mcp 2>&1");
  CHECK(root.exit_code == 125);
  CHECK(root.out.find("corral mcp does not run as root") != std::string::npos);
  for (const char* bad : {"0.0.0.0:8765", "192.0.2.1:80", "example.com:80",
                          "127.0.0.1", "127.0.0.1:99999"}) {
    INFO(bad);
    auto r = Sh(AsNobody("/tmp", BinaryDir() + "/corral mcp --listen " + bad) +
                " 2>&1");
    CHECK(r.exit_code == 125);
  }
  auto r = Sh(AsNobody("/tmp", BinaryDir() + "/corral mcp --listen "
                                             "0.0.0.0:8765") +
              " 2>&1");
  CHECK(r.out.find("only a loopback address") != std::string::npos);
}

TEST_CASE(
    "the official MCP TypeScript SDK drives a whole agent session "
    "through corral mcp: seed, files, tests, diff, snapshots, reset, "
    "fork, bad input") {
  if (!JsJudgeAvailable("@modelcontextprotocol/sdk")) return;
  Daemon daemon(kOpenSocket);
  const std::string home = NobodyHome();
  auto session =
      Sh("cd " + std::string(CORRAL_SOURCE_DIR) + "/tests/js && " +
         AsNobody(home, "CORRAL_BIN=" + BinaryDir() +
                            "/corral CORRAL_SOCKET=" + daemon.socket() +
                            " timeout 300 node mcp_session.mjs") +
         " 2>&1");
  Sh("rm -rf " + home);
  INFO(session.out);
  CHECK(session.exit_code == 0);
  CHECK(session.out.find("# all passed") != std::string::npos);
}

TEST_CASE(
    "corral mcp --listen serves Streamable HTTP: sessions, SSE and "
    "JSON answers, protocol version, DNS rebinding protection, and "
    "the official conformance suite's scenarios for a tools server") {
  if (!JsJudgeAvailable("@modelcontextprotocol/sdk")) return;
  Daemon daemon(kOpenSocket);
  McpHttpServer server(daemon.socket());
  const std::string js = "cd " + std::string(CORRAL_SOURCE_DIR) + "/tests/js";
  const std::string home = NobodyHome();
  auto http = Sh(js + " && " +
                 AsNobody(home, "CORRAL_MCP_URL=" + server.url() +
                                    " timeout 300 node mcp_http.mjs") +
                 " 2>&1");
  INFO(http.out);
  CHECK(http.exit_code == 0);
  CHECK(http.out.find("# all passed") != std::string::npos);

  // @modelcontextprotocol/conformance: the scenarios that need its own
  // fixture tools, resources or prompts are listed, with why, in the
  // expected-failures file; any other failure (or a listed one that
  // passes) fails the run.
  auto conformance = Sh(
      js + " && " +
      AsNobody(home, "timeout 600 npx --no-install conformance server --url " +
                         server.url() +
                         " --expected-failures "
                         "mcp-conformance-expected-failures.yaml") +
      " 2>&1");
  Sh("rm -rf " + home);
  INFO(conformance.out);
  CHECK(conformance.exit_code == 0);
  for (const char* scenario :
       {"server-initialize", "logging-set-level", "ping", "tools-list",
        "server-sse-multiple-streams", "dns-rebinding-protection"}) {
    INFO(scenario);
    CHECK(conformance.out.find(std::string("✓ ") + scenario + ":") !=
          std::string::npos);
  }
}

}  // namespace
}  // namespace corral::testing
