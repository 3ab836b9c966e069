#include "daemon/workspace/entry_sink.h"

#include "corral/status_macros.h"

namespace corral::daemon::workspace {

absl::Status TeeSink::OnEntry(const corral::agent::v1::FsEntry& entry) {
  RETURN_IF_ERROR(first_->OnEntry(entry));
  return second_->OnEntry(entry);
}

absl::Status TeeSink::OnData(std::string_view data) {
  RETURN_IF_ERROR(first_->OnData(data));
  return second_->OnData(data);
}

}  // namespace corral::daemon::workspace
