// corral-unpack: decodes one untrusted tar stream for corrald, so that no
// decoder (libarchive's tar, gzip, xz and zstd readers) ever runs inside
// the root daemon. A bug in one then gives an attacker a process that runs
// as nobody, without capabilities or privileges to gain, that can read its
// input and write its frames and make no other system call of consequence:
// no file can be opened, nothing executed, no memory made executable.
//
//   corral-unpack --filters BITS
//
// fd 0: the raw stream (possibly compressed); fd 1: frames (unpack_wire.h);
// fd 3, when open, is this program's own file, which the daemon executed
// through /proc/self/fd/3 and which is closed at once. BITS are TarFilter
// bits (tar_stream.h): the compressions allowed.
#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "corral/platform.h"
#include "daemon/images/unpack_wire.h"

namespace {

namespace wire = corral::daemon::unpack;

constexpr size_t kReadBytes = 64u << 10;
// Enough for any legitimate decoder state (zstd's largest common window is
// 128 MiB, xz's dictionary 64 MiB); an archive that asks for more fails.
constexpr unsigned long kMaxAddressSpace = 1536ul << 20;

// Writes all of `data` to the daemon; the daemon gone ends the program.
void WriteAll(std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(1, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ::_exit(0);
    data.remove_prefix(static_cast<size_t>(n));
  }
}

void Send(wire::FrameType type, std::string_view payload = {}) {
  WriteAll(wire::Frame(type, payload));
}

[[noreturn]] void Fail(std::string_view message) {
  std::string payload;
  wire::PutString(&payload, message.substr(0, wire::kMaxMessageBytes));
  Send(wire::kFailure, payload);
  ::_exit(0);
}

[[noreturn]] void FailArchive(struct archive* archive) {
  const char* message = archive_error_string(archive);
  Fail(message != nullptr ? message : "unknown error");
}

la_ssize_t ReadInput(struct archive* archive, void* data, const void** block) {
  auto* buffer = static_cast<char*>(data);
  for (;;) {
    const ssize_t n = ::read(0, buffer, kReadBytes);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      archive_set_error(archive, EIO, "reading the archive stream failed");
      return -1;
    }
    *block = buffer;
    return n;
  }
}

// Reads what follows the end-of-archive marker (padding) to the end of the
// input, so that the daemon can feed all of it.
void Drain() {
  static char buffer[kReadBytes];
  for (;;) {
    const ssize_t n = ::read(0, buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
  }
}

std::optional<std::string> Text(const char* text) {
  if (text == nullptr) return std::nullopt;
  return std::string(text);
}

void SendHeader(struct archive_entry* entry) {
  wire::EntryHeader header;
  header.file_type = archive_entry_filetype(entry);
  header.permissions = archive_entry_perm(entry);
  if (archive_entry_size_is_set(entry)) header.size = archive_entry_size(entry);
  if (archive_entry_mtime_is_set(entry)) {
    header.mtime_seconds = archive_entry_mtime(entry);
    header.mtime_nanoseconds = archive_entry_mtime_nsec(entry);
  }
  header.path = Text(archive_entry_pathname(entry));
  header.hardlink = Text(archive_entry_hardlink(entry));
  header.symlink = Text(archive_entry_symlink(entry));
  for (const auto* text : {&header.path, &header.hardlink, &header.symlink}) {
    if (*text && (*text)->size() > wire::kMaxPathBytes) {
      Fail("an entry's path or link target is longer than 65536 bytes");
    }
  }
  Send(wire::kHeader, wire::EncodeHeader(header));
}

void SendData(struct archive* archive) {
  for (;;) {
    const void* buffer = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    const int r = archive_read_data_block(archive, &buffer, &size, &offset);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) FailArchive(archive);
    std::string_view data(static_cast<const char*>(buffer), size);
    int64_t at = offset;
    do {
      const std::string_view piece = data.substr(0, wire::kMaxDataBytes);
      std::string payload;
      wire::PutI64(&payload, at);
      payload.append(piece);
      Send(wire::kData, payload);
      at += static_cast<int64_t>(piece.size());
      data.remove_prefix(piece.size());
    } while (!data.empty());
  }
  Send(wire::kEndOfData);
}

int Run(unsigned filters) {
  struct archive* archive = archive_read_new();
  if (archive == nullptr) Fail("out of memory");
  if (archive_read_support_format_tar(archive) != ARCHIVE_OK) {
    Fail("libarchive lacks tar support");
  }
  using Support = int (*)(struct archive*);
  const struct {
    unsigned bit;
    const char* name;
    Support support;
  } known[] = {{1u, "gzip", archive_read_support_filter_gzip},
               {2u, "xz", archive_read_support_filter_xz},
               {4u, "zstd", archive_read_support_filter_zstd}};
  for (const auto& filter : known) {
    if ((filters & filter.bit) == 0) continue;
    // ARCHIVE_WARN means "only through an external program": never here.
    if (filter.support(archive) != ARCHIVE_OK) {
      Fail(std::string("libarchive here has no built-in ") + filter.name +
           " support");
    }
  }
  static char input[kReadBytes];
  if (archive_read_open(archive, input, nullptr, ReadInput, nullptr) !=
      ARCHIVE_OK) {
    FailArchive(archive);
  }
  std::string opened;
  wire::PutU32(&opened, static_cast<uint32_t>(archive_filter_code(archive, 0)));
  const char* name = archive_filter_name(archive, 0);
  wire::PutString(&opened, name != nullptr ? name : "?");
  Send(wire::kOpened, opened);
  bool first = true;
  for (;;) {
    struct archive_entry* entry = nullptr;
    const int r = archive_read_next_header(archive, &entry);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) FailArchive(archive);
    // Filter 0 is the outermost; the last one is the "none" reader.
    if (first && archive_filter_count(archive) > 2) {
      Send(wire::kCompressedTwice);
      ::_exit(0);
    }
    first = false;
    SendHeader(entry);
    SendData(archive);
  }
  Drain();
  Send(wire::kEndOfArchive);
  archive_read_free(archive);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Its own binary (the daemon ran it by its fd, which also named it "3")
  // and anything else: only the two pipes stay.
  corral::platform::CloseRange(3, ~0u);
  corral::platform::SetProcessName("corral-unpack");
  // Killed with the daemon's thread that reads it.
  if (!corral::platform::DieWithParent(1)) return 2;
  ::signal(SIGPIPE, SIG_DFL);
  unsigned filters = 0;
  if (argc == 3 && std::string_view(argv[1]) == "--filters") {
    char* end = nullptr;
    filters = static_cast<unsigned>(std::strtoul(argv[2], &end, 10));
    if (end == argv[2] || *end != '\0' || filters > 7) Fail("bad --filters");
  } else {
    Fail("usage: corral-unpack --filters BITS");
  }
  std::string why;
  // Everything privileged goes before the input is read.
  if (!corral::platform::EnterDecoderConfinement(kMaxAddressSpace, &why)) {
    Fail(why);
  }
  return Run(filters);
}
