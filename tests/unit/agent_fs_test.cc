// Unit tests of the agent's file operations (guest-agent/fs_ops.h), run in
// process on memfds, and of the FsRecord codec. Every refused Unpack also
// checks what was not written: nothing outside the root, no temporary files.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "corral/agent/v1/agent.pb.h"
#include "corral/unique_fd.h"
#include "guest-agent/fs_ops.h"
#include "guest-agent/wire/fs_record_codec.h"
#include "tests/integration/agent_test_util.h"

namespace {

namespace v1 = corral::agent::v1;
namespace wire = corral::agent::wire;
namespace fs = std::filesystem;
using corral::UniqueFd;
using corral::agent::testing::ReadFile;
using corral::agent::testing::TempDir;

// ---- Helpers ----------------------------------------------------------------

void WriteFile(const std::string& path, const std::string& content,
               mode_t mode = 0644) {
  fs::create_directories(fs::path(path).parent_path());
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
  }
  REQUIRE(::chmod(path.c_str(), mode) == 0);
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

struct stat Lstat(const std::string& path) {
  struct stat st {};
  REQUIRE(::lstat(path.c_str(), &st) == 0);
  return st;
}

// Every path beneath `root` (relative, sorted), never following symlinks
// (std::filesystem's recursive iterator stats symlinks, and loops make it
// throw).
void AddTree(const std::string& dir, const std::string& prefix,
             std::set<std::string>* out) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    const std::string path = prefix.empty() ? name : prefix + "/" + name;
    out->insert(path);
    if (fs::is_directory(fs::symlink_status(entry.path()))) {
      AddTree(entry.path().string(), path, out);
    }
  }
}

std::set<std::string> Tree(const std::string& root) {
  std::set<std::string> out;
  if (fs::is_directory(fs::symlink_status(root))) AddTree(root, "", &out);
  return out;
}

bool HasTempFiles(const std::string& root) {
  for (const std::string& path : Tree(root)) {
    if (fs::path(path).filename().string().rfind(".corral-tmp-", 0) == 0) {
      return true;
    }
  }
  return false;
}

UniqueFd MemFd(const std::string& content = "") {
  UniqueFd fd(::memfd_create("agent-fs-test", MFD_CLOEXEC));
  REQUIRE(fd.valid());
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = ::write(fd.get(), content.data() + done, content.size() - done);
    REQUIRE(n > 0);
    done += static_cast<size_t>(n);
  }
  REQUIRE(::lseek(fd.get(), 0, SEEK_SET) == 0);
  return fd;
}

std::string ReadAll(int fd) {
  REQUIRE(::lseek(fd, 0, SEEK_SET) == 0);
  std::string out;
  char buffer[65536];
  for (;;) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    REQUIRE(n >= 0);
    if (n == 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

struct Result {
  int code = -1;
  std::vector<v1::FsRecord> records;  // all but the summary
  bool has_summary = false;
  v1::FsSummary summary;
  std::string error;  // stderr
  std::string raw;    // stdout bytes
};

Result Run(const v1::FsRequest& request, const std::string& workspace,
           const std::string& input = "") {
  UniqueFd in = MemFd(input), out = MemFd(), err = MemFd();
  corral::agent::FsOptions options;
  options.workspace = workspace;
  Result result;
  result.code = corral::agent::RunFsOperation(request, in.get(), out.get(),
                                              err.get(), options);
  result.raw = ReadAll(out.get());
  result.error = ReadAll(err.get());
  wire::FsRecordDecoder decoder;
  decoder.Feed(result.raw);
  v1::FsRecord record;
  while (decoder.Next(&record)) {
    // The summary is the last record, and comes once.
    REQUIRE_FALSE(result.has_summary);
    if (record.has_summary()) {
      result.has_summary = true;
      result.summary = record.summary();
    } else {
      result.records.push_back(record);
    }
  }
  REQUIRE_FALSE(decoder.failed());
  REQUIRE(decoder.buffered_bytes() == 0);
  if (result.code == 0) {
    CHECK(result.has_summary);
    CHECK(result.error.empty());
  } else {
    CHECK(result.code == 1);
    CHECK_FALSE(result.has_summary);
    // One line.
    CHECK(!result.error.empty());
    CHECK(result.error.back() == '\n');
    CHECK(result.error.find('\n') == result.error.size() - 1);
  }
  return result;
}

// Input streams for Write and Unpack.
struct Stream {
  std::string bytes;
  Stream& Entry(const std::string& path, v1::EntryType type, uint32_t mode,
                uint64_t size = 0, const std::string& target = "",
                int64_t mtime_ns = 0) {
    v1::FsRecord record;
    v1::FsEntry* entry = record.mutable_entry();
    entry->set_path(path);
    entry->set_type(type);
    entry->set_mode(mode);
    entry->set_size(size);
    entry->set_link_target(target);
    entry->set_mtime_ns(mtime_ns);
    REQUIRE(wire::AppendFsRecord(record, &bytes));
    return *this;
  }
  Stream& File(const std::string& path, const std::string& content,
               uint32_t mode = 0644, int64_t mtime_ns = 0) {
    Entry(path, v1::ENTRY_TYPE_REGULAR, mode, content.size(), "", mtime_ns);
    return Data(content);
  }
  Stream& Dir(const std::string& path, uint32_t mode = 0755) {
    return Entry(path, v1::ENTRY_TYPE_DIRECTORY, mode);
  }
  Stream& Symlink(const std::string& path, const std::string& target) {
    return Entry(path, v1::ENTRY_TYPE_SYMLINK, 0777, 0, target);
  }
  Stream& Hardlink(const std::string& path, const std::string& target) {
    return Entry(path, v1::ENTRY_TYPE_HARDLINK, 0644, 0, target);
  }
  // Raw data records (split at the 64 KiB chunk size).
  Stream& Data(const std::string& content) {
    for (size_t at = 0; at < content.size(); at += wire::kFsDataChunkBytes) {
      v1::FsRecord record;
      record.set_data(content.substr(at, wire::kFsDataChunkBytes));
      REQUIRE(wire::AppendFsRecord(record, &bytes));
    }
    return *this;
  }
};

v1::FsRequest UnpackRequest(const std::string& root) {
  v1::FsRequest request;
  request.mutable_unpack()->set_root(root);
  return request;
}

v1::FsRequest PackRequest(const std::string& root,
                          std::vector<std::string> paths = {},
                          bool recursive = true) {
  v1::FsRequest request;
  request.mutable_pack()->set_root(root);
  for (auto& path : paths) request.mutable_pack()->add_paths(path);
  request.mutable_pack()->set_recursive(recursive);
  return request;
}

std::vector<std::string> Paths(const Result& result) {
  std::vector<std::string> out;
  for (const auto& record : result.records) {
    if (record.has_entry()) out.push_back(record.entry().path());
  }
  return out;
}

// Unpacks `stream` into sandbox/root and expects a failure naming `entry`
// with `why`; then checks that nothing was written outside the root and no
// temporary file was left.
struct Hostile {
  TempDir sandbox;
  std::string root = sandbox / "root";
  std::string outside = sandbox / "outside";
  Hostile() { fs::create_directories(outside); }
  void Refused(const Stream& stream, const std::string& entry,
               const std::string& why) {
    Result result = Run(UnpackRequest(root), sandbox.path, stream.bytes);
    INFO(result.error);
    CHECK(result.code == 1);
    CHECK(result.error.find("entry '" + entry + "'") != std::string::npos);
    CHECK(result.error.find(why) != std::string::npos);
    CHECK(Tree(outside).empty());
    CHECK_FALSE(HasTempFiles(root));
  }
};

}  // namespace

// ---- Codec ------------------------------------------------------------------

TEST_CASE("fs record codec round trips and rejects bad input", "[agent_fs]") {
  std::string bytes;
  v1::FsRecord entry;
  entry.mutable_entry()->set_path("a/b");
  entry.mutable_entry()->set_size(3);
  REQUIRE(wire::AppendFsRecord(entry, &bytes));
  v1::FsRecord data;
  data.set_data("xyz");
  REQUIRE(wire::AppendFsRecord(data, &bytes));
  v1::FsRecord summary;
  summary.mutable_summary();  // an empty summary still has its oneof tag
  REQUIRE(wire::AppendFsRecord(summary, &bytes));

  // An empty record cannot be carried; nothing is appended.
  const size_t before = bytes.size();
  CHECK_FALSE(wire::AppendFsRecord(v1::FsRecord(), &bytes));
  CHECK(bytes.size() == before);
  // A data record with an empty payload still serializes (tag + length).
  v1::FsRecord empty_data;
  empty_data.set_data("");
  CHECK(empty_data.ByteSizeLong() == 2);
  // Too big.
  v1::FsRecord huge;
  huge.set_data(std::string(wire::kMaxFsRecordBytes, 'x'));
  CHECK_FALSE(wire::AppendFsRecord(huge, &bytes));
  CHECK(bytes.size() == before);

  // Byte by byte.
  wire::FsRecordDecoder decoder;
  std::vector<v1::FsRecord> got;
  v1::FsRecord record;
  for (char c : bytes) {
    decoder.Feed(std::string_view(&c, 1));
    while (decoder.Next(&record)) got.push_back(record);
  }
  REQUIRE(got.size() == 3);
  CHECK(got[0].entry().path() == "a/b");
  CHECK(got[1].data() == "xyz");
  CHECK(got[2].has_summary());
  CHECK(decoder.buffered_bytes() == 0);
  CHECK_FALSE(decoder.failed());

  SECTION("zero length is a sticky error") {
    wire::FsRecordDecoder bad;
    bad.Feed(std::string("\0\0\0\0", 4));
    CHECK_FALSE(bad.Next(&record));
    CHECK(bad.failed());
    bad.Feed(bytes);
    CHECK_FALSE(bad.Next(&record));
  }
  SECTION("oversized length") {
    wire::FsRecordDecoder bad;
    const uint32_t n = wire::kMaxFsRecordBytes + 1;
    char prefix[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16),
                      static_cast<char>(n >> 8), static_cast<char>(n)};
    bad.Feed(std::string_view(prefix, 4));
    CHECK_FALSE(bad.Next(&record));
    CHECK(bad.error().find("exceeds") != std::string::npos);
  }
  SECTION("unparsable record") {
    wire::FsRecordDecoder bad;
    bad.Feed(std::string("\0\0\0\2\xff\xff", 6));
    CHECK_FALSE(bad.Next(&record));
    CHECK(bad.failed());
  }
}

// ---- Stat, List, Read -------------------------------------------------------

TEST_CASE(
    "fs stat resolves relative paths and never follows the last "
    "symlink",
    "[agent_fs]") {
  TempDir ws;
  WriteFile(ws / "dir/file", "hello", 0640);
  REQUIRE(::symlink("dir/file", (ws / "link").c_str()) == 0);

  v1::FsRequest request;
  request.mutable_stat()->set_path("dir//./file");
  Result file = Run(request, ws.path);
  REQUIRE(file.code == 0);
  const v1::FsEntry& entry = file.summary.entry();
  CHECK(entry.path() == ws / "dir/file");
  CHECK(entry.type() == v1::ENTRY_TYPE_REGULAR);
  CHECK(entry.mode() == 0640);
  CHECK(entry.size() == 5);
  struct stat st = Lstat(ws / "dir/file");
  CHECK(entry.mtime_ns() ==
        int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec);
  CHECK(file.summary.now_ns() > 0);

  request.mutable_stat()->set_path(ws / "link");
  Result link = Run(request, "/nonexistent");
  REQUIRE(link.code == 0);
  CHECK(link.summary.entry().type() == v1::ENTRY_TYPE_SYMLINK);
  CHECK(link.summary.entry().link_target() == "dir/file");

  request.mutable_stat()->set_path("missing");
  Result missing = Run(request, ws.path);
  CHECK(missing.error ==
        "'" + ws / "missing" + "': No such file or directory\n");
}

TEST_CASE("fs list: pre-order, sorted, relative, truncation, types",
          "[agent_fs]") {
  TempDir ws;
  WriteFile(ws / "top/b/inner", "1");
  WriteFile(ws / "top/a", "22", 04755);
  WriteFile(ws / "top/B", "333");
  fs::create_directories(ws / "top/c/d");
  REQUIRE(::symlink("/etc", (ws / "top/link").c_str()) == 0);
  REQUIRE(::mkfifo((ws / "top/fifo").c_str(), 0600) == 0);

  v1::FsRequest request;
  request.mutable_list()->set_path("top");
  request.mutable_list()->set_recursive(true);
  Result all = Run(request, ws.path);
  REQUIRE(all.code == 0);
  CHECK(Paths(all) == std::vector<std::string>{"B", "a", "b", "b/inner", "c",
                                               "c/d", "fifo", "link"});
  CHECK(all.summary.entries() == 8);
  CHECK_FALSE(all.summary.truncated());
  for (const auto& record : all.records) {
    const v1::FsEntry& e = record.entry();
    if (e.path() == "a") {
      CHECK(e.type() == v1::ENTRY_TYPE_REGULAR);
      CHECK(e.mode() == 04755);
      CHECK(e.size() == 2);
    }
    if (e.path() == "fifo") CHECK(e.type() == v1::ENTRY_TYPE_OTHER);
    if (e.path() == "link") {
      CHECK(e.type() == v1::ENTRY_TYPE_SYMLINK);
      CHECK(e.link_target() == "/etc");
    }
    if (e.path() == "c") CHECK(e.type() == v1::ENTRY_TYPE_DIRECTORY);
  }
  timespec now;
  ::clock_gettime(CLOCK_REALTIME, &now);
  const int64_t now_ns = int64_t{now.tv_sec} * 1000000000 + now.tv_nsec;
  CHECK(all.summary.now_ns() <= now_ns);
  CHECK(all.summary.now_ns() > now_ns - int64_t{10} * 1000000000);

  request.mutable_list()->set_recursive(false);
  Result flat = Run(request, ws.path);
  CHECK(Paths(flat) ==
        std::vector<std::string>{"B", "a", "b", "c", "fifo", "link"});

  request.mutable_list()->set_recursive(true);
  request.mutable_list()->set_max_entries(4);
  Result truncated = Run(request, ws.path);
  REQUIRE(truncated.code == 0);
  CHECK(Paths(truncated) == std::vector<std::string>{"B", "a", "b", "b/inner"});
  CHECK(truncated.summary.truncated());
  CHECK(truncated.summary.entries() == 4);

  // The listed path itself must not be a symlink.
  REQUIRE(::symlink("top", (ws / "toplink").c_str()) == 0);
  request.mutable_list()->set_path("toplink");
  Result through = Run(request, ws.path);
  CHECK(through.code == 1);
  CHECK(through.error.find("toplink") != std::string::npos);
}

TEST_CASE("fs read: offset, length, refusing non-regular files", "[agent_fs]") {
  TempDir ws;
  std::string content(200000, '\0');
  for (size_t i = 0; i < content.size(); ++i) content[i] = char(i * 7 + 3);
  WriteFile(ws / "f", content);

  auto read = [&](const std::string& path, uint64_t offset, uint64_t length) {
    v1::FsRequest request;
    request.mutable_read()->set_path(path);
    request.mutable_read()->set_offset(offset);
    request.mutable_read()->set_length(length);
    return Run(request, ws.path);
  };
  auto data = [](const Result& result) {
    std::string out;
    for (const auto& record : result.records) {
      REQUIRE(record.has_data());
      CHECK(record.data().size() <= wire::kFsDataChunkBytes);
      CHECK_FALSE(record.data().empty());
      out += record.data();
    }
    return out;
  };
  Result whole = read("f", 0, 0);
  CHECK(data(whole) == content);
  CHECK(whole.summary.bytes() == content.size());
  CHECK(whole.records.size() == 4);
  Result middle = read(ws / "f", 70000, 1000);
  CHECK(data(middle) == content.substr(70000, 1000));
  Result tail = read("f", 199990, 100);
  CHECK(data(tail) == content.substr(199990));
  Result past = read("f", 300000, 0);
  CHECK(past.code == 0);
  CHECK(past.records.empty());

  // A fifo must not block the reader: refused at once.
  REQUIRE(::mkfifo((ws / "fifo").c_str(), 0600) == 0);
  Result fifo = read("fifo", 0, 0);
  CHECK(fifo.error.find("not a regular file") != std::string::npos);
  Result dir = read(ws.path, 0, 0);
  CHECK(dir.code == 1);
}

// ---- Write, Mkdir, Remove, Move ---------------------------------------------

TEST_CASE(
    "fs write replaces atomically, applies the mode, refuses "
    "directories",
    "[agent_fs]") {
  TempDir ws;
  WriteFile(ws / "f", "old content");
  const ino_t old_inode = Lstat(ws / "f").st_ino;
  // A reader that opened the old file keeps seeing the old content.
  UniqueFd reader(::open((ws / "f").c_str(), O_RDONLY | O_CLOEXEC));

  v1::FsRequest request;
  request.mutable_write()->set_path("f");
  request.mutable_write()->set_mode(04600);
  std::string big(150000, 'n');
  Result written = Run(request, ws.path, Stream().Data("new ").Data(big).bytes);
  REQUIRE(written.code == 0);
  CHECK(ReadFile(ws / "f") == "new " + big);
  struct stat st = Lstat(ws / "f");
  CHECK((st.st_mode & 07777) == 0600);  // setuid dropped
  CHECK(st.st_ino != old_inode);
  CHECK(written.summary.bytes() == big.size() + 4);
  CHECK(written.summary.entry().path() == ws / "f");
  CHECK(written.summary.entry().size() == big.size() + 4);
  char buffer[32] = {};
  CHECK(::read(reader.get(), buffer, sizeof(buffer)) == 11);
  CHECK(std::string(buffer) == "old content");

  SECTION("default mode, empty file, replacing a symlink") {
    REQUIRE(::symlink("f", (ws / "link").c_str()) == 0);
    request.mutable_write()->set_path("link");
    request.mutable_write()->set_mode(0);
    Result empty = Run(request, ws.path);
    REQUIRE(empty.code == 0);
    CHECK((Lstat(ws / "link").st_mode & 0777) == 0644);
    CHECK(S_ISREG(Lstat(ws / "link").st_mode));
    CHECK(ReadFile(ws / "link").empty());
    CHECK(ReadFile(ws / "f") == "new " + big);  // not written through
  }
  SECTION("refuses a directory") {
    WriteFile(ws / "d/keep", "k");
    request.mutable_write()->set_path("d");
    Result dir = Run(request, ws.path, Stream().Data("x").bytes);
    CHECK(dir.error.find("Is a directory") != std::string::npos);
    CHECK(ReadFile(ws / "d/keep") == "k");
    CHECK(Tree(ws.path) == std::set<std::string>{"d", "d/keep", "f"});
  }
  SECTION("bad input leaves the old file and no temporary") {
    Stream stream;
    stream.Data("partial").Entry("x", v1::ENTRY_TYPE_REGULAR, 0644);
    Result bad = Run(request, ws.path, stream.bytes);
    CHECK(bad.code == 1);
    CHECK(bad.error.find(ws / "f") != std::string::npos);
    CHECK(ReadFile(ws / "f") == "new " + big);
    CHECK(Tree(ws.path) == std::set<std::string>{"f"});
    // Input cut inside a record.
    std::string cut = Stream().Data("abcdef").bytes;
    cut.pop_back();
    Result truncated = Run(request, ws.path, cut);
    CHECK(truncated.code == 1);
    CHECK(Tree(ws.path) == std::set<std::string>{"f"});
  }
  SECTION("create_parents") {
    request.mutable_write()->set_path("a/b/c");
    Result no_parents = Run(request, ws.path, Stream().Data("x").bytes);
    CHECK(no_parents.error.find("No such file") != std::string::npos);
    request.mutable_write()->set_create_parents(true);
    Result parents = Run(request, ws.path, Stream().Data("x").bytes);
    REQUIRE(parents.code == 0);
    CHECK(ReadFile(ws / "a/b/c") == "x");
  }
}

TEST_CASE("fs mkdir, remove, move", "[agent_fs]") {
  TempDir ws;
  v1::FsRequest mkdir;
  mkdir.mutable_mkdir()->set_path("x/y/z");
  CHECK(Run(mkdir, ws.path).code == 1);
  CHECK_FALSE(Exists(ws / "x"));
  mkdir.mutable_mkdir()->set_parents(true);
  mkdir.mutable_mkdir()->set_mode(0700);
  Result made = Run(mkdir, ws.path);
  REQUIRE(made.code == 0);
  CHECK(made.summary.entry().type() == v1::ENTRY_TYPE_DIRECTORY);
  CHECK((Lstat(ws / "x/y/z").st_mode & 07777) == 0700);
  CHECK((Lstat(ws / "x/y").st_mode & 07777) == 0755);
  CHECK(Run(mkdir, ws.path).code == 0);  // -p: existing is fine
  mkdir.mutable_mkdir()->set_parents(false);
  mkdir.mutable_mkdir()->set_mode(0);
  CHECK(Run(mkdir, ws.path).error.find("File exists") != std::string::npos);
  mkdir.mutable_mkdir()->set_path("x/w");
  REQUIRE(Run(mkdir, ws.path).code == 0);
  CHECK((Lstat(ws / "x/w").st_mode & 07777) == 0755);

  // Remove.
  WriteFile(ws / "x/y/z/file", "f");
  TempDir outside;
  WriteFile(outside / "precious", "p");
  REQUIRE(::symlink(outside.path.c_str(), (ws / "x/y/out").c_str()) == 0);
  v1::FsRequest remove;
  remove.mutable_remove()->set_path("x/y");
  Result refused = Run(remove, ws.path);
  CHECK(refused.error.find("Directory not empty") != std::string::npos);
  CHECK(Exists(ws / "x/y/z/file"));
  remove.mutable_remove()->set_recursive(true);
  Result removed = Run(remove, ws.path);
  REQUIRE(removed.code == 0);
  CHECK(removed.summary.entries() == 4);  // y, z, file, out
  CHECK_FALSE(Exists(ws / "x/y"));
  CHECK(ReadFile(outside / "precious") == "p");  // symlink not followed
  remove.mutable_remove()->set_path("x/y");
  CHECK(Run(remove, ws.path).error.find("No such file") != std::string::npos);
  WriteFile(ws / "lone", "l");
  remove.mutable_remove()->set_path("lone");
  remove.mutable_remove()->set_recursive(false);
  CHECK(Run(remove, ws.path).summary.entries() == 1);
  CHECK_FALSE(Exists(ws / "lone"));

  // Move.
  WriteFile(ws / "m", "moved");
  v1::FsRequest move;
  move.mutable_move()->set_from("m");
  move.mutable_move()->set_to(ws / "x/w/n");
  Result moved = Run(move, ws.path);
  REQUIRE(moved.code == 0);
  CHECK(moved.summary.entry().path() == ws / "x/w/n");
  CHECK(ReadFile(ws / "x/w/n") == "moved");
  CHECK_FALSE(Exists(ws / "m"));
  CHECK(Run(move, ws.path).error.find("No such file") != std::string::npos);
}

// ---- Pack -------------------------------------------------------------------

TEST_CASE("fs pack: files, directories, symlinks, ignore_missing",
          "[agent_fs]") {
  TempDir ws;
  WriteFile(ws / "src/d/f1", "one", 0600);
  WriteFile(ws / "src/d/sub/f2", std::string(100000, 'z'));
  WriteFile(ws / "src/top", "t");
  REQUIRE(::symlink("d/f1", (ws / "src/ln").c_str()) == 0);
  REQUIRE(::mkfifo((ws / "src/fifo").c_str(), 0600) == 0);

  SECTION("everything, in List order, data right after each file") {
    Result packed = Run(PackRequest("src"), ws.path);
    REQUIRE(packed.code == 0);
    std::vector<std::string> order;
    std::map<std::string, std::string> content;
    std::string current;
    uint64_t expected = 0;
    for (const auto& record : packed.records) {
      if (record.has_entry()) {
        CHECK(expected == 0);
        current = record.entry().path();
        order.push_back(current);
        expected = record.entry().type() == v1::ENTRY_TYPE_REGULAR
                       ? record.entry().size()
                       : 0;
        CHECK_FALSE(record.entry().changed());
      } else {
        REQUIRE(record.has_data());
        CHECK(record.data().size() <= expected);
        CHECK(record.data().size() <= wire::kFsDataChunkBytes);
        expected -= record.data().size();
        content[current] += record.data();
      }
    }
    CHECK(expected == 0);
    // The fifo is skipped.
    CHECK(order == std::vector<std::string>{"d", "d/f1", "d/sub", "d/sub/f2",
                                            "ln", "top"});
    CHECK(content["d/f1"] == "one");
    CHECK(content["d/sub/f2"] == std::string(100000, 'z'));
    CHECK(packed.summary.entries() == 6);
    CHECK(packed.summary.bytes() == 100004);

    // And it unpacks to the same tree.
    std::string input;
    for (const auto& record : packed.records) {
      REQUIRE(wire::AppendFsRecord(record, &input));
    }
    Result unpacked = Run(UnpackRequest(ws / "copy"), ws.path, input);
    REQUIRE(unpacked.code == 0);
    CHECK(unpacked.summary.entries() == 6);
    CHECK(ReadFile(ws / "copy/d/sub/f2") == std::string(100000, 'z'));
    CHECK((Lstat(ws / "copy/d/f1").st_mode & 0777) == 0600);
    CHECK(fs::read_symlink(ws / "copy/ln") == "d/f1");
    CHECK(Lstat(ws / "copy/d/f1").st_mtim.tv_sec ==
          Lstat(ws / "src/d/f1").st_mtim.tv_sec);
    CHECK(Lstat(ws / "copy/d/f1").st_mtim.tv_nsec ==
          Lstat(ws / "src/d/f1").st_mtim.tv_nsec);
  }
  SECTION("named paths, recursive or not") {
    Result one = Run(PackRequest(ws / "src", {"d/f1", "ln"}, false), "/");
    REQUIRE(one.code == 0);
    CHECK(Paths(one) == std::vector<std::string>{"d/f1", "ln"});
    CHECK(one.records[1].data() == "one");
    CHECK(one.records[2].entry().type() == v1::ENTRY_TYPE_SYMLINK);
    Result flat = Run(PackRequest(ws / "src", {"d"}, false), "/");
    CHECK(Paths(flat) == std::vector<std::string>{"d"});
    Result deep = Run(PackRequest(ws / "src", {"d/sub"}, true), "/");
    CHECK(Paths(deep) == std::vector<std::string>{"d/sub", "d/sub/f2"});
  }
  SECTION("missing paths") {
    Result missing = Run(PackRequest("src", {"nope", "top"}), ws.path);
    CHECK(missing.error.find("'nope': No such file") != std::string::npos);
    v1::FsRequest request = PackRequest("src", {"nope", "x/y", "top"});
    request.mutable_pack()->set_ignore_missing(true);
    Result skipped = Run(request, ws.path);
    REQUIRE(skipped.code == 0);
    CHECK(Paths(skipped) == std::vector<std::string>{"top"});
  }
  SECTION(
      "refuses invalid paths, a symlinked root, packing through a "
      "symlink") {
    CHECK(Run(PackRequest("src", {"../src/top"}), ws.path).error.find("'..'") !=
          std::string::npos);
    CHECK(Run(PackRequest("src", {"/etc/passwd"}), ws.path)
              .error.find("absolute path") != std::string::npos);
    REQUIRE(::symlink("src", (ws / "srclink").c_str()) == 0);
    CHECK(Run(PackRequest("srclink"), ws.path).code == 1);
    REQUIRE(::symlink("d", (ws / "src/dl").c_str()) == 0);
    Result through = Run(PackRequest("src", {"dl/f1"}), ws.path);
    CHECK(through.error.find("refusing to pack through symlink 'dl'") !=
          std::string::npos);
  }
}

// ---- Unpack -----------------------------------------------------------------

TEST_CASE(
    "fs unpack creates root, files, dirs, links with modes and "
    "mtimes",
    "[agent_fs]") {
  TempDir sandbox;
  const int64_t mtime = int64_t{1600000000} * 1000000000 + 123456789;
  Stream stream;
  stream.Dir("d", 0750)
      .File("d/f", "content", 04755, mtime)
      .File("deep/er/file", "auto parents")
      .Symlink("d/ln", "../../../anywhere")
      .Hardlink("d/hard", "d/f")
      .File("empty", "", 02644)
      .Entry("d2", v1::ENTRY_TYPE_DIRECTORY, 01777, 0, "", mtime);
  Result result = Run(UnpackRequest("new/root"), sandbox.path, stream.bytes);
  INFO(result.error);
  REQUIRE(result.code == 0);
  const std::string root = sandbox / "new/root";
  CHECK(result.summary.entries() == 7);
  CHECK(result.summary.bytes() == 7 + 12);
  CHECK(ReadFile(root + "/d/f") == "content");
  CHECK((Lstat(root + "/d/f").st_mode & 07777) == 0755);  // setuid dropped
  CHECK(Lstat(root + "/d/f").st_mtim.tv_sec == 1600000000);
  CHECK(Lstat(root + "/d/f").st_mtim.tv_nsec == 123456789);
  CHECK((Lstat(root + "/d").st_mode & 07777) == 0750);
  CHECK((Lstat(root + "/deep").st_mode & 07777) == 0755);
  CHECK(ReadFile(root + "/deep/er/file") == "auto parents");
  CHECK(fs::read_symlink(root + "/d/ln") == "../../../anywhere");
  CHECK(Lstat(root + "/d/hard").st_ino == Lstat(root + "/d/f").st_ino);
  CHECK((Lstat(root + "/empty").st_mode & 07777) == 0644);
  CHECK((Lstat(root + "/d2").st_mode & 07777) == 0777);  // sticky dropped
  CHECK(Lstat(root + "/d2").st_mtim.tv_sec == 1600000000);
  CHECK_FALSE(HasTempFiles(root));
}

TEST_CASE("fs unpack refuses hostile paths and types", "[agent_fs]") {
  Hostile h;
  SECTION("..") {
    h.Refused(Stream().File("a/../../outside/x", "x"), "a/../../outside/x",
              "'..'");
  }
  SECTION("absolute") {
    h.Refused(Stream().File(h.outside + "/x", "x"), h.outside + "/x",
              "absolute path");
  }
  SECTION("empty component and dot") {
    h.Refused(Stream().File("a//b", "x"), "a//b", "empty path component");
    h.Refused(Stream().File("./b", "x"), "./b", "'.'");
  }
  SECTION("4097-byte path") {
    std::string path;
    while (path.size() < 4097) path += "abcdefgh/";
    path.resize(4097);
    Hostile hh;
    Result result = Run(UnpackRequest(hh.root), hh.sandbox.path,
                        Stream().File(path, "x").bytes);
    CHECK(result.error.find("longer than 4096") != std::string::npos);
    CHECK(Tree(hh.root).empty());
    // Exactly 4096 is fine.
    path.resize(4096);
    if (path.back() == '/') path.back() = 'z';
    Result ok = Run(UnpackRequest(hh.root), hh.sandbox.path,
                    Stream().File(path, "x").bytes);
    CHECK(ok.code == 0);
  }
  SECTION("256-byte component") {
    h.Refused(Stream().File("d/" + std::string(256, 'c'), "x"),
              "d/" + std::string(256, 'c'), "longer than 255");
    CHECK_FALSE(Exists(h.root + "/d"));
  }
  SECTION("NUL in path") {
    Result result = Run(UnpackRequest(h.root), h.sandbox.path,
                        Stream().File(std::string("a\0b", 3), "x").bytes);
    CHECK(result.error.find("'a\\x00b'") != std::string::npos);
    CHECK(result.error.find("NUL") != std::string::npos);
    CHECK(Tree(h.root).empty());
  }
  SECTION("device, fifo and unspecified types") {
    h.Refused(Stream().Entry("dev", v1::ENTRY_TYPE_OTHER, 0644), "dev",
              "unsupported entry type 5");
    h.Refused(Stream().Entry("u", v1::ENTRY_TYPE_UNSPECIFIED, 0644), "u",
              "unsupported entry type 0");
    CHECK(Tree(h.root).empty());
  }
  SECTION("control bytes in a path are escaped on the one error line") {
    Result result = Run(UnpackRequest(h.root), h.sandbox.path,
                        Stream().File("evil\nname/../x", "x").bytes);
    CHECK(result.error.find("evil\\x0aname") != std::string::npos);
  }
}

TEST_CASE("fs unpack never writes through symlinks", "[agent_fs]") {
  Hostile h;
  SECTION("symlink entry, then an entry through it") {
    h.Refused(Stream().Symlink("a", h.outside).File("a/x", "pwned"), "a/x",
              "refusing to write through symlink 'a'");
    CHECK(fs::is_symlink(h.root + "/a"));
  }
  SECTION("relative symlink entry escaping, then a directory through it") {
    h.Refused(
        Stream().Symlink("a", "../outside").Dir("a/sub").File("a/sub/x", "x"),
        "a/sub", "refusing to write through symlink 'a'");
  }
  SECTION("pre-existing symlink pointing outside") {
    fs::create_directories(h.root + "/d");
    REQUIRE(::symlink(h.outside.c_str(), (h.root + "/d/link").c_str()) == 0);
    h.Refused(Stream().File("d/link/x", "pwned"), "d/link/x",
              "refusing to write through symlink 'd/link'");
    // As a final component the symlink is replaced, never written through.
    Result replaced = Run(UnpackRequest(h.root), h.sandbox.path,
                          Stream().File("d/link", "replaced").bytes);
    REQUIRE(replaced.code == 0);
    CHECK(S_ISREG(Lstat(h.root + "/d/link").st_mode));
    CHECK(ReadFile(h.root + "/d/link") == "replaced");
    CHECK(Tree(h.outside).empty());
  }
  SECTION("pre-existing symlink to a file outside is replaced, not written") {
    WriteFile(h.sandbox / "secret", "secret");
    fs::create_directories(h.root);
    REQUIRE(::symlink((h.sandbox / "secret").c_str(),
                      (h.root + "/s").c_str()) == 0);
    Result result = Run(UnpackRequest(h.root), h.sandbox.path,
                        Stream().File("s", "overwritten?").bytes);
    REQUIRE(result.code == 0);
    CHECK(ReadFile(h.sandbox / "secret") == "secret");
    CHECK(ReadFile(h.root + "/s") == "overwritten?");
  }
  SECTION("symlink loops") {
    fs::create_directories(h.root);
    REQUIRE(::symlink("loop", (h.root + "/loop").c_str()) == 0);
    h.Refused(Stream().File("loop/x", "x"), "loop/x",
              "refusing to write through symlink 'loop'");
    h.Refused(Stream().Symlink("p", "q").Symlink("q", "p").File("p/x", "x"),
              "p/x", "refusing to write through symlink 'p'");
  }
  SECTION("the root must not pass through a symlink") {
    fs::create_directories(h.sandbox / "real");
    REQUIRE(::symlink(h.outside.c_str(), (h.sandbox / "real/r").c_str()) == 0);
    Result result = Run(UnpackRequest(h.sandbox / "real/r/root"),
                        h.sandbox.path, Stream().File("x", "x").bytes);
    CHECK(result.error.find("refusing to follow symlink '" + h.sandbox.path +
                            "/real/r'") != std::string::npos);
    CHECK(Tree(h.outside).empty());
  }
}

TEST_CASE("fs unpack hard links stay inside and refer back", "[agent_fs]") {
  Hostile h;
  WriteFile(h.outside + "/../secret", "s");
  SECTION("outside the tree") {
    h.Refused(Stream().Hardlink("l", "../secret"), "l", "'..'");
    h.Refused(Stream().Hardlink("l", h.sandbox / "secret"), "l",
              "absolute path");
  }
  SECTION("to a file that exists but is not in the stream") {
    WriteFile(h.root + "/existing", "e");
    h.Refused(Stream().Hardlink("l", "existing"), "l",
              "not an earlier regular file");
    CHECK_FALSE(Exists(h.root + "/l"));
  }
  SECTION("to a later entry") {
    h.Refused(Stream().Hardlink("l", "f").File("f", "x"), "l",
              "not an earlier regular file");
    CHECK_FALSE(Exists(h.root + "/f"));
  }
  SECTION("to a directory or symlink entry") {
    h.Refused(Stream().Dir("d").Hardlink("l", "d"), "l",
              "not an earlier regular file");
    h.Refused(Stream().Symlink("s", h.sandbox / "secret").Hardlink("l", "s"),
              "l", "not an earlier regular file");
  }
  SECTION("to a regular entry replaced since") {
    h.Refused(
        Stream().File("f", "x").Symlink("f", "/etc/passwd").Hardlink("l", "f"),
        "l", "not an earlier regular file");
    h.Refused(
        Stream().File("d/f", "x").File("d", "now a file").Hardlink("l", "d/f"),
        "l", "not an earlier regular file");
  }
  SECTION("whose directory was replaced by a symlink since") {
    h.Refused(Stream()
                  .File("d/f", "x")
                  .Symlink("d", h.sandbox.path)
                  .Hardlink("l", "d/f"),
              "l", "not an earlier regular file");
  }
  SECTION("placed through a symlink") {
    h.Refused(
        Stream().File("f", "x").Symlink("e", h.outside).Hardlink("e/l", "f"),
        "e/l", "refusing to write through symlink 'e'");
  }
  CHECK(ReadFile(h.sandbox / "secret") == "s");
  CHECK(Lstat(h.sandbox / "secret").st_nlink == 1);
}

TEST_CASE("fs unpack enforces limits and data exactness", "[agent_fs]") {
  Hostile h;
  SECTION("max_entries") {
    v1::FsRequest request = UnpackRequest(h.root);
    request.mutable_unpack()->set_max_entries(2);
    Result result =
        Run(request, h.sandbox.path,
            Stream().File("a", "1").File("b", "2").File("c", "3").bytes);
    CHECK(result.error.find("entry 'c': entry count exceeds max_entries (2)") !=
          std::string::npos);
    CHECK_FALSE(Exists(h.root + "/c"));
    CHECK_FALSE(HasTempFiles(h.root));
  }
  SECTION("max_bytes") {
    v1::FsRequest request = UnpackRequest(h.root);
    request.mutable_unpack()->set_max_bytes(10);
    Result ok = Run(request, h.sandbox.path,
                    Stream().File("a", "12345").File("b", "67890").bytes);
    CHECK(ok.code == 0);
    Result result = Run(request, h.sandbox.path,
                        Stream().File("a", "12345").File("b", "678901").bytes);
    CHECK(result.error.find("entry 'b': content exceeds max_bytes (10)") !=
          std::string::npos);
    CHECK(ReadFile(h.root + "/b") == "67890");  // the earlier, untouched
    CHECK_FALSE(HasTempFiles(h.root));
    // A declared size beyond the limit is refused before any data.
    Result huge =
        Run(request, h.sandbox.path,
            Stream()
                .Entry("c", v1::ENTRY_TYPE_REGULAR, 0644, uint64_t{1} << 62)
                .bytes);
    CHECK(huge.error.find("entry 'c'") != std::string::npos);
    CHECK_FALSE(Exists(h.root + "/c"));
  }
  SECTION("more data than the size") {
    Stream stream;
    stream.Entry("f", v1::ENTRY_TYPE_REGULAR, 0644, 3).Data("abcd");
    h.Refused(stream, "f", "more data than its size");
    CHECK_FALSE(Exists(h.root + "/f"));
  }
  SECTION("extra data after a complete file") {
    Stream stream;
    stream.File("f", "abc").Data("d");
    Result result = Run(UnpackRequest(h.root), h.sandbox.path, stream.bytes);
    CHECK(result.error.find("entry 'f': unexpected data after this entry") !=
          std::string::npos);
  }
  SECTION("data after a directory") {
    h.Refused(Stream().Dir("d").Data("x"), "d", "unexpected data after");
  }
  SECTION("too little data before the end") {
    Stream stream;
    stream.Entry("f", v1::ENTRY_TYPE_REGULAR, 0644, 10).Data("abc");
    h.Refused(stream, "f", "input ended 7 bytes before the end of its data");
    CHECK_FALSE(Exists(h.root + "/f"));
  }
  SECTION("too little data before the next entry") {
    Stream stream;
    stream.Entry("f", v1::ENTRY_TYPE_REGULAR, 0644, 10)
        .Data("abc")
        .File("g", "g");
    h.Refused(stream, "f", "the next entry came 7 bytes before the end");
    CHECK_FALSE(Exists(h.root + "/f"));
    CHECK_FALSE(Exists(h.root + "/g"));
  }
  SECTION("input cut inside a record, and garbage") {
    std::string cut = Stream().File("f", "abcdef").bytes;
    cut.pop_back();
    Result result = Run(UnpackRequest(h.root), h.sandbox.path, cut);
    CHECK(result.error.find("ended inside a record") != std::string::npos);
    CHECK_FALSE(HasTempFiles(h.root));
    Result garbage =
        Run(UnpackRequest(h.root), h.sandbox.path, std::string("\0\0\0\0", 4));
    CHECK(garbage.error.find("input: fs record length 0") != std::string::npos);
  }
  SECTION("a summary in the input") {
    std::string bytes;
    v1::FsRecord record;
    record.mutable_summary()->set_entries(1);
    REQUIRE(wire::AppendFsRecord(record, &bytes));
    Result result = Run(UnpackRequest(h.root), h.sandbox.path, bytes);
    CHECK(result.error.find("unexpected record") != std::string::npos);
  }
}

TEST_CASE("fs unpack replaces entries of other types, clear, delete_missing",
          "[agent_fs]") {
  TempDir sandbox;
  const std::string root = sandbox / "root";
  WriteFile(root + "/dir/inner/x", "x");
  WriteFile(root + "/file", "f");
  WriteFile(root + "/keep/old", "old");
  WriteFile(root + "/keep/sub/stale", "stale");
  TempDir outside;
  WriteFile(outside / "precious", "p");
  REQUIRE(::symlink(outside.path.c_str(), (root + "/dir/out").c_str()) == 0);

  SECTION("directory <-> file") {
    Result result = Run(UnpackRequest(root), sandbox.path,
                        Stream().File("dir", "now a file").Dir("file").bytes);
    INFO(result.error);
    REQUIRE(result.code == 0);
    CHECK(ReadFile(root + "/dir") == "now a file");
    CHECK(fs::is_directory(fs::symlink_status(root + "/file")));
    CHECK(ReadFile(outside / "precious") == "p");  // symlink not followed
    // A file entry then a directory with contents at the same path.
    Result back = Run(UnpackRequest(root), sandbox.path,
                      Stream().Dir("dir").File("dir/y", "y").bytes);
    REQUIRE(back.code == 0);
    CHECK(ReadFile(root + "/dir/y") == "y");
  }
  SECTION("clear") {
    v1::FsRequest request = UnpackRequest(root);
    request.mutable_unpack()->set_clear(true);
    Result result =
        Run(request, sandbox.path, Stream().File("keep/new", "n").bytes);
    REQUIRE(result.code == 0);
    CHECK(Tree(root) == std::set<std::string>{"keep", "keep/new"});
    CHECK(ReadFile(outside / "precious") == "p");
  }
  SECTION("delete_missing") {
    v1::FsRequest request = UnpackRequest(root);
    request.mutable_unpack()->set_delete_missing(true);
    Result result = Run(request, sandbox.path,
                        Stream().File("keep/sub/new", "n").Dir("dir").bytes);
    INFO(result.error);
    REQUIRE(result.code == 0);
    // keep and keep/sub are ancestors of a received entry; dir was received
    // but its contents were not.
    CHECK(Tree(root) ==
          std::set<std::string>{"dir", "keep", "keep/sub", "keep/sub/new"});
    CHECK(ReadFile(outside / "precious") == "p");
  }
}

TEST_CASE("fs requests with bad paths fail cleanly", "[agent_fs]") {
  TempDir ws;
  v1::FsRequest request;
  request.mutable_stat()->set_path(std::string("a\0b", 3));
  CHECK(Run(request, ws.path).error.find("NUL") != std::string::npos);
  request.mutable_stat()->set_path("");
  CHECK(Run(request, ws.path).error == "empty path\n");
  CHECK(Run(v1::FsRequest(), ws.path).error ==
        "no file operation in the request\n");
  v1::FsRequest remove;
  remove.mutable_remove()->set_path("/");
  remove.mutable_remove()->set_recursive(true);
  CHECK(Run(remove, ws.path).error.find("refusing") != std::string::npos);
}
