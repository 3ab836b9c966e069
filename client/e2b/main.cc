// corral-e2b: the E2B-compatible gateway, which `corral e2b` starts (exec)
// with its flags. A program of its own, like corral-mcp, so that the CLI
// does not load an HTTP server's libraries. See docs/e2b.md.
#include <httplib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "client/connection.h"
#include "client/e2b/config.h"
#include "client/e2b/gateway.h"

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "corral: %s\n", message.c_str());
  return 125;
}

// $XDG_STATE_HOME/corral-e2b, else ~/.local/state/corral-e2b.
std::string DefaultStateDir() {
  const char* state = std::getenv("XDG_STATE_HOME");
  if (state != nullptr && state[0] == '/') {
    return std::string(state) + "/corral-e2b";
  }
  const char* home = std::getenv("HOME");
  if (home == nullptr || home[0] != '/') return "";
  const std::string base = std::string(home) + "/.local/state";
  std::string made;
  for (const char* part : {"/.local", "/.local/state"}) {
    made = std::string(home) + part;
    ::mkdir(made.c_str(), 0700);
  }
  return base + "/corral-e2b";
}

}  // namespace

int main(int argc, char** argv) {
  namespace e2b = corral::e2b;
  CLI::App app("corral-e2b: an E2B-compatible gateway to corrald",
               "corral-e2b");
  std::string socket, listen = "127.0.0.1:3000", config_file, state_dir;
  std::vector<std::string> keys;
  app.add_option("--socket", socket, "corrald's socket");
  app.add_option("--listen", listen, "ADDRESS:PORT to serve HTTP on");
  app.add_option("--api-key", keys, "An API key clients must send");
  app.add_option("--config", config_file, "A TOML file (docs/e2b.md)");
  app.add_option("--state-dir", state_dir, "Where the token key is kept");
  CLI11_PARSE(app, argc, argv);
  if (::geteuid() == 0) {
    return Fail(
        "corral e2b does not run as root: run it as the user whose "
        "sandboxes it is for (one who can reach corrald's socket; see "
        "docs/e2b.md)");
  }
  e2b::Config config = e2b::DefaultConfig();
  if (!config_file.empty()) {
    if (auto s = e2b::LoadConfigFile(config_file, config); !s.ok()) {
      return Fail(std::string(s.message()));
    }
  }
  for (const std::string& key : keys) {
    if (auto s = e2b::ValidateApiKey(key); !s.ok()) {
      return Fail(absl::StrCat("--api-key: ", s.message()));
    }
    config.api_keys.push_back(key);
  }
  if (config.api_keys.empty()) {
    return Fail(
        "no API key: give --api-key e2b_... (or api_keys in --config); "
        "clients send it as E2B_API_KEY");
  }
  if (!state_dir.empty()) config.state_dir = state_dir;
  if (config.state_dir.empty()) config.state_dir = DefaultStateDir();
  if (config.state_dir.empty()) {
    return Fail("no state directory: set HOME or give --state-dir");
  }
  auto token_key = e2b::LoadTokenKey(config.state_dir);
  if (!token_key.ok()) return Fail(std::string(token_key.status().message()));

  const size_t colon = listen.rfind(':');
  int port = -1;
  std::string host = colon == std::string::npos ? "" : listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host.empty() || !absl::SimpleAtoi(listen.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return Fail(absl::StrCat("--listen ", listen,
                             ": expected ADDRESS:PORT, e.g. 127.0.0.1:3000"));
  }
  const int threads = config.threads;
  e2b::Gateway gateway(std::move(config),
                       corral::cli::ResolveSocketPath(socket), *token_key);
  httplib::Server server;
  server.new_task_queue = [threads] {
    return new httplib::ThreadPool(threads);
  };
  // Headers and body go out as separate writes: without TCP_NODELAY the
  // body waits for the client's delayed ACK on a kept-alive connection
  // (~40 ms a call).
  server.set_tcp_nodelay(true);
  // An idle kept-alive connection holds a thread while it waits: not long.
  server.set_keep_alive_max_count(100000);
  server.set_keep_alive_timeout(5);
  server.set_read_timeout(300);
  server.set_write_timeout(300);
  // Unknown routes and refusals without a body of their own get E2B's
  // JSON error.
  server.set_error_handler(httplib::Server::HandlerWithResponse(
      [](const httplib::Request& request, httplib::Response& response) {
        if (!response.body.empty() || response.is_chunked_content_provider_) {
          return httplib::Server::HandlerResponse::Unhandled;
        }
        std::string message = absl::StrCat("HTTP status ", response.status);
        if (response.status == 404) {
          message = absl::StrCat("no route ", request.method, " ",
                                 request.path.substr(0, 200));
        } else if (response.status == 413) {
          message = "the request body is larger than the gateway accepts";
        } else if (response.status == 415) {
          message = "unsupported Content-Type for this route";
        }
        e2b::ReplyError(response, response.status, message);
        return httplib::Server::HandlerResponse::Handled;
      }));
  gateway.Install(server);
  if (port == 0) {
    port = server.bind_to_any_port(host);
  } else if (!server.bind_to_port(host, port)) {
    port = -1;
  }
  if (port <= 0) return Fail(absl::StrCat("cannot listen on ", listen));
  const std::string shown =
      host.find(':') != std::string::npos ? absl::StrCat("[", host, "]") : host;
  std::fprintf(stderr, "corral e2b: serving http://%s:%d\n", shown.c_str(),
               port);
  std::fflush(stderr);
  return server.listen_after_bind() ? 0 : 125;
}
