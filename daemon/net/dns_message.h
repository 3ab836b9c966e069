#ifndef CORRAL_DAEMON_NET_DNS_MESSAGE_H_
#define CORRAL_DAEMON_NET_DNS_MESSAGE_H_

// DNS messages of the sandbox resolver, read and written with ldns (a
// well-kept parser of a format that sandboxes and upstream servers both
// get to write) rather than by hand.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace corral::net {

inline constexpr uint16_t kDnsTypeA = 1;
inline constexpr uint16_t kDnsTypeAaaa = 28;
inline constexpr int kDnsNoError = 0;
inline constexpr int kDnsServFail = 2;
inline constexpr int kDnsNxDomain = 3;
inline constexpr int kDnsRefused = 5;

struct DnsQuestion {
  uint16_t id = 0;
  std::string name;  // NormalizeName'd
  uint16_t type = 0;
  std::string type_name;  // "A", "AAAA", "TYPE65534"
};

// A standard query with exactly one question and a valid name; nullopt for
// anything else (answers, updates, several questions, garbage).
std::optional<DnsQuestion> ParseDnsQuery(absl::string_view wire);

// A recursive query for `name` (valid) of `type`, with a random id; its
// question in *question.
std::string DnsQuery(const std::string& name, uint16_t type,
                     DnsQuestion* question);

// An answer to `question` with `rcode` and no records (NXDOMAIN, REFUSED,
// or NOERROR with no data); the wire bytes.
std::string EmptyDnsAnswer(const DnsQuestion& question, int rcode);

struct DnsAnswer {
  int rcode = 0;
  struct Address {
    uint32_t address = 0;  // host order
    uint32_t ttl = 0;
  };
  std::vector<Address> addresses;  // every A record of the answer section
};

// An upstream server's answer to `question` (same id and question);
// nullopt when it is not one.
std::optional<DnsAnswer> ParseDnsAnswer(absl::string_view wire,
                                        const DnsQuestion& question);

}  // namespace corral::net

#endif  // CORRAL_DAEMON_NET_DNS_MESSAGE_H_
