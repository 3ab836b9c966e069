if(NOT TARGET corrald)
  return()
endif()
# The conformance suite: what Corral promises on every runtime, checked
# through the real daemon and CLI. One binary, registered once per runtime
# variant; the variant reaches it in CORRAL_CONFORMANCE_VARIANT. A variant
# whose runtime cannot run on this machine exits with 77 from every test,
# which CTest shows as skipped ("Not Run") with the reason in the output.
#   ctest -L conformance            every variant
#   ctest -L conformance-oci-runc   one variant
add_executable(conformance_test
  conformance/conformance.cc
  conformance/conformance_test.cc
  conformance/guarantees_test.cc
  conformance/workflow_test.cc
  conformance/recovery_test.cc
  conformance/network_test.cc)
target_link_libraries(conformance_test PRIVATE
  corral_catch_main corral_daemon_harness corral_fake_internet)
target_compile_definitions(conformance_test PRIVATE
  CORRAL_BINARY_DIR="${CMAKE_BINARY_DIR}"
  CORRAL_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
corral_sanitize(conformance_test)
set_target_properties(conformance_test PROPERTIES
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

# Everything the suite runs must be built first; the plugins only once the
# components that make them exist.
add_dependencies(conformance_test corrald corral corral-agent agent_socket_probe
  net_probe https_probe)
foreach(plugin corral_linux_plugin corral_oci_plugin corral_docker_plugin
               corral_qemu_plugin corral_firecracker_plugin fake_firecracker
               fake_jailer corral_apple_plugin fake_container
               corral_tart_plugin fake_tart)
  if(TARGET ${plugin})
    add_dependencies(conformance_test ${plugin})
  endif()
endforeach()

set(CORRAL_CONFORMANCE_VARIANTS linux oci-runc oci-crun docker podman qemu
  firecracker-fake apple-fake tart-fake)
foreach(variant IN LISTS CORRAL_CONFORMANCE_VARIANTS)
  string(MAKE_C_IDENTIFIER "${variant}" variant_id)
  # catch_discover_tests names its generated files after a hash of some of
  # its arguments, not including TEST_PREFIX or PROPERTIES; OUTPUT_SUFFIX
  # (unused without OUTPUT_DIR) makes the hash, and so the files, differ per
  # variant. The prefix has no trailing space: it reaches CatchAddTests
  # through `cmake -D`, which strips it. Test names must hold no ';' (CMake
  # would split them).
  catch_discover_tests(conformance_test
    TEST_PREFIX "${variant}:"
    TEST_LIST conformance_${variant_id}_TESTS
    OUTPUT_SUFFIX "-${variant}"
    PROPERTIES
      ENVIRONMENT "CORRAL_CONFORMANCE_VARIANT=${variant}"
      SKIP_RETURN_CODE 77
      TIMEOUT 300)
  # Labels are a list, which catch_discover_tests would split: set them
  # afterwards, as corral_test does.
  set(label_file
    "${CMAKE_CURRENT_BINARY_DIR}/conformance_${variant_id}_labels.cmake")
  file(WRITE "${label_file}"
    "if(conformance_${variant_id}_TESTS)\n"
    "  set_tests_properties(\${conformance_${variant_id}_TESTS} PROPERTIES "
    "LABELS \"conformance;conformance-${variant}\")\n"
    "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${label_file}")
endforeach()
