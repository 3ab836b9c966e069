// Incremental SHA-256 (OpenSSL EVP) with a lowercase hex result: the names of
// the content store's objects.
#ifndef CORRAL_DAEMON_WORKSPACE_SHA256_H_
#define CORRAL_DAEMON_WORKSPACE_SHA256_H_

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace corral::daemon::workspace {

class Sha256 {
 public:
  Sha256();
  void Update(std::string_view data);
  // Ends the digest; the object cannot be updated afterwards.
  [[nodiscard]] absl::StatusOr<std::string> HexDigest();

 private:
  struct Free {
    void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> context_;
  bool ok_ = false;
};

// True for 64 lowercase hex digits, the only names objects have.
[[nodiscard]] bool IsSha256Hex(std::string_view text);

}  // namespace corral::daemon::workspace

#endif  // CORRAL_DAEMON_WORKSPACE_SHA256_H_
