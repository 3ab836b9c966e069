#include "client/mcp/http.h"

#include <httplib.h>

#include <cstdio>
#include <map>
#include <memory>
#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/mcp/server.h"
#include "corral/hex_id.h"

namespace corral::cli::mcp {
namespace {

constexpr char kPath[] = "/mcp";
constexpr size_t kMaxSessions = 256;
constexpr size_t kMaxBodyBytes = 64 << 20;
constexpr int kThreads = 16;

// The host part of "host[:port]" ("[::1]:80" gives "[::1]").
std::string HostPart(absl::string_view authority) {
  if (absl::StartsWith(authority, "[")) {
    const size_t end = authority.find(']');
    return std::string(authority.substr(
        0, end == absl::string_view::npos ? authority.size() : end + 1));
  }
  return std::string(authority.substr(0, authority.find(':')));
}

bool LoopbackName(const std::string& host) {
  const std::string lower = absl::AsciiStrToLower(host);
  return lower == "localhost" || lower == "127.0.0.1" || lower == "[::1]";
}

void Reply(httplib::Response& response, int status, const Json& body) {
  response.status = status;
  response.set_content(
      body.dump(-1, ' ', false, Json::error_handler_t::replace),
      "application/json");
}

// One MCP session per initialize, each with its own McpServer.
class Sessions {
 public:
  Sessions(std::string socket_path, Profile profile)
      : socket_path_(std::move(socket_path)), profile_(profile) {}

  // A new session's id and server, or nullptr when there are too many.
  std::pair<std::string, std::shared_ptr<McpServer>> Open() {
    std::lock_guard lock(mutex_);
    if (sessions_.size() >= kMaxSessions) return {};
    auto id = RandomHexId(16);
    if (!id.ok()) return {};
    auto server = std::make_shared<McpServer>(socket_path_, profile_);
    sessions_[*id] = server;
    return {*id, server};
  }
  std::shared_ptr<McpServer> Find(const std::string& id) {
    std::lock_guard lock(mutex_);
    auto it = sessions_.find(id);
    return it == sessions_.end() ? nullptr : it->second;
  }
  bool Close(const std::string& id) {
    std::lock_guard lock(mutex_);
    return sessions_.erase(id) > 0;
  }

 private:
  const std::string socket_path_;
  const Profile profile_;
  std::mutex mutex_;
  std::map<std::string, std::shared_ptr<McpServer>> sessions_;
};

void HandlePost(Sessions& sessions, const httplib::Request& request,
                httplib::Response& response) {
  Json message = Json::parse(request.body, nullptr, /*allow_exceptions=*/false);
  if (message.is_discarded()) {
    return Reply(response, 400,
                 ErrorMessage(nullptr, kParseError, "not valid JSON"));
  }
  if (request.has_header("MCP-Protocol-Version") &&
      !SupportedProtocolVersion(
          request.get_header_value("MCP-Protocol-Version"))) {
    return Reply(
        response, 400,
        ErrorMessage(
            nullptr, kInvalidRequest,
            absl::StrCat(
                "unsupported MCP-Protocol-Version ",
                request.get_header_value("MCP-Protocol-Version").substr(0, 64),
                " (spoken: 2025-11-25, 2025-06-18, "
                "2025-03-26)")));
  }
  const bool initialize = message.is_object() &&
                          message.value("method", Json()) == "initialize" &&
                          message.contains("id");
  std::shared_ptr<McpServer> server;
  std::string session;
  if (initialize) {
    std::tie(session, server) = sessions.Open();
    if (!server) {
      return Reply(response, 503,
                   ErrorMessage(message["id"], kInternalError,
                                "too many MCP sessions: end one (DELETE)"));
    }
  } else {
    session = request.get_header_value("Mcp-Session-Id");
    if (session.empty()) {
      return Reply(response, 400,
                   ErrorMessage(nullptr, kInvalidRequest,
                                "missing Mcp-Session-Id: initialize first"));
    }
    server = sessions.Find(session);
    if (!server) {
      return Reply(response, 404,
                   ErrorMessage(nullptr, kInvalidRequest,
                                "unknown or ended MCP session"));
    }
  }
  if (!session.empty()) response.set_header("Mcp-Session-Id", session);
  std::optional<Json> answer = server->Handle(message);
  if (!answer) {  // a notification or a response
    response.status = 202;
    return;
  }
  if (initialize && answer->contains("error")) sessions.Close(session);
  const int status =
      answer->contains("error") && (*answer)["error"]["code"] == kInvalidRequest
          ? 400
          : 200;
  if (status == 200 && absl::StrContains(request.get_header_value("Accept"),
                                         "text/event-stream")) {
    // The answer as the one event of its own stream.
    auto event = std::make_shared<std::string>(absl::StrCat(
        "event: message\ndata: ",
        answer->dump(-1, ' ', false, Json::error_handler_t::replace), "\n\n"));
    response.status = 200;
    response.set_header("Cache-Control", "no-cache");
    response.set_chunked_content_provider(
        "text/event-stream", [event](size_t, httplib::DataSink& sink) {
          sink.write(event->data(), event->size());
          sink.done();
          return true;
        });
    return;
  }
  Reply(response, status, *answer);
}

}  // namespace

absl::StatusOr<ListenAddress> ParseListenAddress(const std::string& text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen ", text, ": expected ADDRESS:PORT, e.g. 127.0.0.1:8765"));
  }
  ListenAddress listen;
  listen.host = text.substr(0, colon);
  if (!absl::SimpleAtoi(text.substr(colon + 1), &listen.port) ||
      listen.port < 0 || listen.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--listen ", text, ": bad port"));
  }
  if (listen.host == "[::1]") listen.host = "::1";
  if (listen.host != "127.0.0.1" && listen.host != "::1" &&
      listen.host != "localhost") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--listen ", text,
        ": only a loopback address (127.0.0.1, [::1], localhost): the "
        "endpoint has no authentication and acts as you"));
  }
  return listen;
}

bool LoopbackHost(const std::string& host_header) {
  return LoopbackName(HostPart(host_header));
}

bool LoopbackOrigin(const std::string& origin_header) {
  for (const char* scheme : {"http://", "https://"}) {
    if (absl::StartsWith(origin_header, scheme)) {
      return LoopbackName(
          HostPart(absl::string_view(origin_header).substr(strlen(scheme))));
    }
  }
  return false;
}

int ServeHttp(const std::string& socket_path, Profile profile,
              const ListenAddress& listen) {
  Sessions sessions(socket_path, profile);
  httplib::Server server;
  server.new_task_queue = [] { return new httplib::ThreadPool(kThreads); };
  server.set_payload_max_length(kMaxBodyBytes);
  // Without it a kept-alive client's delayed ACK holds each answer's body
  // (written after its headers) for ~40 ms.
  server.set_tcp_nodelay(true);
  // DNS rebinding: a page elsewhere that resolves its own name to this
  // machine still sends its own name as Host, and its Origin.
  server.set_pre_routing_handler([](const httplib::Request& request,
                                    httplib::Response& response) {
    const bool host_ok = LoopbackHost(request.get_header_value("Host"));
    const bool origin_ok = !request.has_header("Origin") ||
                           LoopbackOrigin(request.get_header_value("Origin"));
    if (host_ok && origin_ok)
      return httplib::Server::HandlerResponse::Unhandled;
    Reply(response, 403,
          ErrorMessage(nullptr, kInvalidRequest,
                       "forbidden: Host and Origin must name this machine's "
                       "loopback (localhost, 127.0.0.1, [::1])"));
    return httplib::Server::HandlerResponse::Handled;
  });
  server.Post(
      kPath, [&](const httplib::Request& request, httplib::Response& response) {
        HandlePost(sessions, request, response);
      });
  // No stream of server-initiated messages: this server sends none.
  server.Get(kPath, [](const httplib::Request&, httplib::Response& response) {
    response.status = 405;
    response.set_header("Allow", "POST, DELETE");
  });
  server.Delete(
      kPath, [&](const httplib::Request& request, httplib::Response& response) {
        const std::string session = request.get_header_value("Mcp-Session-Id");
        if (session.empty()) {
          response.status = 400;
        } else {
          response.status = sessions.Close(session) ? 200 : 404;
        }
      });
  int port = listen.port;
  if (port == 0) {
    port = server.bind_to_any_port(listen.host);
  } else if (!server.bind_to_port(listen.host, port)) {
    port = -1;
  }
  if (port <= 0) {
    std::fprintf(stderr, "corral: cannot listen on %s:%d\n",
                 listen.host.c_str(), listen.port);
    return 125;
  }
  const std::string shown = listen.host == "::1" ? "[::1]" : listen.host;
  std::fprintf(stderr, "corral mcp: serving http://%s:%d%s\n", shown.c_str(),
               port, kPath);
  std::fflush(stderr);
  return server.listen_after_bind() ? 0 : 125;
}

}  // namespace corral::cli::mcp
