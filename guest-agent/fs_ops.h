// File operations of corral-agent (agent.proto, "File operations"): Stat,
// List, Read, Write, Mkdir, Remove, Move, Pack and Unpack, each performed with
// blocking I/O by a forked child of the agent. The child's stdin and stdout
// carry length-prefixed FsRecords (guest-agent/wire/fs_record_codec.h); on
// failure one line goes to stderr. Uses only libc and protobuf-lite, so it
// links into the static agent.
#ifndef CORRAL_GUEST_AGENT_FS_OPS_H_
#define CORRAL_GUEST_AGENT_FS_OPS_H_

#include <string>

#include "corral/agent/v1/agent.pb.h"

namespace corral::agent {

// Where relative request paths are resolved.
inline constexpr char kWorkspaceDir[] = "/workspace";

struct FsOptions {
  // Absolute directory that relative request paths are relative to. Tests
  // point it at a temporary directory.
  std::string workspace = kWorkspaceDir;
};

// Performs `request`: reads input records (Write, Unpack) from in_fd until
// EOF, writes output records to out_fd, ending with the FsSummary. On failure
// writes one line naming the offending path or entry to err_fd. Returns the
// exit code for the child: 0 on success, 1 on failure. The fds are blocking;
// none is closed. Never leaves temporary files behind when it fails (unless
// killed).
int RunFsOperation(const v1::FsRequest& request, int in_fd, int out_fd,
                   int err_fd, const FsOptions& options);
int RunFsOperation(const v1::FsRequest& request, int in_fd, int out_fd,
                   int err_fd);

}  // namespace corral::agent

#endif  // CORRAL_GUEST_AGENT_FS_OPS_H_
