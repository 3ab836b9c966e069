// Unit tests of the corral CLI: option -> request mapping, exit codes,
// formatting and output streaming. None needs corrald. The packer's tests
// are in client_packer_test.cc: libarchive's headers define macros that clash
// with corral.v1's ARCHIVE_COMPRESSION_* enum values.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "client/commands.h"
#include "client/exit_status.h"
#include "client/format.h"
#include "client/options.h"
#include "client/output.h"
#include "corral/unique_fd.h"
#include "tests/test_util.h"

namespace corral::cli {
namespace {

namespace fs = std::filesystem;

EnvLookup FakeEnv(std::map<std::string, std::string> values) {
  return [values = std::move(values)](
             const std::string& name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

using corral::testing::TempDir;

std::string ReadFd(int fd) {
  std::string data;
  char buffer[4096];
  ::lseek(fd, 0, SEEK_SET);
  ssize_t got;
  while ((got = ::read(fd, buffer, sizeof(buffer))) > 0)
    data.append(buffer, got);
  return data;
}

// Runs the CLI with fds 1 and 2 redirected to temp files.
struct CliRun {
  int exit_code;
  std::string out;
  std::string err;
};
CliRun RunCapturing(const std::vector<std::string>& args) {
  TempDir dir;
  UniqueFd out(
      ::open((dir.path() / "out").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  UniqueFd err(
      ::open((dir.path() / "err").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  REQUIRE(out);
  REQUIRE(err);
  UniqueFd saved_out(::dup(1));
  UniqueFd saved_err(::dup(2));
  ::dup2(out.get(), 1);
  ::dup2(err.get(), 2);
  const int code = RunCli(args);
  ::dup2(saved_out.get(), 1);
  ::dup2(saved_err.get(), 2);
  return {code, ReadFd(out.get()), ReadFd(err.get())};
}

TEST_CASE("create options map onto the request", "[client][options]") {
  CreateOptions options;
  options.runtime = "linux";
  options.image = "busybox";
  options.cpus = 0.5;
  options.memory_mib = 512;
  options.pids = 64;
  options.disk_mib = 1024;
  options.ttl_seconds = 600;
  options.env = {"A=1", "B=x=y", "HOME", "UNSET_IN_CLIENT", "EMPTY="};
  options.labels = {"team=ml", "empty="};
  options.workdir = "/workspace/src";
  options.network = "egress";
  options.hostname = "box";
  options.no_userns = true;
  options.require = {"seccomp", "cgroup-limits", "separate-kernel"};

  auto request =
      BuildCreateRequest(options, FakeEnv({{"HOME", "/home/alice"}}));
  REQUIRE(request.ok());
  CHECK(request->runtime() == "linux");
  CHECK(request->image() == "busybox");
  CHECK(request->limits().cpu_millis() == 500);
  CHECK(request->limits().memory_mib() == 512);
  CHECK(request->limits().pids() == 64);
  CHECK(request->limits().disk_mib() == 1024);
  CHECK(request->ttl_seconds() == 600);
  CHECK(request->env().at("A") == "1");
  CHECK(request->env().at("B") == "x=y");
  CHECK(request->env().at("HOME") == "/home/alice");
  CHECK(request->env().at("EMPTY").empty());
  CHECK(request->env().count("UNSET_IN_CLIENT") == 0);
  CHECK(request->labels().at("team") == "ml");
  CHECK(request->labels().at("empty").empty());
  CHECK(request->workdir() == "/workspace/src");
  CHECK(request->network() == corral::v1::NETWORK_MODE_EGRESS);
  CHECK(request->hostname() == "box");
  CHECK(request->runtime_options().at("userns") == "false");
  REQUIRE(request->require_size() == 3);
  CHECK(request->require(0) == corral::v1::GUARANTEE_SECCOMP);
  CHECK(request->require(1) == corral::v1::GUARANTEE_CGROUP_LIMITS);
  CHECK(request->require(2) == corral::v1::GUARANTEE_SEPARATE_KERNEL);
}

TEST_CASE("the publish, allow-domain and allow-cidr flags fill the request",
          "[client][options]") {
  auto parsed = ParsePublish("8000");
  REQUIRE(parsed.ok());
  CHECK(parsed->sandbox_port() == 8000);
  CHECK(parsed->host_port() == 0);
  CHECK(parsed->host_address().empty());
  parsed = ParsePublish("127.0.0.2:8080:80");
  REQUIRE(parsed.ok());
  CHECK(parsed->host_address() == "127.0.0.2");
  CHECK(parsed->host_port() == 8080);
  CHECK(parsed->sandbox_port() == 80);
  for (const char* bad : {"", "0", "x", "8080:", ":80", "1:2:3:4", "70000",
                          "8080:70000", ":8080:80"}) {
    INFO(bad);
    CHECK_FALSE(ParsePublish(bad).ok());
  }
  CreateOptions options;
  options.publish = {"9000", "8080:80"};
  options.allow_domains = {"pypi.org,*.pythonhosted.org", "example.com"};
  options.allow_cidrs = {"203.0.113.0/24"};
  options.network = "learn";
  auto request = BuildCreateRequest(options, FakeEnv({}));
  REQUIRE(request.ok());
  CHECK(request->network() == corral::v1::NETWORK_MODE_LEARN);
  REQUIRE(request->ports_size() == 2);
  CHECK(request->ports(1).host_port() == 8080);
  REQUIRE(request->network_policy().allow_domains_size() == 3);
  CHECK(request->network_policy().allow_domains(1) == "*.pythonhosted.org");
  CHECK(request->network_policy().allow_cidrs(0) == "203.0.113.0/24");
  options.publish = {"nope"};
  CHECK_FALSE(BuildCreateRequest(options, FakeEnv({})).ok());
}

TEST_CASE("secrets are read from their file by the client and bound to hosts",
          "[client][options]") {
  char path[] = "/tmp/corral-secret-test-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, "tok3n\n", 6) == 6);
  ::close(fd);
  CreateOptions options;
  options.network = "egress";
  options.secrets = {std::string("API_TOKEN=@") + path};
  options.secret_hosts = {"API_TOKEN=api.example.com,*.example.org"};
  auto request = BuildCreateRequest(options, FakeEnv({}));
  ::unlink(path);
  REQUIRE(request.ok());
  REQUIRE(request->secrets_size() == 1);
  CHECK(request->secrets(0).name() == "API_TOKEN");
  CHECK(request->secrets(0).value() == "tok3n");
  REQUIRE(request->secrets(0).hosts_size() == 2);
  CHECK(request->secrets(0).hosts(1) == "*.example.org");
  options.secrets = {"API_TOKEN=plain-value"};
  auto plain = BuildCreateRequest(options, FakeEnv({}));
  CHECK_FALSE(plain.ok());
  CHECK(plain.status().message().find("plain-value") == std::string::npos);
  options.secrets = {"API_TOKEN=@/no/such/file"};
  CHECK_FALSE(BuildCreateRequest(options, FakeEnv({})).ok());
  options.secrets = {};
  CHECK_FALSE(BuildCreateRequest(options, FakeEnv({})).ok());  // host for none
}

TEST_CASE("defaults leave every field at its zero value", "[client][options]") {
  auto request = BuildCreateRequest(CreateOptions{}, FakeEnv({}));
  REQUIRE(request.ok());
  CHECK(request->limits().cpu_millis() == 0);
  CHECK(request->network() == corral::v1::NETWORK_MODE_UNSPECIFIED);
  CHECK(request->runtime_options().empty());
  CHECK(request->env().empty());
}

TEST_CASE("cpus convert to millis", "[client][options]") {
  CHECK(*CpusToMillis(0.5) == 500);
  CHECK(*CpusToMillis(2) == 2000);
  CHECK(*CpusToMillis(0.25) == 250);
  CHECK(*CpusToMillis(0) == 0);
  CHECK_FALSE(CpusToMillis(0.0001).ok());
  CHECK_FALSE(CpusToMillis(-1).ok());
  CHECK_FALSE(CpusToMillis(1e12).ok());
}

TEST_CASE("bad -e, --label, --network and --require are errors",
          "[client][options]") {
  CreateOptions options;
  options.env = {"=value"};
  auto env_error = BuildCreateRequest(options, FakeEnv({}));
  REQUIRE_FALSE(env_error.ok());
  CHECK_THAT(std::string(env_error.status().message()),
             Catch::Contains("-e expects KEY=VALUE"));

  options = {};
  options.labels = {"novalue"};
  auto label_error = BuildCreateRequest(options, FakeEnv({}));
  REQUIRE_FALSE(label_error.ok());
  CHECK_THAT(std::string(label_error.status().message()),
             Catch::Contains("--label expects KEY=VALUE, got 'novalue'"));

  options = {};
  options.labels = {"=v"};
  CHECK_FALSE(BuildCreateRequest(options, FakeEnv({})).ok());

  options = {};
  options.network = "bridge";
  CHECK_FALSE(BuildCreateRequest(options, FakeEnv({})).ok());

  options = {};
  options.require = {"teleportation"};
  auto guarantee_error = BuildCreateRequest(options, FakeEnv({}));
  REQUIRE_FALSE(guarantee_error.ok());
  CHECK_THAT(std::string(guarantee_error.status().message()),
             Catch::Contains("seccomp"));
}

TEST_CASE("seed picks the RPC, not the request; create refuses a timeout",
          "[client][options]") {
  CreateOptions options;
  options.seed = "/tmp/project";
  options.memory_mib = 64;
  auto seeded = BuildCreateRequest(options, FakeEnv({}));
  REQUIRE(seeded.ok());
  CHECK(seeded->limits().memory_mib() == 64);

  CreateOptions timed;
  timed.timeout_seconds = 5;
  CHECK_FALSE(ValidateCreateOnly(timed).ok());
  CHECK(ValidateCreateOnly(CreateOptions{}).ok());
}

TEST_CASE("guarantee and state names round-trip", "[client][options]") {
  for (const std::string& name : GuaranteeNames()) {
    auto parsed = ParseGuarantee(name);
    REQUIRE(parsed.ok());
    CHECK(GuaranteeName(*parsed) == name);
  }
  CHECK(*ParseGuarantee("GUARANTEE_USER_NAMESPACE") ==
        corral::v1::GUARANTEE_USER_NAMESPACE);
  CHECK(*ParseState("running") == corral::v1::SANDBOX_STATE_RUNNING);
  CHECK(StateName(corral::v1::SANDBOX_STATE_FAILED) == "failed");
  CHECK_FALSE(ParseState("sleeping").ok());
}

TEST_CASE("exec options map onto ExecStart", "[client][options]") {
  ExecOptions options;
  options.argv = {"ls", "-la"};
  options.timeout_seconds = 30;
  options.env = {"X=1"};
  options.workdir = "/tmp";
  options.interactive = true;
  options.output_limit_bytes = 4096;
  auto start = BuildExecStart(options, "abc", FakeEnv({}));
  REQUIRE(start.ok());
  CHECK(start->sandbox_id() == "abc");
  REQUIRE(start->argv_size() == 2);
  CHECK(start->argv(1) == "-la");
  CHECK(start->shell().empty());
  CHECK(start->timeout_seconds() == 30);
  CHECK(start->env().at("X") == "1");
  CHECK(start->cwd() == "/tmp");
  CHECK(start->stdin_open());
  CHECK(start->output_limit_bytes() == 4096);

  ExecOptions shell;
  shell.shell = "echo hi | wc -c";
  auto shell_start = BuildExecStart(shell, "abc", FakeEnv({}));
  REQUIRE(shell_start.ok());
  CHECK(shell_start->shell() == "echo hi | wc -c");
  CHECK(shell_start->argv_size() == 0);
  CHECK_FALSE(shell_start->stdin_open());

  CHECK_FALSE(BuildExecStart(ExecOptions{}, "abc", FakeEnv({})).ok());
  shell.argv = {"ls"};
  CHECK_FALSE(BuildExecStart(shell, "abc", FakeEnv({})).ok());
}

TEST_CASE("run puts sandbox and command into RunStart", "[client][options]") {
  CreateOptions create;
  create.memory_mib = 256;
  create.env = {"A=1"};
  ExecOptions exec;
  exec.argv = {"true"};
  exec.timeout_seconds = 9;
  auto start = BuildRunStart(create, exec, FakeEnv({}));
  REQUIRE(start.ok());
  CHECK(start->sandbox().limits().memory_mib() == 256);
  CHECK(start->sandbox().env().at("A") == "1");
  CHECK(start->command().argv(0) == "true");
  CHECK(start->command().timeout_seconds() == 9);
  CHECK(start->command().sandbox_id().empty());
}

TEST_CASE("ls filters and import metadata", "[client][options]") {
  ListOptions list;
  list.labels = {"a=b"};
  list.state = "failed";
  list.runtime = "qemu";
  auto request = BuildListRequest(list);
  REQUIRE(request.ok());
  CHECK(request->label_selector().at("a") == "b");
  CHECK(request->state() == corral::v1::SANDBOX_STATE_FAILED);
  CHECK(request->runtime() == "qemu");

  ImportOptions import;
  import.name = "alpine";
  import.replace = true;
  import.labels = {"os=alpine"};
  auto directory = BuildImportMetadata(import, true);
  REQUIRE(directory.ok());
  CHECK(directory->compression() == corral::v1::COMPRESSION_NONE);
  CHECK(directory->replace());
  CHECK(directory->labels().at("os") == "alpine");
  CHECK(BuildImportMetadata(import, false)->compression() ==
        corral::v1::COMPRESSION_AUTO);
}

TEST_CASE("exit codes follow the CLI contract", "[client][exit]") {
  corral::v1::ExecExit exit;
  exit.set_exit_code(3);
  CHECK(ExitCodeFor(exit) == 3);
  CHECK_FALSE(ExitNotice(exit, 0).has_value());

  corral::v1::ExecExit signalled;
  signalled.set_signal(9);
  CHECK(ExitCodeFor(signalled) == 137);

  corral::v1::ExecExit timed_out;
  timed_out.set_signal(9);
  timed_out.set_timed_out(true);
  timed_out.set_duration_us(5'000'100);
  CHECK(ExitCodeFor(timed_out) == kExitTimedOut);
  CHECK(kExitTimedOut == 124);
  CHECK(*ExitNotice(timed_out, 5) == "command timed out after 5 s");
  CHECK(*ExitNotice(timed_out, 0) == "command timed out after 5 s");

  corral::v1::ExecExit oom;
  oom.set_signal(9);
  oom.set_oom_killed(true);
  CHECK(ExitCodeFor(oom) == 137);
  CHECK(*ExitNotice(oom, 0) == "command killed: out of memory");

  corral::v1::ExecExit not_found;
  not_found.set_exit_code(127);
  not_found.set_error("no such file: foo");
  CHECK(ExitCodeFor(not_found) == 127);
  CHECK(*ExitNotice(not_found, 0) == "no such file: foo");
}

TEST_CASE("errors of corral itself exit 125 with one line", "[client][exit]") {
  CliRun bad_flag = RunCapturing({"ls", "--no-such-flag"});
  CHECK(bad_flag.exit_code == 125);
  CHECK(bad_flag.err.rfind("corral: ", 0) == 0);
  CHECK(std::count(bad_flag.err.begin(), bad_flag.err.end(), '\n') == 1);

  CliRun bad_label =
      RunCapturing({"--socket", "/nonexistent/sock", "ls", "--label", "oops"});
  CHECK(bad_label.exit_code == 125);
  CHECK(bad_label.err == "corral: --label expects KEY=VALUE, got 'oops'\n");

  CliRun seed = RunCapturing({"--socket", "/nonexistent/sock", "run", "--seed",
                              "/nonexistent/seed", "--", "true"});
  CHECK(seed.exit_code == 125);
  CHECK(seed.err ==
        "corral: cannot open /nonexistent/seed: No such file or directory\n");

  CliRun misplaced =
      RunCapturing({"--socket", "/nonexistent/sock", "ls", "--", "x"});
  CHECK(misplaced.exit_code == 125);
}

TEST_CASE("an unreachable daemon is named with its socket", "[client][exit]") {
  TempDir dir;
  const std::string socket = (dir.path() / "missing.sock").string();
  CliRun result = RunCapturing({"--socket", socket, "ls"});
  CHECK(result.exit_code == 125);
  CHECK(result.err == "corral: cannot reach corrald at " + socket +
                          ": No such file or directory\n");
  CHECK(result.out.empty());

  // run goes through the streaming path; same contract.
  CliRun run = RunCapturing({"--socket", socket, "run", "--", "true"});
  CHECK(run.exit_code == 125);
  CHECK_THAT(run.err, Catch::StartsWith("corral: cannot reach corrald at "));

  // doctor reports instead of failing, and exits 1.
  CliRun doctor = RunCapturing({"--socket", socket, "doctor"});
  CHECK(doctor.exit_code == 1);
  CHECK(doctor.out ==
        "FAIL socket " + socket + ": No such file or directory\n");
}

TEST_CASE("help and version exit 0", "[client][exit]") {
  CliRun help = RunCapturing({"--help"});
  CHECK(help.exit_code == 0);
  CHECK_THAT(help.out, Catch::Contains("image"));
  CliRun run_help = RunCapturing({"run", "--help"});
  CHECK(run_help.exit_code == 0);
  CHECK_THAT(run_help.out, Catch::Contains("--require"));
  CliRun version = RunCapturing({"--version"});
  CHECK(version.exit_code == 0);
  CHECK_THAT(version.out, Catch::StartsWith("corral "));
}

TEST_CASE("arguments split at the first --", "[client][options]") {
  SplitArguments split =
      SplitAtSeparator({"exec", "id", "--timeout", "5", "--", "sh", "--", "x"});
  CHECK(split.has_separator);
  CHECK(split.options ==
        std::vector<std::string>{"exec", "id", "--timeout", "5"});
  CHECK(split.command == std::vector<std::string>{"sh", "--", "x"});
  CHECK_FALSE(SplitAtSeparator({"ls"}).has_separator);
}

TEST_CASE("tables align columns without trailing blanks", "[client][format]") {
  const std::string table =
      FormatTable({"NAME", "AVAILABLE", "REASON"},
                  {{"linux", "yes", ""}, {"firecracker", "no", "no /dev/kvm"}});
  CHECK(table ==
        "NAME          AVAILABLE   REASON\n"
        "linux         yes\n"
        "firecracker   no          no /dev/kvm\n");
}

TEST_CASE("runtimes and sandboxes render as tables", "[client][format]") {
  corral::v1::ListRuntimesResponse runtimes;
  auto* linux_runtime = runtimes.add_runtimes();
  linux_runtime->set_name("linux");
  linux_runtime->set_available(true);
  linux_runtime->set_is_default(true);
  linux_runtime->add_guarantees(corral::v1::GUARANTEE_CGROUP_LIMITS);
  linux_runtime->add_guarantees(corral::v1::GUARANTEE_SECCOMP);
  auto* qemu = runtimes.add_runtimes();
  qemu->set_name("qemu");
  qemu->set_reason("qemu-system-x86_64 not found");
  CHECK(FormatRuntimes(runtimes) ==
        "NAME    AVAILABLE   DEFAULT   GUARANTEES              REASON\n"
        "linux   yes         *         cgroup-limits,seccomp\n"
        "qemu    no                    -                       "
        "qemu-system-x86_64 not found\n");
  CHECK(DefaultRuntimeAvailable(runtimes));
  std::vector<DoctorCheck> checks = RuntimeChecks(runtimes);
  REQUIRE(checks.size() == 2);
  CHECK(checks[0].ok);
  CHECK(checks[0].name == "runtime linux (default)");
  CHECK_FALSE(checks[1].ok);
  // A runtime other than the default that cannot run here is no failure.
  CHECK_THAT(FormatDoctor(checks),
             Catch::Contains("no   runtime qemu: qemu-system-x86_64"));
  runtimes.mutable_runtimes(0)->set_available(false);
  CHECK_THAT(FormatDoctor(RuntimeChecks(runtimes)),
             Catch::Contains("FAIL runtime linux (default)"));

  corral::v1::ListSandboxesResponse sandboxes;
  auto* sandbox = sandboxes.add_sandboxes();
  sandbox->set_id("0123456789abcdef0123456789abcdef");
  sandbox->set_runtime("linux");
  sandbox->set_image("host");
  sandbox->set_state(corral::v1::SANDBOX_STATE_RUNNING);
  sandbox->set_owner_uid(0);
  sandbox->mutable_created_at()->set_seconds(1000 - 120);
  sandbox->mutable_expires_at()->set_seconds(1000 + 3600);
  CHECK(FormatSandboxes(sandboxes, 1000) ==
        "ID                                 RUNTIME   IMAGE   STATE     "
        "CREATED   EXPIRES   OWNER\n"
        "0123456789abcdef0123456789abcdef   linux     host    running   "
        "2m ago    in 1h     0 (root)\n");
}

TEST_CASE("inspect lists limits, owner, expiry, guarantees and failure",
          "[client][format]") {
  corral::v1::Sandbox sandbox;
  sandbox.set_id("abc");
  sandbox.set_state(corral::v1::SANDBOX_STATE_FAILED);
  sandbox.set_failure("agent went away");
  sandbox.mutable_limits()->set_cpu_millis(1500);
  sandbox.mutable_limits()->set_memory_mib(512);
  sandbox.set_owner_uid(0);
  sandbox.set_owner_gid(0);
  sandbox.mutable_expires_at()->set_seconds(86400 + 60);
  sandbox.add_guarantees(corral::v1::GUARANTEE_USER_NAMESPACE);
  (*sandbox.mutable_labels())["b"] = "2";
  (*sandbox.mutable_labels())["a"] = "1";
  const std::string text = FormatSandbox(sandbox, 86400);
  CHECK_THAT(text, Catch::Contains("State:            failed\n"));
  CHECK_THAT(text, Catch::Contains("Failure:          agent went away\n"));
  CHECK_THAT(text, Catch::Contains("CPUs:             1.5\n"));
  CHECK_THAT(text, Catch::Contains("Memory:           512 MiB\n"));
  CHECK_THAT(text, Catch::Contains("Pids:             default\n"));
  CHECK_THAT(text, Catch::Contains("Owner:            uid 0 (root), gid 0\n"));
  CHECK_THAT(text,
             Catch::Contains("Expires:          1970-01-02T00:01:00Z (in 1m)"));
  CHECK_THAT(text, Catch::Contains("Guarantees:       user-namespace\n"));
  CHECK_THAT(text, Catch::Contains("Labels:           a=1, b=2\n"));
}

TEST_CASE("small formatters", "[client][format]") {
  CHECK(FormatRelative(-5) == "5s ago");
  CHECK(FormatRelative(0) == "now");
  CHECK(FormatRelative(7200) == "in 2h");
  CHECK(FormatRelative(-3 * 86400) == "3d ago");
  CHECK(FormatBytes(512) == "512 B");
  CHECK(FormatBytes(3 << 20) == "3.0 MiB");
  CHECK(FormatCpus(500) == "0.5");
  CHECK(FormatCpus(2000) == "2");
  CHECK(FormatCpus(0) == "default");
}

TEST_CASE("JSON output is valid for any bytes", "[client][format]") {
  CHECK(JsonString("a\"b\\\n") == "\"a\\\"b\\\\\\n\"");
  CHECK(JsonString("\x01") == "\"\\u0001\"");
  CHECK(JsonString("h\xc3\xa9") == "\"h\xc3\xa9\"");
  // Invalid UTF-8: a lone continuation byte and a truncated sequence.
  CHECK(JsonString("\x80x\xe2\x82") ==
        "\"\xef\xbf\xbdx\xef\xbf\xbd\xef\xbf\xbd\"");

  corral::v1::ExecExit exit;
  exit.set_exit_code(2);
  exit.set_duration_us(42);
  const std::string json = FormatExecResultJson("id1", exit, "out\n", "err");
  CHECK(json ==
        "{\"sandbox_id\":\"id1\",\"exit_code\":2,\"signal\":0,"
        "\"timed_out\":false,\"oom_killed\":false,\"stdout\":\"out\\n\","
        "\"stderr\":\"err\",\"stdout_truncated\":false,"
        "\"stderr_truncated\":false,\"duration_us\":42,\"error\":\"\"}\n");

  corral::v1::Runtime runtime;
  runtime.set_name("linux");
  runtime.set_is_default(true);
  auto printed = ToJson(runtime);
  REQUIRE(printed.ok());
  // Proto field names, and zero values present.
  CHECK_THAT(*printed, Catch::Contains("\"is_default\":true"));
  CHECK_THAT(*printed, Catch::Contains("\"available\":false"));
}

TEST_CASE("output chunks go to their stream and gaps warn",
          "[client][output]") {
  TempDir dir;
  UniqueFd out(::open((dir.path() / "o").c_str(), O_RDWR | O_CREAT, 0600));
  UniqueFd err(::open((dir.path() / "e").c_str(), O_RDWR | O_CREAT, 0600));
  UniqueFd warn(::open((dir.path() / "w").c_str(), O_RDWR | O_CREAT, 0600));
  OutputSink sink(false, {out.get(), err.get(), warn.get()});
  auto chunk = [](corral::v1::OutputStream stream, std::string data,
                  uint64_t sequence) {
    corral::v1::OutputChunk result;
    result.set_stream(stream);
    result.set_data(std::move(data));
    result.set_sequence(sequence);
    return result;
  };
  sink.Add(chunk(corral::v1::OUTPUT_STREAM_STDOUT, "one ", 0));
  sink.Add(chunk(corral::v1::OUTPUT_STREAM_STDERR, "oops", 1));
  sink.Add(chunk(corral::v1::OUTPUT_STREAM_STDOUT, "two", 2));
  CHECK(sink.sequence_errors() == 0);
  CHECK(ReadFd(warn.get()).empty());
  sink.Add(chunk(corral::v1::OUTPUT_STREAM_STDOUT, "!", 5));
  CHECK(sink.sequence_errors() == 1);
  CHECK(ReadFd(out.get()) == "one two!");
  CHECK(ReadFd(err.get()) == "oops");
  CHECK_THAT(ReadFd(warn.get()),
             Catch::Contains("output chunk 5 arrived, expected 3"));

  OutputSink collecting(true, {out.get(), err.get(), warn.get()});
  collecting.Add(chunk(corral::v1::OUTPUT_STREAM_STDERR, "e", 0));
  collecting.Add(chunk(corral::v1::OUTPUT_STREAM_STDOUT, "o", 1));
  CHECK(collecting.stdout_data() == "o");
  CHECK(collecting.stderr_data() == "e");
}

}  // namespace
}  // namespace corral::cli
