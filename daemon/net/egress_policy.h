#ifndef CORRAL_DAEMON_NET_EGRESS_POLICY_H_
#define CORRAL_DAEMON_NET_EGRESS_POLICY_H_

// What a sandbox's egress may reach: its allowlist (domain patterns, CIDRs
// with an optional port) and the ranges that are refused whatever it says.
// Pure functions of their arguments; addresses are IPv4 in host byte order.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corral::net {

struct Cidr {
  uint32_t network = 0;  // masked
  int prefix = 32;
  uint16_t port = 0;  // 0: every port

  bool Contains(uint32_t address) const;
  bool Allows(uint32_t address, uint16_t port) const;
  std::string ToString() const;  // "203.0.113.0/24" or "203.0.113.7/32:443"
};

// "A.B.C.D", "A.B.C.D/N", and with `allow_port` a ":PORT" suffix. Host bits
// set below the prefix are refused (a typo more often than intent).
absl::StatusOr<Cidr> ParseCidr(absl::string_view text, bool allow_port);

// "example.com" or "*.example.com": 1-253 characters, labels of 1-63
// characters of [a-z0-9-] not starting or ending with '-', at least two
// labels, lowercase. A leading "*." matches every name below, not the name
// itself.
absl::Status ValidateDomainPattern(absl::string_view pattern);
bool DomainMatches(absl::string_view pattern, absl::string_view name);
// A name as it arrives in DNS, SNI or Host: lowercased, without a trailing
// dot; nullopt when it is not a valid host name.
std::optional<std::string> NormalizeName(absl::string_view name);

// The range refused to every sandbox that contains `address` ("RFC 1918
// 10.0.0.0/8", "link-local and cloud metadata 169.254.0.0/16", ...), or
// nullopt for a public address. The operator can open a refused range
// explicitly (network.allow_private).
std::optional<std::string> RefusedRange(uint32_t address);

std::string FormatIpv4(uint32_t address);
std::optional<uint32_t> ParseIpv4(absl::string_view text);

struct AllowList {
  std::vector<std::string> domains;
  std::vector<Cidr> cidrs;

  bool empty() const { return domains.empty() && cidrs.empty(); }
  bool AllowsName(absl::string_view name) const;
  bool AllowsAddress(uint32_t address, uint16_t port) const;
};

}  // namespace corral::net

#endif  // CORRAL_DAEMON_NET_EGRESS_POLICY_H_
