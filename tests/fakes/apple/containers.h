// The container side of the FAKE `container` CLI: where a container's
// record lives, how runc stands in for its VM, the per-container monitor
// (it reaps the container's init, relays --publish-socket connections and
// records the exit), and stop, kill, exec and delete on top of runc.
//
// A container is <root>/containers/<id>/:
//   container.json  {"configuration": ContainerConfiguration, "fake": {...}}
//   state.json      init and monitor pids with their start times, the
//                   start date (written once the container runs)
//   exit.json       the init's exit status (written when it ended)
//   bundle/         runc's bundle (config.json)
//   rootfs upper work   the overlay root (lower: the image's rootfs)
//   stdio.log       the container process's stdout and stderr
// runc keeps its state under <root>/runc; cgroups are
// /corral-apple-fake-<hash of the root>-<id>.
#ifndef CORRAL_TESTS_FAKES_APPLE_CONTAINERS_H_
#define CORRAL_TESTS_FAKES_APPLE_CONTAINERS_H_

#include <sys/types.h>

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/fakes/apple/image_store.h"

namespace corral::fake_apple {

struct ContainerRecord {
  std::string id;
  nlohmann::json configuration;  // ContainerConfiguration
  nlohmann::json fake;           // what only the fake keeps
};

struct ContainerState {
  bool running = false;
  pid_t init_pid = 0;
  long long init_start = -1;
  pid_t monitor_pid = 0;
  long long monitor_start = -1;
  std::optional<std::string> started_date;
};

// How the container process's stdio is wired when it starts: the CLI's
// own (a foreground run) or the log file.
struct RunIo {
  bool foreground = false;
  bool interactive = false;  // the CLI's stdin (foreground only)
};

class Containers {
 public:
  Containers(std::string root, std::string runc, ImageStore* images);

  std::string Dir(const std::string& id) const;
  std::string LockPath() const { return root_ + "/lock"; }
  bool Exists(const std::string& id) const;  // a record, complete or not
  std::vector<std::string> Ids() const;      // complete records
  std::optional<ContainerRecord> Load(const std::string& id) const;
  ContainerState State(const std::string& id) const;
  // ManagedContainer as list and inspect print it.
  nlohmann::json Managed(const ContainerRecord& record) const;
  // The index digests (hex) of every container's image.
  std::set<std::string> ImagesInUse() const;

  // Makes containers/<id> and writes the record; false when it exists.
  // The caller holds the state lock.
  bool Create(const ContainerRecord& record);

  // Mounts the root, writes runc's bundle and starts the monitor, which
  // creates and starts the runc container. Returns the monitor's
  // report pipe (read "exit <code>" from it for a foreground run).
  // Fails (Fail()) with the reason.
  int Start(const ContainerRecord& record, const RunIo& io,
            const std::string& image_rootfs);

  // runc kill; true when the container was running.
  bool Signal(const std::string& id, int signal);
  // Waits up to `timeout_ms` for the init to end, then for its monitor
  // to finish (sockets removed, exit recorded). True when it ended.
  bool WaitStopped(const std::string& id, int timeout_ms);
  // Stops: `signal`, then SIGKILL after `timeout_seconds`.
  void Stop(const std::string& id, int signal, int timeout_seconds);
  // Removes runc's container, the overlay and the record (which must
  // not be running), then unused images.
  void Remove(const std::string& id);

  // `runc exec` of `process` (an OCI process) with the given stdio;
  // returns the exit code, or -1 with `*error`.
  int Exec(const std::string& id, const nlohmann::json& process, bool detach,
           int stdin_fd, std::string* error);

  // ContainerStats of a running container, from its cgroup.
  nlohmann::json Stats(const std::string& id) const;

  // The OCI process of a container's init (user, capabilities, env...).
  nlohmann::json InitProcess(const ContainerRecord& record) const;
  // Resolves a ProcessConfiguration.User against the container's root
  // filesystem: {"uid", "gid", "additionalGids"}. Fail()s when a name is
  // unknown.
  nlohmann::json ResolveUser(const std::string& rootfs,
                             const nlohmann::json& user,
                             const nlohmann::json& supplemental) const;

  // The monitor's entry point (in the forked process).
  [[noreturn]] void MonitorMain(const ContainerRecord& record, int report_fd,
                                const int stdio[3]);

 private:
  std::string CgroupsPath(const std::string& id) const;
  nlohmann::json Bundle(const ContainerRecord& record,
                        const nlohmann::json& user) const;
  std::string RuncError(const std::string& id) const;
  int Runc(const std::vector<std::string>& args, int stdin_fd = -1,
           int stdout_fd = -1, int stderr_fd = -1) const;

  std::string root_;
  std::string runc_;
  ImageStore* images_;
};

// Signal names and numbers as `container stop -s` and `kill -s` take
// them (KILL, SIGKILL, 9); -1 when unknown.
int ParseSignal(const std::string& text);

}  // namespace corral::fake_apple

#endif  // CORRAL_TESTS_FAKES_APPLE_CONTAINERS_H_
