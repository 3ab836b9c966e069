// Framing of file-operation records; see fs_record_codec.h.
#include "guest-agent/wire/fs_record_codec.h"

namespace corral::agent::wire {

bool AppendFsRecord(const v1::FsRecord& record, std::string* out) {
  return AppendLengthPrefixed(record, kMaxFsRecordBytes, out);
}

}  // namespace corral::agent::wire
