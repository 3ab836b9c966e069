// corral e2b: an HTTP/1.1 server that speaks what E2B's SDKs call, so that a
// program written for E2B runs on Corral by pointing E2B_API_URL and
// E2B_SANDBOX_URL here. It is a client of corrald's gRPC API like the CLI:
// it owns the sandboxes it makes under the uid it runs as, and never runs as
// root.
//
// Two faces on one listener:
//  - the control plane (X-API-KEY): create, connect, get, list, kill,
//    timeouts, pause and resume of sandboxes (gateway.cc);
//  - envd, the agent E2B runs in each sandbox, routed by the E2b-Sandbox-Id
//    header and checked against the sandbox's access token (X-Access-Token):
//    the Connect services process.Process (envd_process.cc) and
//    filesystem.Filesystem, GET/POST /files and GET /health
//    (envd_files.cc).
// docs/e2b.md says what is and is not supported.
#ifndef CORRAL_CLIENT_E2B_GATEWAY_H_
#define CORRAL_CLIENT_E2B_GATEWAY_H_

#include <httplib.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/e2b/config.h"
#include "client/e2b/connect.h"
#include "corral/v1/exec.grpc.pb.h"
#include "corral/v1/files.grpc.pb.h"
#include "corral/v1/sandboxes.grpc.pb.h"
#include "corral/v1/shells.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace corral::e2b {

// The envd version the gateway advertises: the highest whose features the
// SDK gates on are all built (docs/e2b.md, "envd version").
inline constexpr char kEnvdVersion[] = "0.1.4";
// The port envd listens on in an E2B sandbox; the SDK names it in
// E2b-Sandbox-Port.
inline constexpr int kEnvdPort = 49983;

// Labels of the sandboxes the gateway makes.
inline constexpr char kGatewayLabel[] = "e2b.gateway";
inline constexpr char kTemplateLabel[] = "e2b.template";
inline constexpr char kUserLabel[] = "e2b.user";
inline constexpr char kWorkdirLabel[] = "e2b.workdir";
inline constexpr char kMetadataPrefix[] = "e2b.meta/";

class Gateway {
 public:
  // `token_key`: the secret that access tokens are derived from.
  Gateway(Config config, const std::string& socket_path, std::string token_key);

  // Registers every route on `server`.
  void Install(httplib::Server& server);

  // The access token of a sandbox: HMAC-SHA256 of its id under the key.
  std::string AccessToken(const std::string& sandbox_id) const;

 private:
  // ---- control plane (gateway.cc) ----
  bool Authorized(const httplib::Request& request,
                  httplib::Response& response) const;
  void CreateSandbox(const httplib::Request& request,
                     httplib::Response& response);
  void ConnectSandbox(const httplib::Request& request,
                      httplib::Response& response, const std::string& id,
                      bool resume_only);
  void GetSandbox(const std::string& id, httplib::Response& response);
  void ListSandboxes(const httplib::Request& request,
                     httplib::Response& response, bool paged);
  void KillSandbox(const std::string& id, httplib::Response& response);
  void SetTimeout(const httplib::Request& request, httplib::Response& response,
                  const std::string& id);
  void PauseSandbox(const std::string& id, httplib::Response& response);
  // A sandbox of this gateway's, else NOT_FOUND.
  absl::StatusOr<corral::v1::Sandbox> FindSandbox(const std::string& id);
  Json SandboxJson(const corral::v1::Sandbox& sandbox, bool detail) const;

  // ---- envd: shared ----
  // Who calls envd, for which sandbox.
  struct EnvdCall {
    std::string sandbox_id;
    std::string user;     // E2B's user name
    std::string home;     // its home: the base of relative paths
    std::string workdir;  // where an empty path (or cwd) goes
    std::optional<absl::Duration> timeout;  // Connect-Timeout-Ms
    int keepalive_seconds = 90;             // Keepalive-Ping-Interval
  };
  // Checks the sandbox id, port and access token, then that the sandbox
  // runs; answers the error itself and returns nullopt when one fails.
  // `username` is the /files query parameter ("" for the Authorization
  // header).
  std::optional<EnvdCall> OpenEnvd(const httplib::Request& request,
                                   httplib::Response& response,
                                   const std::string& username, bool rpc);
  // A path as envd resolves it: "~" and relative paths from the home.
  absl::StatusOr<std::string> ResolvePath(const EnvdCall& call,
                                          const std::string& path) const;
  // An error of a call on a sandbox: when the sandbox is gone (or not
  // running any more) the error is UNAVAILABLE "sandbox ... is not running",
  // which the SDK reports as the sandbox having timed out.
  absl::Status SandboxError(const std::string& sandbox_id,
                            const grpc::Status& status);
  std::unique_ptr<grpc::ClientContext> Context(
      std::optional<absl::Duration> timeout = std::nullopt) const;

  // ---- envd: Connect (envd_process.cc, envd_files.cc) ----
  void Rpc(const httplib::Request& request, httplib::Response& response,
           const std::string& service, const std::string& method);
  // Unary methods: the answer's JSON, or an error.
  absl::StatusOr<Json> Unary(const EnvdCall& call, const std::string& method,
                             const Json& body);
  // Server-streaming methods: writes the stream to `response`.
  void Stream(const EnvdCall& call, const std::string& method, const Json& body,
              httplib::Response& response);
  // The stream's body, from the response's content provider: false when
  // the client left before its end.
  bool RunStream(const EnvdCall& call, const std::string& method,
                 const Json& body, httplib::DataSink& sink);

  // process.Process
  absl::StatusOr<Json> ListProcesses(const EnvdCall& call);
  absl::StatusOr<corral::v1::Process> FindProcess(const EnvdCall& call,
                                                  const Json& selector);
  absl::StatusOr<Json> SendInput(const EnvdCall& call, const Json& body);
  absl::StatusOr<Json> SendSignal(const EnvdCall& call, const Json& body);
  absl::StatusOr<Json> UpdateProcess(const EnvdCall& call, const Json& body);
  absl::StatusOr<Json> CloseStdin(const EnvdCall& call, const Json& body);
  // Start and Connect: the process to follow, and the output offset to
  // follow it from; or an error before the stream begins.
  absl::StatusOr<std::pair<corral::v1::Process, uint64_t>> StartProcess(
      const EnvdCall& call, const Json& body);
  absl::StatusOr<std::pair<corral::v1::Process, uint64_t>> ConnectProcess(
      const EnvdCall& call, const Json& body);
  // Removes processes that exited more than a minute ago: E2B forgets a
  // process once it is reaped, Corral keeps it until it is removed.
  void SweepProcesses(const std::string& sandbox_id);
  void RemoveProcess(const std::string& sandbox_id,
                     const std::string& process_id);

  // filesystem.Filesystem
  // Streams a watch's events with `send` (false: the client left) until
  // the deadline, the client leaving, or an error; returns how it ended.
  absl::Status WatchDir(const EnvdCall& call, const Json& body,
                        const std::function<bool(const Json&)>& send);
  absl::StatusOr<Json> Stat(const EnvdCall& call, const Json& body);
  absl::StatusOr<Json> ListDir(const EnvdCall& call, const Json& body);
  absl::StatusOr<Json> MakeDir(const EnvdCall& call, const Json& body);
  absl::StatusOr<Json> Move(const EnvdCall& call, const Json& body);
  absl::StatusOr<Json> Remove(const EnvdCall& call, const Json& body);
  absl::StatusOr<corral::v1::FileInfo> StatPath(const EnvdCall& call,
                                                const std::string& path);
  // StatPath that follows symlinks (at most 40), as opening does; `path`
  // becomes where it led.
  absl::StatusOr<corral::v1::FileInfo> StatFollowing(const EnvdCall& call,
                                                     std::string& path);

  // GET/POST /files, GET /health
  void Download(const httplib::Request& request, httplib::Response& response);
  void Upload(const httplib::Request& request, httplib::Response& response,
              const httplib::ContentReader& content);
  absl::StatusOr<corral::v1::FileInfo> WriteFile(const EnvdCall& call,
                                                 const std::string& path,
                                                 const std::string& data);

  const Config config_;
  const std::string token_key_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<corral::v1::Sandboxes::Stub> sandboxes_;
  std::unique_ptr<corral::v1::Exec::Stub> exec_;
  std::unique_ptr<corral::v1::Files::Stub> files_;
  std::unique_ptr<corral::v1::Shells::Stub> shells_;
};

// A path as envd resolves it for a user: "" is the working directory, "~"
// and relative paths are from the home, and the result is cleaned of "."
// and ".." (which cannot climb above "/").
absl::StatusOr<std::string> ResolveEnvdPath(const std::string& path,
                                            const std::string& home,
                                            const std::string& workdir);

// Loads the token key from `state_dir`/token-key, creating it (32 random
// bytes, mode 0600) the first time.
absl::StatusOr<std::string> LoadTokenKey(const std::string& state_dir);

// E2B's JSON error of the control plane and of /files: {"code": status,
// "message": ...}.
void ReplyError(httplib::Response& response, int status,
                const std::string& message);
void ReplyJson(httplib::Response& response, int status, const Json& body);
// A request's Content-Type without its parameters, lowercase.
std::string MediaType(const httplib::Request& request);
// The HTTP status E2B's API gives for a Corral error.
int HttpStatusOfStatus(const absl::Status& status);
absl::Status FromGrpc(const grpc::Status& status);

// EntryInfo of envd for a Corral FileInfo at absolute path `path`.
Json EntryJson(const corral::v1::FileInfo& info, const std::string& path);
// Go's FileMode.String() of a type and permission bits: "-rw-r--r--".
std::string PermissionString(corral::v1::FileType type, uint32_t mode);

}  // namespace corral::e2b

#endif  // CORRAL_CLIENT_E2B_GATEWAY_H_
