#ifndef CORRAL_DAEMON_NET_REWRITE_RELAY_H_
#define CORRAL_DAEMON_NET_REWRITE_RELAY_H_

// The relay of connections whose requests get secrets: bytes pass through
// this process (decrypted, for TLS), unlike the splice relay of the rest.
#include <openssl/types.h>

#include <cstdint>

#include "absl/strings/string_view.h"
#include "daemon/net/http_rewrite.h"

namespace corral::net {

// A connected non-blocking socket, with TLS over it when `ssl` is set
// (after its handshake).
struct Endpoint {
  int fd = -1;
  SSL* ssl = nullptr;
};

// Moves bytes both ways until both directions are closed: the sandbox's
// through `rewriter` (starting with `first`, read from it already), the
// server's unchanged. Counts the bytes the sandbox sent (before the
// secrets went in) and received. False when a side failed; true as well
// when `stop` became readable.
bool RelayRewriting(Endpoint sandbox, Endpoint upstream,
                    RequestRewriter& rewriter, absl::string_view first,
                    int stop, uint64_t* sandbox_sent,
                    uint64_t* sandbox_received);

}  // namespace corral::net

#endif  // CORRAL_DAEMON_NET_REWRITE_RELAY_H_
