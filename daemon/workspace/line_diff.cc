#include "daemon/workspace/line_diff.h"

#include <algorithm>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace corral::daemon::workspace {
namespace {

enum class OpKind : char { kEqual = ' ', kDelete = '-', kInsert = '+' };

// One line of the edit script, with the line numbers (0-based) before it.
struct Op {
  OpKind kind;
  int a;
  int b;
};

// Appends to `ops` the edit script between a[0, n) and b[0, m) (ids of
// lines, offsets a_base/b_base in the whole texts), or returns false when
// the cost or work bound is hit.
bool Myers(const int* a, int n, const int* b, int m, int a_base, int b_base,
           const LineDiffOptions& options, std::vector<Op>* ops) {
  const int max_d = std::min(n + m, options.max_edit_cost);
  const int offset = max_d + 1;
  std::vector<int> v(2 * static_cast<size_t>(max_d) + 3, 0);
  // trace[d] holds v[-d-1 .. d+1] as it was when step d started.
  std::vector<std::vector<int>> trace;
  uint64_t work = 0;
  int final_d = -1;
  for (int d = 0; d <= max_d && final_d < 0; ++d) {
    trace.emplace_back(v.begin() + (offset - d - 1),
                       v.begin() + (offset + d + 2));
    work += static_cast<uint64_t>(2 * d + 3);
    for (int k = -d; k <= d; k += 2) {
      int x;
      if (k == -d || (k != d && v[offset + k - 1] < v[offset + k + 1])) {
        x = v[offset + k + 1];
      } else {
        x = v[offset + k - 1] + 1;
      }
      int y = x - k;
      const int start = x;
      while (x < n && y < m && a[x] == b[y]) {
        ++x;
        ++y;
      }
      work += static_cast<uint64_t>(x - start);
      v[offset + k] = x;
      if (x >= n && y >= m) {
        final_d = d;
        break;
      }
    }
    if (work > options.max_work) return false;
  }
  if (final_d < 0) return false;

  // Walks back from (n, m), collecting the script in reverse.
  std::vector<Op> reversed;
  int x = n;
  int y = m;
  for (int d = final_d; d >= 0; --d) {
    const std::vector<int>& saved = trace[d];
    auto at = [&](int k) { return saved[k + d + 1]; };
    const int k = x - y;
    const int previous_k =
        (k == -d || (k != d && at(k - 1) < at(k + 1))) ? k + 1 : k - 1;
    const int previous_x = d == 0 ? 0 : at(previous_k);
    const int previous_y = d == 0 ? 0 : previous_x - previous_k;
    while (x > previous_x && y > previous_y) {
      --x;
      --y;
      reversed.push_back({OpKind::kEqual, a_base + x, b_base + y});
    }
    if (d == 0) break;
    if (x == previous_x) {
      --y;
      reversed.push_back({OpKind::kInsert, a_base + x, b_base + y});
    } else {
      --x;
      reversed.push_back({OpKind::kDelete, a_base + x, b_base + y});
    }
  }
  ops->insert(ops->end(), reversed.rbegin(), reversed.rend());
  return true;
}

// "start,count" as unified diffs write it: ",1" left out, and an empty
// range named by the line before it.
std::string Range(int start, int count) {
  if (count == 0) return absl::StrCat(start, ",0");
  if (count == 1) return absl::StrCat(start + 1);
  return absl::StrCat(start + 1, ",", count);
}

void AppendLine(char prefix, std::string_view line, std::string* out) {
  out->push_back(prefix);
  out->append(line);
  if (line.empty() || line.back() != '\n') {
    out->append("\n\\ No newline at end of file\n");
  }
}

// git's default "function name" for a hunk that starts at old line `start`.
std::string_view FunctionName(const std::vector<std::string_view>& lines,
                              int start) {
  for (int i = start - 1; i >= 0; --i) {
    std::string_view line = lines[static_cast<size_t>(i)];
    if (line.empty()) continue;
    const auto first = static_cast<unsigned char>(line.front());
    if (!absl::ascii_isalpha(first) && first != '_' && first != '$') continue;
    line = line.substr(0, 80);
    while (!line.empty() &&
           absl::ascii_isspace(static_cast<unsigned char>(line.back()))) {
      line.remove_suffix(1);
    }
    return line;
  }
  return {};
}

}  // namespace

std::vector<std::string_view> SplitLines(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    end = end == std::string_view::npos ? text.size() : end + 1;
    lines.push_back(text.substr(start, end - start));
    start = end;
  }
  return lines;
}

std::string UnifiedHunks(std::string_view before, std::string_view after,
                         const LineDiffOptions& options) {
  if (before == after) return "";
  const std::vector<std::string_view> a_lines = SplitLines(before);
  const std::vector<std::string_view> b_lines = SplitLines(after);
  // Equal lines get equal ids, so the search compares integers.
  absl::flat_hash_map<absl::string_view, int> ids;
  ids.reserve(a_lines.size() + b_lines.size());
  auto to_ids = [&ids](const std::vector<std::string_view>& lines) {
    std::vector<int> out;
    out.reserve(lines.size());
    for (std::string_view line : lines) {
      auto [it, inserted] =
          ids.emplace(absl::string_view(line.data(), line.size()),
                      static_cast<int>(ids.size()));
      out.push_back(it->second);
    }
    return out;
  };
  const std::vector<int> a = to_ids(a_lines);
  const std::vector<int> b = to_ids(b_lines);
  const int n = static_cast<int>(a.size());
  const int m = static_cast<int>(b.size());

  int prefix = 0;
  while (prefix < n && prefix < m && a[prefix] == b[prefix]) ++prefix;
  int suffix = 0;
  while (suffix < n - prefix && suffix < m - prefix &&
         a[n - 1 - suffix] == b[m - 1 - suffix]) {
    ++suffix;
  }

  std::vector<Op> ops;
  ops.reserve(static_cast<size_t>(std::max(n, m)) + 16);
  for (int i = 0; i < prefix; ++i) ops.push_back({OpKind::kEqual, i, i});
  const int a_mid = n - prefix - suffix;
  const int b_mid = m - prefix - suffix;
  if (!Myers(a.data() + prefix, a_mid, b.data() + prefix, b_mid, prefix, prefix,
             options, &ops)) {
    ops.resize(static_cast<size_t>(prefix));
    for (int i = 0; i < a_mid; ++i) {
      ops.push_back({OpKind::kDelete, prefix + i, prefix});
    }
    for (int i = 0; i < b_mid; ++i) {
      ops.push_back({OpKind::kInsert, prefix + a_mid, prefix + i});
    }
  }
  for (int i = 0; i < suffix; ++i) {
    ops.push_back({OpKind::kEqual, n - suffix + i, m - suffix + i});
  }

  const size_t context =
      static_cast<size_t>(std::max(options.context_lines, 0));
  std::string out;
  size_t i = 0;
  while (i < ops.size()) {
    size_t change = i;
    while (change < ops.size() && ops[change].kind == OpKind::kEqual) ++change;
    if (change == ops.size()) break;
    const size_t start = change - std::min(context, change - i);
    // Extends the hunk over changes separated by at most 2 * context lines.
    size_t end = change;
    while (true) {
      while (end < ops.size() && ops[end].kind != OpKind::kEqual) ++end;
      size_t equal_end = end;
      while (equal_end < ops.size() && ops[equal_end].kind == OpKind::kEqual) {
        ++equal_end;
      }
      if (equal_end == ops.size() || equal_end - end > 2 * context) {
        end = std::min(end + context, equal_end);
        break;
      }
      end = equal_end;
    }
    int a_count = 0;
    int b_count = 0;
    for (size_t j = start; j < end; ++j) {
      if (ops[j].kind != OpKind::kInsert) ++a_count;
      if (ops[j].kind != OpKind::kDelete) ++b_count;
    }
    absl::StrAppend(&out, "@@ -", Range(ops[start].a, a_count), " +",
                    Range(ops[start].b, b_count), " @@");
    if (options.function_names) {
      const std::string_view name = FunctionName(a_lines, ops[start].a);
      if (!name.empty()) {
        out += ' ';
        out.append(name);
      }
    }
    out += '\n';
    for (size_t j = start; j < end; ++j) {
      const Op& op = ops[j];
      AppendLine(static_cast<char>(op.kind),
                 op.kind == OpKind::kInsert ? b_lines[op.b] : a_lines[op.a],
                 &out);
    }
    i = end;
  }
  return out;
}

}  // namespace corral::daemon::workspace
