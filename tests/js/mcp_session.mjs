// A whole agent session through `corral mcp`, driven by the official MCP
// TypeScript SDK over its stdio client transport: the judge of
// tests/integration/mcp_test.cc, which starts the daemon and passes
//   CORRAL_BIN     the corral CLI
//   CORRAL_SOCKET  the daemon's socket
// Prints "ok - ..." per check and exits 1 if any failed.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { check, finish } from "./tap.mjs";

const text = (result) => result.content.map((c) => c.text).join("");

// A small project: a function and its test.
const seed = mkdtempSync(join(tmpdir(), "corral-mcp-seed-"));
writeFileSync(join(seed, "add.sh"), "echo $(($1 + $2))\n");
writeFileSync(
  join(seed, "test.sh"),
  'out=$(sh add.sh 2 3)\nif [ "$out" = 5 ]; then echo "1 passed"; else echo "FAILED: add 2 3 gave $out"; exit 1; fi\n',
);

const transport = new StdioClientTransport({
  command: process.env.CORRAL_BIN,
  args: ["--socket", process.env.CORRAL_SOCKET, "mcp", "--profile", "full"],
  stderr: "inherit",
});
const client = new Client({ name: "corral-mcp-test", version: "1.0.0" });
await client.connect(transport);
const call = (name, args) => client.callTool({ name, arguments: args });

try {
  const server = client.getServerVersion();
  check(server?.name === "corral", "initialize: the server is corral", server);
  check(client.getInstructions()?.includes("workspace_create"), "initialize: instructions name the tools");

  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name);
  for (const name of ["sandbox_run", "workspace_create", "workspace_exec", "file_read", "file_write",
    "file_list", "workspace_diff", "snapshot_create", "snapshot_list", "snapshot_delete",
    "workspace_reset", "workspace_fork", "command_log", "workspace_delete", "workspace_apply_patch",
    "workspace_sync", "workspace_export",
    "shell_open", "shell_write", "shell_read", "shell_signal", "shell_close", "shell_list",
    "service_start", "service_list", "service_status", "service_logs", "service_stop"]) {
    check(names.includes(name), `tools/list has ${name}`, names);
  }
  check(tools.every((t) => t.inputSchema?.type === "object" && t.description.length > 20),
    "every tool has an object input schema and a description");

  // One-shot: the sandbox is gone afterwards.
  const before = (await call("workspace_list", {})).structuredContent.sandboxes.length;
  let r = await call("sandbox_run", { command: "echo one-shot; echo oops >&2; exit 7" });
  check(!r.isError && r.structuredContent.exit_code === 7, "sandbox_run gives the exit code", r);
  check(r.structuredContent.stdout === "one-shot\n" && r.structuredContent.stderr === "oops\n",
    "sandbox_run gives stdout and stderr apart", r.structuredContent);
  const after = (await call("workspace_list", {})).structuredContent.sandboxes.length;
  check(after === before, "sandbox_run leaves no sandbox behind", { before, after });

  // A seeded workspace.
  r = await call("workspace_create", { seed, labels: { purpose: "mcp-test" } });
  check(!r.isError && r.structuredContent.state === "running", "workspace_create seeds a workspace", r);
  const id = r.structuredContent.id;
  r = await call("file_list", { sandbox_id: id });
  const listed = r.structuredContent.entries.map((e) => e.path);
  check(listed.includes("add.sh") && listed.includes("test.sh"), "file_list shows the seed", listed);
  r = await call("workspace_exec", { sandbox_id: id, command: "sh test.sh" });
  check(!r.isError && r.structuredContent.exit_code === 0 && text(r).includes("1 passed"),
    "the project's tests pass in the workspace", r);

  r = await call("file_write", { sandbox_id: id, path: "notes/todo.txt", content: "hello\nworld\n" });
  check(!r.isError && r.structuredContent.path === "/workspace/notes/todo.txt", "file_write creates parents", r);
  r = await call("file_read", { sandbox_id: id, path: "/workspace/notes/todo.txt" });
  check(!r.isError && r.structuredContent.content === "hello\nworld\n", "file_read reads it back", r);
  r = await call("file_read", { sandbox_id: id, path: "notes/todo.txt", offset: 6, max_bytes: 3 });
  check(r.structuredContent.content === "wor" && r.structuredContent.truncated === true,
    "file_read is bounded and says so", r.structuredContent);
  r = await call("file_write", { sandbox_id: id, path: "blob.bin", content: Buffer.from([0, 255, 1, 128]).toString("base64"), encoding: "base64" });
  r = await call("file_read", { sandbox_id: id, path: "blob.bin" });
  check(r.structuredContent.encoding === "base64" && r.structuredContent.content === "AP8BgA==",
    "binary content comes back as base64", r.structuredContent);

  // Push from a host directory, export to one.
  const extra = mkdtempSync(join(tmpdir(), "corral-mcp-sync-"));
  writeFileSync(join(extra, "README"), "pushed\n");
  r = await call("workspace_sync", { sandbox_id: id, source: extra, destination: "docs" });
  check(!r.isError && r.structuredContent.entries >= 1, "workspace_sync pushes a host directory", r);
  r = await call("file_read", { sandbox_id: id, path: "docs/README" });
  check(r.structuredContent?.content === "pushed\n", "the pushed file is there", r);
  const out = mkdtempSync(join(tmpdir(), "corral-mcp-export-"));
  r = await call("workspace_export", { sandbox_id: id, path: "docs", destination: out });
  check(!r.isError && readFileSync(join(out, "docs", "README"), "utf8") === "pushed\n", "workspace_export writes to the host", r);
  r = await call("workspace_export", { sandbox_id: id, path: "docs", destination: out });
  check(r.isError, "workspace_export does not overwrite unless asked", text(r));
  r = await call("workspace_sync", { sandbox_id: id, source: "relative/dir" });
  check(r.isError && /absolute path/.test(text(r)), "workspace_sync wants an absolute source", text(r));
  rmSync(extra, { recursive: true, force: true });
  rmSync(out, { recursive: true, force: true });
  await call("workspace_exec", { sandbox_id: id, command: "rm -r docs" });

  // A bug, caught by the tests, seen in the diff.
  await call("file_write", { sandbox_id: id, path: "add.sh", content: "echo $(($1 - $2))\n" });
  r = await call("workspace_exec", { sandbox_id: id, argv: ["sh", "test.sh"] });
  check(!r.isError && r.structuredContent.exit_code === 1 && text(r).includes("FAILED: add 2 3 gave -1"),
    "a failing test is the command's result, not a tool error", r);
  r = await call("workspace_diff", { sandbox_id: id });
  const diff = r.structuredContent;
  check(!r.isError && diff.modified === 1 && diff.added === 3, "workspace_diff counts the changes", diff);
  check(diff.patch.includes("-echo $(($1 + $2))") && diff.patch.includes("+echo $(($1 - $2))"),
    "workspace_diff gives the patch", diff.patch);

  // The fix as a patch: a hunk that does not apply changes nothing; the
  // right one fixes it.
  const stale = "--- a/add.sh\n+++ b/add.sh\n@@ -1 +1 @@\n-echo $(($1 * $2))\n+echo $(($1 + $2))\n";
  r = await call("workspace_apply_patch", { sandbox_id: id, patch: stale });
  check(r.isError && /hunk 1 of add\.sh .* does not apply.*line 1 is 'echo \$\(\(\$1 - \$2\)\)'/.test(text(r)),
    "a patch that does not apply is a tool error naming the hunk and the line", text(r));
  const fix = "--- a/add.sh\n+++ b/add.sh\n@@ -1 +1 @@\n-echo $(($1 - $2))\n+echo $(($1 + $2))\n" +
    "--- /dev/null\n+++ b/CHANGES\n@@ -0,0 +1 @@\n+fixed add\n";
  r = await call("workspace_apply_patch", { sandbox_id: id, patch: fix, check: true });
  check(!r.isError && r.structuredContent.files.length === 2 && r.structuredContent.applied === false,
    "workspace_apply_patch with check changes nothing", r);
  r = await call("file_read", { sandbox_id: id, path: "CHANGES" });
  check(r.isError, "after the check the new file is not there", r);
  r = await call("workspace_apply_patch", { sandbox_id: id, patch: fix });
  check(!r.isError && r.structuredContent.files[0].kind === "modified" && r.structuredContent.files[1].kind === "added",
    "workspace_apply_patch applies the fix", r);
  r = await call("workspace_exec", { sandbox_id: id, command: "sh test.sh && cat CHANGES" });
  check(r.structuredContent.exit_code === 0 && text(r).includes("fixed add"), "the patched project passes its tests", r);
  // Broken again, to snapshot the bug.
  await call("workspace_apply_patch", { sandbox_id: id, patch: "--- a/add.sh\n+++ b/add.sh\n@@ -1 +1 @@\n-echo $(($1 + $2))\n+echo $(($1 - $2))\n--- a/CHANGES\n+++ /dev/null\n@@ -1 +0,0 @@\n-fixed add\n" });

  r = await call("snapshot_create", { sandbox_id: id, name: "broken" });
  check(!r.isError, "snapshot_create", r);
  r = await call("snapshot_list", { sandbox_id: id });
  check(r.structuredContent.snapshots.some((s) => s.name === "broken"), "snapshot_list shows it", r);

  r = await call("workspace_reset", { sandbox_id: id });
  check(!r.isError, "workspace_reset to the baseline", r);
  r = await call("file_read", { sandbox_id: id, path: "notes/todo.txt" });
  check(r.isError, "after the reset the new file is gone", r);
  r = await call("workspace_exec", { sandbox_id: id, command: "sh test.sh" });
  check(r.structuredContent.exit_code === 0, "after the reset the tests pass again", r);
  r = await call("workspace_diff", { sandbox_id: id });
  check(r.structuredContent.changes.length === 0, "after the reset nothing differs", r.structuredContent);
  r = await call("workspace_reset", { sandbox_id: id, snapshot: "broken" });
  r = await call("file_read", { sandbox_id: id, path: "notes/todo.txt" });
  check(!r.isError && r.structuredContent.content === "hello\nworld\n", "workspace_reset to a snapshot", r);

  r = await call("command_log", { sandbox_id: id });
  check(!r.isError && r.structuredContent.commands.length >= 3 && text(r).includes("test.sh"),
    "command_log lists the commands", r);

  r = await call("workspace_fork", { sandbox_id: id, snapshot: "broken" });
  const fork = r.structuredContent?.id;
  check(!r.isError && fork && fork !== id, "workspace_fork makes a new workspace", r);
  r = await call("file_read", { sandbox_id: fork, path: "notes/todo.txt" });
  check(!r.isError && r.structuredContent.content === "hello\nworld\n", "the fork has the files", r);
  r = await call("workspace_delete", { sandbox_id: fork });
  check(!r.isError, "workspace_delete the fork", r);

  // A shell: typed commands, plain output, Ctrl-C.
  r = await call("shell_open", { sandbox_id: id });
  check(!r.isError && r.structuredContent.running, "shell_open", r);
  const shell = r.structuredContent.shell_id;
  await call("shell_write", { sandbox_id: id, shell_id: shell, input: "echo hello-$((6*7)); printf 'abc\\bX\\n'" });
  r = await call("shell_read", { sandbox_id: id, shell_id: shell, wait_until_quiet_ms: 700 });
  const plain = r.structuredContent.output;
  check(!r.isError && plain.includes("hello-42") && plain.includes("abX") && !plain.includes("\u001b"),
    "shell_read gives plain text, backspace applied, no escapes", plain);
  let cursor = r.structuredContent.next_cursor;
  await call("shell_write", { sandbox_id: id, shell_id: shell, input: "sleep 100" });
  await new Promise((resolve) => setTimeout(resolve, 300));
  r = await call("shell_signal", { sandbox_id: id, shell_id: shell, signal: "INT" });
  check(!r.isError, "shell_signal INT", r);
  await call("shell_write", { sandbox_id: id, shell_id: shell, input: "echo after-$((1+1))" });
  r = await call("shell_read", { sandbox_id: id, shell_id: shell, cursor, wait_until_quiet_ms: 700 });
  check(r.structuredContent.output.includes("after-2") && !r.structuredContent.output.includes("hello-42"),
    "after Ctrl-C the shell takes commands again; a cursor reads only what is new", r.structuredContent.output);
  r = await call("shell_list", { sandbox_id: id });
  check(r.structuredContent.shells.some((s) => s.shell_id === shell), "shell_list", r);
  r = await call("shell_close", { sandbox_id: id, shell_id: shell });
  check(!r.isError, "shell_close", r);

  // Services: started, waited for, used, read, stopped.
  r = await call("service_start", {
    sandbox_id: id, name: "web", argv: ["python3", "-m", "http.server", "8123", "--bind", "127.0.0.1"],
    ready_port: 8123, ready_timeout_seconds: 30,
  });
  check(!r.isError && r.structuredContent.readiness === "ready" && r.structuredContent.running,
    "service_start answers once the port listens", r);
  r = await call("workspace_exec", {
    sandbox_id: id,
    command: "python3 -c \"import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8123/add.sh').read().decode())\"",
  });
  check(r.structuredContent.exit_code === 0 && text(r).includes("echo $(("), "the service answers", r);
  r = await call("service_logs", { sandbox_id: id, name: "web" });
  check(!r.isError && r.structuredContent.output.includes("GET /add.sh"), "service_logs has its output", r);
  r = await call("service_list", { sandbox_id: id });
  check(r.structuredContent.services.some((s) => s.name === "web" && s.readiness === "ready"), "service_list", r);
  r = await call("service_start", { sandbox_id: id, name: "never", command: "sleep 100", ready_path: "never.txt", ready_timeout_seconds: 1 });
  check(r.isError && /not ready after 1 s: never\.txt does not exist/.test(text(r)), "a service that is not ready in time is a tool error", text(r));
  r = await call("service_start", { sandbox_id: id, name: "crash", command: "echo boom >&2; exit 3", ready_port: 9999 });
  check(r.isError && /exited \(exit code 3\) before it was ready/.test(text(r)) && text(r).includes("boom"),
    "a service that exits first: the reason and its output", text(r));
  r = await call("service_start", { sandbox_id: id, name: "two", command: "sleep 1", ready_port: 1, ready_path: "x" });
  check(r.isError && /at most one of ready_port/.test(text(r)), "two readiness checks are refused", text(r));
  r = await call("service_stop", { sandbox_id: id, name: "web" });
  check(!r.isError && r.structuredContent.running === false, "service_stop", r);
  r = await call("service_status", { sandbox_id: id, name: "web" });
  check(!r.isError && r.structuredContent.running === false, "service_status after the stop", r);
  await call("service_stop", { sandbox_id: id, name: "never" });

  // Bad input: each a clear error, and the server keeps serving.
  let protocolError;
  try {
    await call("no_such_tool", {});
  } catch (e) {
    protocolError = e;
  }
  check(protocolError?.code === -32602 && /unknown tool 'no_such_tool'/.test(protocolError.message),
    "an unknown tool is a JSON-RPC error -32602", String(protocolError));
  const bad = [
    ["workspace_exec", {}, /missing required argument 'sandbox_id'/],
    ["workspace_exec", { sandbox_id: 5, command: "true" }, /'sandbox_id' must be a string/],
    ["workspace_exec", { sandbox_id: id, command: "true", argv: ["true"] }, /exactly one of command/],
    ["workspace_exec", { sandbox_id: id, command: "true", colour: "red" }, /unknown argument 'colour'/],
    ["file_read", { sandbox_id: id, path: "../../etc/passwd" }, /outside \/workspace/],
    ["file_read", { sandbox_id: id, path: "/etc/shadow" }, /outside \/workspace/],
    ["file_read", { sandbox_id: id, path: "missing.txt" }, /missing\.txt|No such file|not found/i],
    ["workspace_status", { sandbox_id: "0".repeat(32) }, /not found|no sandbox/i],
    ["file_write", { sandbox_id: id, path: "huge", content: "x".repeat(17 << 20) }, /more than the 16 MiB/],
    ["file_read", { sandbox_id: id, path: "add.sh", max_bytes: 0 }, /must be from 1/],
  ];
  for (const [name, args, expected] of bad) {
    r = await call(name, args);
    check(r.isError && expected.test(text(r)), `${name} ${JSON.stringify(args).slice(0, 80)}: a tool error`, text(r));
    await client.ping();
  }

  // The round trip of a small exec, for the note.
  const times = [];
  for (let i = 0; i < 20; i++) {
    const t0 = process.hrtime.bigint();
    await call("workspace_exec", { sandbox_id: id, argv: ["true"] });
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  times.sort((a, b) => a - b);
  console.log(`# workspace_exec round trip: median ${times[10].toFixed(2)} ms, p90 ${times[18].toFixed(2)} ms`);

  r = await call("workspace_delete", { sandbox_id: id });
  check(!r.isError, "workspace_delete", r);
  r = await call("workspace_status", { sandbox_id: id });
  check(r.isError, "a deleted workspace is gone", r);
} finally {
  await client.close();
  rmSync(seed, { recursive: true, force: true });
}
finish();
