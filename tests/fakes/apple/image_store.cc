#include "tests/fakes/apple/image_store.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <utility>

#include "tests/fakes/apple/fake_util.h"
#include "tests/fakes/common/tar_root.h"

namespace corral::fake_apple {
namespace {

using fakes::Components;
using fakes::CopyEntryData;
using fakes::CopyResult;
using fakes::Fd;
using nlohmann::json;

constexpr char kIndex[] = "application/vnd.oci.image.index.v1+json";
constexpr char kManifest[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kDockerList[] =
    "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr char kDockerManifest[] =
    "application/vnd.docker.distribution.manifest.v2+json";
constexpr char kIndirect[] = "com.apple.containerization.index.indirect";
constexpr char kAppleName[] = "com.apple.containerization.image.name";

bool IsIndex(const std::string& media_type) {
  return media_type == kIndex || media_type == kDockerList;
}
bool IsManifest(const std::string& media_type) {
  return media_type == kManifest || media_type == kDockerManifest;
}

bool IsLayer(const std::string& media_type) {
  static const char* kLayers[] = {
      "application/vnd.oci.image.layer.v1.tar",
      "application/vnd.oci.image.layer.v1.tar+gzip",
      "application/vnd.oci.image.layer.v1.tar+zstd",
      "application/vnd.docker.image.rootfs.diff.tar",
      "application/vnd.docker.image.rootfs.diff.tar.gzip",
      "application/vnd.docker.image.rootfs.diff.tar.zstd",
  };
  for (const char* layer : kLayers) {
    if (media_type == layer) return true;
  }
  return false;
}

std::string NormalArch(const std::string& arch) {
  if (arch == "aarch64") return "arm64";
  if (arch == "x86_64" || arch == "x86-64") return "amd64";
  if (arch == "armhf" || arch == "armel") return "arm";
  return arch;
}

// Platform as containerization encodes it: os, architecture (normalized),
// variant when present.
json EncodePlatform(const json& platform) {
  json out = json::object();
  out["os"] = platform.value("os", "");
  out["architecture"] = NormalArch(platform.value("architecture", ""));
  if (platform.contains("variant") && platform["variant"].is_string()) {
    out["variant"] = platform["variant"];
  }
  return out;
}

// A Descriptor decoded and encoded again: only its own keys.
std::optional<json> EncodeDescriptor(const json& in) {
  if (!in.is_object() || !in.contains("mediaType") ||
      !in["mediaType"].is_string() || !in.contains("digest") ||
      !in["digest"].is_string() || !in.contains("size") ||
      !in["size"].is_number_integer()) {
    return std::nullopt;
  }
  json out = json::object();
  out["mediaType"] = in["mediaType"];
  out["digest"] = in["digest"];
  out["size"] = in["size"];
  for (const char* key : {"urls", "annotations", "artifactType"}) {
    if (in.contains(key) && !in[key].is_null()) out[key] = in[key];
  }
  if (in.contains("platform") && in["platform"].is_object()) {
    out["platform"] = EncodePlatform(in["platform"]);
  }
  return out;
}

// ContainerizationOCI.Image encoded again (its keys and ImageConfig's),
// or nullopt when it would not decode.
std::optional<json> EncodeImageConfig(const json& in) {
  if (!in.is_object() || !in.contains("architecture") ||
      !in["architecture"].is_string() || !in.contains("os") ||
      !in["os"].is_string() || !in.contains("rootfs") ||
      !in["rootfs"].is_object()) {
    return std::nullopt;
  }
  json out = json::object();
  for (const char* key : {"created", "author", "architecture", "os",
                          "osVersion", "osFeatures", "variant"}) {
    if (in.contains(key) && !in[key].is_null()) out[key] = in[key];
  }
  if (in.contains("config") && in["config"].is_object()) {
    json config = json::object();
    for (const char* key : {"User", "Env", "Entrypoint", "Cmd", "WorkingDir",
                            "Labels", "StopSignal"}) {
      if (in["config"].contains(key) && !in["config"][key].is_null()) {
        config[key] = in["config"][key];
      }
    }
    out["config"] = config;
  }
  json rootfs = json::object();
  rootfs["type"] = in["rootfs"].value("type", "");
  rootfs["diff_ids"] = in["rootfs"].value("diff_ids", json::array());
  out["rootfs"] = rootfs;
  if (in.contains("history") && in["history"].is_array()) {
    json history = json::array();
    for (const auto& item : in["history"]) {
      json entry = json::object();
      for (const char* key :
           {"created", "created_by", "author", "comment", "empty_layer"}) {
        if (item.is_object() && item.contains(key) && !item[key].is_null()) {
          entry[key] = item[key];
        }
      }
      history.push_back(entry);
    }
    out["history"] = history;
  }
  return out;
}

std::string HexOf(const std::string& digest) {
  size_t colon = digest.find(':');
  return colon == std::string::npos ? digest : digest.substr(colon + 1);
}

bool ValidDigest(const std::string& digest) {
  static const std::regex kPattern("sha256:[0-9a-f]{64}");
  return std::regex_match(digest, kPattern);
}

std::string MissingContent(const std::string& digest) {
  return "missingContent(" + SwiftQuoted(digest) + ")";
}

// --- The layout archive, extracted as ArchiveReader.extractContents does.

// Walks `parts` from `root_fd` without following a symlink: a missing
// component is made, a component that is no directory (a symlink
// included) is replaced by one. Returns the last directory's fd.
int MakeDirsNoFollow(int root_fd, const std::vector<std::string>& parts,
                     size_t count) {
  int current = ::dup(root_fd);
  for (size_t i = 0; i < count && current >= 0; ++i) {
    const char* name = parts[i].c_str();
    int next = ::openat(current, name,
                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      if (errno != ENOENT) RemoveAt(current, parts[i]);
      if (::mkdirat(current, name, 0755) != 0 && errno != EEXIST) {
        ::close(current);
        return -1;
      }
      next = ::openat(current, name,
                      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    ::close(current);
    current = next;
  }
  return current;
}

using ArchivePtr = std::unique_ptr<struct archive, int (*)(struct archive*)>;

ArchivePtr OpenArchive(int fd) {
  ArchivePtr reader(archive_read_new(), archive_read_free);
  archive_read_support_filter_all(reader.get());
  archive_read_support_format_all(reader.get());
  if (archive_read_open_fd(reader.get(), fd, 1 << 16) != ARCHIVE_OK) {
    std::string why = archive_error_string(reader.get())
                          ? archive_error_string(reader.get())
                          : "unreadable archive";
    Fail(why);
  }
  return reader;
}

std::vector<std::string> ExtractLayout(const std::string& archive_path,
                                       const std::string& directory) {
  Fd input(::open(archive_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (input.fd < 0) Fail("failed to open " + archive_path);
  ArchivePtr reader = OpenArchive(input.fd);
  Fd root(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  std::vector<std::string> rejected;
  bool found = false;
  struct archive_entry* entry = nullptr;
  for (;;) {
    int r = archive_read_next_header(reader.get(), &entry);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      const char* why = archive_error_string(reader.get());
      Fail(why != nullptr ? why : "unreadable archive");
    }
    const char* raw = archive_entry_pathname(entry);
    if (raw == nullptr) continue;
    found = true;
    const std::string member = raw;
    std::vector<std::string> parts = Components(member);
    const bool dotdot =
        std::find(parts.begin(), parts.end(), "..") != parts.end();
    const mode_t type = archive_entry_filetype(entry);
    if (dotdot || (parts.empty() && type != AE_IFDIR)) {
      rejected.push_back(member);
      continue;
    }
    if (type == AE_IFDIR) {
      Fd dir(MakeDirsNoFollow(root.fd, parts, parts.size()));
      if (dir.fd < 0) Fail("failed to create directory: " + member);
      ::fchmod(dir.fd, archive_entry_perm(entry) & 0777);
      continue;
    }
    if (type != AE_IFREG && type != AE_IFLNK) {
      rejected.push_back(member);  // hard links, devices, fifos, sockets
      continue;
    }
    if (type == AE_IFREG && archive_entry_hardlink(entry) != nullptr) {
      rejected.push_back(member);
      continue;
    }
    Fd parent(MakeDirsNoFollow(root.fd, parts, parts.size() - 1));
    if (parent.fd < 0) Fail("failed to create directory for: " + member);
    const std::string& name = parts.back();
    RemoveAt(parent.fd, name);
    if (type == AE_IFLNK) {
      const char* target = archive_entry_symlink(entry);
      if (target == nullptr ||
          ::symlinkat(target, parent.fd, name.c_str()) != 0) {
        Fail(std::string("failed to create symlink: ") +
             (target ? target : "") + " <- " + member);
      }
      continue;
    }
    Fd file(::openat(parent.fd, name.c_str(),
                     O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                     archive_entry_perm(entry) & 0777));
    if (file.fd < 0) Fail("failed to create file: " + member);
    if (CopyEntryData(reader.get(), file.fd) != CopyResult::kOk) {
      Fail("failed to write data for: " + member);
    }
    ::fchmod(file.fd, archive_entry_perm(entry) & 0777);
  }
  if (!found) Fail("failedToExtractArchive(\"no entries found in archive\")");
  return rejected;
}

// --- Layers, unpacked into a root filesystem with OCI whiteouts.

class LayerWriter {
 public:
  explicit LayerWriter(int root_fd) : root_fd_(root_fd) {}

  void Apply(int layer_fd, const std::string& digest) {
    ArchivePtr reader(archive_read_new(), archive_read_free);
    archive_read_support_filter_all(reader.get());
    archive_read_support_format_tar(reader.get());
    archive_read_support_format_gnutar(reader.get());
    if (archive_read_open_fd(reader.get(), layer_fd, 1 << 16) != ARCHIVE_OK) {
      FailFake("layer " + digest + " is no tar archive");
    }
    this_layer_.clear();
    struct archive_entry* entry = nullptr;
    for (;;) {
      int r = archive_read_next_header(reader.get(), &entry);
      if (r == ARCHIVE_EOF) break;
      if (r < ARCHIVE_WARN) {
        FailFake("layer " + digest + ": " +
                 (archive_error_string(reader.get())
                      ? archive_error_string(reader.get())
                      : "unreadable"));
      }
      ApplyEntry(reader.get(), entry);
    }
  }

 private:
  static std::string Join(const std::vector<std::string>& parts, size_t n) {
    return fakes::JoinComponents(parts, n);
  }

  // The directory `parts[0..n)` resolved inside the root (symlinks taken
  // as the container would), made when missing.
  int Directory(const std::vector<std::string>& parts, size_t n) {
    return fakes::DirectoryInRoot(
        root_fd_, parts, n,
        [this](const std::string& made) { this_layer_.insert(made); });
  }

  void ApplyEntry(struct archive* reader, struct archive_entry* entry) {
    const char* raw = archive_entry_pathname(entry);
    if (raw == nullptr) return;
    std::vector<std::string> parts = Components(raw);
    if (parts.empty() ||
        std::find(parts.begin(), parts.end(), "..") != parts.end()) {
      return;
    }
    const std::string path = Join(parts, parts.size());
    const std::string name = parts.back();
    const size_t parent_count = parts.size() - 1;

    if (name == ".wh..wh..opq") {
      Fd dir(Directory(parts, parent_count));
      if (dir.fd < 0) return;
      const std::string prefix = Join(parts, parent_count);
      int copy = ::dup(dir.fd);
      DIR* listing = ::fdopendir(copy);
      if (listing == nullptr) {
        ::close(copy);
        return;
      }
      std::vector<std::string> names;
      while (dirent* child = ::readdir(listing)) {
        std::string child_name = child->d_name;
        if (child_name == "." || child_name == "..") continue;
        std::string child_path =
            prefix.empty() ? child_name : prefix + "/" + child_name;
        if (this_layer_.count(child_path) == 0) names.push_back(child_name);
      }
      ::closedir(listing);
      for (const auto& child_name : names) RemoveAt(dir.fd, child_name);
      return;
    }
    if (name.rfind(".wh.", 0) == 0) {
      Fd dir(OpenInRoot(root_fd_, Join(parts, parent_count),
                        O_RDONLY | O_DIRECTORY));
      if (dir.fd >= 0) RemoveAt(dir.fd, name.substr(4));
      return;
    }

    const mode_t type = archive_entry_filetype(entry);
    if (type == AE_IFCHR || type == AE_IFBLK || type == AE_IFSOCK) return;

    Fd parent(Directory(parts, parent_count));
    if (parent.fd < 0) return;
    this_layer_.insert(path);
    switch (fakes::PlaceEntry(reader, entry, root_fd_, parent.fd, name)) {
      case fakes::Placed::kReadFailed:
      case fakes::Placed::kWriteFailed:
        FailFake(std::string("failed to unpack ") + raw);
      default:
        return;
    }
  }

  int root_fd_;
  std::set<std::string> this_layer_;
};

// --- Import of one image of the layout (ImportOperation.import).

class Importer {
 public:
  Importer(int layout_fd, std::string stage)
      : layout_fd_(layout_fd), stage_(std::move(stage)) {}

  // Verifies every blob the root descriptor reaches and keeps the JSON
  // ones; returns the image's index descriptor.
  json Import(const json& root) {
    MakeDirs(stage_ + "/blobs", 0755);
    std::vector<json> to_process = {root};
    for (int depth = 0; !to_process.empty(); ++depth) {
      if (depth > 8) FailFake("image nesting too deep");
      std::vector<json> children;
      std::set<std::string> seen;
      for (const auto& descriptor : to_process) {
        Verify(descriptor);
        const std::string media_type = descriptor["mediaType"];
        if (IsIndex(media_type)) {
          json index = Json(descriptor);
          if (!index.contains("manifests") || !index["manifests"].is_array()) {
            FailFake("index " + descriptor["digest"].get<std::string>() +
                     " has no manifests");
          }
          for (const auto& child : index["manifests"]) Add(child, &children);
        } else if (IsManifest(media_type)) {
          json manifest = Json(descriptor);
          if (!manifest.contains("config")) {
            FailFake("manifest " + descriptor["digest"].get<std::string>() +
                     " has no config");
          }
          Add(manifest["config"], &children);
          for (const auto& layer : manifest.value("layers", json::array())) {
            Add(layer, &children);
          }
        }
      }
      to_process.clear();
      for (auto& child : children) {
        if (seen.insert(child["digest"].get<std::string>()).second) {
          to_process.push_back(child);
        }
      }
    }
    const std::string media_type = root["mediaType"];
    if (IsIndex(media_type)) return *EncodeDescriptor(root);
    if (!IsManifest(media_type)) {
      Fail("failed to create index for descriptor " +
           root["digest"].get<std::string>() + ", media type " + media_type);
    }
    // A manifest alone: an index made for it, marked indirect.
    json manifest = Json(root);
    json config = Json(manifest["config"]);
    json platform = json::object();
    platform["architecture"] = NormalArch(config.value("architecture", ""));
    platform["os"] = config.value("os", "");
    if (config.contains("variant") && config["variant"].is_string()) {
      platform["variant"] = config["variant"];
    }
    json entry = *EncodeDescriptor(root);
    entry["platform"] = platform;
    json index = {{"schemaVersion", 2},
                  {"mediaType", kIndex},
                  {"manifests", json::array({entry})},
                  {"annotations", {{kIndirect, "true"}}}};
    const std::string text = index.dump();
    const std::string hex = Sha256Hex(text);
    WriteFileAtomic(stage_ + "/blobs/" + hex, text);
    return json{{"mediaType", kIndex},
                {"digest", "sha256:" + hex},
                {"size", text.size()}};
  }

  // Unpacks this host's variant, if the image has one.
  void UnpackHostVariant(const std::string& index_hex) {
    auto index = ReadStaged(index_hex);
    if (!index) return;
    std::optional<json> chosen = HostManifest(*index, 0);
    if (!chosen) return;
    const std::string manifest_hex = HexOf((*chosen)["digest"]);
    json manifest = *ReadStaged(manifest_hex);
    const std::string rootfs = stage_ + "/rootfs";
    MakeDirs(rootfs, 0755);
    Fd root(::open(rootfs.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    LayerWriter writer(root.fd);
    for (const auto& layer : manifest.value("layers", json::array())) {
      const std::string media_type = layer.value("mediaType", "");
      const std::string digest = layer.value("digest", "");
      if (!IsLayer(media_type)) {
        FailFake("layer media type " + media_type + " is not modelled");
      }
      Fd blob(OpenBlob(digest));
      writer.Apply(blob.fd, digest);
    }
    json host = {{"manifest", manifest_hex},
                 {"config", HexOf(manifest["config"]["digest"])}};
    WriteFileAtomic(stage_ + "/host.json", host.dump());
  }

 private:
  std::optional<json> HostManifest(const json& index, int depth) {
    const std::string arch = HostArchitecture();
    for (const auto& descriptor : index.value("manifests", json::array())) {
      const std::string media_type = descriptor.value("mediaType", "");
      if (IsIndex(media_type) && depth == 0) {
        auto nested = ReadStaged(HexOf(descriptor.value("digest", "")));
        if (!nested) continue;
        if (auto found = HostManifest(*nested, depth + 1)) return found;
        continue;
      }
      if (!IsManifest(media_type) || !descriptor.contains("platform")) {
        continue;
      }
      const json& platform = descriptor["platform"];
      if (platform.value("os", "") == "linux" &&
          NormalArch(platform.value("architecture", "")) == arch) {
        return descriptor;
      }
    }
    return std::nullopt;
  }

  void Add(const json& child, std::vector<json>* children) {
    auto encoded = EncodeDescriptor(child);
    if (!encoded) {
      FailFake("a descriptor lacks its mediaType, digest or size: " +
               child.dump());
    }
    children->push_back(child);
  }

  int OpenBlob(const std::string& digest) {
    if (!ValidDigest(digest)) Fail(MissingContent(digest));
    int fd = OpenInRoot(layout_fd_, "blobs/sha256/" + HexOf(digest), O_RDONLY);
    if (fd < 0) Fail(MissingContent(digest));
    return fd;
  }

  // Checks a blob against its descriptor: the SHA-256 (as ImportOperation
  // does) and the size (the fake's own check).
  void Verify(const json& descriptor) {
    const std::string digest = descriptor["digest"];
    Fd blob(OpenBlob(digest));
    std::string hex;
    uint64_t size = 0;
    if (!Sha256OfFd(blob.fd, &hex, &size)) Fail(MissingContent(digest));
    if ("sha256:" + hex != digest) {
      Fail("digest mismatch expected " + digest + ", got sha256:" + hex);
    }
    const int64_t declared = descriptor["size"].get<int64_t>();
    if (static_cast<int64_t>(size) != declared) {
      FailFake("size mismatch for " + digest + ": its descriptor says " +
               std::to_string(declared) + " bytes, the blob has " +
               std::to_string(size));
    }
    const std::string media_type = descriptor["mediaType"];
    if (!IsLayer(media_type)) {
      // Small JSON blobs (indexes, manifests, configs) are kept.
      if (size <= (16u << 20)) {
        ::lseek(blob.fd, 0, SEEK_SET);
        std::string text(size, '\0');
        size_t done = 0;
        while (done < size) {
          ssize_t n = ::read(blob.fd, text.data() + done, size - done);
          if (n <= 0) break;
          done += static_cast<size_t>(n);
        }
        WriteFileAtomic(stage_ + "/blobs/" + hex, text);
      }
    }
  }

  json Json(const json& descriptor) {
    const std::string digest = descriptor["digest"];
    auto parsed = ReadStaged(HexOf(digest));
    if (!parsed) {
      Fail("cannot fetch content with digest " + digest +
           " (cause: \"the content is no JSON\")");
    }
    return *parsed;
  }

  std::optional<json> ReadStaged(const std::string& hex) {
    auto text = ReadFile(stage_ + "/blobs/" + hex);
    if (!text) return std::nullopt;
    json parsed = json::parse(*text, nullptr, false);
    if (parsed.is_discarded()) return std::nullopt;
    return parsed;
  }

  int layout_fd_;
  std::string stage_;
};

std::string MakeTempDir(const std::string& parent, const std::string& prefix) {
  MakeDirs(parent, 0700);
  std::string pattern = parent + "/" + prefix + "XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    FailFake("cannot make a directory under " + parent + ": " +
             std::strerror(errno));
  }
  return pattern;
}

struct TempTree {
  std::string path;
  ~TempTree() {
    if (!path.empty()) RemoveTree(path);
  }
};

}  // namespace

std::string Reference::Name() const {
  return domain && !domain->empty() ? *domain + "/" + path : path;
}

std::string Reference::Description() const {
  if (tag) return Name() + ":" + *tag;
  if (digest) return Name() + "@" + *digest;
  return Name();
}

void Reference::Normalize() {
  if (domain && (*domain == "docker.io" || *domain == "registry-1.docker.io") &&
      path.find('/') == std::string::npos) {
    path = "library/" + path;
  }
  if (!tag && !digest) tag = "latest";
}

std::optional<Reference> ParseReference(const std::string& text,
                                        std::string* error) {
  static const std::regex kIdentifier("[a-f0-9]{64}");
  static const std::regex kDomain(
      "(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\\.(?:[a-zA-"
      "Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\\[(?:[a-fA-F0-9:]+)\\])"
      "(?::[0-9]+)?");
  static const std::regex kPathTag(
      "((?:[a-z0-9]+(?:[._]|__|-|/)?)*[a-z0-9]+)(?::([A-Za-z0-9_][A-Za-z0-9_.-"
      "]{0,127}))?(?:@(sha256:[0-9a-fA-F]{64}))?");
  if (text.size() > 255 + 1 + 128) {
    *error =
        "reference length " + std::to_string(text.size()) + " greater than 384";
    return std::nullopt;
  }
  if (std::regex_match(text, kIdentifier)) {
    *error = "cannot specify 64 byte hex string as reference";
    return std::nullopt;
  }
  Reference ref;
  std::string remainder = text;
  size_t slash = text.find('/');
  if (slash == std::string::npos) {
    if (text.rfind("localhost", 0) == 0) {
      ref.domain = text;
      remainder = "";
    }
  } else {
    std::string first = text.substr(0, slash);
    if (first.rfind("localhost", 0) == 0 ||
        first.find_first_of(".:") != std::string::npos) {
      ref.domain = first;
      remainder = text.substr(slash + 1);
    }
  }
  if (ref.domain && !std::regex_match(*ref.domain, kDomain)) {
    *error = "invalid domain " + *ref.domain + " for reference " + text;
    return std::nullopt;
  }
  std::smatch match;
  if (!std::regex_match(remainder, match, kPathTag)) {
    *error = "invalid format for image reference";
    return std::nullopt;
  }
  ref.path = match[1].str();
  if (ref.Name().size() > 255) {
    *error = "repo length " + std::to_string(ref.Name().size()) +
             " greater than 255";
    return std::nullopt;
  }
  if (match[3].matched) {
    ref.digest = match[3].str();
  } else if (match[2].matched) {
    ref.tag = match[2].str();
  }
  return ref;
}

std::optional<std::string> NormalizeReference(const std::string& text,
                                              std::string* error) {
  auto ref = ParseReference(text, error);
  if (!ref) return std::nullopt;
  if (!ref->domain) {
    ref = ParseReference("docker.io/" + text, error);
    if (!ref) return std::nullopt;
  }
  ref->Normalize();
  return ref->Description();
}

std::string DenormalizeReference(const std::string& text) {
  std::string error;
  auto ref = ParseReference(text, &error);
  if (!ref || !ref->domain || *ref->domain != "docker.io") return text;
  std::string out = ref->path;
  if (ref->tag) {
    out += ":" + *ref->tag;
  } else if (ref->digest) {
    out += "@" + *ref->digest;
  }
  if (out.rfind("library/", 0) == 0) out.erase(0, 8);
  return out;
}

std::string StoredImage::Hex() const {
  return HexOf(descriptor.value("digest", ""));
}

ImageStore::ImageStore(std::string root,
                       std::function<std::set<std::string>()> in_use)
    : root_(std::move(root)),
      images_(root_ + "/images"),
      in_use_(std::move(in_use)) {}

std::string ImageStore::LockPath() const { return root_ + "/lock"; }

std::optional<json> ImageStore::ReadRefs() const {
  auto text = ReadFile(images_ + "/refs.json");
  if (!text) return json::object();
  json refs = json::parse(*text, nullptr, false);
  if (refs.is_discarded() || !refs.is_object()) return std::nullopt;
  return refs;
}

void ImageStore::WriteRefs(const json& refs) {
  MakeDirs(images_, 0755);
  if (!WriteFileAtomic(images_ + "/refs.json", refs.dump())) {
    FailFake("cannot write " + images_ + "/refs.json");
  }
}

std::vector<StoredImage> ImageStore::List() const {
  std::vector<StoredImage> images;
  auto refs = ReadRefs();
  if (!refs) return images;
  for (auto it = refs->begin(); it != refs->end(); ++it) {
    images.push_back(StoredImage{it.key(), it.value()["descriptor"]});
  }
  return images;  // json objects iterate in key order
}

std::optional<StoredImage> ImageStore::Search(
    const std::string& reference) const {
  std::vector<StoredImage> all = List();
  std::string error;
  auto parsed = ParseReference(reference, &error);
  if (!parsed) Fail(error);
  parsed->Normalize();
  const std::string with_default_tag = parsed->Description();
  std::vector<const StoredImage*> local;
  for (const auto& image : all) {
    const json& annotations =
        image.descriptor.value("annotations", json::object());
    if (annotations.is_object() && annotations.contains(kAppleName) &&
        annotations[kAppleName] == with_default_tag) {
      local.push_back(&image);
    }
  }
  if (local.size() == 1) return *local[0];
  if (local.size() > 1) {
    for (const auto* image : local) {
      if (image->reference == with_default_tag) return *image;
    }
  }
  auto normalized = NormalizeReference(reference, &error);
  if (!normalized) Fail(error);
  for (const auto& image : all) {
    if (image.reference == reference || image.reference == *normalized) {
      return image;
    }
  }
  return std::nullopt;
}

std::optional<json> ImageStore::Blob(const std::string& image_hex,
                                     const std::string& digest) const {
  auto text = ReadFile(images_ + "/" + image_hex + "/blobs/" + HexOf(digest));
  if (!text) return std::nullopt;
  json parsed = json::parse(*text, nullptr, false);
  if (parsed.is_discarded()) return std::nullopt;
  return parsed;
}

json ImageStore::Resource(const StoredImage& image) const {
  const std::string hex = image.Hex();
  json variants = json::array();
  std::optional<std::time_t> earliest;
  auto index = Blob(hex, image.descriptor.value("digest", ""));
  if (index && index->contains("manifests")) {
    for (const auto& descriptor : (*index)["manifests"]) {
      if (!descriptor.contains("platform")) continue;
      auto manifest = Blob(hex, descriptor.value("digest", ""));
      if (!manifest || !manifest->contains("config")) continue;
      auto config = Blob(hex, (*manifest)["config"].value("digest", ""));
      if (!config) continue;
      auto encoded = EncodeImageConfig(*config);
      if (!encoded) continue;
      int64_t size = descriptor.value("size", int64_t{0}) +
                     (*manifest)["config"].value("size", int64_t{0});
      for (const auto& layer : manifest->value("layers", json::array())) {
        size += layer.value("size", int64_t{0});
      }
      variants.push_back({{"config", *encoded},
                          {"digest", descriptor["digest"]},
                          {"platform", EncodePlatform(descriptor["platform"])},
                          {"size", size}});
      if (encoded->contains("created") && (*encoded)["created"].is_string()) {
        if (auto when = ParseRfc3339((*encoded)["created"])) {
          earliest = earliest ? std::min(*earliest, *when) : *when;
        }
      }
    }
  }
  json configuration = {{"creationDate", Iso8601(earliest.value_or(0))},
                        {"descriptor", image.descriptor},
                        {"name", image.reference}};
  return json{
      {"configuration", configuration}, {"id", hex}, {"variants", variants}};
}

void ImageStore::RemoveReference(const std::string& reference) {
  auto refs = ReadRefs();
  if (!refs) return;
  refs->erase(reference);
  WriteRefs(*refs);
}

namespace {

// The bytes of the regular files under `path` (not crossing mounts).
uint64_t TreeBytes(const std::string& path, dev_t device) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0 || st.st_dev != device) return 0;
  if (S_ISREG(st.st_mode)) return static_cast<uint64_t>(st.st_size);
  if (!S_ISDIR(st.st_mode)) return 0;
  uint64_t total = 0;
  DIR* dir = ::opendir(path.c_str());
  if (dir == nullptr) return 0;
  std::vector<std::string> names;
  while (dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(dir);
  for (const auto& name : names) total += TreeBytes(path + "/" + name, device);
  return total;
}

}  // namespace

uint64_t ImageStore::CollectGarbage() {
  std::set<std::string> keep = in_use_();
  if (auto refs = ReadRefs()) {
    for (auto it = refs->begin(); it != refs->end(); ++it) {
      keep.insert(HexOf(it.value()["descriptor"].value("digest", "")));
    }
  }
  DIR* dir = ::opendir(images_.c_str());
  if (dir == nullptr) return 0;
  std::vector<std::string> unused;
  while (dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    if (name.size() == 64 && keep.count(name) == 0) unused.push_back(name);
  }
  ::closedir(dir);
  uint64_t freed = 0;
  for (const auto& name : unused) {
    const std::string path = images_ + "/" + name;
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) freed += TreeBytes(path, st.st_dev);
    RemoveTree(path);
  }
  return freed;
}

std::optional<std::string> ImageStore::RootfsOf(
    const StoredImage& image) const {
  const std::string dir = images_ + "/" + image.Hex();
  if (!PathExists(dir + "/host.json")) return std::nullopt;
  return dir + "/rootfs";
}

std::optional<json> ImageStore::HostConfigOf(const StoredImage& image) const {
  auto text = ReadFile(images_ + "/" + image.Hex() + "/host.json");
  if (!text) return std::nullopt;
  json host = json::parse(*text, nullptr, false);
  if (host.is_discarded()) return std::nullopt;
  return Blob(image.Hex(), "sha256:" + host.value("config", ""));
}

std::vector<std::string> ImageStore::Load(const std::string& archive,
                                          bool force,
                                          std::vector<std::string>* rejected) {
  TempTree temp{MakeTempDir(root_ + "/tmp", "load-")};
  const std::string layout = temp.path + "/layout";
  MakeDirs(layout, 0755);
  *rejected = ExtractLayout(archive, layout);
  if (!rejected->empty() && !force) {
    Fail("cannot load tar image with rejected paths: " + SwiftList(*rejected));
  }
  Fd layout_fd(::open(layout.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));

  auto read_json = [&](const std::string& name) -> std::optional<json> {
    Fd fd(OpenInRoot(layout_fd.fd, name, O_RDONLY));
    if (fd.fd < 0) return std::nullopt;
    std::string text;
    char buffer[65536];
    for (ssize_t n; (n = ::read(fd.fd, buffer, sizeof(buffer))) > 0;) {
      text.append(buffer, static_cast<size_t>(n));
    }
    json parsed = json::parse(text, nullptr, false);
    if (parsed.is_discarded()) FailFake(name + " is not JSON");
    return parsed;
  };

  auto oci_layout = read_json("oci-layout");
  if (!oci_layout) Fail(layout + "/oci-layout");
  if (!oci_layout->is_object()) FailFake("oci-layout is no JSON object");
  for (auto it = oci_layout->begin(); it != oci_layout->end(); ++it) {
    if (!it.value().is_string()) {
      FailFake("oci-layout holds a value that is no string");
    }
  }
  if (!oci_layout->contains("imageLayoutVersion")) {
    Fail("missing key imageLayoutVersion in " + layout + "/oci-layout");
  }
  auto index = read_json("index.json");
  if (!index) Fail(layout + "/index.json");
  if (!index->is_object() || !index->contains("schemaVersion") ||
      !(*index)["schemaVersion"].is_number_integer() ||
      !index->contains("manifests") || !(*index)["manifests"].is_array()) {
    FailFake("index.json is no OCI image index");
  }

  struct Loaded {
    std::string reference;
    json descriptor;
    std::string stage;
  };
  std::vector<Loaded> loaded;
  int count = 0;
  for (const auto& descriptor : (*index)["manifests"]) {
    if (!EncodeDescriptor(descriptor)) {
      FailFake("index.json: a descriptor lacks its mediaType, digest or size");
    }
    std::string reference;
    const json annotations = descriptor.value("annotations", json::object());
    for (const char* key : {kAppleName, "io.containerd.image.name",
                            "org.opencontainers.image.ref.name"}) {
      if (annotations.is_object() && annotations.contains(key) &&
          annotations[key].is_string()) {
        reference = annotations[key];
        break;
      }
    }
    if (reference.empty()) {
      reference = "untagged@" + descriptor["digest"].get<std::string>();
    }
    std::string error;
    if (!ParseReference(reference, &error)) Fail(error);
    const std::string stage = temp.path + "/image-" + std::to_string(count++);
    Importer importer(layout_fd.fd, stage);
    json image_descriptor = importer.Import(descriptor);
    importer.UnpackHostVariant(HexOf(image_descriptor["digest"]));
    loaded.push_back({reference, image_descriptor, stage});
  }
  if (loaded.empty()) Fail("failed to import image");

  FileLock lock(LockPath());
  auto refs = ReadRefs();
  if (!refs) FailFake("cannot read " + images_ + "/refs.json");
  MakeDirs(images_, 0755);
  std::vector<std::string> references;
  for (const auto& image : loaded) {
    const std::string target =
        images_ + "/" + HexOf(image.descriptor["digest"]);
    if (!PathExists(target)) {
      if (::rename(image.stage.c_str(), target.c_str()) != 0) {
        FailFake("cannot move the image into " + target + ": " +
                 std::strerror(errno));
      }
    }
    (*refs)[image.reference] = {{"descriptor", image.descriptor}};
    references.push_back(image.reference);
  }
  WriteRefs(*refs);
  CollectGarbage();
  return references;
}

}  // namespace corral::fake_apple
