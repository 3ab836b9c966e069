// The gateway's routes, its control plane, and what envd's handlers share.
#include "client/e2b/gateway.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <regex>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "client/connection.h"
#include "corral/hex_id.h"
#include "corral/status_macros.h"
#include "google/protobuf/util/time_util.h"

namespace corral::e2b {
namespace {

namespace v1 = corral::v1;
using google::protobuf::util::TimeUtil;

constexpr char kClientId[] = "corral";
constexpr size_t kMaxControlBody = 1 << 20;

std::string Rfc3339(const google::protobuf::Timestamp& t) {
  return TimeUtil::ToString(t);
}

// Metadata, from the sandbox's labels.
Json MetadataOf(const v1::Sandbox& sandbox) {
  Json metadata = Json::object();
  const std::string prefix = kMetadataPrefix;
  for (const auto& [key, value] : sandbox.labels()) {
    if (absl::StartsWith(key, prefix)) {
      metadata[key.substr(prefix.size())] = value;
    }
  }
  return metadata;
}

std::string StateOf(const v1::Sandbox& sandbox) {
  return sandbox.state() == v1::SANDBOX_STATE_PAUSED ? "paused" : "running";
}

// Timeout in seconds from a JSON body's "timeout"; 0 when absent.
absl::StatusOr<uint64_t> TimeoutOf(const Json& body) {
  if (!body.contains("timeout") || body["timeout"].is_null()) return 0;
  const Json& t = body["timeout"];
  if (!t.is_number_integer() || t.get<int64_t>() <= 0) {
    return absl::InvalidArgumentError(
        "timeout: expected a positive whole number of seconds");
  }
  return t.get<uint64_t>();
}

absl::StatusOr<Json> ParseBody(const httplib::Request& request) {
  if (request.body.size() > kMaxControlBody) {
    return absl::InvalidArgumentError("the request body is too large");
  }
  if (absl::StripAsciiWhitespace(request.body).empty()) return Json::object();
  Json body = Json::parse(request.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    return absl::InvalidArgumentError("the request body is not a JSON object");
  }
  return body;
}

// Whether a sandbox matches "k=v&k2=v2" (the SDK url-encodes both).
bool MatchesMetadata(const v1::Sandbox& sandbox, const std::string& query) {
  if (query.empty()) return true;
  for (absl::string_view pair : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    const size_t eq = pair.find('=');
    const std::string key =
        httplib::detail::decode_url(std::string(pair.substr(0, eq)), true);
    const std::string value = eq == absl::string_view::npos
                                  ? ""
                                  : httplib::detail::decode_url(
                                        std::string(pair.substr(eq + 1)), true);
    auto it = sandbox.labels().find(kMetadataPrefix + key);
    if (it == sandbox.labels().end() || it->second != value) return false;
  }
  return true;
}

}  // namespace

std::string MediaType(const httplib::Request& request) {
  const std::string type = request.get_header_value("Content-Type");
  return absl::AsciiStrToLower(
      absl::StripAsciiWhitespace(type.substr(0, type.find(';'))));
}

void ReplyJson(httplib::Response& response, int status, const Json& body) {
  response.status = status;
  response.set_content(
      body.dump(-1, ' ', false, Json::error_handler_t::replace),
      "application/json");
}

void ReplyError(httplib::Response& response, int status,
                const std::string& message) {
  ReplyJson(response, status, {{"code", status}, {"message", message}});
}

absl::Status FromGrpc(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

int HttpStatusOfStatus(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kOutOfRange:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return 409;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kUnimplemented:
      return 501;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

Gateway::Gateway(Config config, const std::string& socket_path,
                 std::string token_key)
    : config_(std::move(config)), token_key_(std::move(token_key)) {
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(corral::cli::kMaxReceiveMessageBytes);
  // A daemon that restarts is back within a second or so: reconnect to its
  // socket quickly rather than after gRPC's backoff of up to two minutes
  // (calls meanwhile fail at once, 503).
  arguments.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  arguments.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  arguments.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  channel_ =
      grpc::CreateCustomChannel(absl::StrCat("unix:", socket_path),
                                grpc::InsecureChannelCredentials(), arguments);
  sandboxes_ = v1::Sandboxes::NewStub(channel_);
  exec_ = v1::Exec::NewStub(channel_);
  files_ = v1::Files::NewStub(channel_);
  shells_ = v1::Shells::NewStub(channel_);
}

std::string Gateway::AccessToken(const std::string& sandbox_id) const {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), token_key_.data(), static_cast<int>(token_key_.size()),
       reinterpret_cast<const unsigned char*>(sandbox_id.data()),
       sandbox_id.size(), digest, &size);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), size));
}

std::unique_ptr<grpc::ClientContext> Gateway::Context(
    std::optional<absl::Duration> timeout) const {
  auto context = std::make_unique<grpc::ClientContext>();
  absl::Duration limit = absl::Seconds(corral::cli::kUnaryDeadline.count());
  if (timeout && *timeout > absl::ZeroDuration()) {
    limit = std::min(limit, *timeout);
  }
  context->set_deadline(absl::ToChronoTime(absl::Now() + limit));
  return context;
}

bool Gateway::Authorized(const httplib::Request& request,
                         httplib::Response& response) const {
  std::string key = request.get_header_value("X-API-KEY");
  if (key.empty()) {
    const std::string bearer = request.get_header_value("Authorization");
    if (absl::StartsWith(bearer, "Bearer ")) key = bearer.substr(7);
  }
  for (const std::string& known : config_.api_keys) {
    if (key.size() == known.size() &&
        CRYPTO_memcmp(key.data(), known.data(), key.size()) == 0) {
      return true;
    }
  }
  ReplyError(response, 401,
             key.empty() ? "missing API key (X-API-KEY)" : "invalid API key");
  return false;
}

absl::StatusOr<v1::Sandbox> Gateway::FindSandbox(const std::string& id) {
  v1::GetSandboxRequest request;
  request.set_id(id);
  v1::Sandbox sandbox;
  auto context = Context();
  grpc::Status s = sandboxes_->GetSandbox(context.get(), request, &sandbox);
  if (!s.ok()) {
    if (s.error_code() == grpc::StatusCode::NOT_FOUND ||
        s.error_code() == grpc::StatusCode::INVALID_ARGUMENT) {
      return absl::NotFoundError(absl::StrCat("sandbox ", id, " not found"));
    }
    return FromGrpc(s);
  }
  if (!sandbox.labels().contains(kGatewayLabel) ||
      sandbox.state() == v1::SANDBOX_STATE_DELETING) {
    return absl::NotFoundError(absl::StrCat("sandbox ", id, " not found"));
  }
  return sandbox;
}

Json Gateway::SandboxJson(const v1::Sandbox& sandbox, bool detail) const {
  const auto label = [&](const char* key) -> std::string {
    auto it = sandbox.labels().find(key);
    return it == sandbox.labels().end() ? "" : it->second;
  };
  Json out = {
      {"sandboxID", sandbox.id()},
      {"templateID", label(kTemplateLabel)},
      {"alias", label(kTemplateLabel)},
      {"clientID", kClientId},
      {"startedAt", Rfc3339(sandbox.created_at())},
      {"endAt", Rfc3339(sandbox.expires_at())},
      {"cpuCount",
       std::max<uint32_t>(1, (sandbox.limits().cpu_millis() + 999) / 1000)},
      {"memoryMB", sandbox.limits().memory_mib()},
      {"diskSizeMB", sandbox.limits().disk_mib()},
      {"metadata", MetadataOf(sandbox)},
      {"state", StateOf(sandbox)},
      {"envdVersion", kEnvdVersion},
      {"volumeMounts", Json::array()},
  };
  if (detail) {
    out["envdAccessToken"] = AccessToken(sandbox.id());
    out["allowInternetAccess"] =
        sandbox.network() != v1::NETWORK_MODE_NONE &&
        sandbox.network() != v1::NETWORK_MODE_UNSPECIFIED;
  }
  return out;
}

void Gateway::CreateSandbox(const httplib::Request& request,
                            httplib::Response& response) {
  auto body = ParseBody(request);
  if (!body.ok())
    return ReplyError(response, 400, std::string(body.status().message()));
  std::string template_id = "base";
  if (body->contains("templateID")) {
    if (!(*body)["templateID"].is_string()) {
      return ReplyError(response, 400, "templateID: expected a string");
    }
    template_id = (*body)["templateID"].get<std::string>();
  }
  auto found = config_.templates.find(template_id);
  if (found == config_.templates.end()) {
    std::string known;
    for (const auto& [name, t] : config_.templates) {
      absl::StrAppend(&known, known.empty() ? "" : ", ", name);
    }
    return ReplyError(
        response, 404,
        absl::StrCat("template '", template_id,
                     "' not found (this gateway has: ", known, ")"));
  }
  const Template& t = found->second;
  auto timeout = TimeoutOf(*body);
  if (!timeout.ok())
    return ReplyError(response, 400, std::string(timeout.status().message()));

  v1::CreateSandboxRequest create;
  create.set_runtime(t.runtime);
  create.set_image(t.image);
  create.mutable_limits()->set_cpu_millis(t.cpu_millis);
  create.mutable_limits()->set_memory_mib(t.memory_mib);
  create.mutable_limits()->set_disk_mib(t.disk_mib);
  create.set_ttl_seconds(*timeout > 0 ? *timeout
                                      : config_.default_timeout_seconds);
  auto& labels = *create.mutable_labels();
  labels[kGatewayLabel] = "1";
  labels[kTemplateLabel] = template_id;
  labels[kUserLabel] = t.user;
  if (!t.workdir.empty()) labels[kWorkdirLabel] = t.workdir;
  if (body->contains("metadata") && !(*body)["metadata"].is_null()) {
    const Json& metadata = (*body)["metadata"];
    if (!metadata.is_object()) {
      return ReplyError(response, 400, "metadata: expected an object");
    }
    for (const auto& [key, value] : metadata.items()) {
      const std::string label = kMetadataPrefix + key;
      if (!value.is_string()) {
        return ReplyError(
            response, 400,
            absl::StrCat("metadata.", key, ": expected a string"));
      }
      // The daemon checks label keys and values: a bad one is its
      // INVALID_ARGUMENT, a 400.
      labels[label] = value.get<std::string>();
    }
  }
  if (body->contains("envVars") && !(*body)["envVars"].is_null()) {
    const Json& env = (*body)["envVars"];
    if (!env.is_object())
      return ReplyError(response, 400, "envVars: expected an object");
    for (const auto& [key, value] : env.items()) {
      if (!value.is_string()) {
        return ReplyError(response, 400,
                          absl::StrCat("envVars.", key, ": expected a string"));
      }
      (*create.mutable_env())[key] = value.get<std::string>();
    }
  }
  // allow_internet_access is not honoured: a sandbox gets the network its
  // runtime and the daemon's policy give (sealed by default); see
  // docs/e2b.md.
  (*create.mutable_env())["E2B_SANDBOX"] = "true";
  v1::Sandbox sandbox;
  auto context = Context(absl::Minutes(5));
  grpc::Status s = sandboxes_->CreateSandbox(context.get(), create, &sandbox);
  if (!s.ok()) {
    const absl::Status status = FromGrpc(s);
    return ReplyError(
        response, HttpStatusOfStatus(status),
        absl::StrCat("cannot create the sandbox: ", status.message()));
  }
  Json out = SandboxJson(sandbox, true);
  ReplyJson(response, 201, out);
}

void Gateway::ConnectSandbox(const httplib::Request& request,
                             httplib::Response& response, const std::string& id,
                             bool resume_only) {
  auto body = ParseBody(request);
  if (!body.ok())
    return ReplyError(response, 400, std::string(body.status().message()));
  auto timeout = TimeoutOf(*body);
  if (!timeout.ok())
    return ReplyError(response, 400, std::string(timeout.status().message()));
  auto sandbox = FindSandbox(id);
  if (!sandbox.ok()) {
    return ReplyError(response, HttpStatusOfStatus(sandbox.status()),
                      std::string(sandbox.status().message()));
  }
  int status = 200;
  if (sandbox->state() == v1::SANDBOX_STATE_PAUSED) {
    v1::ResumeSandboxRequest resume;
    resume.set_id(id);
    auto context = Context(absl::Minutes(5));
    grpc::Status s =
        sandboxes_->ResumeSandbox(context.get(), resume, &*sandbox);
    if (!s.ok()) {
      const absl::Status st = FromGrpc(s);
      return ReplyError(response, HttpStatusOfStatus(st),
                        absl::StrCat("cannot resume: ", st.message()));
    }
    status = 201;
  } else if (resume_only) {
    return ReplyError(response, 409,
                      absl::StrCat("sandbox ", id, " is not paused"));
  } else if (sandbox->state() != v1::SANDBOX_STATE_RUNNING) {
    return ReplyError(response, 404,
                      absl::StrCat("sandbox ", id, " is not running"));
  }
  if (*timeout > 0) {
    v1::ExtendSandboxRequest extend;
    extend.set_id(id);
    extend.set_ttl_seconds(*timeout);
    auto context = Context();
    grpc::Status s =
        sandboxes_->ExtendSandbox(context.get(), extend, &*sandbox);
    if (!s.ok()) {
      const absl::Status st = FromGrpc(s);
      return ReplyError(response, HttpStatusOfStatus(st),
                        std::string(st.message()));
    }
  }
  ReplyJson(response, status, SandboxJson(*sandbox, true));
}

void Gateway::GetSandbox(const std::string& id, httplib::Response& response) {
  auto sandbox = FindSandbox(id);
  if (!sandbox.ok()) {
    return ReplyError(response, HttpStatusOfStatus(sandbox.status()),
                      std::string(sandbox.status().message()));
  }
  ReplyJson(response, 200, SandboxJson(*sandbox, true));
}

void Gateway::ListSandboxes(const httplib::Request& request,
                            httplib::Response& response, bool paged) {
  v1::ListSandboxesRequest list;
  (*list.mutable_label_selector())[kGatewayLabel] = "1";
  v1::ListSandboxesResponse listed;
  auto context = Context();
  grpc::Status s = sandboxes_->ListSandboxes(context.get(), list, &listed);
  if (!s.ok()) {
    const absl::Status st = FromGrpc(s);
    return ReplyError(response, HttpStatusOfStatus(st),
                      std::string(st.message()));
  }
  // state: "running,paused" (the SDK's form, unexploded) or repeated.
  std::vector<std::string> states;
  for (size_t i = 0; i < request.get_param_value_count("state"); ++i) {
    for (absl::string_view one : absl::StrSplit(
             request.get_param_value("state", i), ',', absl::SkipEmpty())) {
      if (one != "running" && one != "paused") {
        return ReplyError(
            response, 400,
            absl::StrCat("state: '", one, "' is not running or paused"));
      }
      states.emplace_back(one);
    }
  }
  const std::string metadata = request.get_param_value("metadata");
  const std::string order = request.get_param_value("order");
  if (!order.empty() && order != "asc" && order != "desc") {
    return ReplyError(response, 400, "order: expected asc or desc");
  }
  std::vector<const v1::Sandbox*> matching;
  for (const v1::Sandbox& sandbox : listed.sandboxes()) {
    if (sandbox.state() != v1::SANDBOX_STATE_RUNNING &&
        sandbox.state() != v1::SANDBOX_STATE_PAUSED) {
      continue;
    }
    if (!states.empty() && std::find(states.begin(), states.end(),
                                     StateOf(sandbox)) == states.end()) {
      continue;
    }
    if (!MatchesMetadata(sandbox, metadata)) continue;
    matching.push_back(&sandbox);
  }
  // Newest first unless order=asc; the page token is the sort key of the
  // last sandbox of the previous page, so a page never repeats one.
  const bool ascending = order == "asc";
  const auto key = [](const v1::Sandbox* sandbox) {
    return absl::StrCat(
        absl::Dec(TimeUtil::TimestampToMicroseconds(sandbox->created_at()),
                  absl::kZeroPad20),
        ".", sandbox->id());
  };
  std::sort(matching.begin(), matching.end(),
            [&](const v1::Sandbox* a, const v1::Sandbox* b) {
              return ascending ? key(a) < key(b) : key(a) > key(b);
            });
  size_t limit = matching.size();
  std::string after;
  if (paged) {
    limit = 100;
    const std::string limit_text = request.get_param_value("limit");
    if (!limit_text.empty() &&
        (!absl::SimpleAtoi(limit_text, &limit) || limit < 1 || limit > 100)) {
      return ReplyError(response, 400, "limit: expected 1 to 100");
    }
    const std::string token = request.get_param_value("nextToken");
    if (!token.empty() && !absl::WebSafeBase64Unescape(token, &after)) {
      return ReplyError(response, 400, "nextToken: not a token of this API");
    }
  }
  Json out = Json::array();
  std::string last;
  bool more = false;
  for (const v1::Sandbox* sandbox : matching) {
    const std::string k = key(sandbox);
    if (!after.empty() && (ascending ? k <= after : k >= after)) continue;
    if (out.size() == limit) {
      more = true;
      break;
    }
    out.push_back(SandboxJson(*sandbox, false));
    last = k;
  }
  if (more)
    response.set_header("X-Next-Token", absl::WebSafeBase64Escape(last));
  ReplyJson(response, 200, out);
}

void Gateway::KillSandbox(const std::string& id, httplib::Response& response) {
  auto sandbox = FindSandbox(id);
  if (!sandbox.ok()) {
    return ReplyError(response, HttpStatusOfStatus(sandbox.status()),
                      std::string(sandbox.status().message()));
  }
  v1::DeleteSandboxRequest request;
  request.set_id(id);
  v1::DeleteSandboxResponse deleted;
  auto context = Context(absl::Minutes(2));
  grpc::Status s = sandboxes_->DeleteSandbox(context.get(), request, &deleted);
  if (!s.ok() && s.error_code() != grpc::StatusCode::NOT_FOUND) {
    const absl::Status st = FromGrpc(s);
    return ReplyError(response, HttpStatusOfStatus(st),
                      std::string(st.message()));
  }
  if (!s.ok()) {
    return ReplyError(response, 404,
                      absl::StrCat("sandbox ", id, " not found"));
  }
  response.status = 204;
}

void Gateway::SetTimeout(const httplib::Request& request,
                         httplib::Response& response, const std::string& id) {
  auto body = ParseBody(request);
  if (!body.ok())
    return ReplyError(response, 400, std::string(body.status().message()));
  auto timeout = TimeoutOf(*body);
  if (!timeout.ok() || *timeout == 0) {
    return ReplyError(response, 400,
                      "timeout: expected a positive whole number of seconds");
  }
  auto sandbox = FindSandbox(id);
  if (!sandbox.ok()) {
    return ReplyError(response, HttpStatusOfStatus(sandbox.status()),
                      std::string(sandbox.status().message()));
  }
  v1::ExtendSandboxRequest extend;
  extend.set_id(id);
  extend.set_ttl_seconds(*timeout);
  auto context = Context();
  grpc::Status s = sandboxes_->ExtendSandbox(context.get(), extend, &*sandbox);
  if (!s.ok()) {
    const absl::Status st = FromGrpc(s);
    return ReplyError(response, HttpStatusOfStatus(st),
                      std::string(st.message()));
  }
  response.status = 204;
}

void Gateway::PauseSandbox(const std::string& id, httplib::Response& response) {
  auto sandbox = FindSandbox(id);
  if (!sandbox.ok()) {
    return ReplyError(response, HttpStatusOfStatus(sandbox.status()),
                      std::string(sandbox.status().message()));
  }
  if (sandbox->state() == v1::SANDBOX_STATE_PAUSED) {
    return ReplyError(response, 409,
                      absl::StrCat("sandbox ", id, " is already paused"));
  }
  v1::PauseSandboxRequest pause;
  pause.set_id(id);
  auto context = Context(absl::Minutes(2));
  grpc::Status s = sandboxes_->PauseSandbox(context.get(), pause, &*sandbox);
  if (!s.ok()) {
    const absl::Status st = FromGrpc(s);
    return ReplyError(response, HttpStatusOfStatus(st),
                      absl::StrCat("cannot pause: ", st.message()));
  }
  response.status = 204;
}

// ---- envd: shared ----------------------------------------------------------

std::optional<Gateway::EnvdCall> Gateway::OpenEnvd(
    const httplib::Request& request, httplib::Response& response,
    const std::string& username, bool rpc) {
  const auto fail = [&](int status, const std::string& code,
                        const std::string& message) {
    if (rpc) {
      ReplyJson(response, status, ErrorBody({code, message}));
    } else {
      ReplyError(response, status, message);
    }
  };
  EnvdCall call;
  call.sandbox_id = request.get_header_value("E2b-Sandbox-Id");
  if (call.sandbox_id.empty()) {
    fail(400, "invalid_argument",
         "missing the E2b-Sandbox-Id header: envd's routes are per sandbox "
         "(set E2B_SANDBOX_URL to this gateway)");
    return std::nullopt;
  }
  const std::string port = request.get_header_value("E2b-Sandbox-Port");
  if (!port.empty() && port != std::to_string(kEnvdPort)) {
    fail(502, "unavailable",
         absl::StrCat("port ", port.substr(0, 8), " of sandbox ",
                      call.sandbox_id.substr(0, 64),
                      " is not served by this gateway (only envd's, ",
                      kEnvdPort, ")"));
    return std::nullopt;
  }
  // The token first: whether a sandbox exists is nobody else's business.
  const std::string token = request.get_header_value("X-Access-Token");
  const std::string expected = AccessToken(call.sandbox_id);
  if (token.size() != expected.size() ||
      CRYPTO_memcmp(token.data(), expected.data(), token.size()) != 0) {
    fail(401, "unauthenticated",
         "unauthorized access, please provide a valid access token "
         "(X-Access-Token)");
    return std::nullopt;
  }
  auto sandbox = FindSandbox(call.sandbox_id);
  if (!sandbox.ok() && !absl::IsNotFound(sandbox.status())) {
    // The daemon is down or refuses (a quota): not the sandbox's end.
    const ConnectError error = ToConnectError(sandbox.status());
    fail(rpc ? HttpStatusOf(error.code) : HttpStatusOfStatus(sandbox.status()),
         error.code, error.message);
    return std::nullopt;
  }
  if (!sandbox.ok() || sandbox->state() != v1::SANDBOX_STATE_RUNNING) {
    fail(502, "unavailable",
         absl::StrCat("The sandbox ", call.sandbox_id,
                      sandbox.ok() ? " is not running (paused or failed)"
                                   : " was not found"));
    return std::nullopt;
  }
  auto user_label = sandbox->labels().find(kUserLabel);
  const std::string default_user =
      user_label == sandbox->labels().end() ? "user" : user_label->second;
  call.user = username;
  if (call.user.empty() && rpc) {
    const std::string authorization = request.get_header_value("Authorization");
    if (absl::StartsWith(authorization, "Basic ")) {
      std::string decoded;
      if (!absl::Base64Unescape(authorization.substr(6), &decoded)) {
        fail(401, "unauthenticated", "Authorization: bad Basic credentials");
        return std::nullopt;
      }
      call.user = decoded.substr(0, decoded.find(':'));
    }
  }
  if (call.user.empty()) call.user = default_user;
  // Every command of a sandbox runs as its one uid (docs/e2b.md, "Users"):
  // the names are E2B's default user and root.
  if (call.user != default_user && call.user != "root") {
    fail(401, "unauthenticated",
         absl::StrCat("invalid username: '", call.user.substr(0, 64),
                      "' (this sandbox has ", default_user, " and root)"));
    return std::nullopt;
  }
  call.home = call.user == "root" ? "/root" : "/home/" + call.user;
  auto workdir = sandbox->labels().find(kWorkdirLabel);
  call.workdir =
      workdir == sandbox->labels().end() ? call.home : workdir->second;
  if (rpc) {
    auto timeout = ParseTimeout(request.get_header_value("Connect-Timeout-Ms"));
    if (!timeout.ok()) {
      fail(400, "invalid_argument", std::string(timeout.status().message()));
      return std::nullopt;
    }
    call.timeout = *timeout;
    int keepalive = 0;
    if (absl::SimpleAtoi(request.get_header_value("Keepalive-Ping-Interval"),
                         &keepalive) &&
        keepalive > 0) {
      call.keepalive_seconds = std::min(keepalive, 3600);
    }
  }
  return call;
}

absl::StatusOr<std::string> ResolveEnvdPath(const std::string& path,
                                            const std::string& home,
                                            const std::string& workdir) {
  std::string out;
  if (path.empty()) {
    out = workdir;
  } else if (path == "~") {
    out = home;
  } else if (absl::StartsWith(path, "~/")) {
    out = home + path.substr(1);
  } else if (path[0] == '~') {
    return absl::InvalidArgumentError(
        "cannot expand user-specific home dir: only ~ and ~/ are supported");
  } else if (path[0] == '/') {
    out = path;
  } else {
    out = home + "/" + path;
  }
  if (out.find('\0') != std::string::npos || out.size() > 4096) {
    return absl::InvalidArgumentError("path: NUL byte or longer than 4096");
  }
  // Cleaned as Go's filepath.Clean does: no "." or ".." components left.
  std::vector<std::string> parts;
  for (absl::string_view part : absl::StrSplit(out, '/', absl::SkipEmpty())) {
    if (part == ".") continue;
    if (part == "..") {
      if (!parts.empty()) parts.pop_back();
      continue;
    }
    parts.emplace_back(part);
  }
  return "/" + absl::StrJoin(parts, "/");
}

absl::StatusOr<std::string> Gateway::ResolvePath(
    const EnvdCall& call, const std::string& path) const {
  return ResolveEnvdPath(path, call.home, call.workdir);
}

absl::Status Gateway::SandboxError(const std::string& sandbox_id,
                                   const grpc::Status& status) {
  auto sandbox = FindSandbox(sandbox_id);
  // The daemon cannot say (it is down, or busy): the call's own error.
  if (!sandbox.ok() && !absl::IsNotFound(sandbox.status())) {
    return FromGrpc(status);
  }
  if (!sandbox.ok() || sandbox->state() != v1::SANDBOX_STATE_RUNNING) {
    return absl::UnavailableError(
        absl::StrCat("sandbox ", sandbox_id, " is not running any more"));
  }
  return FromGrpc(status);
}

absl::StatusOr<std::string> LoadTokenKey(const std::string& state_dir) {
  if (::mkdir(state_dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot create ", state_dir, ": ", std::strerror(errno)));
  }
  const std::string path = state_dir + "/token-key";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd >= 0) {
    char buffer[64];
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    ::close(fd);
    if (n == 32) return std::string(buffer, 32);
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a 32-byte key: remove it to make anew"));
  }
  auto hex = RandomHexId(32);
  if (!hex.ok()) return hex.status();
  const std::string key = absl::HexStringToBytes(*hex);
  const std::string temp = path + ".new";
  fd = ::open(temp.c_str(),
              O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0 || ::write(fd, key.data(), key.size()) != 32 || ::fsync(fd) != 0 ||
      ::close(fd) != 0 || ::rename(temp.c_str(), path.c_str()) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  return key;
}

// ---- routes ----------------------------------------------------------------

void Gateway::Install(httplib::Server& server) {
  server.set_payload_max_length(config_.max_upload_bytes + (1 << 20));
  // Bodies read whole by httplib (everything but uploads) would be inflated
  // without bound: no Content-Encoding is accepted there. Uploads (POST
  // /files) read their own, bounded as they inflate, and take gzip, as
  // envd does.
  server.set_pre_routing_handler([](const httplib::Request& request,
                                    httplib::Response& response) {
    const std::string encoding =
        absl::AsciiStrToLower(request.get_header_value("Content-Encoding"));
    if (encoding.empty() || encoding == "identity") {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    const bool upload = request.method == "POST" && request.path == "/files";
    if (upload && encoding == "gzip") {
      return httplib::Server::HandlerResponse::Unhandled;
    }
    ReplyError(response, upload ? 400 : 415,
               absl::StrCat("Content-Encoding ", encoding.substr(0, 32),
                            " is not supported", upload ? " (only gzip)" : ""));
    return httplib::Server::HandlerResponse::Handled;
  });
  const auto control = [this](auto handler) {
    return [this, handler](const httplib::Request& request,
                           httplib::Response& response) {
      if (Authorized(request, response)) handler(request, response);
    };
  };
  const auto id_of = [](const httplib::Request& request) {
    return request.matches[1].str();
  };
  server.Post("/sandboxes",
              control([this](auto& q, auto& r) { CreateSandbox(q, r); }));
  server.Post("/v2/sandboxes",
              control([this](auto& q, auto& r) { CreateSandbox(q, r); }));
  server.Get("/sandboxes",
             control([this](auto& q, auto& r) { ListSandboxes(q, r, false); }));
  server.Get("/v2/sandboxes",
             control([this](auto& q, auto& r) { ListSandboxes(q, r, true); }));
  const std::string id = "/sandboxes/([^/]+)";
  server.Get(id, control([this, id_of](auto& q, auto& r) {
               GetSandbox(id_of(q), r);
             }));
  server.Delete(id, control([this, id_of](auto& q, auto& r) {
                  KillSandbox(id_of(q), r);
                }));
  server.Post(id + "/timeout", control([this, id_of](auto& q, auto& r) {
                SetTimeout(q, r, id_of(q));
              }));
  server.Post(id + "/pause", control([this, id_of](auto& q, auto& r) {
                PauseSandbox(id_of(q), r);
              }));
  server.Post(id + "/resume", control([this, id_of](auto& q, auto& r) {
                ConnectSandbox(q, r, id_of(q), true);
              }));
  for (const std::string& prefix : {std::string(), std::string("/v2")}) {
    server.Post(prefix + id + "/connect",
                control([this, id_of](auto& q, auto& r) {
                  ConnectSandbox(q, r, id_of(q), false);
                }));
  }
  server.Get(id + "/(metrics|logs)", control([](auto& q, auto& r) {
               ReplyError(r, 501,
                          absl::StrCat("sandbox ", q.matches[2].str(),
                                       " are not served by Corral's gateway "
                                       "(docs/e2b.md)"));
             }));

  // envd
  server.Get("/health", [this](const httplib::Request& request,
                               httplib::Response& response) {
    if (OpenEnvd(request, response, "", false)) response.status = 204;
  });
  server.Get("/files", [this](const httplib::Request& request,
                              httplib::Response& response) {
    Download(request, response);
  });
  server.Post("/files", [this](const httplib::Request& request,
                               httplib::Response& response,
                               const httplib::ContentReader& content) {
    Upload(request, response, content);
  });
  server.Post(
      R"(/(process\.Process|filesystem\.Filesystem)/([A-Za-z]+))",
      [this](const httplib::Request& request, httplib::Response& response) {
        Rpc(request, response, request.matches[1].str(),
            request.matches[2].str());
      });
}

}  // namespace corral::e2b
