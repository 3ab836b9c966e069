// The round trip of workspace_exec tool calls through `corral mcp` (stdio,
// the official TypeScript SDK as the client). Run by tests/bench/mcp.sh (it
// lives here, beside node_modules) with CORRAL_BIN, CORRAL_SOCKET,
// CORRAL_SANDBOX and RUNS; prints "mcp-exec RUNS MEDIAN_MS P90_MS".
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const { CORRAL_BIN: corral, CORRAL_SOCKET: socket, CORRAL_SANDBOX: id } = process.env;
const runs = Number(process.env.RUNS ?? 200);
const summary = (name, times) => {
  times.sort((a, b) => a - b);
  const at = (q) => times[Math.min(times.length - 1, Math.floor(q * times.length))];
  console.log(`${name} ${times.length} ${at(0.5).toFixed(3)} ${at(0.9).toFixed(3)}`);
};
const timed = async (work) => {
  const t0 = process.hrtime.bigint();
  await work();
  return Number(process.hrtime.bigint() - t0) / 1e6;
};

const client = new Client({ name: "corral-bench", version: "1" });
await client.connect(new StdioClientTransport({ command: corral, args: ["--socket", socket, "mcp"] }));
const mcp = [];
for (let i = 0; i < runs + 5; i++) {
  const ms = await timed(async () => {
    const r = await client.callTool({ name: "workspace_exec", arguments: { sandbox_id: id, argv: ["true"] } });
    if (r.isError || r.structuredContent.exit_code !== 0) throw new Error(JSON.stringify(r));
  });
  if (i >= 5) mcp.push(ms);  // the first calls warm up
}
await client.close();
summary("mcp-exec", mcp);
