// The serial link: how connections to a VM's agent travel over one
// virtio-serial port, which (unlike a socket) has no connections of its own.
// The host's relay (backends/qemu, corral-qemu-link) and the guest's link
// process (corral-agent --vm-init) exchange records, each COBS-encoded and
// ended by a 0x00 byte, so that a receiver that starts in the middle of a
// record (a restored memory snapshot, whose queues held half a record) drops
// the torn part at the next delimiter and never misreads it:
//
//   record  = type (1 byte) | epoch (4 bytes, big-endian) | payload | crc32
//   OPEN    host -> guest: connection `epoch` begins; the guest ends any
//           earlier one (as if its socket had closed) and answers OPENED
//   OPENED  guest -> host: the guest's side of `epoch` is connected
//   DATA    either way: bytes of connection `epoch` (the agent protocol)
//   CLOSE   either way: connection `epoch` ended
//
// The crc32 (IEEE) covers type, epoch and payload. A record that fails it,
// has an unknown type or is too long is dropped and counted. Depends on
// nothing but the C++ library, so the static agent links it.
#ifndef CORRAL_GUEST_AGENT_WIRE_SERIAL_LINK_H_
#define CORRAL_GUEST_AGENT_WIRE_SERIAL_LINK_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace corral::agent::wire {

enum class LinkRecordType : uint8_t {
  kOpen = 1,
  kOpened = 2,
  kData = 3,
  kClose = 4,
};

// Largest payload of one record; senders split longer data.
inline constexpr size_t kMaxLinkPayloadBytes = 64u << 10;
// The delimiter. A sender writes one before its first record too, which ends
// whatever torn record the receiver was in the middle of.
inline constexpr char kLinkDelimiter = '\0';

struct LinkRecord {
  LinkRecordType type = LinkRecordType::kData;
  uint32_t epoch = 0;
  std::string payload;
};

// CRC-32 (IEEE 802.3, reflected, as zlib computes it) of `data`, continuing
// from `crc` (0 to start).
[[nodiscard]] uint32_t Crc32(std::string_view data, uint32_t crc = 0);

// Appends one record (COBS-encoded, then the delimiter) to `out`.
// Precondition: payload.size() <= kMaxLinkPayloadBytes.
void AppendLinkRecord(LinkRecordType type, uint32_t epoch,
                      std::string_view payload, std::string* out);

// Splits a received byte stream into records. Never fails: what cannot be a
// record is dropped (see dropped()). Buffers at most one encoded record plus
// the bytes of one Feed call, as long as the caller pops records after every
// Feed.
class LinkDecoder {
 public:
  LinkDecoder() = default;
  LinkDecoder(const LinkDecoder&) = delete;
  LinkDecoder& operator=(const LinkDecoder&) = delete;

  void Feed(std::string_view bytes);
  // Pops the next valid record. Returns false when no complete record is
  // buffered.
  [[nodiscard]] bool Next(LinkRecord* record);
  // Records dropped so far: torn, corrupt, oversized or of an unknown type.
  [[nodiscard]] uint64_t dropped() const { return dropped_; }

 private:
  std::string buffer_;
  size_t consumed_ = 0;
  // Within a segment longer than any record can be: skip to the delimiter.
  bool skipping_ = false;
  uint64_t dropped_ = 0;
};

}  // namespace corral::agent::wire

#endif  // CORRAL_GUEST_AGENT_WIRE_SERIAL_LINK_H_
