/* The C ABI between corrald and a runtime plugin (a shared object built from
 * backends/<runtime>/ and loaded with dlopen on first use).
 *
 * A plugin exports one symbol, corral_backend_entry, which returns a table of
 * functions for the ABI version the daemon asks for, or NULL when it does not
 * speak that version. Requests and responses are serialized protobuf messages
 * from proto/corral/backend/v1/backend.proto; a connection to a sandbox's
 * agent crosses as a file descriptor. Errors come back as an absl::StatusCode
 * number plus a message. No C++ exception may cross this boundary.
 *
 * Threading: the daemon may call any function from any thread, concurrently
 * for different sandboxes; a plugin serializes what it must itself. */
#ifndef CORRAL_BACKEND_ABI_H_
#define CORRAL_BACKEND_ABI_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 2: pause, resume, save_memory and delete_memory, after free_result. */
#define CORRAL_BACKEND_ABI_VERSION 2u
#define CORRAL_BACKEND_ENTRY_SYMBOL "corral_backend_entry"

/* What a call hands back. The daemon zero-fills it and sets agent_fd to -1
 * before the call; the plugin fills it; the daemon then takes ownership of
 * agent_fd and releases the rest with the table's free_result. */
typedef struct corral_result {
  /* Serialized response message (malloc'd by the plugin), or NULL. */
  uint8_t* response;
  size_t response_size;
  /* NUL-terminated error message when the call failed (malloc'd), or NULL. */
  char* error_message;
  /* A connected stream socket to the sandbox's agent, or -1. Set by create and
   * attach; close-on-exec. */
  int agent_fd;
} corral_result;

/* One operation: request bytes in, a status code out (0 = OK, otherwise an
 * absl::StatusCode value), details in *result. */
typedef int (*corral_backend_call)(const uint8_t* request, size_t request_size,
                                   corral_result* result);

typedef struct corral_backend_v1 {
  /* CORRAL_BACKEND_ABI_VERSION and sizeof(corral_backend_v1): the daemon
   * refuses a table whose version or size differs from its own. */
  uint32_t abi_version;
  uint32_t struct_size;
  /* Runtime name, e.g. "linux"; static storage. */
  const char* name;
  /* Plugin build version; static storage. */
  const char* version;

  /* ProbeRequest -> ProbeResponse. Must not fail for "unavailable": it
   * answers available=false with the reason. */
  corral_backend_call probe;
  /* CreateRequest -> CreateResponse, and agent_fd connected to the new
   * sandbox's agent. On failure nothing of the sandbox is left on the host. */
  corral_backend_call create;
  /* AttachRequest -> AttachResponse, and agent_fd (when alive) connected to
   * the agent of a sandbox created earlier, perhaps by a previous daemon. */
  corral_backend_call attach;
  /* DestroyRequest -> DestroyResponse. Kills every process of the sandbox and
   * removes every host resource the plugin made for it (cgroups, runtime
   * files, mounts). Idempotent: destroying a destroyed sandbox succeeds. */
  corral_backend_call destroy;
  /* StatsRequest -> StatsResponse. */
  corral_backend_call stats;
  /* ReconcileRequest -> ReconcileResponse. Removes host leftovers of
   * sandboxes the daemon does not know. */
  corral_backend_call reconcile;

  /* Releases response and error_message of a result (not agent_fd). */
  void (*free_result)(corral_result* result);

  /* The optional operations: a runtime that cannot do one answers
   * UNIMPLEMENTED (12) with a message, and does not claim the guarantee.
   * PauseRequest -> PauseResponse: every process of the sandbox stops
   * (GUARANTEE_PAUSE). Pausing a paused sandbox succeeds. */
  corral_backend_call pause;
  /* ResumeRequest -> ResumeResponse. Resuming a running sandbox succeeds. */
  corral_backend_call resume;
  /* SaveMemoryRequest -> SaveMemoryResponse: the sandbox's whole state
   * (memory, devices, its disks as they are) saved under a name, so that a
   * create can start a new sandbox from it (GUARANTEE_MEMORY_SNAPSHOT). The
   * sandbox runs on as before. Destroying the sandbox removes its saved
   * states. */
  corral_backend_call save_memory;
  /* DeleteMemoryRequest -> DeleteMemoryResponse. Idempotent. */
  corral_backend_call delete_memory;
} corral_backend_v1;

/* The entry point. Returns NULL when the plugin cannot speak abi_version. */
typedef const corral_backend_v1* (*corral_backend_entry_fn)(
    uint32_t abi_version);

#ifdef __cplusplus
}
#endif

#endif /* CORRAL_BACKEND_ABI_H_ */
