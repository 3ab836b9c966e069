// corrald: the Corral daemon. Owns every sandbox on this host behind the
// corral.v1 gRPC API on a Unix socket. Runs in the foreground; systemd (or
// launchd) keeps it running.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <set>

#include "CLI/CLI.hpp"
#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "corral/directory.h"
#include "corral/logging.h"
#include "corral/platform.h"
#include "corral/remove_tree.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"
#include "daemon/config/config.h"
#include "daemon/core/backend.h"
#include "daemon/core/instance.h"
#include "daemon/core/net_audit.h"
#include "daemon/core/processes.h"
#include "daemon/core/sandbox_manager.h"
#include "daemon/core/workspaces.h"
#include "daemon/images/image_store.h"
#include "daemon/images/tar_stream.h"
#include "daemon/net/egress.h"
#include "daemon/rpc/call_quota.h"
#include "daemon/rpc/listener.h"
#include "daemon/rpc/output_budget.h"
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
  const std::string exe = corral::platform::ExecutablePath();
  return exe.empty() ? "." : std::filesystem::path(exe).parent_path().string();
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

// Where each instance keeps its egress namespaces (net/egress.h).
constexpr char kEgressRoot[] = "/run/corral-net";

// `corrald --cleanup-orphans`: an operator's explicit request to remove
// what instances whose state directory is gone left on the host. Never run
// implicitly: a stopped daemon's sandboxes keep running and stay its own.
// With `only` set, just that instance (when its state is gone).
int CleanupOrphans(const DaemonConfig& config, const HostRegistry& registry,
                   const std::string& only) {
  if (!only.empty() && !ValidInstanceId(only)) {
    std::cerr << "corrald: --instance: '" << only
              << "' is not an instance id (16 lowercase hex characters)\n";
    return 2;
  }
  std::vector<std::string> live;
  std::vector<std::string> orphans;
  for (const InstanceRecord& record : registry.Instances()) {
    if (HostRegistry::IsLive(record)) {
      live.push_back(record.id);
    } else if (only.empty() || record.id == only) {
      orphans.push_back(record.id);
    }
  }
  if (!only.empty() &&
      std::find(live.begin(), live.end(), only) != live.end()) {
    std::cerr << "corrald: instance " << only
              << " is live (its state directory exists); nothing removed\n";
    return 1;
  }
  std::cout << "live instances: " << live.size()
            << "; orphaned instances: " << orphans.size() << "\n";
  PluginHost::Options plugin_options;
  plugin_options.plugin_dir = config.daemon.plugin_dir;
  plugin_options.agent_path = config.daemon.agent_path;
  plugin_options.options = config.runtimes;
  // No state of its own: plugins get an empty runtime directory, which
  // they leave alone for orphans (ReconcileRequest.orphans).
  char scratch[] = "/tmp/corrald-cleanup-XXXXXX";
  if (::mkdtemp(scratch) == nullptr) {
    std::cerr << "corrald: mkdtemp: " << std::strerror(errno) << "\n";
    return 1;
  }
  absl::Cleanup remove_scratch = [&] { (void)corral::RemoveTree(scratch); };
  plugin_options.runtime_dir = scratch;
  auto plugins = PluginHost::Create(plugin_options);
  if (!plugins.ok()) {
    std::cerr << "corrald: " << plugins.status().message() << "\n";
    return 1;
  }
  int failures = 0;
  for (const std::string& name : (*plugins)->KnownRuntimes()) {
    auto backend = (*plugins)->Get(name);
    if (!backend.ok()) continue;  // not built here
    auto removed = (*backend)->RemoveOrphans(live, only);
    if (!removed.ok()) {
      std::cerr << "corrald: runtime " << name << ": "
                << removed.status().message() << "\n";
      // An engine that does not run here has nothing of anyone's to clean;
      // anything else is a failure.
      if (!absl::IsUnavailable(removed.status())) ++failures;
      continue;
    }
    for (const std::string& id : *removed) {
      std::cout << "removed " << name << " sandbox " << id << "\n";
    }
  }
  std::set<std::string> live_set(live.begin(), live.end());
  for (const auto& [uid, claim] : registry.Claims()) {
    if (live_set.count(claim.instance_id) != 0) continue;
    if (!only.empty() && claim.instance_id != only) continue;
    if (auto s = registry.ReleaseUid(uid, claim.instance_id); !s.ok()) {
      std::cerr << "corrald: " << s.message() << "\n";
      ++failures;
      continue;
    }
    std::cout << "released host uid " << uid << " of instance "
              << claim.instance_id << "\n";
  }
  // Egress namespaces of instances that are not live.
  if (auto dirs = ListDirectory(kEgressRoot); dirs.ok()) {
    for (const std::string& id : *dirs) {
      if (!ValidInstanceId(id) || live_set.count(id) != 0) continue;
      if (!only.empty() && id != only) continue;
      if (auto s = net::Egress::RemoveAll(absl::StrCat(kEgressRoot, "/", id));
          !s.ok()) {
        std::cerr << "corrald: " << s.message() << "\n";
        ++failures;
        continue;
      }
      std::cout << "removed the egress namespaces of instance " << id << "\n";
    }
  }
  for (const std::string& id : orphans) {
    if (auto s = registry.Unregister(id); !s.ok()) {
      std::cerr << "corrald: " << s.message() << "\n";
      ++failures;
    }
  }
  return failures == 0 ? 0 : 1;
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
  bool cleanup_orphans = false;
  app.add_flag("--cleanup-orphans", cleanup_orphans,
               "Remove what daemon instances whose state directory is gone "
               "left on this host (cgroups and their processes, containers, "
               "host uid claims), then exit");
  std::string only_instance;
  app.add_option("--instance", only_instance,
                 "With --cleanup-orphans: only this instance's leftovers");
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
  config.daemon.unpack_path =
      std::filesystem::weakly_canonical(UnpackPath(config, exe_dir), fs_error)
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
  corral::platform::StartChildReaper();

  // Every archive a client or a sandbox hands the daemon is decoded by this
  // helper, never in this process.
  if (auto s = SetTarDecoder(config.daemon.unpack_path); !s.ok()) {
    return fail(s);
  }
  auto registry = HostRegistry::Open();
  if (!registry.ok()) return fail(registry.status());
  if (cleanup_orphans) return CleanupOrphans(config, *registry, only_instance);

  const std::string& state = config.daemon.state_dir;
  if (auto s = MakePrivateDir(state); !s.ok()) return fail(s);
  auto lock = LockStateDir(state);
  if (!lock.ok()) return fail(lock.status());
  // Which daemon this is: the same across restarts, and on every host
  // object it makes, so that other daemons on this host leave them alone.
  auto instance_id = LoadOrCreateInstanceId(state);
  if (!instance_id.ok()) return fail(instance_id.status());
  if (auto s = registry->Register({*instance_id, state, config.daemon.socket});
      !s.ok()) {
    return fail(s);
  }
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

  // The egress path. Without it (no nftables in this kernel, say) the
  // daemon still runs sandboxes without network, and says why the others
  // are refused.
  // The audit's writer outlives the egress path, which feeds it.
  std::unique_ptr<NetAudit> net_audit;
  std::unique_ptr<net::Egress> egress;
  std::string egress_unavailable;
  {
    // Host-wide, by instance: `--cleanup-orphans` finds what a daemon
    // whose state is gone left (its namespaces are bind mounts).
    (void)::mkdir(kEgressRoot, 0700);
    auto options =
        MakeEgressOptions(config, absl::StrCat(kEgressRoot, "/", *instance_id));
    if (!options.ok() && absl::IsInvalidArgument(options.status())) {
      return fail(options.status());
    }
    if (options.ok()) {
      net_audit = std::make_unique<NetAudit>(
          store->get(), static_cast<int64_t>(config.network.audit_events));
      options->on_event = [audit = net_audit.get()](const net::NetEvent& e) {
        audit->Record(e);
      };
      auto started = net::Egress::Start(*std::move(options));
      if (started.ok()) {
        egress = *std::move(started);
      } else {
        egress_unavailable = std::string(started.status().message());
      }
    } else {
      egress_unavailable = std::string(options.status().message());
    }
    if (!egress) {
      log->warn("no network egress for sandboxes: {}", egress_unavailable);
    }
  }
  // However this function returns (a failed start included): sandboxes
  // with network keep running and keep their egress namespace for the next
  // start; without any, nothing is left behind.
  bool recovered = false;  // Recover ran: idle() then means "no sandbox"
  absl::Cleanup remove_idle_egress = [&] {
    if (!egress || !egress->idle()) return;
    if (!recovered) {
      // Before recovery only an empty store says that no sandbox of an
      // earlier daemon still uses the namespace.
      auto count = (*store)->CountSandboxes();
      if (!count.ok() || *count != 0) return;
    }
    egress.reset();
    if (auto s = net::Egress::RemoveAll(
            absl::StrCat(kEgressRoot, "/", *instance_id));
        !s.ok()) {
      log->warn("{}", s.ToString());
    }
  };

  PluginHost::Options plugin_options;
  plugin_options.plugin_dir = config.daemon.plugin_dir;
  plugin_options.agent_path = config.daemon.agent_path;
  plugin_options.runtime_dir = absl::StrCat(state, "/runtime");
  plugin_options.options = config.runtimes;
  plugin_options.instance_id = *instance_id;
  auto plugins = PluginHost::Create(plugin_options);
  if (!plugins.ok()) return fail(plugins.status());

  CoreOptions core;
  core.state_dir = state;
  core.rules = MakeSpecRules(config);
  core.uid_base = config.sandbox_uids.base;
  core.uid_count = config.sandbox_uids.count;
  core.max_sandboxes = config.daemon.max_sandboxes;
  core.instance_id = *instance_id;
  core.registry = &*registry;
  core.egress = egress.get();
  if (!egress) core.egress_unavailable = egress_unavailable;
  const auto resolve_policy = [&config](const Caller& caller) {
    return ResolveCallerPolicy(config, caller);
  };
  core.resolve_policy = resolve_policy;
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
  recovered = true;
  // What a killed daemon left on the egress path for sandboxes now gone.
  if (egress) egress->Prune();
  processes_ready = processes.get();

  ListenerOptions listener_options;
  listener_options.path = config.daemon.socket;
  listener_options.mode = config.daemon.socket_mode;
  listener_options.group = config.daemon.socket_group;
  listener_options.admin_group = config.daemon.admin_group;
  listener_options.resolve_policy = resolve_policy;
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
  deps.net_audit = net_audit.get();
  CallQuota call_quota;
  deps.calls = &call_quota;
  OutputBudget output_budget(config.daemon.output_buffer_bytes);
  deps.output_budget = &output_budget;
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
  log->info("corrald 0.1.0 ready on {} (instance {}, state {}, plugins {})",
            config.daemon.socket, *instance_id, state,
            config.daemon.plugin_dir);

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
