// The agent protocol's framing (4-byte big-endian length + serialized Frame),
// shared by corral-agent and corrald. Depends only on protobuf-lite, so the
// static agent can link it without Abseil.
#ifndef CORRAL_GUEST_AGENT_WIRE_FRAME_CODEC_H_
#define CORRAL_GUEST_AGENT_WIRE_FRAME_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "corral/agent/v1/agent.pb.h"
#include "guest-agent/wire/length_prefixed.h"

namespace corral::agent::wire {

// Limits fixed by agent.proto. (kLengthPrefixBytes: length_prefixed.h.)
inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr uint32_t kMaxFrameBytes = 4u << 20;
inline constexpr uint32_t kInitialWindowBytes = 256u << 10;
// Largest data payload of one Output or StdinData frame. Keeps each frame far
// below kMaxFrameBytes and lets many streams interleave fairly.
inline constexpr size_t kMaxChunkBytes = 64u << 10;

// Appends the length prefix and the serialized frame to `out`. Returns false
// (and appends nothing) when the frame serializes to 0 bytes (an empty Frame,
// which the protocol cannot carry) or to more than kMaxFrameBytes.
[[nodiscard]] bool AppendFrame(const v1::Frame& frame, std::string* out);

// Incremental frame decoder (see LengthPrefixedDecoder). After an error the
// connection must be closed.
class FrameDecoder final
    : public LengthPrefixedDecoder<v1::Frame, kMaxFrameBytes> {
 public:
  FrameDecoder() : LengthPrefixedDecoder("frame") {}
};

}  // namespace corral::agent::wire

#endif  // CORRAL_GUEST_AGENT_WIRE_FRAME_CODEC_H_
