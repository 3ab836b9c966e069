// The Connect protocol (connectrpc.com) in its JSON form over HTTP/1.1, as
// E2B's envd speaks it and its SDKs call it: unary calls are a JSON body
// answered with a JSON body (an error: a non-200 status and
// {"code", "message"}); server streams send one enveloped request message
// and answer with enveloped messages, the last one flagged end-of-stream and
// carrying the error, if any. An envelope is one flags byte, a 4-byte
// big-endian length, then the message.
#ifndef CORRAL_CLIENT_E2B_CONNECT_H_
#define CORRAL_CLIENT_E2B_CONNECT_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace corral::e2b {

using Json = nlohmann::json;

inline constexpr char kUnaryContentType[] = "application/json";
inline constexpr char kStreamContentType[] = "application/connect+json";
inline constexpr uint8_t kEndStreamFlag = 0x02;
inline constexpr uint8_t kCompressedFlag = 0x01;

// An error as Connect names it: a code ("not_found") and a message.
struct ConnectError {
  std::string code;
  std::string message;
};

// Connect's code for a status ("invalid_argument", ...); OK has none.
std::string ConnectCode(absl::StatusCode code);
ConnectError ToConnectError(const absl::Status& status);
// The HTTP status of a unary error with this code (Connect's table).
int HttpStatusOf(absl::string_view connect_code);
// {"code": ..., "message": ...}
Json ErrorBody(const ConnectError& error);

// An envelope around `message`.
std::string Envelope(uint8_t flags, const std::string& message);
// The end-of-stream envelope: {} or {"error": {...}}.
std::string EndOfStream(const std::optional<ConnectError>& error);

// The single message of a server-streaming request's body, parsed. Refuses
// a compressed envelope, trailing bytes and bad JSON.
absl::StatusOr<Json> ParseStreamRequest(const std::string& body);
// A unary request's JSON body (an empty body is {}).
absl::StatusOr<Json> ParseUnaryRequest(const std::string& body);

// Connect-Timeout-Ms: at most 10 digits; nullopt when absent, an error when
// malformed.
absl::StatusOr<std::optional<absl::Duration>> ParseTimeout(
    const std::string& header);

}  // namespace corral::e2b

#endif  // CORRAL_CLIENT_E2B_CONNECT_H_
