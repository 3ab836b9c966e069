#include "daemon/net/egress_policy.h"

#include <arpa/inet.h>

#include <algorithm>
#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace corral::net {
namespace {

uint32_t Mask(int prefix) {
  return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
}

struct Range {
  const char* network;
  int prefix;
  const char* why;
};

// Never reachable from a sandbox unless the operator opens them: the host
// itself, private networks (the host's neighbours and its cloud's
// control plane), shared and special-purpose space, multicast. The
// documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) are
// not here: they route nowhere on a real network, and tests use them as
// the public internet.
constexpr Range kRefused[] = {
    {"0.0.0.0", 8, "\"this network\" 0.0.0.0/8"},
    {"10.0.0.0", 8, "RFC 1918 private 10.0.0.0/8"},
    {"100.64.0.0", 10, "CGNAT shared space 100.64.0.0/10"},
    {"127.0.0.0", 8, "loopback 127.0.0.0/8"},
    {"169.254.0.0", 16,
     "link-local and cloud metadata 169.254.0.0/16 (169.254.169.254)"},
    {"172.16.0.0", 12, "RFC 1918 private 172.16.0.0/12"},
    {"192.0.0.0", 24, "IETF protocol assignments 192.0.0.0/24"},
    {"192.168.0.0", 16, "RFC 1918 private 192.168.0.0/16"},
    {"198.18.0.0", 15, "benchmarking 198.18.0.0/15"},
    {"224.0.0.0", 4, "multicast 224.0.0.0/4"},
    {"240.0.0.0", 4, "reserved and broadcast 240.0.0.0/4"},
};

bool ValidLabel(absl::string_view label) {
  if (label.empty() || label.size() > 63) return false;
  if (label.front() == '-' || label.back() == '-') return false;
  for (char c : label) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '-') {
      return false;
    }
  }
  return true;
}

bool ValidName(absl::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::vector<absl::string_view> labels = absl::StrSplit(name, '.');
  for (absl::string_view label : labels) {
    if (!ValidLabel(label)) return false;
  }
  return true;
}

}  // namespace

bool Cidr::Contains(uint32_t address) const {
  return (address & Mask(prefix)) == network;
}

bool Cidr::Allows(uint32_t address, uint16_t to_port) const {
  return Contains(address) && (port == 0 || port == to_port);
}

std::string Cidr::ToString() const {
  std::string text = absl::StrCat(FormatIpv4(network), "/", prefix);
  if (port != 0) absl::StrAppend(&text, ":", port);
  return text;
}

std::string FormatIpv4(uint32_t address) {
  const uint32_t n = htonl(address);
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &n, text, sizeof(text));
  return text;
}

std::optional<uint32_t> ParseIpv4(absl::string_view text) {
  // inet_pton takes exactly four decimal parts, no leading zeros tricks.
  std::string copy(text);
  in_addr parsed{};
  if (::inet_pton(AF_INET, copy.c_str(), &parsed) != 1) return std::nullopt;
  return ntohl(parsed.s_addr);
}

absl::StatusOr<Cidr> ParseCidr(absl::string_view text, bool allow_port) {
  const auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("CIDR \"", text, "\": ", why));
  };
  if (std::count(text.begin(), text.end(), ':') > 1) {
    return bad("IPv6 is not supported yet");
  }
  Cidr cidr;
  absl::string_view rest = text;
  if (const size_t colon = rest.rfind(':'); colon != absl::string_view::npos) {
    if (!allow_port) return bad("no port may be given here");
    uint32_t port = 0;
    if (!absl::SimpleAtoi(rest.substr(colon + 1), &port) || port == 0 ||
        port > 65535) {
      return bad("the port must be 1-65535");
    }
    cidr.port = static_cast<uint16_t>(port);
    rest = rest.substr(0, colon);
  }
  absl::string_view address = rest;
  if (const size_t slash = rest.find('/'); slash != absl::string_view::npos) {
    address = rest.substr(0, slash);
    int prefix = 0;
    if (!absl::SimpleAtoi(rest.substr(slash + 1), &prefix) || prefix < 0 ||
        prefix > 32) {
      return bad("the prefix length must be 0-32");
    }
    cidr.prefix = prefix;
  }
  auto parsed = ParseIpv4(address);
  if (!parsed) return bad("not an IPv4 address (IPv6 is not supported yet)");
  if ((*parsed & ~Mask(cidr.prefix)) != 0) {
    return bad(absl::StrCat("host bits are set; did you mean ",
                            FormatIpv4(*parsed & Mask(cidr.prefix)), "/",
                            cidr.prefix, "?"));
  }
  cidr.network = *parsed;
  return cidr;
}

absl::Status ValidateDomainPattern(absl::string_view pattern) {
  absl::string_view name = pattern;
  if (absl::StartsWith(name, "*.")) name.remove_prefix(2);
  if (!ValidName(name) || name.find('.') == absl::string_view::npos) {
    return absl::InvalidArgumentError(absl::StrCat(
        "domain \"", pattern,
        "\": expected a lowercase name of two labels or more, such as "
        "pypi.org, optionally with a leading *. for every name below it"));
  }
  return absl::OkStatus();
}

bool DomainMatches(absl::string_view pattern, absl::string_view name) {
  if (absl::StartsWith(pattern, "*.")) {
    // "*.example.com" matches "a.example.com" and "a.b.example.com".
    const absl::string_view suffix = pattern.substr(1);
    return name.size() > suffix.size() && absl::EndsWith(name, suffix);
  }
  return pattern == name;
}

std::optional<std::string> NormalizeName(absl::string_view name) {
  if (absl::EndsWith(name, ".")) name.remove_suffix(1);
  std::string lower = absl::AsciiStrToLower(name);
  // Underscores appear in real DNS names (_dmarc, service records).
  std::string checked = lower;
  for (char& c : checked) {
    if (c == '_') c = 'a';
  }
  if (!ValidName(checked)) return std::nullopt;
  return lower;
}

std::optional<std::string> RefusedRange(uint32_t address) {
  // Parsed once: this runs for every connection a sandbox makes.
  static const auto* const networks = [] {
    auto* parsed = new std::vector<uint32_t>;
    for (const Range& range : kRefused) {
      parsed->push_back(*ParseIpv4(range.network));
    }
    return parsed;
  }();
  for (size_t i = 0; i < std::size(kRefused); ++i) {
    if ((address & Mask(kRefused[i].prefix)) == (*networks)[i]) {
      return kRefused[i].why;
    }
  }
  return std::nullopt;
}

bool AllowList::AllowsName(absl::string_view name) const {
  for (const auto& pattern : domains) {
    if (DomainMatches(pattern, name)) return true;
  }
  return false;
}

bool AllowList::AllowsAddress(uint32_t address, uint16_t port) const {
  for (const auto& cidr : cidrs) {
    if (cidr.Allows(address, port)) return true;
  }
  return false;
}

}  // namespace corral::net
