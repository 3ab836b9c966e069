#include "daemon/net/http_rewrite.h"

#include <algorithm>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "daemon/net/egress_policy.h"

namespace corral::net {

std::vector<std::pair<std::string, std::string>> SecretsFor(
    const std::vector<SecretSubstitution>& secrets, absl::string_view host) {
  std::vector<std::pair<std::string, std::string>> bound;
  for (const SecretSubstitution& secret : secrets) {
    if (secret.placeholder.empty()) continue;
    for (const auto& pattern : secret.hosts) {
      if (DomainMatches(pattern, host)) {
        bound.emplace_back(secret.placeholder, secret.value);
        break;
      }
    }
  }
  return bound;
}

std::string SubstituteSecrets(const std::string& head, const std::string& host,
                              const std::vector<SecretSubstitution>& secrets) {
  RequestRewriter rewriter(SecretsFor(secrets, host));
  std::string out;
  rewriter.Feed(head, &out);
  rewriter.Finish(&out);
  return out;
}

void RequestRewriter::Feed(absl::string_view in, std::string* out) {
  while (!in.empty()) {
    switch (state_) {
      case State::kPassthrough:
        out->append(in.data(), in.size());
        return;
      case State::kBody:
      case State::kChunkData: {
        const size_t n =
            static_cast<size_t>(std::min<uint64_t>(remaining_, in.size()));
        out->append(in.data(), n);
        in.remove_prefix(n);
        remaining_ -= n;
        if (remaining_ == 0) {
          state_ = state_ == State::kBody ? State::kHead : State::kChunkSize;
        }
        break;
      }
      case State::kHead: {
        // The blank line may straddle what was held and what came.
        const size_t before = held_.size();
        const size_t take = std::min(in.size(), kMaxHead + 4 - before);
        held_.append(in.data(), take);
        const size_t from = before >= 3 ? before - 3 : 0;
        const size_t end = held_.find("\r\n\r\n", from);
        if (end == std::string::npos) {
          in.remove_prefix(take);
          if (held_.size() > kMaxHead) {
            out->append(held_);
            held_.clear();
            state_ = State::kPassthrough;
          }
          break;
        }
        // What followed the head was taken too: give it back.
        const size_t head_size = end + 4;
        in.remove_prefix(head_size - before);
        std::string head = held_.substr(0, head_size);
        held_.clear();
        Head(std::move(head), out);
        break;
      }
      case State::kChunkSize:
      case State::kTrailers: {
        const size_t newline = in.find('\n');
        const size_t take =
            newline == absl::string_view::npos ? in.size() : newline + 1;
        held_.append(in.data(), take);
        in.remove_prefix(take);
        if (newline == absl::string_view::npos) {
          if (held_.size() > kMaxLine) {
            out->append(held_);
            held_.clear();
            state_ = State::kPassthrough;
          }
          break;
        }
        std::string line = std::move(held_);
        held_.clear();
        out->append(line);
        if (state_ == State::kChunkSize) {
          ChunkSize(line);
        } else if (line == "\r\n" || line == "\n") {
          state_ = State::kHead;  // the end of the trailers
        }
        break;
      }
    }
  }
}

void RequestRewriter::Finish(std::string* out) {
  out->append(held_);
  held_.clear();
  state_ = State::kPassthrough;
}

void RequestRewriter::Head(std::string head, std::string* out) {
  ++heads_;
  out->append(absl::StrReplaceAll(head, replacements_));
  // How the body is framed (RFC 9112 section 6): Transfer-Encoding wins
  // over Content-Length; several Content-Lengths must agree.
  std::vector<absl::string_view> lines = absl::StrSplit(
      absl::string_view(head).substr(0, head.size() - 4), "\r\n");
  const std::vector<absl::string_view> request_line =
      absl::StrSplit(lines.front(), ' ');
  bool upgrade = request_line.front() == "CONNECT";
  std::optional<uint64_t> length;
  bool conflicting = false, chunked = false, encoded = false;
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos) continue;
    const std::string name = absl::AsciiStrToLower(
        absl::StripAsciiWhitespace(lines[i].substr(0, colon)));
    const absl::string_view value =
        absl::StripAsciiWhitespace(lines[i].substr(colon + 1));
    if (name == "upgrade") upgrade = true;
    if (name == "transfer-encoding") {
      encoded = true;
      const std::vector<absl::string_view> codings = absl::StrSplit(value, ',');
      chunked = absl::EqualsIgnoreCase(
          absl::StripAsciiWhitespace(codings.back()), "chunked");
    }
    if (name == "content-length") {
      uint64_t n = 0;
      if (!absl::SimpleAtoi(value, &n) || (length && *length != n)) {
        conflicting = true;
      }
      length = n;
    }
  }
  if (upgrade || conflicting || (encoded && !chunked)) {
    state_ = State::kPassthrough;
  } else if (chunked) {
    state_ = State::kChunkSize;
  } else if (length.value_or(0) > 0) {
    state_ = State::kBody;
    remaining_ = *length;
  } else {
    state_ = State::kHead;
  }
}

void RequestRewriter::ChunkSize(const std::string& line) {
  absl::string_view size = line;
  size = size.substr(0, size.find_first_of(";\r\n"));
  size = absl::StripAsciiWhitespace(size);
  uint64_t n = 0;
  if (size.empty() || size.size() > 15 || !absl::SimpleHexAtoi(size, &n)) {
    state_ = State::kPassthrough;
  } else if (n == 0) {
    state_ = State::kTrailers;
  } else {
    state_ = State::kChunkData;
    remaining_ = n + 2;  // the data and its CRLF
  }
}

}  // namespace corral::net
