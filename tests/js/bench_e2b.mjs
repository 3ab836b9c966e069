// Sandbox.create() then commands.run('echo hi') through `corral e2b`, with
// E2B's JS SDK: the time of both together, per sandbox (each is then
// killed, untimed). Run by tests/bench/e2b.sh (it lives here, beside
// node_modules) with E2B_API_URL, E2B_SANDBOX_URL, E2B_API_KEY, E2B_TEMPLATE
// and RUNS; prints "e2b-create-run RUNS MEDIAN_MS P90_MS", then the same
// for the create alone (e2b-create) and the command alone (e2b-run).
import { Sandbox } from "e2b";

const runs = Number(process.env.RUNS ?? 20);
const template = process.env.E2B_TEMPLATE || "base";
const both = [], creates = [], commands = [];
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;
for (let i = 0; i < runs + 2; i++) {
  const t0 = process.hrtime.bigint();
  const sandbox = await Sandbox.create(template);
  const t1 = process.hrtime.bigint();
  const r = await sandbox.commands.run("echo hi");
  if (r.stdout !== "hi\n") throw new Error(JSON.stringify(r));
  if (i >= 2) {  // the first ones warm up
    both.push(ms(t0));
    creates.push(ms(t0) - ms(t1));
    commands.push(ms(t1));
  }
  await sandbox.kill();
}
const summary = (name, times) => {
  times.sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
  console.log(`${name} ${times.length} ${at(0.5).toFixed(3)} ${at(0.9).toFixed(3)}`);
};
summary("e2b-create-run", both);
summary("e2b-create", creates);
summary("e2b-run", commands);
