#include "daemon/net/sniff.h"

#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "daemon/net/egress_policy.h"

namespace corral::net {
namespace {

// A bounds-checked reader over one buffer.
class Reader {
 public:
  explicit Reader(absl::string_view data) : data_(data) {}
  bool U8(uint32_t* out) { return Int(1, out); }
  bool U16(uint32_t* out) { return Int(2, out); }
  bool U24(uint32_t* out) { return Int(3, out); }
  bool Skip(size_t n) {
    if (data_.size() < n) return false;
    data_.remove_prefix(n);
    return true;
  }
  bool Take(size_t n, absl::string_view* out) {
    if (data_.size() < n) return false;
    *out = data_.substr(0, n);
    data_.remove_prefix(n);
    return true;
  }
  size_t left() const { return data_.size(); }

 private:
  bool Int(size_t n, uint32_t* out) {
    if (data_.size() < n) return false;
    *out = 0;
    for (size_t i = 0; i < n; ++i) {
      *out = (*out << 8) | static_cast<uint8_t>(data_[i]);
    }
    data_.remove_prefix(n);
    return true;
  }
  absl::string_view data_;
};

constexpr uint32_t kHandshakeRecord = 22;
constexpr uint32_t kClientHello = 1;
constexpr uint32_t kServerNameExtension = 0;
constexpr uint32_t kHostName = 0;

}  // namespace

Sniffed SniffTlsServerName(absl::string_view data, std::string* name) {
  // The first record must hold the whole ClientHello: clients send it in
  // one record unless it exceeds 16 KiB, which post-quantum key shares do
  // not reach yet.
  Reader record(data);
  uint32_t type = 0, version = 0, length = 0;
  if (!record.U8(&type)) return Sniffed::kNeedMore;
  if (type != kHandshakeRecord) return Sniffed::kNotProtocol;
  if (!record.U16(&version) || !record.U16(&length)) return Sniffed::kNeedMore;
  if ((version >> 8) != 3 || length == 0 || length > kMaxSniffBytes) {
    return Sniffed::kNotProtocol;
  }
  absl::string_view body;
  if (!record.Take(length, &body)) return Sniffed::kNeedMore;

  Reader hello(body);
  uint32_t handshake = 0, hello_length = 0;
  if (!hello.U8(&handshake) || handshake != kClientHello ||
      !hello.U24(&hello_length) || hello_length > hello.left()) {
    return Sniffed::kNotProtocol;
  }
  uint32_t n = 0;
  // client_version, random, session id, cipher suites, compression methods.
  if (!hello.Skip(2 + 32) || !hello.U8(&n) || !hello.Skip(n) ||
      !hello.U16(&n) || !hello.Skip(n) || !hello.U8(&n) || !hello.Skip(n)) {
    return Sniffed::kNotProtocol;
  }
  if (hello.left() == 0) return Sniffed::kNoName;  // no extensions at all
  absl::string_view extensions;
  if (!hello.U16(&n) || !hello.Take(n, &extensions)) {
    return Sniffed::kNotProtocol;
  }
  Reader each(extensions);
  while (each.left() > 0) {
    uint32_t extension = 0, size = 0;
    absl::string_view content;
    if (!each.U16(&extension) || !each.U16(&size) ||
        !each.Take(size, &content)) {
      return Sniffed::kNotProtocol;
    }
    if (extension != kServerNameExtension) continue;
    Reader list(content);
    uint32_t list_size = 0, name_type = 0, name_size = 0;
    absl::string_view raw;
    if (!list.U16(&list_size) || list_size != list.left() ||
        !list.U8(&name_type) || name_type != kHostName ||
        !list.U16(&name_size) || !list.Take(name_size, &raw)) {
      return Sniffed::kNotProtocol;
    }
    auto normalized = NormalizeName(raw);
    if (!normalized) return Sniffed::kNotProtocol;
    *name = *normalized;
    return Sniffed::kName;
  }
  return Sniffed::kNoName;
}

Sniffed SniffHttpHost(absl::string_view data, std::string* name) {
  const size_t end = data.find("\r\n\r\n");
  if (end == absl::string_view::npos) {
    // A request line must look like one as soon as it is complete.
    const size_t line_end = data.find("\r\n");
    if (line_end != absl::string_view::npos &&
        !absl::StrContains(data.substr(0, line_end), " HTTP/1.")) {
      return Sniffed::kNotProtocol;
    }
    return data.size() >= kMaxSniffBytes ? Sniffed::kNotProtocol
                                         : Sniffed::kNeedMore;
  }
  std::vector<absl::string_view> lines =
      absl::StrSplit(data.substr(0, end), "\r\n");
  if (lines.empty() || !absl::StrContains(lines[0], " HTTP/1.")) {
    return Sniffed::kNotProtocol;
  }
  std::optional<std::string> host;
  for (size_t i = 1; i < lines.size(); ++i) {
    const size_t colon = lines[i].find(':');
    if (colon == absl::string_view::npos) return Sniffed::kNotProtocol;
    if (!absl::EqualsIgnoreCase(lines[i].substr(0, colon), "host")) continue;
    // Two Host headers could be read differently by the upstream: refuse.
    if (host) return Sniffed::kNotProtocol;
    absl::string_view value =
        absl::StripAsciiWhitespace(lines[i].substr(colon + 1));
    if (const size_t port = value.rfind(':'); port != absl::string_view::npos) {
      value = value.substr(0, port);
    }
    auto normalized = NormalizeName(value);
    if (!normalized) return Sniffed::kNotProtocol;
    host = *normalized;
  }
  if (!host) return Sniffed::kNoName;
  *name = *host;
  return Sniffed::kName;
}

}  // namespace corral::net
