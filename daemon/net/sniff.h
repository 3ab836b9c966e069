#ifndef CORRAL_DAEMON_NET_SNIFF_H_
#define CORRAL_DAEMON_NET_SNIFF_H_

// The name a connection asks for, read from its first bytes without
// consuming them: the server_name of a TLS ClientHello, the Host header of
// an HTTP/1 request. The bytes come from a sandbox: every length is
// checked against what is there.
#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace corral::net {

enum class Sniffed {
  kName,        // found: *name is set
  kNeedMore,    // a prefix of a valid message; read more and ask again
  kNoName,      // a complete message without a name (TLS without SNI)
  kNotProtocol  // not a TLS ClientHello / HTTP request at all
};

// `data` starts at the first byte the client sent. The name is lowercased
// and validated (NormalizeName); an invalid name is kNotProtocol.
Sniffed SniffTlsServerName(absl::string_view data, std::string* name);
// A request line and headers up to the blank line; the port of
// "Host: name:port" is dropped.
Sniffed SniffHttpHost(absl::string_view data, std::string* name);

// How many bytes sniffing may wait for before the answer is kNotProtocol.
inline constexpr size_t kMaxSniffBytes = 16 * 1024;

}  // namespace corral::net

#endif  // CORRAL_DAEMON_NET_SNIFF_H_
