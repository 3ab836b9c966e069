// Length-prefixed protobuf messages (a 4-byte big-endian length, then the
// serialized message): the one encoder and decoder behind the agent
// protocol's frames (frame_codec.h) and file-operation records
// (fs_record_codec.h). Depends only on protobuf-lite, so the static agent can
// link it without Abseil.
#ifndef CORRAL_GUEST_AGENT_WIRE_LENGTH_PREFIXED_H_
#define CORRAL_GUEST_AGENT_WIRE_LENGTH_PREFIXED_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "google/protobuf/message_lite.h"

namespace corral::agent::wire {

inline constexpr size_t kLengthPrefixBytes = 4;

// Appends the length prefix and the serialized `message` to `out`. Returns
// false (and appends nothing) when the message serializes to 0 bytes (which
// the length prefix cannot carry) or to more than `max_bytes`.
[[nodiscard]] bool AppendLengthPrefixed(
    const google::protobuf::MessageLite& message, uint32_t max_bytes,
    std::string* out);

// The 32-bit big-endian length at the start of `prefix`, which holds at
// least kLengthPrefixBytes bytes.
[[nodiscard]] inline uint32_t ReadLengthPrefix(const uint8_t* prefix) {
  return (uint32_t{prefix[0]} << 24) | (uint32_t{prefix[1]} << 16) |
         (uint32_t{prefix[2]} << 8) | uint32_t{prefix[3]};
}

// Incremental decoder of `Message`s of at most `kMaxBytes` each: feed bytes
// as they arrive, pop complete messages. A zero or oversized length, or a
// message that does not parse, is a sticky error: the decoder refuses
// everything afterwards, and the stream must be abandoned. Buffers at most
// one partial message plus the bytes of one Feed call beyond it, as long as
// the caller pops messages after every Feed.
template <typename Message, uint32_t kMaxBytes>
class LengthPrefixedDecoder {
 public:
  // `noun` names a message in error(), e.g. "frame".
  explicit LengthPrefixedDecoder(std::string_view noun) : noun_(noun) {}
  LengthPrefixedDecoder(const LengthPrefixedDecoder&) = delete;
  LengthPrefixedDecoder& operator=(const LengthPrefixedDecoder&) = delete;

  // Adds received bytes. Ignored once the decoder has failed.
  void Feed(std::string_view bytes) {
    if (failed() || bytes.empty()) return;
    // Compact before growing: the consumed prefix is never needed again.
    if (consumed_ > 0 &&
        (consumed_ == buffer_.size() || consumed_ >= kCompactBytes)) {
      buffer_.erase(0, consumed_);
      consumed_ = 0;
    }
    buffer_.append(bytes.data(), bytes.size());
  }

  // Pops the next complete message into `message`. Returns false when no
  // complete message is buffered or the decoder has failed (see failed()).
  [[nodiscard]] bool Next(Message* message) {
    if (failed()) return false;
    const size_t available = buffer_.size() - consumed_;
    if (available < kLengthPrefixBytes) return false;
    const auto* prefix =
        reinterpret_cast<const uint8_t*>(buffer_.data() + consumed_);
    const uint32_t length = ReadLengthPrefix(prefix);
    if (length == 0) {
      error_ = noun_ + " length 0";
      return false;
    }
    if (length > kMaxBytes) {
      error_ = noun_ + " length " + std::to_string(length) + " exceeds " +
               std::to_string(kMaxBytes);
      return false;
    }
    if (available - kLengthPrefixBytes < length) return false;
    message->Clear();
    if (!message->ParseFromArray(prefix + kLengthPrefixBytes,
                                 static_cast<int>(length))) {
      error_ =
          noun_ + " of " + std::to_string(length) + " bytes does not parse";
      return false;
    }
    consumed_ += kLengthPrefixBytes + length;
    if (consumed_ == buffer_.size()) {
      buffer_.clear();
      consumed_ = 0;
    }
    return true;
  }

  [[nodiscard]] bool failed() const { return !error_.empty(); }
  // Why the decoder failed; empty while it has not.
  [[nodiscard]] const std::string& error() const { return error_; }
  // Bytes received but not yet returned as messages.
  [[nodiscard]] size_t buffered_bytes() const {
    return buffer_.size() - consumed_;
  }

 private:
  // How many consumed bytes Feed lets stand at the front of buffer_ before
  // it moves the rest down.
  static constexpr size_t kCompactBytes = 64 * 1024;

  const std::string noun_;
  std::string buffer_;
  // Bytes at the front of buffer_ already returned; compacted lazily so that
  // popping many small messages does not move the rest every time.
  size_t consumed_ = 0;
  std::string error_;
};

}  // namespace corral::agent::wire

#endif  // CORRAL_GUEST_AGENT_WIRE_LENGTH_PREFIXED_H_
