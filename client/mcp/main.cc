// corral-mcp: the MCP server, which `corral mcp` starts (exec) with its
// flags. A program of its own so that the CLI, started for every command,
// does not load the HTTP server's libraries.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "CLI/CLI.hpp"
#include "client/connection.h"
#include "client/mcp/http.h"
#include "client/mcp/server.h"
#include "client/mcp/stdio.h"

int main(int argc, char** argv) {
  namespace mcp = corral::cli::mcp;
  CLI::App app("corral-mcp: the Model Context Protocol server of corral mcp",
               "corral-mcp");
  std::string socket, profile_name = "workspace", listen;
  app.add_option("--socket", socket, "corrald's socket");
  app.add_option("--profile", profile_name, "run, workspace or full")
      ->check(CLI::IsMember({"run", "workspace", "full"}));
  app.add_option("--listen", listen, "Streamable HTTP at ADDRESS:PORT");
  CLI11_PARSE(app, argc, argv);
  // A front door acts for whoever runs it: as root, every MCP client (and,
  // with --listen, every local process) would be corrald's administrator.
  if (::geteuid() == 0) {
    std::fprintf(stderr,
                 "corral: corral mcp does not run as root: run it as the user "
                 "whose sandboxes it is for (one who can reach corrald's "
                 "socket; see docs/mcp.md)\n");
    return 125;
  }
  const mcp::Profile profile = *mcp::ProfileByName(profile_name);
  const std::string socket_path = corral::cli::ResolveSocketPath(socket);
  if (!listen.empty()) {
    auto address = mcp::ParseListenAddress(listen);
    if (!address.ok()) {
      std::fprintf(stderr, "corral: %s\n",
                   std::string(address.status().message()).c_str());
      return 125;
    }
    return mcp::ServeHttp(socket_path, profile, *address);
  }
  mcp::McpServer server(socket_path, profile);
  return mcp::ServeStdio(server, STDIN_FILENO, STDOUT_FILENO);
}
