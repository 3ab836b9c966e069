// The agent protocol's framing (4-byte big-endian length + serialized Frame),
// shared by corral-agent and corrald. Depends only on protobuf-lite, so the
// static agent can link it without Abseil.
#ifndef CORRAL_GUEST_AGENT_WIRE_FRAME_CODEC_H_
#define CORRAL_GUEST_AGENT_WIRE_FRAME_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "corral/agent/v1/agent.pb.h"

namespace corral::agent::wire {

// Limits fixed by agent.proto.
inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr uint32_t kMaxFrameBytes = 4u << 20;
inline constexpr uint32_t kInitialWindowBytes = 256u << 10;
inline constexpr size_t kLengthPrefixBytes = 4;
// Largest data payload of one Output or StdinData frame. Keeps each frame far
// below kMaxFrameBytes and lets many streams interleave fairly.
inline constexpr size_t kMaxChunkBytes = 64u << 10;

// Appends the length prefix and the serialized frame to `out`. Returns false
// (and appends nothing) when the frame serializes to 0 bytes (an empty Frame,
// which the protocol cannot carry) or to more than kMaxFrameBytes.
[[nodiscard]] bool AppendFrame(const v1::Frame& frame, std::string* out);

// Incremental decoder: feed bytes as they arrive, pop complete frames.
// A zero or oversized length, or a frame that does not parse, is a sticky
// error: the decoder refuses everything afterwards, and the connection must be
// closed. Buffers at most one partial frame plus the bytes of one Feed call
// beyond it, as long as the caller pops frames after every Feed.
class FrameDecoder {
 public:
  FrameDecoder() = default;
  FrameDecoder(const FrameDecoder&) = delete;
  FrameDecoder& operator=(const FrameDecoder&) = delete;

  // Adds received bytes. Ignored once the decoder has failed.
  void Feed(std::string_view bytes);

  // Pops the next complete frame into `frame`. Returns false when no complete
  // frame is buffered or the decoder has failed (see failed()).
  [[nodiscard]] bool Next(v1::Frame* frame);

  [[nodiscard]] bool failed() const { return !error_.empty(); }
  // Why the decoder failed; empty while it has not.
  [[nodiscard]] const std::string& error() const { return error_; }
  // Bytes received but not yet returned as frames.
  [[nodiscard]] size_t buffered_bytes() const {
    return buffer_.size() - consumed_;
  }

 private:
  std::string buffer_;
  // Bytes at the front of buffer_ already returned; compacted lazily so that
  // popping many small frames does not move the rest every time.
  size_t consumed_ = 0;
  std::string error_;
};

}  // namespace corral::agent::wire

#endif  // CORRAL_GUEST_AGENT_WIRE_FRAME_CODEC_H_
