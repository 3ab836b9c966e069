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
  std::string out;
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_set_bytes_in_last_block(a, 1);
  archive_write_open(
      a, &out, nullptr,
      [](archive*, void* data, const void* buffer, size_t n) -> la_ssize_t {
        static_cast<std::string*>(data)->append(
            static_cast<const char*>(buffer), n);
        return static_cast<la_ssize_t>(n);
      },
      nullptr);
  for (const auto& e : entries) {
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.path.c_str());
    archive_entry_set_perm(entry, e.mode);
    archive_entry_set_mtime(entry, 1700000000, 0);
    switch (e.type) {
      case TarEntry::kFile:
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_size(entry,
                               e.size_override >= 0
                                   ? e.size_override
                                   : static_cast<int64_t>(e.content.size()));
        break;
      case TarEntry::kDir:
        archive_entry_set_filetype(entry, AE_IFDIR);
        break;
      case TarEntry::kSymlink:
        archive_entry_set_filetype(entry, AE_IFLNK);
        archive_entry_set_symlink(entry, e.link.c_str());
        break;
      case TarEntry::kHardlink:
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_hardlink(entry, e.link.c_str());
        archive_entry_set_size(entry, 0);
        break;
      case TarEntry::kCharDevice:
        archive_entry_set_filetype(entry, AE_IFCHR);
        archive_entry_set_rdevmajor(entry, 1);
        archive_entry_set_rdevminor(entry, 3);
        break;
      case TarEntry::kFifo:
        archive_entry_set_filetype(entry, AE_IFIFO);
        break;
    }
    archive_write_header(a, entry);
    if (e.type == TarEntry::kFile && !e.content.empty()) {
      archive_write_data(a, e.content.data(), e.content.size());
    }
    archive_entry_free(entry);
  }
  archive_write_close(a);
  archive_write_free(a);
  return out;
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
