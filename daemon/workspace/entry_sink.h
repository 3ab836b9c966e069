// The stream of workspace entries that flows between the daemon's pieces:
// an upload being validated, an agent's Pack output, a manifest being
// replayed, a tar being written. It mirrors the agent's FsRecord stream.
#ifndef CORRAL_DAEMON_WORKSPACE_ENTRY_SINK_H_
#define CORRAL_DAEMON_WORKSPACE_ENTRY_SINK_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "corral/agent/v1/agent.pb.h"
#include "daemon/images/tar_stream.h"

namespace corral::daemon::workspace {

// Receives entries in stream order. A REGULAR entry is followed by exactly
// entry.size() bytes of data in all, in chunks of at most 64 KiB (none for
// an empty file); other types have no data. An error from the sink stops
// the producer, which returns it.
class EntrySink {
 public:
  virtual ~EntrySink() = default;
  virtual absl::Status OnEntry(const corral::agent::v1::FsEntry& entry) = 0;
  virtual absl::Status OnData(std::string_view data) = 0;
};

// Forwards everything to two sinks, first to `first`: e.g. an upload goes to
// the agent and into a ManifestBuilder at once. Owns neither.
class TeeSink : public EntrySink {
 public:
  TeeSink(EntrySink* first, EntrySink* second)
      : first_(first), second_(second) {}
  absl::Status OnEntry(const corral::agent::v1::FsEntry& entry) override;
  absl::Status OnData(std::string_view data) override;

 private:
  EntrySink* first_;
  EntrySink* second_;
};

// The byte streams clients upload, as image imports read them too.
using ChunkReader = daemon::ChunkReader;

}  // namespace corral::daemon::workspace

#endif  // CORRAL_DAEMON_WORKSPACE_ENTRY_SINK_H_
