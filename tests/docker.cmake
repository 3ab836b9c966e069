# Tests of the docker runtime: the HTTP client against fake servers, the
# container create body and the handle state (unit), and the real docker.so
# through its C ABI against the private engines of tests/engines.sh
# (integration; each test exits 77, shown as skipped, when its engine does
# not answer).

# Nothing to test when the docker plugin is not part of this build.
if(NOT TARGET corral_docker_plugin)
  return()
endif()
# The integration test reads the engine's JSON answers itself.
find_package(nlohmann_json CONFIG REQUIRED)

corral_test(NAME docker_http_test
  SOURCES unit/docker_http_test.cc
  LIBS corral::docker_core
  LABELS unit docker)

corral_test(NAME docker_spec_test
  SOURCES unit/docker_spec_test.cc
  LIBS corral::docker_core
  LABELS unit docker)

# One binary, registered per engine: CORRAL_DOCKER_TEST_SOCKET names the
# engine's socket.
add_executable(docker_backend_test integration/docker_backend_test.cc)
target_link_libraries(docker_backend_test PRIVATE corral_catch_main
  corral::backend_proto corral::backend_abi corral::agent_proto corral::common
  nlohmann_json::nlohmann_json ${CMAKE_DL_LIBS})
target_compile_definitions(docker_backend_test PRIVATE
  CORRAL_BINARY_DIR="${CMAKE_BINARY_DIR}"
  CORRAL_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
corral_sanitize(docker_backend_test)
set_target_properties(docker_backend_test PROPERTIES
  RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
add_dependencies(docker_backend_test corral_docker_plugin corral-agent)
foreach(engine docker podman)
  catch_discover_tests(docker_backend_test
    TEST_PREFIX "${engine}:"
    TEST_LIST docker_backend_${engine}_TESTS
    OUTPUT_SUFFIX "-${engine}"
    PROPERTIES
      ENVIRONMENT "CORRAL_DOCKER_TEST_SOCKET=/run/corral-test-engines/${engine}.sock"
      SKIP_RETURN_CODE 77
      TIMEOUT 300)
  set(label_file "${CMAKE_CURRENT_BINARY_DIR}/docker_backend_${engine}_labels.cmake")
  file(WRITE "${label_file}"
    "if(docker_backend_${engine}_TESTS)\n"
    "  set_tests_properties(\${docker_backend_${engine}_TESTS} PROPERTIES "
    "LABELS \"integration;docker;docker-${engine}\")\n"
    "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES "${label_file}")
endforeach()
