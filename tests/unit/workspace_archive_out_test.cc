// TarWriter: hostile entry streams refused, and archives that libarchive
// (and so tar) reads back exactly.
#include <archive.h>
#include <archive_entry.h>

#include <catch2/catch.hpp>

#include "daemon/workspace/archive_in.h"
#include "daemon/workspace/archive_out.h"
#include "tests/unit/workspace_test_util.h"

// In the helpers' namespace: their names and the entry types need no
// using-declarations here.
namespace corral::daemon::workspace::testing {
namespace {

struct ReadBack {
  std::string path;
  mode_t type;
  mode_t perm;
  int64_t uid;
  int64_t gid;
  int64_t mtime;
  long mtime_nsec;
  std::string symlink;
  std::string data;
};

// Reads an archive with libarchive alone (every format it knows), as a
// client's tar would.
std::vector<ReadBack> ReadWithLibarchive(const std::string& bytes) {
  struct archive* reader = archive_read_new();
  archive_read_support_format_all(reader);
  archive_read_support_filter_all(reader);
  REQUIRE(archive_read_open_memory(reader, bytes.data(), bytes.size()) ==
          ARCHIVE_OK);
  std::vector<ReadBack> entries;
  struct archive_entry* entry = nullptr;
  int r = ARCHIVE_OK;
  while ((r = archive_read_next_header(reader, &entry)) == ARCHIVE_OK) {
    ReadBack item{
        archive_entry_pathname(entry),
        archive_entry_filetype(entry),
        archive_entry_perm(entry),
        archive_entry_uid(entry),
        archive_entry_gid(entry),
        archive_entry_mtime(entry),
        archive_entry_mtime_nsec(entry),
        archive_entry_symlink(entry) ? archive_entry_symlink(entry) : "",
        ""};
    char buffer[8192];
    la_ssize_t n = 0;
    while ((n = archive_read_data(reader, buffer, sizeof(buffer))) > 0) {
      item.data.append(buffer, static_cast<size_t>(n));
    }
    REQUIRE(n == 0);
    entries.push_back(std::move(item));
  }
  CHECK(r == ARCHIVE_EOF);
  CHECK((archive_format(reader) & ARCHIVE_FORMAT_BASE_MASK) ==
        ARCHIVE_FORMAT_TAR);
  archive_read_free(reader);
  return entries;
}

TEST_CASE("workspace: tar writer round trip", "[workspace][export]") {
  std::string output;
  size_t largest_chunk = 0;
  TarWriter writer([&](std::string_view chunk) {
    largest_chunk = std::max(largest_chunk, chunk.size());
    output.append(chunk);
    return absl::OkStatus();
  });
  std::string big(3 << 20, 'z');
  for (size_t i = 0; i < big.size(); i += 4097) big[i] = '\n';
  const std::string long_name =
      "out/" + std::string(200, 'l') + "/" + std::string(200, 'm');
  REQUIRE(writer
              .OnEntry(MakeEntry("out", ENTRY_TYPE_DIRECTORY, 0750, 0,
                                 1'700'000'000'123'456'789))
              .ok());
  REQUIRE(writer
              .OnEntry(MakeEntry("out/run.sh", ENTRY_TYPE_REGULAR, 04755, 10,
                                 1'600'000'000'000'000'000))
              .ok());
  REQUIRE(writer.OnData("#!/bin/sh\n").ok());
  REQUIRE(writer
              .OnEntry(
                  MakeEntry("out/big", ENTRY_TYPE_REGULAR, 0644, big.size(), 0))
              .ok());
  for (size_t offset = 0; offset < big.size(); offset += 65536) {
    REQUIRE(writer.OnData(std::string_view(big).substr(offset, 65536)).ok());
  }
  REQUIRE(writer
              .OnEntry(MakeEntry("out/link", ENTRY_TYPE_SYMLINK, 0777, 0, 0,
                                 "../../etc/passwd"))
              .ok());
  REQUIRE(writer.OnEntry(MakeEntry(long_name, ENTRY_TYPE_REGULAR, 0600, 0, 0))
              .ok());
  REQUIRE(
      writer.OnEntry(MakeEntry("out/caf\xe9", ENTRY_TYPE_REGULAR, 0644, 0, 0))
          .ok());
  REQUIRE(writer.Finish().ok());
  CHECK(writer.entries() == 6);
  CHECK(writer.bytes() == 10 + big.size());
  CHECK(largest_chunk <= (1 << 20));
  CHECK(output.size() % 512 == 0);

  const auto entries = ReadWithLibarchive(output);
  REQUIRE(entries.size() == 6);
  // libarchive names directories with a trailing '/'.
  CHECK(entries[0].path == "out/");
  CHECK(entries[0].type == AE_IFDIR);
  CHECK(entries[0].perm == 0750);
  CHECK(entries[0].mtime == 1'700'000'000);
  CHECK(entries[1].path == "out/run.sh");
  CHECK(entries[1].type == AE_IFREG);
  CHECK(entries[1].perm == 0755);  // setuid dropped
  CHECK(entries[1].uid == 0);
  CHECK(entries[1].gid == 0);
  CHECK(entries[1].mtime == 1'600'000'000);
  CHECK(entries[1].data == "#!/bin/sh\n");
  CHECK(entries[2].data == big);
  CHECK(entries[3].type == AE_IFLNK);
  CHECK(entries[3].symlink == "../../etc/passwd");
  CHECK(entries[4].path == long_name);
  CHECK(entries[5].path == "out/caf\xe9");

  // What TarWriter writes, ReadUploadArchive accepts (sync back in).
  RecordingSink sink;
  auto stats = ReadUploadArchive(ChunksOf(output), {}, sink);
  INFO(stats.status().ToString());
  REQUIRE(stats.ok());
  CHECK(stats->entries == 6);
  CHECK(sink.Find("out/big")->data == big);
}

TEST_CASE("workspace: tar writer with no entries writes an empty archive",
          "[workspace][export]") {
  std::string output;
  TarWriter writer([&](std::string_view chunk) {
    output.append(chunk);
    return absl::OkStatus();
  });
  REQUIRE(writer.Finish().ok());
  CHECK(output.size() >= 1024);
  CHECK(output.find_first_not_of('\0') == std::string::npos);
}

TEST_CASE("workspace: tar writer refuses hostile entries",
          "[workspace][export]") {
  auto expect = [](const HostileStream& stream) {
    TarWriter writer([](std::string_view) { return absl::OkStatus(); });
    ExpectRefusal<TarWriter>(
        writer, [](TarWriter& w) { return w.Finish(); }, stream);
  };
  for (const HostileStream& stream : CommonHostileStreams()) expect(stream);
  const auto invalid = absl::StatusCode::kInvalidArgument;
  expect({[](EntrySink& w) {
            return w.OnEntry(
                MakeEntry("h", ENTRY_TYPE_HARDLINK, 0644, 0, 0, "x"));
          },
          invalid, "hard link entries cannot be exported"});
  expect(
      {[](EntrySink& w) { return w.OnEntry(MakeEntry("o", ENTRY_TYPE_OTHER)); },
       invalid, "special file entries cannot be exported"});
  expect({[](EntrySink& w) {
            return w.OnEntry(MakeEntry("u", ENTRY_TYPE_UNSPECIFIED));
          },
          invalid, "cannot be exported"});
  expect({[](EntrySink& w) {
            return w.OnEntry(
                MakeEntry("s", ENTRY_TYPE_SYMLINK, 0777, 0, 0, ""));
          },
          invalid, "symlink target"});
}

TEST_CASE("workspace: tar writer returns the sink's error",
          "[workspace][export]") {
  int calls = 0;
  TarWriter writer([&](std::string_view) {
    ++calls;
    return absl::CancelledError("client went away");
  });
  absl::Status status =
      writer.OnEntry(MakeEntry("f", ENTRY_TYPE_REGULAR, 0644, 200000));
  for (int i = 0; status.ok() && i < 4; ++i) {
    status = writer.OnData(std::string(50000, 'x'));
  }
  if (status.ok()) status = writer.Finish();
  CHECK(status.code() == absl::StatusCode::kCancelled);
  CHECK(calls >= 1);
}

}  // namespace
}  // namespace corral::daemon::workspace::testing
