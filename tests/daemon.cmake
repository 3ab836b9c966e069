if(NOT TARGET corrald)
  return()
endif()
# Tests of corrald as a whole: the real daemon, the real CLI, real sandboxes.
add_library(corral_daemon_harness STATIC integration/daemon_harness.cc)
target_link_libraries(corral_daemon_harness PUBLIC corral::api_proto gRPC::grpc++)
target_compile_definitions(corral_daemon_harness PRIVATE
  CORRAL_BINARY_DIR="${CMAKE_BINARY_DIR}")

corral_test(NAME daemon_unit_test
  SOURCES unit/daemon_spec_test.cc unit/output_log_test.cc
    unit/daemon_instance_test.cc
  LIBS corral::daemon_core
  LABELS unit)

# The egress path's parsers and policy: allowlists, refused ranges, SNI,
# Host, DNS messages.
corral_test(NAME egress_policy_test
  SOURCES unit/egress_policy_test.cc
  LIBS corral::net
  LABELS unit)

# Secrets: requests rewritten as they stream, the sandbox's CA and TLS
# terminated with it, over socket pairs.
corral_test(NAME secrets_test
  SOURCES unit/secrets_test.cc
  LIBS corral::net OpenSSL::SSL OpenSSL::Crypto
  LABELS unit)

# corral mcp over stdio, and the official MCP TypeScript SDK driving it
# (tests/js; Node.js 20).
corral_test(NAME mcp_test
  SOURCES integration/mcp_test.cc
  LIBS corral_daemon_harness corral_mcp nlohmann_json::nlohmann_json
  LABELS integration mcp)
add_dependencies(mcp_test corrald corral corral-mcp corral-agent)

# corral e2b, and E2B's JS SDK driving it (tests/js; Node.js 20; the
# e2b-base image that tests/run.sh builds).
corral_test(NAME e2b_test
  SOURCES integration/e2b_test.cc
  LIBS corral_daemon_harness
  LABELS integration e2b)
add_dependencies(e2b_test corrald corral corral-e2b corral-agent)

# The gateway's parts: Connect's envelopes and codes, its config, paths and
# envd's entries.
corral_test(NAME e2b_unit_test
  SOURCES unit/e2b_gateway_test.cc
  LIBS corral_e2b
  LABELS unit e2b)

corral_test(NAME daemon_integration_test
  SOURCES integration/daemon_cli_test.cc integration/daemon_lifecycle_test.cc
  LIBS corral_daemon_harness
  LABELS integration)

corral_test(NAME daemon_security_test
  SOURCES security/daemon_isolation_test.cc security/daemon_input_test.cc
    security/daemon_trust_test.cc security/daemon_quota_test.cc
  LIBS corral_daemon_harness
  LABELS security)

# kill -9 of the daemon while its helpers run, and restarts at once.
corral_test(NAME daemon_kill_test
  SOURCES integration/daemon_kill_test.cc
  LIBS corral_daemon_harness
  LABELS integration)

# Everything the daemon tests run must be built first.
foreach(t daemon_integration_test daemon_security_test daemon_kill_test)
  add_dependencies(${t} corrald corral corral-agent)
endforeach()

# Workspaces through the API (seed, files, sync, export, diff, snapshots).
# Files.WatchDirectory: inotify in the sandbox, through the daemon.
corral_test(NAME watch_api_test
  SOURCES integration/watch_api_test.cc
  LIBS corral_daemon_harness
  LABELS integration)
add_dependencies(watch_api_test corrald corral corral-agent)

corral_test(NAME workspace_api_test
  SOURCES integration/workspace_api_test.cc
  LIBS corral_daemon_harness LibArchive::LibArchive
  LABELS integration)
add_dependencies(workspace_api_test corrald corral corral-agent)

# 1 GiB through sync and export with the daemon's memory flat.
corral_test(NAME workspace_large_test
  SOURCES integration/workspace_large_test.cc
  LIBS corral_daemon_harness LibArchive::LibArchive
  LABELS integration large)
add_dependencies(workspace_large_test corrald corral corral-agent)

# The workspace workflow through the CLI.
corral_test(NAME workspace_cli_test
  SOURCES integration/workspace_cli_test.cc
  LIBS corral_daemon_harness
  LABELS integration)
add_dependencies(workspace_cli_test corrald corral corral-agent)

# Shells: a real pty in a real sandbox, through the API.
corral_test(NAME shell_api_test
  SOURCES integration/shell_api_test.cc
  LIBS corral_daemon_harness
  LABELS integration shells)
add_dependencies(shell_api_test corrald corral corral-agent)

# corral shell/attach in a real terminal (tmux).
corral_test(NAME shell_cli_test
  SOURCES integration/shell_cli_test.cc
  LIBS corral_daemon_harness
  LABELS integration shells)
add_dependencies(shell_cli_test corrald corral corral-agent)

# Background processes through the API, and processes and shells surviving
# kill -9 and restarts of the daemon.
corral_test(NAME process_api_test
  SOURCES integration/process_api_test.cc
  LIBS corral_daemon_harness
  LABELS integration shells)
add_dependencies(process_api_test corrald corral corral-agent)

# corral exec -d, ps, attach and kill, across a kill -9 of the daemon.
corral_test(NAME process_cli_test
  SOURCES integration/process_cli_test.cc
  LIBS corral_daemon_harness
  LABELS integration shells)
add_dependencies(process_cli_test corrald corral corral-agent)
