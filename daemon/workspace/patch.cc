#include "daemon/workspace/patch.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "corral/status_macros.h"

namespace corral::workspace {
namespace {

constexpr size_t kMaxFiles = 10000;

absl::Status Bad(size_t line, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("patch line ", line, ": ", why));
}

// A path of a ---/+++ line: "/dev/null" gives "", git's a/ or b/ prefix
// and a trailing tab (diff -u's timestamp) go.
absl::StatusOr<std::string> PatchPath(absl::string_view text, size_t line,
                                      bool git) {
  text = text.substr(0, text.find('\t'));
  if (text == "/dev/null") return std::string();
  if (git || absl::StartsWith(text, "a/") || absl::StartsWith(text, "b/")) {
    if (!absl::ConsumePrefix(&text, "a/"))
      (void)absl::ConsumePrefix(&text, "b/");
  }
  if (text.empty() || text.front() == '/' || text.size() > 4096 ||
      text.find('\0') != absl::string_view::npos) {
    return Bad(line, absl::StrCat("bad path '", text.substr(0, 200),
                                  "': paths are relative to /workspace"));
  }
  for (absl::string_view part : absl::StrSplit(text, '/')) {
    if (part == "..") {
      return Bad(line, absl::StrCat("path '", text.substr(0, 200),
                                    "' climbs out of /workspace"));
    }
  }
  return std::string(text);
}

// "@@ -l[,s] +l[,s] @@ ...".
bool ParseHunkHeader(absl::string_view text, PatchHunk* hunk) {
  if (!absl::ConsumePrefix(&text, "@@ -")) return false;
  const size_t end = text.find(" @@");
  if (end == absl::string_view::npos) return false;
  const std::vector<absl::string_view> ranges =
      absl::StrSplit(text.substr(0, end), " +");
  if (ranges.size() != 2) return false;
  auto range = [](absl::string_view r, uint64_t* start, uint64_t* count) {
    const std::vector<absl::string_view> parts = absl::StrSplit(r, ',');
    *count = 1;
    return (parts.size() == 1 || parts.size() == 2) &&
           absl::SimpleAtoi(parts[0], start) &&
           (parts.size() == 1 || absl::SimpleAtoi(parts[1], count)) &&
           *start < (uint64_t{1} << 40) && *count < (uint64_t{1} << 40);
  };
  return range(ranges[0], &hunk->old_start, &hunk->old_count) &&
         range(ranges[1], &hunk->new_start, &hunk->new_count);
}

}  // namespace

absl::StatusOr<std::vector<FilePatch>> ParsePatch(absl::string_view text) {
  std::vector<absl::string_view> lines = absl::StrSplit(text, '\n');
  if (!lines.empty() && lines.back().empty()) lines.pop_back();
  std::vector<FilePatch> files;
  bool git = false;       // inside a "diff --git" section
  uint32_t git_mode = 0;  // its new file mode / new mode
  bool git_deleted = false;
  for (size_t i = 0; i < lines.size(); ++i) {
    absl::string_view line = lines[i];
    if (absl::EndsWith(line, "\r")) line.remove_suffix(1);
    const size_t number = i + 1;
    if (absl::StartsWith(line, "diff --git ")) {
      git = true;
      git_mode = 0;
      git_deleted = false;
      continue;
    }
    if (absl::StartsWith(line, "new file mode ") ||
        absl::StartsWith(line, "new mode ")) {
      uint32_t mode = 0;  // octal
      for (char c : line.substr(line.rfind(' ') + 1)) {
        if (c < '0' || c > '7') return Bad(number, "bad mode");
        mode = mode * 8 + static_cast<uint32_t>(c - '0');
      }
      git_mode = mode & 07777;
      continue;
    }
    if (absl::StartsWith(line, "deleted file mode ")) {
      git_deleted = true;
      continue;
    }
    if (absl::StartsWith(line, "rename from ") ||
        absl::StartsWith(line, "copy from ")) {
      return Bad(number,
                 "renames and copies are not supported: give the "
                 "new file whole and delete the old one");
    }
    if (absl::StartsWith(line, "GIT binary patch") ||
        (absl::StartsWith(line, "Binary files ") &&
         absl::EndsWith(line, " differ"))) {
      return Bad(number, "binary patches are not supported");
    }
    if (!absl::StartsWith(line, "--- ")) continue;  // index, mode, text
    if (i + 1 >= lines.size() || !absl::StartsWith(lines[i + 1], "+++ ")) {
      return Bad(number, "a '--- ' line without its '+++ ' line");
    }
    if (files.size() >= kMaxFiles) {
      return Bad(number, absl::StrCat("more than ", kMaxFiles, " files"));
    }
    FilePatch file;
    absl::string_view next = lines[i + 1];
    if (absl::EndsWith(next, "\r")) next.remove_suffix(1);
    ASSIGN_OR_RETURN(file.old_path, PatchPath(line.substr(4), number, git));
    ASSIGN_OR_RETURN(file.new_path, PatchPath(next.substr(4), number + 1, git));
    if (file.old_path.empty() && file.new_path.empty()) {
      return Bad(number, "both sides are /dev/null");
    }
    if (!file.old_path.empty() && !file.new_path.empty() &&
        file.old_path != file.new_path) {
      return Bad(number,
                 absl::StrCat("'", file.old_path, "' and '", file.new_path,
                              "' differ: renames are not supported"));
    }
    if (git_deleted && !file.new_path.empty()) {
      return Bad(number, "a deleted file whose new side is not /dev/null");
    }
    file.new_mode = git_mode;
    i += 2;
    // Its hunks.
    while (i < lines.size() && absl::StartsWith(lines[i], "@@ ")) {
      PatchHunk hunk;
      absl::string_view header = lines[i];
      if (absl::EndsWith(header, "\r")) header.remove_suffix(1);
      if (!ParseHunkHeader(header, &hunk)) {
        return Bad(i + 1, "bad hunk header");
      }
      hunk.header = std::string(header.substr(0, header.find(" @@") + 3));
      ++i;
      uint64_t old_seen = 0, new_seen = 0;
      while (old_seen < hunk.old_count || new_seen < hunk.new_count ||
             (i < lines.size() && absl::StartsWith(lines[i], "\\"))) {
        if (i >= lines.size()) {
          return Bad(
              i, absl::StrCat("hunk ", hunk.header, " ends before its counts"));
        }
        absl::string_view body = lines[i];
        if (absl::EndsWith(body, "\r")) body.remove_suffix(1);
        ++i;
        if (absl::StartsWith(body, "\\")) {  // "\ No newline at end of file"
          if (hunk.lines.empty()) return Bad(i, "misplaced '\\' line");
          const char last = hunk.lines.back()[0];
          if (last != '+') hunk.old_ends_without_newline = true;
          if (last != '-') hunk.new_ends_without_newline = true;
          continue;
        }
        // An empty line in a hunk is context whose space an editor ate.
        const char mark = body.empty() ? ' ' : body[0];
        const absl::string_view rest = body.empty() ? body : body.substr(1);
        if (mark == ' ') {
          ++old_seen;
          ++new_seen;
        } else if (mark == '-') {
          ++old_seen;
        } else if (mark == '+') {
          ++new_seen;
        } else {
          return Bad(i, absl::StrCat("unexpected line in hunk ", hunk.header));
        }
        if (old_seen > hunk.old_count || new_seen > hunk.new_count) {
          return Bad(i, absl::StrCat("hunk ", hunk.header,
                                     " has more lines than it says"));
        }
        hunk.lines.push_back(absl::StrCat(std::string(1, mark), rest));
      }
      file.hunks.push_back(std::move(hunk));
    }
    --i;  // the loop's ++i
    if (file.hunks.empty() && file.new_mode == 0 && !file.deletes() &&
        !file.creates()) {
      return Bad(number, absl::StrCat("no hunk for ", file.path()));
    }
    files.push_back(std::move(file));
  }
  if (files.empty()) {
    return absl::InvalidArgumentError(
        "not a unified diff: no '--- '/'+++ ' file header found");
  }
  return files;
}

absl::StatusOr<std::optional<std::string>> ApplyFilePatch(
    const FilePatch& patch, const std::optional<std::string>& content) {
  const std::string& path = patch.path();
  if (patch.creates() && content.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": the patch creates it, but it exists"));
  }
  if (!patch.creates() && !content.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": no such file to patch"));
  }
  std::vector<std::string> lines;
  bool final_newline = true;
  if (content.has_value() && !content->empty()) {
    lines = absl::StrSplit(*content, '\n');
    if (lines.back().empty()) {
      lines.pop_back();
    } else {
      final_newline = false;
    }
  }
  size_t floor = 0;    // hunks apply in order, without overlapping
  int64_t offset = 0;  // how far earlier hunks moved the lines
  int hunk_number = 0;
  for (const PatchHunk& hunk : patch.hunks) {
    ++hunk_number;
    std::vector<std::string> old_lines, new_lines;
    for (const std::string& l : hunk.lines) {
      if (l[0] != '+') old_lines.push_back(l.substr(1));
      if (l[0] != '-') new_lines.push_back(l.substr(1));
    }
    // Where the hunk says, then outward from there.
    const int64_t said = static_cast<int64_t>(hunk.old_start) -
                         (hunk.old_count > 0 ? 1 : 0) + offset;
    auto matches = [&](int64_t at) {
      if (at < static_cast<int64_t>(floor) ||
          at + static_cast<int64_t>(old_lines.size()) >
              static_cast<int64_t>(lines.size())) {
        return false;
      }
      return std::equal(old_lines.begin(), old_lines.end(), lines.begin() + at);
    };
    std::optional<int64_t> found;
    const int64_t span = static_cast<int64_t>(lines.size()) + 1;
    for (int64_t delta = 0; delta <= span && !found; ++delta) {
      if (matches(said - delta)) {
        found = said - delta;
      } else if (delta > 0 && matches(said + delta)) {
        found = said + delta;
      }
    }
    if (!found) {
      std::string where;
      const int64_t at = std::max<int64_t>(said, 0);
      for (size_t k = 0; k < old_lines.size(); ++k) {
        const int64_t n = at + static_cast<int64_t>(k);
        if (n >= static_cast<int64_t>(lines.size())) {
          where = absl::StrCat("; the file ends at line ", lines.size());
          break;
        }
        if (lines[n] != old_lines[k]) {
          where = absl::StrCat(
              "; line ", n + 1, " is '", lines[n].substr(0, 120),
              "', the patch expects '", old_lines[k].substr(0, 120), "'");
          break;
        }
      }
      return absl::FailedPreconditionError(absl::StrCat(
          "hunk ", hunk_number, " of ", path, " (", hunk.header,
          ") does not apply: its lines are not in the file", where));
    }
    const bool at_end = *found + static_cast<int64_t>(old_lines.size()) ==
                        static_cast<int64_t>(lines.size());
    lines.erase(
        lines.begin() + *found,
        lines.begin() + *found + static_cast<int64_t>(old_lines.size()));
    lines.insert(lines.begin() + *found, new_lines.begin(), new_lines.end());
    if (at_end) {
      if (hunk.new_ends_without_newline) {
        final_newline = false;
      } else if (hunk.old_ends_without_newline || !new_lines.empty()) {
        final_newline = true;
      }
    }
    floor = static_cast<size_t>(*found) + new_lines.size();
    offset += static_cast<int64_t>(new_lines.size()) -
              static_cast<int64_t>(old_lines.size()) + (*found - said);
  }
  if (patch.deletes()) {
    if (!lines.empty()) {
      return absl::FailedPreconditionError(absl::StrCat(
          path, ": the patch deletes it, but lines it does not list remain"));
    }
    return std::optional<std::string>();
  }
  std::string result = absl::StrJoin(lines, "\n");
  if (!lines.empty() && final_newline) result += '\n';
  return std::optional<std::string>(std::move(result));
}

}  // namespace corral::workspace
