// corral_bench_api: API-level benchmarks of corrald over its Unix socket,
// without the CLI's process start and connect in the numbers.
//
//   corral_bench_api --socket PATH [-n RUNS] [-c CREATES] [--image NAME]
//                    [--runtime NAME] [--network none|egress]
//
// Prints one line per measurement in timeit's machine format (see
// tests/bench/timeit.c), which tests/bench/run.sh reads:
//   LABEL RUNS FAILED MIN_MS MEDIAN_MS P90_MS MAX_MS WALL_S PER_SECOND
// api-run    Sandboxes.Run of `true` (create, exec, destroy): the API TTFC
// api-exec   Exec.Exec of `true` in one running sandbox: the exec round trip
// api-create Sandboxes.CreateSandbox, one at a time
// api-rm     Sandboxes.DeleteSandbox of those sandboxes
// All calls share one channel, as a long-lived orchestrator's would; the
// channel's first connection is made (and not timed) before the runs.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "corral/v1/exec.grpc.pb.h"
#include "corral/v1/sandboxes.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kWarmupRuns = 3;
constexpr auto kCallDeadline = std::chrono::seconds(60);

struct Options {
  std::string socket;
  int runs = 200;
  int creates = 100;
  std::string image;
  std::string runtime;
  bool egress = false;  // --network egress
};

void Usage() {
  std::fprintf(stderr,
               "usage: corral_bench_api --socket PATH [-n RUNS] [-c CREATES]\n"
               "                        [--image NAME] [--runtime NAME]\n"
               "                        [--network none|egress]\n");
  std::exit(2);
}

Options ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Usage();
      return argv[++i];
    };
    if (arg == "--socket") {
      options.socket = value();
    } else if (arg == "-n") {
      options.runs = std::atoi(value().c_str());
    } else if (arg == "-c") {
      options.creates = std::atoi(value().c_str());
    } else if (arg == "--image") {
      options.image = value();
    } else if (arg == "--runtime") {
      options.runtime = value();
    } else if (arg == "--network") {
      const std::string mode = value();
      if (mode != "none" && mode != "egress") Usage();
      options.egress = mode == "egress";
    } else {
      Usage();
    }
  }
  if (options.socket.empty() || options.runs < 1 || options.creates < 1)
    Usage();
  return options;
}

// Collects call durations and prints them in timeit's machine format.
class Samples {
 public:
  explicit Samples(std::string label)
      : label_(std::move(label)), start_(Clock::now()) {}

  void Add(Clock::duration elapsed, bool ok) {
    times_ms_.push_back(
        std::chrono::duration<double, std::milli>(elapsed).count());
    if (!ok) ++failed_;
  }

  void Print() {
    const double wall_s =
        std::chrono::duration<double>(Clock::now() - start_).count();
    std::vector<double> sorted = times_ms_;
    std::sort(sorted.begin(), sorted.end());
    const size_t n = sorted.size();
    auto nearest_rank = [&](double percent) {
      if (n == 0) return 0.0;
      size_t rank = static_cast<size_t>(percent / 100.0 * n + 0.999999);
      return sorted[std::clamp<size_t>(rank, 1, n) - 1];
    };
    const double median =
        n == 0
            ? 0
            : (n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2);
    std::printf("%s %zu %d %.3f %.3f %.3f %.3f %.3f %.1f\n", label_.c_str(), n,
                failed_, n ? sorted.front() : 0.0, median, nearest_rank(90),
                n ? sorted.back() : 0.0, wall_s, wall_s > 0 ? n / wall_s : 0.0);
    std::fflush(stdout);
  }

 private:
  std::string label_;
  Clock::time_point start_;
  std::vector<double> times_ms_;
  int failed_ = 0;
};

void SetDeadline(grpc::ClientContext& context) {
  context.set_deadline(std::chrono::system_clock::now() + kCallDeadline);
}

corral::v1::CreateSandboxRequest SandboxRequest(const Options& options) {
  corral::v1::CreateSandboxRequest request;
  request.set_image(options.image);
  request.set_runtime(options.runtime);
  if (options.egress) request.set_network(corral::v1::NETWORK_MODE_EGRESS);
  return request;
}

// Runs `true` through Sandboxes.Run; true when it exited 0.
bool RunOnce(corral::v1::Sandboxes::Stub& sandboxes, const Options& options,
             std::string* error) {
  grpc::ClientContext context;
  SetDeadline(context);
  auto stream = sandboxes.Run(&context);
  corral::v1::RunRequest request;
  *request.mutable_start()->mutable_sandbox() = SandboxRequest(options);
  request.mutable_start()->mutable_command()->add_argv("true");
  stream->Write(request);
  stream->WritesDone();
  corral::v1::RunResponse response;
  bool exited_zero = false;
  while (stream->Read(&response)) {
    if (response.has_exit()) {
      exited_zero = response.exit().exit_code() == 0 &&
                    response.exit().signal() == 0 &&
                    response.exit().error().empty();
      if (!exited_zero && error)
        *error = "true exited non-zero: " + response.exit().error();
    }
  }
  grpc::Status status = stream->Finish();
  if (!status.ok()) {
    if (error) *error = "Run: " + status.error_message();
    return false;
  }
  return exited_zero;
}

bool ExecOnce(corral::v1::Exec::Stub& exec, const std::string& id,
              std::string* error) {
  grpc::ClientContext context;
  SetDeadline(context);
  corral::v1::ExecRequest request;
  request.mutable_start()->set_sandbox_id(id);
  request.mutable_start()->add_argv("true");
  corral::v1::ExecResponse response;
  grpc::Status status = exec.Exec(&context, request, &response);
  if (!status.ok()) {
    if (error) *error = "Exec: " + status.error_message();
    return false;
  }
  return response.exit().exit_code() == 0 && response.exit().signal() == 0;
}

bool Create(corral::v1::Sandboxes::Stub& sandboxes, const Options& options,
            std::string* id, std::string* error) {
  grpc::ClientContext context;
  SetDeadline(context);
  corral::v1::Sandbox sandbox;
  grpc::Status status =
      sandboxes.CreateSandbox(&context, SandboxRequest(options), &sandbox);
  if (!status.ok()) {
    if (error) *error = "CreateSandbox: " + status.error_message();
    return false;
  }
  *id = sandbox.id();
  return true;
}

bool Delete(corral::v1::Sandboxes::Stub& sandboxes, const std::string& id,
            std::string* error) {
  grpc::ClientContext context;
  SetDeadline(context);
  corral::v1::DeleteSandboxRequest request;
  request.set_id(id);
  corral::v1::DeleteSandboxResponse response;
  grpc::Status status = sandboxes.DeleteSandbox(&context, request, &response);
  if (!status.ok() && error)
    *error = "DeleteSandbox: " + status.error_message();
  return status.ok();
}

// Times `runs` calls of `call` after a few untimed ones; stops at the first
// failure, which it reports.
void Measure(const std::string& label, int runs,
             const std::function<bool(std::string*)>& call) {
  std::string error;
  for (int i = 0; i < kWarmupRuns; ++i) {
    if (!call(&error)) {
      std::fprintf(stderr, "%s: warmup failed: %s\n", label.c_str(),
                   error.c_str());
      return;
    }
  }
  Samples samples(label);
  for (int i = 0; i < runs; ++i) {
    const auto start = Clock::now();
    const bool ok = call(&error);
    samples.Add(Clock::now() - start, ok);
    if (!ok) {
      std::fprintf(stderr, "%s: run %d failed: %s\n", label.c_str(), i + 1,
                   error.c_str());
      break;
    }
  }
  samples.Print();
}

}  // namespace

int main(int argc, char** argv) {
  const Options options = ParseOptions(argc, argv);
  auto channel = grpc::CreateChannel("unix://" + options.socket,
                                     grpc::InsecureChannelCredentials());
  if (!channel->WaitForConnected(std::chrono::system_clock::now() +
                                 std::chrono::seconds(10))) {
    std::fprintf(stderr, "corral_bench_api: cannot connect to %s\n",
                 options.socket.c_str());
    return 1;
  }
  auto sandboxes = corral::v1::Sandboxes::NewStub(channel);
  auto exec = corral::v1::Exec::NewStub(channel);

  Measure("api-run", options.runs, [&](std::string* error) {
    return RunOnce(*sandboxes, options, error);
  });

  std::string id, error;
  if (Create(*sandboxes, options, &id, &error)) {
    Measure("api-exec", options.runs, [&](std::string* call_error) {
      return ExecOnce(*exec, id, call_error);
    });
    Delete(*sandboxes, id, &error);
  } else {
    std::fprintf(stderr, "api-exec: %s\n", error.c_str());
  }

  // Creations, then removals, one at a time; every created sandbox is
  // removed even when a removal fails.
  std::vector<std::string> ids;
  Samples creates("api-create");
  for (int i = 0; i < options.creates; ++i) {
    const auto start = Clock::now();
    std::string new_id;
    const bool ok = Create(*sandboxes, options, &new_id, &error);
    creates.Add(Clock::now() - start, ok);
    if (!ok) {
      std::fprintf(stderr, "api-create: %s\n", error.c_str());
      break;
    }
    ids.push_back(new_id);
  }
  creates.Print();
  Samples removals("api-rm");
  int exit_status = 0;
  for (const std::string& created : ids) {
    const auto start = Clock::now();
    const bool ok = Delete(*sandboxes, created, &error);
    removals.Add(Clock::now() - start, ok);
    if (!ok) {
      std::fprintf(stderr, "api-rm %s: %s\n", created.c_str(), error.c_str());
      exit_status = 1;
    }
  }
  if (!ids.empty()) removals.Print();
  return exit_status;
}
