# Tests of the tart runtime: its side of Tart's CLI alone (unit), and the
# plugin through the real daemon and CLI against the FAKE `tart` of
# tests/fakes/tart (integration, label tart-fake).
if(NOT TARGET corral_tart_plugin)
  return()
endif()

corral_test(NAME tart_cli_test
  SOURCES unit/tart_cli_test.cc
  LIBS corral_tart_core corral_daemon_harness
  LABELS unit tart)

# Through the real daemon and CLI, on the fake `tart` (tests/fakes/tart; its
# target is defined later, which add_dependencies allows).
find_package(nlohmann_json CONFIG REQUIRED)
corral_test(NAME tart_runtime_fake_test
  SOURCES integration/tart_runtime_fake_test.cc
  LIBS corral_daemon_harness nlohmann_json::nlohmann_json
  LABELS integration tart-fake)
add_dependencies(tart_runtime_fake_test corrald corral corral-agent
  corral_tart_plugin corral-tart-launch fake_tart)
