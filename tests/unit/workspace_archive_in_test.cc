// ReadUploadArchive: every rule for client uploads, with archives written
// in the test by libarchive.
#include <catch2/catch.hpp>
#include <string>

#include "daemon/workspace/archive_in.h"
#include "tests/unit/workspace_test_util.h"

namespace corral::daemon::workspace {
namespace {

using testing::ChunksOf;
using testing::RecordingSink;
using testing::TarBuilder;

absl::StatusOr<UploadStats> Read(const std::string& archive,
                                 RecordingSink& sink,
                                 const UploadLimits& limits = {}) {
  return ReadUploadArchive(ChunksOf(archive), limits, sink);
}

// The upload succeeds.
UploadStats ReadOk(const std::string& archive, RecordingSink& sink,
                   const UploadLimits& limits = {}) {
  auto stats = Read(archive, sink, limits);
  INFO(stats.status().ToString());
  REQUIRE(stats.ok());
  return *stats;
}

// The upload fails with INVALID_ARGUMENT naming `entry` and mentioning
// `reason`, and nothing of `entry` reached the sink.
void ExpectRefused(const std::string& archive, const std::string& entry,
                   const std::string& reason, const UploadLimits& limits = {}) {
  RecordingSink sink;
  auto stats = Read(archive, sink, limits);
  INFO(stats.status().ToString());
  REQUIRE_FALSE(stats.ok());
  CHECK(stats.status().code() == absl::StatusCode::kInvalidArgument);
  const std::string message(stats.status().message());
  CHECK_THAT(message, Catch::Contains("archive entry '" + entry + "'"));
  CHECK_THAT(message, Catch::Contains(reason));
  for (const auto& item : sink.items) {
    CHECK(item.entry.path() != entry);
  }
}

TEST_CASE(
    "workspace: upload passes files, directories, symlinks and hard links",
    "[workspace][upload]") {
  const std::string archive =
      TarBuilder(nullptr, archive_write_set_format_pax)
          .Dir("./")
          .Dir("./src/")
          .File("./src/main.cc", "int main() {}\n", 0755)
          .Symlink("./latest", "src/main.cc")
          .Symlink("abs", "/etc/passwd")
          .Hardlink("./src/copy.cc", "./src/main.cc")
          .File("empty", "")
          .Finish();
  RecordingSink sink;
  const UploadStats stats = ReadOk(archive, sink);
  CHECK(stats.entries == 6);
  CHECK(stats.bytes == 14);
  CHECK(stats.stripped_modes == 0);
  CHECK(stats.archive_bytes == archive.size());
  REQUIRE(sink.items.size() == 6);

  CHECK(sink.items[0].entry.path() == "src");
  CHECK(sink.items[0].entry.type() == corral::agent::v1::ENTRY_TYPE_DIRECTORY);
  CHECK(sink.items[0].entry.mode() == 0755);
  const auto& main = sink.items[1];
  CHECK(main.entry.path() == "src/main.cc");
  CHECK(main.entry.type() == corral::agent::v1::ENTRY_TYPE_REGULAR);
  CHECK(main.entry.size() == 14);
  CHECK(main.entry.mode() == 0755);
  CHECK(main.entry.mtime_ns() == 1'700'000'000'000'000'250);
  CHECK(main.data == "int main() {}\n");
  CHECK(sink.items[2].entry.type() == corral::agent::v1::ENTRY_TYPE_SYMLINK);
  CHECK(sink.items[2].entry.link_target() == "src/main.cc");
  // Symlink targets are kept as they are, absolute ones included.
  CHECK(sink.items[3].entry.link_target() == "/etc/passwd");
  const auto& link = sink.items[4];
  CHECK(link.entry.path() == "src/copy.cc");
  CHECK(link.entry.type() == corral::agent::v1::ENTRY_TYPE_HARDLINK);
  CHECK(link.entry.link_target() == "src/main.cc");
  CHECK(link.entry.size() == 0);
  CHECK(link.data.empty());
  CHECK(sink.items[5].entry.size() == 0);
  CHECK(sink.items[5].chunks == 0);
}

TEST_CASE("workspace: upload accepts gzip, xz and zstd",
          "[workspace][upload]") {
  using Filter = int (*)(struct archive*);
  const Filter filters[] = {archive_write_add_filter_gzip,
                            archive_write_add_filter_xz,
                            archive_write_add_filter_zstd};
  for (Filter filter : filters) {
    const std::string archive =
        TarBuilder(filter).File("a.txt", std::string(100000, 'a')).Finish();
    CHECK(archive.size() < 10000);
    RecordingSink sink;
    const UploadStats stats = ReadOk(archive, sink);
    REQUIRE(sink.items.size() == 1);
    CHECK(sink.items[0].data == std::string(100000, 'a'));
    // Data reaches the sink in chunks of at most 64 KiB.
    CHECK(sink.items[0].largest_chunk <= 64 * 1024);
    CHECK(stats.archive_bytes == archive.size());
  }
}

TEST_CASE(
    "workspace: upload accepts GNU and ustar formats and an empty archive",
    "[workspace][upload]") {
  // Longer than ustar's 100-byte name field: a GNU long-name header.
  const std::string long_name =
      std::string(150, 'n') + "/" + std::string(150, 'm');
  const std::string gnu = TarBuilder(nullptr, archive_write_set_format_gnutar)
                              .File(long_name, "long name")
                              .Finish();
  RecordingSink sink;
  REQUIRE(Read(gnu, sink).ok());
  REQUIRE(sink.items.size() == 1);
  CHECK(sink.items[0].entry.path() == long_name);

  const std::string ustar = TarBuilder(nullptr, archive_write_set_format_ustar)
                                .File("u", "ustar")
                                .Finish();
  RecordingSink ustar_sink;
  REQUIRE(Read(ustar, ustar_sink).ok());
  CHECK(ustar_sink.items.size() == 1);

  const std::string empty = TarBuilder().Finish();
  RecordingSink empty_sink;
  const UploadStats stats = ReadOk(empty, empty_sink);
  CHECK(stats.entries == 0);
}

TEST_CASE("workspace: upload refuses what is not a tar archive",
          "[workspace][upload]") {
  const std::string zip = TarBuilder(nullptr, archive_write_set_format_zip)
                              .File("a", "zipped")
                              .Finish();
  const std::string cpio = TarBuilder(nullptr, archive_write_set_format_cpio)
                               .File("a", "cpio")
                               .Finish();
  const std::string bzip2 =
      TarBuilder(archive_write_add_filter_bzip2).File("a", "bzipped").Finish();
  const std::string garbage(5000, 'g');
  for (const std::string& archive : {zip, cpio, bzip2, garbage}) {
    RecordingSink sink;
    auto stats = Read(archive, sink);
    REQUIRE_FALSE(stats.ok());
    CHECK(stats.status().code() == absl::StatusCode::kInvalidArgument);
    CHECK_THAT(std::string(stats.status().message()),
               Catch::Contains("not a tar archive"));
    CHECK(sink.items.empty());
  }
}

TEST_CASE("workspace: upload refuses a gzip inside a gzip",
          "[workspace][upload]") {
  const std::string inner =
      TarBuilder(archive_write_add_filter_gzip).File("a", "x").Finish();
  // The outer layer: a gzip of the inner gzip, through libarchive's raw
  // format.
  const std::string outer =
      testing::CompressedRaw(archive_write_add_filter_gzip, inner);

  RecordingSink sink;
  auto stats = Read(outer, sink);
  REQUIRE_FALSE(stats.ok());
  CHECK(stats.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK(sink.items.empty());
}

TEST_CASE("workspace: upload refuses path traversal and bad paths",
          "[workspace][upload]") {
  ExpectRefused(TarBuilder().File("../escape", "x").Finish(), "../escape",
                "'..' path component");
  ExpectRefused(TarBuilder().File("a/../../escape", "x").Finish(),
                "a/../../escape", "'..' path component");
  ExpectRefused(TarBuilder().File("/etc/cron.d/evil", "x").Finish(),
                "/etc/cron.d/evil", "absolute path");
  ExpectRefused(TarBuilder().File("a//b", "x").Finish(), "a//b",
                "empty path component");
  ExpectRefused(TarBuilder().File("a/./b", "x").Finish(), "a/./b",
                "'.' path component");
  // Nothing before the bad entry is lost, nothing of it is passed on.
  RecordingSink sink;
  auto stats =
      Read(TarBuilder().File("fine", "ok").File("../bad", "x").Finish(), sink);
  REQUIRE_FALSE(stats.ok());
  REQUIRE(sink.items.size() == 1);
  CHECK(sink.items[0].entry.path() == "fine");
}

TEST_CASE("workspace: upload prints hostile names escaped",
          "[workspace][upload]") {
  RecordingSink sink;
  auto stats = Read(TarBuilder().File("../\x1b[31mred\n", "x").Finish(), sink);
  REQUIRE_FALSE(stats.ok());
  const std::string message(stats.status().message());
  CHECK(message.find('\x1b') == std::string::npos);
  CHECK(message.find('\n') == std::string::npos);
  CHECK_THAT(message, Catch::Contains("\\x1b[31mred\\n"));
}

TEST_CASE(
    "workspace: upload refuses path and component lengths over the limits",
    "[workspace][upload]") {
  // 4097 bytes: 16 components of 254 bytes and their slashes, then 17 more.
  std::string long_path;
  for (int i = 0; i < 16; ++i) long_path += std::string(254, 'p') + "/";
  long_path += std::string(4097 - long_path.size(), 'q');
  REQUIRE(long_path.size() == 4097);
  ExpectRefused(TarBuilder().File(long_path, "x").Finish(), long_path,
                "longer than 4096 bytes");
  // Exactly 4096 is fine.
  RecordingSink sink;
  REQUIRE(Read(TarBuilder().File(long_path.substr(0, 4096), "x").Finish(), sink)
              .ok());

  const std::string component(256, 'c');
  ExpectRefused(TarBuilder().File("dir/" + component, "x").Finish(),
                "dir/" + component, "component is longer than 255 bytes");
  REQUIRE(
      Read(TarBuilder().File(std::string(255, 'c'), "x").Finish(), sink).ok());

  ExpectRefused(
      TarBuilder().Symlink("link", "/" + std::string(4096, 't')).Finish(),
      "link", "symlink target is longer than 4096 bytes");
}

TEST_CASE("workspace: upload refuses writes through a symlink of the archive",
          "[workspace][upload]") {
  ExpectRefused(TarBuilder()
                    .Symlink("a", "/etc")
                    .File("a/passwd", "root::0:0::/:/bin/sh\n")
                    .Finish(),
                "a/passwd", "beneath the symlink 'a'");
  ExpectRefused(
      TarBuilder().Dir("d").Symlink("d/link", "..").Dir("d/link/x").Finish(),
      // Directory names are stored with a trailing '/'.
      "d/link/x/", "beneath the symlink 'd/link'");
  // A symlink loop is stored as is (never followed); going through it is
  // refused like any other symlink.
  ExpectRefused(
      TarBuilder().Symlink("loop", "loop").File("loop/x", "").Finish(),
      "loop/x", "beneath the symlink 'loop'");
  // A hard link placed beneath a symlink.
  ExpectRefused(TarBuilder()
                    .File("f", "x")
                    .Symlink("s", "/tmp")
                    .Hardlink("s/f", "f")
                    .Finish(),
                "s/f", "beneath the symlink 's'");
  // Once replaced by a directory, the path is a directory again.
  RecordingSink sink;
  REQUIRE(
      Read(
          TarBuilder().Symlink("a", "/etc").Dir("a").File("a/ok", "x").Finish(),
          sink)
          .ok());
}

TEST_CASE("workspace: upload refuses entries beneath a regular file",
          "[workspace][upload]") {
  ExpectRefused(TarBuilder().File("f", "x").File("f/g", "y").Finish(), "f/g",
                "beneath the regular file 'f'");
  ExpectRefused(
      TarBuilder().File("f", "x").Hardlink("h", "f").Dir("h/sub").Finish(),
      "h/sub/", "beneath the regular file 'h'");
}

TEST_CASE("workspace: upload refuses hard links out of the archive's files",
          "[workspace][upload]") {
  ExpectRefused(TarBuilder().Hardlink("h", "/etc/shadow").Finish(), "h",
                "hard link target: absolute path");
  ExpectRefused(TarBuilder().Hardlink("h", "../outside").Finish(), "h",
                "hard link target: '..' path component");
  // To a file that exists on the host but not earlier in the archive.
  ExpectRefused(TarBuilder().Hardlink("h", "etc/passwd").Finish(), "h",
                "is not an earlier regular file");
  // To a later entry.
  ExpectRefused(TarBuilder().Hardlink("h", "later").File("later", "x").Finish(),
                "h", "is not an earlier regular file");
  // To a directory or a symlink.
  ExpectRefused(TarBuilder().Dir("d").Hardlink("h", "d").Finish(), "h",
                "is not an earlier regular file");
  ExpectRefused(
      TarBuilder().Symlink("s", "/etc/passwd").Hardlink("h", "s").Finish(), "h",
      "is not an earlier regular file");
  RecordingSink self_sink;
  auto self =
      Read(TarBuilder().File("f", "x").Hardlink("f", "f").Finish(), self_sink);
  CHECK_THAT(std::string(self.status().message()),
             Catch::Contains("archive entry 'f': hard link to itself"));
  CHECK(self_sink.items.size() == 1);
  // A hard link to a hard link of a file is a link to that file.
  RecordingSink sink;
  auto stats = Read(TarBuilder()
                        .File("f", "x")
                        .Hardlink("g", "f")
                        .Hardlink("h", "./g")
                        .Finish(),
                    sink);
  REQUIRE(stats.ok());
  CHECK(sink.items.back().entry.link_target() == "g");
}

TEST_CASE("workspace: upload refuses devices, fifos and sockets",
          "[workspace][upload]") {
  ExpectRefused(TarBuilder().Special("dev/sda", AE_IFBLK).Finish(), "dev/sda",
                "device nodes are not allowed");
  ExpectRefused(TarBuilder().Special("mem", AE_IFCHR).Finish(), "mem",
                "device nodes are not allowed");
  ExpectRefused(TarBuilder().Special("pipe", AE_IFIFO).Finish(), "pipe",
                "fifos are not allowed");
}

TEST_CASE("workspace: upload drops setuid, setgid and sticky bits",
          "[workspace][upload]") {
  RecordingSink sink;
  auto stats = Read(TarBuilder()
                        .File("suid", "#!/bin/sh\n", 04755)
                        .File("sgid", "x", 02711)
                        .Dir("tmp", 01777)
                        .File("plain", "y", 0600)
                        .Finish(),
                    sink);
  REQUIRE(stats.ok());
  CHECK(stats->stripped_modes == 3);
  CHECK(sink.Find("suid")->entry.mode() == 0755);
  CHECK(sink.Find("sgid")->entry.mode() == 0711);
  CHECK(sink.Find("tmp")->entry.mode() == 0777);
  CHECK(sink.Find("plain")->entry.mode() == 0600);
}

TEST_CASE("workspace: upload stops a bomb by size", "[workspace][upload]") {
  // 64 MiB of zeros compress to about 64 KiB.
  const std::string bomb = TarBuilder(archive_write_add_filter_gzip)
                               .Zeros("zeros", 64 << 20)
                               .Finish();
  REQUIRE(bomb.size() < (1 << 20));
  UploadLimits limits;
  limits.max_bytes = 1 << 20;
  ExpectRefused(bomb, "zeros", "exceeds the limit of 1048576 bytes", limits);

  // Within the limit, the same archive passes.
  RecordingSink sink;
  limits.max_bytes = 64 << 20;
  auto stats = Read(bomb, sink, limits);
  REQUIRE(stats.ok());
  CHECK(stats->bytes == 64u << 20);

  // Many files, each under the limit, add up over it.
  ExpectRefused(TarBuilder()
                    .File("a", std::string(600, 'a'))
                    .File("b", std::string(600, 'b'))
                    .Finish(),
                "b", "exceeds the limit of 1000 bytes",
                UploadLimits{.max_bytes = 1000});
}

TEST_CASE("workspace: upload caps the raw stream", "[workspace][upload]") {
  // Within the content and entry limits, but followed by megabytes of
  // padding: the raw cap (max_bytes + 2 KiB per entry + 1 MiB) ends it
  // without reading everything.
  const std::string archive =
      TarBuilder().File("small", "x").Finish() + std::string(3 << 20, '\0');
  UploadLimits limits{.max_bytes = 1000, .max_entries = 10};
  RecordingSink sink;
  size_t pulled = 0;
  ChunkReader inner = ChunksOf(archive, 4096);
  auto stats = ReadUploadArchive(
      [&]() -> absl::StatusOr<std::optional<std::string>> {
        auto next = inner();
        if (next.ok() && next->has_value()) pulled += (*next)->size();
        return next;
      },
      limits, sink);
  REQUIRE_FALSE(stats.ok());
  CHECK(stats.status().code() == absl::StatusCode::kInvalidArgument);
  CHECK_THAT(std::string(stats.status().message()),
             Catch::Contains("exceeds the limit of 1070056 raw bytes"));
  CHECK(pulled < 1070056 + 8192);

  // With the default limits the padding is read to the end and counted.
  RecordingSink padded;
  auto ok = Read(archive, padded);
  REQUIRE(ok.ok());
  CHECK(ok->archive_bytes == archive.size());
}

TEST_CASE("workspace: upload stops a bomb by entry count",
          "[workspace][upload]") {
  TarBuilder writer(archive_write_add_filter_gzip);
  for (int i = 0; i < 200; ++i) writer.File("e" + std::to_string(i), "");
  UploadLimits limits;
  limits.max_entries = 100;
  ExpectRefused(writer.Finish(), "e100", "exceeds the limit of 100 entries",
                limits);
}

TEST_CASE("workspace: upload counts sparse files at their full size",
          "[workspace][upload]") {
  const std::string archive = TarBuilder(nullptr, archive_write_set_format_pax)
                                  .Sparse("sparse", 200000, 100000, "middle")
                                  .Finish();
  RecordingSink sink;
  const UploadStats stats = ReadOk(archive, sink);
  CHECK(stats.bytes == 200000);
  REQUIRE(sink.items.size() == 1);
  const std::string& data = sink.items[0].data;
  REQUIRE(data.size() == 200000);
  CHECK(data.substr(100000, 6) == "middle");
  CHECK(data.substr(0, 100000) == std::string(100000, '\0'));
  CHECK(sink.items[0].largest_chunk <= 64 * 1024);

  ExpectRefused(archive, "sparse", "exceeds the limit of 150000 bytes",
                UploadLimits{.max_bytes = 150000});
}

TEST_CASE("workspace: upload passes duplicate paths on",
          "[workspace][upload]") {
  RecordingSink sink;
  auto stats = Read(
      TarBuilder().File("a", "first").File("./a", "second").Finish(), sink);
  REQUIRE(stats.ok());
  REQUIRE(sink.items.size() == 2);
  CHECK(sink.items[1].data == "second");
}

TEST_CASE("workspace: upload fails on a truncated archive",
          "[workspace][upload]") {
  const std::string archive =
      TarBuilder().File("big", std::string(50000, 'b')).Finish();
  RecordingSink sink;
  auto stats = Read(archive.substr(0, 20000), sink);
  REQUIRE_FALSE(stats.ok());
  CHECK(stats.status().code() == absl::StatusCode::kInvalidArgument);
}

TEST_CASE("workspace: upload returns the reader's and the sink's errors",
          "[workspace][upload]") {
  RecordingSink sink;
  auto stats = ReadUploadArchive(
      []() -> absl::StatusOr<std::optional<std::string>> {
        return absl::CancelledError("client went away");
      },
      {}, sink);
  CHECK(stats.status().code() == absl::StatusCode::kCancelled);

  class FailingSink : public EntrySink {
   public:
    absl::Status OnEntry(const corral::agent::v1::FsEntry&) override {
      return absl::UnavailableError("agent gone");
    }
    absl::Status OnData(std::string_view) override { return absl::OkStatus(); }
  } failing;
  auto failed = ReadUploadArchive(
      ChunksOf(TarBuilder().File("a", "x").Finish()), {}, failing);
  CHECK(failed.status().code() == absl::StatusCode::kUnavailable);
}

TEST_CASE("workspace: upload keeps names that are not UTF-8",
          "[workspace][upload]") {
  const std::string name = "caf\xe9.txt";
  RecordingSink sink;
  ReadOk(TarBuilder().File(name, "latin-1").Finish(), sink);
  REQUIRE(sink.items.size() == 1);
  CHECK(sink.items[0].entry.path() == name);
}

}  // namespace
}  // namespace corral::daemon::workspace

namespace corral::daemon::workspace {
namespace {

TEST_CASE("workspace: upload keeps UTF-8 names of pax archives",
          "[workspace][upload]") {
  // What GNU tar or Python write in a UTF-8 locale: a pax "path" record in
  // UTF-8 without hdrcharset. The daemon runs in the C locale, where
  // libarchive cannot convert it; the bytes must come through unchanged.
  const std::string name = "caf\xc3\xa9/\xe6\x97\xa5\xe6\x9c\xac.txt";
  // libarchive's writer cannot produce it in the C locale: build the pax
  // records by hand.
  auto header = [](const std::string& name, char type, size_t size) {
    std::string block(512, '\0');
    auto put = [&block](size_t offset, const std::string& value) {
      block.replace(offset, value.size(), value);
    };
    auto octal = [](uint64_t value, int width) {
      char text[32];
      std::snprintf(text, sizeof(text), "%0*llo", width,
                    static_cast<unsigned long long>(value));
      return std::string(text);
    };
    put(0, name);
    put(100, octal(0644, 7));
    put(108, octal(0, 7));
    put(116, octal(0, 7));
    put(124, octal(size, 11));
    put(136, octal(1'700'000'000, 11));
    put(148, "        ");
    block[156] = type;
    put(257, std::string("ustar\0", 6) + "00");
    unsigned checksum = 0;
    for (unsigned char c : block) checksum += c;
    put(148, octal(checksum, 6));
    block[154] = '\0';
    return block;
  };
  const std::string body = "path=" + name + "\n";
  // A record's length counts its own digits: 2 digits + space + body.
  const std::string record = std::to_string(body.size() + 3) + " " + body;
  REQUIRE(record.size() == body.size() + 3);
  std::string bytes = header("PaxHeaders/x", 'x', record.size());
  bytes += record + std::string(512 - record.size(), '\0');
  bytes += header("fallback-name", '0', 2);
  bytes += "hi" + std::string(510, '\0');
  bytes += std::string(1024, '\0');

  testing::RecordingSink sink;
  auto stats = ReadUploadArchive(testing::ChunksOf(bytes), {}, sink);
  INFO(stats.status().ToString());
  REQUIRE(stats.ok());
  REQUIRE(sink.items.size() == 1);
  CHECK(sink.items[0].entry.path() == name);
  CHECK(sink.items[0].data == "hi");
}

}  // namespace
}  // namespace corral::daemon::workspace
