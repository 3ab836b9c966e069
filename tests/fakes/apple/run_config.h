// What `container run` makes of its flags before the container exists:
// apple/container's Utility.containerConfigFromFlags and the Parser it
// calls (process, resources, mounts, networks, labels, published sockets,
// capabilities, masked and read-only paths), with their checks, their
// order and their messages. The result is a ContainerConfiguration as
// JSON. Where the fake models less than the real CLI, FailFake() says so.
#ifndef CORRAL_TESTS_FAKES_APPLE_RUN_CONFIG_H_
#define CORRAL_TESTS_FAKES_APPLE_RUN_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/fakes/apple/fake_util.h"
#include "tests/fakes/apple/image_store.h"

namespace corral::fake_apple {

// Measurement.parse then a conversion to whole MiB (Parser.
// memoryStringAsMiB): binary units, a bare number is bytes. Fail()s with
// "invalid size" or "invalid symbol: <unit>".
int64_t MemoryStringAsMiB(const std::string& text);
// Measurement.parse converted to bytes (--shm-size).
uint64_t MemoryStringAsBytes(const std::string& text);

// CapabilityName's cases, in the kernel's order (CAP_CHOWN is 0).
const std::vector<std::string>& AllCapabilityNames();

// LinuxContainer.defaultMaskedPaths() and defaultReadonlyPaths() (0.40.1).
const std::vector<std::string>& DefaultMaskedPaths();
const std::vector<std::string>& DefaultReadonlyPaths();

// ManagedContainer.nameValid.
bool ContainerNameValid(const std::string& name);

// Utility.containerConfigFromFlags from the image's OCI config on: `id`
// and `image` are already resolved. `image_config` is the host variant's
// OCI config (may be null).
nlohmann::json ContainerConfigFromFlags(const std::string& id,
                                        const StoredImage& image,
                                        const nlohmann::json& image_config,
                                        const Parsed& flags);

// Parser.allEnv for exec: `-e` and `--env-file` values.
std::vector<std::string> ExtraEnvironment(const Parsed& flags);
// Parser.user: the ProcessConfiguration.User and extra groups from -u,
// --uid and --gid over `default_user`.
nlohmann::json ProcessUser(const Parsed& flags,
                           const nlohmann::json& default_user,
                           nlohmann::json* extra_groups);

}  // namespace corral::fake_apple

#endif  // CORRAL_TESTS_FAKES_APPLE_RUN_CONFIG_H_
