#include "guest-agent/wire/serial_link.h"

#include <array>
#include <cstring>

namespace corral::agent::wire {
namespace {

constexpr size_t kHeaderBytes = 5;  // type + epoch
constexpr size_t kCrcBytes = 4;
constexpr size_t kMaxRecordBytes =
    kHeaderBytes + kMaxLinkPayloadBytes + kCrcBytes;
// COBS adds one code byte per 254 data bytes, plus one.
constexpr size_t kMaxEncodedBytes = kMaxRecordBytes + kMaxRecordBytes / 254 + 2;

constexpr std::array<uint32_t, 256> MakeCrcTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kCrcTable = MakeCrcTable();

void PutBigEndian32(uint32_t value, char* out) {
  out[0] = static_cast<char>(value >> 24);
  out[1] = static_cast<char>(value >> 16);
  out[2] = static_cast<char>(value >> 8);
  out[3] = static_cast<char>(value);
}

uint32_t GetBigEndian32(const char* in) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(in);
  return (uint32_t{bytes[0]} << 24) | (uint32_t{bytes[1]} << 16) |
         (uint32_t{bytes[2]} << 8) | uint32_t{bytes[3]};
}

// Consistent Overhead Byte Stuffing: `data` without any 0x00, appended to
// `out`.
void CobsEncode(std::string_view data, std::string* out) {
  size_t code_at = out->size();
  out->push_back('\x01');
  uint8_t code = 1;
  for (char c : data) {
    if (c == '\0') {
      (*out)[code_at] = static_cast<char>(code);
      code_at = out->size();
      out->push_back('\x01');
      code = 1;
      continue;
    }
    out->push_back(c);
    if (++code == 0xFF) {
      (*out)[code_at] = static_cast<char>(code);
      code_at = out->size();
      out->push_back('\x01');
      code = 1;
    }
  }
  (*out)[code_at] = static_cast<char>(code);
}

// The inverse; false for input no encoder makes (a zero code byte, a block
// running past the end). `in` holds no 0x00 (the delimiter split it off).
bool CobsDecode(std::string_view in, std::string* out) {
  out->clear();
  size_t i = 0;
  while (i < in.size()) {
    const auto code = static_cast<uint8_t>(in[i++]);
    if (code == 0 || i + code - 1 > in.size()) return false;
    out->append(in.data() + i, code - 1u);
    i += code - 1u;
    if (code != 0xFF && i < in.size()) out->push_back('\0');
  }
  return true;
}

bool KnownType(uint8_t type) {
  return type >= static_cast<uint8_t>(LinkRecordType::kOpen) &&
         type <= static_cast<uint8_t>(LinkRecordType::kClose);
}

}  // namespace

uint32_t Crc32(std::string_view data, uint32_t crc) {
  crc = ~crc;
  for (char c : data) {
    crc = kCrcTable[(crc ^ static_cast<uint8_t>(c)) & 0xFFu] ^ (crc >> 8);
  }
  return ~crc;
}

void AppendLinkRecord(LinkRecordType type, uint32_t epoch,
                      std::string_view payload, std::string* out) {
  std::string record;
  record.resize(kHeaderBytes);
  record[0] = static_cast<char>(type);
  PutBigEndian32(epoch, &record[1]);
  record.append(payload.data(), payload.size());
  char crc[kCrcBytes];
  PutBigEndian32(Crc32(record), crc);
  record.append(crc, kCrcBytes);
  out->reserve(out->size() + record.size() + record.size() / 254 + 2);
  CobsEncode(record, out);
  out->push_back(kLinkDelimiter);
}

void LinkDecoder::Feed(std::string_view bytes) {
  if (bytes.empty()) return;
  if (consumed_ > 0) {
    buffer_.erase(0, consumed_);
    consumed_ = 0;
  }
  buffer_.append(bytes.data(), bytes.size());
}

bool LinkDecoder::Next(LinkRecord* record) {
  std::string decoded;
  for (;;) {
    const size_t end = buffer_.find(kLinkDelimiter, consumed_);
    if (end == std::string::npos) {
      // No delimiter yet. Longer than any record: drop what is buffered and
      // the rest up to the next delimiter.
      if (buffer_.size() - consumed_ > kMaxEncodedBytes) {
        if (!skipping_) ++dropped_;
        skipping_ = true;
        buffer_.clear();
        consumed_ = 0;
      }
      return false;
    }
    const std::string_view segment(buffer_.data() + consumed_, end - consumed_);
    consumed_ = end + 1;
    if (skipping_) {
      skipping_ = false;
      continue;
    }
    if (segment.empty()) continue;  // delimiters in a row
    if (segment.size() > kMaxEncodedBytes || !CobsDecode(segment, &decoded) ||
        decoded.size() < kHeaderBytes + kCrcBytes ||
        decoded.size() > kMaxRecordBytes ||
        !KnownType(static_cast<uint8_t>(decoded[0]))) {
      ++dropped_;
      continue;
    }
    const size_t body = decoded.size() - kCrcBytes;
    if (Crc32(std::string_view(decoded.data(), body)) !=
        GetBigEndian32(decoded.data() + body)) {
      ++dropped_;
      continue;
    }
    record->type = static_cast<LinkRecordType>(decoded[0]);
    record->epoch = GetBigEndian32(decoded.data() + 1);
    record->payload.assign(decoded, kHeaderBytes, body - kHeaderBytes);
    if (consumed_ == buffer_.size()) {
      buffer_.clear();
      consumed_ = 0;
    }
    return true;
  }
}

}  // namespace corral::agent::wire
