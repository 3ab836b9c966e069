// SHA-256 for the image store: of an archive stream as it arrives, and of a
// spooled blob checked against the digest its descriptor names.
#ifndef CORRAL_DAEMON_IMAGES_DIGEST_H_
#define CORRAL_DAEMON_IMAGES_DIGEST_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

struct evp_md_ctx_st;

namespace corral::daemon {

// Incremental SHA-256 (OpenSSL). A failure inside OpenSSL is remembered and
// reported by HexDigest.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view data);
  // Lowercase hex of the digest; the object is spent afterwards.
  [[nodiscard]] absl::StatusOr<std::string> HexDigest();

 private:
  struct Free {
    void operator()(struct evp_md_ctx_st* context) const;
  };
  std::unique_ptr<struct evp_md_ctx_st, Free> context_;
  bool ok_ = false;
};

struct FileDigest {
  uint64_t size = 0;
  // Lowercase hex.
  std::string sha256;
};

// Size and SHA-256 of what `fd` holds, read from offset 0 (pread: the
// file offset is left alone).
[[nodiscard]] absl::StatusOr<FileDigest> DigestFile(int fd);

// True for 64 lowercase hex digits, the form of a SHA-256 in OCI digests.
[[nodiscard]] bool IsSha256Hex(std::string_view text);

}  // namespace corral::daemon

#endif  // CORRAL_DAEMON_IMAGES_DIGEST_H_
