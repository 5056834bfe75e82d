// A refund round trip through the gateway of `make run` (or `agentgw run
// --dir D`): the refunds tool consumes its verified, opened requests and
// answers; the agent sends a sealed request and waits for the verified,
// redacted answer.
//
// GATEWAY_KEY and GATEWAY_XKEY are the gateway's public keys (`agentgw
// keys show` prints them), AGENTGW_DIR the dev material; see the README.
import { connect } from "@nats-io/transport-node";
import { Agent, Consumer, readCurveSeed, tenantJetStream, userConnectOptions } from "@agentgw/client";

const dir = process.env.AGENTGW_DIR ?? ".agentgw";
const servers = process.env.NATS_URL ?? "nats://127.0.0.1:4222";
const gatewayKey = process.env.GATEWAY_KEY ?? ""; // N…: decision tokens are signed by it
const gatewayXKey = process.env.GATEWAY_XKEY ?? ""; // X…: payloads are sealed to it

// The refunds tool: a tenant user bound to its pre-created consumer.
const toolNC = await connect({ servers, ...(await userConnectOptions(`${dir}/creds/consumer.creds`)) });
const tool = new Consumer(tenantJetStream(toolNC), {
  tenant: "tenant_a",
  targets: ["refunds.draft_refund"],
  trustedGateways: [gatewayKey],
  curve: await readCurveSeed(`${dir}/creds/consumer.xk`),
  durable: "tenant_a~refunds~draft_refund",
  bind: true,
  responder: await Agent.fromCreds(toolNC, `${dir}/creds/consumer.creds`, `${dir}/creds/consumer.xk`, { gatewayXKey }),
});
const stop = new AbortController();
const serving = tool.consume(
  async (d) => {
    const { order_id } = d.json<{ order_id: string }>();
    await d.respond({ refund_id: `rf_${order_id}`, status: "drafted", customer_email: "kept@from.the.agent" });
    stop.abort();
  },
  { signal: stop.signal },
);

// The agent: sign, seal, publish, and wait for the verified reply.
const agentNC = await connect({ servers, ...(await userConnectOptions(`${dir}/creds/agent.creds`)) });
const agent = await Agent.fromCreds(agentNC, `${dir}/creds/agent.creds`, `${dir}/creds/agent.xk`, { gatewayXKey });
const { receipt, reply } = await agent.sendAndWait(
  { capability: "tool_call", target: "refunds.draft_refund", sealed: { order_id: "ord_42", amount_cents: 1250 } },
  { trustedGateways: [gatewayKey], signal: AbortSignal.timeout(30_000) },
);
console.log(`sent ${receipt.messageId}, reply from ${reply.responder}: ${reply.string()}`);

await serving;
await Promise.all([toolNC.close(), agentNC.close()]);

