// Framing of file-operation records (agent.proto, "File operations"): the
// stdin and stdout of a file-operation child carry FsRecords, each preceded by
// its length as a 4-byte big-endian integer. Shared by corral-agent and
// corrald; depends only on protobuf-lite.
#ifndef CORRAL_GUEST_AGENT_WIRE_FS_RECORD_CODEC_H_
#define CORRAL_GUEST_AGENT_WIRE_FS_RECORD_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "corral/agent/v1/agent.pb.h"
#include "guest-agent/wire/length_prefixed.h"

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

// Incremental record decoder (see LengthPrefixedDecoder).
class FsRecordDecoder final
    : public LengthPrefixedDecoder<v1::FsRecord, kMaxFsRecordBytes> {
 public:
  FsRecordDecoder() : LengthPrefixedDecoder("fs record") {}
};

}  // namespace corral::agent::wire

#endif  // CORRAL_GUEST_AGENT_WIRE_FS_RECORD_CODEC_H_
