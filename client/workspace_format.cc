#include "client/workspace_format.h"

#include <string.h>

#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/format.h"
#include "corral/linux_signals.h"

namespace corral::cli {
namespace {

using corral::v1::ChangeKind;
using corral::v1::FileType;

const char* Boolean(bool value) { return value ? "true" : "false"; }

bool IsSet(const google::protobuf::Timestamp& time) {
  return time.seconds() != 0 || time.nanos() != 0;
}

std::string RelativeOrDash(const google::protobuf::Timestamp& time,
                           int64_t now_seconds) {
  if (!IsSet(time)) return "-";
  return FormatRelative(time.seconds() - now_seconds);
}

std::string Octal(uint32_t mode) { return absl::StrFormat("%04o", mode); }

}  // namespace

ChangeKindLabel LabelOf(ChangeKind kind) {
  switch (kind) {
    case corral::v1::CHANGE_KIND_ADDED:
      return {'A', "added"};
    case corral::v1::CHANGE_KIND_MODIFIED:
      return {'M', "modified"};
    case corral::v1::CHANGE_KIND_DELETED:
      return {'D', "deleted"};
    case corral::v1::CHANGE_KIND_TYPE_CHANGED:
      return {'T', "type_changed"};
    default:
      return {'?', ""};
  }
}

namespace {

// A command line as one readable cell: arguments that need it are quoted
// the way a shell would take them back.
std::string CommandText(const corral::v1::CommandRecord& record) {
  std::vector<std::string> words;
  for (const std::string& arg : record.argv()) {
    const bool plain =
        !arg.empty() && arg.find_first_not_of(
                            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU"
                            "VWXYZ0123456789_-./=:,+@%") == std::string::npos;
    if (plain) {
      words.push_back(EscapeControl(arg));
    } else {
      std::string quoted = "'";
      for (const char c : arg) {
        if (c == '\'') {
          quoted += "'\\''";
        } else {
          quoted += c;
        }
      }
      quoted += "'";
      words.push_back(EscapeControl(quoted));
    }
  }
  return absl::StrJoin(words, " ");
}

std::string ExitText(const corral::v1::CommandRecord& record) {
  if (record.timed_out()) return "timeout";
  if (record.signal() != 0) return SignalName(record.signal());
  return absl::StrCat(record.exit_code());
}

std::string TimestampJson(const google::protobuf::Timestamp& time) {
  return JsonString(IsSet(time) ? FormatTimestamp(time) : "");
}

}  // namespace

std::string EscapeControl(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    const unsigned char byte = static_cast<unsigned char>(c);
    if (byte == '\n') {
      out += "\\n";
    } else if (byte == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7f) {
      absl::StrAppendFormat(&out, "\\x%02x", byte);
    } else {
      out += c;
    }
  }
  return out;
}

std::string SignalName(int signal_number) {
  const char* name = LinuxSignalAbbrev(signal_number);
  if (name == nullptr) return absl::StrCat("SIG", signal_number);
  return absl::StrCat("SIG", name);
}

std::string FormatDuration(uint64_t microseconds) {
  if (microseconds < 1000) return absl::StrCat(microseconds, "us");
  if (microseconds < 1000000) return absl::StrCat(microseconds / 1000, "ms");
  if (microseconds < 60000000) {
    return absl::StrFormat("%.1fs", static_cast<double>(microseconds) / 1e6);
  }
  const uint64_t seconds = microseconds / 1000000;
  if (seconds < 3600) {
    return absl::StrFormat("%dm%02ds", seconds / 60, seconds % 60);
  }
  return absl::StrFormat("%dh%02dm", seconds / 3600, (seconds / 60) % 60);
}

std::string FileTypeName(FileType type) {
  switch (type) {
    case corral::v1::FILE_TYPE_REGULAR:
      return "file";
    case corral::v1::FILE_TYPE_DIRECTORY:
      return "directory";
    case corral::v1::FILE_TYPE_SYMLINK:
      return "symlink";
    case corral::v1::FILE_TYPE_OTHER:
      return "other";
    default:
      return "";
  }
}

std::string ModeString(FileType type, uint32_t mode) {
  std::string out(10, '-');
  switch (type) {
    case corral::v1::FILE_TYPE_DIRECTORY:
      out[0] = 'd';
      break;
    case corral::v1::FILE_TYPE_SYMLINK:
      out[0] = 'l';
      break;
    case corral::v1::FILE_TYPE_OTHER:
      out[0] = '?';
      break;
    default:
      break;
  }
  static constexpr char kLetters[] = "rwxrwxrwx";
  for (int i = 0; i < 9; ++i) {
    if (mode & (0400u >> i)) out[1 + i] = kLetters[i];
  }
  // setuid, setgid, sticky: shown in the execute slots as ls does.
  if (mode & 04000) out[3] = (mode & 0100) ? 's' : 'S';
  if (mode & 02000) out[6] = (mode & 0010) ? 's' : 'S';
  if (mode & 01000) out[9] = (mode & 0001) ? 't' : 'T';
  return out;
}

std::string FormatFileInfo(const corral::v1::FileInfo& info) {
  std::vector<std::pair<std::string, std::string>> rows = {
      {"Path", EscapeControl(info.path())},
      {"Type", FileTypeName(info.type())},
      {"Size", absl::StrCat(info.size(), " (", FormatBytes(info.size()), ")")},
      {"Mode", absl::StrCat(Octal(info.mode()), " (",
                            ModeString(info.type(), info.mode()), ")")},
      {"Modified", FormatTimestamp(info.modified_at())}};
  if (info.type() == corral::v1::FILE_TYPE_SYMLINK) {
    rows.emplace_back("Link target", EscapeControl(info.link_target()));
  }
  std::string out;
  for (const auto& [key, value] : rows) {
    absl::StrAppend(&out, key, ":", std::string(13 - key.size(), ' '), value,
                    "\n");
  }
  return out;
}

std::string FileInfoJson(const corral::v1::FileInfo& info) {
  return absl::StrCat("{\"path\":", JsonString(info.path()),
                      ",\"type\":", JsonString(FileTypeName(info.type())),
                      ",\"size\":", info.size(), ",\"mode\":", info.mode(),
                      ",\"modified_at\":", TimestampJson(info.modified_at()),
                      ",\"link_target\":", JsonString(info.link_target()), "}");
}

std::string FormatListing(const corral::v1::ListDirectoryResponse& response,
                          int64_t now_seconds) {
  std::vector<std::vector<std::string>> rows;
  for (const corral::v1::FileInfo& entry : response.entries()) {
    std::string name = EscapeControl(entry.path());
    if (entry.type() == corral::v1::FILE_TYPE_SYMLINK) {
      absl::StrAppend(&name, " -> ", EscapeControl(entry.link_target()));
    }
    rows.push_back({ModeString(entry.type(), entry.mode()),
                    entry.type() == corral::v1::FILE_TYPE_DIRECTORY
                        ? "-"
                        : FormatBytes(entry.size()),
                    RelativeOrDash(entry.modified_at(), now_seconds), name});
  }
  return FormatTable({"MODE", "SIZE", "MODIFIED", "NAME"}, rows);
}

std::string ListingJson(const corral::v1::ListDirectoryResponse& response) {
  std::vector<std::string> entries;
  for (const corral::v1::FileInfo& entry : response.entries()) {
    entries.push_back(FileInfoJson(entry));
  }
  return absl::StrCat("{\"entries\":[", absl::StrJoin(entries, ","),
                      "],\"truncated\":", Boolean(response.truncated()), "}\n");
}

std::string FormatNameStatus(const corral::v1::DiffWorkspaceResponse& diff) {
  std::string out;
  for (const corral::v1::FileChange& change : diff.changes()) {
    absl::StrAppend(&out, std::string(1, LabelOf(change.kind()).letter), "\t",
                    EscapeControl(change.path()), "\n");
  }
  return out;
}

std::string FormatDiffStat(const corral::v1::DiffWorkspaceResponse& diff) {
  std::string out;
  for (const corral::v1::FileChange& change : diff.changes()) {
    std::vector<std::string> notes;
    if (change.kind() == corral::v1::CHANGE_KIND_TYPE_CHANGED) {
      notes.push_back(absl::StrCat(FileTypeName(change.old_type()), " -> ",
                                   FileTypeName(change.type())));
    }
    if (change.kind() == corral::v1::CHANGE_KIND_MODIFIED &&
        change.old_mode() != change.new_mode()) {
      notes.push_back(absl::StrCat("mode ", Octal(change.old_mode()), " -> ",
                                   Octal(change.new_mode())));
    }
    if (change.binary()) notes.push_back("binary");
    if (change.type() == corral::v1::FILE_TYPE_REGULAR &&
        change.content_changed()) {
      notes.push_back(absl::StrCat(FormatBytes(change.old_size()), " -> ",
                                   FormatBytes(change.new_size())));
    }
    absl::StrAppend(&out, std::string(1, LabelOf(change.kind()).letter), "  ",
                    EscapeControl(change.path()));
    if (!notes.empty())
      absl::StrAppend(&out, "  (", absl::StrJoin(notes, ", "), ")");
    out += "\n";
  }
  const corral::v1::DiffCounts& counts = diff.counts();
  absl::StrAppend(&out, diff.changes_size(), " changed: ", counts.added(),
                  " added, ", counts.modified(), " modified, ",
                  counts.deleted(), " deleted, ", counts.type_changed(),
                  " type changed\n");
  return out;
}

std::string DiffJson(const corral::v1::DiffWorkspaceResponse& diff) {
  std::vector<std::string> changes;
  for (const corral::v1::FileChange& change : diff.changes()) {
    changes.push_back(absl::StrCat(
        "{\"path\":", JsonString(change.path()),
        ",\"kind\":", JsonString(LabelOf(change.kind()).name),
        ",\"type\":", JsonString(FileTypeName(change.type())),
        ",\"old_type\":", JsonString(FileTypeName(change.old_type())),
        ",\"old_mode\":", change.old_mode(),
        ",\"new_mode\":", change.new_mode(),
        ",\"content_changed\":", Boolean(change.content_changed()),
        ",\"binary\":", Boolean(change.binary()), ",\"old_size\":",
        change.old_size(), ",\"new_size\":", change.new_size(), "}"));
  }
  const corral::v1::DiffCounts& counts = diff.counts();
  return absl::StrCat(
      "{\"changes\":[", absl::StrJoin(changes, ","), "],\"counts\":{",
      "\"added\":", counts.added(), ",\"modified\":", counts.modified(),
      ",\"deleted\":", counts.deleted(),
      ",\"type_changed\":", counts.type_changed(),
      "},\"patch\":", JsonString(diff.patch()),
      ",\"patch_truncated\":", Boolean(diff.patch_truncated()), "}\n");
}

std::string FormatCommandLog(const corral::v1::GetCommandLogResponse& log,
                             int64_t now_seconds) {
  std::vector<std::vector<std::string>> rows;
  for (const corral::v1::CommandRecord& record : log.commands()) {
    rows.push_back({absl::StrCat(record.sequence()),
                    RelativeOrDash(record.started_at(), now_seconds),
                    FormatDuration(record.duration_us()), ExitText(record),
                    CommandText(record)});
  }
  return FormatTable({"SEQ", "STARTED", "DURATION", "EXIT", "COMMAND"}, rows);
}

std::string FormatCommandLogOutput(const corral::v1::GetCommandLogResponse& log,
                                   int64_t now_seconds) {
  std::string out;
  for (const corral::v1::CommandRecord& record : log.commands()) {
    absl::StrAppend(&out, "=== ", record.sequence(), ": ", CommandText(record),
                    "  (exit ", ExitText(record), ", ",
                    FormatDuration(record.duration_us()), ", started ",
                    RelativeOrDash(record.started_at(), now_seconds), ")\n");
    const auto stream = [&out](absl::string_view name, const std::string& data,
                               uint64_t total, bool truncated) {
      if (total == 0 && data.empty()) return;
      absl::StrAppend(&out, "--- ", name, " (", FormatBytes(total), ")",
                      truncated ? " [truncated]" : "", "\n", data);
      if (!data.empty() && data.back() != '\n') out += "\n";
      if (truncated) {
        absl::StrAppend(&out, "[truncated: ", FormatBytes(data.size()), " of ",
                        FormatBytes(total), " kept]\n");
      }
    };
    stream("stdout", record.stdout(), record.stdout_bytes(),
           record.stdout_truncated());
    stream("stderr", record.stderr(), record.stderr_bytes(),
           record.stderr_truncated());
  }
  return out;
}

std::string CommandLogJson(const corral::v1::GetCommandLogResponse& log,
                           bool with_output) {
  std::vector<std::string> records;
  for (const corral::v1::CommandRecord& record : log.commands()) {
    std::vector<std::string> argv;
    for (const std::string& arg : record.argv())
      argv.push_back(JsonString(arg));
    std::string item = absl::StrCat(
        "{\"sequence\":", record.sequence(), ",\"argv\":[",
        absl::StrJoin(argv, ","), "],\"cwd\":", JsonString(record.cwd()),
        ",\"exit_code\":", record.exit_code(), ",\"signal\":", record.signal(),
        ",\"timed_out\":", Boolean(record.timed_out()),
        ",\"started_at\":", TimestampJson(record.started_at()),
        ",\"duration_us\":", record.duration_us(),
        ",\"stdout_bytes\":", record.stdout_bytes(),
        ",\"stderr_bytes\":", record.stderr_bytes());
    if (with_output) {
      absl::StrAppend(
          &item, ",\"stdout\":", JsonString(record.stdout()),
          ",\"stderr\":", JsonString(record.stderr()),
          ",\"stdout_truncated\":", Boolean(record.stdout_truncated()),
          ",\"stderr_truncated\":", Boolean(record.stderr_truncated()));
    }
    item += "}";
    records.push_back(std::move(item));
  }
  return absl::StrCat("{\"commands\":[", absl::StrJoin(records, ","), "]}\n");
}

std::string FormatSnapshots(const corral::v1::ListSnapshotsResponse& response,
                            int64_t now_seconds) {
  std::vector<std::vector<std::string>> rows;
  for (const corral::v1::Snapshot& snapshot : response.snapshots()) {
    rows.push_back(
        {snapshot.name(), RelativeOrDash(snapshot.created_at(), now_seconds),
         absl::StrCat(snapshot.entries()), FormatBytes(snapshot.size_bytes()),
         FormatBytes(snapshot.new_bytes()),
         snapshot.memory() ? FormatBytes(snapshot.memory_bytes()) : "-"});
  }
  return FormatTable({"NAME", "CREATED", "ENTRIES", "SIZE", "NEW", "MEMORY"},
                     rows);
}

}  // namespace corral::cli
