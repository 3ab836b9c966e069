// The pure parts of the egress path: allowlist entries, refused ranges,
// and what is read from a sandbox's first bytes and DNS messages.
#include "daemon/net/egress_policy.h"

#include <catch2/catch.hpp>
#include <string>

#include "daemon/net/dns_message.h"
#include "daemon/net/egress.h"
#include "daemon/net/sniff.h"

namespace corral::net {
namespace {

uint32_t Ip(const char* text) { return *ParseIpv4(text); }

TEST_CASE("CIDRs parse with an optional port and refuse host bits") {
  auto cidr = ParseCidr("203.0.113.0/24", true);
  REQUIRE(cidr.ok());
  CHECK(cidr->Contains(Ip("203.0.113.77")));
  CHECK_FALSE(cidr->Contains(Ip("203.0.114.1")));
  CHECK(cidr->ToString() == "203.0.113.0/24");

  auto port = ParseCidr("203.0.113.7/32:443", true);
  REQUIRE(port.ok());
  CHECK(port->Allows(Ip("203.0.113.7"), 443));
  CHECK_FALSE(port->Allows(Ip("203.0.113.7"), 80));
  CHECK(port->ToString() == "203.0.113.7/32:443");
  CHECK(ParseCidr("198.51.100.9", false)->prefix == 32);

  for (const char* bad :
       {"203.0.113.1/24", "203.0.113.0/33", "203.0.113.0/24:0",
        "203.0.113.0/24:70000", "2001:db8::/32", "example.com", "", "1.2.3/24",
        "01.2.3.4"}) {
    INFO(bad);
    CHECK_FALSE(ParseCidr(bad, true).ok());
  }
  CHECK(ParseCidr("203.0.113.1/24", true)
            .status()
            .message()
            .find("did you mean 203.0.113.0/24") != std::string::npos);
  CHECK_FALSE(ParseCidr("203.0.113.0/24:443", false).ok());
}

TEST_CASE("domain patterns: exact names and *. for the names below") {
  CHECK(ValidateDomainPattern("pypi.org").ok());
  CHECK(ValidateDomainPattern("*.pythonhosted.org").ok());
  for (const char* bad :
       {"org", "*.org", "PyPI.org", "a..b", "-a.com", "a-.com", "*pypi.org",
        "a.*.com", "", "*", "a_b.com", "pypi.org."}) {
    INFO(bad);
    CHECK_FALSE(ValidateDomainPattern(bad).ok());
  }
  CHECK(DomainMatches("pypi.org", "pypi.org"));
  CHECK_FALSE(DomainMatches("pypi.org", "evil-pypi.org"));
  CHECK_FALSE(DomainMatches("pypi.org", "a.pypi.org"));
  CHECK(DomainMatches("*.pythonhosted.org", "files.pythonhosted.org"));
  CHECK(DomainMatches("*.pythonhosted.org", "a.b.pythonhosted.org"));
  CHECK_FALSE(DomainMatches("*.pythonhosted.org", "pythonhosted.org"));
  CHECK_FALSE(DomainMatches("*.pythonhosted.org", "evilpythonhosted.org"));

  CHECK(NormalizeName("PyPI.ORG.") == "pypi.org");
  CHECK(NormalizeName("_dmarc.example.com") == "_dmarc.example.com");
  CHECK_FALSE(NormalizeName("a b.com").has_value());
  CHECK_FALSE(NormalizeName("").has_value());
}

TEST_CASE("refused ranges: the host, private, CGNAT, link-local, multicast") {
  for (const char* refused :
       {"127.0.0.1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
        "100.64.0.1", "169.254.169.254", "0.0.0.0", "224.0.0.251",
        "255.255.255.255", "198.18.0.1", "192.0.0.8"}) {
    INFO(refused);
    CHECK(RefusedRange(Ip(refused)).has_value());
  }
  CHECK(RefusedRange(Ip("169.254.169.254"))->find("metadata") !=
        std::string::npos);
  for (const char* open : {"203.0.113.10", "198.51.100.53", "192.0.2.1",
                           "8.8.8.8", "172.32.0.1", "100.128.0.1"}) {
    INFO(open);
    CHECK_FALSE(RefusedRange(Ip(open)).has_value());
  }
}

// A ClientHello as a client sends it, with `name` in server_name.
std::string ClientHello(const std::string& name, bool with_sni = true) {
  auto u16 = [](size_t n) {
    return std::string{static_cast<char>(n >> 8), static_cast<char>(n)};
  };
  std::string extensions;
  if (with_sni) {
    const std::string entry = std::string(1, '\0') + u16(name.size()) + name;
    const std::string list = u16(entry.size()) + entry;
    extensions += u16(0) + u16(list.size()) + list;
  }
  extensions += u16(0x000a) + u16(4) + u16(2) + u16(0x001d);  // groups
  std::string hello = "\x03\x03" + std::string(32, 'r') + std::string(1, 0) +
                      u16(2) + "\x13\x01" + "\x01" + std::string(1, 0) +
                      u16(extensions.size()) + extensions;
  std::string handshake =
      "\x01" + std::string(1, 0) + u16(hello.size()) + hello;
  return "\x16\x03\x01" + u16(handshake.size()) + handshake;
}

TEST_CASE("the TLS server name is read from a ClientHello, in pieces too") {
  const std::string hello = ClientHello("Pypi.org");
  std::string name;
  CHECK(SniffTlsServerName(hello, &name) == Sniffed::kName);
  CHECK(name == "pypi.org");
  for (size_t cut : {0, 1, 4, 5, 20, 60}) {
    INFO(cut);
    CHECK(SniffTlsServerName(hello.substr(0, cut), &name) ==
          Sniffed::kNeedMore);
  }
  CHECK(SniffTlsServerName(ClientHello("x", false), &name) == Sniffed::kNoName);
  CHECK(SniffTlsServerName("GET / HTTP/1.1\r\n", &name) ==
        Sniffed::kNotProtocol);
  CHECK(SniffTlsServerName(ClientHello("bad name.com"), &name) ==
        Sniffed::kNotProtocol);
  // A length that points past the record.
  std::string lying = hello;
  lying[9 + 2 + 32 + 1] = '\x7f';  // cipher suites length, high byte
  CHECK(SniffTlsServerName(lying, &name) == Sniffed::kNotProtocol);
}

TEST_CASE("the HTTP Host is read from a request's headers") {
  std::string name;
  CHECK(SniffHttpHost("GET / HTTP/1.1\r\nHost: Example.COM:8080\r\n"
                      "Accept: */*\r\n\r\n",
                      &name) == Sniffed::kName);
  CHECK(name == "example.com");
  CHECK(SniffHttpHost("GET / HTTP/1.1\r\nHo", &name) == Sniffed::kNeedMore);
  CHECK(SniffHttpHost("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", &name) ==
        Sniffed::kNoName);
  CHECK(SniffHttpHost("\x16\x03\x01 garbage\r\n", &name) ==
        Sniffed::kNotProtocol);
  CHECK(SniffHttpHost("GET / HTTP/1.1\r\nHost: a.com\r\nHost: b.com\r\n\r\n",
                      &name) == Sniffed::kNotProtocol);
  CHECK(SniffHttpHost(std::string(kMaxSniffBytes, 'a'), &name) ==
        Sniffed::kNotProtocol);
}

// A query for `name` of `type`, as a stub resolver sends it.
std::string Query(uint16_t id, const std::string& name, uint16_t type) {
  std::string wire = {static_cast<char>(id >> 8),
                      static_cast<char>(id),
                      0x01,
                      0x00,
                      0,
                      1,
                      0,
                      0,
                      0,
                      0,
                      0,
                      0};
  size_t start = 0;
  while (start <= name.size()) {
    size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    wire += static_cast<char>(dot - start);
    wire += name.substr(start, dot - start);
    start = dot + 1;
  }
  wire += '\0';
  wire += {static_cast<char>(type >> 8), static_cast<char>(type), 0, 1};
  return wire;
}

TEST_CASE("DNS: one question is read, refusals answer it, answers give A") {
  auto question = ParseDnsQuery(Query(0x1234, "Pypi.Org", kDnsTypeA));
  REQUIRE(question.has_value());
  CHECK(question->id == 0x1234);
  CHECK(question->name == "pypi.org");
  CHECK(question->type_name == "A");
  CHECK_FALSE(ParseDnsQuery("garbage").has_value());
  CHECK_FALSE(ParseDnsQuery("").has_value());

  DnsQuestion made;
  auto round_trip = ParseDnsQuery(DnsQuery("pypi.org", kDnsTypeA, &made));
  REQUIRE(round_trip.has_value());
  CHECK(round_trip->name == "pypi.org");
  CHECK(round_trip->id == made.id);
  CHECK(round_trip->type == kDnsTypeA);

  const std::string refusal = EmptyDnsAnswer(*question, kDnsNxDomain);
  REQUIRE(refusal.size() > 12);
  CHECK((static_cast<uint8_t>(refusal[3]) & 0x0f) == kDnsNxDomain);
  CHECK((static_cast<uint8_t>(refusal[2]) & 0x80) != 0);  // an answer

  // An upstream answer: the query with QR set and one A record.
  std::string answer = Query(0x1234, "pypi.org", kDnsTypeA);
  answer[2] = static_cast<char>(0x81);
  answer[3] = static_cast<char>(0x80);
  answer[7] = 1;  // ANCOUNT
  answer += std::string("\xc0\x0c\x00\x01\x00\x01\x00\x00\x01\x2c\x00\x04", 12);
  answer += std::string("\xcb\x00\x71\x0a", 4);  // 203.0.113.10
  auto parsed = ParseDnsAnswer(answer, *question);
  REQUIRE(parsed.has_value());
  REQUIRE(parsed->addresses.size() == 1);
  CHECK(FormatIpv4(parsed->addresses[0].address) == "203.0.113.10");
  CHECK(parsed->addresses[0].ttl == 300);
  // Another id or question is not the answer to this query.
  DnsQuestion other = *question;
  other.id = 7;
  CHECK_FALSE(ParseDnsAnswer(answer, other).has_value());
  other = *question;
  other.name = "evil.org";
  CHECK_FALSE(ParseDnsAnswer(answer, other).has_value());
}

TEST_CASE("secrets replace their placeholder in headers to bound hosts only") {
  const std::vector<SecretSubstitution> secrets = {
      {"corral-secret-aaaa", "value-a", {"api.example.com"}},
      {"corral-secret-bbbb", "value-b", {"*.example.org"}}};
  const std::string head =
      "GET /corral-secret-aaaa HTTP/1.1\r\nHost: api.example.com\r\n"
      "Authorization: Bearer corral-secret-aaaa\r\n"
      "X-Other: corral-secret-bbbb\r\n\r\nbody corral-secret-aaaa";
  const std::string out = SubstituteSecrets(head, "api.example.com", secrets);
  CHECK(out ==
        "GET /value-a HTTP/1.1\r\nHost: api.example.com\r\n"
        "Authorization: Bearer value-a\r\n"
        "X-Other: corral-secret-bbbb\r\n\r\nbody corral-secret-aaaa");
  // Another host gets the placeholders as they are.
  CHECK(SubstituteSecrets(head, "evil.example.com", secrets) == head);
  CHECK(SubstituteSecrets(head, "a.example.org", secrets).find("value-b") !=
        std::string::npos);
  // Without the end of the headers, nothing is replaced.
  CHECK(SubstituteSecrets("GET / HTTP/1.1\r\nX: corral-secret-aaaa",
                          "api.example.com", secrets) ==
        "GET / HTTP/1.1\r\nX: corral-secret-aaaa");
}

}  // namespace
}  // namespace corral::net
