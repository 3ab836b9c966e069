// Length-prefixed protobuf messages; see length_prefixed.h.
#include "guest-agent/wire/length_prefixed.h"

namespace corral::agent::wire {

bool AppendLengthPrefixed(const google::protobuf::MessageLite& message,
                          uint32_t max_bytes, std::string* out) {
  const size_t size = message.ByteSizeLong();
  if (size == 0 || size > max_bytes) return false;
  const size_t start = out->size();
  out->resize(start + kLengthPrefixBytes + size);
  char* prefix = out->data() + start;
  prefix[0] = static_cast<char>((size >> 24) & 0xff);
  prefix[1] = static_cast<char>((size >> 16) & 0xff);
  prefix[2] = static_cast<char>((size >> 8) & 0xff);
  prefix[3] = static_cast<char>(size & 0xff);
  auto* body = reinterpret_cast<uint8_t*>(prefix + kLengthPrefixBytes);
  if (!message.SerializeWithCachedSizesToArray(body)) {
    out->resize(start);
    return false;
  }
  return true;
}

}  // namespace corral::agent::wire
