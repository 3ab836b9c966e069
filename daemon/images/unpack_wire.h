// The frames corral-unpack (daemon/images/unpack_main.cc) writes to the
// daemon: what libarchive decoded of an untrusted tar stream, in a form the
// daemon reads without decoding anything. The decoder runs unprivileged
// under a seccomp filter; everything in a frame is as hostile as the archive
// itself, and the daemon checks every length before it uses one.
//
// A frame: one type byte, a 4-byte payload length, the payload. Integers
// are little-endian, strings a 4-byte length and bytes.
#ifndef CORRAL_DAEMON_IMAGES_UNPACK_WIRE_H_
#define CORRAL_DAEMON_IMAGES_UNPACK_WIRE_H_

#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

namespace corral::daemon::unpack {

// The largest payload the daemon accepts: a data frame's 64 KiB, or a
// header with three paths of at most 64 KiB each.
inline constexpr uint32_t kMaxPayload = 256u << 10;
// Data frames carry at most this much.
inline constexpr size_t kMaxDataBytes = 64u << 10;
// A path or link target longer than this makes the decoder fail the archive.
inline constexpr size_t kMaxPathBytes = 64u << 10;
// Failure messages are cut to this many bytes.
inline constexpr size_t kMaxMessageBytes = 1024;

enum FrameType : char {
  // The stream is open: i32 code and string name of the outermost filter
  // (its compression; "none" when it has none). Before the first header.
  kOpened = 'O',
  // An entry's header (EntryHeader).
  kHeader = 'H',
  // A block of the current entry's data: i64 offset, then the bytes.
  kData = 'D',
  // The current entry's data is complete.
  kEndOfData = 'E',
  // The archive ended and the decoder read its input to the end. Empty.
  kEndOfArchive = 'Z',
  // Decoding failed: string message (libarchive's). The last frame.
  kFailure = 'F',
  // The first header showed more than one compression layer (a bomb's
  // favourite shape); refused. The last frame. Empty.
  kCompressedTwice = 'M',
};

// What the decoder passes on of an entry's header. Owners, extended
// attributes, ACLs and file flags never cross: nobody restores them.
struct EntryHeader {
  uint32_t file_type = 0;    // the S_IFMT bits (AE_IF*)
  uint32_t permissions = 0;  // the 07777 bits
  std::optional<int64_t> size;
  std::optional<int64_t> mtime_seconds;
  int64_t mtime_nanoseconds = 0;
  std::optional<std::string> path;  // nullopt: libarchive had none usable
  std::optional<std::string> hardlink;
  std::optional<std::string> symlink;
};

inline void PutU32(std::string* out, uint32_t value) {
  for (int i = 0; i < 4; ++i)
    out->push_back(static_cast<char>(value >> (8 * i)));
}

inline void PutI64(std::string* out, int64_t value) {
  const auto bits = static_cast<uint64_t>(value);
  for (int i = 0; i < 8; ++i)
    out->push_back(static_cast<char>(bits >> (8 * i)));
}

inline void PutString(std::string* out, std::string_view text) {
  PutU32(out, static_cast<uint32_t>(text.size()));
  out->append(text);
}

// The type byte and the payload length.
inline constexpr size_t kFrameHeaderBytes = 5;

// A frame of `type` around `payload`.
inline std::string Frame(FrameType type, std::string_view payload) {
  std::string frame(1, static_cast<char>(type));
  PutU32(&frame, static_cast<uint32_t>(payload.size()));
  frame.append(payload);
  return frame;
}

inline std::string EncodeHeader(const EntryHeader& header) {
  std::string out;
  PutU32(&out, header.file_type);
  PutU32(&out, header.permissions);
  const uint32_t flags = (header.size ? 1u : 0u) |
                         (header.mtime_seconds ? 2u : 0u) |
                         (header.path ? 4u : 0u) | (header.hardlink ? 8u : 0u) |
                         (header.symlink ? 16u : 0u);
  PutU32(&out, flags);
  PutI64(&out, header.size.value_or(0));
  PutI64(&out, header.mtime_seconds.value_or(0));
  PutI64(&out, header.mtime_nanoseconds);
  PutString(&out, header.path.value_or(""));
  PutString(&out, header.hardlink.value_or(""));
  PutString(&out, header.symlink.value_or(""));
  return out;
}

// Reads a payload front to back; every read checks the room left.
class PayloadReader {
 public:
  explicit PayloadReader(std::string_view payload) : rest_(payload) {}

  bool U32(uint32_t* value) {
    if (rest_.size() < 4) return false;
    *value = 0;
    for (int i = 0; i < 4; ++i) {
      *value |= static_cast<uint32_t>(static_cast<unsigned char>(rest_[i]))
                << (8 * i);
    }
    rest_.remove_prefix(4);
    return true;
  }
  bool I64(int64_t* value) {
    if (rest_.size() < 8) return false;
    uint64_t bits = 0;
    for (int i = 0; i < 8; ++i) {
      bits |= static_cast<uint64_t>(static_cast<unsigned char>(rest_[i]))
              << (8 * i);
    }
    std::memcpy(value, &bits, sizeof(bits));
    rest_.remove_prefix(8);
    return true;
  }
  bool String(std::string* text, size_t max) {
    uint32_t size = 0;
    if (!U32(&size) || size > max || size > rest_.size()) return false;
    text->assign(rest_.data(), size);
    rest_.remove_prefix(size);
    return true;
  }
  std::string_view rest() const { return rest_; }
  bool empty() const { return rest_.empty(); }

 private:
  std::string_view rest_;
};

// The payload length of the frame `buffer` starts with, whose first
// kFrameHeaderBytes it must hold.
inline uint32_t FramePayloadSize(std::string_view buffer) {
  uint32_t size = 0;
  (void)PayloadReader(buffer.substr(1, 4)).U32(&size);
  return size;
}

// False for a payload that is no header (too short, too long, bad lengths).
inline bool DecodeHeader(std::string_view payload, EntryHeader* header) {
  PayloadReader reader(payload);
  uint32_t flags = 0;
  int64_t size = 0, seconds = 0;
  std::string path, hardlink, symlink;
  if (!reader.U32(&header->file_type) || !reader.U32(&header->permissions) ||
      !reader.U32(&flags) || !reader.I64(&size) || !reader.I64(&seconds) ||
      !reader.I64(&header->mtime_nanoseconds) ||
      !reader.String(&path, kMaxPathBytes) ||
      !reader.String(&hardlink, kMaxPathBytes) ||
      !reader.String(&symlink, kMaxPathBytes) || !reader.empty() ||
      flags > 31) {
    return false;
  }
  header->file_type &= 0170000;
  header->permissions &= 07777;
  header->size.reset();
  header->mtime_seconds.reset();
  header->path.reset();
  header->hardlink.reset();
  header->symlink.reset();
  if (flags & 1u) header->size = size;
  if (flags & 2u) header->mtime_seconds = seconds;
  if (flags & 4u) header->path = std::move(path);
  if (flags & 8u) header->hardlink = std::move(hardlink);
  if (flags & 16u) header->symlink = std::move(symlink);
  return true;
}

}  // namespace corral::daemon::unpack

#endif  // CORRAL_DAEMON_IMAGES_UNPACK_WIRE_H_
