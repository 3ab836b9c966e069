# Tests of the client component.
corral_test(NAME client_test
  SOURCES unit/client_test.cc
  LIBS corral::cli
  LABELS unit client)

corral_test(NAME client_packer_test
  SOURCES unit/client_packer_test.cc
  LIBS corral::cli LibArchive::LibArchive
  LABELS unit client)

# The CLI against an in-process fake corrald (gRPC on a Unix socket).
corral_test(NAME client_stream_test
  SOURCES unit/client_stream_test.cc
  LIBS corral::cli
  LABELS unit client)

# Extraction of hostile archives on the client side (libarchive-built tars).
corral_test(NAME client_extract_test
  SOURCES unit/client_extract_test.cc
  LIBS corral::cli LibArchive::LibArchive
  LABELS unit client)

# The workspace commands (seed, sync, cp, export, diff, logs, snapshots,
# fork, file) against an in-process fake corrald.
corral_test(NAME client_workspace_test
  SOURCES unit/client_workspace_test.cc
  LIBS corral::cli
  LABELS unit client)

# The shell commands (shell, attach, ps, kill, shell-read, shell-write)
# against an in-process fake corrald, partly on a real pseudo-terminal.
corral_test(NAME client_shell_test
  SOURCES unit/client_shell_test.cc
  LIBS corral::cli
  LABELS unit client)

# The background-process commands (exec -d, ps, attach, kill) against an
# in-process fake of corrald's process calls.
corral_test(NAME client_process_test
  SOURCES unit/client_process_test.cc
  LIBS corral::cli
  LABELS unit client)
