// Drives the agentgw MCP endpoint with the official MCP TypeScript SDK
// client. Run by internal/mcp's TestTypeScriptClient, which starts the
// gateway, the IdP, the exchange, the bridge and the endpoint, and checks
// what this script prints (one JSON object) and what the upstream server
// saw. Environment: MCP_URL, ALICE_TOKEN, BOB_TOKEN, OTHER_TOKEN.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const url = new URL(process.env.MCP_URL);
const out = {};

// connect returns a client presenting token; captured collects the raw
// tools/call requests it sends.
async function connect(token, captured) {
  const fetchCapture = async (input, init) => {
    if (captured && init?.body && String(init.body).includes('"tools/call"')) {
      captured.push({ url: String(input), headers: Object.fromEntries(new Headers(init.headers)), body: String(init.body) });
    }
    return fetch(input, init);
  };
  const transport = new StreamableHTTPClientTransport(url, {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
    fetch: fetchCapture,
  });
  const client = new Client({ name: "ts-e2e", version: "1.0.0" });
  await client.connect(transport);
  out.protocolVersion = transport.protocolVersion ?? null;
  return client;
}

async function outcome(p) {
  try {
    const r = await p;
    return { ok: true, structured: r.structuredContent ?? null, text: r.content?.[0]?.text ?? null, isError: !!r.isError };
  } catch (e) {
    return { ok: false, code: e.code ?? null, data: e.data ?? null, message: String(e.message ?? e) };
  }
}

const captured = [];
const alice = await connect(process.env.ALICE_TOKEN, captured);
const bob = await connect(process.env.BOB_TOKEN);
out.aliceTools = (await alice.listTools()).tools.map((t) => t.name).sort();
out.bobTools = (await bob.listTools()).tools.map((t) => t.name).sort();
out.allowed = await outcome(alice.callTool({ name: "draft_refund", arguments: { order_id: "ts-1", amount_cents: 900 } }));
out.deniedOnArguments = await outcome(alice.callTool({ name: "draft_refund", arguments: { order_id: "ts-big", amount_cents: 900000 } }));
out.outsideScopes = await outcome(bob.callTool({ name: "draft_refund", arguments: { order_id: "ts-bob", amount_cents: 5 } }));
out.heldGranted = await outcome(alice.callTool({ name: "send_payment", arguments: { amount_cents: 777, to: "ts-acct" } }));

// The same kind of held call as a task (the tasks utility): created at
// once, completed when the approver grants.
out.task = { types: [] };
for await (const m of alice.experimental.tasks.callToolStream({ name: "send_payment", arguments: { amount_cents: 778, to: "ts-acct-2" } })) {
  out.task.types.push(m.type);
  if (m.type === "taskCreated") out.task.taskId = m.task.taskId;
  if (m.type === "result") out.task.structured = m.result.structuredContent ?? null;
  if (m.type === "error") out.task.error = String(m.error?.message ?? m.error);
}
if (out.task.taskId) {
  out.task.final = (await alice.experimental.tasks.getTask(out.task.taskId)).status;
  // Another principal cannot see the task.
  try {
    await bob.experimental.tasks.getTask(out.task.taskId);
    out.task.bobSees = true;
  } catch (e) {
    out.task.bobSees = false;
  }
}

// Replay the captured allowed call byte for byte.
const first = captured[0];
const replay = await fetch(first.url, { method: "POST", headers: first.headers, body: first.body });
out.replay = { status: replay.status, body: await replay.text() };

// A token for another audience is refused before any MCP processing.
try {
  await connect(process.env.OTHER_TOKEN);
  out.otherAudience = { ok: true };
} catch (e) {
  out.otherAudience = { ok: false, code: e.code ?? null, message: String(e.message ?? e) };
}

await alice.close();
await bob.close();
console.log(JSON.stringify(out));
