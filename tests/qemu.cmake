# Tests of the qemu runtime (backends/qemu).
if(NOT TARGET corral_qemu_core)
  return()
endif()
find_package(LibArchive REQUIRED)
corral_test(NAME qemu_core_test
  SOURCES unit/qemu_core_test.cc
  LIBS corral_qemu_core LibArchive::LibArchive
  LABELS unit qemu)
