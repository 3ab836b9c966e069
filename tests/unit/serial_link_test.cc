// Unit tests of the serial link's records (guest-agent/wire/serial_link.h):
// COBS framing, the CRC, and a decoder that drops torn, corrupt and
// oversized records and finds the next good one.
#include "guest-agent/wire/serial_link.h"

#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <vector>

namespace {

namespace wire = corral::agent::wire;
using wire::LinkRecord;
using wire::LinkRecordType;

std::string Encode(LinkRecordType type, uint32_t epoch,
                   const std::string& payload) {
  std::string out;
  wire::AppendLinkRecord(type, epoch, payload, &out);
  return out;
}

std::vector<LinkRecord> DecodeAll(wire::LinkDecoder& decoder,
                                  const std::string& bytes) {
  decoder.Feed(bytes);
  std::vector<LinkRecord> records;
  LinkRecord record;
  while (decoder.Next(&record)) records.push_back(record);
  return records;
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 random(seed);
  std::string out(n, '\0');
  for (char& c : out) c = static_cast<char>(random());
  return out;
}

}  // namespace

TEST_CASE("Crc32 is the IEEE CRC-32", "[serial_link]") {
  CHECK(wire::Crc32("123456789") == 0xCBF43926u);
  CHECK(wire::Crc32("") == 0u);
  // Continuing a CRC is the same as computing it at once.
  CHECK(wire::Crc32("56789", wire::Crc32("1234")) == 0xCBF43926u);
}

TEST_CASE("records never contain the delimiter and decode to what was sent",
          "[serial_link]") {
  const std::vector<std::string> payloads = {
      "",
      std::string(1, '\0'),
      std::string(600, '\0'),
      std::string(253, 'x'),
      std::string(254, 'x'),
      std::string(255, 'x'),
      std::string(1000, '\xff'),
      RandomBytes(wire::kMaxLinkPayloadBytes, 1),
  };
  for (const std::string& payload : payloads) {
    INFO("payload of " << payload.size() << " bytes");
    const std::string bytes =
        Encode(LinkRecordType::kData, 0x01020304u, payload);
    // One delimiter, at the end.
    CHECK(bytes.find('\0') == bytes.size() - 1);
    // COBS costs at most one byte in 254, plus the header and CRC.
    CHECK(bytes.size() <= payload.size() + payload.size() / 254 + 12);
    wire::LinkDecoder decoder;
    auto records = DecodeAll(decoder, bytes);
    REQUIRE(records.size() == 1);
    CHECK(records[0].type == LinkRecordType::kData);
    CHECK(records[0].epoch == 0x01020304u);
    CHECK(records[0].payload == payload);
    CHECK(decoder.dropped() == 0);
  }
}

TEST_CASE("the decoder takes bytes in any split", "[serial_link]") {
  std::string stream;
  for (int i = 0; i < 20; ++i) {
    wire::AppendLinkRecord(
        static_cast<LinkRecordType>(1 + i % 4), static_cast<uint32_t>(i),
        RandomBytes(static_cast<size_t>(i * 97), i), &stream);
  }
  wire::LinkDecoder decoder;
  std::vector<LinkRecord> records;
  for (char c : stream) {
    auto got = DecodeAll(decoder, std::string(1, c));
    records.insert(records.end(), got.begin(), got.end());
  }
  REQUIRE(records.size() == 20);
  for (int i = 0; i < 20; ++i) {
    CHECK(records[i].epoch == static_cast<uint32_t>(i));
    CHECK(records[i].payload == RandomBytes(static_cast<size_t>(i * 97), i));
  }
  CHECK(decoder.dropped() == 0);
}

TEST_CASE(
    "a torn record is dropped at the next delimiter and the next record "
    "arrives whole",
    "[serial_link]") {
  const std::string first = Encode(LinkRecordType::kData, 7, "old bytes");
  const std::string second = Encode(LinkRecordType::kOpen, 9, "");
  // The receiver starts in the middle of `first` (a restored snapshot), then
  // the sender's opening delimiter, then `second`.
  const std::string stream =
      first.substr(first.size() / 2) + std::string(1, '\0') + second;
  wire::LinkDecoder decoder;
  auto records = DecodeAll(decoder, stream);
  REQUIRE(records.size() == 1);
  CHECK(records[0].type == LinkRecordType::kOpen);
  CHECK(records[0].epoch == 9u);
  CHECK(decoder.dropped() == 1);

  // The head of a record whose rest never came, then a new one.
  wire::LinkDecoder head;
  records = DecodeAll(
      head, first.substr(0, first.size() / 2) + std::string(1, '\0') + second);
  REQUIRE(records.size() == 1);
  CHECK(records[0].type == LinkRecordType::kOpen);
  CHECK(head.dropped() == 1);
}

TEST_CASE("corrupt, unknown and oversized records are dropped",
          "[serial_link]") {
  std::string good = Encode(LinkRecordType::kData, 3, "payload");
  std::string flipped = good;
  flipped[3] = static_cast<char>(flipped[3] ^ 0x01);
  if (flipped[3] == '\0') flipped[3] = '\x02';
  wire::LinkDecoder decoder;
  CHECK(DecodeAll(decoder, flipped).empty());
  CHECK(decoder.dropped() == 1);

  // Type 9 is no record type, even with a correct CRC.
  wire::LinkDecoder decoder2;
  CHECK(DecodeAll(decoder2, Encode(static_cast<LinkRecordType>(9), 3, "x"))
            .empty());
  CHECK(decoder2.dropped() == 1);

  // Megabytes without a delimiter, then a good record: one drop, bounded
  // memory, and the good record still arrives.
  wire::LinkDecoder decoder3;
  const std::string noise(3u << 20, 'n');
  for (size_t i = 0; i < noise.size(); i += 4096) {
    CHECK(DecodeAll(decoder3, noise.substr(i, 4096)).empty());
  }
  auto records = DecodeAll(decoder3, std::string(1, '\0') + good);
  REQUIRE(records.size() == 1);
  CHECK(records[0].payload == "payload");
  CHECK(decoder3.dropped() == 1);
}
