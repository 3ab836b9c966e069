#include "client/detach_keys.h"

#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace corral::cli {
namespace {

// The byte a terminal sends for Ctrl-`key`, or -1 when Ctrl has no such key.
int ControlByte(char key) {
  const char upper = absl::ascii_toupper(static_cast<unsigned char>(key));
  // Ctrl clears bit 6 of '@', 'A'..'Z', '[', '\', ']', '^', '_' (0x40-0x5f).
  if (upper >= '@' && upper <= '_') return upper & 0x1f;
  return -1;
}

}  // namespace

absl::StatusOr<std::string> ParseDetachKeys(absl::string_view text) {
  std::string sequence;
  if (text.empty()) return sequence;
  constexpr absl::string_view kCtrl = "ctrl-";
  for (absl::string_view key : absl::StrSplit(text, ',')) {
    const std::string lower = absl::AsciiStrToLower(key);
    if (lower.size() == kCtrl.size() + 1 &&
        absl::string_view(lower).substr(0, kCtrl.size()) == kCtrl) {
      const int byte = ControlByte(key.back());
      if (byte >= 0) {
        sequence.push_back(static_cast<char>(byte));
        continue;
      }
    } else if (key.size() == 1 &&
               absl::ascii_isgraph(static_cast<unsigned char>(key[0]))) {
      sequence.push_back(key[0]);
      continue;
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "--detach-keys: cannot read key '", key,
        "' (expected a character or ctrl-X with X one of a-z @ [ \\ ] ^ _, "
        "separated by commas, e.g. ctrl-p,ctrl-q)"));
  }
  return sequence;
}

bool DetachMatcher::Step(char key, std::string& forward) {
  while (true) {
    if (key == sequence_[matched_]) {
      if (++matched_ < sequence_.size()) return false;
      matched_ = 0;
      return true;
    }
    if (matched_ == 0) {
      forward.push_back(key);
      return false;
    }
    // The held prefix does not continue with `key`: its first byte is input
    // after all, and the rest of it may still begin the sequence (as in
    // "aab" typed as "aaab"), so it is looked at again before `key`. The
    // rest is shorter than the sequence, so it cannot complete it.
    forward.push_back(sequence_[0]);
    const std::string rest = sequence_.substr(1, matched_ - 1);
    matched_ = 0;
    for (const char held : rest) Step(held, forward);
  }
}

DetachMatcher::Result DetachMatcher::Feed(absl::string_view keys) {
  Result result;
  if (sequence_.empty()) {
    result.forward = std::string(keys);
    return result;
  }
  for (const char key : keys) {
    if (Step(key, result.forward)) {
      result.detach = true;
      return result;
    }
  }
  return result;
}

std::string DetachMatcher::Flush() {
  std::string held = sequence_.substr(0, matched_);
  matched_ = 0;
  return held;
}

}  // namespace corral::cli
