# Tests of the apple runtime: its side of Apple's `container` CLI alone
# (unit), and the plugin through the real daemon and CLI against the FAKE
# `container` of tests/fakes/apple (integration, label apple-fake).
if(NOT TARGET corral_apple_plugin)
  return()
endif()
find_package(nlohmann_json CONFIG REQUIRED)

corral_test(NAME apple_cli_test
  SOURCES unit/apple_cli_test.cc
  LIBS corral_apple_core nlohmann_json::nlohmann_json
  LABELS unit apple)

# Through the real daemon and CLI, on the fake `container`
# (tests/fakes/apple; its target is defined later, which add_dependencies
# allows).
corral_test(NAME apple_fake_test
  SOURCES integration/apple_fake_test.cc
  LIBS corral_daemon_harness nlohmann_json::nlohmann_json
  LABELS integration apple-fake)
add_dependencies(apple_fake_test corrald corral corral-agent
  corral_apple_plugin fake_container)
