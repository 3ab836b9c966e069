#ifndef CORRAL_DAEMON_NET_HTTP_REWRITE_H_
#define CORRAL_DAEMON_NET_HTTP_REWRITE_H_

// Secrets put into the HTTP/1 requests a sandbox sends to the hosts they
// are bound to. The bytes come from a sandbox: every length is bounded, and
// a stream that cannot be followed passes on unchanged from there (a
// placeholder then goes out as it is, never anything else).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"

namespace corral::net {

// A secret the proxy puts into HTTP request headers in place of its
// placeholder, for the hosts it is bound to.
struct SecretSubstitution {
  std::string placeholder;
  std::string value;
  std::vector<std::string> hosts;  // domain patterns
};

// The secrets bound to `host`, as placeholder -> value.
std::vector<std::pair<std::string, std::string>> SecretsFor(
    const std::vector<SecretSubstitution>& secrets, absl::string_view host);

// `head` (an HTTP/1 request's line and headers, through the blank line)
// with each placeholder of a secret bound to `host` replaced by its value;
// nothing else changes. One request's worth of RequestRewriter.
std::string SubstituteSecrets(const std::string& head, const std::string& host,
                              const std::vector<SecretSubstitution>& secrets);

// Follows the requests of one connection as they stream from the sandbox
// (pipelined or one after another on a kept-alive connection) and puts the
// secrets into each request's line and headers; bodies, chunked or of a
// Content-Length, pass unchanged. After an upgrade (WebSocket), a CONNECT,
// or a head or chunk line too long or malformed to follow, the rest passes
// unchanged.
class RequestRewriter {
 public:
  explicit RequestRewriter(
      std::vector<std::pair<std::string, std::string>> replacements)
      : replacements_(std::move(replacements)) {}

  // Appends to *out what is to be sent on for `in`: a head is held until
  // its blank line.
  void Feed(absl::string_view in, std::string* out);
  // The sandbox sent its last byte: what is held goes out as it is.
  void Finish(std::string* out);
  // How many request heads got their secrets.
  uint64_t heads() const { return heads_; }

  static constexpr size_t kMaxHead = 64 * 1024;
  static constexpr size_t kMaxLine = 4 * 1024;

 private:
  enum class State {
    kHead,
    kBody,
    kChunkSize,
    kChunkData,  // then kChunkEnd's CRLF, counted in remaining_
    kTrailers,
    kPassthrough
  };
  // Handles one complete head; sets the state for what follows it.
  void Head(std::string head, std::string* out);
  void ChunkSize(const std::string& line);

  std::vector<std::pair<std::string, std::string>> replacements_;
  State state_ = State::kHead;
  std::string held_;
  uint64_t remaining_ = 0;
  uint64_t heads_ = 0;
};

}  // namespace corral::net

#endif  // CORRAL_DAEMON_NET_HTTP_REWRITE_H_
