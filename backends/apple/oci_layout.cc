#include "backends/apple/oci_layout.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <memory>
#include <nlohmann/json.hpp>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "backends/docker/rootfs_tar.h"
#include "corral/status_macros.h"
#include "corral/unique_fd.h"

namespace corral::apple_runtime {
namespace {

using nlohmann::json;

constexpr char kManifestType[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kConfigType[] = "application/vnd.oci.image.config.v1+json";
constexpr char kLayerType[] = "application/vnd.oci.image.layer.v1.tar";
constexpr char kIndexType[] = "application/vnd.oci.image.index.v1+json";

class Sha256 {
 public:
  Sha256() : context_(EVP_MD_CTX_new()) {
    ok_ = context_ &&
          EVP_DigestInit_ex(context_.get(), EVP_sha256(), nullptr) == 1;
  }
  void Update(absl::string_view data) {
    ok_ =
        ok_ && EVP_DigestUpdate(context_.get(), data.data(), data.size()) == 1;
  }
  absl::StatusOr<std::string> Digest() {
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    if (!ok_ || EVP_DigestFinal_ex(context_.get(), out, &size) != 1) {
      return absl::InternalError("SHA-256 failed");
    }
    std::string hex = "sha256:";
    for (unsigned int i = 0; i < size; ++i) {
      absl::StrAppendFormat(&hex, "%02x", out[i]);
    }
    return hex;
  }

 private:
  struct Free {
    void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
  };
  std::unique_ptr<EVP_MD_CTX, Free> context_;
  bool ok_ = false;
};

absl::StatusOr<std::string> DigestOf(absl::string_view data) {
  Sha256 hash;
  hash.Update(data);
  return hash.Digest();
}

absl::Status WriteAll(int fd, absl::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoStatus("write");
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

struct ArchiveFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

// One regular file entry of `size` bytes; its data follows.
absl::Status Header(archive* a, const std::string& name, int64_t size) {
  std::unique_ptr<archive_entry, EntryFree> entry(archive_entry_new());
  archive_entry_set_pathname(entry.get(), name.c_str());
  archive_entry_set_filetype(entry.get(), AE_IFREG);
  archive_entry_set_perm(entry.get(), 0644);
  archive_entry_set_size(entry.get(), size);
  if (archive_write_header(a, entry.get()) != ARCHIVE_OK) {
    return absl::InternalError(
        absl::StrCat("tar: ", name, ": ", archive_error_string(a)));
  }
  return absl::OkStatus();
}

absl::Status Data(archive* a, absl::string_view data) {
  if (data.empty()) return absl::OkStatus();
  if (archive_write_data(a, data.data(), data.size()) !=
      static_cast<la_ssize_t>(data.size())) {
    return absl::InternalError(absl::StrCat("tar: ", archive_error_string(a)));
  }
  return absl::OkStatus();
}

absl::Status Directory(archive* a, const std::string& name) {
  std::unique_ptr<archive_entry, EntryFree> entry(archive_entry_new());
  archive_entry_set_pathname(entry.get(), name.c_str());
  archive_entry_set_filetype(entry.get(), AE_IFDIR);
  archive_entry_set_perm(entry.get(), 0755);
  if (archive_write_header(a, entry.get()) != ARCHIVE_OK) {
    return absl::InternalError(
        absl::StrCat("tar: ", name, ": ", archive_error_string(a)));
  }
  return absl::OkStatus();
}

std::string BlobName(absl::string_view digest) {
  return absl::StrCat("blobs/sha256/", digest.substr(7));
}

}  // namespace

std::string OciArchitecture() {
  struct utsname name {};
  if (::uname(&name) != 0) return "amd64";
  const std::string machine = name.machine;
  if (machine == "x86_64") return "amd64";
  if (machine == "aarch64" || machine == "arm64") return "arm64";
  return machine;
}

absl::Status WriteImageLayout(const LayoutImage& image,
                              const std::string& path) {
  // The layer first, staged in a file: its digest and size go into the
  // config and manifest, and a tar header needs the size up front.
  const std::string layer_path = absl::StrCat(path, ".layer");
  absl::Cleanup remove_layer = [&] { ::unlink(layer_path.c_str()); };
  UniqueFd layer(::open(layer_path.c_str(),
                        O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                        0600));
  if (!layer) return ErrnoStatus(absl::StrCat("create ", layer_path));
  Sha256 layer_hash;
  int64_t layer_size = 0;
  RETURN_IF_ERROR(docker::WriteDirectoryTar(
      image.directory,
      [&](absl::string_view piece) {
        layer_hash.Update(piece);
        layer_size += static_cast<int64_t>(piece.size());
        return WriteAll(layer.get(), piece);
      },
      image.zero_mtime));
  ASSIGN_OR_RETURN(std::string layer_digest, layer_hash.Digest());

  const json config = {
      {"architecture", image.architecture},
      {"os", "linux"},
      {"config",
       {{"Env", json::array({"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:"
                             "/usr/bin:/sbin:/bin"})},
        {"WorkingDir", "/"}}},
      {"rootfs",
       {{"type", "layers"}, {"diff_ids", json::array({layer_digest})}}}};
  const std::string config_text = config.dump();
  ASSIGN_OR_RETURN(std::string config_digest, DigestOf(config_text));
  const json manifest = {{"schemaVersion", 2},
                         {"mediaType", kManifestType},
                         {"config",
                          {{"mediaType", kConfigType},
                           {"digest", config_digest},
                           {"size", config_text.size()}}},
                         {"layers", json::array({{{"mediaType", kLayerType},
                                                  {"digest", layer_digest},
                                                  {"size", layer_size}}})}};
  const std::string manifest_text = manifest.dump();
  ASSIGN_OR_RETURN(std::string manifest_digest, DigestOf(manifest_text));
  const json index = {
      {"schemaVersion", 2},
      {"mediaType", kIndexType},
      {"manifests",
       json::array(
           {{{"mediaType", kManifestType},
             {"digest", manifest_digest},
             {"size", manifest_text.size()},
             {"platform",
              {{"architecture", image.architecture}, {"os", "linux"}}},
             // The loader names the image from the first of these it finds.
             {"annotations",
              {{"com.apple.containerization.image.name", image.reference},
               {"io.containerd.image.name", image.reference},
               {"org.opencontainers.image.ref.name", image.reference}}}}})}};
  const std::string index_text = index.dump();
  const std::string layout_text = R"({"imageLayoutVersion":"1.0.0"})";

  std::unique_ptr<archive, ArchiveFree> a(archive_write_new());
  if (!a) return absl::ResourceExhaustedError("archive_write_new");
  UniqueFd out(::open(path.c_str(),
                      O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                      0600));
  if (!out) return ErrnoStatus(absl::StrCat("create ", path));
  if (archive_write_set_format_pax_restricted(a.get()) != ARCHIVE_OK ||
      archive_write_open_fd(a.get(), out.get()) != ARCHIVE_OK) {
    return absl::InternalError(
        absl::StrCat("tar: ", archive_error_string(a.get())));
  }
  auto small = [&](const std::string& name,
                   absl::string_view text) -> absl::Status {
    RETURN_IF_ERROR(Header(a.get(), name, static_cast<int64_t>(text.size())));
    return Data(a.get(), text);
  };
  RETURN_IF_ERROR(small("oci-layout", layout_text));
  RETURN_IF_ERROR(small("index.json", index_text));
  RETURN_IF_ERROR(Directory(a.get(), "blobs/"));
  RETURN_IF_ERROR(Directory(a.get(), "blobs/sha256/"));
  RETURN_IF_ERROR(small(BlobName(config_digest), config_text));
  RETURN_IF_ERROR(small(BlobName(manifest_digest), manifest_text));
  RETURN_IF_ERROR(Header(a.get(), BlobName(layer_digest), layer_size));
  if (::lseek(layer.get(), 0, SEEK_SET) != 0) return ErrnoStatus("lseek");
  char buffer[64 << 10];
  for (int64_t left = layer_size; left > 0;) {
    ssize_t n = ::read(layer.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoStatus(absl::StrCat("read ", layer_path));
    RETURN_IF_ERROR(Data(a.get(), absl::string_view(buffer, n)));
    left -= n;
  }
  if (archive_write_close(a.get()) != ARCHIVE_OK) {
    return absl::InternalError(
        absl::StrCat("tar: ", archive_error_string(a.get())));
  }
  return absl::OkStatus();
}

}  // namespace corral::apple_runtime
