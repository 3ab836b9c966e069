// OutputLog: the bounded, offset-addressed output of a process and its file.
#include "daemon/core/output_log.h"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <string>

#include "daemon/core/processes.h"
#include "tests/test_util.h"

namespace corral::daemon {
namespace {

using corral::testing::TempDir;

std::string Joined(const OutputLog::Slice& slice) {
  std::string all;
  for (const auto& piece : slice.pieces) all += piece.data;
  return all;
}

OutputLimits Small(size_t capacity, size_t max_pieces = 8192) {
  OutputLimits limits;
  limits.capacity = capacity;
  limits.max_pieces = max_pieces;
  return limits;
}

std::string Numbers(int from, int to) {
  std::string out;
  for (int i = from; i <= to; ++i) out += std::to_string(i) + "\n";
  return out;
}

off_t FileSize(const std::string& path) {
  struct stat st {};
  REQUIRE(::stat(path.c_str(), &st) == 0);
  return st.st_size;
}

TEST_CASE("output keeps both streams in order with growing offsets",
          "[output_log]") {
  OutputLog log(Small(1024));
  REQUIRE(log.Append(1, 0, "out1 ").ok());
  REQUIRE(log.Append(2, 0, "err1 ").ok());
  REQUIRE(log.Append(1, 5, "out2").ok());
  CHECK(log.start() == 0);
  CHECK(log.end() == 14);
  CHECK(log.stream_end(1) == 9);
  CHECK(log.stream_end(2) == 5);
  auto slice = log.Read(0, 100);
  REQUIRE(slice.ok());
  REQUIRE(slice->pieces.size() == 3);
  CHECK(slice->pieces[0].stream == 1);
  CHECK(slice->pieces[1].stream == 2);
  CHECK(slice->pieces[1].offset == 5);
  CHECK(slice->pieces[2].data == "out2");
  CHECK(slice->next == 14);
  CHECK(slice->missed == 0);
  // From the middle of a piece, bounded.
  auto part = log.Read(7, 5);
  REQUIRE(part.ok());
  CHECK(Joined(*part) == "r1 ou");
  CHECK(part->next == 12);
  CHECK(log.Read(15, 1).status().code() == absl::StatusCode::kOutOfRange);
  auto at_end = log.Read(14, 10);
  REQUIRE(at_end.ok());
  CHECK(at_end->pieces.empty());
  CHECK(at_end->next == 14);
}

TEST_CASE(
    "a full log drops its oldest bytes and tells readers what they "
    "missed",
    "[output_log]") {
  OutputLog log(Small(100));
  const std::string data = Numbers(1, 200);  // 692 bytes
  for (size_t at = 0; at < data.size(); at += 7) {
    REQUIRE(log.Append(1, at, data.substr(at, 7)).ok());
  }
  CHECK(log.end() == data.size());
  CHECK(log.end() - log.start() == 100);
  auto slice = log.Read(10, 1000);
  REQUIRE(slice.ok());
  CHECK(slice->missed == log.start() - 10);
  CHECK(slice->offset == log.start());
  CHECK(Joined(*slice) == data.substr(data.size() - 100));
}

TEST_CASE("the piece count is bounded too", "[output_log]") {
  OutputLog log(Small(1 << 20, 10));
  for (int i = 0; i < 50; ++i) {
    REQUIRE(log.Append(1 + i % 2, i / 2, "x").ok());
  }
  auto slice = log.Read(0, 1000);
  REQUIRE(slice.ok());
  CHECK(slice->pieces.size() == 10);
  CHECK(slice->missed == 40);
}

TEST_CASE("replayed bytes are dropped and lost bytes become a gap",
          "[output_log]") {
  OutputLog log(Small(1024));
  REQUIRE(log.Append(1, 0, "abcdef").ok());
  // A resumed agent sends again from offset 3: only "ghi" is new.
  REQUIRE(log.Append(1, 3, "defghi").ok());
  CHECK(log.end() == 9);
  REQUIRE(log.Append(1, 2, "cd").ok());  // wholly old
  CHECK(log.end() == 9);
  // Bytes 9..11 of stdout never arrived.
  REQUIRE(log.Append(1, 12, "mno").ok());
  CHECK(log.end() == 15);
  auto first = log.Read(0, 100);
  REQUIRE(first.ok());
  CHECK(Joined(*first) == "abcdefghi");  // stops at the hole
  CHECK(first->next == 9);
  auto second = log.Read(first->next, 100);
  REQUIRE(second.ok());
  CHECK(second->missed == 3);
  CHECK(second->offset == 12);
  CHECK(Joined(*second) == "mno");
}

TEST_CASE("the file brings the output back, torn last record cut off",
          "[output_log]") {
  TempDir dir;
  const std::string path = dir.path().string() + "/p.log";
  {
    auto log = OutputLog::Open(path, Small(1024));
    REQUIRE(log.ok());
    REQUIRE((*log)->Append(1, 0, "hello ").ok());
    REQUIRE((*log)->Append(2, 0, "oops").ok());
    REQUIRE((*log)->Append(1, 6, "world").ok());
  }
  const off_t whole = FileSize(path);
  {
    // A daemon killed in the middle of a record.
    std::ofstream out(path, std::ios::app | std::ios::binary);
    out << std::string("\x05\x00\x00\x00\x01", 5) << "partial";
  }
  auto log = OutputLog::Open(path, Small(1024));
  REQUIRE(log.ok());
  CHECK(FileSize(path) == whole);
  CHECK((*log)->end() == 15);
  CHECK((*log)->stream_end(1) == 11);
  CHECK((*log)->stream_end(2) == 4);
  auto slice = (*log)->Read(0, 100);
  REQUIRE(slice.ok());
  REQUIRE(slice->pieces.size() == 3);
  CHECK(slice->pieces[1].stream == 2);
  CHECK(Joined(*slice) == "hello oopsworld");
  // Appending goes on from there, and survives another reopen.
  REQUIRE((*log)->Append(1, 11, "!").ok());
  log->reset();
  auto again = OutputLog::Open(path, Small(1024));
  REQUIRE(again.ok());
  auto all = (*again)->Read(0, 100);
  REQUIRE(all.ok());
  CHECK(Joined(*all) == "hello oopsworld!");
}

TEST_CASE("the file is compacted and stays bounded", "[output_log]") {
  TempDir dir;
  const std::string path = dir.path().string() + "/p.log";
  const size_t capacity = 4096;
  std::string expected;
  {
    auto log = OutputLog::Open(path, Small(capacity));
    REQUIRE(log.ok());
    const std::string data = Numbers(1, 100000);
    for (size_t at = 0; at < data.size(); at += 1000) {
      REQUIRE((*log)->Append(1, at, data.substr(at, 1000)).ok());
      CHECK(FileSize(path) <=
            static_cast<off_t>(2 * capacity + (64 << 10) + 1000 + 64));
    }
    expected = data.substr(data.size() - capacity);
  }
  auto log = OutputLog::Open(path, Small(capacity));
  REQUIRE(log.ok());
  auto slice = (*log)->Read((*log)->start(), capacity);
  REQUIRE(slice.ok());
  CHECK(Joined(*slice) == expected);
  CHECK((*log)->end() == Numbers(1, 100000).size());
}

TEST_CASE("a file that is not a log is started over", "[output_log]") {
  TempDir dir;
  const std::string path = dir.path().string() + "/p.log";
  {
    std::ofstream out(path, std::ios::binary);
    out << "not a log at all";
  }
  auto log = OutputLog::Open(path, Small(1024));
  REQUIRE(log.ok());
  CHECK((*log)->end() == 0);
  REQUIRE(::symlink(path.c_str(),
                    (dir.path().string() + "/link.log").c_str()) == 0);
  CHECK_FALSE(
      OutputLog::Open(dir.path().string() + "/link.log", Small(1024)).ok());
}

}  // namespace
}  // namespace corral::daemon

namespace corral::daemon {
namespace {

TEST_CASE("a port listens when /proc/net/tcp has it in state LISTEN") {
  const std::string tcp =
      "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when "
      "retrnsmt   uid  timeout inode\n"
      "   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 "
      "00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n"
      "   1: 0100007F:2382 0100007F:A1B2 01 00000000:00000000 00:00000000 "
      "00000000     0        0 12346 1 0000000000000000 20 4 30 10 -1\n";
  CHECK(ListensOn(tcp, 8000));        // 0x1F40, LISTEN
  CHECK_FALSE(ListensOn(tcp, 9090));  // 0x2382, only ESTABLISHED
  CHECK_FALSE(ListensOn(tcp, 80));
  const std::string tcp6 =
      "  sl  local_address                         remote_address ...\n"
      "   0: 00000000000000000000000000000000:1F90 "
      "00000000000000000000000000000000:0000 0A 00000000:00000000\n";
  CHECK(ListensOn(tcp6, 8080));
  CHECK_FALSE(ListensOn("", 8080));
  CHECK_FALSE(ListensOn("header only\n   0: garbage", 8080));
}

}  // namespace
}  // namespace corral::daemon
