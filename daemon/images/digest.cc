#include "daemon/images/digest.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "absl/strings/escaping.h"
#include "corral/status_macros.h"

namespace corral::daemon {

Sha256::Sha256() : context_(EVP_MD_CTX_new()) {
  ok_ = context_ != nullptr &&
        EVP_DigestInit_ex(context_.get(), EVP_sha256(), nullptr) == 1;
}

Sha256::~Sha256() = default;

void Sha256::Free::operator()(EVP_MD_CTX* context) const {
  EVP_MD_CTX_free(context);
}

void Sha256::Update(std::string_view data) {
  ok_ = ok_ && EVP_DigestUpdate(context_.get(), data.data(), data.size()) == 1;
}

absl::StatusOr<std::string> Sha256::HexDigest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (!ok_ || EVP_DigestFinal_ex(context_.get(), digest, &size) != 1) {
    return absl::InternalError("SHA-256 failed");
  }
  ok_ = false;
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), size));
}

absl::StatusOr<FileDigest> DigestFile(int fd) {
  Sha256 sha256;
  FileDigest result;
  std::string buffer(1 << 20, '\0');
  while (true) {
    const ssize_t got = ::pread(fd, buffer.data(), buffer.size(),
                                static_cast<off_t>(result.size));
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("pread");
    }
    if (got == 0) break;
    sha256.Update(std::string_view(buffer.data(), static_cast<size_t>(got)));
    result.size += static_cast<uint64_t>(got);
  }
  ASSIGN_OR_RETURN(result.sha256, sha256.HexDigest());
  return result;
}

bool IsSha256Hex(std::string_view text) {
  if (text.size() != 64) return false;
  for (const char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace corral::daemon
