// The C ABI of every runtime plugin, over the plugin's kOperations.
#include "backends/common/plugin_glue.h"

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "absl/strings/str_cat.h"
#include "corral/backend_abi.h"

namespace corral::backend_plugin {
namespace {

char* CopyString(absl::string_view text) {
  char* copy = static_cast<char*>(std::malloc(text.size() + 1));
  if (copy == nullptr) return nullptr;
  std::memcpy(copy, text.data(), text.size());
  copy[text.size()] = '\0';
  return copy;
}

int Fail(const absl::Status& status, corral_result* result) {
  result->error_message = CopyString(status.message());
  int code = static_cast<int>(status.code());
  return code == 0 ? static_cast<int>(absl::StatusCode::kInternal) : code;
}

int Respond(const google::protobuf::MessageLite& response,
            corral_result* result) {
  std::string bytes = response.SerializeAsString();
  result->response =
      static_cast<uint8_t*>(std::malloc(bytes.empty() ? 1 : bytes.size()));
  if (result->response == nullptr) {
    return Fail(absl::ResourceExhaustedError("out of memory"), result);
  }
  std::memcpy(result->response, bytes.data(), bytes.size());
  result->response_size = bytes.size();
  return 0;
}

// An operation's answer, or its error.
template <typename Response>
int Answer(const absl::StatusOr<Response>& response, corral_result* result) {
  if (!response.ok()) return Fail(response.status(), result);
  return Respond(*response, result);
}

// Runs one operation: parse, call, answer; turns exceptions (bad_alloc) into
// INTERNAL.
template <typename Request, typename Operation>
int Call(const uint8_t* data, size_t size, corral_result* result,
         Operation operation) {
  try {
    Request request;
    if (!request.ParseFromArray(data, static_cast<int>(size))) {
      return Fail(absl::InvalidArgumentError("request does not parse"), result);
    }
    return operation(request);
  } catch (const std::exception& error) {
    return Fail(absl::InternalError(error.what()), result);
  } catch (...) {
    return Fail(absl::InternalError("unknown exception"), result);
  }
}

// Create and attach also hand over a connection to the agent.
template <typename Request, typename Response>
int CallWithAgent(absl::StatusOr<Response> (*operation)(const Request&,
                                                        UniqueFd*),
                  const uint8_t* data, size_t size, corral_result* result) {
  return Call<Request>(data, size, result, [&](const Request& request) {
    UniqueFd agent_fd;
    int rc = Answer(operation(request, &agent_fd), result);
    if (rc == 0) result->agent_fd = agent_fd.Release();
    return rc;
  });
}

int ProbeCall(const uint8_t* data, size_t size, corral_result* result) {
  return Call<bv1::ProbeRequest>(data, size, result, [&](const auto& request) {
    const absl::Status config = kOperations.check_config(request.config());
    if (request.config_only()) {
      bv1::ProbeResponse response;
      if (!config.ok()) {
        response.set_config_error(std::string(config.message()));
        response.set_reason(std::string(config.message()));
      }
      return Respond(std::move(response), result);
    }
    bv1::ProbeResponse response = kOperations.probe(request);
    if (!config.ok()) {
      response.set_config_error(std::string(config.message()));
      response.set_available(false);
    }
    return Respond(std::move(response), result);
  });
}

int CreateCall(const uint8_t* data, size_t size, corral_result* result) {
  return CallWithAgent(kOperations.create, data, size, result);
}

int AttachCall(const uint8_t* data, size_t size, corral_result* result) {
  return CallWithAgent(kOperations.attach, data, size, result);
}

int DestroyCall(const uint8_t* data, size_t size, corral_result* result) {
  return Call<bv1::DestroyRequest>(
      data, size, result, [&](const auto& request) {
        absl::Status status = kOperations.destroy(request);
        if (!status.ok()) return Fail(status, result);
        return Respond(bv1::DestroyResponse(), result);
      });
}

int StatsCall(const uint8_t* data, size_t size, corral_result* result) {
  return Call<bv1::StatsRequest>(data, size, result, [&](const auto& request) {
    return Answer(kOperations.stats(request), result);
  });
}

int ReconcileCall(const uint8_t* data, size_t size, corral_result* result) {
  return Call<bv1::ReconcileRequest>(
      data, size, result, [&](const auto& request) {
        return Answer(kOperations.reconcile(request), result);
      });
}

// An optional operation that answers with an empty response.
template <typename Request, typename Response>
int CallOptional(absl::Status (*operation)(const Request&), const char* what,
                 const uint8_t* data, size_t size, corral_result* result) {
  return Call<Request>(data, size, result, [&](const Request& request) {
    if (operation == nullptr) {
      return Fail(absl::UnimplementedError(absl::StrCat(
                      "the ", kOperations.name, " runtime cannot ", what)),
                  result);
    }
    absl::Status status = operation(request);
    if (!status.ok()) return Fail(status, result);
    return Respond(Response(), result);
  });
}

int PauseCall(const uint8_t* data, size_t size, corral_result* result) {
  return CallOptional<bv1::PauseRequest, bv1::PauseResponse>(
      kOperations.pause, "pause a sandbox", data, size, result);
}

int ResumeCall(const uint8_t* data, size_t size, corral_result* result) {
  return CallOptional<bv1::ResumeRequest, bv1::ResumeResponse>(
      kOperations.resume, "resume a sandbox", data, size, result);
}

int SaveMemoryCall(const uint8_t* data, size_t size, corral_result* result) {
  return Call<bv1::SaveMemoryRequest>(
      data, size, result, [&](const auto& request) {
        if (kOperations.save_memory == nullptr) {
          return Fail(absl::UnimplementedError(absl::StrCat(
                          "the ", kOperations.name,
                          " runtime cannot snapshot a sandbox's memory")),
                      result);
        }
        return Answer(kOperations.save_memory(request), result);
      });
}

int DeleteMemoryCall(const uint8_t* data, size_t size, corral_result* result) {
  return CallOptional<bv1::DeleteMemoryRequest, bv1::DeleteMemoryResponse>(
      kOperations.delete_memory, "snapshot a sandbox's memory", data, size,
      result);
}

void FreeResult(corral_result* result) {
  if (result == nullptr) return;
  std::free(result->response);
  std::free(result->error_message);
  result->response = nullptr;
  result->response_size = 0;
  result->error_message = nullptr;
}

// Filled on first use: the name and version come from the plugin's
// kOperations, which may not be constant-initialized before this table.
const corral_backend_v1& Table() {
  static const corral_backend_v1 table = {
      CORRAL_BACKEND_ABI_VERSION,
      sizeof(corral_backend_v1),
      kOperations.name,
      kOperations.version,
      ProbeCall,
      CreateCall,
      AttachCall,
      DestroyCall,
      StatsCall,
      ReconcileCall,
      FreeResult,
      PauseCall,
      ResumeCall,
      SaveMemoryCall,
      DeleteMemoryCall,
  };
  return table;
}

}  // namespace
}  // namespace corral::backend_plugin

extern "C" __attribute__((visibility("default"))) const corral_backend_v1*
corral_backend_entry(uint32_t abi_version) {
  if (abi_version != CORRAL_BACKEND_ABI_VERSION) return nullptr;
  return &corral::backend_plugin::Table();
}
