#include "client/net_commands.h"

#include <map>
#include <set>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/command_support.h"
#include "client/format.h"
#include "corral/status_macros.h"
#include "corral/v1/network.grpc.pb.h"

namespace corral::cli {
namespace {

using Result = absl::StatusOr<int>;
using corral::v1::Network;

// How long one call of `net log --follow` waits for news.
constexpr uint32_t kFollowWaitMs = 5000;

}  // namespace

struct NetCommands::Flags {
  CLI::App* net = nullptr;
  CLI::App* log = nullptr;
  CLI::App* suggest = nullptr;
  std::string id;
  bool follow = false;
  uint64_t after = 0;
};

std::string FormatNetworkEvent(const corral::v1::NetworkEvent& event) {
  std::string line =
      absl::StrCat(FormatTimestamp(event.time()), " ",
                   event.allowed() ? "allowed" : "REFUSED", " ", event.kind(),
                   " ", event.address().empty() ? "-" : event.address());
  if (event.kind() == "tcp") absl::StrAppend(&line, ":", event.port());
  absl::StrAppend(&line, " ", event.name().empty() ? "-" : event.name());
  if (event.kind() == "tcp" && event.allowed()) {
    absl::StrAppend(&line, " out ", event.bytes_out(), " in ",
                    event.bytes_in());
  }
  if (!event.reason().empty())
    absl::StrAppend(&line, " (", event.reason(), ")");
  return line + "\n";
}

std::vector<std::string> SuggestAllowlist(
    const std::vector<corral::v1::NetworkEvent>& events) {
  std::set<std::string> domains, cidrs;
  // Name -> the addresses it resolved to in this record.
  std::map<std::string, std::set<std::string>> resolved;
  for (const auto& event : events) {
    if (!event.allowed() || event.kind() != "dns") continue;
    // Names that resolved to something; a name that did not resolve then
    // would not resolve with the allowlist either.
    if (event.address().empty()) continue;
    domains.insert(event.name());
    for (absl::string_view a : absl::StrSplit(event.address(), ',')) {
      resolved[event.name()].insert(std::string(a));
    }
  }
  for (const auto& event : events) {
    if (!event.allowed() || event.kind() != "tcp") continue;
    // An allowlist lets a connection through by name only to an address
    // the name resolved to; anything else needs its address.
    auto it = resolved.find(event.name());
    if (it == resolved.end() || it->second.count(event.address()) == 0) {
      cidrs.insert(absl::StrCat(event.address(), "/32:", event.port()));
    }
  }
  std::vector<std::string> flags;
  for (const auto& d : domains) flags.push_back("--allow-domain " + d);
  for (const auto& c : cidrs) flags.push_back("--allow-cidr " + c);
  return flags;
}

NetCommands::NetCommands(CLI::App& app) : flags_(std::make_unique<Flags>()) {
  Flags& f = *flags_;
  f.net = app.add_subcommand(
      "net", "What a sandbox's egress did, and the allowlist it needs");
  f.net->require_subcommand(1);
  f.log = f.net->add_subcommand(
      "log",
      "Print a sandbox's DNS queries and connections, allowed and refused");
  f.log->add_option("ID", f.id, "Sandbox id")->required();
  f.log->add_flag("-f,--follow", f.follow,
                  "Keep printing new events until interrupted");
  f.log->add_option("--after", f.after,
                    "Only events after sequence SEQ (from --json output)");
  f.suggest = f.net->add_subcommand(
      "suggest",
      "Print the narrowest --allow-domain/--allow-cidr flags that would "
      "have let everything the sandbox's egress did through (run it with "
      "--network learn first)");
  f.suggest->add_option("ID", f.id, "Sandbox id")->required();
}

NetCommands::~NetCommands() = default;

std::optional<Result> NetCommands::Dispatch(Connection& connection, bool json) {
  const Flags& f = *flags_;
  if (!f.log->parsed() && !f.suggest->parsed()) return std::nullopt;
  std::vector<corral::v1::NetworkEvent> all;
  uint64_t after = f.log->parsed() ? f.after : 0;
  for (;;) {
    corral::v1::ListNetworkEventsRequest request;
    request.set_sandbox_id(f.id);
    request.set_after_sequence(after);
    if (f.follow) request.set_wait_ms(kFollowWaitMs);
    auto context = std::make_unique<grpc::ClientContext>();
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(kFollowWaitMs + 30000));
    auto response =
        UnaryCall(connection, std::move(context), connection.network(),
                  &Network::Stub::ListNetworkEvents, request);
    if (!response.ok()) return Result(response.status());
    for (const auto& event : response->events()) {
      if (f.suggest->parsed()) {
        all.push_back(event);
        continue;
      }
      absl::Status printed =
          json ? PrintMessage(event) : Print(FormatNetworkEvent(event));
      if (!printed.ok()) return Result(printed);
    }
    after = response->next_sequence();
    if (response->events().empty() && !f.follow) break;
  }
  if (f.suggest->parsed()) {
    std::string line;
    for (const auto& flag : SuggestAllowlist(all)) {
      absl::StrAppend(&line, line.empty() ? "" : " ", flag);
    }
    if (line.empty()) {
      line = "--network none";  // it reached nothing: it needs nothing
    }
    absl::Status printed = Print(line + "\n");
    if (!printed.ok()) return Result(printed);
  }
  return Result(0);
}

}  // namespace corral::cli
