#include "daemon/workspace/path_rules.h"

#include <random>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace corral::daemon::workspace {
namespace {

using corral::agent::v1::EntryType;

// Polynomial hashing modulo the Mersenne prime 2^61 - 1: the hash of every
// prefix of a path comes out of one pass over it.
constexpr uint64_t kModulus = (uint64_t{1} << 61) - 1;

uint64_t MultiplyMod(uint64_t a, uint64_t b) {
  const unsigned __int128 product = static_cast<unsigned __int128>(a) * b;
  uint64_t result = static_cast<uint64_t>(product & kModulus) +
                    static_cast<uint64_t>(product >> 61);
  if (result >= kModulus) result -= kModulus;
  return result;
}

uint64_t Step(uint64_t hash, uint64_t multiplier, unsigned char byte) {
  uint64_t next = MultiplyMod(hash, multiplier) + byte + 1;
  if (next >= kModulus) next -= kModulus;
  return next;
}

}  // namespace

std::optional<std::string> PathProblem(std::string_view path, size_t max_path,
                                       size_t max_component) {
  if (path.empty()) return "empty path";
  if (path.size() > max_path) {
    return absl::StrCat("path is longer than ", max_path, " bytes");
  }
  if (path.front() == '/') return "absolute path";
  if (path.find('\0') != std::string_view::npos) return "NUL byte in the path";
  size_t start = 0;
  while (true) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view component = path.substr(start, end - start);
    if (component.empty()) return "empty path component";
    if (component == ".") return "'.' path component";
    if (component == "..") return "'..' path component";
    if (component.size() > max_component) {
      return absl::StrCat("path component is longer than ", max_component,
                          " bytes");
    }
    if (end == path.size()) return std::nullopt;
    start = end + 1;
  }
}

std::string QuotePath(std::string_view path) {
  return absl::StrCat("'", absl::CHexEscape(Sv(path)), "'");
}

absl::Status EntryError(std::string_view what, std::string_view path,
                        std::string_view reason) {
  return absl::InvalidArgumentError(
      absl::StrCat(Sv(what), " ", QuotePath(path), ": ", Sv(reason)));
}

std::string_view EntryTypeName(EntryType type) {
  switch (type) {
    case corral::agent::v1::ENTRY_TYPE_REGULAR:
      return "regular file";
    case corral::agent::v1::ENTRY_TYPE_DIRECTORY:
      return "directory";
    case corral::agent::v1::ENTRY_TYPE_SYMLINK:
      return "symlink";
    case corral::agent::v1::ENTRY_TYPE_HARDLINK:
      return "hard link";
    case corral::agent::v1::ENTRY_TYPE_OTHER:
      return "special file";
    default:
      return "entry of unknown type";
  }
}

EntryTree::EntryTree() {
  std::random_device random;
  for (uint64_t& multiplier : multiplier_) {
    const uint64_t bits = (static_cast<uint64_t>(random()) << 32) ^ random();
    // In [2^20, kModulus - 1): a small multiplier would hash short paths
    // without wrapping around the modulus.
    multiplier = (uint64_t{1} << 20) + bits % (kModulus - (uint64_t{1} << 21));
  }
}

EntryTree::Key EntryTree::KeyOf(std::string_view path) const {
  Key key{0, 0};
  for (const char c : path) {
    key.first = Step(key.first, multiplier_[0], static_cast<unsigned char>(c));
    key.second =
        Step(key.second, multiplier_[1], static_cast<unsigned char>(c));
  }
  return key;
}

EntryType EntryTree::TypeOf(std::string_view path) const {
  auto it = types_.find(KeyOf(path));
  return it == types_.end() ? corral::agent::v1::ENTRY_TYPE_UNSPECIFIED
                            : it->second;
}

std::optional<std::string_view> EntryTree::NonDirectoryAncestor(
    std::string_view path) const {
  if (types_.empty()) return std::nullopt;
  Key key{0, 0};
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '/') {
      auto it = types_.find(key);
      if (it != types_.end() &&
          it->second != corral::agent::v1::ENTRY_TYPE_DIRECTORY) {
        return path.substr(0, i);
      }
    }
    const auto byte = static_cast<unsigned char>(path[i]);
    key.first = Step(key.first, multiplier_[0], byte);
    key.second = Step(key.second, multiplier_[1], byte);
  }
  return std::nullopt;
}

std::optional<std::string> EntryTree::PlacementProblem(
    std::string_view path) const {
  std::optional<std::string_view> ancestor = NonDirectoryAncestor(path);
  if (!ancestor.has_value()) return std::nullopt;
  return absl::StrCat("lies beneath the ", Sv(EntryTypeName(TypeOf(*ancestor))),
                      " ", QuotePath(*ancestor));
}

void EntryTree::Record(std::string_view path, EntryType type) {
  if (type == corral::agent::v1::ENTRY_TYPE_HARDLINK) {
    type = corral::agent::v1::ENTRY_TYPE_REGULAR;
  }
  types_[KeyOf(path)] = type;
}

void EntryTree::Erase(std::string_view path) { types_.erase(KeyOf(path)); }

}  // namespace corral::daemon::workspace
