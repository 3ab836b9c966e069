// Helpers of the workspace integration tests: tar archives built in memory
// (hostile ones included) and calls of the workspace RPCs.
#ifndef CORRAL_TESTS_INTEGRATION_WORKSPACE_UTIL_H_
#define CORRAL_TESTS_INTEGRATION_WORKSPACE_UTIL_H_

#include <archive.h>
#include <archive_entry.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "corral/v1/exec.grpc.pb.h"
#include "corral/v1/files.grpc.pb.h"
#include "corral/v1/sandboxes.grpc.pb.h"
#include "corral/v1/snapshots.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "tests/tar_builder.h"

namespace corral::testing {

struct TarEntry {
  enum Type { kFile, kDir, kSymlink, kHardlink, kCharDevice, kFifo };
  std::string path;
  Type type = kFile;
  std::string content;  // kFile
  int mode = 0644;
  std::string link;            // kSymlink, kHardlink
  int64_t size_override = -1;  // header size differing from content
};

// A ustar/pax archive of `entries`, in order.
inline std::string Tar(const std::vector<TarEntry>& entries) {
  TarBuilder tar;
  for (const TarEntry& e : entries) {
    switch (e.type) {
      case TarEntry::kFile:
        tar.File(e.path, e.content, e.mode, e.size_override);
        break;
      case TarEntry::kDir:
        tar.Dir(e.path, e.mode);
        break;
      case TarEntry::kSymlink:
        tar.Symlink(e.path, e.link, e.mode);
        break;
      case TarEntry::kHardlink:
        tar.Hardlink(e.path, e.link, e.mode);
        break;
      case TarEntry::kCharDevice:
        tar.Special(e.path, AE_IFCHR, e.mode);
        break;
      case TarEntry::kFifo:
        tar.Special(e.path, AE_IFIFO, e.mode);
        break;
    }
  }
  return tar.Finish();
}

struct UntarredEntry {
  int type = 0;  // AE_IFREG, AE_IFDIR, AE_IFLNK
  std::string content;
  std::string link;
  int mode = 0;
};

// Reads a tar archive into path -> entry.
inline std::map<std::string, UntarredEntry> Untar(const std::string& tar) {
  std::map<std::string, UntarredEntry> result;
  archive* a = archive_read_new();
  archive_read_support_format_tar(a);
  if (archive_read_open_memory(a, tar.data(), tar.size()) != ARCHIVE_OK) {
    archive_read_free(a);
    return result;
  }
  archive_entry* entry = nullptr;
  while (archive_read_next_header(a, &entry) == ARCHIVE_OK) {
    std::string path = archive_entry_pathname(entry);
    // Directories may carry a trailing slash.
    if (path.size() > 1 && path.back() == '/') path.pop_back();
    UntarredEntry& e = result[path];
    e.type = archive_entry_filetype(entry);
    e.mode = archive_entry_perm(entry);
    if (archive_entry_symlink(entry) != nullptr) {
      e.link = archive_entry_symlink(entry);
    }
    char buffer[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, buffer, sizeof(buffer))) > 0) {
      e.content.append(buffer, static_cast<size_t>(n));
    }
  }
  archive_read_free(a);
  return result;
}

// Client-side stubs of one daemon.
struct Api {
  explicit Api(std::shared_ptr<grpc::Channel> channel)
      : sandboxes(corral::v1::Sandboxes::NewStub(channel)),
        exec(corral::v1::Exec::NewStub(channel)),
        files(corral::v1::Files::NewStub(channel)),
        snapshots(corral::v1::Snapshots::NewStub(channel)) {}

  // Creates a sandbox seeded with `archive` sent in `chunk`-byte messages.
  grpc::Status CreateSeeded(const std::string& archive,
                            corral::v1::Sandbox* sandbox,
                            size_t chunk = 1 << 20,
                            corral::v1::CreateSandboxRequest settings = {}) {
    grpc::ClientContext context;
    auto writer = sandboxes->CreateSeededSandbox(&context, sandbox);
    corral::v1::CreateSeededSandboxRequest request;
    *request.mutable_sandbox() = settings;
    if (!request.sandbox().has_limits() && settings.ttl_seconds() == 0) {
      request.mutable_sandbox()->set_ttl_seconds(600);
    }
    bool ok = writer->Write(request);
    for (size_t offset = 0; ok && offset < archive.size(); offset += chunk) {
      request.set_data(archive.substr(offset, chunk));
      ok = writer->Write(request);
    }
    writer->WritesDone();
    return writer->Finish();
  }

  grpc::Status Sync(const std::string& id, const std::string& archive,
                    const std::string& destination = "",
                    bool delete_missing = false,
                    corral::v1::SyncWorkspaceResponse* response = nullptr) {
    corral::v1::SyncWorkspaceResponse ignored;
    grpc::ClientContext context;
    auto writer =
        files->SyncWorkspace(&context, response ? response : &ignored);
    corral::v1::SyncWorkspaceRequest request;
    request.mutable_header()->set_sandbox_id(id);
    request.mutable_header()->set_destination(destination);
    request.mutable_header()->set_delete_missing(delete_missing);
    bool ok = writer->Write(request);
    for (size_t offset = 0; ok && offset < archive.size(); offset += 1 << 20) {
      request.set_data(archive.substr(offset, 1 << 20));
      ok = writer->Write(request);
    }
    writer->WritesDone();
    return writer->Finish();
  }

  // Runs a shell command line; returns stdout, or "<exit N>" on failure.
  std::string Sh(const std::string& id, const std::string& line,
                 int* exit_code = nullptr) {
    grpc::ClientContext context;
    corral::v1::ExecRequest request;
    request.mutable_start()->set_sandbox_id(id);
    request.mutable_start()->set_shell(line);
    corral::v1::ExecResponse response;
    grpc::Status status = exec->Exec(&context, request, &response);
    if (!status.ok()) return "<rpc " + status.error_message() + ">";
    if (exit_code) *exit_code = response.exit().exit_code();
    return response.stdout();
  }

  grpc::Status Export(const std::string& id, const std::string& path,
                      std::string* tar) {
    grpc::ClientContext context;
    corral::v1::ExportPathRequest request;
    request.set_sandbox_id(id);
    request.set_path(path);
    auto reader = files->ExportPath(&context, request);
    corral::v1::ArchiveChunk chunk;
    while (reader->Read(&chunk)) tar->append(chunk.data());
    return reader->Finish();
  }

  grpc::Status Diff(const std::string& id,
                    corral::v1::DiffWorkspaceResponse* response,
                    const std::string& snapshot = "") {
    grpc::ClientContext context;
    corral::v1::DiffWorkspaceRequest request;
    request.set_sandbox_id(id);
    request.set_snapshot(snapshot);
    return files->DiffWorkspace(&context, request, response);
  }

  grpc::Status Delete(const std::string& id) {
    grpc::ClientContext context;
    corral::v1::DeleteSandboxRequest request;
    request.set_id(id);
    corral::v1::DeleteSandboxResponse response;
    return sandboxes->DeleteSandbox(&context, request, &response);
  }

  std::unique_ptr<corral::v1::Sandboxes::Stub> sandboxes;
  std::unique_ptr<corral::v1::Exec::Stub> exec;
  std::unique_ptr<corral::v1::Files::Stub> files;
  std::unique_ptr<corral::v1::Snapshots::Stub> snapshots;
};

}  // namespace corral::testing

#endif  // CORRAL_TESTS_INTEGRATION_WORKSPACE_UTIL_H_
