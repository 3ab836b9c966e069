// Framing of file-operation records (agent.proto, "File operations"): the
// stdin and stdout of a file-operation child carry FsRecords, each preceded by
// its length as a 4-byte big-endian integer. Shared by corral-agent and
// corrald; depends only on protobuf-lite.
#ifndef CORRAL_GUEST_AGENT_WIRE_FS_RECORD_CODEC_H_
#define CORRAL_GUEST_AGENT_WIRE_FS_RECORD_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "corral/agent/v1/agent.pb.h"

namespace corral::agent::wire {

// Limits fixed by agent.proto. A record holds at most one data chunk or one
// entry (paths and link targets of up to 4 KiB each), so 1 MiB + 1 KiB leaves
// ample room while bounding what a reader must buffer.
inline constexpr uint32_t kMaxFsRecordBytes = (1u << 20) + 1024;
// Largest payload of one data record.
inline constexpr size_t kFsDataChunkBytes = 64u << 10;

// Appends the length prefix and the serialized record to `out`. Returns false
// (and appends nothing) when the record serializes to 0 bytes (no body set)
// or to more than kMaxFsRecordBytes. A data record with an empty payload
// still serializes (the oneof tag is present), but writers never send one.
[[nodiscard]] bool AppendFsRecord(const v1::FsRecord& record, std::string* out);

// Incremental decoder: feed bytes as they arrive, pop complete records.
// A zero or oversized length, or a record that does not parse, is a sticky
// error: the decoder refuses everything afterwards. Buffers at most one
// partial record plus the bytes of one Feed call beyond it, as long as the
// caller pops records after every Feed.
class FsRecordDecoder {
 public:
  FsRecordDecoder() = default;
  FsRecordDecoder(const FsRecordDecoder&) = delete;
  FsRecordDecoder& operator=(const FsRecordDecoder&) = delete;

  // Adds received bytes. Ignored once the decoder has failed.
  void Feed(std::string_view bytes);

  // Pops the next complete record into `record`. Returns false when no
  // complete record is buffered or the decoder has failed (see failed()).
  [[nodiscard]] bool Next(v1::FsRecord* record);

  [[nodiscard]] bool failed() const { return !error_.empty(); }
  // Why the decoder failed; empty while it has not.
  [[nodiscard]] const std::string& error() const { return error_; }
  // Bytes received but not yet returned as records.
  [[nodiscard]] size_t buffered_bytes() const {
    return buffer_.size() - consumed_;
  }

 private:
  std::string buffer_;
  // Bytes at the front of buffer_ already returned; compacted lazily.
  size_t consumed_ = 0;
  std::string error_;
};

}  // namespace corral::agent::wire

#endif  // CORRAL_GUEST_AGENT_WIRE_FS_RECORD_CODEC_H_
