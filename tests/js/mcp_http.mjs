// corral mcp --listen at the HTTP level (Streamable HTTP): sessions, the
// MCP-Protocol-Version header, SSE and JSON answers, DNS rebinding
// protection, and a slow call that does not hold up another request. The
// judge of tests/integration/mcp_test.cc, which passes the endpoint in
// CORRAL_MCP_URL. Prints "ok - ..." per check and exits 1 if any failed.
import http from "node:http";
import { check, finish } from "./tap.mjs";

const url = new URL(process.env.CORRAL_MCP_URL);

// One HTTP request; resolves to { status, headers, body }.
function request(method, { body, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, {
      method,
      headers: {
        "Content-Type": "application/json",
        Accept: "application/json, text/event-stream",
        ...headers,
      },
    }, (res) => {
      let data = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => (data += chunk));
      res.on("end", () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
    });
    req.on("error", reject);
    if (body !== undefined) req.write(typeof body === "string" ? body : JSON.stringify(body));
    req.end();
  });
}
// The JSON-RPC message of a JSON or SSE answer.
function message(answer) {
  if ((answer.headers["content-type"] ?? "").includes("text/event-stream")) {
    const data = answer.body.split("\n").filter((l) => l.startsWith("data: "));
    return JSON.parse(data[0].slice(6));
  }
  return JSON.parse(answer.body);
}
const initialize = {
  jsonrpc: "2.0", id: 1, method: "initialize",
  params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "http-test", version: "1" } },
};

let r = await request("POST", { body: initialize });
const session = r.headers["mcp-session-id"];
check(r.status === 200 && /^[0-9a-f]{32}$/.test(session ?? ""), "initialize opens a session", r);
check(r.headers["content-type"]?.includes("text/event-stream") && r.body.startsWith("event: message\ndata: "),
  "a client that accepts SSE gets the answer as an SSE event", r.body);
check(message(r).result?.protocolVersion === "2025-11-25", "the answer is initialize's", r.body);
const with_session = { "Mcp-Session-Id": session, "MCP-Protocol-Version": "2025-11-25" };

r = await request("POST", { body: { jsonrpc: "2.0", method: "notifications/initialized" }, headers: with_session });
check(r.status === 202 && r.body === "", "a notification is accepted with 202 and no body", r);
r = await request("POST", { body: { jsonrpc: "2.0", id: 2, method: "ping" }, headers: { ...with_session, Accept: "application/json" } });
check(r.status === 200 && r.headers["content-type"]?.startsWith("application/json") && message(r).result !== undefined,
  "a client that accepts JSON only gets JSON", r);

r = await request("POST", { body: { jsonrpc: "2.0", id: 3, method: "tools/list" } });
check(r.status === 400, "a request without Mcp-Session-Id: 400", r);
r = await request("POST", { body: { jsonrpc: "2.0", id: 3, method: "tools/list" }, headers: { "Mcp-Session-Id": "0".repeat(32) } });
check(r.status === 404, "an unknown session: 404", r);
r = await request("POST", { body: { jsonrpc: "2.0", id: 3, method: "tools/list" }, headers: { ...with_session, "MCP-Protocol-Version": "1999-01-01" } });
check(r.status === 400 && /unsupported MCP-Protocol-Version 1999-01-01/.test(r.body), "an unsupported MCP-Protocol-Version: 400", r);
r = await request("POST", { body: "{not json", headers: with_session });
check(r.status === 400 && message(r).error?.code === -32700, "a body that is not JSON: 400 with a parse error", r);
r = await request("GET", { headers: with_session });
check(r.status === 405, "GET (no server-initiated stream): 405", r);

// DNS rebinding: another site's name as Host or Origin is refused.
r = await request("POST", { body: initialize, headers: { Host: "evil.example.com" } });
check(r.status === 403, "Host of another site: 403", r);
r = await request("POST", { body: initialize, headers: { Origin: "http://evil.example.com" } });
check(r.status === 403, "Origin of another site: 403", r);
r = await request("POST", { body: initialize, headers: { Host: `localhost:${url.port}`, Origin: `http://localhost:${url.port}` } });
check(r.status === 200, "Host and Origin of localhost: served", r);

// A slow call does not hold up another request of the session.
const order = [];
const slow = request("POST", {
  body: { jsonrpc: "2.0", id: 10, method: "tools/call", params: { name: "sandbox_run", arguments: { command: "sleep 2; echo slow" } } },
  headers: with_session,
}).then((a) => { order.push("slow"); return a; });
await new Promise((resolve) => setTimeout(resolve, 300));
const quick = await request("POST", { body: { jsonrpc: "2.0", id: 11, method: "ping" }, headers: with_session });
order.push("ping");
const slowAnswer = await slow;
check(quick.status === 200 && order[0] === "ping", "a ping is answered while a command runs", order);
check(message(slowAnswer).result?.structuredContent?.stdout === "slow\n", "the slow call's answer arrives on its own stream", slowAnswer.body);

r = await request("DELETE", { headers: with_session });
check(r.status === 200, "DELETE ends the session", r);
r = await request("POST", { body: { jsonrpc: "2.0", id: 12, method: "ping" }, headers: with_session });
check(r.status === 404, "an ended session: 404", r);

finish();
