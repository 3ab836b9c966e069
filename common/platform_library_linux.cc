// The platform layer's Linux half: loading a library (corral/platform.h),
// in a file of its own so that the static helpers, which never load one,
// do not link the dynamic loader's calls.
#include <dlfcn.h>

#include <cstdio>

#include "corral/platform.h"

namespace corral::platform {

void* LoadLibraryFromFd(int fd) {
  // The loader opens the path it is given: /proc/self/fd/N is the file.
  char path[64];
  std::snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
  return ::dlopen(path, RTLD_NOW | RTLD_LOCAL);
}

}  // namespace corral::platform
