// What a root daemon must not take on trust from its clients and its own
// installation: options that weaken isolation, a policy that does not match,
// a typo in a runtime's settings, a plugin file that is not what was
// checked. Every refusal is a clear error and changes nothing.
#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "corral/v1/images.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace corral::testing {
namespace {

constexpr int kNobody = 65534;
// Plain uids with no account: the CLI needs none.
constexpr int kGranted = 61000;

bool Contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

bool NoSandboxes(const Daemon& daemon) {
  return !Contains(daemon.Cli({"--json", "ls"}).out, "\"id\"");
}

// The message corrald printed before it exited at start, or "" when it
// started (and was stopped again).
std::string StartFailure(const std::string& config) {
  try {
    Daemon daemon(config);
  } catch (const std::exception& error) {
    return error.what();
  }
  return "";
}

TEST_CASE(
    "only admins, or callers whose policy grants it, may turn the user "
    "namespace off") {
  Daemon daemon("[daemon]\nsocket_mode = 0o666\n[[policy]]\nusers = [" +
                std::to_string(kGranted) + "]\ngrants = [\"no-userns\"]\n");
  // An ordinary user: refused, with why and what would allow it; nothing
  // is made.
  auto refused = daemon.Cli({"create", "--no-userns"}, "", kNobody);
  INFO(refused.err);
  CHECK(refused.exit_code == 125);
  CHECK(Contains(refused.err, "userns=false"));
  CHECK(Contains(refused.err, "no-userns"));
  CHECK(Contains(refused.err, "default_policy"));
  CHECK(Lines(refused.err).size() == 1);
  CHECK(NoSandboxes(daemon));
  auto run = daemon.Cli({"run", "--no-userns", "--", "id", "-u"}, "", kNobody);
  CHECK(run.exit_code == 125);
  CHECK(NoSandboxes(daemon));
  // Asking for what is the default anyway needs no grant.
  auto plain = daemon.Cli({"run", "--", "true"}, "", kNobody);
  INFO(plain.err);
  CHECK(plain.exit_code == 0);

  // A user whose policy grants it, and root (an admin).
  for (int uid : {kGranted, 0}) {
    auto made = daemon.Cli({"create", "--no-userns"}, "", uid);
    INFO("uid " << uid << ": " << made.err);
    REQUIRE(made.exit_code == 0);
    const std::string id = Trim(made.out);
    auto inspect = daemon.Cli({"--json", "inspect", id});
    CHECK_FALSE(Contains(inspect.out, "USER_NAMESPACE"));
    CHECK(daemon.Cli({"rm", id}).exit_code == 0);
  }
}

TEST_CASE("a default policy decides for callers no policy entry matches") {
  Daemon daemon(
      "[daemon]\nsocket_mode = 0o666\n[default_policy]\ndeny = "
      "true\n[[policy]]\nusers = [" +
      std::to_string(kGranted) + "]\nruntimes = [\"linux\"]\n");
  for (auto args : std::vector<std::vector<std::string>>{
           {"ls"}, {"create"}, {"runtimes"}, {"image", "ls"}}) {
    auto denied = daemon.Cli(args, "", kNobody);
    INFO(args[0] << ": " << denied.err);
    CHECK(denied.exit_code == 125);
    CHECK(Contains(denied.err, "default_policy"));
    CHECK(Contains(denied.err, "denies"));
  }
  CHECK(NoSandboxes(daemon));
  // The entry that matches still works; admins are never denied.
  auto allowed = daemon.Cli({"run", "--", "true"}, "", kGranted);
  INFO(allowed.err);
  CHECK(allowed.exit_code == 0);
  auto forbidden =
      daemon.Cli({"run", "--runtime", "oci", "--", "true"}, "", kGranted);
  CHECK(forbidden.exit_code == 125);
  CHECK(Contains(forbidden.err, "not allowed"));
  CHECK(daemon.Cli({"run", "--", "true"}).exit_code == 0);
}

TEST_CASE(
    "runtime settings the runtime does not know stop the daemon at start") {
  const std::string typo =
      StartFailure("[runtimes.linux]\ncgroup_parnet = \"corral\"\n");
  CHECK(Contains(typo, "runtimes.linux.cgroup_parnet"));
  CHECK(Contains(typo, "unknown option"));
  CHECK(Contains(typo, "cgroup_parent"));  // what it does know
  const std::string bad_value = StartFailure(
      "[runtimes.oci]\nruntime = \"/no/such/runc\"\n"
      "cgroup_parent = \"../escape\"\n");
  CHECK(Contains(bad_value, "cgroup_parent"));
  const std::string no_plugin = StartFailure("[runtimes.nosuch]\nx = 1\n");
  CHECK(Contains(no_plugin, "[runtimes.nosuch]"));
  CHECK(Contains(no_plugin, "not built"));
  // A known runtime with known settings starts.
  const std::string good = StartFailure("[runtimes.qemu]\naccel = \"tcg\"\n");
  INFO(good);
  CHECK(good.empty());
}

// A plugin directory of its own: copies of the linux plugin and its
// launcher, root-owned, as an installation has them.
class PluginCopy {
 public:
  PluginCopy() {
    char pattern[] = "/tmp/corral-plugins-XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    dir_ = pattern;
    ::chmod(dir_.c_str(), 0755);
    const std::string lib = BinaryDir() + "/../lib/corral";
    REQUIRE(Sh("cp '" + lib + "/linux.so' '" + lib + "/corral-linux-launch' '" +
               dir_ + "/'")
                .exit_code == 0);
  }
  ~PluginCopy() { Sh("rm -rf '" + dir_ + "'"); }
  const std::string& dir() const { return dir_; }
  std::string Config() const {
    return "[daemon]\nplugin_dir = \"" + dir_ + "\"\n";
  }

 private:
  std::string dir_;
};

TEST_CASE(
    "a plugin is loaded only from a root-owned regular file in a root-owned "
    "directory, the very file that was checked") {
  if (::geteuid() != 0) {
    WARN("skipped: ownership checks apply to a daemon run as root");
    return;
  }
  PluginCopy plugins;
  {
    Daemon daemon(plugins.Config());
    auto ran = daemon.Cli({"run", "--", "echo", "loaded"});
    INFO(ran.err << daemon.log());
    CHECK(ran.exit_code == 0);
    CHECK(Trim(ran.out) == "loaded");
  }
  // A runtime the config names is loaded at start, so a bad plugin stops
  // the daemon there; one it does not name is loaded at its first use,
  // which fails. Both say why.
  const std::string plugin = plugins.dir() + "/linux.so";
  auto check_refused = [&](const std::string& why) {
    const std::string failure = StartFailure(
        plugins.Config() + "[runtimes.linux]\ncgroup_parent = \"corral\"\n");
    CHECK(Contains(failure, plugin));
    CHECK(Contains(failure, why));
    Daemon daemon(plugins.Config());
    auto refused = daemon.Cli({"run", "--", "true"});
    CHECK(refused.exit_code == 125);
    CHECK(Contains(refused.err, plugin));
    CHECK(Contains(refused.err, why));
  };
  SECTION("a symlink in place of the plugin") {
    REQUIRE(Sh("mv '" + plugin + "' '" + plugin + ".real' && ln -s '" + plugin +
               ".real' '" + plugin + "'")
                .exit_code == 0);
    check_refused("a symlink");
  }
  SECTION("a plugin others may write") {
    REQUIRE(::chmod(plugin.c_str(), 0666) == 0);
    check_refused("not writable by group or others");
  }
  SECTION("a plugin owned by another user") {
    REQUIRE(::chown(plugin.c_str(), kNobody, kNobody) == 0);
    check_refused("owned by root");
  }
  SECTION("a directory others may write") {
    REQUIRE(::chmod(plugins.dir().c_str(), 0777) == 0);
    const std::string failure = StartFailure(plugins.Config());
    CHECK(Contains(failure, "plugin directory"));
    CHECK(Contains(failure, "not writable by group or others"));
  }
}

// The status lines of the decoder processes corrald runs now.
std::vector<std::string> DecoderStatuses(pid_t daemon) {
  std::vector<std::string> found;
  auto pids = Sh("pgrep -P " + std::to_string(daemon) + " -x corral-unpack");
  for (const std::string& pid : Lines(pids.out)) {
    if (pid.empty()) continue;
    found.push_back(Sh("cat /proc/" + pid + "/status").out);
  }
  return found;
}

TEST_CASE(
    "archives from clients are decoded by an unprivileged, seccomp-filtered "
    "helper, never inside the root daemon") {
  Daemon daemon;
  std::ifstream tar(std::string(CORRAL_BINARY_DIR) + "/images/busybox.tar",
                    std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(tar)),
                    std::istreambuf_iterator<char>());
  REQUIRE(bytes.size() > (64u << 10));
  auto images = corral::v1::Images::NewStub(daemon.Channel());
  grpc::ClientContext context;
  corral::v1::Image image;
  auto writer = images->ImportImage(&context, &image);
  corral::v1::ImportImageRequest request;
  request.mutable_metadata()->set_name("slowly");
  REQUIRE(writer->Write(request));
  request.set_data(bytes.substr(0, 64 << 10));
  REQUIRE(writer->Write(request));
  // While the rest has not come, the decoder waits for it: look at it.
  std::vector<std::string> decoders;
  for (int i = 0; i < 100 && decoders.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    decoders = DecoderStatuses(daemon.pid());
  }
  REQUIRE(decoders.size() == 1);
  const std::string& status = decoders.front();
  INFO(status);
  CHECK(Contains(status, "Uid:\t65534\t65534\t65534\t65534"));
  CHECK(Contains(status, "Gid:\t65534\t65534\t65534\t65534"));
  CHECK(Contains(status, "CapEff:\t0000000000000000"));
  CHECK(Contains(status, "CapPrm:\t0000000000000000"));
  CHECK(Contains(status, "NoNewPrivs:\t1"));
  CHECK(Contains(status, "Seccomp:\t2"));
  for (size_t at = 64 << 10; at < bytes.size(); at += 1 << 20) {
    request.set_data(bytes.substr(at, 1 << 20));
    REQUIRE(writer->Write(request));
  }
  writer->WritesDone();
  const grpc::Status done = writer->Finish();
  INFO(done.error_message());
  CHECK(done.ok());
  CHECK(image.name() == "slowly");
  CHECK(daemon.Cli({"run", "--image", "slowly", "--", "true"}).exit_code == 0);
  // Gone once its stream is done.
  CHECK(DecoderStatuses(daemon.pid()).empty());
}

}  // namespace
}  // namespace corral::testing
