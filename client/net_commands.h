// `corral net`: what a sandbox's egress did (log) and the narrowest
// allowlist that would have let it through (suggest).
#ifndef CORRAL_CLIENT_NET_COMMANDS_H_
#define CORRAL_CLIENT_NET_COMMANDS_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "client/connection.h"
#include "corral/v1/network.pb.h"

namespace CLI {
class App;
}  // namespace CLI

namespace corral::cli {

class NetCommands {
 public:
  explicit NetCommands(CLI::App& app);
  ~NetCommands();
  NetCommands(const NetCommands&) = delete;
  NetCommands& operator=(const NetCommands&) = delete;

  // The exit code of the parsed command, or nullopt when none of these was
  // parsed.
  std::optional<absl::StatusOr<int>> Dispatch(Connection& connection,
                                              bool json);

  struct Flags;

 private:
  std::unique_ptr<Flags> flags_;
};

// One line per event: time, allowed or refused, kind, destination, name,
// bytes, reason.
std::string FormatNetworkEvent(const corral::v1::NetworkEvent& event);

// The --allow-domain and --allow-cidr flags that would have allowed every
// connection and name resolution the events allowed: a name for each
// connection or answer that had one, ADDRESS/32:PORT for the rest.
std::vector<std::string> SuggestAllowlist(
    const std::vector<corral::v1::NetworkEvent>& events);

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_NET_COMMANDS_H_
