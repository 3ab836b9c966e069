// Unified diffs parsed and applied in memory (daemon/workspace/patch.h).
#include <catch2/catch.hpp>
#include <string>

#include "daemon/workspace/patch.h"

namespace corral::workspace {
namespace {

std::optional<std::string> Apply(const std::string& patch_text,
                                 const std::optional<std::string>& content,
                                 std::string* error = nullptr) {
  auto files = ParsePatch(patch_text);
  REQUIRE(files.ok());
  REQUIRE(files->size() == 1);
  auto applied = ApplyFilePatch(files->front(), content);
  if (!applied.ok()) {
    if (error != nullptr) *error = std::string(applied.status().message());
    return std::string("<error>");
  }
  return *applied;
}

constexpr char kTwoHunks[] =
    "diff --git a/src/a.txt b/src/a.txt\n"
    "index 1234567..89abcde 100644\n"
    "--- a/src/a.txt\n"
    "+++ b/src/a.txt\n"
    "@@ -1,3 +1,3 @@\n"
    " one\n"
    "-two\n"
    "+TWO\n"
    " three\n"
    "@@ -7,3 +7,4 @@ context text\n"
    " seven\n"
    " eight\n"
    "+eight and a half\n"
    " nine\n";

TEST_CASE(
    "a git patch with two hunks applies, also to a file with lines "
    "added above them") {
  const std::string file =
      "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n";
  auto files = ParsePatch(kTwoHunks);
  REQUIRE(files.ok());
  REQUIRE(files->size() == 1);
  CHECK(files->front().path() == "src/a.txt");
  CHECK(files->front().hunks.size() == 2);
  CHECK(Apply(kTwoHunks, file) ==
        "one\nTWO\nthree\nfour\nfive\nsix\nseven\neight\neight and a "
        "half\nnine\nten\n");
  // Two lines more at the top: both hunks are found further down.
  CHECK(Apply(kTwoHunks, "x\ny\n" + file) ==
        "x\ny\none\nTWO\nthree\nfour\nfive\nsix\nseven\neight\neight and a "
        "half\nnine\nten\n");
}

TEST_CASE("a hunk that does not apply is named, with the line that differs") {
  std::string error;
  CHECK(Apply(kTwoHunks,
              "one\ntwo\nthree\nfour\nfive\nsix\nseven\nEIGHT\nnine\n",
              &error) == "<error>");
  CHECK(error ==
        "hunk 2 of src/a.txt (@@ -7,3 +7,4 @@) does not apply: its lines are "
        "not in the file; line 8 is 'EIGHT', the patch expects 'eight'");
  // The same change twice: the second time its removed line is gone.
  CHECK(Apply(kTwoHunks, "one\nTWO\nthree\n", &error) == "<error>");
  CHECK(error.find("hunk 1 of src/a.txt") != std::string::npos);
}

TEST_CASE("new files, deleted files, modes and missing final newlines") {
  const std::string created =
      "diff --git a/run.sh b/run.sh\nnew file mode 100755\n"
      "--- /dev/null\n+++ b/run.sh\n@@ -0,0 +1,2 @@\n+#!/bin/sh\n+echo hi\n";
  auto files = ParsePatch(created);
  REQUIRE(files.ok());
  CHECK(files->front().creates());
  CHECK(files->front().new_mode == 0755);
  CHECK(Apply(created, std::nullopt) == "#!/bin/sh\necho hi\n");
  std::string error;
  CHECK(Apply(created, "there already\n", &error) == "<error>");
  CHECK(error == "run.sh: the patch creates it, but it exists");

  const std::string deleted =
      "--- a/old.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-a\n-b\n";
  CHECK(Apply(deleted, "a\nb\n") == std::nullopt);
  CHECK(Apply(deleted, "a\nb\nc\n", &error) == "<error>");
  CHECK(Apply(deleted, std::nullopt, &error) == "<error>");
  CHECK(error == "old.txt: no such file to patch");

  // diff -u with timestamps, and no newline at the end on either side.
  const std::string eof =
      "--- x.txt\t2026-12-07 10:00:00\n+++ x.txt\t2026-12-07 10:01:00\n"
      "@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+c\n";
  CHECK(Apply(eof, "a\nb") == "a\nc\n");
  const std::string to_eof =
      "--- x.txt\n+++ x.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n"
      "\\ No newline at end of file\n";
  CHECK(Apply(to_eof, "a\nb\n") == "a\nc");
}

TEST_CASE(
    "malformed and unsafe patches are refused before anything is "
    "applied") {
  struct Case {
    const char* patch;
    const char* error;
  };
  for (const Case& c : std::initializer_list<Case>{
           {"hello\n", "no '--- '/'+++ ' file header"},
           {"--- a/x\n@@ -1 +1 @@\n", "without its '+++ ' line"},
           {"--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 "
            "@@\n-a\n+b\n",
            "climbs out of /workspace"},
           {"--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
            "paths are relative to /workspace"},
           {"--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+b\n",
            "ends before its counts"},
           {"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n-b\n+c\n",
            "more lines than it says"},
           {"--- a/x\n+++ b/x\n@@ bad @@\n", "bad hunk header"},
           {"--- a/x\n+++ b/x\n@@ -1 +1 @@\n*a\n", "unexpected line"},
           {"diff --git a/x b/y\nrename from x\nrename to y\n",
            "renames and copies are not supported"},
           {"diff --git a/x b/x\nBinary files a/x and b/x differ\n",
            "binary patches are not supported"},
           {"--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
            "renames are not supported"},
           {"--- /dev/null\n+++ /dev/null\n", "both sides are /dev/null"},
       }) {
    INFO(c.patch);
    auto parsed = ParsePatch(c.patch);
    REQUIRE_FALSE(parsed.ok());
    CHECK(absl::IsInvalidArgument(parsed.status()));
    CHECK(std::string(parsed.status().message()).find(c.error) !=
          std::string::npos);
  }
}

}  // namespace
}  // namespace corral::workspace
