// libFuzzer target: the agent protocol's frame decoder, fed the input in
// pieces whose sizes come from the input itself. Every decoded frame must
// re-encode, and a failed decoder must stay failed.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "guest-agent/wire/frame_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace wire = corral::agent::wire;
  corral::agent::v1::Frame frame;
  wire::FrameDecoder decoder;
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t step = 1;
  while (!input.empty()) {
    // The first byte of each piece picks the next piece's size.
    step = 1 + static_cast<uint8_t>(input[0]) % 97;
    const size_t piece = std::min(step, input.size());
    decoder.Feed(input.substr(0, piece));
    input.remove_prefix(piece);
    while (decoder.Next(&frame)) {
      std::string encoded;
      if (frame.ByteSizeLong() > 0 && !wire::AppendFrame(frame, &encoded)) {
        std::abort();  // a decoded frame always fits
      }
    }
    if (decoder.failed() && decoder.Next(&frame)) std::abort();
  }
  return 0;
}
