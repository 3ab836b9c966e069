// Unit tests of the agent protocol's frame codec (guest-agent/wire).
#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <vector>

#include "guest-agent/wire/frame_codec.h"

namespace {

namespace v1 = corral::agent::v1;
namespace wire = corral::agent::wire;

v1::Frame OutputFrame(uint64_t stream, std::string data, uint64_t sequence) {
  v1::Frame frame;
  frame.set_stream_id(stream);
  frame.mutable_output()->set_fd(v1::FD_STDERR);
  frame.mutable_output()->set_data(std::move(data));
  frame.mutable_output()->set_sequence(sequence);
  return frame;
}

std::string Encode(const v1::Frame& frame) {
  std::string bytes;
  REQUIRE(wire::AppendFrame(frame, &bytes));
  return bytes;
}

std::string Prefix(uint32_t length) {
  std::string out(4, '\0');
  out[0] = static_cast<char>(length >> 24);
  out[1] = static_cast<char>(length >> 16);
  out[2] = static_cast<char>(length >> 8);
  out[3] = static_cast<char>(length);
  return out;
}

}  // namespace

TEST_CASE("AppendFrame writes a big-endian length and the frame",
          "[agent_wire]") {
  v1::Frame frame;
  frame.mutable_ping()->set_nonce(7);
  std::string bytes = Encode(frame);
  const std::string body = frame.SerializeAsString();
  REQUIRE(bytes.size() == 4 + body.size());
  CHECK(bytes.substr(0, 4) == Prefix(static_cast<uint32_t>(body.size())));
  CHECK(bytes.substr(4) == body);

  // Appends after what is there.
  std::string two = "xy";
  REQUIRE(wire::AppendFrame(frame, &two));
  CHECK(two == "xy" + bytes);
}

TEST_CASE("AppendFrame refuses empty and oversized frames", "[agent_wire]") {
  std::string bytes = "keep";
  CHECK_FALSE(wire::AppendFrame(v1::Frame(), &bytes));
  CHECK(bytes == "keep");
  v1::Frame huge = OutputFrame(1, std::string(wire::kMaxFrameBytes, 'a'), 0);
  CHECK_FALSE(wire::AppendFrame(huge, &bytes));
  CHECK(bytes == "keep");
}

TEST_CASE("Decoder round-trips every kind of frame", "[agent_wire]") {
  std::vector<v1::Frame> frames;
  v1::Frame hello;
  hello.mutable_hello()->set_protocol_version(1);
  hello.mutable_hello()->set_agent_version("0.1.0");
  hello.mutable_hello()->add_capabilities("exec");
  hello.mutable_hello()->set_pid(1);
  frames.push_back(hello);
  v1::Frame start;
  start.set_stream_id(3);
  start.mutable_exec_start()->add_argv("echo");
  start.mutable_exec_start()->add_argv(std::string("a\0b", 3));
  start.mutable_exec_start()->set_timeout_ms(5);
  frames.push_back(start);
  frames.push_back(OutputFrame(3, std::string(70000, '\xff'), 9));
  v1::Frame exit;
  exit.set_stream_id(3);
  exit.mutable_exec_exit()->set_signal(9);
  exit.mutable_exec_exit()->set_stdout_bytes(1u << 31);
  frames.push_back(exit);
  v1::Frame window;
  window.set_stream_id(~uint64_t{0});
  window.mutable_window_update()->set_bytes(UINT32_MAX);
  frames.push_back(window);

  std::string stream;
  for (const auto& frame : frames) stream += Encode(frame);

  wire::FrameDecoder decoder;
  decoder.Feed(stream);
  v1::Frame got;
  for (const auto& frame : frames) {
    REQUIRE(decoder.Next(&got));
    CHECK(got.SerializeAsString() == frame.SerializeAsString());
  }
  CHECK_FALSE(decoder.Next(&got));
  CHECK_FALSE(decoder.failed());
  CHECK(decoder.buffered_bytes() == 0);
}

TEST_CASE("Decoder handles byte-by-byte and random splits", "[agent_wire]") {
  std::string stream;
  const int kFrames = 50;
  for (int i = 0; i < kFrames; ++i) {
    stream += Encode(OutputFrame(i + 1, std::string(i * 37 + 1, 'a' + i % 26),
                                 static_cast<uint64_t>(i)));
  }
  SECTION("one byte at a time") {
    wire::FrameDecoder decoder;
    v1::Frame got;
    int seen = 0;
    for (char c : stream) {
      decoder.Feed(std::string_view(&c, 1));
      while (decoder.Next(&got)) {
        CHECK(got.stream_id() == static_cast<uint64_t>(seen + 1));
        CHECK(got.output().sequence() == static_cast<uint64_t>(seen));
        CHECK(got.output().data().size() == static_cast<size_t>(seen * 37 + 1));
        ++seen;
      }
    }
    CHECK(seen == kFrames);
    CHECK(decoder.buffered_bytes() == 0);
  }
  SECTION("random chunks") {
    std::mt19937 rng(1234);
    for (int round = 0; round < 20; ++round) {
      wire::FrameDecoder decoder;
      v1::Frame got;
      int seen = 0;
      size_t offset = 0;
      while (offset < stream.size()) {
        size_t chunk = std::uniform_int_distribution<size_t>(1, 3000)(rng);
        chunk = std::min(chunk, stream.size() - offset);
        decoder.Feed(std::string_view(stream).substr(offset, chunk));
        offset += chunk;
        while (decoder.Next(&got)) {
          CHECK(got.output().sequence() == static_cast<uint64_t>(seen));
          ++seen;
        }
      }
      CHECK(seen == kFrames);
      CHECK_FALSE(decoder.failed());
    }
  }
}

TEST_CASE("Decoder waits for a partial frame", "[agent_wire]") {
  const std::string bytes = Encode(OutputFrame(1, "hello", 0));
  wire::FrameDecoder decoder;
  v1::Frame got;
  decoder.Feed(std::string_view(bytes).substr(0, 3));
  CHECK_FALSE(decoder.Next(&got));
  decoder.Feed(std::string_view(bytes).substr(3, bytes.size() - 4));
  CHECK_FALSE(decoder.Next(&got));
  CHECK(decoder.buffered_bytes() == bytes.size() - 1);
  decoder.Feed(std::string_view(bytes).substr(bytes.size() - 1));
  REQUIRE(decoder.Next(&got));
  CHECK(got.output().data() == "hello");
  CHECK_FALSE(decoder.failed());
}

TEST_CASE("Decoder accepts exactly the maximum frame size", "[agent_wire]") {
  // Find a payload that makes the frame exactly kMaxFrameBytes.
  v1::Frame frame = OutputFrame(1, "", 0);
  size_t data_size = wire::kMaxFrameBytes - 16;
  frame.mutable_output()->set_data(std::string(data_size, 'z'));
  while (frame.ByteSizeLong() < wire::kMaxFrameBytes) {
    frame.mutable_output()->mutable_data()->push_back('z');
  }
  REQUIRE(frame.ByteSizeLong() == wire::kMaxFrameBytes);
  wire::FrameDecoder decoder;
  decoder.Feed(Encode(frame));
  v1::Frame got;
  REQUIRE(decoder.Next(&got));
  CHECK(got.output().data().size() == frame.output().data().size());
}

TEST_CASE("Zero length is a sticky error", "[agent_wire]") {
  wire::FrameDecoder decoder;
  v1::Frame got;
  decoder.Feed(Prefix(0));
  CHECK_FALSE(decoder.Next(&got));
  CHECK(decoder.failed());
  CHECK(decoder.error().find("length 0") != std::string::npos);
  // Sticky: a valid frame afterwards is refused.
  decoder.Feed(Encode(OutputFrame(1, "x", 0)));
  CHECK_FALSE(decoder.Next(&got));
  CHECK(decoder.failed());
}

TEST_CASE("Oversized length fails before the body arrives", "[agent_wire]") {
  for (uint32_t length : {wire::kMaxFrameBytes + 1, 0xffffffffu}) {
    wire::FrameDecoder decoder;
    v1::Frame got;
    decoder.Feed(Prefix(length));
    CHECK_FALSE(decoder.Next(&got));
    CHECK(decoder.failed());
    CHECK(decoder.error().find("exceeds") != std::string::npos);
    // Nothing more is buffered once failed.
    const size_t buffered = decoder.buffered_bytes();
    decoder.Feed(std::string(1000, 'a'));
    CHECK(decoder.buffered_bytes() == buffered);
  }
}

TEST_CASE("Garbage that does not parse is a sticky error", "[agent_wire]") {
  wire::FrameDecoder decoder;
  v1::Frame got;
  // A valid frame, then 11 bytes of 0xff: an overlong varint tag.
  decoder.Feed(Encode(OutputFrame(1, "ok", 0)));
  decoder.Feed(Prefix(11) + std::string(11, '\xff'));
  REQUIRE(decoder.Next(&got));
  CHECK(got.output().data() == "ok");
  CHECK_FALSE(decoder.Next(&got));
  CHECK(decoder.failed());
  CHECK(decoder.error().find("does not parse") != std::string::npos);
  decoder.Feed(Encode(OutputFrame(1, "later", 1)));
  CHECK_FALSE(decoder.Next(&got));
}

TEST_CASE("Random garbage never crashes the decoder", "[agent_wire]") {
  std::mt19937 rng(99);
  for (int round = 0; round < 2000; ++round) {
    wire::FrameDecoder decoder;
    v1::Frame got;
    std::string junk(std::uniform_int_distribution<int>(0, 64)(rng), '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    // Keep lengths small so that some frames complete and get parsed.
    if (junk.size() >= 4) junk[0] = junk[1] = 0;
    decoder.Feed(junk);
    int frames = 0;
    while (decoder.Next(&got)) ++frames;
    CHECK(decoder.buffered_bytes() <= junk.size());
    CHECK(frames <= static_cast<int>(junk.size() / 5));
  }
}
