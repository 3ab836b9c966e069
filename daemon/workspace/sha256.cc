#include "daemon/workspace/sha256.h"

#include "absl/strings/escaping.h"

namespace corral::daemon::workspace {

Sha256::Sha256() : context_(EVP_MD_CTX_new()) {
  ok_ = context_ != nullptr &&
        EVP_DigestInit_ex(context_.get(), EVP_sha256(), nullptr) == 1;
}

void Sha256::Update(std::string_view data) {
  ok_ = ok_ && EVP_DigestUpdate(context_.get(), data.data(), data.size()) == 1;
}

absl::StatusOr<std::string> Sha256::HexDigest() {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  if (!ok_ || EVP_DigestFinal_ex(context_.get(), digest, &size) != 1) {
    ok_ = false;
    return absl::InternalError("computing a SHA-256 digest failed");
  }
  ok_ = false;
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), size));
}

bool IsSha256Hex(std::string_view text) {
  if (text.size() != 64) return false;
  for (const char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

}  // namespace corral::daemon::workspace
