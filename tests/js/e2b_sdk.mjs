// Programs written for E2B, run unchanged on Corral through `corral e2b`:
// E2B's own JS SDK (npm `e2b`, pinned in package-lock.json) drives the
// gateway, with the scenarios written from the SDK's documented behaviour.
// The judge of tests/integration/e2b_test.cc, which starts the daemon and the
// gateway and passes
//   E2B_API_URL, E2B_SANDBOX_URL  the gateway (http://127.0.0.1:PORT)
//   E2B_API_KEY                   a key it accepts
//   E2B_TEMPLATE                  the template to create (default "base")
//   E2B_SUITE                     "full" (default) or "subset" (what a slow
//                                 runtime, qemu, runs)
//   E2B_MAX_UPLOAD_MIB            the gateway's upload limit
// Prints "ok - ..." per check and exits 1 if any failed.
import {
  Sandbox,
  CommandExitError,
  NotFoundError,
  FileNotFoundError,
  SandboxNotFoundError,
  SandboxError,
  AuthenticationError,
  InvalidArgumentError,
  TimeoutError,
} from "e2b";
import { check, finish, unexpected } from "./tap.mjs";
import { gzipSync } from "node:zlib";

const template = process.env.E2B_TEMPLATE || "base";
const full = (process.env.E2B_SUITE || "full") === "full";
const apiUrl = process.env.E2B_API_URL;
const run = `run${process.pid}`;

// The error a promise rejects with, or null when it resolves.
async function rejection(promise) {
  try {
    await promise;
    return null;
  } catch (error) {
    return error;
  }
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
async function eventually(probe, ms = 10000) {
  const end = Date.now() + ms;
  for (;;) {
    if (await probe()) return true;
    if (Date.now() > end) return false;
    await sleep(100);
  }
}

const sandboxes = [];
async function create(opts = {}) {
  const sandbox = await Sandbox.create(template, { timeoutMs: 300_000, ...opts });
  sandboxes.push(sandbox);
  return sandbox;
}

async function lifecycle() {
  const sandbox = await create({ metadata: { suite: "e2b", run }, envs: { GLOBAL_VAR: "from-create" } });
  check(/^[0-9a-f]{32}$/.test(sandbox.sandboxId), "create: a sandbox id", sandbox.sandboxId);
  check(await sandbox.isRunning(), "create: the sandbox runs");

  const info = await sandbox.getInfo();
  check(info.sandboxId === sandbox.sandboxId && info.templateId === template, "getInfo: id and template", info);
  check(info.metadata.suite === "e2b" && info.metadata.run === run, "getInfo: metadata", info.metadata);
  check(info.state === "running", "getInfo: state running", info.state);
  const lifetime = info.endAt.getTime() - info.startedAt.getTime();
  check(Math.abs(lifetime - 300_000) < 5_000, "getInfo: endAt is the timeout after startedAt", lifetime);

  const other = await create({ metadata: { suite: "e2b", run, second: "yes" } });
  const mine = await Sandbox.list({ query: { metadata: { run } } }).nextItems();
  const ids = mine.map((s) => s.sandboxId).sort();
  check(ids.length === 2 && ids.includes(sandbox.sandboxId) && ids.includes(other.sandboxId),
    "list: filtered by metadata", ids);
  const second = await Sandbox.list({ query: { metadata: { run, second: "yes" } } }).nextItems();
  check(second.length === 1 && second[0].sandboxId === other.sandboxId, "list: every metadata pair must match", second);
  const paused = await Sandbox.list({ query: { metadata: { run }, state: ["paused"] } }).nextItems();
  check(paused.length === 0, "list: the state filter", paused);
  const pager = Sandbox.list({ query: { metadata: { run } }, limit: 1 });
  const page1 = await pager.nextItems();
  check(page1.length === 1 && pager.hasNext, "list: a page of one, and more to come", { page1, hasNext: pager.hasNext });
  const page2 = await pager.nextItems();
  check(page2.length === 1 && page2[0].sandboxId !== page1[0].sandboxId && !pager.hasNext,
    "list: the next page has the other one, and no more", { page2, hasNext: pager.hasNext });

  const connected = await Sandbox.connect(sandbox.sandboxId);
  const echoed = await connected.commands.run("echo $GLOBAL_VAR");
  check(echoed.stdout === "from-create\n", "connect, then run: the create's envs reach commands", echoed);

  await sandbox.setTimeout(60_000);
  const shorter = await sandbox.getInfo();
  const left = shorter.endAt.getTime() - Date.now();
  check(left > 50_000 && left <= 61_000, "setTimeout: endAt moves", left);

  // Expiry: a sandbox whose timeout passes is gone.
  const brief = await create({ timeoutMs: 2000 });
  check(await brief.isRunning(), "expiry: running before its timeout");
  check(await eventually(async () => !(await brief.isRunning()), 15_000), "expiry: gone after its timeout");
  const expired = await rejection(Sandbox.getInfo(brief.sandboxId));
  check(expired instanceof NotFoundError, "expiry: getInfo of an expired sandbox is NotFoundError", expired);

  check(await Sandbox.kill(other.sandboxId), "kill: true for a sandbox that ran");
  check(!(await other.isRunning()), "kill: the killed sandbox is not running (health 502)");
  check((await Sandbox.kill(other.sandboxId)) === false, "kill: false for one already gone");
  const gone = await rejection(Sandbox.getInfo(other.sandboxId));
  check(gone instanceof NotFoundError, "getInfo of a killed sandbox: NotFoundError", gone);
  const reconnect = await rejection(Sandbox.connect(other.sandboxId));
  check(reconnect instanceof NotFoundError, "connect to a killed sandbox: NotFoundError", reconnect);
  const afterKill = await rejection(other.commands.run("true"));
  check(afterKill instanceof SandboxError, "a command in a killed sandbox fails", afterKill);

  const badKey = await rejection(Sandbox.create(template, { apiKey: "e2b_" + "0".repeat(40) }));
  check(badKey instanceof AuthenticationError, "create with a wrong key: AuthenticationError", badKey);
  const badTemplate = await rejection(Sandbox.create("no-such-template"));
  check(badTemplate instanceof SandboxError && /no-such-template/.test(badTemplate.message),
    "create from an unknown template: an error naming it", badTemplate);
  return sandbox;
}

async function commands(sandbox) {
  const hi = await sandbox.commands.run("echo hi");
  check(hi.exitCode === 0 && hi.stdout === "hi\n" && hi.stderr === "", "run: echo hi", hi);
  const both = await sandbox.commands.run("echo out; echo err 1>&2");
  check(both.stdout === "out\n" && both.stderr === "err\n", "run: stdout and stderr apart", both);
  const failed = await rejection(sandbox.commands.run("echo partial; exit 3"));
  check(failed instanceof CommandExitError && failed.exitCode === 3 && failed.stdout === "partial\n",
    "run: a non-zero exit is CommandExitError with the code and output", failed);
  const env = await sandbox.commands.run('echo "$FOO-$BAR"', { envs: { FOO: "foo", BAR: "bar baz" } });
  check(env.stdout === "foo-bar baz\n", "run: envs", env);
  const cwd = await sandbox.commands.run("pwd", { cwd: "/tmp" });
  check(cwd.stdout === "/tmp\n", "run: cwd", cwd);
  const home = await sandbox.commands.run('pwd; echo "$HOME $USER"');
  check(home.stdout === "/home/user\n/home/user user\n", "run: the default user's home is the cwd", home);
  const root = await sandbox.commands.run('echo "$HOME $USER"', { user: "root" });
  check(root.stdout === "/root root\n", "run: user root", root);
  const badUser = await rejection(sandbox.commands.run("true", { user: "mallory" }));
  check(badUser instanceof AuthenticationError || badUser instanceof SandboxError, "run: an unknown user is refused", badUser);
  const badCwd = await rejection(sandbox.commands.run("true", { cwd: "/no/such/dir" }));
  check(badCwd instanceof InvalidArgumentError, "run: a missing cwd is InvalidArgumentError", badCwd);

  const parallel = await Promise.all(Array.from({ length: 24 }, (_, i) => sandbox.commands.run(`sleep 0.2; echo ${i}`)));
  check(parallel.every((r, i) => r.stdout === `${i}\n`), "run: 24 commands at once, each its own output", parallel.map((r) => r.stdout));
  const lines = [];
  await sandbox.commands.run("for i in 1 2 3; do echo line$i; sleep 0.2; done", {
    onStdout: (data) => lines.push(data),
  });
  check(lines.join("") === "line1\nline2\nline3\n" && lines.length >= 2, "run: onStdout streams as it comes", lines);

  // Background, list, connect, kill.
  const sleeper = await sandbox.commands.run("sleep 300", { background: true });
  check(sleeper.pid > 0, "background: a pid", sleeper.pid);
  const listed = await sandbox.commands.list();
  const entry = listed.find((p) => p.pid === sleeper.pid);
  check(entry && entry.cmd === "/bin/bash" && entry.args.includes("sleep 300"), "list: the background command", listed);
  check(await sandbox.commands.kill(sleeper.pid), "kill: true");
  const killed = await rejection(sleeper.wait());
  check(killed instanceof CommandExitError && killed.exitCode === -1 && /signal: killed/.test(killed.error),
    "kill: wait() ends with signal: killed", killed);
  check(await eventually(async () => !(await sandbox.commands.list()).some((p) => p.pid === sleeper.pid)),
    "kill: gone from the list");
  check((await sandbox.commands.kill(sleeper.pid)) === false, "kill: false for a process that is gone");
  check((await sandbox.commands.kill(999999)) === false, "kill: false for a pid that never was");

  const ticker = await sandbox.commands.run("for i in $(seq 1 30); do echo tick$i; sleep 0.2; done", { background: true });
  await sleep(500);
  const seen = [];
  const follower = await sandbox.commands.connect(ticker.pid, { onStdout: (data) => seen.push(data) });
  check(follower.pid === ticker.pid, "connect: the same pid");
  check(await eventually(() => seen.join("").includes("tick")), "connect: output after connecting arrives", seen);
  await sandbox.commands.kill(ticker.pid);
  await rejection(follower.wait());
  const noSuch = await rejection(sandbox.commands.connect(999999));
  check(noSuch instanceof NotFoundError || noSuch instanceof SandboxError, "connect to a missing pid fails", noSuch);

  // Stdin.
  const reader = await sandbox.commands.run("head -n 2", { background: true, stdin: true });
  await sandbox.commands.sendStdin(reader.pid, "first\n");
  await sandbox.commands.sendStdin(reader.pid, "second\nthird\n");
  const read = await reader.wait();
  check(read.stdout === "first\nsecond\n", "stdin: sendStdin reaches the command", read);
  // closeStdin: the SDK asks for envd 0.5.2 before it calls it, so the
  // gateway's CloseStdin is called as the SDK would.
  const cat = await sandbox.commands.run("cat; echo eof", { background: true, stdin: true });
  await sandbox.commands.sendStdin(cat.pid, "fed\n");
  const closed = await fetch(`${apiUrl}/process.Process/CloseStdin`, {
    method: "POST",
    body: JSON.stringify({ process: { pid: cat.pid } }),
    headers: { "Content-Type": "application/json", "E2b-Sandbox-Id": sandbox.sandboxId,
      "X-Access-Token": sandbox.envdAccessToken, "Connect-Protocol-Version": "1" },
  });
  const catted = await cat.wait();
  check(closed.status === 200 && catted.stdout === "fed\neof\n", "CloseStdin: the command sees EOF", catted);
  const deaf = await sandbox.commands.run("sleep 30", { background: true });
  const noStdin = await rejection(sandbox.commands.sendStdin(deaf.pid, "x"));
  check(noStdin instanceof SandboxError, "stdin: refused for a command started without it", noStdin);
  await deaf.kill();

  // Timeouts: the command is killed when its timeout passes.
  const started = Date.now();
  const slow = await rejection(sandbox.commands.run("sleep 30; echo late", { timeoutMs: 1500 }));
  check(slow !== null && Date.now() - started < 15_000, "timeoutMs: the run ends early with an error", slow);
  check(await eventually(async () => !(await sandbox.commands.list()).some((p) => p.args.includes("sleep 30; echo late"))),
    "timeoutMs: the command was killed");
}

async function files(sandbox) {
  const written = await sandbox.files.write("hello.txt", "hello e2b");
  check(written.path === "/home/user/hello.txt" && written.name === "hello.txt", "write: a relative path is under the home", written);
  check((await sandbox.files.read("/home/user/hello.txt")) === "hello e2b", "read: what was written");
  const seen = await sandbox.commands.run("cat hello.txt");
  check(seen.stdout === "hello e2b", "write: commands see the file", seen);

  const bytes = new Uint8Array(256).map((_, i) => i);
  await sandbox.files.write("bin/all-bytes", bytes);
  const back = await sandbox.files.read("bin/all-bytes", { format: "bytes" });
  check(back.length === 256 && back.every((b, i) => b === i), "write and read: binary bytes", back.length);
  const big = "x".repeat(3 << 20) + "end";
  await sandbox.files.write("big.txt", big);
  check((await sandbox.files.read("big.txt")) === big, "write and read: 3 MiB");
  const empty = await sandbox.files.write("empty.txt", "");
  check(empty.path === "/home/user/empty.txt" && (await sandbox.files.read("empty.txt")) === "", "write and read: an empty file");

  const many = await sandbox.files.write([
    { path: "many/a.txt", data: "A" },
    { path: "many/sub/b.txt", data: "B" },
    { path: "/tmp/c.txt", data: "C" },
  ]);
  check(Array.isArray(many) && many.length === 3 && many.map((f) => f.path).join() ===
    "/home/user/many/a.txt,/home/user/many/sub/b.txt,/tmp/c.txt", "write many: every path, parents made", many);
  check((await sandbox.files.read("many/sub/b.txt")) === "B" && (await sandbox.files.read("/tmp/c.txt")) === "C",
    "write many: each file's content");

  const level1 = await sandbox.files.list("many");
  check(level1.map((e) => `${e.name}:${e.type}`).sort().join() === "a.txt:file,sub:dir", "list: depth 1", level1);
  const level2 = await sandbox.files.list("many", { depth: 2 });
  check(level2.map((e) => e.path).sort().join() ===
    "/home/user/many/a.txt,/home/user/many/sub,/home/user/many/sub/b.txt", "list: depth 2", level2);
  const notDir = await rejection(sandbox.files.list("hello.txt"));
  check(notDir instanceof InvalidArgumentError, "list: a file is not a directory", notDir);

  check(await sandbox.files.exists("hello.txt"), "exists: true");
  check(!(await sandbox.files.exists("nope.txt")), "exists: false");
  const info = await sandbox.files.getInfo("hello.txt");
  check(info.type === "file" && info.size === 9 && info.name === "hello.txt" && info.path === "/home/user/hello.txt" &&
    info.permissions === "-rw-r--r--" && info.mode === 0o644 && info.modifiedTime instanceof Date &&
    Math.abs(info.modifiedTime.getTime() - Date.now()) < 120_000, "getInfo: a file", info);
  const dirInfo = await sandbox.files.getInfo("many");
  check(dirInfo.type === "dir" && dirInfo.permissions.startsWith("d"), "getInfo: a directory", dirInfo);

  check((await sandbox.files.makeDir("made/deep/dir")) === true, "makeDir: true, parents made");
  check((await sandbox.files.makeDir("made/deep/dir")) === false, "makeDir: false when it exists");
  const overFile = await rejection(sandbox.files.makeDir("hello.txt"));
  check(overFile instanceof InvalidArgumentError, "makeDir: over a file is InvalidArgumentError", overFile);

  const moved = await sandbox.files.rename("hello.txt", "moved/to/here.txt");
  check(moved.path === "/home/user/moved/to/here.txt" && moved.type === "file", "rename: the new entry", moved);
  check(!(await sandbox.files.exists("hello.txt")) && (await sandbox.files.read("moved/to/here.txt")) === "hello e2b",
    "rename: moved, parents made");
  const moveMissing = await rejection(sandbox.files.rename("nope.txt", "x.txt"));
  check(moveMissing instanceof NotFoundError, "rename: a missing source is NotFoundError", moveMissing);

  await sandbox.files.remove("many");
  check(!(await sandbox.files.exists("many")), "remove: a directory and its content");
  check((await rejection(sandbox.files.remove("never-was"))) === null, "remove: a missing path is no error");

  const missing = await rejection(sandbox.files.read("nope.txt"));
  check(missing instanceof FileNotFoundError, "read: a missing file is FileNotFoundError", missing);
  const dirRead = await rejection(sandbox.files.read("made"));
  check(dirRead instanceof InvalidArgumentError, "read: a directory is InvalidArgumentError", dirRead);
  const readOnly = await rejection(sandbox.files.write("/usr/bin/planted", "x"));
  check(readOnly instanceof SandboxError, "write: outside what the user may write fails", readOnly);
  const limit = Number(process.env.E2B_MAX_UPLOAD_MIB || 0);
  if (limit > 0) {
    const huge = await rejection(sandbox.files.write("huge.bin", new Uint8Array((limit + 1) << 20)));
    check(huge instanceof SandboxError && /413/.test(huge.message), "write: past the upload limit is 413", huge);
    check(!(await sandbox.files.exists("huge.bin")), "write: nothing of a refused upload is left");

    // Raw uploads as envd takes them (the SDK sends these from envd 0.5.7):
    // octet-stream, gzip-compressed, and a gzip bomb cut at the limit.
    const upload = (path, body, headers) => fetch(`${apiUrl}/files?path=${encodeURIComponent(path)}&username=user`, {
      method: "POST", body,
      headers: { "E2b-Sandbox-Id": sandbox.sandboxId, "X-Access-Token": sandbox.envdAccessToken,
        "Content-Type": "application/octet-stream", ...headers },
    });
    let r = await upload("raw.txt", "raw body");
    check(r.status === 200 && (await sandbox.files.read("raw.txt")) === "raw body", "upload: octet-stream", r.status);
    r = await upload("gz.txt", gzipSync("inflated by the gateway"), { "Content-Encoding": "gzip" });
    check(r.status === 200 && (await sandbox.files.read("gz.txt")) === "inflated by the gateway", "upload: gzip", r.status);
    const bomb = gzipSync(Buffer.alloc((limit + 56) << 20));
    r = await upload("bomb.bin", bomb, { "Content-Encoding": "gzip" });
    check(r.status === 413 && bomb.length < (1 << 20), "upload: a gzip bomb is cut at the limit, 413", { status: r.status, sent: bomb.length });
    check(!(await sandbox.files.exists("bomb.bin")), "upload: nothing of the bomb is written");
    r = await upload("br.txt", "x", { "Content-Encoding": "br" });
    check(r.status === 400, "upload: an encoding other than gzip is 400", r.status);
  }

  // Watching a directory: what commands do there comes back as events.
  await sandbox.files.makeDir("watched/sub");
  const events = [];
  const watcher = await sandbox.files.watchDir("watched", (e) => events.push(`${e.type} ${e.name}`));
  await sandbox.commands.run("cd watched && echo 1 > a.txt && chmod 600 a.txt && mv a.txt b.txt && rm b.txt && echo 2 > sub/deep.txt");
  const want = ["create a.txt", "write a.txt", "chmod a.txt", "rename a.txt", "create b.txt", "remove b.txt"];
  check(await eventually(() => want.every((w) => events.includes(w))), "watchDir: create, write, chmod, rename, remove", events);
  check(!events.some((e) => e.includes("deep.txt")), "watchDir: not recursive unless asked", events);
  await watcher.stop();
  const deep = [];
  const recursive = await sandbox.files.watchDir("watched", (e) => deep.push(`${e.type} ${e.name}`), { recursive: true });
  await sandbox.commands.run("mkdir -p watched/new/dir && echo 3 > watched/new/dir/x.txt && echo 4 >> watched/sub/deep.txt");
  check(await eventually(() => deep.includes("create new/dir/x.txt") && deep.includes("write sub/deep.txt")),
    "watchDir recursive: events beneath, in directories made after it started too", deep);
  await recursive.stop();
  const missingDir = await rejection(sandbox.files.watchDir("no/such/dir", () => {}));
  check(missingDir instanceof NotFoundError, "watchDir: a missing directory is NotFoundError", missingDir);
  const fileDir = await rejection(sandbox.files.watchDir("moved/to/here.txt", () => {}));
  check(fileDir instanceof InvalidArgumentError, "watchDir: a file is InvalidArgumentError", fileDir);
  let exited;
  await sandbox.files.watchDir("watched", () => {}, { timeoutMs: 1500, onExit: (error) => { exited = error ?? "clean"; } });
  check(await eventually(() => exited !== undefined, 10_000) && exited instanceof TimeoutError,
    "watchDir: timeoutMs ends the watch with TimeoutError", exited);
}

async function pty(sandbox) {
  let output = "";
  const decoder = new TextDecoder();
  const terminal = await sandbox.pty.create({ cols: 80, rows: 24, onData: (data) => { output += decoder.decode(data); } });
  check(terminal.pid > 0, "pty: a pid", terminal.pid);
  await sandbox.pty.sendInput(terminal.pid, new TextEncoder().encode("echo pty-$((6*7))\n"));
  check(await eventually(() => output.includes("pty-42")), "pty: input runs, output comes back", output.slice(-500));
  await sandbox.pty.resize(terminal.pid, { cols: 100, rows: 30 });
  await sandbox.pty.sendInput(terminal.pid, new TextEncoder().encode("stty size\n"));
  check(await eventually(() => output.includes("30 100")), "pty: resize", output.slice(-500));
  check(output.includes("xterm") || (await sandbox.commands.list()).some((p) => p.pid === terminal.pid),
    "pty: listed with the commands");
  let again = "";
  const second = await sandbox.pty.connect(terminal.pid, { onData: (data) => { again += decoder.decode(data); } });
  await sandbox.pty.sendInput(terminal.pid, new TextEncoder().encode("echo again-$((2+2))\n"));
  check(await eventually(() => again.includes("again-4")), "pty: connect follows it too", again.slice(-500));
  await second.disconnect();
  check(await sandbox.pty.kill(terminal.pid), "pty: kill");
  const ended = await rejection(terminal.wait());
  check(ended instanceof CommandExitError && ended.exitCode === -1, "pty: wait() ends killed", ended);
  check((await sandbox.pty.kill(terminal.pid)) === false, "pty: kill again is false");
}

// A sandbox killed while a command streams: the stream ends with an error,
// the next call fails as E2B's does.
async function killedDuringRun() {
  const sandbox = await create();
  const handle = await sandbox.commands.run("sleep 120", { background: true });
  await Sandbox.kill(sandbox.sandboxId);
  const ended = await rejection(handle.wait());
  check(ended instanceof SandboxError && !(ended instanceof CommandExitError),
    "killed during a run: wait() fails with the sandbox's error", ended);
  const next = await rejection(sandbox.commands.run("true"));
  check(next instanceof SandboxNotFoundError, "killed during a run: the next command is SandboxNotFoundError (502)", next);
  const health = await rejection(sandbox.files.read("x"));
  check(health instanceof TimeoutError, "killed during a run: the next file call is TimeoutError (502)", health);
}

// What does not come through the SDK: malformed requests, other tokens.
async function badInput(sandbox, victim) {
  const key = process.env.E2B_API_KEY;
  const post = (path, body, headers = {}) => fetch(apiUrl + path, {
    method: "POST", body, headers: { "X-API-KEY": key, "Content-Type": "application/json", ...headers },
  });
  let r = await post("/v2/sandboxes", "{not json");
  let body = await r.json();
  check(r.status === 400 && body.code === 400 && /JSON/.test(body.message), "control: malformed JSON is 400 {code, message}", body);
  r = await fetch(apiUrl + "/no/such/route", { headers: { "X-API-KEY": key } });
  body = await r.json();
  check(r.status === 404 && body.code === 404, "control: an unknown route is 404 JSON", body);
  r = await fetch(apiUrl + "/v2/sandboxes");
  check(r.status === 401, "control: no key is 401", r.status);
  r = await post("/sandboxes/" + sandbox.sandboxId + "/timeout", JSON.stringify({ timeout: -5 }));
  check(r.status === 400, "control: a negative timeout is 400", r.status);
  r = await post("/v2/sandboxes", JSON.stringify({ templateID: template, metadata: { "bad key!": "x" } }));
  check(r.status === 400, "control: a metadata key Corral cannot keep is 400", r.status);

  const envd = (path, init, headers) => fetch(apiUrl + path, {
    method: "POST", ...init,
    headers: { "E2b-Sandbox-Id": sandbox.sandboxId, "E2b-Sandbox-Port": "49983", "X-Access-Token": sandbox.envdAccessToken,
      "Connect-Protocol-Version": "1", ...headers },
  });
  r = await envd("/filesystem.Filesystem/Stat", { body: "{oops" }, { "Content-Type": "application/json" });
  body = await r.json();
  check(r.status === 400 && body.code === "invalid_argument", "envd: malformed JSON is invalid_argument", body);
  r = await envd("/filesystem.Filesystem/Stat", { body: "{}" }, { "Content-Type": "text/plain" });
  check(r.status === 415, "envd: a wrong content type is 415", r.status);
  r = await envd("/process.Process/Start", { body: "\x00\x00\x00\x00\x09{}" }, { "Content-Type": "application/connect+json" });
  body = await r.json();
  check(r.status === 400 && body.code === "invalid_argument", "envd: a bad envelope is invalid_argument", body);
  r = await envd("/filesystem.Filesystem/Nope", { body: "{}" }, { "Content-Type": "application/json" });
  body = await r.json();
  check(r.status === 501 && body.code === "unimplemented", "envd: an unknown method is unimplemented", body);
  r = await envd("/filesystem.Filesystem/Stat", { body: JSON.stringify({ path: "/" }) },
    { "Content-Type": "application/json", "X-Access-Token": "0".repeat(64) });
  check(r.status === 401, "envd: a wrong access token is 401", r.status);
  // One sandbox's token does not open another.
  r = await envd("/filesystem.Filesystem/Stat", { body: JSON.stringify({ path: "/" }) },
    { "Content-Type": "application/json", "E2b-Sandbox-Id": victim.sandboxId });
  check(r.status === 401, "envd: a token is its own sandbox's only", r.status);
  r = await fetch(apiUrl + "/health", { headers: { "E2b-Sandbox-Id": "f".repeat(32), "X-Access-Token": "x" } });
  check(r.status === 401, "envd: health of a sandbox that is not yours needs its token", r.status);
  const ok = await sandbox.commands.run("echo still");
  check(ok.stdout === "still\n", "the gateway keeps serving after bad input", ok);
}

try {
  const sandbox = await lifecycle();
  await commands(sandbox);
  await files(sandbox);
  if (full) {
    await pty(sandbox);
    const victim = await create();
    await badInput(sandbox, victim);
    await killedDuringRun();
  }
} catch (error) {
  unexpected(error);
} finally {
  for (const sandbox of sandboxes) await Sandbox.kill(sandbox.sandboxId).catch(() => {});
}
finish();
