# Tests of the agent component: the frame and fs-record codecs, file
# operations in process, the real corral-agent driven through AgentConnection
# (commands and file operations), and a fake hostile agent.
corral_test(NAME agent_wire_test
  SOURCES unit/agent_wire_test.cc
  LIBS corral::agent_wire
  LABELS unit)

corral_test(NAME agent_exec_test
  SOURCES integration/agent_exec_test.cc
  LIBS corral::agent_client
  LABELS integration)
# The test runs the agent binary from the build tree.
add_dependencies(agent_exec_test corral-agent)

corral_test(NAME agent_hostile_test
  SOURCES integration/agent_hostile_test.cc
  LIBS corral::agent_client
  LABELS integration)

# libFuzzer entry point for the frame decoder;
# needs Clang's -fsanitize=fuzzer.
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  # The codec is compiled into the target so that libFuzzer's coverage
  # instrumentation reaches it.
  add_executable(agent_frame_fuzz fuzz/agent_frame_fuzz.cc
    ${PROJECT_SOURCE_DIR}/guest-agent/wire/frame_codec.cc
    ${PROJECT_SOURCE_DIR}/guest-agent/wire/length_prefixed.cc)
  target_link_libraries(agent_frame_fuzz PRIVATE corral::agent_proto)
  target_compile_options(agent_frame_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_options(agent_frame_fuzz PRIVATE -fsanitize=fuzzer,address,undefined)
  set_target_properties(agent_frame_fuzz PROPERTIES
    RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
endif()

# File operations (guest-agent/fs_ops.h) in process, and over the real agent.
corral_test(NAME agent_fs_test
  SOURCES unit/agent_fs_test.cc
  LIBS corral::agent_fs corral::common
  LABELS unit)

corral_test(NAME agent_fs_exec_test
  SOURCES integration/agent_fs_exec_test.cc
  LIBS corral::agent_client
  LABELS integration)
add_dependencies(agent_fs_exec_test corral-agent)

# Commands on a pseudo-terminal (ExecStart.pty) over the real agent.
corral_test(NAME agent_pty_test
  SOURCES integration/agent_pty_test.cc
  LIBS corral::agent_client
  LABELS integration)
add_dependencies(agent_pty_test corral-agent)

# Detached commands (ExecStart.detach_key, Resume) over the real agent in
# listen mode, and the daemon's checks of them against a fake agent.
corral_test(NAME agent_detach_test
  SOURCES integration/agent_detach_test.cc
  LIBS corral::agent_client
  LABELS integration)
add_dependencies(agent_detach_test corral-agent)

# The serial link that carries connections to a VM's agent: its records, and
# both of its ends (host relay and guest link process) in one process.
corral_test(NAME serial_link_test
  SOURCES unit/serial_link_test.cc
  LIBS corral::serial_link
  LABELS unit)

corral_test(NAME link_bridge_test
  SOURCES integration/link_bridge_test.cc
  LIBS corral::serial_link Threads::Threads
  LABELS integration)
