// The E2B gateway's settings: its API keys, its templates (each a Corral
// image on a runtime), limits. From `--config FILE` (TOML) and flags; see
// docs/e2b.md.
#ifndef CORRAL_CLIENT_E2B_CONFIG_H_
#define CORRAL_CLIENT_E2B_CONFIG_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace corral::e2b {

// What `Sandbox.create(templateID)` makes.
struct Template {
  std::string image;    // a Corral image ("" is the host image)
  std::string runtime;  // "" is the caller's default runtime
  uint32_t cpu_millis = 0;
  uint64_t memory_mib = 0;
  uint64_t disk_mib = 0;
  // E2B's default user and its home, the working directory of commands and
  // the base of relative paths.
  std::string user = "user";
  // envd's default working directory: the cwd of commands that name none
  // and the path of requests that give none; "" is the user's home.
  std::string workdir;
};

struct Config {
  std::vector<std::string> api_keys;
  std::map<std::string, Template> templates;
  // A sandbox's timeout when the create request gives none, in seconds.
  uint64_t default_timeout_seconds = 300;
  // Largest upload (POST /files), in bytes.
  uint64_t max_upload_bytes = 100ull << 20;
  // Where the key that signs sandboxes' access tokens is kept.
  std::string state_dir;
  // Threads serving HTTP: each followed command, PTY or watch holds one
  // while it runs, and each idle kept-alive connection for up to 5 s.
  int threads = 256;
};

// The built-in templates: "base", the image that
// deploy/images/build-e2b-base.sh builds, imported as "e2b-base".
Config DefaultConfig();

// Reads a TOML file over `config`: api_keys, default_timeout_seconds,
// max_upload_mib, threads, state_dir and [templates.NAME] tables (image,
// runtime, cpu_millis, memory_mib, disk_mib, user, workdir). Unknown keys are
// errors.
absl::Status LoadConfigFile(const std::string& path, Config& config);

// The form of key E2B's SDKs use: "e2b_" and at least 20 lowercase hex
// digits.
absl::Status ValidateApiKey(const std::string& key);

}  // namespace corral::e2b

#endif  // CORRAL_CLIENT_E2B_CONFIG_H_
