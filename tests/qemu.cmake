# Tests of the qemu runtime (backends/qemu).
if(NOT TARGET corral_qemu_core)
  return()
endif()
find_package(LibArchive REQUIRED)
corral_test(NAME qemu_core_test
  SOURCES unit/qemu_core_test.cc
  LIBS corral_qemu_core LibArchive::LibArchive
  LABELS unit qemu)

# What only a VM gives, through the real daemon, CLI and QEMU.
corral_test(NAME qemu_vm_test
  SOURCES integration/qemu_vm_test.cc
  LIBS corral_daemon_harness
  LABELS integration qemu)
add_dependencies(qemu_vm_test corrald corral corral-agent corral_qemu_plugin)

# The firecracker runtime (backends/firecracker) and the FAKES of Firecracker
# and its jailer it is tested against (tests/fakes/firecracker).
if(TARGET corral_firecracker_plugin)
  corral_test(NAME firecracker_fake_test
    SOURCES integration/firecracker_fake_test.cc
    LIBS corral_daemon_harness
    LABELS integration firecracker-fake)
  add_dependencies(firecracker_fake_test corrald corral corral-agent
    corral_firecracker_plugin fake_firecracker fake_jailer)
  corral_test(NAME firecracker_settings_test
    SOURCES unit/firecracker_settings_test.cc
    LIBS corral_firecracker_core
    LABELS unit firecracker)
endif()
