// corrald: the Corral daemon. Owns every sandbox on this host behind the
// corral.v1 gRPC API on a Unix socket. Runs in the foreground; systemd (or
// launchd) keeps it running.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <iostream>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "corral/child_reaper.h"
#include "corral/logging.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"
#include "daemon/config/config.h"
#include "daemon/core/backend.h"
#include "daemon/core/processes.h"
#include "daemon/core/sandbox_manager.h"
#include "daemon/core/workspaces.h"
#include "daemon/images/image_store.h"
#include "daemon/rpc/listener.h"
#include "daemon/rpc/services.h"
#include "daemon/settings.h"
#include "daemon/store/store.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#ifdef CORRAL_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace corral::daemon {
namespace {

void Notify(const char* state) {
#ifdef CORRAL_HAVE_SYSTEMD
  ::sd_notify(0, state);
#endif
}

std::string ExecutableDir() {
  std::error_code error;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? "." : exe.parent_path().string();
}

// One daemon per state directory: a second one would fight over sandboxes.
absl::StatusOr<UniqueFd> LockStateDir(const std::string& state_dir) {
  const std::string path = absl::StrCat(state_dir, "/corrald.lock");
  UniqueFd fd(
      ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return ErrnoStatus(absl::StrCat("open ", path));
  if (::flock(fd.get(), LOCK_EX | LOCK_NB) != 0) {
    if (errno == EWOULDBLOCK) {
      return absl::FailedPreconditionError(absl::StrCat(
          "another corrald is using the state directory ", state_dir));
    }
    return ErrnoStatus(absl::StrCat("flock ", path));
  }
  return fd;
}

absl::Status MakePrivateDir(const std::string& path) {
  std::error_code error;
  std::filesystem::create_directories(path, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("create ", path, ": ", error.message()));
  }
  if (::chmod(path.c_str(), 0700) != 0)
    return ErrnoStatus(absl::StrCat("chmod ", path));
  return absl::OkStatus();
}

int Run(int argc, char** argv) {
  CLI::App app{"corrald: the Corral sandbox daemon"};
  std::string config_path, socket_path, state_dir, log_level, plugin_dir,
      agent_path;
  app.add_option("--config", config_path,
                 "TOML config file (see deploy/corrald.toml)");
  app.add_option("--socket", socket_path,
                 "Unix socket to listen on (overrides the config)");
  app.add_option("--state-dir", state_dir,
                 "State directory (overrides the config)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error");
  app.add_option("--plugin-dir", plugin_dir,
                 "Runtime plugins (default: beside corrald)");
  app.add_option("--agent", agent_path,
                 "Static corral-agent binary (default: beside corrald)");
  app.set_version_flag("--version", "corrald 0.1.0");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  auto loaded = config_path.empty()
                    ? absl::StatusOr<DaemonConfig>(DefaultConfig())
                    : LoadConfig(config_path);
  if (!loaded.ok()) {
    std::cerr << "corrald: " << loaded.status().message() << "\n";
    return 2;
  }
  DaemonConfig config = *std::move(loaded);
  if (!socket_path.empty()) config.daemon.socket = socket_path;
  if (!state_dir.empty()) config.daemon.state_dir = state_dir;
  if (!log_level.empty()) config.daemon.log_level = log_level;
  if (!plugin_dir.empty()) config.daemon.plugin_dir = plugin_dir;
  if (!agent_path.empty()) config.daemon.agent_path = agent_path;
  const std::string exe_dir = ExecutableDir();
  std::error_code fs_error;
  config.daemon.plugin_dir =
      std::filesystem::weakly_canonical(PluginDir(config, exe_dir), fs_error)
          .string();
  config.daemon.agent_path =
      std::filesystem::weakly_canonical(AgentPath(config, exe_dir), fs_error)
          .string();

  spdlog::set_level(spdlog::level::from_str(config.daemon.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ [%n] %v");
  auto log = corral::Logger("corrald");

  auto fail = [&](const absl::Status& status) {
    log->critical("{}", std::string(status.message()));
    std::cerr << "corrald: " << status.message() << "\n";
    return 1;
  };

  // The daemon reaps every child itself (sandbox init processes are
  // reparented to it when their launcher exits).
  corral::StartChildReaper();

  const std::string& state = config.daemon.state_dir;
  if (auto s = MakePrivateDir(state); !s.ok()) return fail(s);
  auto lock = LockStateDir(state);
  if (!lock.ok()) return fail(lock.status());
  if (auto s = MakePrivateDir(absl::StrCat(state, "/runtime")); !s.ok())
    return fail(s);
  if (auto s = MakePrivateDir(absl::StrCat(state, "/images")); !s.ok())
    return fail(s);

  StoreOptions store_options;
  store_options.max_events = config.daemon.max_events;
  auto store = Store::Open(absl::StrCat(state, "/corral.db"), store_options);
  if (!store.ok()) return fail(store.status());
  auto images = ImageStore::Open(absl::StrCat(state, "/images"), store->get());
  if (!images.ok()) return fail(images.status());

  PluginHost::Options plugin_options;
  plugin_options.plugin_dir = config.daemon.plugin_dir;
  plugin_options.agent_path = config.daemon.agent_path;
  plugin_options.runtime_dir = absl::StrCat(state, "/runtime");
  plugin_options.options = config.runtimes;
  auto plugins = PluginHost::Create(plugin_options);
  if (!plugins.ok()) return fail(plugins.status());

  CoreOptions core;
  core.state_dir = state;
  core.rules = MakeSpecRules(config);
  core.uid_base = config.sandbox_uids.base;
  core.uid_count = config.sandbox_uids.count;
  core.max_sandboxes = config.daemon.max_sandboxes;
  core.resolve_policy = [&config](const Caller& caller) {
    return ResolveCallerPolicy(config, caller);
  };
  // Sandboxes that go away leave workspace content to collect; recovery
  // may destroy some before the workspaces exist (their first collection
  // covers those).
  std::atomic<Workspaces*> workspaces_ready{nullptr};
  std::atomic<Processes*> processes_ready{nullptr};
  core.on_destroyed = [&](const std::string& id) {
    if (Workspaces* w = workspaces_ready.load()) w->RequestGarbageCollection();
    if (Processes* p = processes_ready.load()) p->ForgetSandbox(id);
  };
  auto manager =
      SandboxManager::Create(core, store->get(), images->get(), plugins->get());
  if (!manager.ok()) return fail(manager.status());
  if (auto s = (*manager)->Recover(); !s.ok()) return fail(s);
  WorkspaceLimits workspace_limits;
  workspace_limits.max_upload_bytes = config.workspace.max_upload_bytes;
  workspace_limits.max_entries = config.workspace.max_entries;
  workspace_limits.max_snapshots =
      static_cast<uint32_t>(config.workspace.max_snapshots);
  auto workspaces =
      Workspaces::Create(state, store->get(), manager->get(), workspace_limits);
  if (!workspaces.ok()) return fail(workspaces.status());
  workspaces_ready = workspaces->get();
  // Processes and shells a previous daemon left are taken up before
  // serving.
  auto processes = std::make_unique<Processes>(
      manager->get(), state + "/processes", ProcessLimits{});
  if (auto s = processes->Recover(); !s.ok()) return fail(s);
  (*manager)->FinishRecovery();
  processes_ready = processes.get();

  ListenerOptions listener_options;
  listener_options.path = config.daemon.socket;
  listener_options.mode = config.daemon.socket_mode;
  listener_options.group = config.daemon.socket_group;
  listener_options.admin_group = config.daemon.admin_group;
  auto listener = Listener::Create(listener_options);
  if (!listener.ok()) return fail(listener.status());

  ServiceDeps deps;
  deps.manager = manager->get();
  deps.images = images->get();
  deps.plugins = plugins->get();
  deps.listener = listener->get();
  deps.store = store->get();
  deps.workspaces = workspaces->get();
  deps.processes = processes.get();
  deps.default_runtime = config.defaults.runtime;
  deps.started_at = absl::Now();
  deps.max_image_bytes = config.images.max_bytes;
  auto services = MakeServices(deps);

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  grpc::ResourceQuota quota("corrald");
  quota.SetMaxThreads(512);
  builder.SetResourceQuota(quota);
  builder.SetMaxReceiveMessageSize(
      static_cast<int>(config.daemon.max_request_bytes));
  builder.SetMaxSendMessageSize(-1);
  // Idle or half-open clients must not pile up: ping every 5 minutes and
  // drop connections that do not answer.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 300000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
  for (auto& service : services) builder.RegisterService(service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server)
    return fail(absl::InternalError("the gRPC server did not start"));
  if (auto* health = server->GetHealthCheckService()) {
    health->SetServingStatus(true);
  }
  (*listener)->Start(server.get());
  (*manager)->StartReaper();

  Notify("READY=1");
  log->info("corrald 0.1.0 ready on {} (state {}, plugins {})",
            config.daemon.socket, state, config.daemon.plugin_dir);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  int received = 0;
  sigwait(&signals, &received);
  log->info("received signal {}; shutting down (sandboxes keep running)",
            received);
  Notify("STOPPING=1");
  // No new clients; no reaper or agent traffic (sandboxes keep running);
  // then the clients still connected, whose calls end now.
  (*listener)->Stop();
  // Processes first: their pumps stop and let go of the commands, which
  // the agents keep for the next daemon.
  processes->Shutdown();
  (*manager)->Shutdown();
  (*listener)->CloseConnections();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  workspaces_ready = nullptr;
  processes_ready = nullptr;
  return 0;
}

}  // namespace
}  // namespace corral::daemon

int main(int argc, char** argv) {
  // Signals are taken by sigwait in main; every thread inherits the block.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  return corral::daemon::Run(argc, argv);
}
