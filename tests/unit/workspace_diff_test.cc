// DiffManifests and the line diff under it: structured changes, counts,
// and patches in git's format (goldens checked against `git diff
// --no-index`, with SHA-256 abbreviations in place of git's SHA-1).
#include <catch2/catch.hpp>
#include <chrono>
#include <random>

#include "absl/strings/str_cat.h"
#include "daemon/workspace/diff.h"
#include "daemon/workspace/line_diff.h"
#include "tests/unit/workspace_test_util.h"

namespace corral::daemon::workspace {
namespace {

using corral::v1::DiffWorkspaceResponse;
using corral::v1::FileChange;
using corral::workspace::v1::Manifest;
using testing::ManifestMaker;
using testing::StoreFixture;

DiffWorkspaceResponse Diff(const Manifest& before, const Manifest& after,
                           StoreFixture& fixture, DiffOptions options = {}) {
  auto response = DiffManifests(before, after, fixture.store(), options);
  INFO(response.status().ToString());
  REQUIRE(response.ok());
  return *std::move(response);
}

std::string Short(StoreFixture& fixture, const std::string& content) {
  return fixture.Put(content).substr(0, 7);
}

// Applies unified hunks to `before`: checks that a patch really turns one
// text into the other.
std::string ApplyHunks(const std::string& before, const std::string& hunks) {
  const std::vector<std::string_view> old_lines = SplitLines(before);
  std::vector<std::string_view> patch_lines = SplitLines(hunks);
  std::string out;
  size_t next_old = 0;
  std::string pending;
  for (size_t i = 0; i < patch_lines.size(); ++i) {
    std::string_view line = patch_lines[i];
    const bool no_newline =
        i + 1 < patch_lines.size() && patch_lines[i + 1].substr(0, 2) == "\\ ";
    if (line.substr(0, 2) == "\\ ") continue;
    if (line.substr(0, 3) == "@@ ") {
      // "@@ -a[,b] +c[,d] @@": copy the old lines before this hunk.
      const size_t dash = line.find('-');
      size_t start = std::stoul(std::string(line.substr(dash + 1)));
      const size_t comma = line.find(',', dash);
      const size_t space = line.find(' ', dash);
      const bool empty =
          comma < space && std::stoul(std::string(line.substr(comma + 1))) == 0;
      const size_t first = empty ? start : start - 1;
      while (next_old < first) out.append(old_lines[next_old++]);
      continue;
    }
    std::string text(line.substr(1));
    if (no_newline && !text.empty() && text.back() == '\n') text.pop_back();
    if (line[0] == ' ') {
      REQUIRE(old_lines.at(next_old) == text);
      out += text;
      ++next_old;
    } else if (line[0] == '-') {
      REQUIRE(old_lines.at(next_old) == text);
      ++next_old;
    } else if (line[0] == '+') {
      out += text;
    } else {
      FAIL("unexpected patch line: " << std::string(line));
    }
  }
  while (next_old < old_lines.size()) out.append(old_lines[next_old++]);
  return out;
}

TEST_CASE("workspace: diff of a modified text file matches git",
          "[workspace][diff]") {
  StoreFixture fixture;
  const std::string old_text = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\n";
  const std::string new_text = "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\nL\nm\nn";
  const Manifest before =
      ManifestMaker(&fixture).File("f.txt", old_text).Build();
  const Manifest after =
      ManifestMaker(&fixture).File("f.txt", new_text).Build();
  const auto response = Diff(before, after, fixture);
  REQUIRE(response.changes_size() == 1);
  const FileChange& change = response.changes(0);
  CHECK(change.path() == "f.txt");
  CHECK(change.kind() == corral::v1::CHANGE_KIND_MODIFIED);
  CHECK(change.type() == corral::v1::FILE_TYPE_REGULAR);
  CHECK(change.old_type() == corral::v1::FILE_TYPE_REGULAR);
  CHECK(change.content_changed());
  CHECK_FALSE(change.binary());
  CHECK(change.old_size() == old_text.size());
  CHECK(change.new_size() == new_text.size());
  CHECK(change.old_mode() == 0644);
  CHECK(change.new_mode() == 0644);
  CHECK(response.counts().modified() == 1);
  CHECK_FALSE(response.patch_truncated());
  const std::string expected = absl::StrCat(
      "diff --git a/f.txt b/f.txt\n"
      "index ",
      Short(fixture, old_text), "..", Short(fixture, new_text),
      " 100644\n"
      "--- a/f.txt\n"
      "+++ b/f.txt\n"
      "@@ -1,5 +1,5 @@\n"
      " a\n"
      "-b\n"
      "+B\n"
      " c\n"
      " d\n"
      " e\n"
      "@@ -9,5 +9,6 @@ h\n"
      " i\n"
      " j\n"
      " k\n"
      "-l\n"
      "+L\n"
      " m\n"
      "+n\n"
      "\\ No newline at end of file\n");
  CHECK(response.patch() == expected);
}

TEST_CASE("workspace: diff of added and deleted files matches git",
          "[workspace][diff]") {
  StoreFixture fixture;
  const Manifest before = ManifestMaker(&fixture)
                              .File("gone", "one\ntwo\n")
                              .File("keep", "same\n")
                              .Build();
  const Manifest after = ManifestMaker(&fixture)
                             .File("keep", "same\n")
                             .File("new", "one\ntwo\n", 0755)
                             .File("new-empty", "")
                             .Build();
  const auto response = Diff(before, after, fixture);
  REQUIRE(response.changes_size() == 3);
  CHECK(response.changes(0).path() == "gone");
  CHECK(response.changes(0).kind() == corral::v1::CHANGE_KIND_DELETED);
  CHECK(response.changes(0).type() == corral::v1::FILE_TYPE_REGULAR);
  CHECK(response.changes(0).old_mode() == 0644);
  CHECK(response.changes(0).new_mode() == 0);
  CHECK(response.changes(1).path() == "new");
  CHECK(response.changes(1).kind() == corral::v1::CHANGE_KIND_ADDED);
  CHECK(response.changes(1).old_type() == corral::v1::FILE_TYPE_UNSPECIFIED);
  CHECK(response.changes(1).new_mode() == 0755);
  CHECK(response.counts().added() == 2);
  CHECK(response.counts().deleted() == 1);
  const std::string hash = Short(fixture, "one\ntwo\n");
  const std::string expected = absl::StrCat(
      "diff --git a/gone b/gone\n"
      "deleted file mode 100644\n"
      "index ",
      hash,
      "..0000000\n"
      "--- a/gone\n"
      "+++ /dev/null\n"
      "@@ -1,2 +0,0 @@\n"
      "-one\n"
      "-two\n"
      "diff --git a/new b/new\n"
      "new file mode 100755\n"
      "index 0000000..",
      hash,
      "\n"
      "--- /dev/null\n"
      "+++ b/new\n"
      "@@ -0,0 +1,2 @@\n"
      "+one\n"
      "+two\n"
      "diff --git a/new-empty b/new-empty\n"
      "new file mode 100644\n"
      "index 0000000..",
      Short(fixture, ""), "\n");
  CHECK(response.patch() == expected);
}

TEST_CASE("workspace: diff of binary files", "[workspace][diff]") {
  StoreFixture fixture;
  const std::string old_bin("x\0y", 3);
  const std::string new_bin("x\0z", 3);
  // A NUL after the first 8000 bytes does not make a file binary.
  const std::string late_nul = std::string(8000, 'a') + '\0';
  const Manifest before = ManifestMaker(&fixture)
                              .File("blob", old_bin)
                              .File("text", "text\n")
                              .Build();
  const Manifest after = ManifestMaker(&fixture)
                             .File("added.bin", new_bin)
                             .File("blob", new_bin)
                             .File("late", late_nul)
                             .File("text", std::string("now\0binary", 10))
                             .Build();
  const auto response = Diff(before, after, fixture);
  REQUIRE(response.changes_size() == 4);
  CHECK(response.changes(0).binary());
  CHECK(response.changes(1).binary());
  CHECK_FALSE(response.changes(2).binary());
  CHECK(response.changes(3).binary());
  const std::string patch = response.patch();
  CHECK_THAT(patch, Catch::Contains(absl::StrCat(
                        "diff --git a/added.bin b/added.bin\n"
                        "new file mode 100644\n"
                        "index 0000000..",
                        Short(fixture, new_bin),
                        "\n"
                        "Binary files /dev/null and b/added.bin differ\n")));
  CHECK_THAT(patch, Catch::Contains(absl::StrCat(
                        "diff --git a/blob b/blob\n"
                        "index ",
                        Short(fixture, old_bin), "..", Short(fixture, new_bin),
                        " 100644\n"
                        "Binary files a/blob and b/blob differ\n")));
  CHECK_THAT(patch, Catch::Contains("+++ b/late\n"));
  CHECK_THAT(patch, Catch::Contains("Binary files a/text and b/text differ\n"));

  // Without a patch the binary flags are the same.
  DiffOptions no_patch;
  no_patch.patch = false;
  const auto structured = Diff(before, after, fixture, no_patch);
  CHECK(structured.patch().empty());
  REQUIRE(structured.changes_size() == 4);
  for (int i = 0; i < 4; ++i) {
    CHECK(structured.changes(i).binary() == response.changes(i).binary());
  }
}

TEST_CASE("workspace: diff lists files over the text limit as binary",
          "[workspace][diff]") {
  StoreFixture fixture;
  const std::string big_old(5000, 'o');
  const std::string big_new = big_old + "\nmore\n";
  const Manifest before = ManifestMaker(&fixture).File("big", big_old).Build();
  const Manifest after = ManifestMaker(&fixture).File("big", big_new).Build();
  DiffOptions options;
  options.max_text_bytes = 4096;
  const auto response = Diff(before, after, fixture, options);
  REQUIRE(response.changes_size() == 1);
  CHECK(response.changes(0).binary());
  CHECK_THAT(response.patch(),
             Catch::Contains("Binary files a/big and b/big differ\n"));
  options.max_text_bytes = 1 << 20;
  const auto text = Diff(before, after, fixture, options);
  CHECK_FALSE(text.changes(0).binary());
  CHECK_THAT(text.patch(), Catch::Contains("+more\n"));
}

TEST_CASE("workspace: diff of a symlink target matches git",
          "[workspace][diff]") {
  StoreFixture fixture;
  const Manifest before =
      ManifestMaker(&fixture).Symlink("l", "target1").Build();
  const Manifest after =
      ManifestMaker(&fixture).Symlink("l", "target2").Build();
  const auto response = Diff(before, after, fixture);
  REQUIRE(response.changes_size() == 1);
  const FileChange& change = response.changes(0);
  CHECK(change.kind() == corral::v1::CHANGE_KIND_MODIFIED);
  CHECK(change.type() == corral::v1::FILE_TYPE_SYMLINK);
  CHECK(change.content_changed());
  CHECK(change.old_size() == 7);
  CHECK_FALSE(change.binary());
  const std::string expected = absl::StrCat(
      "diff --git a/l b/l\n"
      "index ",
      Short(fixture, "target1"), "..", Short(fixture, "target2"),
      " 120000\n"
      "--- a/l\n"
      "+++ b/l\n"
      "@@ -1 +1 @@\n"
      "-target1\n"
      "\\ No newline at end of file\n"
      "+target2\n"
      "\\ No newline at end of file\n");
  CHECK(response.patch() == expected);
}

TEST_CASE("workspace: diff of a mode-only change matches git",
          "[workspace][diff]") {
  StoreFixture fixture;
  const Manifest before = ManifestMaker(&fixture)
                              .File("script", "echo\n", 0644)
                              .File("private", "p\n", 0644)
                              .Dir("dir", 0755)
                              .Build();
  const Manifest after = ManifestMaker(&fixture)
                             .File("script", "echo\n", 0755)
                             .File("private", "p\n", 0600)
                             .Dir("dir", 0700)
                             .Build();
  const auto response = Diff(before, after, fixture);
  REQUIRE(response.changes_size() == 3);
  for (const FileChange& change : response.changes()) {
    CHECK(change.kind() == corral::v1::CHANGE_KIND_MODIFIED);
    CHECK_FALSE(change.content_changed());
  }
  CHECK(response.changes(0).path() == "dir");
  CHECK(response.changes(0).type() == corral::v1::FILE_TYPE_DIRECTORY);
  CHECK(response.changes(0).old_mode() == 0755);
  CHECK(response.changes(0).new_mode() == 0700);
  CHECK(response.changes(2).new_mode() == 0755);
  CHECK(response.counts().modified() == 3);
  // git shows only what it tracks: the executable bit.
  CHECK(response.patch() ==
        "diff --git a/script b/script\n"
        "old mode 100644\n"
        "new mode 100755\n");

  // Mode and content together: no mode on the index line.
  const Manifest edited =
      ManifestMaker(&fixture).File("script", "echo hi\n", 0755).Build();
  const Manifest plain =
      ManifestMaker(&fixture).File("script", "echo\n", 0644).Build();
  const auto both = Diff(plain, edited, fixture);
  CHECK(both.patch() == absl::StrCat("diff --git a/script b/script\n"
                                     "old mode 100644\n"
                                     "new mode 100755\n"
                                     "index ",
                                     Short(fixture, "echo\n"), "..",
                                     Short(fixture, "echo hi\n"),
                                     "\n"
                                     "--- a/script\n"
                                     "+++ b/script\n"
                                     "@@ -1 +1 @@\n"
                                     "-echo\n"
                                     "+echo hi\n"));
}

TEST_CASE(
    "workspace: diff of a type change: file to directory and symlink to file",
    "[workspace][diff]") {
  StoreFixture fixture;
  const Manifest before = ManifestMaker(&fixture)
                              .File("thing", "was a file\n")
                              .Symlink("link", "thing")
                              .Build();
  const Manifest after = ManifestMaker(&fixture)
                             .Dir("thing")
                             .File("thing/inside", "x\n")
                             .File("link", "now a file\n")
                             .Build();
  const auto response = Diff(before, after, fixture);
  REQUIRE(response.changes_size() == 3);
  const FileChange& link = response.changes(0);
  CHECK(link.path() == "link");
  CHECK(link.kind() == corral::v1::CHANGE_KIND_TYPE_CHANGED);
  CHECK(link.old_type() == corral::v1::FILE_TYPE_SYMLINK);
  CHECK(link.type() == corral::v1::FILE_TYPE_REGULAR);
  const FileChange& thing = response.changes(1);
  CHECK(thing.kind() == corral::v1::CHANGE_KIND_TYPE_CHANGED);
  CHECK(thing.old_type() == corral::v1::FILE_TYPE_REGULAR);
  CHECK(thing.type() == corral::v1::FILE_TYPE_DIRECTORY);
  CHECK(response.changes(2).path() == "thing/inside");
  CHECK(response.changes(2).kind() == corral::v1::CHANGE_KIND_ADDED);
  CHECK(response.counts().type_changed() == 2);
  CHECK(response.counts().added() == 1);
  const std::string expected = absl::StrCat(
      // The symlink goes, the file comes.
      "diff --git a/link b/link\n"
      "deleted file mode 120000\n"
      "index ",
      Short(fixture, "thing"),
      "..0000000\n"
      "--- a/link\n"
      "+++ /dev/null\n"
      "@@ -1 +0,0 @@\n"
      "-thing\n"
      "\\ No newline at end of file\n"
      "diff --git a/link b/link\n"
      "new file mode 100644\n"
      "index 0000000..",
      Short(fixture, "now a file\n"),
      "\n"
      "--- /dev/null\n"
      "+++ b/link\n"
      "@@ -0,0 +1 @@\n"
      "+now a file\n"
      // The file goes; the directory itself is not patched.
      "diff --git a/thing b/thing\n"
      "deleted file mode 100644\n"
      "index ",
      Short(fixture, "was a file\n"),
      "..0000000\n"
      "--- a/thing\n"
      "+++ /dev/null\n"
      "@@ -1 +0,0 @@\n"
      "-was a file\n"
      "diff --git a/thing/inside b/thing/inside\n"
      "new file mode 100644\n"
      "index 0000000..",
      Short(fixture, "x\n"),
      "\n"
      "--- /dev/null\n"
      "+++ b/thing/inside\n"
      "@@ -0,0 +1 @@\n"
      "+x\n");
  CHECK(response.patch() == expected);
}

TEST_CASE(
    "workspace: diff lists added and deleted directories without patching them",
    "[workspace][diff]") {
  StoreFixture fixture;
  const Manifest before = ManifestMaker(&fixture).Dir("old").Build();
  const Manifest after =
      ManifestMaker(&fixture).Dir("new dir").Dir("new dir/sub").Build();
  const auto response = Diff(before, after, fixture);
  REQUIRE(response.changes_size() == 3);
  CHECK(response.changes(0).path() == "new dir");
  CHECK(response.changes(1).path() == "new dir/sub");
  CHECK(response.changes(2).path() == "old");
  CHECK(response.changes(2).kind() == corral::v1::CHANGE_KIND_DELETED);
  CHECK(response.changes(2).type() == corral::v1::FILE_TYPE_DIRECTORY);
  CHECK(response.patch().empty());
  CHECK(Diff(after, after, fixture).changes_size() == 0);
}

TEST_CASE("workspace: diff handles the last line's newline",
          "[workspace][diff]") {
  StoreFixture fixture;
  const Manifest before =
      ManifestMaker(&fixture).File("f", "same\nend").Build();
  const Manifest after =
      ManifestMaker(&fixture).File("f", "same\nend\n").Build();
  const auto response = Diff(before, after, fixture);
  CHECK_THAT(response.patch(), Catch::EndsWith("@@ -1,2 +1,2 @@\n"
                                               " same\n"
                                               "-end\n"
                                               "\\ No newline at end of file\n"
                                               "+end\n"));
  // Unchanged context without a final newline is marked too.
  const Manifest first = ManifestMaker(&fixture).File("g", "a\nz").Build();
  const Manifest second = ManifestMaker(&fixture).File("g", "b\nz").Build();
  CHECK_THAT(Diff(first, second, fixture).patch(),
             Catch::EndsWith("@@ -1,2 +1,2 @@\n"
                             "-a\n"
                             "+b\n"
                             " z\n"
                             "\\ No newline at end of file\n"));
}

TEST_CASE("workspace: diff truncates a long patch at a line boundary",
          "[workspace][diff]") {
  StoreFixture fixture;
  ManifestMaker before_maker(&fixture);
  ManifestMaker after_maker(&fixture);
  for (int i = 0; i < 20; ++i) {
    std::string text;
    for (int line = 0; line < 50; ++line) {
      absl::StrAppend(&text, "file ", i, " line ", line, "\n");
    }
    after_maker.File(absl::StrCat("f", 10 + i), text);
  }
  DiffOptions options;
  options.max_patch_bytes = 5000;
  const auto response =
      Diff(before_maker.Build(), after_maker.Build(), fixture, options);
  CHECK(response.patch_truncated());
  CHECK(response.patch().size() <= 5000);
  CHECK(response.patch().size() > 4000);
  CHECK(response.patch().back() == '\n');
  // Every change is still listed.
  CHECK(response.changes_size() == 20);
  CHECK(response.counts().added() == 20);

  options.max_patch_bytes = 16 << 20;
  const auto whole =
      Diff(before_maker.Build(), after_maker.Build(), fixture, options);
  CHECK_FALSE(whole.patch_truncated());
  CHECK(whole.patch().substr(0, response.patch().size()) == response.patch());
}

TEST_CASE("workspace: diff reports a missing object", "[workspace][diff]") {
  StoreFixture fixture;
  Manifest before = ManifestMaker(&fixture).File("f", "old\n").Build();
  Manifest after = ManifestMaker(&fixture).File("f", "new\n").Build();
  REQUIRE(fixture.store().CollectGarbage({}).ok());
  auto response = DiffManifests(before, after, fixture.store(), {});
  CHECK(response.status().code() == absl::StatusCode::kNotFound);
}

TEST_CASE("workspace: line diff output applies back to the new text",
          "[workspace][diff]") {
  std::mt19937 random(12345);
  const char* vocabulary[] = {"alpha\n", "beta\n", "gamma\n", "delta\n",
                              "{\n",     "}\n",    "\n",      "return 0;\n"};
  auto random_text = [&](int lines) {
    std::string text;
    for (int i = 0; i < lines; ++i) text += vocabulary[random() % 8];
    if (random() % 3 == 0 && !text.empty()) text.pop_back();
    return text;
  };
  for (int round = 0; round < 300; ++round) {
    const std::string before = random_text(static_cast<int>(random() % 60));
    std::string after;
    if (round % 2 == 0) {
      after = random_text(static_cast<int>(random() % 60));
    } else {
      // A few edits of `before`.
      std::vector<std::string_view> lines = SplitLines(before);
      std::vector<std::string> edited(lines.begin(), lines.end());
      for (int edit = 0; edit < 3 && !edited.empty(); ++edit) {
        const size_t at = random() % edited.size();
        if (random() % 2 == 0) {
          edited.erase(edited.begin() + static_cast<long>(at));
        } else {
          edited.insert(edited.begin() + static_cast<long>(at), "inserted\n");
        }
      }
      for (const auto& line : edited) after += line;
    }
    LineDiffOptions options;
    options.context_lines = static_cast<int>(random() % 4);
    // Some rounds hit the cost bound and fall back to one replacement.
    options.max_edit_cost = round % 5 == 0 ? 3 : 2000;
    const std::string hunks = UnifiedHunks(before, after, options);
    INFO("round " << round << "\nbefore:\n"
                  << before << "\nafter:\n"
                  << after << "\nhunks:\n"
                  << hunks);
    CHECK(hunks.empty() == (before == after));
    CHECK(ApplyHunks(before, hunks) == after);
  }
}

TEST_CASE("workspace: line diff is minimal for small edits",
          "[workspace][diff]") {
  std::string before;
  for (int i = 0; i < 1000; ++i) absl::StrAppend(&before, "line ", i, "\n");
  std::string after = before;
  after.replace(after.find("line 500\n"), 9, "changed\n");
  LineDiffOptions options;
  options.function_names = false;
  CHECK(UnifiedHunks(before, after, options) ==
        "@@ -498,7 +498,7 @@\n line 497\n line 498\n line 499\n-line 500\n"
        "+changed\n line 501\n line 502\n line 503\n");
}

TEST_CASE(
    "workspace: line diff stays bounded on completely different large texts",
    "[workspace][diff]") {
  std::string before;
  std::string after;
  for (int i = 0; i < 100000; ++i) {
    absl::StrAppend(&before, "old ", i, "\n");
    absl::StrAppend(&after, "new ", i, "\n");
  }
  const auto start = std::chrono::steady_clock::now();
  const std::string hunks = UnifiedHunks(before, after, {});
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed < std::chrono::seconds(5));
  CHECK(ApplyHunks(before, hunks) == after);
  CHECK_THAT(hunks, Catch::StartsWith("@@ -1,100000 +1,100000 @@\n"));
}

// Not run by default: build/tests/workspace_test "[.bench]"
TEST_CASE("workspace: bench: diff of 10,000-entry manifests with a few changes",
          "[.bench][workspace]") {
  StoreFixture fixture;
  Manifest before;
  const std::string sha = fixture.Put("shared content\n");
  for (int i = 0; i < 10000; ++i) {
    auto* entry = before.add_entries();
    entry->set_path(
        absl::StrCat("src/module", i / 100, "/file", 10000 + i, ".cc"));
    entry->set_type(corral::agent::v1::ENTRY_TYPE_REGULAR);
    entry->set_mode(0644);
    entry->set_size(15);
    entry->set_sha256(sha);
    entry->set_mtime_ns(1);
  }
  std::sort(before.mutable_entries()->begin(), before.mutable_entries()->end(),
            [](const auto& a, const auto& b) { return a.path() < b.path(); });
  Manifest after = before;
  const std::string changed = fixture.Put("shared content\nplus a line\n");
  for (int i : {17, 4242, 9999}) {
    after.mutable_entries(i)->set_sha256(changed);
    after.mutable_entries(i)->set_size(27);
  }
  constexpr int kRounds = 100;
  const auto start = std::chrono::steady_clock::now();
  for (int round = 0; round < kRounds; ++round) {
    auto response = DiffManifests(before, after, fixture.store(), {});
    REQUIRE(response.ok());
    REQUIRE(response->changes_size() == 3);
  }
  const auto per_diff = std::chrono::duration<double, std::milli>(
                            std::chrono::steady_clock::now() - start) /
                        kRounds;
  WARN("10,000-entry manifests, 3 changed files: " << per_diff.count()
                                                   << " ms per diff");
  CHECK(per_diff.count() < 50);
}

}  // namespace
}  // namespace corral::daemon::workspace
