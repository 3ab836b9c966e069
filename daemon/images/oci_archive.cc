#include "daemon/images/oci_archive.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <system_error>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "corral/logging.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"
#include "daemon/images/digest.h"

namespace corral::daemon {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

absl::string_view Sv(std::string_view text) {
  return absl::string_view(text.data(), text.size());
}

// Names and strings from the archive are untrusted bytes: escape them.
std::string Quote(std::string_view text) {
  return absl::StrCat("\"", absl::CHexEscape(Sv(text)), "\"");
}

absl::Status Invalid(std::string_view message) {
  return absl::InvalidArgumentError(Sv(message));
}

// JSON documents (index, manifests, configs) are small; a bigger one is
// hostile.
constexpr uint64_t kMaxJsonBytes = 16 << 20;
// Nested indexes followed at most.
constexpr int kMaxIndexDepth = 4;
// Symlinks between members followed at most for one lookup.
constexpr int kMaxLinkHops = 16;
constexpr size_t kChunkSize = 1 << 20;

constexpr std::string_view kOciLayout = "oci-layout";
constexpr std::string_view kIndexJson = "index.json";
constexpr std::string_view kManifestJson = "manifest.json";

constexpr std::string_view kOciIndex =
    "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kDockerList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr std::string_view kOciManifest =
    "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kDockerManifest =
    "application/vnd.docker.distribution.manifest.v2+json";
constexpr std::string_view kConfigTypes[] = {
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
};

struct LayerType {
  std::string_view media_type;
  Compression compression;
};
// Docker's gzip type is detected from the data: `docker save` has been seen
// to label plain tars with it. The digest binds the bytes either way.
constexpr LayerType kLayerTypes[] = {
    {"application/vnd.oci.image.layer.v1.tar", Compression::kNone},
    {"application/vnd.oci.image.layer.v1.tar+gzip", Compression::kGzip},
    {"application/vnd.oci.image.layer.v1.tar+zstd", Compression::kZstd},
    {"application/vnd.oci.image.layer.nondistributable.v1.tar",
     Compression::kNone},
    {"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
     Compression::kGzip},
    {"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
     Compression::kZstd},
    {"application/vnd.docker.image.rootfs.diff.tar.gzip", Compression::kAuto},
};

bool IsIndexType(std::string_view type) {
  return type == kOciIndex || type == kDockerList;
}
bool IsManifestType(std::string_view type) {
  return type == kOciManifest || type == kDockerManifest;
}
bool IsConfigType(std::string_view type) {
  return std::find(std::begin(kConfigTypes), std::end(kConfigTypes), type) !=
         std::end(kConfigTypes);
}
const LayerType* FindLayerType(std::string_view type) {
  for (const LayerType& layer : kLayerTypes) {
    if (layer.media_type == type) return &layer;
  }
  return nullptr;
}

// "a/./b//c/" -> "a/b/c"; nullopt for an absolute path or one leaving the
// root. ".." inside is resolved (symlink targets use it).
std::optional<std::string> Normalize(std::string_view path) {
  if (!path.empty() && path.front() == '/') return std::nullopt;
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string_view::npos) end = path.size();
    const std::string_view part = path.substr(start, end - start);
    start = end + 1;
    if (part.empty() || part == ".") continue;
    if (part == "..") {
      if (parts.empty()) return std::nullopt;
      parts.pop_back();
      continue;
    }
    parts.push_back(part);
  }
  std::string out;
  for (const std::string_view part : parts) {
    if (!out.empty()) out += '/';
    out.append(part);
  }
  return out;
}

// A member name as the archive gave it, cleaned; refuses absolute paths and
// ".." (no legitimate layout has them).
absl::StatusOr<std::string> CleanMemberName(std::string_view name) {
  if (name.size() > 4096) {
    return Invalid(absl::StrCat("archive member ", Quote(name.substr(0, 64)),
                                "...: name longer than 4096 bytes"));
  }
  if (!name.empty() && name.front() == '/') {
    return Invalid(
        absl::StrCat("archive member ", Quote(name), ": absolute path"));
  }
  for (absl::string_view part : absl::StrSplit(Sv(name), '/')) {
    if (part == "..") {
      return Invalid(absl::StrCat("archive member ", Quote(name),
                                  ": has a \"..\" component"));
    }
  }
  return *Normalize(name);
}

// Reads a file in chunks, for the layers' ChunkReaders.
ChunkReader FileChunks(std::shared_ptr<UniqueFd> fd) {
  auto offset = std::make_shared<uint64_t>(0);
  return [fd, offset]() -> absl::StatusOr<std::optional<std::string>> {
    std::string chunk(kChunkSize, '\0');
    while (true) {
      const ssize_t got = ::pread(fd->get(), chunk.data(), chunk.size(),
                                  static_cast<off_t>(*offset));
      if (got < 0) {
        if (errno == EINTR) continue;
        return ErrnoStatus("reading a spooled layer");
      }
      if (got == 0) return std::nullopt;
      *offset += static_cast<uint64_t>(got);
      chunk.resize(static_cast<size_t>(got));
      return chunk;
    }
  };
}

std::string ShortDigest(std::string_view digest) {
  return std::string(digest.substr(0, std::min<size_t>(digest.size(), 19)));
}

struct Descriptor {
  std::string media_type;
  std::string digest;
  int64_t size = -1;
  // Platform, when the descriptor names one.
  bool has_platform = false;
  std::string os;
  std::string architecture;
  std::string variant;
  std::map<std::string, std::string> annotations;

  std::string Platform() const {
    std::string text = absl::StrCat(os, "/", architecture);
    if (!variant.empty()) absl::StrAppend(&text, "/", variant);
    return text;
  }
  // How a user would name this entry of an index.
  std::string DisplayName() const {
    for (const char* key :
         {"org.opencontainers.image.ref.name", "io.containerd.image.name"}) {
      auto it = annotations.find(key);
      if (it != annotations.end()) return it->second;
    }
    return digest;
  }
};

std::string StringField(const Json& object, const char* key) {
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return "";
  return it->get<std::string>();
}

absl::StatusOr<Descriptor> ParseDescriptor(const Json& json,
                                           std::string_view where) {
  if (!json.is_object()) {
    return Invalid(absl::StrCat(Sv(where), ": descriptor is not an object"));
  }
  Descriptor descriptor;
  descriptor.media_type = StringField(json, "mediaType");
  descriptor.digest = StringField(json, "digest");
  auto size = json.find("size");
  if (size != json.end() && size->is_number_integer()) {
    descriptor.size = size->get<int64_t>();
  }
  if (descriptor.media_type.empty()) {
    return Invalid(absl::StrCat(Sv(where), ": descriptor has no mediaType"));
  }
  if (descriptor.size < 0) {
    return Invalid(absl::StrCat(Sv(where), ": descriptor ",
                                Quote(descriptor.digest),
                                " has no valid size"));
  }
  auto platform = json.find("platform");
  if (platform != json.end() && platform->is_object()) {
    descriptor.has_platform = true;
    descriptor.os = StringField(*platform, "os");
    descriptor.architecture = StringField(*platform, "architecture");
    descriptor.variant = StringField(*platform, "variant");
  }
  auto annotations = json.find("annotations");
  if (annotations != json.end() && annotations->is_object()) {
    for (const auto& [key, value] : annotations->items()) {
      if (value.is_string()) {
        descriptor.annotations[key] = value.get<std::string>();
      }
    }
  }
  return descriptor;
}

absl::StatusOr<Json> ParseJson(const std::string& text, std::string_view what) {
  Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return Invalid(absl::StrCat(Sv(what), " is not valid JSON"));
  }
  return json;
}

absl::StatusOr<std::vector<std::string>> StringList(const Json& object,
                                                    const char* key,
                                                    std::string_view what) {
  std::vector<std::string> out;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return out;
  if (!it->is_array()) {
    return Invalid(absl::StrCat(Sv(what), ": ", key, " is not a list"));
  }
  for (const Json& item : *it) {
    if (!item.is_string()) {
      return Invalid(
          absl::StrCat(Sv(what), ": ", key, " is not a list of strings"));
    }
    out.push_back(item.get<std::string>());
  }
  return out;
}

// Finds members, reads them and checks them against digests.
class Resolver {
 public:
  Resolver(const std::map<std::string, ImageArchive::Member>& members,
           std::string_view architecture)
      : members_(members), architecture_(architecture) {}

  absl::StatusOr<ResolvedImage> Resolve();

 private:
  const ImageArchive::Member* Find(const std::string& name) const;
  absl::StatusOr<std::string> ReadMember(const ImageArchive::Member& member,
                                         std::string_view what) const;
  // The blob a descriptor names, checked against its digest and size.
  absl::StatusOr<const ImageArchive::Member*> Blob(const Descriptor& descriptor,
                                                   std::string_view what);
  absl::Status CheckDigest(const ImageArchive::Member& member,
                           std::string_view hex, int64_t size,
                           std::string_view what);

  absl::StatusOr<ResolvedImage> ResolveOci();
  absl::StatusOr<Descriptor> ChooseManifest(const Json& index, int depth);
  absl::StatusOr<ResolvedImage> ResolveManifest(const Descriptor& manifest);
  absl::StatusOr<ResolvedImage> ResolveDockerSave();
  absl::Status ReadConfig(const std::string& config_json,
                          ResolvedImage& image) const;
  LayerSource MakeLayer(const ImageArchive::Member& member, size_t index,
                        size_t count, std::string_view digest,
                        Compression compression) const;

  const std::map<std::string, ImageArchive::Member>& members_;
  const std::string architecture_;
  // Members whose digest was checked, by spooled file.
  std::set<std::string> verified_;
};

const ImageArchive::Member* Resolver::Find(const std::string& name) const {
  std::string current = name;
  for (int hop = 0; hop <= kMaxLinkHops; ++hop) {
    auto it = members_.find(current);
    if (it == members_.end()) return nullptr;
    if (it->second.link_target.empty()) return &it->second;
    const size_t slash = current.rfind('/');
    const std::string base =
        slash == std::string::npos ? "" : current.substr(0, slash + 1);
    std::optional<std::string> next =
        Normalize(absl::StrCat(base, it->second.link_target));
    if (!next.has_value()) return nullptr;
    current = *next;
  }
  return nullptr;
}

absl::StatusOr<std::string> Resolver::ReadMember(
    const ImageArchive::Member& member, std::string_view what) const {
  if (member.size > kMaxJsonBytes) {
    return Invalid(
        absl::StrCat(Sv(what), " is larger than ", kMaxJsonBytes, " bytes"));
  }
  UniqueFd fd(::open(member.file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoStatus(absl::StrCat("open ", member.file));
  std::string text(member.size, '\0');
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t got = ::pread(fd.get(), text.data() + done,
                                text.size() - done, static_cast<off_t>(done));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return ErrnoStatus(absl::StrCat("read ", member.file));
    done += static_cast<size_t>(got);
  }
  return text;
}

absl::Status Resolver::CheckDigest(const ImageArchive::Member& member,
                                   std::string_view hex, int64_t size,
                                   std::string_view what) {
  if (size >= 0 && member.size != static_cast<uint64_t>(size)) {
    return Invalid(absl::StrCat(Sv(what), ": size is ", member.size,
                                " bytes, its descriptor says ", size));
  }
  if (verified_.count(absl::StrCat(member.file, "@", Sv(hex))) > 0) {
    return absl::OkStatus();
  }
  UniqueFd fd(::open(member.file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return ErrnoStatus(absl::StrCat("open ", member.file));
  ASSIGN_OR_RETURN(FileDigest digest, DigestFile(fd.get()));
  if (digest.sha256 != hex) {
    return Invalid(absl::StrCat(Sv(what), ": digest mismatch: sha256:",
                                digest.sha256, " instead of sha256:", Sv(hex)));
  }
  verified_.insert(absl::StrCat(member.file, "@", Sv(hex)));
  return absl::OkStatus();
}

absl::StatusOr<const ImageArchive::Member*> Resolver::Blob(
    const Descriptor& descriptor, std::string_view what) {
  const std::string& digest = descriptor.digest;
  const size_t colon = digest.find(':');
  if (colon == std::string::npos) {
    return Invalid(absl::StrCat(Sv(what), ": bad digest ", Quote(digest)));
  }
  const std::string algorithm = digest.substr(0, colon);
  const std::string hex = digest.substr(colon + 1);
  if (algorithm != "sha256") {
    return Invalid(absl::StrCat(Sv(what), ": digest algorithm ",
                                Quote(algorithm),
                                " is not supported (only sha256)"));
  }
  if (!IsSha256Hex(hex)) {
    return Invalid(absl::StrCat(Sv(what), ": bad digest ", Quote(digest)));
  }
  const ImageArchive::Member* member = Find(absl::StrCat("blobs/sha256/", hex));
  if (member == nullptr) {
    return Invalid(absl::StrCat(Sv(what), ": blob ", digest,
                                " is missing from the archive"));
  }
  RETURN_IF_ERROR(CheckDigest(*member, hex, descriptor.size, what));
  return member;
}

absl::StatusOr<ResolvedImage> Resolver::Resolve() {
  if (Find(std::string(kOciLayout)) != nullptr) return ResolveOci();
  if (Find(std::string(kManifestJson)) != nullptr) return ResolveDockerSave();
  if (Find(std::string(kIndexJson)) != nullptr) {
    return Invalid("archive has index.json but no oci-layout file");
  }
  if (Find("repositories") != nullptr) {
    return Invalid(
        "archive is a docker save archive of the format before Docker 1.10 "
        "(no manifest.json); save it with a newer docker");
  }
  return Invalid(
      "archive is no OCI image layout (oci-layout, index.json, blobs/) and "
      "no docker save archive (manifest.json)");
}

absl::StatusOr<ResolvedImage> Resolver::ResolveOci() {
  ASSIGN_OR_RETURN(std::string layout_text,
                   ReadMember(*Find(std::string(kOciLayout)), "oci-layout"));
  ASSIGN_OR_RETURN(Json layout, ParseJson(layout_text, "oci-layout"));
  const std::string version =
      layout.is_object() ? StringField(layout, "imageLayoutVersion") : "";
  if (!absl::StartsWith(version, "1.")) {
    return Invalid(absl::StrCat("oci-layout: image layout version ",
                                Quote(version), " is not supported (1.x)"));
  }
  const ImageArchive::Member* index_member = Find(std::string(kIndexJson));
  if (index_member == nullptr) {
    return Invalid("OCI image layout without index.json");
  }
  ASSIGN_OR_RETURN(std::string index_text,
                   ReadMember(*index_member, "index.json"));
  ASSIGN_OR_RETURN(Json index, ParseJson(index_text, "index.json"));
  ASSIGN_OR_RETURN(Descriptor manifest, ChooseManifest(index, 0));
  ASSIGN_OR_RETURN(ResolvedImage image, ResolveManifest(manifest));
  image.format = "oci";
  return image;
}

absl::StatusOr<Descriptor> Resolver::ChooseManifest(const Json& index,
                                                    int depth) {
  const std::string where = depth == 0 ? "index.json" : "nested image index";
  if (!index.is_object() || !index.contains("manifests") ||
      !index["manifests"].is_array()) {
    return Invalid(absl::StrCat(where, " has no manifests list"));
  }
  std::vector<Descriptor> matching, unplatformed;
  std::vector<std::string> other_platforms, unknown_types;
  for (const Json& entry : index["manifests"]) {
    ASSIGN_OR_RETURN(Descriptor descriptor, ParseDescriptor(entry, where));
    // Build attestations ride along in indexes made by BuildKit; they are
    // no runnable image.
    auto reference = descriptor.annotations.find("vnd.docker.reference.type");
    if (reference != descriptor.annotations.end() &&
        reference->second == "attestation-manifest") {
      continue;
    }
    if (descriptor.has_platform && descriptor.os == "unknown") continue;
    if (!IsManifestType(descriptor.media_type) &&
        !IsIndexType(descriptor.media_type)) {
      unknown_types.push_back(descriptor.media_type);
      continue;
    }
    if (!descriptor.has_platform) {
      unplatformed.push_back(std::move(descriptor));
    } else if (descriptor.os == "linux" &&
               descriptor.architecture == architecture_) {
      matching.push_back(std::move(descriptor));
    } else {
      other_platforms.push_back(descriptor.Platform());
    }
  }
  if (!unknown_types.empty()) {
    return Invalid(
        absl::StrCat(where, " lists entries of unknown media types: ",
                     absl::CHexEscape(absl::StrJoin(unknown_types, ", ")),
                     " (known: ", Sv(kOciManifest), ", ", Sv(kDockerManifest),
                     ", ", Sv(kOciIndex), ", ", Sv(kDockerList), ")"));
  }
  std::vector<Descriptor>& pool = !matching.empty() ? matching : unplatformed;
  if (pool.empty()) {
    if (!other_platforms.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat("the archive has no image for linux/", architecture_,
                       " (this host); it has: ",
                       absl::CHexEscape(absl::StrJoin(other_platforms, ", "))));
    }
    return Invalid(absl::StrCat(where, " lists no image"));
  }
  if (pool.size() > 1) {
    std::vector<std::string> names;
    for (const Descriptor& descriptor : pool) {
      names.push_back(descriptor.has_platform
                          ? absl::StrCat(descriptor.DisplayName(), " (",
                                         descriptor.Platform(), ")")
                          : descriptor.DisplayName());
    }
    return Invalid(absl::StrCat(
        "the archive holds ", pool.size(),
        " images: ", absl::CHexEscape(absl::StrJoin(names, ", ")),
        "; Corral imports one image per archive: copy the one you want into "
        "its own archive (e.g. skopeo copy oci-archive:FILE:NAME "
        "oci-archive:ONE.tar)"));
  }
  Descriptor chosen = std::move(pool.front());
  if (IsManifestType(chosen.media_type)) return chosen;
  if (depth + 1 >= kMaxIndexDepth) {
    return Invalid("image indexes nested too deep");
  }
  ASSIGN_OR_RETURN(const ImageArchive::Member* blob,
                   Blob(chosen, absl::StrCat("image index ", chosen.digest)));
  ASSIGN_OR_RETURN(
      std::string text,
      ReadMember(*blob, absl::StrCat("image index ", chosen.digest)));
  ASSIGN_OR_RETURN(Json nested, ParseJson(text, "image index"));
  return ChooseManifest(nested, depth + 1);
}

LayerSource Resolver::MakeLayer(const ImageArchive::Member& member,
                                size_t index, size_t count,
                                std::string_view digest,
                                Compression compression) const {
  LayerSource layer;
  layer.name = absl::StrCat("layer ", index + 1, "/", count, " (",
                            ShortDigest(digest), "...)");
  layer.compression = compression;
  const std::string file = member.file;
  layer.open = [file]() -> absl::StatusOr<ChunkReader> {
    auto fd = std::make_shared<UniqueFd>(
        ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
    if (!*fd) return ErrnoStatus(absl::StrCat("open ", file));
    return FileChunks(std::move(fd));
  };
  return layer;
}

absl::Status Resolver::ReadConfig(const std::string& config_json,
                                  ResolvedImage& image) const {
  ASSIGN_OR_RETURN(Json config, ParseJson(config_json, "image config"));
  if (!config.is_object()) return Invalid("image config is not an object");
  const std::string os = StringField(config, "os");
  const std::string architecture = StringField(config, "architecture");
  if (!os.empty() && os != "linux") {
    return absl::FailedPreconditionError(
        absl::StrCat("the image is for ", Quote(os), ", not linux"));
  }
  if (!architecture.empty() && architecture != architecture_) {
    return absl::FailedPreconditionError(
        absl::StrCat("the image is for ", Quote(architecture),
                     ", this host is ", architecture_));
  }
  image.config_json = config_json;
  ASSIGN_OR_RETURN(image.run, ParseImageRunConfig(config_json));
  return absl::OkStatus();
}

absl::StatusOr<ResolvedImage> Resolver::ResolveManifest(
    const Descriptor& descriptor) {
  const std::string what = absl::StrCat("manifest ", descriptor.digest);
  ASSIGN_OR_RETURN(const ImageArchive::Member* blob, Blob(descriptor, what));
  ASSIGN_OR_RETURN(std::string text, ReadMember(*blob, what));
  ASSIGN_OR_RETURN(Json manifest, ParseJson(text, what));
  if (!manifest.is_object()) return Invalid(absl::StrCat(what, ": no object"));
  auto schema = manifest.find("schemaVersion");
  if (schema == manifest.end() || !schema->is_number_integer() ||
      schema->get<int64_t>() != 2) {
    return Invalid(absl::StrCat(what, ": schemaVersion is not 2"));
  }
  const std::string declared = StringField(manifest, "mediaType");
  if (!declared.empty() && declared != descriptor.media_type) {
    return Invalid(absl::StrCat(what, ": media type ", Quote(declared),
                                " differs from its descriptor's ",
                                Quote(descriptor.media_type)));
  }
  if (!manifest.contains("config") || !manifest.contains("layers") ||
      !manifest["layers"].is_array()) {
    return Invalid(absl::StrCat(what, ": no config or no layers"));
  }
  ASSIGN_OR_RETURN(Descriptor config,
                   ParseDescriptor(manifest["config"], what));
  std::vector<Descriptor> layers;
  std::vector<std::string> unknown_types;
  if (!IsConfigType(config.media_type)) {
    unknown_types.push_back(absl::StrCat("config ", config.media_type));
  }
  for (const Json& entry : manifest["layers"]) {
    ASSIGN_OR_RETURN(Descriptor layer, ParseDescriptor(entry, what));
    if (FindLayerType(layer.media_type) == nullptr) {
      unknown_types.push_back(absl::StrCat("layer ", layer.media_type));
    }
    layers.push_back(std::move(layer));
  }
  if (!unknown_types.empty()) {
    std::vector<std::string> known;
    for (const LayerType& type : kLayerTypes) {
      known.emplace_back(type.media_type);
    }
    return Invalid(
        absl::StrCat(what, ": unknown media types: ",
                     absl::CHexEscape(absl::StrJoin(unknown_types, ", ")),
                     " (known layer types: ", absl::StrJoin(known, ", "), ")"));
  }

  ResolvedImage image;
  image.manifest_digest = descriptor.digest;
  ASSIGN_OR_RETURN(const ImageArchive::Member* config_blob,
                   Blob(config, absl::StrCat("config ", config.digest)));
  ASSIGN_OR_RETURN(std::string config_json,
                   ReadMember(*config_blob, "image config"));
  RETURN_IF_ERROR(ReadConfig(config_json, image));
  {
    // Each layer's diff_id is the digest of its uncompressed tar: the counts
    // must agree even though the layers are checked by their own digests.
    ASSIGN_OR_RETURN(Json parsed, ParseJson(config_json, "image config"));
    auto rootfs = parsed.find("rootfs");
    if (rootfs != parsed.end() && rootfs->is_object() &&
        rootfs->contains("diff_ids") && (*rootfs)["diff_ids"].is_array() &&
        (*rootfs)["diff_ids"].size() != layers.size()) {
      return Invalid(absl::StrCat(
          "image config lists ", (*rootfs)["diff_ids"].size(),
          " layers (rootfs.diff_ids), the manifest ", layers.size()));
    }
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    const Descriptor& layer = layers[i];
    ASSIGN_OR_RETURN(
        const ImageArchive::Member* layer_blob,
        Blob(layer, absl::StrCat("layer ", i + 1, " ", layer.digest)));
    image.layers.push_back(
        MakeLayer(*layer_blob, i, layers.size(), layer.digest,
                  FindLayerType(layer.media_type)->compression));
  }
  return image;
}

// The digest a docker save member name carries: "<hex>.json" (legacy
// config), "blobs/sha256/<hex>" (newer docker), else empty.
std::string DigestInName(const std::string& name) {
  const size_t slash = name.rfind('/');
  const std::string base =
      slash == std::string::npos ? name : name.substr(slash + 1);
  if (absl::EndsWith(base, ".json")) {
    const std::string hex = base.substr(0, base.size() - 5);
    if (IsSha256Hex(hex)) return hex;
  }
  if (absl::StartsWith(name, "blobs/sha256/") && IsSha256Hex(base)) {
    return base;
  }
  return "";
}

absl::StatusOr<ResolvedImage> Resolver::ResolveDockerSave() {
  ASSIGN_OR_RETURN(
      std::string text,
      ReadMember(*Find(std::string(kManifestJson)), "manifest.json"));
  ASSIGN_OR_RETURN(Json manifest, ParseJson(text, "manifest.json"));
  if (!manifest.is_array() || manifest.empty()) {
    return Invalid("manifest.json lists no image");
  }
  if (manifest.size() > 1) {
    std::vector<std::string> names;
    for (const Json& entry : manifest) {
      std::vector<std::string> tags;
      if (entry.is_object() && entry.contains("RepoTags") &&
          entry["RepoTags"].is_array()) {
        for (const Json& tag : entry["RepoTags"]) {
          if (tag.is_string()) tags.push_back(tag.get<std::string>());
        }
      }
      names.push_back(tags.empty()
                          ? (entry.is_object() ? StringField(entry, "Config")
                                               : std::string("?"))
                          : absl::StrJoin(tags, " "));
    }
    return Invalid(absl::StrCat(
        "the archive holds ", manifest.size(),
        " images: ", absl::CHexEscape(absl::StrJoin(names, ", ")),
        "; Corral imports one image per archive: docker save one image"));
  }
  const Json& entry = manifest[0];
  if (!entry.is_object()) return Invalid("manifest.json: entry is no object");
  const std::string config_name = StringField(entry, "Config");
  ASSIGN_OR_RETURN(std::vector<std::string> layer_names,
                   StringList(entry, "Layers", "manifest.json"));
  std::optional<std::string> config_path = Normalize(config_name);
  const ImageArchive::Member* config_member =
      config_path ? Find(*config_path) : nullptr;
  if (config_member == nullptr) {
    return Invalid(absl::StrCat("manifest.json: config ", Quote(config_name),
                                " is missing from the archive"));
  }
  // The config's name is its digest; the config's diff_ids are the digests
  // of the (uncompressed) layer tars: together they bind every byte.
  const std::string config_hex = DigestInName(*config_path);
  if (config_hex.empty()) {
    return Invalid(absl::StrCat("manifest.json: config ", Quote(config_name),
                                " is not named by its digest; cannot verify "
                                "it"));
  }
  RETURN_IF_ERROR(CheckDigest(*config_member, config_hex, -1,
                              absl::StrCat("config ", config_name)));
  ResolvedImage image;
  image.format = "docker-save";
  ASSIGN_OR_RETURN(std::string config_json,
                   ReadMember(*config_member, "image config"));
  RETURN_IF_ERROR(ReadConfig(config_json, image));
  ASSIGN_OR_RETURN(Json config, ParseJson(config_json, "image config"));
  std::vector<std::string> diff_ids;
  if (config.contains("rootfs") && config["rootfs"].is_object()) {
    ASSIGN_OR_RETURN(diff_ids,
                     StringList(config["rootfs"], "diff_ids", "image config"));
  }
  if (diff_ids.size() != layer_names.size()) {
    return Invalid(absl::StrCat("image config lists ", diff_ids.size(),
                                " layers (rootfs.diff_ids), manifest.json ",
                                layer_names.size()));
  }
  for (size_t i = 0; i < layer_names.size(); ++i) {
    const std::string what =
        absl::StrCat("layer ", i + 1, " ", Quote(layer_names[i]));
    std::optional<std::string> path = Normalize(layer_names[i]);
    const ImageArchive::Member* member = path ? Find(*path) : nullptr;
    if (member == nullptr) {
      return Invalid(absl::StrCat(what, " is missing from the archive"));
    }
    if (!absl::StartsWith(diff_ids[i], "sha256:") ||
        !IsSha256Hex(diff_ids[i].substr(7))) {
      return Invalid(
          absl::StrCat(what, ": unsupported diff_id ", Quote(diff_ids[i])));
    }
    RETURN_IF_ERROR(CheckDigest(*member, diff_ids[i].substr(7), -1, what));
    image.layers.push_back(MakeLayer(*member, i, layer_names.size(),
                                     diff_ids[i], Compression::kNone));
  }
  return image;
}

unsigned FiltersFor(Compression compression) {
  switch (compression) {
    case Compression::kAuto:
      return kTarAnyFilter;
    case Compression::kNone:
      return 0;
    case Compression::kGzip:
      return kTarGzip;
    case Compression::kXz:
      return kTarXz;
    case Compression::kZstd:
      return kTarZstd;
  }
  return 0;
}

// Serves the chunks recorded while detecting, then the rest of the stream.
struct Replay {
  std::vector<std::string> chunks;
  size_t next = 0;
};

}  // namespace

std::string_view HostArchitecture() {
#if defined(__x86_64__)
  return "amd64";
#elif defined(__aarch64__)
  return "arm64";
#elif defined(__i386__)
  return "386";
#elif defined(__arm__)
  return "arm";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  return "ppc64le";
#elif defined(__s390x__)
  return "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
  return "riscv64";
#else
  return "unknown";
#endif
}

absl::StatusOr<ImageRunConfig> ParseImageRunConfig(
    const std::string& config_json) {
  ASSIGN_OR_RETURN(Json config, ParseJson(config_json, "image config"));
  if (!config.is_object()) return Invalid("image config is not an object");
  ImageRunConfig result;
  auto run = config.find("config");
  if (run == config.end() || run->is_null()) return result;
  if (!run->is_object()) return Invalid("image config: config is no object");
  ASSIGN_OR_RETURN(result.env, StringList(*run, "Env", "image config"));
  ASSIGN_OR_RETURN(result.entrypoint,
                   StringList(*run, "Entrypoint", "image config"));
  ASSIGN_OR_RETURN(result.cmd, StringList(*run, "Cmd", "image config"));
  result.working_dir = StringField(*run, "WorkingDir");
  result.user = StringField(*run, "User");
  return result;
}

bool IsImageArchiveMember(std::string_view path) {
  std::optional<std::string> clean = Normalize(path);
  if (!clean.has_value() || clean->empty()) return false;
  const std::string top = clean->substr(0, clean->find('/'));
  if (top == kOciLayout || top == kIndexJson || top == kManifestJson ||
      top == "repositories" || top == "blobs") {
    return true;
  }
  if (IsSha256Hex(top)) return true;
  // "<hex>.json" configs and, from skopeo's docker-archive, "<hex>.tar"
  // layers.
  return (absl::EndsWith(top, ".json") || absl::EndsWith(top, ".tar")) &&
         IsSha256Hex(std::string_view(top).substr(0, 64)) &&
         top.size() == 64 + (absl::EndsWith(top, ".tar") ? 4 : 5);
}

absl::StatusOr<DetectedArchive> DetectImageArchive(
    Compression compression, const ChunkReader& next_chunk) {
  auto replay = std::make_shared<Replay>();
  // Records what the detection reads, for the replay.
  ChunkReader recorder =
      [replay, &next_chunk]() -> absl::StatusOr<std::optional<std::string>> {
    ASSIGN_OR_RETURN(std::optional<std::string> chunk, next_chunk());
    if (chunk.has_value()) replay->chunks.push_back(*chunk);
    return chunk;
  };
  DetectedArchive detected;
  {
    TarStreamOptions options;
    options.max_raw_bytes = 16 << 20;
    options.filters = FiltersFor(compression);
    TarStream stream(recorder, options);
    absl::Status opened = stream.Open("opening");
    // A few root entries ("./", ".") may come before the first real one.
    for (int header = 0; opened.ok() && header < 8; ++header) {
      absl::StatusOr<struct archive_entry*> entry =
          stream.NextHeader("header", "header");
      if (!entry.ok() || *entry == nullptr) break;
      const char* name = archive_entry_pathname(*entry);
      if (name == nullptr) break;
      std::optional<std::string> clean = Normalize(name);
      if (clean.has_value() && clean->empty()) continue;
      detected.image_archive = IsImageArchiveMember(name);
      break;
    }
    // The caller's own error (a cancelled upload) ends the import here.
    absl::Status failure = stream.Failure("detecting the archive kind");
    if (!failure.ok() && !absl::IsInvalidArgument(failure)) return failure;
  }
  detected.replay =
      [replay, &next_chunk]() -> absl::StatusOr<std::optional<std::string>> {
    if (replay->next < replay->chunks.size()) {
      return std::optional<std::string>(
          std::move(replay->chunks[replay->next++]));
    }
    return next_chunk();
  };
  return detected;
}

absl::StatusOr<std::unique_ptr<ImageArchive>> ImageArchive::Spool(
    const fs::path& spool_dir, Compression compression,
    const ChunkReader& next_chunk, const ImportLimits& limits) {
  std::unique_ptr<ImageArchive> archive(new ImageArchive());
  std::error_code error;
  const fs::path absolute_spool = fs::absolute(spool_dir, error);
  if (error) {
    return absl::InternalError(absl::StrCat(
        "absolute path of ", spool_dir.string(), ": ", error.message()));
  }
  Sha256 sha256;
  TarStreamOptions options;
  options.max_raw_bytes = TarRawByteCap(limits.max_bytes, limits.max_entries);
  options.filters = FiltersFor(compression);
  options.over_limit_message =
      "archive is larger than $0 bytes (the byte limit plus headers)";
  options.corrupt_message =
      "archive is corrupt, truncated or not a tar archive ($0): $1";
  options.on_chunk = [&sha256](std::string_view chunk) {
    sha256.Update(chunk);
  };
  TarStream stream(next_chunk, options);
  RETURN_IF_ERROR(stream.Open("opening"));
  uint64_t members = 0;
  uint64_t total = 0;
  while (true) {
    ASSIGN_OR_RETURN(struct archive_entry * entry,
                     stream.NextHeader("reading a member header",
                                       "reading a member header"));
    if (entry == nullptr) break;
    const char* raw_name = archive_entry_pathname(entry);
    if (raw_name == nullptr) {
      return Invalid(
          absl::StrCat("archive member ", members + 1, " has no usable name"));
    }
    if (++members > limits.max_entries) {
      return Invalid(absl::StrCat("archive has more than ", limits.max_entries,
                                  " members"));
    }
    ASSIGN_OR_RETURN(std::string name, CleanMemberName(raw_name));
    const char* hardlink = archive_entry_hardlink(entry);
    const mode_t type = archive_entry_filetype(entry);
    Member member;
    if (hardlink != nullptr) {
      ASSIGN_OR_RETURN(std::string target, CleanMemberName(hardlink));
      auto it = archive->members_.find(target);
      if (it == archive->members_.end()) {
        return Invalid(absl::StrCat("archive member ", Quote(name),
                                    ": hard link to a member not seen before"));
      }
      member = it->second;
    } else if (type == AE_IFLNK) {
      const char* target = archive_entry_symlink(entry);
      if (target == nullptr || *target == '\0' ||
          std::string_view(target).size() > 4096) {
        return Invalid(absl::StrCat("archive member ", Quote(name),
                                    ": unusable symlink target"));
      }
      member.link_target = target;
    } else if (type == AE_IFREG) {
      const int64_t size =
          archive_entry_size_is_set(entry) ? archive_entry_size(entry) : 0;
      if (size < 0) {
        return Invalid(
            absl::StrCat("archive member ", Quote(name), ": negative size"));
      }
      total += static_cast<uint64_t>(size);
      if (static_cast<uint64_t>(size) > limits.max_bytes ||
          total > limits.max_bytes) {
        return Invalid(
            absl::StrCat("archive members add up to more than the "
                         "byte limit of ",
                         limits.max_bytes, " bytes"));
      }
      member.size = static_cast<uint64_t>(size);
      // Absolute: the layers are read on the extraction thread, whose
      // working directory is the rootfs.
      member.file = (absolute_spool / absl::StrCat(members)).string();
      UniqueFd fd(::open(member.file.c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                         0600));
      if (!fd) return ErrnoStatus(absl::StrCat("create ", member.file));
      while (true) {
        ASSIGN_OR_RETURN(std::optional<TarDataBlock> block,
                         stream.NextDataBlock(name));
        if (!block.has_value()) break;
        if (block->offset < 0 ||
            static_cast<uint64_t>(block->offset) + block->data.size() >
                member.size) {
          return Invalid(absl::StrCat("archive member ", Quote(name),
                                      ": data beyond its declared size"));
        }
        size_t done = 0;
        while (done < block->data.size()) {
          const ssize_t wrote = ::pwrite(
              fd.get(), block->data.data() + done, block->data.size() - done,
              static_cast<off_t>(block->offset + done));
          if (wrote < 0 && errno == EINTR) continue;
          if (wrote < 0) {
            if (errno == ENOSPC) {
              return absl::ResourceExhaustedError(
                  "no space left to spool the image archive");
            }
            return ErrnoStatus(absl::StrCat("write ", member.file));
          }
          done += static_cast<size_t>(wrote);
        }
      }
      // Sparse members end in a hole.
      if (::ftruncate(fd.get(), static_cast<off_t>(member.size)) != 0) {
        return ErrnoStatus(absl::StrCat("ftruncate ", member.file));
      }
    } else {
      // Directories are implied by the names; nothing else is used.
      continue;
    }
    if (name.empty()) continue;
    if (!archive->members_.emplace(name, std::move(member)).second) {
      return Invalid(
          absl::StrCat("archive has two members named ", Quote(name)));
    }
  }
  RETURN_IF_ERROR(stream.ReadToEnd());
  archive->archive_bytes_ = stream.raw_bytes();
  ASSIGN_OR_RETURN(archive->archive_sha256_, sha256.HexDigest());
  return archive;
}

absl::StatusOr<ResolvedImage> ImageArchive::Resolve(
    std::string_view architecture) const {
  Resolver resolver(members_, architecture);
  return resolver.Resolve();
}

}  // namespace corral::daemon
