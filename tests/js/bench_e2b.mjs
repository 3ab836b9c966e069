// Sandbox.create() then commands.run('echo hi') through `corral e2b`, with
// E2B's JS SDK: the time of both together, per sandbox (each is then
// killed, untimed). Run by tests/bench/e2b.sh (it lives here, beside
// node_modules) with E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY, E2B_TEMPLATE
// and RUNS; prints "e2b-create-run RUNS MEDIAN_MS P90_MS".
import { Sandbox } from "e2b";

const runs = Number(process.env.RUNS ?? 20);
const template = process.env.E2B_TEMPLATE || "base";
const times = [];
for (let i = 0; i < runs + 2; i++) {
  const t0 = process.hrtime.bigint();
  const sandbox = await Sandbox.create(template);
  const r = await sandbox.commands.run("echo hi");
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  if (r.stdout !== "hi\n") throw new Error(JSON.stringify(r));
  await sandbox.kill();
  if (i >= 2) times.push(ms);  // the first ones warm up
}
times.sort((a, b) => a - b);
const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
console.log(`e2b-create-run ${times.length} ${at(0.5).toFixed(3)} ${at(0.9).toFixed(3)}`);
