// Spec validation and the lifecycle table, without a daemon.
#include <catch2/catch.hpp>

#include "daemon/core/lifecycle.h"
#include "daemon/core/spec.h"

namespace corral::daemon {
namespace {

namespace v1 = corral::v1;

SpecRules Rules() {
  SpecRules rules;
  rules.defaults = {1000, 512, 256, 1024, 3600, 600, 1 << 20};
  rules.maxima = {2000, 4096, 1024, 8192, 86400, 3600, 8 << 20};
  rules.minima = {10, 16, 8, 1, 0, 0, 0};
  return rules;
}

TEST_CASE("PlanSandbox fills defaults for zero fields") {
  auto plan = PlanSandbox(v1::CreateSandboxRequest(), Rules(), CallerPolicy{});
  REQUIRE(plan.ok());
  CHECK(plan->runtime == "linux");
  CHECK(plan->image == "host");
  CHECK(plan->limits.memory_mib == 512);
  CHECK(plan->limits.pids == 256);
  CHECK(plan->limits.ttl_seconds == 3600);
  CHECK(plan->workdir == "/workspace");
  CHECK(plan->user_namespace);
}

TEST_CASE("PlanSandbox refuses limits out of range, naming the field") {
  v1::CreateSandboxRequest request;
  request.mutable_limits()->set_memory_mib(1);
  auto low = PlanSandbox(request, Rules(), CallerPolicy{});
  REQUIRE(absl::IsInvalidArgument(low.status()));
  CHECK(low.status().message().find("limits.memory_mib") != std::string::npos);
  CHECK(low.status().message().find("below the minimum") != std::string::npos);

  request.mutable_limits()->set_memory_mib(1 << 30);
  auto high = PlanSandbox(request, Rules(), CallerPolicy{});
  REQUIRE(absl::IsInvalidArgument(high.status()));
  CHECK(high.status().message().find("exceeds the maximum 4096") !=
        std::string::npos);

  // A policy's maximum is tighter than the daemon's.
  request.mutable_limits()->set_memory_mib(2048);
  CallerPolicy policy;
  policy.maxima.memory_mib = 1024;
  auto policed = PlanSandbox(request, Rules(), policy);
  REQUIRE(absl::IsInvalidArgument(policed.status()));
  CHECK(policed.status().message().find("1024") != std::string::npos);
}

TEST_CASE("PlanSandbox enforces the caller's allowed runtimes") {
  v1::CreateSandboxRequest request;
  request.set_runtime("linux");
  CallerPolicy policy;
  policy.runtimes = {"qemu"};
  auto plan = PlanSandbox(request, Rules(), policy);
  REQUIRE(absl::IsPermissionDenied(plan.status()));
  request.clear_runtime();
  policy.default_runtime = "qemu";
  auto defaulted = PlanSandbox(request, Rules(), policy);
  REQUIRE(defaulted.ok());
  CHECK(defaulted->runtime == "qemu");
}

TEST_CASE("PlanSandbox validates strings") {
  SECTION("env names") {
    v1::CreateSandboxRequest request;
    (*request.mutable_env())["A=B"] = "x";
    CHECK(absl::IsInvalidArgument(PlanSandbox(request, Rules(), {}).status()));
  }
  SECTION("labels") {
    v1::CreateSandboxRequest request;
    (*request.mutable_labels())["bad key"] = "x";
    CHECK(absl::IsInvalidArgument(PlanSandbox(request, Rules(), {}).status()));
  }
  SECTION("hostname") {
    v1::CreateSandboxRequest request;
    request.set_hostname("Not_Valid");
    CHECK(absl::IsInvalidArgument(PlanSandbox(request, Rules(), {}).status()));
  }
  SECTION("workdir") {
    v1::CreateSandboxRequest request;
    request.set_workdir("relative");
    CHECK(absl::IsInvalidArgument(PlanSandbox(request, Rules(), {}).status()));
  }
  SECTION("userns option") {
    v1::CreateSandboxRequest request;
    (*request.mutable_runtime_options())["userns"] = "maybe";
    CHECK(absl::IsInvalidArgument(PlanSandbox(request, Rules(), {}).status()));
    // Turning the user namespace off weakens isolation: refused unless the
    // caller's policy grants it (admins are given every grant).
    (*request.mutable_runtime_options())["userns"] = "false";
    CallerPolicy plain;
    plain.name = "policy[2]";
    auto refused = PlanSandbox(request, Rules(), plain);
    REQUIRE(absl::IsPermissionDenied(refused.status()));
    CHECK(refused.status().message().find("no-userns") != std::string::npos);
    CHECK(refused.status().message().find("policy[2]") != std::string::npos);
    CallerPolicy granted;
    granted.grants = {kGrantNoUserns};
    auto plan = PlanSandbox(request, Rules(), granted);
    REQUIRE(plan.ok());
    CHECK_FALSE(plan->user_namespace);
    // userns=true needs no grant.
    (*request.mutable_runtime_options())["userns"] = "true";
    CHECK(PlanSandbox(request, Rules(), plain).ok());
  }
  SECTION("a TTL beyond the maximum lifetime") {
    SpecRules rules = Rules();
    rules.maxima.lifetime_seconds = 7200;
    v1::CreateSandboxRequest request;
    request.set_ttl_seconds(7201);
    auto refused = PlanSandbox(request, rules, {});
    REQUIRE(absl::IsInvalidArgument(refused.status()));
    CHECK(refused.status().message().find("lifetime") != std::string::npos);
    CallerPolicy shorter;
    shorter.maxima.lifetime_seconds = 60;
    request.set_ttl_seconds(61);
    CHECK(
        absl::IsInvalidArgument(PlanSandbox(request, rules, shorter).status()));
    CHECK(MaxLifetime(rules, shorter) == 60);
    request.set_ttl_seconds(60);
    auto plan = PlanSandbox(request, rules, shorter);
    REQUIRE(plan.ok());
    CHECK(plan->limits.lifetime_seconds == 60);
  }
  SECTION("network: allowlists imply egress and are normalized") {
    v1::CreateSandboxRequest request;
    request.mutable_network_policy()->add_allow_domains("PyPI.org");
    request.mutable_network_policy()->add_allow_domains("pypi.org");
    request.mutable_network_policy()->add_allow_cidrs("203.0.113.7");
    auto plan = PlanSandbox(request, Rules(), {});
    REQUIRE(plan.ok());
    CHECK(plan->network == v1::NETWORK_MODE_EGRESS);
    REQUIRE(plan->network_policy.allow_domains_size() == 1);
    CHECK(plan->network_policy.allow_domains(0) == "pypi.org");
    CHECK(plan->network_policy.allow_cidrs(0) == "203.0.113.7/32");
    request.set_network(v1::NETWORK_MODE_LEARN);
    CHECK(absl::IsInvalidArgument(PlanSandbox(request, Rules(), {}).status()));
    request.set_network(static_cast<v1::NetworkMode>(9));
    CHECK(absl::IsInvalidArgument(PlanSandbox(request, Rules(), {}).status()));
  }
  SECTION("secrets: valid, bound, with egress; the value is never quoted") {
    v1::CreateSandboxRequest request;
    request.set_network(v1::NETWORK_MODE_EGRESS);
    auto* secret = request.add_secrets();
    secret->set_name("API_TOKEN");
    secret->set_value("hunter2");
    secret->add_hosts("API.example.com");
    auto plan = PlanSandbox(request, Rules(), {});
    REQUIRE(plan.ok());
    REQUIRE(plan->secrets.size() == 1);
    CHECK(plan->secrets[0].hosts(0) == "api.example.com");
    request.set_network(v1::NETWORK_MODE_NONE);
    CHECK(absl::IsInvalidArgument(PlanSandbox(request, Rules(), {}).status()));
    request.set_network(v1::NETWORK_MODE_EGRESS);
    secret->clear_hosts();
    auto unbound = PlanSandbox(request, Rules(), {});
    CHECK(absl::IsInvalidArgument(unbound.status()));
    secret->add_hosts("api.example.com");
    secret->set_value("hunter2\nX-Injected: 1");
    auto injected = PlanSandbox(request, Rules(), {});
    CHECK(absl::IsInvalidArgument(injected.status()));
    CHECK(injected.status().message().find("hunter2") == std::string::npos);
    secret->set_value("hunter2");
    secret->set_name("1BAD");
    CHECK(absl::IsInvalidArgument(PlanSandbox(request, Rules(), {}).status()));
  }
  SECTION("network: the policy caps the modes") {
    CallerPolicy policy;
    policy.network_modes = {"none", "allowlist"};
    v1::CreateSandboxRequest request;
    CHECK(PlanSandbox(request, Rules(), policy).ok());
    request.set_network(v1::NETWORK_MODE_EGRESS);
    auto refused = PlanSandbox(request, Rules(), policy);
    CHECK(absl::IsPermissionDenied(refused.status()));
    CHECK(refused.status().message().find("allows: none, allowlist") !=
          std::string::npos);
    request.mutable_network_policy()->add_allow_domains("pypi.org");
    CHECK(PlanSandbox(request, Rules(), policy).ok());
  }
}

TEST_CASE("PlanExec builds the agent's command") {
  v1::Sandbox sandbox;
  sandbox.set_workdir("/workspace");
  sandbox.set_hostname("box");
  (*sandbox.mutable_env())["FROM_SANDBOX"] = "1";
  (*sandbox.mutable_env())["SHARED"] = "sandbox";
  v1::ExecStart request;
  request.set_shell("echo hi");
  (*request.mutable_env())["SHARED"] = "command";
  auto start = PlanExec(request, sandbox, Rules());
  REQUIRE(start.ok());
  REQUIRE(start->argv_size() == 3);
  CHECK(start->argv(0) == "/bin/sh");
  CHECK(start->argv(2) == "echo hi");
  CHECK(start->cwd() == "/workspace");
  CHECK(start->timeout_ms() == 600000);
  CHECK(start->output_limit_bytes() == (1u << 20));
  std::map<std::string, std::string> env;
  for (const auto& var : start->env()) env[var.name()] = var.value();
  CHECK(env["SHARED"] == "command");
  CHECK(env["FROM_SANDBOX"] == "1");
  CHECK(env["HOSTNAME"] == "box");
  CHECK(!env["PATH"].empty());

  v1::ExecStart both;
  both.add_argv("true");
  both.set_shell("true");
  CHECK(absl::IsInvalidArgument(PlanExec(both, sandbox, Rules()).status()));
  v1::ExecStart neither;
  CHECK(absl::IsInvalidArgument(PlanExec(neither, sandbox, Rules()).status()));
  v1::ExecStart too_long;
  too_long.add_argv("sleep");
  too_long.set_timeout_seconds(999999);
  CHECK(absl::IsInvalidArgument(PlanExec(too_long, sandbox, Rules()).status()));
}

TEST_CASE("The lifecycle table allows exec only when running") {
  v1::Sandbox sandbox;
  sandbox.set_id("0123");
  sandbox.set_state(v1::SANDBOX_STATE_RUNNING);
  CHECK(CheckAllowed(sandbox, Action::kExec).ok());
  sandbox.set_state(v1::SANDBOX_STATE_FAILED);
  sandbox.set_failure("agent lost");
  auto status = CheckAllowed(sandbox, Action::kExec);
  REQUIRE(absl::IsFailedPrecondition(status));
  CHECK(
      status.message() ==
      "sandbox 0123 is failed (agent lost): exec is not allowed in that state");
  CHECK(CheckAllowed(sandbox, Action::kDelete).ok());
  sandbox.set_state(v1::SANDBOX_STATE_CREATING);
  CHECK_FALSE(Allows(sandbox.state(), Action::kExec));
  CHECK(Allows(sandbox.state(), Action::kDelete));
}

TEST_CASE("ValidateSandboxId accepts only 32 lowercase hex characters") {
  CHECK(ValidateSandboxId("0123456789abcdef0123456789abcdef").ok());
  CHECK_FALSE(ValidateSandboxId("0123456789ABCDEF0123456789abcdef").ok());
  CHECK_FALSE(ValidateSandboxId("../../etc").ok());
  CHECK_FALSE(ValidateSandboxId("").ok());
}

}  // namespace
}  // namespace corral::daemon
