// Line-by-line differences of two texts as unified-diff hunks (Myers'
// O(ND) algorithm with bounded cost), for the workspace patch.
#ifndef CORRAL_DAEMON_WORKSPACE_LINE_DIFF_H_
#define CORRAL_DAEMON_WORKSPACE_LINE_DIFF_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace corral::daemon::workspace {

// Lines of `text`, each with its '\n' (the last one may have none).
[[nodiscard]] std::vector<std::string_view> SplitLines(std::string_view text);

struct LineDiffOptions {
  // Unchanged lines shown around each change; changes closer than twice
  // this share a hunk.
  int context_lines = 3;
  // Past this many inserted plus deleted lines in the part that differs
  // (after common leading and trailing lines), or this much work, the
  // differing part is shown as one replacement: the patch stays correct,
  // only less minimal, and time and memory stay bounded.
  int max_edit_cost = 2000;
  uint64_t max_work = 50'000'000;
  // Like git, follow each hunk header with the nearest line before the hunk
  // that starts with a letter, '_' or '$' (at most 80 bytes, trailing
  // spaces cut): often the enclosing function.
  bool function_names = true;
};

// The hunks ("@@ -a,b +c,d @@" then ' ', '-', '+' lines, each line that has
// no final newline followed by "\ No newline at end of file") that turn
// `before` into `after`; empty when they are equal.
[[nodiscard]] std::string UnifiedHunks(std::string_view before,
                                       std::string_view after,
                                       const LineDiffOptions& options);

}  // namespace corral::daemon::workspace

#endif  // CORRAL_DAEMON_WORKSPACE_LINE_DIFF_H_
