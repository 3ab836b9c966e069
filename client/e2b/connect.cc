#include "client/e2b/connect.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace corral::e2b {

std::string ConnectCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return "";
    case absl::StatusCode::kCancelled:
      return "canceled";
    case absl::StatusCode::kInvalidArgument:
      return "invalid_argument";
    case absl::StatusCode::kDeadlineExceeded:
      return "deadline_exceeded";
    case absl::StatusCode::kNotFound:
      return "not_found";
    case absl::StatusCode::kAlreadyExists:
      return "already_exists";
    case absl::StatusCode::kPermissionDenied:
      return "permission_denied";
    case absl::StatusCode::kResourceExhausted:
      return "resource_exhausted";
    case absl::StatusCode::kFailedPrecondition:
      return "failed_precondition";
    case absl::StatusCode::kAborted:
      return "aborted";
    case absl::StatusCode::kOutOfRange:
      return "out_of_range";
    case absl::StatusCode::kUnimplemented:
      return "unimplemented";
    case absl::StatusCode::kInternal:
      return "internal";
    case absl::StatusCode::kUnavailable:
      return "unavailable";
    case absl::StatusCode::kDataLoss:
      return "data_loss";
    case absl::StatusCode::kUnauthenticated:
      return "unauthenticated";
    default:
      return "unknown";
  }
}

ConnectError ToConnectError(const absl::Status& status) {
  return {ConnectCode(status.code()), std::string(status.message())};
}

int HttpStatusOf(absl::string_view code) {
  if (code == "canceled") return 499;
  if (code == "invalid_argument" || code == "failed_precondition" ||
      code == "out_of_range") {
    return 400;
  }
  if (code == "deadline_exceeded") return 504;
  if (code == "not_found") return 404;
  if (code == "already_exists" || code == "aborted") return 409;
  if (code == "permission_denied") return 403;
  if (code == "resource_exhausted") return 429;
  if (code == "unimplemented") return 501;
  if (code == "unavailable") return 503;
  if (code == "unauthenticated") return 401;
  return 500;
}

Json ErrorBody(const ConnectError& error) {
  return {{"code", error.code}, {"message", error.message}};
}

std::string Envelope(uint8_t flags, const std::string& message) {
  std::string out;
  out.reserve(5 + message.size());
  out.push_back(static_cast<char>(flags));
  const uint32_t size = static_cast<uint32_t>(message.size());
  for (int shift = 24; shift >= 0; shift -= 8) {
    out.push_back(static_cast<char>((size >> shift) & 0xff));
  }
  out.append(message);
  return out;
}

std::string EndOfStream(const std::optional<ConnectError>& error) {
  Json end = Json::object();
  if (error) end["error"] = ErrorBody(*error);
  return Envelope(kEndStreamFlag, end.dump());
}

namespace {

absl::StatusOr<Json> ParseJson(absl::string_view text) {
  Json parsed = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
    return absl::InvalidArgumentError("the request is not valid JSON");
  }
  if (!parsed.is_object()) {
    return absl::InvalidArgumentError("the request is not a JSON object");
  }
  return parsed;
}

}  // namespace

absl::StatusOr<Json> ParseStreamRequest(const std::string& body) {
  if (body.size() < 5) {
    return absl::InvalidArgumentError(
        "the request is not an enveloped message (fewer than 5 bytes)");
  }
  const uint8_t flags = static_cast<uint8_t>(body[0]);
  uint32_t size = 0;
  for (int i = 1; i <= 4; ++i)
    size = (size << 8) | static_cast<uint8_t>(body[i]);
  if (flags & kCompressedFlag) {
    return absl::InvalidArgumentError(
        "compressed messages are not accepted (no Connect-Content-Encoding)");
  }
  if (flags != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("unexpected envelope flags ", flags));
  }
  if (body.size() - 5 != size) {
    return absl::InvalidArgumentError(
        absl::StrCat("the envelope says ", size, " bytes but ", body.size() - 5,
                     " follow: a server stream takes exactly one message"));
  }
  return ParseJson(absl::string_view(body).substr(5));
}

absl::StatusOr<Json> ParseUnaryRequest(const std::string& body) {
  if (absl::StripAsciiWhitespace(body).empty()) return Json::object();
  return ParseJson(body);
}

absl::StatusOr<std::optional<absl::Duration>> ParseTimeout(
    const std::string& header) {
  if (header.empty()) return std::nullopt;
  int64_t ms = 0;
  if (header.size() > 10 || !absl::SimpleAtoi(header, &ms) || ms < 0) {
    return absl::InvalidArgumentError(absl::StrCat("Connect-Timeout-Ms: '",
                                                   header.substr(0, 20),
                                                   "' is not 1 to 10 digits"));
  }
  return absl::Milliseconds(ms);
}

}  // namespace corral::e2b
