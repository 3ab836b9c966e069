// A FAKE of Firecracker 1.17, for tests on hosts where Firecracker cannot
// run (no usable KVM): tests/fakes/README.md says what it reproduces and
// what it does not. Its API is Firecracker's (HTTP/1.1 on --api-sock,
// Firecracker's routes, bodies, checks, error texts, status codes, reply
// headers and states); behind it QEMU stands in for the VMM: InstanceStart
// boots the configured kernel, initrd and drives in a QEMU microvm (TCG),
// PATCH /vm pauses and resumes it, /snapshot/create and /snapshot/load save
// and restore it. The vsock device is a stand-in: QEMU has no vsock here,
// so the guest gets a virtio-serial port named corral.agent carrying
// Corral's serial link (guest-agent/wire/serial_link.h), and the fake
// serves Firecracker's host side of vsock on the uds_path: "CONNECT
// <port>\n", "OK <host port>\n", then the bytes of a connection to that
// port in the guest, one connection at a time.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "backends/qemu/qemu_command.h"
#include "backends/qemu/qmp.h"
#include "guest-agent/wire/link_bridge.h"
#include "nlohmann/json.hpp"
#include "tests/fakes/firecracker/fake_args.h"
#include "tests/fakes/firecracker/fake_json.h"

namespace {

using corral::fakes::Field;
using corral::fakes::FieldType;
using corral::fakes::Schema;
using nlohmann::json;

constexpr char kVersion[] = "1.17.0-dev";
constexpr size_t kMaxPayload = 51200;
constexpr size_t kMaxConnections = 10;
constexpr char kDefaultCmdline[] =
    "reboot=k panic=1 nomodule 8250.nr_uarts=0 i8042.noaux i8042.nomux "
    "i8042.dumbkbd swiotlb=noforce";
constexpr char kNotBefore[] =
    "The requested operation is not supported before starting the microVM.";
constexpr char kNotAfter[] =
    "The requested operation is not supported after starting the microVM.";
constexpr char kSnapshotMagic[] = "corral-fake-firecracker-snapshot-1";

// ---- Replies ---------------------------------------------------------

struct Reply {
  int status = 204;
  std::string body;          // with status != 204
  bool deprecation = false;  // "Deprecation: true"
};

Reply Fault(const std::string& message) {
  return {400, json{{"fault_message", message}}.dump(), false};
}

Reply Ok(const nlohmann::ordered_json& body) {
  return {200, body.dump(), false};
}

std::string Serialize(const Reply& reply) {
  std::string out =
      "HTTP/1.1 " + std::to_string(reply.status) +
      " \r\nServer: Firecracker API\r\nConnection: keep-alive\r\n";
  if (reply.deprecation) out += "Deprecation: true\r\n";
  if (reply.status != 204 && reply.status != 100) {
    out += "Content-Type: application/json\r\nContent-Length: " +
           std::to_string(reply.body.size()) + "\r\n";
  }
  out += "\r\n";
  if (reply.status != 204) out += reply.body;
  return out;
}

// An HTTP-level error: Firecracker's HTTP server words, not the API's.
std::string HttpError(const std::string& message) {
  Reply reply{400,
              "{ \"error\": \"" + message +
                  "\nAll previous unanswered requests will be dropped.\" }",
              false};
  return Serialize(reply);
}

// ---- The bodies (field order as in Firecracker's structs) ------------

Field Str(const char* name, bool required = false) {
  return {name, FieldType::kString, required, {}, {}, true};
}
Field OptStr(const char* name) {
  return {name, FieldType::kOptionalString, false, {}, {}, true};
}
Field Bool(const char* name) {
  return {name, FieldType::kBool, false, {}, {}, true};
}
Field Num(const char* name, FieldType type, bool required) {
  return {name, type, required, {}, {}, true};
}
Field Enum(const char* name, std::vector<std::string> variants,
           bool required = false) {
  return {name, FieldType::kEnum, required, std::move(variants), {}, true};
}
Field Any(const char* name) {
  return {name, FieldType::kAny, false, {}, {}, true};
}

const Schema& BootSourceSchema() {
  static const Schema s{{Str("kernel_image_path", true), OptStr("initrd_path"),
                         OptStr("boot_args")},
                        true};
  return s;
}
const Schema& DriveSchema() {
  static const Schema s{
      {Str("drive_id", true),
       OptStr("partuuid"),
       {"is_root_device", FieldType::kBool, true, {}, {}, true},
       Enum("cache_type", {"Unsafe", "Writeback"}),
       Bool("is_read_only"),
       OptStr("path_on_host"),
       Any("rate_limiter"),
       Enum("io_engine", {"Sync", "Async"}),
       OptStr("socket")},
      true};
  return s;
}
const Schema& MachineSchema() {
  static const Schema s{
      {Num("vcpu_count", FieldType::kU8, true),
       Num("mem_size_mib", FieldType::kUsize, true), Bool("smt"),
       Any("cpu_template"), Bool("track_dirty_pages"),
       Enum("huge_pages", {"None", "Transparent", "2M"})},
      true};
  return s;
}
const Schema& VsockSchema() {
  static const Schema s{
      {OptStr("vsock_id"), Num("guest_cid", FieldType::kU32, true),
       Str("uds_path", true)},
      true};
  return s;
}
const Schema& ActionSchema() {
  static const Schema s{
      {Enum("action_type", {"FlushMetrics", "InstanceStart", "SendCtrlAltDel"},
            true)},
      true};
  return s;
}
const Schema& LoggerSchema() {
  static const Schema s{
      {OptStr("log_path"), OptStr("level"), Bool("show_level"),
       Bool("show_log_origin"), OptStr("module")},
      true};
  return s;
}
const Schema& MetricsSchema() {
  static const Schema s{{Str("metrics_path", true)}, false};
  return s;
}
const Schema& NetSchema() {
  static const Schema s{
      {Str("iface_id", true), OptStr("guest_mac"), Str("host_dev_name", true),
       Any("rx_rate_limiter"), Any("tx_rate_limiter")},
      true};
  return s;
}
const Schema& SnapshotCreateSchema() {
  static const Schema s{
      {Enum("snapshot_type", {"Full", "Diff"}), Str("snapshot_path", true),
       Str("mem_file_path", true)},
      true};
  return s;
}
const Schema& SnapshotLoadSchema() {
  static const Schema s{
      {Str("snapshot_path", true),
       OptStr("mem_file_path"),
       {"mem_backend",
        FieldType::kObject,
        false,
        {},
        {Str("backend_path", true),
         Enum("backend_type", {"File", "Uffd"}, true)},
        true},
       Bool("enable_diff_snapshots"),
       Bool("track_dirty_pages"),
       Bool("resume_vm"),
       Any("network_overrides"),
       {"vsock_override",
        FieldType::kObject,
        false,
        {},
        {Str("uds_path", true)},
        true},
       Bool("clock_realtime"),
       Enum("huge_pages", {"Snapshot", "None", "Transparent", "2M"})},
      true};
  return s;
}
const Schema& VmSchema() {
  static const Schema s{{Enum("state", {"Paused", "Resumed"}, true)}, true};
  return s;
}

// ---- The VM ---------------------------------------------------------

enum class VmState { kNotStarted, kRunning, kPaused };

const char* StateName(VmState state) {
  switch (state) {
    case VmState::kNotStarted:
      return "Not started";
    case VmState::kRunning:
      return "Running";
    case VmState::kPaused:
      return "Paused";
  }
  return "?";
}

std::string Errno(int error) {
  return std::string(std::strerror(error)) + " (os error " +
         std::to_string(error) + ")";
}

// Firecracker's block device id (what the guest reads as the disk's
// serial): the backing file's device, rdev and inode in decimal, 20 bytes
// at most.
std::string ImageId(const struct stat& st) {
  std::string id = std::to_string(st.st_dev) + std::to_string(st.st_rdev) +
                   std::to_string(st.st_ino);
  if (id.size() > 20) id.resize(20);
  return id;
}

struct Drive {
  std::string id;
  bool root = false;
  bool read_only = false;
  std::string path;
  std::string serial;  // Firecracker's image id: dev, rdev, inode, 20 bytes
};

class Vmm {
 public:
  explicit Vmm(std::string id) : id_(std::move(id)) {}

  Reply Handle(const std::string& method, const std::string& uri,
               const std::string& body, bool has_body);
  // The QEMU that stands in for the VMM: its pidfd (-1 before start).
  int qemu_pidfd() const { return qemu_pidfd_; }
  void QemuExited();
  // --config-file: each section as its PUT, then InstanceStart. "" or the
  // error.
  std::string Configure(const json& config);

 private:
  Reply Put(const std::string& path, const std::vector<std::string>& parts,
            const std::string& body);
  Reply Patch(const std::string& path, const std::vector<std::string>& parts,
              const std::string& body);
  Reply Get(const std::string& path, const std::vector<std::string>& parts);

  Reply PutBootSource(const json& body);
  Reply PutDrive(const std::string& id, const json& body);
  Reply PutMachine(const json& body);
  Reply PutVsock(const json& body, bool* deprecated);
  Reply Start();
  Reply SetPaused(bool paused);
  Reply SnapshotCreate(const json& body);
  Reply SnapshotLoad(const json& body, bool* deprecated);

  std::string KernelCommandLine() const;
  std::string LaunchQemu(int incoming_fd);
  std::string StartVsockBridge();
  absl::StatusOr<json> Monitor(const std::string& command,
                               const json& arguments = json(), int fd = -1);
  nlohmann::ordered_json Config() const;

  const std::string id_;
  VmState state_ = VmState::kNotStarted;
  bool boot_configured_ = false;  // a boot-specific PUT happened
  bool metrics_set_ = false;
  // Resources.
  json boot_source_;
  std::vector<Drive> drives_;
  int vcpus_ = 1;
  uint64_t mem_mib_ = 128;
  bool smt_ = false;
  bool track_dirty_pages_ = false;
  std::string huge_pages_ = "None";
  std::map<std::string, json> net_;
  bool vsock_ = false;
  uint32_t guest_cid_ = 0;
  std::string uds_path_;
  int vsock_listen_ = -1;
  // The stand-in.
  pid_t qemu_ = 0;
  int qemu_pidfd_ = -1;
  int link_host_ = -1;  // our end of the guest's serial port
  std::unique_ptr<corral::qemu_runtime::QmpClient> monitor_;
  std::thread console_;
  std::thread bridge_;
  // The kernel command line QEMU got (a restored machine gets it again).
  std::string cmdline_;
};

std::vector<std::string> Split(const std::string& path) {
  std::vector<std::string> parts;
  std::string trimmed = path;
  while (!trimmed.empty() && trimmed[0] == '/') trimmed.erase(0, 1);
  std::stringstream in(trimmed);
  std::string part;
  while (std::getline(in, part, '/')) parts.push_back(part);
  return parts;
}

bool ValidId(const std::string& id) {
  if (id.empty()) return false;
  for (char c : id) {
    if (c != '_' && !std::isalnum(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

std::string Deserialize(const std::string& message) {
  return "An error occurred when deserializing the json body of a request: " +
         message + ".";
}

Reply Vmm::Handle(const std::string& method, const std::string& uri,
                  const std::string& body, bool has_body) {
  std::string path = uri;
  if (path.rfind("http://", 0) == 0) {
    size_t slash = path.find('/', 7);
    path = slash == std::string::npos ? "/" : path.substr(slash);
  }
  if (path.empty() || path[0] != '/') path = "";
  const std::vector<std::string> parts = Split(path);
  const std::string first = parts.empty() ? "" : parts[0];
  if (method == "GET") {
    if (has_body) return Fault("GET request cannot have a body.");
    return Get(first, parts);
  }
  if (method == "PUT") {
    if (!has_body) return Fault("Empty PUT request.");
    return Put(first, parts, body);
  }
  if (method == "PATCH") {
    if (!has_body) return Fault("Empty PATCH request.");
    return Patch(first, parts, body);
  }
  if (method == "DELETE") {
    if (has_body) return Fault("Empty Delete request.");
    if (first == "drives" || first == "network-interfaces" || first == "pmem") {
      return Fault(state_ == VmState::kNotStarted ? kNotBefore
                                                  : "PCI is not enabled");
    }
  }
  return Fault("Invalid request method and/or path: " + method + " " + first +
               ".");
}

Reply Vmm::Get(const std::string& path, const std::vector<std::string>& parts) {
  if (path.empty()) {
    return Ok(nlohmann::ordered_json{{"id", id_},
                                     {"state", StateName(state_)},
                                     {"vmm_version", kVersion},
                                     {"app_name", "Firecracker"}});
  }
  if (path == "version") {
    return Ok(nlohmann::ordered_json{{"firecracker_version", kVersion}});
  }
  if (path == "machine-config") {
    return Ok(nlohmann::ordered_json{{"vcpu_count", vcpus_},
                                     {"mem_size_mib", mem_mib_},
                                     {"smt", smt_},
                                     {"track_dirty_pages", track_dirty_pages_},
                                     {"huge_pages", huge_pages_}});
  }
  if (path == "vm" && parts.size() >= 2 && parts[1] == "config") {
    return Ok(Config());
  }
  return Fault("Invalid request method and/or path: GET " + path + ".");
}

nlohmann::ordered_json Vmm::Config() const {
  using ojson = nlohmann::ordered_json;
  ojson drives = ojson::array();
  for (const Drive& d : drives_) {
    drives.push_back({{"drive_id", d.id},
                      {"partuuid", nullptr},
                      {"is_root_device", d.root},
                      {"cache_type", "Unsafe"},
                      {"is_read_only", d.read_only},
                      {"path_on_host", d.path},
                      {"rate_limiter", nullptr},
                      {"io_engine", "Sync"},
                      {"socket", nullptr}});
  }
  ojson boot = {{"kernel_image_path", ""},
                {"initrd_path", nullptr},
                {"boot_args", nullptr}};
  if (!boot_source_.is_null()) {
    boot = {{"kernel_image_path", boot_source_["kernel_image_path"]},
            {"initrd_path", boot_source_["initrd_path"]},
            {"boot_args", boot_source_["boot_args"]}};
  }
  ojson nets = ojson::array();
  for (const auto& [id, net] : net_) nets.push_back(ojson::parse(net.dump()));
  return ojson{{"balloon", nullptr},
               {"drives", drives},
               {"boot-source", boot},
               {"cpu-config", nullptr},
               {"logger", nullptr},
               {"machine-config",
                {{"vcpu_count", vcpus_},
                 {"mem_size_mib", mem_mib_},
                 {"smt", smt_},
                 {"track_dirty_pages", track_dirty_pages_},
                 {"huge_pages", huge_pages_}}},
               {"metrics", nullptr},
               {"mmds-config", nullptr},
               {"network-interfaces", nets},
               {"vsock", vsock_ ? ojson{{"guest_cid", guest_cid_},
                                        {"uds_path", uds_path_}}
                                : ojson()},
               {"entropy", nullptr},
               {"pmem", ojson::array()},
               {"memory-hotplug", nullptr}};
}

Reply Vmm::Put(const std::string& path, const std::vector<std::string>& parts,
               const std::string& body) {
  json value;
  auto parse = [&](const Schema& schema) {
    return corral::fakes::ParseBody(body, schema, &value);
  };
  // Ids are checked before the body is read.
  // `mismatch(body_id)`: the text when the body names another id than the
  // path.
  auto with_id = [&](const Schema& schema, const char* id_field, auto mismatch,
                     auto handle) -> Reply {
    if (parts.size() < 2 || parts[1].empty()) {
      return Fault("The ID cannot be empty.");
    }
    if (!ValidId(parts[1])) {
      return Fault(
          "API Resource IDs can only contain alphanumeric characters and "
          "underscores.");
    }
    if (std::string e = parse(schema); !e.empty()) return Fault(Deserialize(e));
    const std::string body_id = value[id_field].get<std::string>();
    if (body_id != parts[1]) return Fault(mismatch(body_id));
    return handle();
  };
  const bool before = state_ == VmState::kNotStarted;
  if (path == "boot-source") {
    if (std::string e = parse(BootSourceSchema()); !e.empty()) {
      return Fault(Deserialize(e));
    }
    if (!before) return Fault(kNotAfter);
    return PutBootSource(value);
  }
  if (path == "drives") {
    return with_id(
        DriveSchema(), "drive_id",
        [](const std::string&) {
          return "The id from the path does not match the id from "
                 "the body!";
        },
        [&] {
          if (!before) return Fault("PCI is not enabled");
          return PutDrive(parts[1], value);
        });
  }
  if (path == "network-interfaces") {
    // This one names both ids (Firecracker's request/net.rs).
    auto mismatch = [&](const std::string& body_id) {
      return "The id from the path [" + parts[1] +
             "] does not match the id from the body [" + body_id + "]!";
    };
    return with_id(NetSchema(), "iface_id", mismatch, [&] {
      if (!before) return Fault("PCI is not enabled");
      net_[parts[1]] = value;
      boot_configured_ = true;
      return Reply{};
    });
  }
  if (path == "machine-config") {
    if (std::string e = parse(MachineSchema()); !e.empty()) {
      return Fault(Deserialize(e));
    }
    if (!before) return Fault(kNotAfter);
    return PutMachine(value);
  }
  if (path == "vsock") {
    if (std::string e = parse(VsockSchema()); !e.empty()) {
      return Fault(Deserialize(e));
    }
    if (!before) return Fault(kNotAfter);
    bool deprecated = false;
    Reply reply = PutVsock(value, &deprecated);
    reply.deprecation = deprecated;
    return reply;
  }
  if (path == "actions") {
    if (std::string e = parse(ActionSchema()); !e.empty()) {
      return Fault(Deserialize(e));
    }
    const std::string action = value["action_type"];
    if (action == "InstanceStart") {
      if (!before) return Fault(kNotAfter);
      return Start();
    }
    if (action == "SendCtrlAltDel" && before) return Fault(kNotBefore);
    if (action == "FlushMetrics" && before) return Fault(kNotBefore);
    if (action == "SendCtrlAltDel") {
      // The i8042 reset line: the guest reboots, which ends Firecracker.
      (void)Monitor("system_reset");
    }
    return {};
  }
  if (path == "logger") {
    if (std::string e = parse(LoggerSchema()); !e.empty()) {
      return Fault(Deserialize(e));
    }
    if (!before) return Fault(kNotAfter);
    if (value.contains("level") && value["level"].is_string()) {
      std::string level = value["level"];
      std::transform(level.begin(), level.end(), level.begin(), ::tolower);
      const std::vector<std::string> known = {
          "off", "trace", "debug", "info", "warn", "warning", "error"};
      if (std::find(known.begin(), known.end(), level) == known.end()) {
        return Fault(Deserialize("Invalid LevelFilter"));
      }
    }
    if (value.contains("log_path") && value["log_path"].is_string()) {
      int fd = ::open(value["log_path"].get<std::string>().c_str(),
                      O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
      if (fd < 0) {
        return Fault("Logger error: Failed to open target file: " +
                     Errno(errno));
      }
      ::close(fd);
    }
    return {};
  }
  if (path == "metrics") {
    if (std::string e = parse(MetricsSchema()); !e.empty()) {
      return Fault(Deserialize(e));
    }
    if (!before) return Fault(kNotAfter);
    int fd = ::open(value["metrics_path"].get<std::string>().c_str(),
                    O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) {
      return Fault(
          "Metrics error: Cannot initialize the metrics system due to bad "
          "user input: " +
          Errno(errno));
    }
    ::close(fd);
    if (metrics_set_) {
      return Fault(
          "Metrics error: Cannot initialize the metrics system due to bad "
          "user input: Reinitialization of metrics not allowed.");
    }
    metrics_set_ = true;
    return {};
  }
  if (path == "snapshot") {
    if (parts.size() < 2) return Fault("Missing snapshot operation type.");
    if (parts[1] == "create") {
      if (std::string e = parse(SnapshotCreateSchema()); !e.empty()) {
        return Fault(Deserialize(e));
      }
      if (before) return Fault(kNotBefore);
      return SnapshotCreate(value);
    }
    if (parts[1] == "load") {
      if (std::string e = parse(SnapshotLoadSchema()); !e.empty()) {
        return Fault(Deserialize(e));
      }
      const bool file =
          value.contains("mem_file_path") && !value["mem_file_path"].is_null();
      const bool backend = value.contains("mem_backend");
      if (file && backend) {
        return Fault(Deserialize(
            "too many fields: either `mem_backend` or `mem_file_path` "
            "exclusively is required"));
      }
      if (!file && !backend) {
        return Fault(Deserialize(
            "missing field: either `mem_backend` or `mem_file_path` is "
            "required"));
      }
      if (!before) return Fault(kNotAfter);
      if (boot_configured_) {
        return Fault(
            "Load snapshot error: Loading a microVM snapshot not allowed "
            "after configuring boot-specific resources.");
      }
      bool deprecated = file || value.contains("enable_diff_snapshots");
      Reply reply = SnapshotLoad(value, &deprecated);
      reply.deprecation = deprecated;
      return reply;
    }
    return Fault("Invalid request method and/or path: PUT /snapshot/" +
                 parts[1] + ".");
  }
  for (const char* known : {"balloon", "cpu-config", "serial", "mmds",
                            "entropy", "pmem", "hotplug"}) {
    if (path == known) {
      return Fault("Invalid request method and/or path: PUT " + path +
                   ". (not modelled by the corral test fake)");
    }
  }
  return Fault("Invalid request method and/or path: PUT " + path + ".");
}

Reply Vmm::Patch(const std::string& path, const std::vector<std::string>& parts,
                 const std::string& body) {
  json value;
  if (path == "vm") {
    if (std::string e = corral::fakes::ParseBody(body, VmSchema(), &value);
        !e.empty()) {
      return Fault(Deserialize(e));
    }
    if (state_ == VmState::kNotStarted) return Fault(kNotBefore);
    return SetPaused(value["state"] == "Paused");
  }
  if (path == "machine-config") {
    if (state_ != VmState::kNotStarted) return Fault(kNotAfter);
    Schema optional = MachineSchema();
    for (Field& f : optional.fields) f.required = false;
    if (std::string e = corral::fakes::ParseBody(body, optional, &value);
        !e.empty()) {
      return Fault(Deserialize(e));
    }
    if (value.empty()) return Fault("Empty PATCH request.");
    json merged = {{"vcpu_count", vcpus_},
                   {"mem_size_mib", mem_mib_},
                   {"smt", smt_},
                   {"track_dirty_pages", track_dirty_pages_},
                   {"huge_pages", huge_pages_}};
    merged.update(value);
    return PutMachine(merged);
  }
  if (path == "drives" || path == "network-interfaces") {
    if (parts.size() < 2 || !ValidId(parts[1])) {
      return Fault(
          "API Resource IDs can only contain alphanumeric characters and "
          "underscores.");
    }
    if (state_ == VmState::kNotStarted) return Fault(kNotBefore);
    return Fault("Invalid request method and/or path: PATCH " + path +
                 ". (not modelled by the corral test fake)");
  }
  return Fault("Invalid request method and/or path: PATCH " + path + ".");
}

Reply Vmm::PutBootSource(const json& body) {
  const std::string kernel = body["kernel_image_path"];
  int fd = ::open(kernel.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    return Fault("Boot source error: The kernel file cannot be opened: " +
                 Errno(errno));
  }
  ::close(fd);
  if (body.contains("initrd_path") && body["initrd_path"].is_string()) {
    fd = ::open(body["initrd_path"].get<std::string>().c_str(),
                O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      return Fault(
          "Boot source error: The initrd file cannot be opened due to "
          "invalid path or invalid permissions. " +
          Errno(errno));
    }
    ::close(fd);
  }
  boot_source_ = {{"kernel_image_path", kernel},
                  {"initrd_path", body.value("initrd_path", json())},
                  {"boot_args", body.value("boot_args", json())}};
  boot_configured_ = true;
  return {};
}

Reply Vmm::PutDrive(const std::string& id, const json& body) {
  if (body.contains("socket") && body["socket"].is_string()) {
    return Fault(
        "Drive config error: Unable to create the virtio block device: "
        "vhost-user block devices are not modelled by the corral test fake");
  }
  if (!body.contains("path_on_host") || !body["path_on_host"].is_string()) {
    return Fault(
        "Drive config error: Unable to create the virtio block device: "
        "Invalid block config.");
  }
  Drive drive;
  drive.id = id;
  drive.root = body["is_root_device"];
  drive.read_only = body.value("is_read_only", false);
  drive.path = body["path_on_host"];
  const int flags = drive.read_only ? O_RDONLY : O_RDWR;
  int fd = ::open(drive.path.c_str(), flags | O_CLOEXEC);
  struct stat st {};
  if (fd < 0 || ::fstat(fd, &st) != 0) {
    const int error = errno;
    if (fd >= 0) ::close(fd);
    return Fault(
        "Drive config error: Unable to create the virtio block device: "
        "Virtio backend error: Error manipulating the backing file: " +
        Errno(error) + " " + drive.path);
  }
  ::close(fd);
  drive.serial = ImageId(st);
  auto existing = std::find_if(drives_.begin(), drives_.end(),
                               [&](const Drive& d) { return d.id == id; });
  if (drive.root) {
    for (const Drive& d : drives_) {
      if (d.root && d.id != id) {
        return Fault("Drive config error: A root block device already exists!");
      }
    }
  }
  if (existing != drives_.end()) {
    *existing = drive;
    if (drive.root) std::iter_swap(drives_.begin(), existing);
  } else if (drive.root) {
    drives_.insert(drives_.begin(), drive);
  } else {
    drives_.push_back(drive);
  }
  boot_configured_ = true;
  return {};
}

Reply Vmm::PutMachine(const json& body) {
  const int vcpus = body["vcpu_count"];
  const uint64_t mem = body["mem_size_mib"];
  const bool smt = body.value("smt", false);
  if (vcpus == 0 || vcpus > 32 || (smt && vcpus > 1 && vcpus % 2 != 0)) {
    return Fault(
        "Machine config error: The number of vCPUs must be greater than 0, "
        "less than 32 and must be 1 or an even number if SMT is enabled.");
  }
  const std::string huge = body.value("huge_pages", std::string("None"));
  if (mem == 0 || (huge != "None" && mem % 2 != 0)) {
    return Fault(
        "Machine config error: The memory size (MiB) is either 0, or not a "
        "multiple of the configured page size.");
  }
  vcpus_ = vcpus;
  mem_mib_ = mem;
  smt_ = smt;
  track_dirty_pages_ = body.value("track_dirty_pages", false);
  huge_pages_ = huge;
  boot_configured_ = true;
  return {};
}

// Binds the vsock's host socket at `path` (Firecracker does it at the PUT).
std::string BindUnix(const std::string& path, int* out) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.size() >= sizeof(address.sun_path)) {
    ::close(fd);
    return "path too long";
  }
  std::memcpy(address.sun_path, path.c_str(), path.size());
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0 ||
      ::listen(fd, 64) != 0) {
    const int error = errno;
    ::close(fd);
    return Errno(error);
  }
  *out = fd;
  return "";
}

Reply Vmm::PutVsock(const json& body, bool* deprecated) {
  *deprecated = body.contains("vsock_id");
  const std::string path = body["uds_path"];
  if (vsock_) {
    // A second PUT replaces the device and its socket.
    ::close(vsock_listen_);
    vsock_listen_ = -1;
    ::unlink(uds_path_.c_str());
  }
  int fd = -1;
  if (std::string e = BindUnix(path, &fd); !e.empty()) {
    return Fault(
        "Vsock config error: Cannot create backend for vsock device: Error "
        "binding to the host-side Unix socket: " +
        e);
  }
  vsock_ = true;
  vsock_listen_ = fd;
  guest_cid_ = body["guest_cid"];
  uds_path_ = path;
  boot_configured_ = true;
  return {};
}

std::string Vmm::KernelCommandLine() const {
  std::string line = boot_source_["boot_args"].is_string()
                         ? boot_source_["boot_args"].get<std::string>()
                         : kDefaultCmdline;
  // Firecracker's additions go before the init's arguments (after " -- ").
  std::string init;
  if (size_t split = line.find(" -- "); split != std::string::npos) {
    init = line.substr(split);
    line.erase(split);
  }
  line += " pci=off";
  for (const Drive& d : drives_) {
    if (d.root)
      line += std::string(" root=/dev/vda ") + (d.read_only ? "ro" : "rw");
  }
  // The stand-in's own: an emulated CPU must be told the TSC rate, or
  // boots hang calibrating it (backends/qemu/README.md).
  if (const uint64_t khz = corral::qemu_runtime::HostTscKhz(); khz > 0) {
    line += " tsc_early_khz=" + std::to_string(khz) +
            " lpj=" + std::to_string(khz * 1000 / 250) + " tsc=reliable";
  }
  return line + init;
}

// The console: the guest's serial port to our stdout, as Firecracker does.
void CopyToStdout(int fd) {
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) {
    (void)!::write(1, buffer, static_cast<size_t>(n));
  }
  ::close(fd);
}

std::string Vmm::LaunchQemu(int incoming_fd) {
  if (incoming_fd < 0) cmdline_ = KernelCommandLine();
  int console[2], link[2], qmp[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, console) != 0 ||
      ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, link) != 0 ||
      ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, qmp) != 0) {
    return "socketpair: " + Errno(errno);
  }
  // QEMU's fds at fixed numbers.
  constexpr int kConsole = 3, kLink = 4, kQmp = 5, kIncoming = 6;
  std::vector<std::string> argv = {
      "/usr/bin/qemu-system-x86_64",
      "-name",
      "fake-firecracker-" + id_,
      "-nodefaults",
      "-no-user-config",
      "-display",
      "none",
      "-no-reboot",
      "-machine",
      "microvm",
      "-cpu",
      "max",
      "-smp",
      std::to_string(vcpus_),
      "-m",
      std::to_string(mem_mib_) + "M",
      "-accel",
      "tcg,tb-size=64",
      "-global",
      "virtio-mmio.force-legacy=false",
      "-kernel",
      boot_source_["kernel_image_path"].get<std::string>(),
      "-append",
      cmdline_,
      "-chardev",
      "socket,id=console,fd=" + std::to_string(kConsole),
      "-serial",
      "chardev:console",
      "-chardev",
      "socket,id=qmp,fd=" + std::to_string(kQmp),
      "-mon",
      "chardev=qmp,mode=control"};
  if (boot_source_["initrd_path"].is_string()) {
    argv.insert(argv.end(),
                {"-initrd", boot_source_["initrd_path"].get<std::string>()});
  }
  // Firecracker's device order: the drives (root first), then vsock. QEMU
  // puts them on its virtio-mmio transports so that the guest finds them
  // in this order (vda, vdb, ...).
  // Each drive's file as Firecracker holds it: opened once, by this
  // process, and never again by name (QEMU gets the fds: one of the
  // drive's access mode and a read-only one, as it reopens at times).
  std::vector<std::pair<int, int>> drive_fds;  // (fd, its number in QEMU)
  for (size_t i = 0; i < drives_.size(); ++i) {
    const Drive& d = drives_[i];
    const std::string name = "drive" + std::to_string(i);
    const int first = kIncoming + 1 + static_cast<int>(2 * i);
    int rw =
        ::open(d.path.c_str(), (d.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
    int ro = ::open(d.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (rw < 0 || ro < 0) {
      const int error = errno;
      for (int fd : {rw, ro}) {
        if (fd >= 0) ::close(fd);
      }
      for (const auto& [fd, number] : drive_fds) ::close(fd);
      return "open " + d.path + ": " + Errno(error);
    }
    drive_fds.push_back({rw, first});
    drive_fds.push_back({ro, first + 1});
    const std::string set = std::to_string(i + 1);
    argv.insert(
        argv.end(),
        {"-add-fd", "fd=" + std::to_string(first) + ",set=" + set, "-add-fd",
         "fd=" + std::to_string(first + 1) + ",set=" + set, "-drive",
         "file=/dev/fdset/" + set + ",if=none,id=" + name +
             ",format=raw,file.locking=off" +
             (d.read_only ? ",readonly=on" : ""),
         "-device", "virtio-blk-device,drive=" + name + ",serial=" + d.serial});
  }
  if (vsock_) {
    argv.insert(argv.end(),
                {"-device", "virtio-serial-device,max_ports=2", "-chardev",
                 "socket,id=link,fd=" + std::to_string(kLink), "-device",
                 "virtserialport,chardev=link,name=corral.agent"});
  }
  if (incoming_fd >= 0) {
    argv.insert(argv.end(), {"-incoming", "fd:" + std::to_string(kIncoming)});
  }
  pid_t pid = ::fork();
  if (pid < 0) return "fork: " + Errno(errno);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    // Out of the way first: no source may sit where another one goes.
    std::vector<std::pair<int, int>> moves = {
        {console[1], kConsole}, {link[1], kLink}, {qmp[1], kQmp}};
    if (incoming_fd >= 0) moves.push_back({incoming_fd, kIncoming});
    moves.insert(moves.end(), drive_fds.begin(), drive_fds.end());
    for (auto& [fd, number] : moves) fd = ::fcntl(fd, F_DUPFD, 100);
    for (const auto& [fd, number] : moves) ::dup2(fd, number);
    ::syscall(SYS_close_range,
              kIncoming + 1 + static_cast<int>(drive_fds.size()), ~0u, 0);
    if (incoming_fd < 0) ::close(kIncoming);
    std::vector<char*> args;
    for (std::string& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    char* env[] = {nullptr};
    ::execve(args[0], args.data(), env);
    std::fprintf(stderr, "fake firecracker: exec %s: %s\n", args[0],
                 std::strerror(errno));
    std::_Exit(127);
  }
  ::close(console[1]);
  ::close(link[1]);
  ::close(qmp[1]);
  for (const auto& [fd, number] : drive_fds) ::close(fd);
  qemu_ = pid;
  qemu_pidfd_ = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  link_host_ = link[0];
  console_ = std::thread(CopyToStdout, console[0]);
  console_.detach();
  auto monitor = corral::qemu_runtime::QmpClient::Adopt(
      corral::UniqueFd(qmp[0]), absl::Now() + absl::Seconds(30));
  if (!monitor.ok()) {
    return "QEMU's monitor: " + std::string(monitor.status().message());
  }
  monitor_ =
      std::make_unique<corral::qemu_runtime::QmpClient>(std::move(*monitor));
  return "";
}

std::atomic<uint32_t> next_local_port{(1u << 30) - 1};

// Firecracker's host side of vsock, on the link: "CONNECT <port>\n" read
// at once (at least 10 bytes, at most 32, "connect" in any case), the
// connection then opened to that port in the guest, "OK <host port>\n"
// once the guest accepted it. Anything else: closed unanswered.
bool ReadConnect(int fd, std::string* port) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 200) <= 0) return false;
  char line[33];
  size_t got = 0;
  while (got < 32) {
    ssize_t n = ::recv(fd, line + got, 1, MSG_DONTWAIT);
    if (n <= 0) return false;
    if (line[got++] == '\n') break;
  }
  if (got < 10 || line[got - 1] != '\n') return false;
  std::istringstream words(std::string(line, got));
  std::string verb, number;
  words >> verb >> number;
  std::transform(verb.begin(), verb.end(), verb.begin(), ::tolower);
  if (verb != "connect" || number.empty()) return false;
  char* end = nullptr;
  errno = 0;
  unsigned long value = std::strtoul(number.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || value > 0xffffffffu) return false;
  *port = std::to_string(value);
  return true;
}

void AnswerOk(int fd) {
  uint32_t last = next_local_port.load();
  uint32_t next = ((last + 1) & ~(1u << 31)) | (1u << 30);
  next_local_port = next;
  const std::string ok = "OK " + std::to_string(next) + "\n";
  (void)!::send(fd, ok.data(), ok.size(), MSG_NOSIGNAL);
}

std::string Vmm::StartVsockBridge() {
  if (!vsock_) {
    ::close(link_host_);
    link_host_ = -1;
    return "";
  }
  corral::agent::wire::LinkBridgeOptions options;
  options.role = corral::agent::wire::LinkBridgeOptions::Role::kHost;
  options.link_fd = link_host_;
  options.listen_fd = ::fcntl(vsock_listen_, F_DUPFD_CLOEXEC, 3);
  options.on_accept = ReadConnect;
  options.on_opened = AnswerOk;
  options.log = [](const std::string& line) {
    std::fprintf(stderr, "fake firecracker: vsock: %s\n", line.c_str());
  };
  link_host_ = -1;
  bridge_ = std::thread([options] {
    // The bridge blocks these for its thread; the main thread keeps them.
    corral::agent::wire::RunLinkBridge(options);
  });
  bridge_.detach();
  return "";
}

absl::StatusOr<json> Vmm::Monitor(const std::string& command,
                                  const json& arguments, int fd) {
  if (!monitor_) return absl::FailedPreconditionError("no VM");
  monitor_->set_deadline(absl::Now() + absl::Minutes(5));
  return monitor_->Execute(command, arguments, fd);
}

Reply Vmm::Start() {
  if (boot_source_.is_null()) {
    return Fault(
        "Start microvm error: Cannot start microvm without kernel "
        "configuration.");
  }
  if (!net_.empty()) {
    return Fault(
        "Start microvm error: network interfaces are not modelled by the "
        "corral test fake");
  }
  if (std::string e = LaunchQemu(-1); !e.empty()) {
    return Fault("Start microvm error: " + e);
  }
  StartVsockBridge();
  state_ = VmState::kRunning;
  return {};
}

Reply Vmm::SetPaused(bool paused) {
  if (paused && state_ == VmState::kPaused) return {};
  if (!paused && state_ == VmState::kRunning) return {};
  auto result = Monitor(paused ? "stop" : "cont");
  if (!result.ok()) {
    return Fault(std::string(paused ? "Failed to pause the vCPUs."
                                    : "Failed to resume the vCPUs.") +
                 " (" + std::string(result.status().message()) + ")");
  }
  state_ = paused ? VmState::kPaused : VmState::kRunning;
  return {};
}

Reply Vmm::SnapshotCreate(const json& body) {
  if (state_ != VmState::kPaused) {
    return Fault(
        "Create snapshot error: Cannot save the microVM state: Operation not "
        "allowed: save/restore unavailable while running");
  }
  if (body.value("snapshot_type", std::string("Full")) == "Diff" &&
      !track_dirty_pages_) {
    return Fault(
        "Create snapshot error: Diff snapshots are not allowed on uVMs with "
        "dirty page tracking disabled.");
  }
  const std::string state_path = body["snapshot_path"];
  const std::string memory_path = body["mem_file_path"];
  // The memory file: QEMU's saved machine (the stand-in's memory and
  // devices); the snapshot file: the machine's configuration.
  int memory = ::open(memory_path.c_str(),
                      O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (memory < 0) {
    return Fault("Create snapshot error: Cannot write memory file: " +
                 Errno(errno));
  }
  auto got = Monitor("getfd", {{"fdname", "snapshot"}}, memory);
  ::close(memory);
  if (!got.ok()) {
    return Fault("Create snapshot error: " +
                 std::string(got.status().message()));
  }
  if (auto s = Monitor("migrate", {{"uri", "fd:snapshot"}}); !s.ok()) {
    return Fault("Create snapshot error: " + std::string(s.status().message()));
  }
  for (;;) {
    auto progress = Monitor("query-migrate");
    if (!progress.ok()) {
      return Fault("Create snapshot error: " +
                   std::string(progress.status().message()));
    }
    const std::string status = progress->value("status", std::string());
    if (status == "completed") break;
    if (status == "failed" || status == "cancelled") {
      return Fault("Create snapshot error: Cannot save the microVM state: " +
                   progress->value("error-desc", status));
    }
    ::usleep(20 * 1000);
  }
  json saved = json::parse(Config().dump());
  saved["magic"] = kSnapshotMagic;
  saved["id"] = id_;
  // The stand-in's machine must be started again exactly as it was.
  saved["cmdline"] = cmdline_;
  std::ofstream out(state_path, std::ios::trunc);
  out << saved.dump();
  out.close();
  if (!out) {
    return Fault("Create snapshot error: Cannot write snapshot file: " +
                 Errno(errno));
  }
  return {};
}

Reply Vmm::SnapshotLoad(const json& body, bool* deprecated) {
  (void)deprecated;
  // A failed load ends Firecracker after its reply (fatal, as the real one).
  auto fatal = [](const std::string& message) {
    Reply reply = Fault(
        "Load snapshot error: Failed to restore from snapshot: " + message);
    reply.status = -400;  // the caller exits after sending it
    return reply;
  };
  const std::string state_path = body["snapshot_path"];
  std::ifstream in(state_path);
  if (!in) {
    return fatal(
        "Failed to get snapshot state from file: Failed to open snapshot "
        "file: " +
        Errno(errno));
  }
  std::stringstream text;
  text << in.rdbuf();
  json saved = json::parse(text.str(), nullptr, false);
  if (!saved.is_object() ||
      saved.value("magic", std::string()) != kSnapshotMagic) {
    return fatal(
        "Failed to get snapshot state from file: Failed to load snapshot "
        "state from file: not a snapshot of the corral test fake");
  }
  const std::string memory_path =
      body.contains("mem_backend")
          ? body["mem_backend"]["backend_path"].get<std::string>()
          : body["mem_file_path"].get<std::string>();
  if (body.contains("mem_backend") &&
      body["mem_backend"]["backend_type"] == "Uffd") {
    return fatal(
        "Uffd memory backends are not modelled by the corral test fake");
  }
  int memory = ::open(memory_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (memory < 0) {
    return fatal("Failed to load guest memory: " + Errno(errno));
  }
  boot_source_ = saved["boot-source"];
  cmdline_ = saved.value("cmdline", std::string());
  const json machine = saved["machine-config"];
  vcpus_ = machine["vcpu_count"];
  mem_mib_ = machine["mem_size_mib"];
  for (const json& d : saved["drives"]) {
    Drive drive;
    drive.id = d["drive_id"];
    drive.root = d["is_root_device"];
    drive.read_only = d["is_read_only"];
    drive.path = d["path_on_host"];
    struct stat st {};
    if (::stat(drive.path.c_str(), &st) != 0) {
      ::close(memory);
      return fatal("Failed to restore devices: block device " + drive.path +
                   ": " + Errno(errno));
    }
    drive.serial = ImageId(st);
    drives_.push_back(drive);
  }
  if (saved["vsock"].is_object()) {
    std::string uds = saved["vsock"]["uds_path"];
    if (body.contains("vsock_override")) {
      uds = body["vsock_override"]["uds_path"];
    }
    int fd = -1;
    if (std::string e = BindUnix(uds, &fd); !e.empty()) {
      ::close(memory);
      return fatal("Failed to restore devices: vsock: " + e);
    }
    vsock_ = true;
    vsock_listen_ = fd;
    guest_cid_ = saved["vsock"]["guest_cid"];
    uds_path_ = uds;
  }
  std::string e = LaunchQemu(memory);
  ::close(memory);
  if (!e.empty()) return fatal(e);
  // The saved machine arrives stopped.
  for (;;) {
    auto status = Monitor("query-status");
    if (!status.ok()) {
      return fatal(std::string(status.status().message()));
    }
    const std::string now = status->value("status", std::string());
    if (now != "inmigrate") break;
    ::usleep(20 * 1000);
  }
  StartVsockBridge();
  state_ = VmState::kPaused;
  if (body.value("resume_vm", false)) {
    if (auto s = Monitor("cont"); !s.ok()) {
      return fatal("Failed to resume the vCPUs: " +
                   std::string(s.status().message()));
    }
    state_ = VmState::kRunning;
  }
  return {};
}

void Vmm::QemuExited() {
  ::close(qemu_pidfd_);
  qemu_pidfd_ = -1;
}

std::string Vmm::Configure(const json& config) {
  auto apply = [&](const std::string& method, const std::string& path,
                   const json& body) -> std::string {
    Reply reply = Handle(method, path, body.dump(), true);
    if (reply.status >= 300) {
      json fault = json::parse(reply.body, nullptr, false);
      return fault.is_object() ? fault.value("fault_message", reply.body)
                               : reply.body;
    }
    return "";
  };
  if (!config.is_object()) return "the configuration file is not a JSON object";
  const std::map<std::string, std::string> singles = {
      {"logger", "/logger"},
      {"metrics", "/metrics"},
      {"boot-source", "/boot-source"},
      {"machine-config", "/machine-config"},
      {"vsock", "/vsock"}};
  for (const auto& [key, value] : config.items()) {
    if (key == "drives" || key == "network-interfaces" || key == "balloon" ||
        key == "mmds-config" || key == "entropy" || key == "cpu-config") {
      continue;
    }
    if (singles.count(key) == 0) {
      return "unknown field `" + key + "` in the configuration file";
    }
  }
  for (const std::string key :
       {"logger", "metrics", "boot-source", "machine-config", "vsock"}) {
    if (config.contains(key) && !config[key].is_null()) {
      if (std::string e = apply("PUT", singles.at(key), config[key]);
          !e.empty()) {
        return e;
      }
    }
  }
  if (config.contains("drives")) {
    for (const json& drive : config["drives"]) {
      if (std::string e =
              apply("PUT", "/drives/" + drive.value("drive_id", std::string()),
                    drive);
          !e.empty()) {
        return e;
      }
    }
  }
  if (config.contains("network-interfaces")) {
    for (const json& net : config["network-interfaces"]) {
      if (std::string e = apply(
              "PUT",
              "/network-interfaces/" + net.value("iface_id", std::string()),
              net);
          !e.empty()) {
        return e;
      }
    }
  }
  return apply("PUT", "/actions", {{"action_type", "InstanceStart"}});
}

// ---- The HTTP server ----------------------------------------------------

struct Connection {
  int fd = -1;
  std::string in;
};

// Parses one request from `c.in`. Returns false when more bytes are
// needed; otherwise fills `out` with the reply bytes (and `fatal` when the
// process must end after sending them).
bool Serve(Vmm& vmm, Connection& c, std::string* out, bool* fatal) {
  const size_t header_end = c.in.find("\r\n\r\n");
  if (header_end == std::string::npos) {
    if (c.in.size() > 8192) {
      *out = HttpError("Invalid request.");
      c.in.clear();
      return true;
    }
    return false;
  }
  std::istringstream head(c.in.substr(0, header_end));
  std::string request_line;
  std::getline(head, request_line);
  if (!request_line.empty() && request_line.back() == '\r')
    request_line.pop_back();
  std::istringstream words(request_line);
  std::string method, uri, version, extra;
  words >> method >> uri >> version;
  if (method.empty() || uri.empty() || version.empty() || (words >> extra)) {
    *out = HttpError("Invalid request.");
    c.in.clear();
    return true;
  }
  if (method != "GET" && method != "PUT" && method != "PATCH" &&
      method != "DELETE") {
    *out = HttpError("Invalid HTTP Method: Unsupported HTTP method.");
    c.in.clear();
    return true;
  }
  if (version != "HTTP/1.0" && version != "HTTP/1.1") {
    *out = HttpError("Invalid HTTP Version: Unsupported HTTP version.");
    c.in.clear();
    return true;
  }
  size_t length = 0;
  bool expect_continue = false;
  std::string line;
  while (std::getline(head, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    const size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    std::transform(key.begin(), key.end(), key.begin(), ::tolower);
    const std::string value = line.substr(colon + 1);
    if (key == "content-length") {
      char* end = nullptr;
      std::string trimmed = value;
      while (!trimmed.empty() && trimmed[0] == ' ') trimmed.erase(0, 1);
      errno = 0;
      unsigned long n = std::strtoul(trimmed.c_str(), &end, 10);
      if (trimmed.empty() || *end != '\0' || errno != 0 || n > 0xffffffffu) {
        *out = HttpError(
            "Invalid header. Reason: Invalid value. "
            "Key:Content-Length; Value:" +
            value);
        c.in.clear();
        return true;
      }
      length = n;
    } else if (key == "expect" &&
               value.find("100-continue") != std::string::npos) {
      expect_continue = true;
    }
  }
  if (length > kMaxPayload) {
    *out = HttpError("Request payload with size " + std::to_string(length) +
                     " is larger than the limit of " +
                     std::to_string(kMaxPayload) + " allowed by server.");
    c.in.clear();
    return true;
  }
  if (c.in.size() < header_end + 4 + length) {
    if (expect_continue && c.in.size() == header_end + 4) {
      const std::string cont =
          version +
          " 100 \r\nServer: Firecracker API\r\nConnection: "
          "keep-alive\r\n\r\n";
      (void)!::send(c.fd, cont.data(), cont.size(), MSG_NOSIGNAL);
    }
    return false;
  }
  const std::string body = c.in.substr(header_end + 4, length);
  c.in.erase(0, header_end + 4 + length);
  Reply reply = vmm.Handle(method, uri, body, length > 0);
  if (reply.status == -400) {
    reply.status = 400;
    *fatal = true;
  }
  *out = Serialize(reply);
  return true;
}

[[noreturn]] void ArgumentError(const corral::fakes::ParsedArgs& args) {
  std::fprintf(stderr, "Error: ParseArguments(%s)\n", args.debug.c_str());
  std::printf(
      "[anonymous-instance:main] Arguments parsing error: %s \\n\\nFor "
      "more information try --help.\n",
      args.error.c_str());
  std::exit(153);
}

}  // namespace

int main(int argc, char** argv) {
  ::signal(SIGPIPE, SIG_IGN);
  corral::fakes::ArgSpec spec;
  spec.flags = {"no-seccomp",       "no-api",          "boot-timer",
                "show-level",       "show-log-origin", "version",
                "snapshot-version", "enable-pci",      "help"};
  spec.values = {"api-sock",
                 "id",
                 "seccomp-filter",
                 "start-time-us",
                 "start-time-cpu-us",
                 "parent-cpu-time-us",
                 "config-file",
                 "metadata",
                 "log-path",
                 "level",
                 "module",
                 "metrics-path",
                 "describe-snapshot",
                 "http-api-max-payload-size",
                 "mmds-size-limit"};
  corral::fakes::ParsedArgs args = corral::fakes::ParseArgs(spec, argc, argv);
  if (!args.error.empty()) ArgumentError(args);
  if (args.flags.count("help") != 0) {
    std::printf(
        "firecracker v%s (corral test fake: QEMU stands in for the VMM)\n\n"
        "Usage: firecracker [--api-sock <path>] [--id <id>] [--config-file "
        "<file> [--no-api]] [--level <level>] [--version]\n",
        kVersion);
    return 0;
  }
  if (args.flags.count("version") != 0) {
    std::printf(
        "Firecracker v%s (corral test fake: QEMU stands in for the VMM)\n\n",
        kVersion);
    return 0;
  }
  if (args.flags.count("snapshot-version") != 0) {
    std::printf("v11.0.0\n");
    return 0;
  }
  if (args.Has("no-api") && !args.Has("config-file")) {
    corral::fakes::ParsedArgs missing = args;
    missing.error = "Argument 'config-file' required, but not found.";
    missing.debug = "MissingArgument(\"config-file\")";
    ArgumentError(missing);
  }
  if (args.Has("seccomp-filter") && args.Has("no-seccomp")) {
    corral::fakes::ParsedArgs both = args;
    both.error =
        "Argument 'no-seccomp' cannot be used together with argument "
        "'seccomp-filter'.";
    both.debug = "ForbiddenArgument(\"seccomp-filter\", \"no-seccomp\")";
    ArgumentError(both);
  }
  const std::string id = args.Value("id", "anonymous-instance");
  for (char c : id) {
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') {
      std::fprintf(stderr, "thread 'main' panicked: Invalid instance ID\n");
      std::abort();
    }
  }
  Vmm vmm(id);
  int listen_fd = -1;
  if (!args.Has("no-api")) {
    const std::string api = args.Value("api-sock", "/run/firecracker.socket");
    if (!BindUnix(api, &listen_fd).empty()) {
      std::fprintf(stderr,
                   "Failed to open the API socket at: %s. Check that it is "
                   "not already used.\n",
                   api.c_str());
      return 1;
    }
  }
  if (args.Has("config-file")) {
    std::ifstream in(args.Value("config-file"));
    std::stringstream text;
    text << in.rdbuf();
    json config = json::parse(text.str(), nullptr, false);
    std::string error = !in ? "cannot read " + args.Value("config-file")
                        : config.is_discarded()
                            ? "the configuration file is not JSON"
                            : vmm.Configure(config);
    if (!error.empty()) {
      std::fprintf(stderr, "Error: %s\n", error.c_str());
      return 1;
    }
  }

  std::vector<Connection> connections;
  for (;;) {
    std::vector<pollfd> polls;
    if (listen_fd >= 0) polls.push_back({listen_fd, POLLIN, 0});
    const size_t first_connection = polls.size();
    for (const Connection& c : connections) polls.push_back({c.fd, POLLIN, 0});
    const int qemu = vmm.qemu_pidfd();
    if (qemu >= 0) polls.push_back({qemu, POLLIN, 0});
    if (::poll(polls.data(), polls.size(), -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    if (qemu >= 0 && polls.back().revents != 0) {
      // The guest powered off or QEMU died: so does the VMM.
      siginfo_t info{};
      ::waitid(P_PIDFD, static_cast<id_t>(qemu), &info, WEXITED);
      vmm.QemuExited();
      return 0;
    }
    for (size_t i = connections.size(); i-- > 0;) {
      const pollfd& p = polls[first_connection + i];
      if (p.revents == 0) continue;
      Connection& c = connections[i];
      char buffer[65536];
      ssize_t n = ::recv(c.fd, buffer, sizeof(buffer), 0);
      if (n <= 0) {
        ::close(c.fd);
        connections.erase(connections.begin() + static_cast<long>(i));
        continue;
      }
      c.in.append(buffer, static_cast<size_t>(n));
      std::string out;
      bool fatal = false;
      while (Serve(vmm, c, &out, &fatal)) {
        (void)!::send(c.fd, out.data(), out.size(), MSG_NOSIGNAL);
        if (fatal) return 1;
        out.clear();
      }
    }
    if (listen_fd >= 0 && polls[0].revents != 0) {
      int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) {
        if (connections.size() >= kMaxConnections) {
          const std::string busy =
              "HTTP/1.1 503\r\nServer: Firecracker API\r\nConnection: "
              "close\r\nContent-Length: 40\r\n\r\n{ \"error\": \"Too many "
              "open connections\" }";
          (void)!::send(fd, busy.data(), busy.size(), MSG_NOSIGNAL);
          ::close(fd);
        } else {
          connections.push_back({fd, ""});
        }
      }
    }
  }
}
