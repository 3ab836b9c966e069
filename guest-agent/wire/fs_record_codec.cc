// Framing of file-operation records; see fs_record_codec.h.
#include "guest-agent/wire/fs_record_codec.h"

namespace corral::agent::wire {
namespace {

constexpr size_t kPrefixBytes = 4;

}  // namespace

bool AppendFsRecord(const v1::FsRecord& record, std::string* out) {
  const size_t size = record.ByteSizeLong();
  if (size == 0 || size > kMaxFsRecordBytes) return false;
  const size_t start = out->size();
  out->resize(start + kPrefixBytes + size);
  char* prefix = out->data() + start;
  prefix[0] = static_cast<char>((size >> 24) & 0xff);
  prefix[1] = static_cast<char>((size >> 16) & 0xff);
  prefix[2] = static_cast<char>((size >> 8) & 0xff);
  prefix[3] = static_cast<char>(size & 0xff);
  auto* body = reinterpret_cast<uint8_t*>(prefix + kPrefixBytes);
  if (!record.SerializeWithCachedSizesToArray(body)) {
    out->resize(start);
    return false;
  }
  return true;
}

void FsRecordDecoder::Feed(std::string_view bytes) {
  if (failed() || bytes.empty()) return;
  // Compact before growing: the consumed prefix is never needed again.
  if (consumed_ > 0 &&
      (consumed_ == buffer_.size() || consumed_ >= 64 * 1024)) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  buffer_.append(bytes.data(), bytes.size());
}

bool FsRecordDecoder::Next(v1::FsRecord* record) {
  if (failed()) return false;
  const size_t available = buffer_.size() - consumed_;
  if (available < kPrefixBytes) return false;
  const auto* p = reinterpret_cast<const uint8_t*>(buffer_.data() + consumed_);
  const uint32_t length = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
                          (uint32_t{p[2]} << 8) | uint32_t{p[3]};
  if (length == 0) {
    error_ = "fs record length 0";
    return false;
  }
  if (length > kMaxFsRecordBytes) {
    error_ = "fs record length " + std::to_string(length) + " exceeds " +
             std::to_string(kMaxFsRecordBytes);
    return false;
  }
  if (available - kPrefixBytes < length) return false;
  record->Clear();
  if (!record->ParseFromArray(p + kPrefixBytes, static_cast<int>(length))) {
    error_ = "fs record of " + std::to_string(length) + " bytes does not parse";
    return false;
  }
  consumed_ += kPrefixBytes + length;
  if (consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  }
  return true;
}

}  // namespace corral::agent::wire
