#include "daemon/core/sandbox_manager.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "corral/hex_id.h"
#include "corral/logging.h"
#include "corral/remove_tree.h"
#include "corral/status_macros.h"
#include "corral/v1/files.pb.h"
#include "daemon/agent/fs_call.h"
#include "daemon/core/instance.h"
#include "daemon/core/lifecycle.h"
#include "daemon/images/image_store.h"
#include "daemon/net/egress.h"
#include "daemon/store/store.h"
#include "google/protobuf/util/time_util.h"

namespace corral::daemon {
namespace {

namespace v1 = corral::v1;
namespace bv1 = corral::backend::v1;
using google::protobuf::util::TimeUtil;

std::shared_ptr<spdlog::logger> Log() { return corral::Logger("sandboxes"); }

absl::StatusOr<std::string> NewSandboxId() { return RandomHexId(16); }

// With mode none (published ports only) nothing goes out.
net::SandboxPolicy EgressPolicyOf(const v1::NetworkPolicy& policy,
                                  v1::NetworkMode mode) {
  // Validated when the sandbox was made (PlanSandbox).
  net::SandboxPolicy egress;
  egress.allow.domains.assign(policy.allow_domains().begin(),
                              policy.allow_domains().end());
  for (const auto& text : policy.allow_cidrs()) {
    if (auto cidr = net::ParseCidr(text, /*allow_port=*/true); cidr.ok()) {
      egress.allow.cidrs.push_back(*cidr);
    }
  }
  egress.outbound = mode != v1::NETWORK_MODE_NONE;
  return egress;
}

// Validated by PlanSandbox (or read back from a record it made).
template <typename Ports>
std::vector<net::Published> PublishedOf(const Ports& ports) {
  std::vector<net::Published> published;
  for (const v1::PortMapping& port : ports) {
    net::Published p;
    p.host_address = net::ParseIpv4(port.host_address()).value_or(0x7f000001);
    p.host_port = static_cast<uint16_t>(port.host_port());
    p.sandbox_port = static_cast<uint16_t>(port.sandbox_port());
    published.push_back(p);
  }
  return published;
}

net::SecretSubstitution SubstitutionOf(const SecretRecord& record) {
  net::SecretSubstitution secret;
  secret.placeholder = record.placeholder;
  secret.value = record.value;
  secret.hosts = absl::StrSplit(record.hosts, ',', absl::SkipEmpty());
  return secret;
}

// Where a sandbox with secrets finds the CAs it trusts (written by the
// daemon at create; /tmp is a fresh tmpfs on every runtime), and the
// variables that point common TLS clients there: OpenSSL's, curl's, git's,
// Python requests' and Node.js's.
constexpr char kTrustBundlePath[] = "/tmp/corral-ca-certificates.pem";
constexpr const char* kTrustBundleVariables[] = {
    "SSL_CERT_FILE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "REQUESTS_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS"};

// Writes `bundle` to kTrustBundlePath in the sandbox.
absl::Status WriteTrustBundle(AgentConnection& agent,
                              const std::string& bundle) {
  corral::agent::v1::FsRequest request;
  request.mutable_write()->set_path(kTrustBundlePath);
  request.mutable_write()->set_mode(0444);
  ASSIGN_OR_RETURN(auto call, FsCall::Start(agent, request, /*with_input=*/true,
                                            absl::Now() + absl::Seconds(30)));
  RETURN_IF_ERROR(call->SendData(bundle));
  RETURN_IF_ERROR(call->CloseInput());
  return Annotate(call->Finish().status(),
                  absl::StrCat("writing ", kTrustBundlePath));
}

google::protobuf::Timestamp ToProto(absl::Time t) {
  return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(t));
}

// A workspace is the sandbox's to write: it may hold symlinks to anywhere,
// so it is removed fd-relative, never following one.
absl::Status RemoveWorkspace(const std::string& dir) {
  return corral::RemoveTree(dir);
}

bool CallerSees(const Caller& caller, const v1::Sandbox& sandbox) {
  return caller.admin || sandbox.owner_uid() == caller.uid;
}

std::string GuaranteeList(const std::vector<int>& guarantees) {
  std::vector<std::string> names;
  for (int g : guarantees) {
    names.push_back(v1::Guarantee_Name(static_cast<v1::Guarantee>(g)));
  }
  return absl::StrJoin(names, ", ");
}

}  // namespace

struct SandboxManager::Live {
  std::mutex mutex;  // guards every field below
  v1::Sandbox view;
  // The host uid claimed for it (0: none); given back when it is destroyed.
  uint32_t host_uid = 0;
  // Idle tracking: the last activity, commands and shells running now, and
  // the last activity written to the store (it is written at most every
  // few seconds, not at every call).
  absl::Time last_activity = absl::Now();
  int running_commands = 0;
  absl::Time last_activity_stored = absl::InfinitePast();
  bv1::SandboxHandle handle;
  Backend* backend = nullptr;  // not owned
  std::shared_ptr<AgentConnection> agent;
  std::string workspace_dir;
  bool destroyed = false;  // Destroy ran; the record is gone
  // Paused when the daemon stopped: resumed by Recover, paused again by
  // FinishRecovery.
  bool pause_after_recovery = false;
};

absl::StatusOr<std::unique_ptr<SandboxManager>> SandboxManager::Create(
    CoreOptions options, Store* store, ImageStore* images,
    PluginHost* plugins) {
  const std::string workspaces = absl::StrCat(options.state_dir, "/workspaces");
  std::error_code error;
  std::filesystem::create_directories(workspaces, error);
  if (error) {
    return absl::InternalError(
        absl::StrCat("create ", workspaces, ": ", error.message()));
  }
  if (::chmod(workspaces.c_str(), 0700) != 0) {
    return ErrnoStatus(absl::StrCat("chmod ", workspaces));
  }
  return std::unique_ptr<SandboxManager>(
      new SandboxManager(std::move(options), store, images, plugins));
}

SandboxManager::~SandboxManager() { Shutdown(); }

void SandboxManager::Shutdown() {
  {
    std::lock_guard lock(reaper_mutex_);
    stopping_ = true;
  }
  reaper_wake_.notify_all();
  if (reaper_.joinable()) reaper_.join();
  std::map<std::string, std::shared_ptr<Live>> live;
  {
    std::lock_guard lock(mutex_);
    live = live_;
  }
  for (auto& [id, sandbox] : live) {
    std::lock_guard lock(sandbox->mutex);
    if (sandbox->agent) sandbox->agent->Close();
  }
}

absl::StatusOr<v1::Sandbox> SandboxManager::CreateSandbox(
    const Caller& caller, const v1::CreateSandboxRequest& request,
    const SandboxPreparer& prepare, const std::string& memory) {
  const CallerPolicy policy = PolicyOf(caller);
  ASSIGN_OR_RETURN(SandboxPlan plan,
                   PlanSandbox(request, options_.rules, policy));

  // The runtime must exist, be available here, and give what was required.
  RuntimeInfo runtime = plugins_->Probe(plan.runtime);
  if (!runtime.available) {
    auto backend = plugins_->Get(plan.runtime);
    if (!backend.ok() && absl::IsNotFound(backend.status())) {
      auto known = plugins_->KnownRuntimes();
      return absl::InvalidArgumentError(
          absl::StrCat("unknown runtime '", plan.runtime.substr(0, 64),
                       "' (known: ", absl::StrJoin(known, ", "), ")"));
    }
    return absl::UnavailableError(absl::StrCat(
        "runtime ", plan.runtime, " cannot run here: ", runtime.reason));
  }
  // The egress policy holds only where the runtime put the sandbox on the
  // egress path; a runtime that cannot must not get network access.
  // Published ports need the link too, whatever the mode (with none it
  // carries inbound connections only).
  const bool networked =
      plan.network != v1::NETWORK_MODE_NONE || !plan.ports.empty();
  std::vector<int> required_guarantees = plan.require;
  if (networked) required_guarantees.push_back(v1::GUARANTEE_EGRESS_POLICY);
  for (int required : required_guarantees) {
    if (std::find(runtime.guarantees.begin(), runtime.guarantees.end(),
                  required) == runtime.guarantees.end()) {
      return absl::FailedPreconditionError(absl::StrCat(
          "runtime ", plan.runtime, " cannot guarantee ",
          v1::Guarantee_Name(static_cast<v1::Guarantee>(required)),
          " (it guarantees: ", GuaranteeList(runtime.guarantees), ")"));
    }
  }
  ASSIGN_OR_RETURN(Backend * backend, plugins_->Get(plan.runtime));

  bv1::RootFs rootfs;
  if (plan.image == kHostImage) {
    rootfs.set_host(true);
  } else {
    ASSIGN_OR_RETURN(auto dir, images_->RootfsDir(plan.image));
    rootfs.set_directory(dir.string());
  }

  ASSIGN_OR_RETURN(std::string id, NewSandboxId());
  const absl::Time now = absl::Now();
  v1::Sandbox view;
  view.set_id(id);
  view.set_state(v1::SANDBOX_STATE_CREATING);
  view.set_runtime(plan.runtime);
  view.set_image(plan.image);
  auto* limits = view.mutable_limits();
  limits->set_cpu_millis(plan.limits.cpu_millis);
  limits->set_memory_mib(plan.limits.memory_mib);
  limits->set_pids(plan.limits.pids);
  limits->set_disk_mib(plan.limits.disk_mib);
  view.set_network(plan.network);
  *view.mutable_network_policy() = plan.network_policy;
  if (networked && options_.egress == nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        plan.network != v1::NETWORK_MODE_NONE
            ? absl::StrCat("network ", v1::NetworkMode_Name(plan.network))
            : std::string("published ports"),
        " are not available: ", options_.egress_unavailable));
  }
  net::SandboxPolicy egress_policy =
      EgressPolicyOf(plan.network_policy, plan.network);
  view.mutable_env()->insert(plan.env.begin(), plan.env.end());
  // Each secret's variable holds a placeholder; the value stays with the
  // daemon (the store's secrets table and the egress proxy).
  std::vector<SecretRecord> secrets;
  for (const v1::Secret& secret : plan.secrets) {
    ASSIGN_OR_RETURN(std::string token, RandomHexId(16));
    SecretRecord record;
    record.name = secret.name();
    record.placeholder = absl::StrCat("corral-secret-", token);
    record.value = secret.value();
    record.hosts = absl::StrJoin(secret.hosts(), ",");
    (*view.mutable_env())[secret.name()] = record.placeholder;
    v1::SecretBinding* binding = view.add_secrets();
    binding->set_name(secret.name());
    *binding->mutable_hosts() = secret.hosts();
    egress_policy.secrets.push_back(SubstitutionOf(record));
    secrets.push_back(std::move(record));
  }
  // HTTPS to their hosts is terminated with a CA of the sandbox's own,
  // which the sandbox trusts through the usual variables (a variable the
  // caller set wins).
  std::string trust_bundle;
  if (!secrets.empty()) {
    std::vector<std::string> hosts;
    for (const v1::Secret& secret : plan.secrets) {
      for (const auto& host : secret.hosts()) {
        if (std::find(hosts.begin(), hosts.end(), host) == hosts.end()) {
          hosts.push_back(host);
        }
      }
    }
    ASSIGN_OR_RETURN(egress_policy.ca, net::MakeSandboxCa(id, hosts));
    ASSIGN_OR_RETURN(trust_bundle,
                     options_.egress->TrustBundle(*egress_policy.ca));
    for (const char* variable : kTrustBundleVariables) {
      view.mutable_env()->insert({variable, kTrustBundlePath});
    }
  }
  view.mutable_labels()->insert(plan.labels.begin(), plan.labels.end());
  view.set_workdir(plan.workdir);
  view.set_hostname(plan.hostname.empty()
                        ? absl::StrCat("corral-", id.substr(0, 8))
                        : plan.hostname);
  view.set_owner_uid(caller.uid);
  view.set_owner_gid(caller.gid);
  *view.mutable_created_at() = ToProto(now);
  *view.mutable_expires_at() = ToProto(
      now + absl::Seconds(static_cast<int64_t>(plan.limits.ttl_seconds)));
  view.mutable_runtime_options()->insert(plan.runtime_options.begin(),
                                         plan.runtime_options.end());
  view.set_idle_timeout_seconds(plan.idle_timeout_seconds);
  *view.mutable_last_activity_at() = ToProto(now);

  // The record goes in first, so a crash from here on leaves something that
  // recovery finds and cleans up.
  uint32_t host_uid = 0;
  {
    std::lock_guard lock(create_mutex_);
    ASSIGN_OR_RETURN(uint64_t count, store_->CountSandboxes());
    if (count >= options_.max_sandboxes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "the daemon already runs ", count, " sandboxes, its maximum"));
    }
    if (!caller.admin && policy.quotas.sandboxes != 0) {
      ASSIGN_OR_RETURN(int64_t mine, store_->CountSandboxesByOwner(caller.uid));
      if (mine >= policy.quotas.sandboxes) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "quota sandboxes = ", policy.quotas.sandboxes, " reached: uid ",
            caller.uid, " already has ", mine, " sandboxes (quotas of ",
            policy.name, "); remove one first"));
      }
    }
    RETURN_IF_ERROR(CheckStorageQuota(
        caller, plan.limits.disk_mib << 20,
        absl::StrCat("a sandbox with a ", plan.limits.disk_mib, " MiB disk")));
    SandboxRecord record;
    record.id = id;
    record.owner_uid = caller.uid;
    record.owner_gid = caller.gid;
    record.runtime = plan.runtime;
    record.image = plan.image;
    record.state = v1::SANDBOX_STATE_CREATING;
    record.created_at = now;
    record.expires_at = FromProto(view.expires_at());
    record.spec = view.SerializeAsString();
    // Every sandbox gets a host uid of its own, with or without a user
    // namespace: the runtimes that run anything of it on the host as a
    // plain process (QEMU) run it as that uid, never as root. Other daemons
    // on this host hand out uids too: the registry says which are free.
    HostUidClaims claims;
    if (options_.registry != nullptr) {
      claims.claim = [&](uint32_t uid) {
        return options_.registry->ClaimUid(uid, options_.instance_id, id);
      };
      claims.release = [&](uint32_t uid) { ReleaseHostUid(uid); };
    }
    ASSIGN_OR_RETURN(
        host_uid,
        store_->InsertSandboxWithHostUid(
            record, HostUidRange{options_.uid_base, options_.uid_count},
            options_.registry != nullptr ? &claims : nullptr));
  }
  auto live = std::make_shared<Live>();
  live->view = view;
  live->host_uid = host_uid;
  live->backend = backend;
  live->workspace_dir = absl::StrCat(options_.state_dir, "/workspaces/", id);
  {
    std::lock_guard lock(mutex_);
    live_[id] = live;
  }
  std::unique_lock live_lock(live->mutex);

  auto fail = [&](absl::Status status) -> absl::Status {
    Log()->warn("create {} failed: {}", id, status.ToString());
    if (!live->handle.id().empty()) (void)backend->Destroy(live->handle);
    if (auto s = RemoveWorkspace(live->workspace_dir); !s.ok()) {
      Log()->error("create {}: {}", id, s.ToString());
    }
    if (networked) options_.egress->Detach(id);
    (void)store_->DeleteSandbox(id);
    ReleaseHostUid(live->host_uid);
    live->destroyed = true;
    live_lock.unlock();
    std::lock_guard lock(mutex_);
    live_.erase(id);
    return status;
  };

  if (::mkdir(live->workspace_dir.c_str(), 0700) != 0) {
    return fail(ErrnoStatus(absl::StrCat("mkdir ", live->workspace_dir)));
  }
  if (!secrets.empty()) {
    if (auto s = store_->PutSecrets(id, secrets); !s.ok()) return fail(s);
    if (auto s = store_->PutSandboxCa(id, egress_policy.ca->certificate_pem,
                                      egress_policy.ca->key_pem);
        !s.ok()) {
      return fail(s);
    }
  }
  bv1::SandboxSpec spec;
  spec.set_id(id);
  *spec.mutable_rootfs() = rootfs;
  spec.set_workspace_dir(live->workspace_dir);
  spec.set_hostname(view.hostname());
  spec.set_cpu_millis(plan.limits.cpu_millis);
  spec.set_memory_bytes(plan.limits.memory_mib << 20);
  spec.set_pids(plan.limits.pids);
  spec.set_disk_bytes(plan.limits.disk_mib << 20);
  spec.set_host_uid(host_uid);
  spec.set_host_gid(host_uid);
  spec.set_network_none(true);
  const auto link_kind = runtime.details.find("network_link");
  const bool tap_link =
      link_kind != runtime.details.end() && link_kind->second == "tap";
  if (networked && tap_link) {
    auto tap = options_.egress->AttachTap(id, egress_policy);
    if (!tap.ok()) return fail(tap.status());
    live->view.set_network_address(tap->address);
    spec.set_network_none(false);
    bv1::TapLink* link = spec.mutable_tap();
    link->set_netns_path(tap->netns_path);
    link->set_name(tap->name);
    link->set_address(tap->address);
    link->set_prefix(static_cast<uint32_t>(tap->prefix));
    link->set_gateway(tap->gateway);
  } else if (networked) {
    auto address = options_.egress->Attach(id, egress_policy);
    if (!address.ok()) return fail(address.status());
    live->view.set_network_address(*address);
    spec.set_network_none(false);
    spec.set_netns_path(options_.egress->NetnsPath(id));
  }
  spec.mutable_runtime_options()->insert(plan.runtime_options.begin(),
                                         plan.runtime_options.end());

  auto created = backend->Create(spec, memory);
  if (!created.ok()) return fail(created.status());
  if (networked && !created->netns_to_link.empty()) {
    // The runtime made its own namespace: it is linked instead.
    live->handle = created->handle;
    if (auto s = options_.egress->Adopt(id, created->netns_to_link); !s.ok()) {
      return fail(s);
    }
    created->guarantees.push_back(v1::GUARANTEE_EGRESS_POLICY);
  }
  // The runtime may give one sandbox less than it claims (linux without a
  // user namespace, qemu on the host image): a requirement holds for the
  // sandbox made, not for the runtime in general.
  for (int required : required_guarantees) {
    if (std::find(created->guarantees.begin(), created->guarantees.end(),
                  required) == created->guarantees.end()) {
      live->handle = created->handle;
      return fail(absl::FailedPreconditionError(absl::StrCat(
          "runtime ", plan.runtime, " cannot guarantee ",
          v1::Guarantee_Name(static_cast<v1::Guarantee>(required)),
          " for this sandbox (it gets: ", GuaranteeList(created->guarantees),
          "; the runtime's options or image decide)")));
    }
  }
  live->handle = created->handle;
  if (auto s =
          store_->UpdateSandboxHandle(id, live->handle.SerializeAsString());
      !s.ok()) {
    return fail(s);
  }
  auto agent = AgentConnection::Open(std::move(created->agent_fd),
                                     options_.agent_hello_timeout);
  if (!agent.ok()) {
    return fail(Annotate(agent.status(), "the sandbox's agent did not start"));
  }
  live->agent = *agent;
  if (!trust_bundle.empty()) {
    if (auto s = WriteTrustBundle(**agent, trust_bundle); !s.ok()) {
      return fail(s);
    }
  }
  if (!plan.ports.empty()) {
    std::vector<net::Published> ports = PublishedOf(plan.ports);
    if (auto s = options_.egress->Publish(id, &ports); !s.ok()) return fail(s);
    for (size_t i = 0; i < ports.size(); ++i) {
      v1::PortMapping* mapping = live->view.add_ports();
      *mapping = plan.ports[i];
      mapping->set_host_port(ports[i].host_port);
    }
  }
  if (prepare) {
    if (auto s = prepare(**agent, id); !s.ok()) return fail(s);
  }
  live->view.set_state(v1::SANDBOX_STATE_RUNNING);
  live->view.set_agent_version((*agent)->hello().agent_version());
  for (int g : created->guarantees) {
    live->view.add_guarantees(static_cast<v1::Guarantee>(g));
  }
  live->view.mutable_runtime_details()->insert(created->details.begin(),
                                               created->details.end());
  if (auto s = store_->UpdateSandboxSpec(id, live->view.SerializeAsString());
      !s.ok()) {
    return fail(s);
  }
  if (auto s = store_->UpdateSandboxState(id, v1::SANDBOX_STATE_RUNNING, "");
      !s.ok()) {
    return fail(s);
  }
  (void)store_->AppendEvent(id, "created",
                            absl::StrCat("runtime ", plan.runtime, ", image ",
                                         plan.image, ", uid ", caller.uid));
  Log()->info("created sandbox {} (runtime {}, image {}, owner {})", id,
              plan.runtime, plan.image, caller.uid);
  return live->view;
}

void SandboxManager::ReleaseHostUid(uint32_t uid) const {
  if (uid == 0 || options_.registry == nullptr) return;
  if (auto s = options_.registry->ReleaseUid(uid, options_.instance_id);
      !s.ok()) {
    Log()->error("giving back host uid {}: {}", uid, s.ToString());
  }
}

absl::StatusOr<uint64_t> SandboxManager::StorageBytesOf(uid_t uid) {
  uint64_t bytes = 0;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [id, live] : live_) {
      std::unique_lock live_lock(live->mutex, std::try_to_lock);
      if (live_lock.owns_lock()) {
        if (live->destroyed || live->view.owner_uid() != uid) continue;
        bytes += live->view.limits().disk_mib() << 20;
        continue;
      }
      // One busy being made or removed: its record has what counts.
      v1::Sandbox view;
      auto record = store_->GetSandbox(id);
      if (record.ok() && view.ParseFromString(record->spec) &&
          view.owner_uid() == uid) {
        bytes += view.limits().disk_mib() << 20;
      }
    }
  }
  ASSIGN_OR_RETURN(const uint64_t snapshots, store_->SnapshotBytesByOwner(uid));
  return bytes + snapshots;
}

absl::Status SandboxManager::CheckStorageQuota(const Caller& caller,
                                               uint64_t more_bytes,
                                               const std::string& what) {
  if (caller.admin) return absl::OkStatus();
  const CallerPolicy policy = PolicyOf(caller);
  if (policy.quotas.storage_mib == 0) return absl::OkStatus();
  ASSIGN_OR_RETURN(const uint64_t used, StorageBytesOf(caller.uid));
  const uint64_t quota = policy.quotas.storage_mib << 20;
  if (used + more_bytes <= quota) return absl::OkStatus();
  auto mib = [](uint64_t bytes) { return (bytes + (1u << 20) - 1) >> 20; };
  return absl::ResourceExhaustedError(
      absl::StrCat("quota storage_mib = ", policy.quotas.storage_mib,
                   " reached: uid ", caller.uid, " holds ", mib(used),
                   " MiB (workspace disks, snapshots and memory snapshots); ",
                   what, " would make it ", mib(used + more_bytes),
                   " MiB (quotas of ", policy.name, ")"));
}

void SandboxManager::NoteActivity(const std::string& id) {
  CommandStarted(id, 0);
}

void SandboxManager::CommandStarted(const std::string& id, int delta) {
  std::shared_ptr<Live> live;
  {
    std::lock_guard lock(mutex_);
    if (auto it = live_.find(id); it != live_.end()) live = it->second;
  }
  if (!live) return;
  std::lock_guard lock(live->mutex);
  live->running_commands += delta;
  live->last_activity = absl::Now();
}

CallerPolicy SandboxManager::PolicyOf(const Caller& caller) const {
  if (caller.policy) return *caller.policy;
  return options_.resolve_policy ? options_.resolve_policy(caller)
                                 : CallerPolicy{};
}

absl::StatusOr<std::shared_ptr<SandboxManager::Live>> SandboxManager::Find(
    const Caller& caller, const std::string& id) {
  RETURN_IF_ERROR(ValidateSandboxId(id));
  std::shared_ptr<Live> live;
  {
    std::lock_guard lock(mutex_);
    if (auto it = live_.find(id); it != live_.end()) live = it->second;
  }
  if (live) {
    std::lock_guard lock(live->mutex);
    if (!live->destroyed && CallerSees(caller, live->view)) return live;
  }
  return absl::NotFoundError(absl::StrCat("no sandbox ", id));
}

absl::StatusOr<SandboxAccess> SandboxManager::Access(const Caller& caller,
                                                     const std::string& id,
                                                     Action action,
                                                     bool activity) {
  ASSIGN_OR_RETURN(auto live, Find(caller, id));
  CheckAgent(live);
  std::lock_guard lock(live->mutex);
  RETURN_IF_ERROR(CheckAllowed(live->view, action));
  if (!live->agent || live->agent->closed()) {
    return absl::UnavailableError(
        absl::StrCat("sandbox ", id, " has no agent connection"));
  }
  if (activity) live->last_activity = absl::Now();
  return SandboxAccess{live->agent, live->view};
}

absl::StatusOr<v1::Sandbox> SandboxManager::GetSandbox(const Caller& caller,
                                                       const std::string& id) {
  ASSIGN_OR_RETURN(auto live, Find(caller, id));
  CheckAgent(live);
  std::lock_guard lock(live->mutex);
  return ViewOf(*live);
}

absl::StatusOr<std::vector<v1::Sandbox>> SandboxManager::ListSandboxes(
    const Caller& caller, const v1::ListSandboxesRequest& request) {
  std::vector<std::shared_ptr<Live>> all;
  {
    std::lock_guard lock(mutex_);
    for (auto& [id, live] : live_) all.push_back(live);
  }
  std::vector<v1::Sandbox> result;
  for (auto& live : all) {
    CheckAgent(live);
    std::unique_lock lock(live->mutex, std::try_to_lock);
    // A sandbox busy being created or destroyed is shown from the store.
    v1::Sandbox view;
    if (lock.owns_lock()) {
      if (live->destroyed) continue;
      view = ViewOf(*live);
    } else {
      auto record = store_->GetSandbox(live->view.id());
      if (!record.ok() || !view.ParseFromString(record->spec)) continue;
      view.set_state(static_cast<v1::SandboxState>(record->state));
    }
    if (!CallerSees(caller, view)) continue;
    if (request.state() != v1::SANDBOX_STATE_UNSPECIFIED &&
        view.state() != request.state()) {
      continue;
    }
    if (!request.runtime().empty() && view.runtime() != request.runtime()) {
      continue;
    }
    bool labels_match = true;
    for (const auto& [k, v] : request.label_selector()) {
      auto it = view.labels().find(k);
      if (it == view.labels().end() || it->second != v) labels_match = false;
    }
    if (labels_match) result.push_back(std::move(view));
  }
  std::sort(result.begin(), result.end(), [](const auto& a, const auto& b) {
    return TimeUtil::TimestampToNanoseconds(a.created_at()) <
           TimeUtil::TimestampToNanoseconds(b.created_at());
  });
  return result;
}

absl::Status SandboxManager::DeleteSandbox(const Caller& caller,
                                           const std::string& id) {
  ASSIGN_OR_RETURN(auto live, Find(caller, id));
  return Destroy(live, "deleted");
}

absl::Status SandboxManager::Destroy(const std::shared_ptr<Live>& live,
                                     const std::string& event) {
  const std::string id = live->view.id();
  bool destroyed = false;
  RETURN_IF_ERROR(DestroyLocked(live, event, &destroyed));
  // Outside the sandbox's lock: on_destroyed joins the threads that pump
  // its processes, and a pump takes that lock to note activity.
  if (destroyed && options_.on_destroyed) options_.on_destroyed(id);
  return absl::OkStatus();
}

absl::Status SandboxManager::DestroyLocked(const std::shared_ptr<Live>& live,
                                           const std::string& event,
                                           bool* destroyed) {
  std::lock_guard lock(live->mutex);
  if (live->destroyed) return absl::OkStatus();
  const std::string id = live->view.id();
  RETURN_IF_ERROR(CheckAllowed(live->view, Action::kDelete));
  live->view.set_state(v1::SANDBOX_STATE_DELETING);
  (void)store_->UpdateSandboxState(id, v1::SANDBOX_STATE_DELETING, "");
  if (live->agent) live->agent->Close();
  if (!live->handle.id().empty()) {
    if (auto s = live->backend->Destroy(live->handle); !s.ok()) {
      // Leave the record (DELETING) so that a retry or the next start
      // finishes the job; report the failure.
      Log()->error("destroy {} failed: {}", id, s.ToString());
      return Annotate(s, absl::StrCat("destroying sandbox ", id));
    }
  }
  if (options_.egress != nullptr && !live->view.network_address().empty()) {
    options_.egress->Detach(id);
  }
  if (auto s = RemoveWorkspace(live->workspace_dir); !s.ok()) {
    Log()->error("destroy {}: {}", id, s.ToString());
  }
  RETURN_IF_ERROR(store_->DeleteSandbox(id));
  ReleaseHostUid(live->host_uid);
  (void)store_->AppendEvent(id, event, "");
  live->destroyed = true;
  {
    std::lock_guard map_lock(mutex_);
    live_.erase(id);
  }
  Log()->info("{} sandbox {}", event, id);
  *destroyed = true;
  return absl::OkStatus();
}

absl::StatusOr<v1::Sandbox> SandboxManager::ExtendSandbox(
    const Caller& caller, const std::string& id, uint64_t ttl_seconds) {
  ASSIGN_OR_RETURN(auto live, Find(caller, id));
  const CallerPolicy policy = PolicyOf(caller);
  if (ttl_seconds == 0) {
    return absl::InvalidArgumentError("ttl_seconds: must be greater than 0");
  }
  RETURN_IF_ERROR(ValidateTtl(ttl_seconds, options_.rules, policy));
  std::lock_guard lock(live->mutex);
  RETURN_IF_ERROR(CheckAllowed(live->view, Action::kExtend));
  const absl::Time expires =
      absl::Now() + absl::Seconds(static_cast<int64_t>(ttl_seconds));
  // However often it is extended, a sandbox ends within its lifetime.
  if (const uint64_t lifetime = MaxLifetime(options_.rules, policy);
      lifetime != 0) {
    const absl::Time end = FromProto(live->view.created_at()) +
                           absl::Seconds(static_cast<int64_t>(lifetime));
    if (expires > end) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "limit lifetime_seconds = ", lifetime, " reached: sandbox ", id,
          " may live until ",
          absl::FormatTime(absl::RFC3339_sec, end, absl::UTCTimeZone()),
          " at most (", policy.name, "); extend it by ",
          std::max<int64_t>(0, absl::ToInt64Seconds(end - absl::Now())),
          " s at most"));
    }
  }
  RETURN_IF_ERROR(store_->SetExpiry(id, expires));
  *live->view.mutable_expires_at() = ToProto(expires);
  RETURN_IF_ERROR(
      store_->UpdateSandboxSpec(id, live->view.SerializeAsString()));
  (void)store_->AppendEvent(id, "extended",
                            absl::StrCat("ttl ", ttl_seconds, " s"));
  return live->view;
}

absl::StatusOr<std::unique_ptr<RunningCommand>> SandboxManager::StartExec(
    const Caller& caller, const v1::ExecStart& request) {
  ASSIGN_OR_RETURN(auto live, Find(caller, request.sandbox_id()));
  CheckAgent(live);
  std::shared_ptr<AgentConnection> agent;
  auto command = std::unique_ptr<RunningCommand>(new RunningCommand());
  corral::agent::v1::ExecStart start;
  {
    std::lock_guard lock(live->mutex);
    RETURN_IF_ERROR(CheckAllowed(live->view, Action::kExec));
    ASSIGN_OR_RETURN(start, PlanExec(request, live->view, options_.rules));
    agent = live->agent;
    command->backend_ = live->backend;
    command->handle_ = live->handle;
  }
  command->manager_ = this;
  command->sandbox_id_ = request.sandbox_id();
  for (const auto& arg : start.argv()) command->argv_.push_back(arg);
  command->cwd_ = start.cwd();
  // The OOM counter before the command, to tell afterwards whether the
  // memory limit killed something of it.
  if (auto stats = command->backend_->Stats(command->handle_); stats.ok()) {
    command->oom_kills_before_ = stats->oom_kills();
    command->oom_known_ = true;
  }
  command->started_at_ = absl::Now();
  ASSIGN_OR_RETURN(command->session_, agent->StartExec(start));
  // Running from here to its destruction: the sandbox is not idle.
  CommandStarted(command->sandbox_id_, +1);
  command->counted_ = true;
  return command;
}

absl::StatusOr<std::unique_ptr<ExecSession>> SandboxManager::StartSession(
    const Caller& caller, const v1::ExecStart& request,
    const std::function<void(corral::agent::v1::ExecStart&)>& adjust) {
  ASSIGN_OR_RETURN(auto live, Find(caller, request.sandbox_id()));
  CheckAgent(live);
  std::shared_ptr<AgentConnection> agent;
  corral::agent::v1::ExecStart start;
  {
    std::lock_guard lock(live->mutex);
    RETURN_IF_ERROR(CheckAllowed(live->view, Action::kExec));
    ASSIGN_OR_RETURN(start, PlanExec(request, live->view, options_.rules));
    agent = live->agent;
  }
  if (adjust) adjust(start);
  NoteActivity(request.sandbox_id());
  return agent->StartExec(start);
}

RunningCommand::~RunningCommand() {
  if (counted_) manager_->CommandStarted(sandbox_id_, -1);
}

absl::StatusOr<v1::ExecStreamResponse> RunningCommand::Next(
    absl::Time deadline) {
  if (finished_) {
    return absl::OutOfRangeError("the command has already exited");
  }
  ASSIGN_OR_RETURN(ExecEvent event, session_->Next(deadline));
  v1::ExecStreamResponse response;
  switch (event.kind) {
    case ExecEvent::Kind::kStarted:
      response.mutable_started()->set_pid(event.pid);
      break;
    case ExecEvent::Kind::kOutput: {
      auto* chunk = response.mutable_output();
      const int fd = event.fd == corral::agent::v1::FD_STDERR ? 2 : 1;
      chunk->set_stream(fd == 2 ? v1::OUTPUT_STREAM_STDERR
                                : v1::OUTPUT_STREAM_STDOUT);
      // The agent's frames may have been merged into one event (a lagging
      // reader); the API numbers its own chunks, consecutively.
      chunk->set_sequence(next_sequence_++);
      chunk->set_offset(offsets_[fd]);
      offsets_[fd] += event.data.size();
      if (kept_[fd].size() < kCommandLogOutputBytes) {
        kept_[fd].append(event.data, 0,
                         kCommandLogOutputBytes - kept_[fd].size());
      }
      chunk->set_data(std::move(event.data));
      break;
    }
    case ExecEvent::Kind::kExit: {
      finished_ = true;
      const auto& in = event.exit;
      auto* out = response.mutable_exit();
      out->set_exit_code(in.exit_code());
      out->set_signal(in.signal());
      out->set_timed_out(in.timed_out());
      out->set_stdout_truncated(in.stdout_truncated());
      out->set_stderr_truncated(in.stderr_truncated());
      out->set_duration_us(in.duration_us());
      out->set_error(in.error());
      out->set_stdout_bytes(in.stdout_bytes());
      out->set_stderr_bytes(in.stderr_bytes());
      // The counter rose while the command ran: the memory limit killed it
      // or one of its processes (a shell then exits 137 rather than dying
      // by the signal itself).
      if (!in.timed_out() && oom_known_) {
        auto stats = backend_->Stats(handle_);
        if (stats.ok() && stats->oom_kills() > oom_kills_before_) {
          out->set_oom_killed(true);
        }
      }
      // A VM's agent counts its own kernel's OOM kills (the host sees none).
      // A sandbox can only misreport its own commands this way.
      if (!in.timed_out() && in.oom_kills() > 0) out->set_oom_killed(true);
      manager_->RecordCommand(*this, *out);
      break;
    }
  }
  return response;
}

absl::Status RunningCommand::WriteStdin(std::string_view data, bool eof) {
  return session_->WriteStdin(data, eof);
}

absl::Status RunningCommand::Signal(int signal) {
  if (signal <= 0 || signal >= 65) {
    return absl::InvalidArgumentError(absl::StrCat("invalid signal ", signal));
  }
  return session_->Signal(signal);
}

void SandboxManager::RecordCommand(const RunningCommand& command,
                                   const v1::ExecExit& exit) {
  // The argv travels as a serialized corral.v1.CommandRecord so that
  // arguments with any bytes survive; the details column holds the whole
  // record (cwd, flags, the first output).
  v1::CommandRecord line;
  for (const auto& arg : command.argv_) line.add_argv(arg);
  CommandRecord record;
  record.sandbox_id = command.sandbox_id_;
  record.argv = line.SerializeAsString();
  line.set_cwd(command.cwd_);
  line.set_timed_out(exit.timed_out());
  line.set_oom_killed(exit.oom_killed());
  line.set_stdout_bytes(exit.stdout_bytes());
  line.set_stderr_bytes(exit.stderr_bytes());
  line.set_stdout(command.kept_[1]);
  line.set_stderr(command.kept_[2]);
  line.set_stdout_truncated(exit.stdout_bytes() > command.kept_[1].size());
  line.set_stderr_truncated(exit.stderr_bytes() > command.kept_[2].size());
  record.details = line.SerializeAsString();
  record.exit_code = exit.exit_code();
  record.signal = exit.signal();
  record.started_at = command.started_at_;
  record.duration =
      absl::Microseconds(static_cast<int64_t>(exit.duration_us()));
  (void)store_->AppendCommand(record);
}

void SandboxManager::CheckAgent(const std::shared_ptr<Live>& live) {
  std::string reason;
  {
    std::lock_guard lock(live->mutex);
    if (live->destroyed || live->view.state() != v1::SANDBOX_STATE_RUNNING ||
        !live->agent || !live->agent->closed()) {
      return;
    }
    reason = live->agent->close_reason();
  }
  MarkFailed(live, absl::StrCat("lost the connection to its agent: ", reason));
}

void SandboxManager::MarkFailed(const std::shared_ptr<Live>& live,
                                const std::string& why) {
  std::lock_guard lock(live->mutex);
  if (live->destroyed || live->view.state() == v1::SANDBOX_STATE_FAILED) return;
  const std::string id = live->view.id();
  Log()->warn("sandbox {} failed: {}", id, why);
  live->view.set_state(v1::SANDBOX_STATE_FAILED);
  live->view.set_failure(why);
  if (live->agent) live->agent->Close();
  // Its processes are of no use without an agent: stop them now rather than
  // at expiry. The workspace stays until the sandbox is deleted.
  if (!live->handle.id().empty()) (void)live->backend->Destroy(live->handle);
  (void)store_->UpdateSandboxSpec(id, live->view.SerializeAsString());
  (void)store_->UpdateSandboxState(id, v1::SANDBOX_STATE_FAILED, why);
  (void)store_->AppendEvent(id, "failed", why);
}

void SandboxManager::StartReaper() {
  reaper_ = std::thread([this] { ReaperLoop(); });
}

void SandboxManager::ReaperLoop() {
  for (;;) {
    {
      std::unique_lock lock(reaper_mutex_);
      reaper_wake_.wait_for(
          lock, absl::ToChronoMilliseconds(options_.reaper_interval),
          [this] { return stopping_; });
      if (stopping_) return;
    }
    auto expired = store_->ListExpired(absl::Now());
    if (!expired.ok()) {
      Log()->error("reaper: {}", expired.status().ToString());
      continue;
    }
    for (const auto& record : *expired) {
      std::shared_ptr<Live> live;
      {
        std::lock_guard lock(mutex_);
        if (auto it = live_.find(record.id); it != live_.end())
          live = it->second;
      }
      if (!live) continue;
      if (auto s = Destroy(live, "expired"); !s.ok()) {
        Log()->error("reaper: {}", s.ToString());
      }
    }
    std::vector<std::shared_ptr<Live>> all;
    {
      std::lock_guard lock(mutex_);
      for (auto& [id, live] : live_) all.push_back(live);
    }
    for (auto& live : all) {
      CheckAgent(live);
      CheckIdle(live);
    }
  }
}

v1::Sandbox SandboxManager::ViewOf(const Live& live) const {
  v1::Sandbox view = live.view;
  *view.mutable_last_activity_at() =
      ToProto(live.running_commands > 0 ? absl::Now() : live.last_activity);
  return view;
}

void SandboxManager::CheckIdle(const std::shared_ptr<Live>& live) {
  const absl::Time now = absl::Now();
  {
    std::lock_guard lock(live->mutex);
    const uint64_t idle = live->view.idle_timeout_seconds();
    const auto state = live->view.state();
    if (idle == 0 || live->destroyed ||
        (state != v1::SANDBOX_STATE_RUNNING &&
         state != v1::SANDBOX_STATE_PAUSED)) {
      return;
    }
    if (live->running_commands > 0) live->last_activity = now;
    // The last activity reaches the store every few seconds, so that a
    // restarted daemon counts on from about there.
    if (live->last_activity - live->last_activity_stored >
        absl::Seconds(std::min<int64_t>(5, idle))) {
      *live->view.mutable_last_activity_at() = ToProto(live->last_activity);
      if (store_
              ->UpdateSandboxSpec(live->view.id(),
                                  live->view.SerializeAsString())
              .ok()) {
        live->last_activity_stored = live->last_activity;
      }
    }
    if (now - live->last_activity < absl::Seconds(static_cast<int64_t>(idle))) {
      return;
    }
  }
  if (auto s = Destroy(live, "idle"); !s.ok()) {
    Log()->error("reaper: idle sandbox: {}", s.ToString());
  }
}

std::map<std::string, uint32_t> SandboxManager::CountByState() {
  std::map<std::string, uint32_t> counts;
  std::lock_guard lock(mutex_);
  for (auto& [id, live] : live_) {
    std::unique_lock live_lock(live->mutex, std::try_to_lock);
    const auto state =
        live_lock.owns_lock() ? live->view.state() : v1::SANDBOX_STATE_CREATING;
    counts[v1::SandboxState_Name(state)]++;
  }
  return counts;
}

void SandboxManager::FinishRecovery() {
  std::map<std::string, std::shared_ptr<Live>> live;
  {
    std::lock_guard lock(mutex_);
    live = live_;
  }
  for (auto& [id, sandbox] : live) {
    std::lock_guard lock(sandbox->mutex);
    if (!sandbox->pause_after_recovery) continue;
    sandbox->pause_after_recovery = false;
    if (sandbox->view.state() != v1::SANDBOX_STATE_RUNNING) continue;
    if (auto s = sandbox->backend->Pause(sandbox->handle); !s.ok()) {
      // It runs: say so rather than claim a pause that did not happen.
      Log()->error("recover: sandbox {} could not be paused again: {}", id,
                   s.ToString());
      (void)store_->UpdateSandboxState(id, v1::SANDBOX_STATE_RUNNING, "");
      continue;
    }
    sandbox->view.set_state(v1::SANDBOX_STATE_PAUSED);
  }
}

absl::Status SandboxManager::RequireGuarantee(const v1::Sandbox& view,
                                              v1::Guarantee guarantee,
                                              const char* what) const {
  const auto& list = view.guarantees();
  if (std::find(list.begin(), list.end(), guarantee) != list.end()) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "sandbox ", view.id(), " (runtime ", view.runtime(), ") cannot ", what,
      ": it does not have ", v1::Guarantee_Name(guarantee)));
}

absl::StatusOr<v1::Sandbox> SandboxManager::ChangePause(const Caller& caller,
                                                        const std::string& id,
                                                        Action action) {
  ASSIGN_OR_RETURN(auto live, Find(caller, id));
  const bool pause = action == Action::kPause;
  std::lock_guard lock(live->mutex);
  // Pausing a paused sandbox (or resuming a running one) is done already.
  if (live->view.state() ==
      (pause ? v1::SANDBOX_STATE_PAUSED : v1::SANDBOX_STATE_RUNNING)) {
    return live->view;
  }
  RETURN_IF_ERROR(CheckAllowed(live->view, action));
  RETURN_IF_ERROR(RequireGuarantee(live->view, v1::GUARANTEE_PAUSE,
                                   pause ? "pause" : "resume"));
  RETURN_IF_ERROR(pause ? live->backend->Pause(live->handle)
                        : live->backend->Resume(live->handle));
  const auto state =
      pause ? v1::SANDBOX_STATE_PAUSED : v1::SANDBOX_STATE_RUNNING;
  live->view.set_state(state);
  RETURN_IF_ERROR(store_->UpdateSandboxState(id, state, ""));
  (void)store_->AppendEvent(id, pause ? "paused" : "resumed", "");
  return live->view;
}

absl::StatusOr<v1::Sandbox> SandboxManager::PauseSandbox(
    const Caller& caller, const std::string& id) {
  return ChangePause(caller, id, Action::kPause);
}

absl::StatusOr<v1::Sandbox> SandboxManager::ResumeSandbox(
    const Caller& caller, const std::string& id) {
  return ChangePause(caller, id, Action::kResume);
}

absl::StatusOr<bv1::SaveMemoryResponse> SandboxManager::SaveMemory(
    const Caller& caller, const std::string& id, const std::string& name) {
  ASSIGN_OR_RETURN(auto live, Find(caller, id));
  std::lock_guard lock(live->mutex);
  RETURN_IF_ERROR(CheckAllowed(live->view, Action::kExec));
  RETURN_IF_ERROR(RequireGuarantee(live->view, v1::GUARANTEE_MEMORY_SNAPSHOT,
                                   "snapshot its memory"));
  return live->backend->SaveMemory(live->handle, name);
}

absl::Status SandboxManager::DeleteMemory(const Caller& caller,
                                          const std::string& id,
                                          const std::string& state) {
  ASSIGN_OR_RETURN(auto live, Find(caller, id));
  std::lock_guard lock(live->mutex);
  if (live->backend == nullptr) {
    return absl::FailedPreconditionError(
        absl::StrCat("sandbox ", id, " has no runtime loaded"));
  }
  return live->backend->DeleteMemory(live->handle, state);
}

absl::Status SandboxManager::Recover() {
  ASSIGN_OR_RETURN(auto records, store_->ListSandboxes());
  std::map<std::string, std::vector<std::string>> known_by_runtime;
  for (const auto& record : records) {
    auto live = std::make_shared<Live>();
    if (!live->view.ParseFromString(record.spec)) {
      Log()->error("recover: sandbox {} has an unreadable record; removing it",
                   record.id);
      (void)store_->DeleteSandbox(record.id);
      continue;
    }
    live->view.set_state(static_cast<v1::SandboxState>(record.state));
    live->view.set_failure(record.failure);
    // Idle time goes on from what was last written (a restart is no
    // activity of the sandbox's).
    if (live->view.has_last_activity_at()) {
      live->last_activity = FromProto(live->view.last_activity_at());
      live->last_activity_stored = live->last_activity;
    }
    live->workspace_dir =
        absl::StrCat(options_.state_dir, "/workspaces/", record.id);
    live->handle.ParseFromString(record.backend_handle);
    std::string uid_conflict;
    if (record.host_uid != 0 && options_.registry != nullptr) {
      // Claimed when it was made; a registry lost since (or an older
      // daemon's sandbox) is claimed again now.
      auto ours = options_.registry->ClaimUid(record.host_uid,
                                              options_.instance_id, record.id);
      if (ours.ok() && *ours) {
        live->host_uid = record.host_uid;
      } else {
        uid_conflict =
            absl::StrCat("its host uid ", record.host_uid,
                         ours.ok() ? " is held by another corrald's sandbox"
                                   : absl::StrCat(" could not be claimed: ",
                                                  ours.status().message()));
      }
    }
    auto backend = plugins_->Get(record.runtime);
    if (!backend.ok()) {
      Log()->error("recover: sandbox {} needs runtime {}: {}", record.id,
                   record.runtime, backend.status().ToString());
      // Keep the record: the runtime may come back with the next build.
      live->view.set_state(v1::SANDBOX_STATE_FAILED);
      live->view.set_failure(std::string(backend.status().message()));
      std::lock_guard lock(mutex_);
      live_[record.id] = live;
      continue;
    }
    live->backend = *backend;
    known_by_runtime[record.runtime].push_back(record.id);
    std::string network_lost;
    if (!live->view.network_address().empty()) {
      if (options_.egress == nullptr) {
        network_lost = options_.egress_unavailable;
      } else {
        net::SandboxPolicy policy =
            EgressPolicyOf(live->view.network_policy(), live->view.network());
        if (auto secrets = store_->ListSecrets(record.id); secrets.ok()) {
          for (const auto& secret : *secrets) {
            policy.secrets.push_back(SubstitutionOf(secret));
          }
        }
        if (auto ca = store_->GetSandboxCa(record.id); ca.ok()) {
          policy.ca = net::SandboxCa{ca->first, ca->second};
        }
        if (auto s = options_.egress->Restore(
                record.id, live->view.network_address(), policy);
            !s.ok()) {
          network_lost = std::string(s.message());
        } else if (record.state == v1::SANDBOX_STATE_RUNNING ||
                   record.state == v1::SANDBOX_STATE_PAUSED) {
          std::vector<net::Published> ports = PublishedOf(live->view.ports());
          if (auto p = options_.egress->Publish(record.id, &ports); !p.ok()) {
            // The sandbox runs on; its ports wait for an operator.
            Log()->error("recover: sandbox {}: {}", record.id, p.ToString());
            (void)store_->AppendEvent(record.id, "ports-lost",
                                      std::string(p.message()));
          }
        }
      }
    }
    {
      std::lock_guard lock(mutex_);
      live_[record.id] = live;
    }
    if (!uid_conflict.empty() && (record.state == v1::SANDBOX_STATE_RUNNING ||
                                  record.state == v1::SANDBOX_STATE_PAUSED)) {
      // Two sandboxes must never run as one host uid: this one stops.
      live->view.set_state(v1::SANDBOX_STATE_RUNNING);
      MarkFailed(live, absl::StrCat("not recovered after a daemon restart: ",
                                    uid_conflict));
      continue;
    }
    if (!network_lost.empty() && (record.state == v1::SANDBOX_STATE_RUNNING ||
                                  record.state == v1::SANDBOX_STATE_PAUSED)) {
      live->view.set_state(v1::SANDBOX_STATE_RUNNING);
      MarkFailed(live, absl::StrCat("its network was not recovered after a "
                                    "daemon restart: ",
                                    network_lost));
      continue;
    }
    switch (record.state) {
      case v1::SANDBOX_STATE_PAUSED:
      case v1::SANDBOX_STATE_RUNNING: {
        std::string reason;
        if (record.state == v1::SANDBOX_STATE_PAUSED) {
          // A paused guest cannot answer a new connection: run it while its
          // agent and processes are taken up (FinishRecovery pauses it).
          if (auto resumed = live->backend->Resume(live->handle);
              !resumed.ok()) {
            live->view.set_state(v1::SANDBOX_STATE_RUNNING);
            MarkFailed(live,
                       absl::StrCat("not resumed after a daemon restart: ",
                                    resumed.message()));
            break;
          }
          live->view.set_state(v1::SANDBOX_STATE_RUNNING);
          live->pause_after_recovery = true;
        }
        auto attached = live->backend->Attach(live->handle, &reason);
        if (attached.ok() && attached->agent_fd.valid()) {
          auto agent = AgentConnection::Open(std::move(attached->agent_fd),
                                             options_.agent_hello_timeout);
          if (agent.ok()) {
            std::lock_guard lock(live->mutex);
            live->agent = *agent;
            Log()->info("recover: re-attached sandbox {}", record.id);
            (void)store_->AppendEvent(record.id, "reattached", "");
            break;
          }
          reason = std::string(agent.status().message());
        } else if (!attached.ok()) {
          reason = std::string(attached.status().message());
        }
        live->view.set_state(v1::SANDBOX_STATE_RUNNING);
        MarkFailed(live, absl::StrCat("not recovered after a daemon restart: ",
                                      reason));
        break;
      }
      case v1::SANDBOX_STATE_CREATING:
      case v1::SANDBOX_STATE_DELETING:
        // Half-made or half-destroyed when the daemon stopped: finish the job.
        Log()->info(
            "recover: removing sandbox {} left {}", record.id,
            v1::SandboxState_Name(static_cast<v1::SandboxState>(record.state)));
        known_by_runtime[record.runtime].pop_back();
        if (auto s = Destroy(live, "reconciled"); !s.ok()) {
          Log()->error("recover: {}", s.ToString());
        }
        break;
      default:
        break;
    }
  }
  // Host uids this instance claimed for sandboxes it no longer has (a
  // daemon killed between the claim and the record, or after the record
  // went and before the release).
  if (options_.registry != nullptr) {
    for (const auto& [uid, claim] : options_.registry->Claims()) {
      if (claim.instance_id != options_.instance_id) continue;
      std::lock_guard lock(mutex_);
      auto it = live_.find(claim.sandbox_id);
      if (it == live_.end() || it->second->host_uid != uid) {
        ReleaseHostUid(uid);
      }
    }
  }
  // Whatever a runtime finds on the host that the store does not know.
  for (const auto& name : plugins_->KnownRuntimes()) {
    auto backend = plugins_->Get(name);
    if (!backend.ok()) continue;
    auto removed = (*backend)->Reconcile(known_by_runtime[name]);
    if (!removed.ok()) {
      Log()->error("recover: runtime {} reconcile: {}", name,
                   removed.status().ToString());
      continue;
    }
    for (const auto& id : *removed) {
      Log()->warn("recover: runtime {} removed leftovers of unknown sandbox {}",
                  name, id);
      (void)store_->AppendEvent(id, "reconciled", "host leftovers removed");
    }
  }
  // Workspaces no record owns.
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(
           absl::StrCat(options_.state_dir, "/workspaces"), error)) {
    const std::string id = entry.path().filename().string();
    std::lock_guard lock(mutex_);
    if (live_.count(id) == 0) {
      if (auto s = RemoveWorkspace(entry.path().string()); !s.ok()) {
        Log()->error("recover: orphaned workspace {}: {}", id, s.ToString());
      } else {
        Log()->warn("recover: removed orphaned workspace {}", id);
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace corral::daemon
