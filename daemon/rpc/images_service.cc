// corral.v1.Images: listing is open to every caller; importing and deleting
// change what every user's sandboxes can boot, so they need root or the
// admin group.
#include "absl/strings/str_cat.h"
#include "corral/v1/images.grpc.pb.h"
#include "daemon/images/image_store.h"
#include "daemon/rpc/handler.h"

namespace corral::daemon {
namespace {

namespace v1 = corral::v1;

class ImagesService final : public v1::Images::Service {
 public:
  explicit ImagesService(const ServiceDeps& deps) : deps_(deps) {}

  grpc::Status ListImages(grpc::ServerContext* context,
                          const v1::ListImagesRequest*,
                          v1::ListImagesResponse* response) override {
    CALLER_OR_RETURN(caller);
    auto images = deps_.images->List();
    if (!images.ok()) return ToGrpcStatus(images.status());
    for (auto& image : *images) *response->add_images() = std::move(image);
    return grpc::Status::OK;
  }

  grpc::Status GetImage(grpc::ServerContext* context,
                        const v1::GetImageRequest* request,
                        v1::Image* response) override {
    CALLER_OR_RETURN(caller);
    auto image = deps_.images->Get(request->name());
    if (!image.ok()) return ToGrpcStatus(image.status());
    *response = std::move(*image);
    return grpc::Status::OK;
  }

  grpc::Status ImportImage(grpc::ServerContext* context,
                           grpc::ServerReader<v1::ImportImageRequest>* reader,
                           v1::Image* response) override {
    CALLER_OR_RETURN(caller);
    if (!caller.admin) return NeedsAdmin("importing images");
    v1::ImportImageRequest first;
    if (!reader->Read(&first) || !first.has_metadata()) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "the first ImportImageRequest must carry metadata");
    }
    // The archive's bytes, message by message, until the client half-closes.
    ChunkReader next =
        [reader]() -> absl::StatusOr<std::optional<std::string>> {
      v1::ImportImageRequest request;
      if (!reader->Read(&request)) return std::optional<std::string>();
      if (!request.has_data() && request.has_metadata()) {
        return absl::InvalidArgumentError("metadata may only come first");
      }
      return std::optional<std::string>(std::move(*request.mutable_data()));
    };
    ImportLimits limits;
    limits.max_bytes = deps_.max_image_bytes;
    auto image = deps_.images->Import(first.metadata(), next, limits);
    if (!image.ok()) return ToGrpcStatus(image.status());
    *response = std::move(*image);
    return grpc::Status::OK;
  }

  grpc::Status DeleteImage(grpc::ServerContext* context,
                           const v1::DeleteImageRequest* request,
                           v1::DeleteImageResponse*) override {
    CALLER_OR_RETURN(caller);
    if (!caller.admin) return NeedsAdmin("deleting images");
    return ToGrpcStatus(deps_.images->Delete(request->name()));
  }

  grpc::Status PruneImages(grpc::ServerContext*, const v1::PruneImagesRequest*,
                           v1::PruneImagesResponse*) override {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        "PruneImages is not built yet; see docs/api.md");
  }

 private:
  static grpc::Status NeedsAdmin(const char* what) {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        absl::StrCat(what, " needs root or the admin group"));
  }

  const ServiceDeps deps_;
};

}  // namespace

std::unique_ptr<grpc::Service> MakeImagesService(const ServiceDeps& deps) {
  return std::make_unique<ImagesService>(deps);
}

}  // namespace corral::daemon
