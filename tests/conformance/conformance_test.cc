// The conformance suite, part 1: the runtime as the daemon lists it, running
// commands, and what a command inside a sandbox can see and do. Every case
// holds on every runtime; see conformance.h for how a variant is chosen and
// skipped.
#include "tests/conformance/conformance.h"

#include <catch2/catch.hpp>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "corral/v1/exec.grpc.pb.h"

namespace corral::testing::conformance {
namespace {

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

// The line of `corral runtimes` for `name`.
std::string RuntimeRow(const std::string& table, const std::string& name) {
  for (const auto& line : Lines(table)) {
    if (line.rfind(name + " ", 0) == 0) return line;
  }
  return "";
}

TEST_CASE(
    "corral runtimes lists the runtime as available with its guarantees, and "
    "sandboxes are made on the runtime they name") {
  Conformance suite;
  auto runtimes = suite.Cli({"runtimes"});
  INFO(runtimes.out << runtimes.err);
  REQUIRE(runtimes.exit_code == 0);
  const std::string row = RuntimeRow(runtimes.out, suite.runtime());
  REQUIRE_FALSE(row.empty());
  CHECK(Contains(row, " yes "));
  for (int g : suite.runtime_info().guarantees()) {
    CHECK(Contains(row, GuaranteeName(static_cast<v1::Guarantee>(g))));
  }

  v1::Sandbox sandbox = suite.CreateApi();
  CHECK(sandbox.state() == v1::SANDBOX_STATE_RUNNING);
  // What a sandbox gets is never more than what its runtime claims.
  for (int g : sandbox.guarantees()) {
    CHECK(suite.RuntimeClaims(static_cast<v1::Guarantee>(g)));
  }
  auto stub = v1::Sandboxes::NewStub(suite.daemon().Channel());
  grpc::ClientContext context;
  v1::ListSandboxesRequest by_runtime;
  by_runtime.set_runtime(suite.runtime());
  v1::ListSandboxesResponse listed;
  REQUIRE(stub->ListSandboxes(&context, by_runtime, &listed).ok());
  REQUIRE(listed.sandboxes_size() == 1);
  CHECK(listed.sandboxes(0).id() == sandbox.id());
  auto inspect = suite.Cli({"--json", "inspect", sandbox.id()});
  CHECK(Contains(inspect.out, "\"" + suite.runtime() + "\""));
}

TEST_CASE(
    "requiring a guarantee the runtime lacks fails with FAILED_PRECONDITION "
    "naming it, and requiring what a sandbox gets succeeds") {
  Conformance suite;
  // Every guarantee a sandbox of the default image gets, required at once.
  // (A runtime may give a sandbox less than it claims: qemu cannot save the
  // memory of one on the host image.)
  const v1::Sandbox plain = suite.CreateApi();
  v1::CreateSandboxRequest all;
  for (int g : plain.guarantees())
    all.add_require(static_cast<v1::Guarantee>(g));
  v1::Sandbox sandbox = suite.CreateApi(all);
  for (int g : plain.guarantees()) {
    CHECK(HasGuarantee(sandbox, static_cast<v1::Guarantee>(g)));
  }
  auto stub = v1::Sandboxes::NewStub(suite.daemon().Channel());
  // A claimed guarantee such a sandbox lacks is refused for it, naming it.
  for (int g : suite.runtime_info().guarantees()) {
    if (HasGuarantee(plain, static_cast<v1::Guarantee>(g))) continue;
    grpc::ClientContext context;
    v1::CreateSandboxRequest request;
    request.set_runtime(suite.runtime());
    request.add_require(static_cast<v1::Guarantee>(g));
    v1::Sandbox refused;
    grpc::Status status = stub->CreateSandbox(&context, request, &refused);
    CHECK(status.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
    CHECK(Contains(status.error_message(),
                   v1::Guarantee_Name(static_cast<v1::Guarantee>(g))));
  }

  int missing = v1::GUARANTEE_UNSPECIFIED;
  for (int g = v1::Guarantee_MIN; g <= v1::Guarantee_MAX; ++g) {
    if (g != v1::GUARANTEE_UNSPECIFIED && v1::Guarantee_IsValid(g) &&
        !suite.RuntimeClaims(static_cast<v1::Guarantee>(g))) {
      missing = g;
      break;
    }
  }
  if (missing == v1::GUARANTEE_UNSPECIFIED) {
    WARN("the runtime claims every guarantee: no refusal to check");
    return;
  }
  const auto guarantee = static_cast<v1::Guarantee>(missing);
  grpc::ClientContext context;
  v1::CreateSandboxRequest request;
  request.set_runtime(suite.runtime());
  request.add_require(guarantee);
  v1::Sandbox refused;
  grpc::Status status = stub->CreateSandbox(&context, request, &refused);
  CHECK(status.error_code() == grpc::StatusCode::FAILED_PRECONDITION);
  CHECK(Contains(status.error_message(), v1::Guarantee_Name(guarantee)));

  auto cli = suite.Cli({"create", "--runtime", suite.runtime(), "--require",
                        GuaranteeName(guarantee)});
  CHECK(cli.exit_code == 125);
  CHECK(Contains(cli.err, v1::Guarantee_Name(guarantee)));
  // Nothing but the first two sandboxes was made.
  grpc::ClientContext list_context;
  v1::ListSandboxesResponse listed;
  REQUIRE(stub->ListSandboxes(&list_context, {}, &listed).ok());
  CHECK(listed.sandboxes_size() == 2);
}

// --- running commands -------------------------------------------------------

TEST_CASE(
    "a command's exit code is passed on: its own, 128+signal, 127 when the "
    "program is missing, 125 for corral's own errors") {
  Conformance suite;
  CHECK(suite.Run({"--", "sh", "-c", "exit 3"}).exit_code == 3);
  CHECK(suite.Run({"--", "sh", "-c", "kill -TERM $$"}).exit_code == 128 + 15);
  const std::string id = suite.Create();
  CHECK(suite.Sh(id, "kill -KILL $$").exit_code == 128 + 9);
  CHECK(suite.Sh(id, "exit 42").exit_code == 42);
  auto missing = suite.Run({"--", "no-such-program-here"});
  CHECK(missing.exit_code == 127);
  CHECK(Contains(missing.err, "no-such-program-here"));
  auto bad = suite.Cli({"run", "--runtime", "no-such-runtime", "--", "true"});
  CHECK(bad.exit_code == 125);
  CHECK(Contains(bad.err, "unknown runtime"));

  // Through the API: the exit says why the program did not start.
  auto exec = v1::Exec::NewStub(suite.daemon().Channel());
  grpc::ClientContext context;
  v1::ExecRequest request;
  request.mutable_start()->set_sandbox_id(id);
  request.mutable_start()->add_argv("/no/such/program");
  v1::ExecResponse response;
  grpc::Status status = exec->Exec(&context, request, &response);
  INFO(status.error_message());
  REQUIRE(status.ok());
  CHECK(response.exit().exit_code() == 127);
  CHECK(Contains(response.exit().error(), "/no/such/program"));
  grpc::ClientContext signalled_context;
  v1::ExecRequest signalled;
  signalled.mutable_start()->set_sandbox_id(id);
  signalled.mutable_start()->set_shell("kill -KILL $$");
  REQUIRE(exec->Exec(&signalled_context, signalled, &response).ok());
  CHECK(response.exit().signal() == 9);

  // Every run destroyed its sandbox: only the created one is left.
  auto listed = suite.Cli({"ls", "--json"});
  CHECK(Contains(listed.out, id));
  CHECK(Lines(Trim(suite.Cli({"ls"}).out)).size() == 2);  // header + id
}

TEST_CASE(
    "stdout and stderr stay separate and stdin reaches the command with "
    "-i") {
  Conformance suite;
  auto r = suite.Run({"--", "sh", "-c", "echo out; echo err >&2"});
  INFO(r.err << suite.daemon().log());
  REQUIRE(r.exit_code == 0);
  CHECK(r.out == "out\n");
  CHECK(r.err == "err\n");
  std::string input(1 << 20, 'x');
  auto piped = suite.Run({"-i", "--", "wc", "-c"}, input);
  REQUIRE(piped.exit_code == 0);
  CHECK(Trim(piped.out) == std::to_string(input.size()));

  const std::string id = suite.Create();
  auto exec = suite.Cli({"exec", "-i", id, "--", "sh", "-c",
                         "read line; echo got-$line; echo oops >&2; exit 2"},
                        "hello\n");
  CHECK(exec.exit_code == 2);
  CHECK(exec.out == "got-hello\n");
  CHECK(exec.err == "oops\n");
  // Without -i the command gets an empty stdin.
  auto empty = suite.Sh(id, "wc -c");
  CHECK(Trim(empty.out) == "0");
}

TEST_CASE(
    "the environment and working directory come from the sandbox, and each "
    "command may override them") {
  Conformance suite;
  const std::string id =
      suite.Create({"-e", "GREETING=hello", "--workdir", "/tmp"});
  auto defaults = suite.Sh(id, "echo $GREETING; pwd");
  INFO(defaults.err);
  CHECK(defaults.out == "hello\n/tmp\n");
  auto own = suite.Sh(
      id, "echo $GREETING $OTHER; pwd",
      {"-e", "GREETING=bye", "-e", "OTHER=x", "--workdir", "/workspace"});
  INFO(own.err);
  CHECK(own.out == "bye x\n/workspace\n");

  const std::string plain = suite.Create();
  CHECK(suite.Sh(plain, "pwd").out == "/workspace\n");
  auto exec = v1::Exec::NewStub(suite.daemon().Channel());
  grpc::ClientContext context;
  v1::ExecRequest request;
  request.mutable_start()->set_sandbox_id(plain);
  request.mutable_start()->set_shell("echo $A; pwd; cat");
  request.mutable_start()->set_cwd("/tmp");
  (*request.mutable_start()->mutable_env())["A"] = "from-api";
  request.set_stdin("piped\n");
  v1::ExecResponse response;
  REQUIRE(exec->Exec(&context, request, &response).ok());
  CHECK(response.stdout() == "from-api\n/tmp\npiped\n");
  CHECK(response.exit().exit_code() == 0);
}

TEST_CASE("exec timeouts kill the whole process group and say so") {
  Conformance suite;
  const std::string id = suite.Create();
  auto r = suite.Sh(id, "sleep 60 & echo $! > /tmp/child; sleep 60",
                    {"--timeout", "1"});
  CHECK(r.exit_code == 124);
  CHECK(Contains(r.err, "timed out"));
  // The background child was in the same process group: gone too.
  auto check =
      suite.Sh(id, "kill -0 $(cat /tmp/child) && echo alive || echo gone");
  CHECK(Trim(check.out) == "gone");
}

// --- isolation --------------------------------------------------------------

TEST_CASE(
    "a sandbox sees only its own processes, its own hostname and only "
    "loopback") {
  Conformance suite;
  const std::string id = suite.Create();
  // The first command of a fresh sandbox: its pid namespace is new, so the
  // shell is one of its first processes (in a VM, the first after the
  // kernel's own threads).
  auto first = suite.Sh(id, "echo $$");
  REQUIRE(first.exit_code == 0);
  CHECK(std::stoi(Trim(first.out)) > 1);
  if (!SeparateKernel(suite)) CHECK(std::stoi(Trim(first.out)) < 20);
  // Processes other than kernel threads (which have no command line): the
  // agent (and a VM's link to the host), this shell and wc.
  auto procs = suite.Sh(id,
                        "for p in /proc/[0-9]*; do c=; read -r c < "
                        "$p/cmdline 2>/dev/null; [ -n \"$c\" ] && echo $p; "
                        "done | wc -l");
  REQUIRE(procs.exit_code == 0);
  CHECK(std::stoi(Trim(procs.out)) <= 5);
  // None of the host's processes, the daemon and this test included.
  auto cmdlines = suite.Sh(id, "cat /proc/[0-9]*/cmdline | tr '\\0' ' '");
  CHECK_FALSE(Contains(cmdlines.out, "corrald"));
  CHECK_FALSE(Contains(cmdlines.out, "conformance_test"));

  CHECK(Trim(suite.Sh(id, "hostname").out) == "corral-" + id.substr(0, 8));
  const std::string named = suite.Create({"--hostname", "conformance-host"});
  CHECK(Trim(suite.Sh(named, "hostname").out) == "conformance-host");

  // Network interfaces of its own namespace: loopback only.
  auto interfaces = suite.Sh(id, "tail -n +3 /proc/net/dev | cut -d: -f1");
  REQUIRE(interfaces.exit_code == 0);
  CHECK(Trim(interfaces.out) == "lo");
  CHECK(Trim(suite.Sh(id, "ls /sys/class/net").out) == "lo");
}

TEST_CASE(
    "the root filesystem is read-only, /tmp and /workspace are writable, and "
    "the daemon's files are out of sight") {
  Conformance suite;
  const std::string id = suite.Create();
  auto ro = suite.Sh(
      id, "touch /usr/corral-probe 2>&1; touch /corral-probe 2>&1; true");
  CHECK(Contains(ro.out, "Read-only file system"));
  CHECK(Sh("test -e /usr/corral-probe").exit_code != 0);
  CHECK(Sh("test -e /corral-probe").exit_code != 0);
  CHECK(suite
            .Sh(id,
                "echo ok > /workspace/w && echo ok > /tmp/t && cat "
                "/workspace/w /tmp/t")
            .out == "ok\nok\n");
  // On an imported image /etc/shadow is the image's own: it must not be
  // the host's.
  const bool host_image = suite.variant().image_tar.empty();
  auto hidden = suite.Sh(id, "for p in '" + suite.daemon().state_dir() + "' '" +
                                 suite.daemon().socket() + "'" +
                                 (host_image ? " /etc/shadow" : "") +
                                 "; do test -e \"$p\" && "
                                 "echo \"visible: $p\"; done; true");
  CHECK(hidden.out == "");
  if (!host_image) {
    std::ifstream host_shadow("/etc/shadow");
    std::stringstream host;
    host << host_shadow.rdbuf();
    CHECK(suite.Sh(id, "cat /etc/shadow 2>/dev/null; true").out != host.str());
  }
}

TEST_CASE(
    "root inside has no capabilities, no_new_privs is set, and /proc/sys is "
    "not writable") {
  Conformance suite;
  const std::string id = suite.Create();
  auto status =
      suite.Sh(id,
               "grep -E '^(NoNewPrivs|CapInh|CapPrm|CapEff|CapBnd|CapAmb):' "
               "/proc/self/status");
  INFO(status.out << status.err);
  CHECK(Contains(status.out, "NoNewPrivs:\t1"));
  for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
    CHECK(Contains(status.out, std::string(set) + ":\t0000000000000000"));
  }
  CHECK(Trim(suite.Sh(id, "id -u").out) == "0");
  auto core = suite.Sh(
      id, "echo '|/tmp/x' > /proc/sys/kernel/core_pattern 2>&1; echo rc=$?");
  CHECK_FALSE(Contains(core.out, "rc=0"));
  CHECK_FALSE(Contains(Sh("cat /proc/sys/kernel/core_pattern").out, "/tmp/x"));
  auto hostname =
      suite.Sh(id, "echo evil > /proc/sys/kernel/hostname 2>&1; echo rc=$?");
  CHECK_FALSE(Contains(hostname.out, "rc=0"));
}

TEST_CASE("one sandbox cannot reach another's files or processes") {
  Conformance suite;
  const std::string a = suite.Create();
  const std::string b = suite.Create();
  REQUIRE(suite
              .Sh(a,
                  "echo secret > /workspace/secret; echo tmp > "
                  "/tmp/secret; sleep 300 & true")
              .exit_code == 0);
  // Process names (comm), not command lines: the probe's own command line
  // names what it looks for.
  const std::string count_sleeps =
      "cat /proc/[0-9]*/comm 2>/dev/null | grep -cx sleep; true";
  auto look =
      suite.Sh(b, "cat /workspace/secret /tmp/secret 2>&1; " + count_sleeps);
  CHECK_FALSE(Contains(look.out, "secret\n"));
  CHECK_FALSE(Contains(look.out, "tmp\n"));
  CHECK(Contains(look.out, "No such file"));
  CHECK(Lines(look.out).back() == "0");
  CHECK(IsolationDomainOf(suite, a) != IsolationDomainOf(suite, b));
  // And a's sleep is there for a itself.
  CHECK(Trim(suite.Sh(a, count_sleeps).out) == "1");
}

TEST_CASE(
    "a command can neither take the daemon's place at the agent nor cut the "
    "daemon off with kill -9 -1") {
  Conformance suite;
  const std::string id = suite.Create();
  // Each exec under timeout(1): a sandbox whose agent or link was taken
  // from the daemon never answers.
  auto timed = [&](const std::string& script) {
    return RunProcess({"/usr/bin/timeout", "60",
                       std::string(CORRAL_BINARY_DIR) + "/bin/corral",
                       "--socket", suite.daemon().socket(), "exec", id, "--",
                       "sh", "-c", script});
  };
  auto copied = suite.Cli(
      {"cp", std::string(CORRAL_BINARY_DIR) + "/tests/agent_socket_probe",
       id + ":/workspace/probe"});
  INFO(copied.err);
  REQUIRE(copied.exit_code == 0);
  // The probe connects to every listening Unix socket the sandbox can see,
  // the agent's among them where it listens inside (a VM's abstract
  // socket, a container's bind-mounted run directory): each must refuse or
  // hang up unread, and the daemon's session must go on.
  auto probe = timed("chmod +x /workspace/probe && /workspace/probe");
  INFO(probe.out << probe.err << suite.daemon().log());
  REQUIRE(probe.exit_code == 0);
  for (const std::string& line : Lines(probe.out)) {
    if (line.empty() || line == "no listening sockets") continue;
    CHECK((Contains(line, ": closed") || Contains(line, ": connect failed")));
  }
  CHECK(timed("echo still here").out == "still here\n");

  // kill -9 -1 ends every process the command may signal: the agent, and
  // what carries the daemon's connection to it, must not be among them.
  auto killed = timed("sleep 300 & kill -9 -1; echo sent");
  INFO(killed.out << killed.err);
  CHECK(killed.exit_code == 0);
  CHECK(Trim(killed.out) == "sent");
  auto after = timed("echo alive");
  INFO(after.err << suite.daemon().log());
  CHECK(after.exit_code == 0);
  CHECK(after.out == "alive\n");
  CHECK(suite.Get(id).state() == v1::SANDBOX_STATE_RUNNING);
}

}  // namespace
}  // namespace corral::testing::conformance
