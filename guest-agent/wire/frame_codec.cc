// Framing of the agent protocol; see frame_codec.h.
#include "guest-agent/wire/frame_codec.h"

namespace corral::agent::wire {

bool AppendFrame(const v1::Frame& frame, std::string* out) {
  return AppendLengthPrefixed(frame, kMaxFrameBytes, out);
}

}  // namespace corral::agent::wire
