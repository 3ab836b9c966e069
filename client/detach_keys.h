// The key sequence that detaches `corral shell` / `corral attach` from a
// shell without ending it (Ctrl-P Ctrl-Q by default, as in Docker), and the
// matcher that finds it in the keystrokes being forwarded.
#ifndef CORRAL_CLIENT_DETACH_KEYS_H_
#define CORRAL_CLIENT_DETACH_KEYS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace corral::cli {

// The default of --detach-keys.
inline constexpr char kDefaultDetachKeys[] = "ctrl-p,ctrl-q";

// Parses Docker's --detach-keys syntax: keys separated by commas, each
// either one printable character ("a") or "ctrl-X" with X one of a-z, @, [,
// \, ], ^, _ (case-insensitive). Returns the bytes the terminal sends for
// them; "" (the empty sequence) disables detaching.
absl::StatusOr<std::string> ParseDetachKeys(absl::string_view text);

// Finds the detach sequence in a stream of keystrokes that arrive in reads
// of any size. A prefix of the sequence at the end of one read is held back
// until the next read shows whether the sequence completes; if it does not,
// the held bytes are forwarded after all, in order.
class DetachMatcher {
 public:
  // `sequence` from ParseDetachKeys; empty never detaches.
  explicit DetachMatcher(std::string sequence)
      : sequence_(std::move(sequence)) {}

  struct Result {
    // What to send to the shell now.
    std::string forward;
    // The sequence completed: detach. Bytes after it are dropped.
    bool detach = false;
  };

  // Feeds one read's worth of keystrokes.
  Result Feed(absl::string_view keys);

  // End of input: the bytes held back, which are not a detach after all.
  std::string Flush();

 private:
  // Matches one keystroke, appending to `forward` whatever turned out to be
  // input; true when it completes the sequence.
  bool Step(char key, std::string& forward);

  const std::string sequence_;
  // How many bytes of sequence_ the latest keystrokes matched.
  size_t matched_ = 0;
};

}  // namespace corral::cli

#endif  // CORRAL_CLIENT_DETACH_KEYS_H_
