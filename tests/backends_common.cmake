# Tests of the pieces the runtimes share (backends/common).
corral_test(NAME workspace_disk_test
  SOURCES unit/workspace_disk_test.cc
  LIBS corral_runtime_shared
  LABELS unit)

corral_test(NAME subprocess_test
  SOURCES unit/subprocess_test.cc
  LIBS corral_runtime_shared
  LABELS unit)

# The platform layer (common/corral/platform.h): its Linux half.
corral_test(NAME platform_test
  SOURCES unit/platform_test.cc
  LIBS corral_platform
  LABELS unit)
