// End to end against the gateway built from this repository (`agentgw
// run`: a real nats-server with the least-privilege accounts, the dev
// identities and the gateway): TypeScript and Go agents and consumers
// talk through it both ways, plain and sealed, with responses back;
// approvals go through a TypeScript approver; senders are told each
// decision by a verified notice; and denials are observed as typed
// reasons on the denied stream and by the consumer.
import { after, before, test } from "node:test";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { join } from "node:path";
import { createCurve } from "@nats-io/nkeys";
import { connect, headers, type MsgHdrs, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Agent, type Request } from "../src/agent.js";
import { Approver } from "../src/approver.js";
import { tenantJetStream } from "../src/consume.js";
import { Consumer, type ReceivedDelivery } from "../src/consumer.js";
import { readCreds, readCurveSeed, userConnectOptions } from "../src/creds.js";
import { newMessageId, newTraceId, parseEnvelope } from "../src/envelope.js";
import { digestHex } from "../src/internal/bytes.js";
import { signBatch, wireClaims } from "../src/internal/decision_sign.js";
import { ConfigError, InvalidRequestError, MessageDeniedError, NoDecisionError, NoReplyError, VerificationError } from "../src/errors.js";
import { setHooks } from "../src/internal/hooks.js";
import { Box } from "../src/keys.js";
import { formatNoticeDoc, isNotice, type Decision } from "../src/notice.js";
import { isReasonCode } from "../src/reason.js";
import { capabilityConsumerName, OPERATOR_API_PREFIX, STREAM_DENIED } from "../src/subjects.js";
import { bytes, dec, rejectsWith } from "./helpers.js";
import { startGateway, startCLI, cliEnv, type Gateway } from "./servers.js";
import { editDoc, forward, newWorld } from "./world.js";

const TENANT = "tenant_a";
let gw: Gateway;
const conns: NatsConnection[] = [];
let agentNC: NatsConnection;
let consumerNC: NatsConnection;
let agent: Agent;
let responder: Agent;
let deniedJSM: JetStreamManager;

async function connectAs(seedFile: string): Promise<NatsConnection> {
  const nc = await connect({ servers: gw.url, ...(await userConnectOptions(seedFile)) });
  conns.push(nc);
  return nc;
}

before(async () => {
  gw = await startGateway();
  agentNC = await connectAs(gw.creds("agent"));
  agent = await Agent.fromCreds(agentNC, gw.creds("agent"), gw.curve("agent"), { gatewayXKey: gw.gatewayXKey });
  consumerNC = await connectAs(gw.creds("consumer"));
  responder = await Agent.fromCreds(consumerNC, gw.creds("consumer"), gw.curve("consumer"), { gatewayXKey: gw.gatewayXKey });
  // The operator (account OPS, no JetStream of its own) reads the denied
  // stream by direct get, imported under the operator API prefix: no
  // account info, no consumer.
  deniedJSM = await jetstreamManager(await connectAs(gw.creds("operator")), { apiPrefix: OPERATOR_API_PREFIX, checkAPI: false });
});

after(async () => {
  for (const nc of conns) {
    await nc.close().catch(() => {});
  }
  await gw?.stop();
});

/** consumerOf is the TypeScript capability consumer of target, bound to its pre-created durable. */
async function consumerOf(target: string, over: { onReject?: (s: string, e: VerificationError) => void } = {}): Promise<Consumer> {
  return new Consumer(tenantJetStream(consumerNC), {
    tenant: TENANT,
    targets: [target],
    trustedGateways: [gw.gatewayKey],
    gatewayXKeys: [gw.gatewayXKey],
    curve: await readCurveSeed(gw.curve("consumer")),
    verifyAgentSignature: true,
    durable: capabilityConsumerName(TENANT, target),
    bind: true,
    responder,
    ...over,
  });
}

/** take reads deliveries of target until want of them matched, settling each. */
async function take(target: string, want: number, match: (d: ReceivedDelivery) => boolean, handle?: (d: ReceivedDelivery) => Promise<void>): Promise<ReceivedDelivery[]> {
  const c = await consumerOf(target);
  const got: ReceivedDelivery[] = [];
  const signal = AbortSignal.timeout(60_000);
  for await (const d of c.deliveries({ signal })) {
    if (match(d)) {
      await handle?.(d);
      got.push(d);
    }
    d.ack();
    if (got.length === want) {
      break;
    }
  }
  assert.equal(got.length, want, `deliveries of ${target}; gateway log:\n${gw.log()}`);
  return got;
}

/**
 * deniedReason waits for the denied stream's record of messageId, read as
 * the operator reads it (direct get, as `agentgw denied` does), and
 * returns its reason code. A denied record carries the agent's credential
 * only sealed to the gateway, never in the clear.
 */
async function deniedReason(messageId: string): Promise<string> {
  const deadline = Date.now() + 30_000;
  let next = 1;
  for (;;) {
    for (;;) {
      const m = await deniedJSM.direct.getMessage(STREAM_DENIED, { seq: next, next_by_subj: ">" });
      if (m === null) {
        break;
      }
      next = m.seq + 1;
      if (m.header.get("Agentgw-Message-Id") === messageId) {
        assert.equal(m.header.get("Agentgw-Credential"), "", "a denied record carries no plain credential");
        assert.notEqual(m.header.get("Agentgw-Credential-Sealed"), "", "a denied record carries the credential sealed");
        return m.header.get("Agentgw-Reason");
      }
    }
    if (Date.now() > deadline) {
      assert.fail(`no denial of ${messageId}; gateway log:\n${gw.log()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

function jsonLines(s: string): any[] {
  return s
    .split("\n")
    .filter((l) => l.trim().startsWith("{"))
    .map((l) => JSON.parse(l));
}

const cli = (): string[] => ["--server", gw.url];

test("TypeScript agent to TypeScript consumer: sealed, with the response back redacted", async () => {
  const c = await consumerOf("refunds.draft_refund");
  const ctl = new AbortController();
  let handled: ReceivedDelivery | undefined;
  const serving = c.consume(
    async (d) => {
      handled = d;
      assert.deepEqual(d.json(), { order_id: "ord_ts1", amount_cents: 1200 });
      await d.respond({ refund_id: "rf_ts1", status: "drafted", customer_email: "someone@example.com" });
      ctl.abort();
    },
    { signal: ctl.signal },
  );
  const { receipt, reply } = await agent.sendAndWait(
    { capability: "tool_call", target: "refunds.draft_refund", sealed: { order_id: "ord_ts1", amount_cents: 1200 } },
    { trustedGateways: [gw.gatewayKey], signal: AbortSignal.timeout(60_000) },
  );
  await serving;
  assert.ok(handled);
  assert.equal(handled.sealed, true);
  assert.equal(handled.agent, agent.publicKey);
  assert.equal(handled.messageId, receipt.messageId);
  assert.equal(handled.claims.issuer, gw.gatewayKey);
  assert.equal(handled.claims.audience, "refunds.draft_refund");
  assert.equal(reply.requestId, receipt.messageId);
  assert.equal(reply.responder, responder.publicKey);
  assert.equal(reply.claims.audience, agent.publicKey);
  assert.equal(reply.claims.route, "reply");
  assert.deepEqual(reply.json(), { refund_id: "rf_ts1", status: "drafted" }, "the gateway removed customer_email");
});

test("TypeScript agent to TypeScript consumer: plain", async () => {
  const rcpt = await agent.send({ capability: "read", target: "kb.search", plain: { q: "refund policy" } });
  const [d] = await take("kb.search", 1, (d) => d.messageId === rcpt.messageId);
  assert.equal(d!.sealed, false);
  assert.deepEqual(d!.json(), { q: "refund policy" });
});

test("TypeScript agent to Go consumer, sealed and plain, and a Go response back", async () => {
  const waiting = agent.sendAndWait(
    { capability: "tool_call", target: "refunds.draft_refund", sealed: { order_id: "ord_go1", amount_cents: 300 } },
    { trustedGateways: [gw.gatewayKey], signal: AbortSignal.timeout(90_000) },
  );
  const consumeArgs = (target: string) => [
    "consume", "--json", "--count", "1", "--tenant", TENANT, "--target", target, "--gateway-key", gw.gatewayKey,
    "--curve-seed", gw.curve("consumer"), "--verify-agent-signature", "--creds", gw.creds("consumer"), "--settle-durable", ...cli(),
  ];
  const sealed = await gw.run(consumeArgs("refunds.draft_refund"));
  assert.equal(sealed.code, 0, sealed.stderr);
  const [row] = jsonLines(sealed.stdout);
  assert.equal(row.status, "verified");
  assert.equal(row.sealed, true);
  assert.equal(row.agent, agent.publicKey);
  assert.deepEqual(row.payload, { order_id: "ord_go1", amount_cents: 300 });

  // The Go CLI answers as the consumer: a respond envelope naming the
  // request by its agent and message id.
  const answered = await gw.run([
    "send", "--json", "--credential", gw.creds("consumer"), "--curve-seed", gw.curve("consumer"), "--gateway-xkey", gw.gatewayXKey,
    "--capability", "respond", "--target", `${row.agent}/${row.message_id}`, "--sealed", `{"refund_id":"rf_go1","status":"drafted","customer_email":"x@example.com"}`,
    "--gateway-key", gw.gatewayKey, ...cli(),
  ]);
  assert.equal(answered.code, 0, answered.stderr);
  const { receipt, reply } = await waiting;
  assert.equal(receipt.messageId, row.message_id);
  assert.deepEqual(reply.json(), { refund_id: "rf_go1", status: "drafted" });

  const rcpt = await agent.send({ capability: "read", target: "kb.search", plain: { q: "to go" } });
  const plain = await gw.run(consumeArgs("kb.search"));
  assert.equal(plain.code, 0, plain.stderr);
  const [prow] = jsonLines(plain.stdout);
  assert.equal(prow.message_id, rcpt.messageId);
  assert.equal(prow.sealed, false);
  assert.deepEqual(prow.payload, { q: "to go" });
});

test("Go agent to TypeScript consumer, sealed with a response back, and plain", async () => {
  const goAgent = ["--credential", gw.creds("agent"), "--curve-seed", gw.curve("agent"), "--gateway-xkey", gw.gatewayXKey, ...cli()];
  const sending = startCLI(gw, [
    "send", "--json", ...goAgent, "--capability", "tool_call", "--target", "refunds.draft_refund",
    "--sealed", `{"order_id":"ord_gots","amount_cents":4200}`, "--wait", "--gateway-key", gw.gatewayKey, "--timeout", "60s",
  ]);
  try {
    const [d] = await take(
      "refunds.draft_refund",
      1,
      (d) => (d.json() as { order_id?: string }).order_id === "ord_gots",
      async (d) => {
        assert.equal(d.agent, agent.publicKey);
        assert.equal(d.sealed, true);
        await d.respond({ refund_id: "rf_gots", status: "drafted", customer_email: "y@example.com" });
      },
    );
    assert.ok(d);
    assert.equal(await sending.exited, 0, sending.output());
    const [out] = jsonLines(sending.output());
    assert.equal(out.message_id, d.messageId);
    assert.deepEqual(out.reply.payload, { refund_id: "rf_gots", status: "drafted" });
    assert.equal(out.reply.responder, responder.publicKey);
  } finally {
    await sending.stop();
  }

  const plain = await gw.run(["send", "--json", ...goAgent, "--capability", "read", "--target", "kb.search", "--plain", `{"q":"from go"}`, "--gateway-key", gw.gatewayKey]);
  assert.equal(plain.code, 0, plain.stderr);
  const [sent] = jsonLines(plain.stdout);
  assert.equal(sent.decision?.route, "allow", "the Go CLI waits for the decision notice too");
  const [d] = await take("kb.search", 1, (d) => d.messageId === sent.message_id);
  assert.deepEqual(d!.json(), { q: "from go" });
  assert.equal(d!.sealed, false);
});

test("responses: an answer sealed from a key other than the target's consumer key is denied wrong_responder", async () => {
  // The consumer's own key with a credential of its own scope whose xkey
  // is another curve key: Consumer refuses it as a responder, so it
  // answers as a bare Agent, and the gateway denies that answer.
  const curve = createCurve();
  const out = join(gw.dir, "other-xkey.creds");
  const issued = await gw.run([
    "creds", "issue", "--issuer", gw.key("tenant_a-issuer"), "--agent-seed", gw.creds("consumer"), "--tenant", TENANT,
    "--audience", agent.audience, "--xkey", curve.getPublicKey(), "--scopes", "respond:refunds.draft_refund", "--service", "refunds-tool", "--out", out,
  ]);
  assert.equal(issued.code, 0, issued.stderr);
  const { credential, key } = await readCreds(out);
  const wrong = new Agent(consumerNC, { credential, key, curve, gatewayXKey: gw.gatewayXKey });
  const consumerCurve = await readCurveSeed(gw.curve("consumer"));
  const cfg = { tenant: TENANT, targets: ["refunds.draft_refund"], trustedGateways: [gw.gatewayKey], curve: consumerCurve };
  assert.throws(() => new Consumer(tenantJetStream(consumerNC), { ...cfg, responder: wrong }), ConfigError);

  const rcpt = await agent.send({ capability: "tool_call", target: "refunds.draft_refund", sealed: { order_id: "ord_wr", amount_cents: 5 } });
  let answer: string | undefined;
  await take(
    "refunds.draft_refund",
    1,
    (d) => d.messageId === rcpt.messageId,
    async (d) => {
      answer = (await wrong.respond(d, { refund_id: "rf_wr", status: "drafted" })).messageId;
    },
  );
  assert.ok(answer);
  const why = await deniedReason(answer);
  assert.ok(isReasonCode(why), `${why} is not in the reason table`);
  assert.equal(why, "wrong_responder");
});

test("approval: a held payment is listed, granted by a TypeScript approver and delivered", async () => {
  const approverNC = await connectAs(gw.creds("approver"));
  const { credential, key } = await readCreds(gw.creds("approver"));
  const ap = new Approver(approverNC, tenantJetStream(approverNC), { credential, key, bind: true, trustedGateways: [gw.gatewayKey] });
  const rcpt = await agent.send({ capability: "tool_call", target: "payments.send", sealed: { amount_cents: 990000, currency: "EUR" } });
  let held;
  for (let i = 0; i < 100 && held === undefined; i++) {
    held = (await ap.list()).find((r) => r.heldMessageId === rcpt.messageId);
  }
  assert.ok(held, `the payment was not held; gateway log:\n${gw.log()}`);
  assert.equal(held.agent, agent.publicKey);
  assert.equal(held.target, "payments.send");
  assert.equal(held.traceId, rcpt.traceId);
  assert.deepEqual(held.fields, { amount_cents: 990000, currency: "EUR" });
  await ap.grant(held, "checked by the TypeScript approver");
  const [d] = await take("payments.send", 1, (d) => d.messageId === rcpt.messageId);
  assert.equal(d!.claims.act.approver, ap.agent.publicKey);
  assert.deepEqual(d!.json(), { amount_cents: 990000, currency: "EUR" });
});

test("decision notices: the TypeScript agent is told delivered, held (then released) and denied", async () => {
  const trust = { trustedGateways: [gw.gatewayKey] };
  const delivered = await agent.sendAndDecide(
    { capability: "read", target: "kb.search", plain: { q: "told" } },
    { ...trust, signal: AbortSignal.timeout(60_000) },
  );
  assert.equal(delivered.decision.route, "allow");
  assert.equal(delivered.decision.target, "kb.search");
  assert.equal(delivered.decision.messageId, delivered.receipt.messageId);
  assert.equal(delivered.decision.claims.issuer, gw.gatewayKey);
  assert.equal(delivered.decision.claims.traceId, delivered.receipt.traceId);
  assert.deepEqual(delivered.decision.claims.policyIds, [], "a notice names no policy");
  await take("kb.search", 1, (d) => d.messageId === delivered.receipt.messageId);

  const held = await agent.sendAndDecide(
    { capability: "tool_call", target: "payments.send", sealed: { amount_cents: 990001, currency: "EUR" } },
    { ...trust, signal: AbortSignal.timeout(60_000) },
  );
  assert.equal(held.decision.route, "approval");
  assert.equal(held.decision.approvalId, held.receipt.messageId);
  assert.ok(held.decision.deadline && held.decision.deadline.getTime() > Date.now(), `deadline ${held.decision.deadline?.toISOString()}`);
  // The approver's grant: the approver is told its answer was taken, the
  // requester that its request was released.
  const approverNC = await connectAs(gw.creds("approver"));
  const { credential, key } = await readCreds(gw.creds("approver"));
  const ap = new Approver(approverNC, tenantJetStream(approverNC), { credential, key, bind: true, trustedGateways: [gw.gatewayKey] });
  const req = await ap.find(held.decision.approvalId!, { signal: AbortSignal.timeout(30_000) });
  assert.ok(req, `no held request ${held.decision.approvalId}; gateway log:\n${gw.log()}`);
  const release = agent.watchDecisions(trust);
  const answered = ap.agent.watchDecisions(trust);
  try {
    await Promise.all([release.ready(), answered.ready()]);
    const grant = await ap.grant(req, "notices test");
    const taken = await answered.await(grant.messageId, { signal: AbortSignal.timeout(60_000) });
    assert.equal(taken.answers, held.receipt.messageId);
    assert.equal(taken.answer, "grant");
    assert.equal(taken.route, "allow");
    assert.equal(taken.target, "payments.send");
    const released = await release.await(held.receipt.messageId, { signal: AbortSignal.timeout(60_000) });
    assert.equal(released.route, "allow");
    assert.equal(released.target, "payments.send");
    assert.equal(released.claims.audience, agent.publicKey);
  } finally {
    release.close();
    answered.close();
  }
  await take("payments.send", 1, (d) => d.messageId === held.receipt.messageId);

  const denied = await rejectsWith(
    agent.sendAndDecide({ capability: "read", target: "nope.nothing", plain: { q: "x" } }, { ...trust, signal: AbortSignal.timeout(60_000) }),
    MessageDeniedError,
  );
  assert.equal(denied.reason, "unknown_target");
  assert.equal(denied.receipt?.messageId, denied.messageId);
  assert.equal(await deniedReason(denied.messageId), denied.reason, "the agent is told the code the operator sees");
});

test("decision notices: noNotice asks the gateway for none, and the waits that read one refuse it", async () => {
  const trust = { trustedGateways: [gw.gatewayKey] };
  const w = agent.watchDecisions(trust);
  try {
    await w.ready();
    const quiet = await agent.send({ capability: "read", target: "kb.search", plain: { q: "quiet" }, noNotice: true });
    const told = await agent.send({ capability: "read", target: "kb.search", plain: { q: "told" } });
    // Decided after the quiet one: its notice would have come first.
    assert.equal((await w.await(told.messageId, { signal: AbortSignal.timeout(60_000) })).route, "allow");
    await rejectsWith(w.await(quiet.messageId, { signal: AbortSignal.timeout(300) }), NoDecisionError);
    await take("kb.search", 2, (d) => d.messageId === quiet.messageId || d.messageId === told.messageId);
  } finally {
    w.close();
  }
  const req: Request = { capability: "read", target: "kb.search", plain: { q: "x" }, noNotice: true };
  await rejectsWith(agent.sendAndDecide(req, { ...trust, signal: AbortSignal.timeout(10_000) }), InvalidRequestError);
  await rejectsWith(agent.sendAndWait(req, { ...trust, signal: AbortSignal.timeout(10_000) }), InvalidRequestError);
});

test("decision notices: a notice signed by a key the agent does not trust is refused", async () => {
  // Someone who may write to the agent's reply subject (here: the
  // gateway's own NATS user) forges a denial of the agent's next message.
  const forger = await connectAs(gw.key("nats-gateway"));
  const w = newWorld(); // a gateway key nobody trusts
  const messageId = newMessageId();
  const data = bytes(JSON.stringify({ message_id: messageId, route: "deny", reason: "policy_denied" }));
  const now = Math.floor(Date.now() / 1000);
  const token = signBatch(w.gwSign, [
    wireClaims(w.gwKey, {
      jti: "FORGED" + messageId.slice(0, 8).toUpperCase(), sub: agent.publicKey, aud: agent.publicKey, iat: now, exp: now + 300,
      tenant: TENANT, scope: "notice", traceId: newTraceId(), messageId, bodyDigest: "00".repeat(32), payloadDigest: digestHex(data), route: "notice",
    }),
  ])[0]!;
  const rejected: string[] = [];
  const spy = await Agent.fromCreds(agentNC, gw.creds("agent"), gw.curve("agent"), { gatewayXKey: gw.gatewayXKey });
  setHooks(spy, { newId: () => messageId });
  const watch = spy.watchDecisions({ trustedGateways: [gw.gatewayKey], onReject: (e) => rejected.push(e.reason) });
  try {
    await watch.ready();
    const h = headers();
    h.set("Agentgw-Notice", "decision");
    h.set("Agentgw-Message-Id", messageId);
    forger.publish(`agentgw.reply.${TENANT}.${agent.publicKey}`, formatNoticeDoc(token, data), { headers: h });
    await forger.flush();
    const rcpt = await spy.send({ capability: "read", target: "kb.search", plain: { q: "not denied" } });
    assert.equal(rcpt.messageId, messageId);
    const d = await watch.await(messageId, { signal: AbortSignal.timeout(60_000) });
    assert.equal(d.route, "allow", "the gateway's notice, not the forged denial");
    assert.deepEqual(rejected, ["decision_token_invalid"]);
  } finally {
    watch.close();
  }
  await take("kb.search", 1, (d) => d.messageId === messageId);

  // An agent that trusts only another key believes none of the gateway's notices.
  const err = await rejectsWith(
    agent.sendAndDecide({ capability: "read", target: "kb.search", plain: { q: "unbelieved" } }, { trustedGateways: [w.gwKey], signal: AbortSignal.timeout(3_000) }),
    NoDecisionError,
  );
  assert.ok(err.receipt);
  await take("kb.search", 1, (d) => d.messageId === err.messageId);
});

/**
 * waitInBackground starts a.sendAndWait(req): next() is the next decision
 * it hands to onDecision, and fails the test if the wait ends first.
 */
function waitInBackground(a: Agent, req: Request, signal: AbortSignal): { waiting: Promise<unknown>; next: () => Promise<Decision>; seen: Decision[] } {
  const seen: Decision[] = [];
  let wake = (): void => {};
  const waiting = a.sendAndWait(req, {
    trustedGateways: [gw.gatewayKey],
    signal,
    onDecision: (d) => {
      seen.push(d);
      wake();
    },
  });
  const ended = waiting.then(
    () => "resolved",
    (err: unknown) => String(err),
  );
  let taken = 0;
  const next = async (): Promise<Decision> => {
    while (seen.length === taken) {
      const woke = new Promise<undefined>((resolve) => (wake = () => resolve(undefined)));
      const end = await Promise.race([woke, ended]);
      if (end !== undefined && seen.length === taken) {
        assert.fail(`sendAndWait ended (${end}) before the next decision notice`);
      }
    }
    return seen[taken++]!;
  };
  return { waiting, next, seen };
}

test("sendAndWait: the gateway's denial ends the wait with MessageDeniedError, after onDecision", async () => {
  const seen: Decision[] = [];
  // Long enough that only the notice can end the wait in the test.
  const err = await rejectsWith(
    agent.sendAndWait(
      { capability: "read", target: "nope.nothing", plain: { q: "waiting" } },
      { trustedGateways: [gw.gatewayKey], signal: AbortSignal.timeout(30_000), onDecision: (d) => seen.push(d) },
    ),
    MessageDeniedError,
  );
  assert.equal(err.reason, "unknown_target");
  assert.ok(err.receipt);
  assert.equal(err.receipt.messageId, err.messageId);
  assert.deepEqual(
    seen.map((d) => [d.route, d.messageId, d.reason]),
    [["deny", err.messageId, "unknown_target"]],
  );
});

test("sendAndWait: a held request goes to onDecision and the wait goes on, past its release too", async () => {
  const ctl = new AbortController();
  const w = waitInBackground(
    agent,
    { capability: "tool_call", target: "payments.send", sealed: { amount_cents: 990002, currency: "EUR" } },
    AbortSignal.any([ctl.signal, AbortSignal.timeout(30_000)]),
  );
  const held = await w.next();
  assert.equal(held.route, "approval");
  assert.equal(held.approvalId, held.messageId);
  assert.ok(held.deadline instanceof Date);
  const approverNC = await connectAs(gw.creds("approver"));
  const { credential, key } = await readCreds(gw.creds("approver"));
  const ap = new Approver(approverNC, tenantJetStream(approverNC), { credential, key, bind: true, trustedGateways: [gw.gatewayKey] });
  const req = await ap.find(held.approvalId!, { signal: AbortSignal.timeout(30_000) });
  assert.ok(req, `no held request ${held.approvalId}; gateway log:\n${gw.log()}`);
  await ap.grant(req, "sendAndWait test");
  const released = await w.next();
  assert.equal(released.route, "allow");
  assert.equal(released.target, "payments.send");
  assert.equal(released.messageId, held.messageId);
  // No responder answers payments.send: only the signal ends the wait.
  ctl.abort();
  const err = await rejectsWith(w.waiting, NoReplyError);
  assert.equal(err.receipt?.messageId, held.messageId);
  assert.equal(w.seen.length, 2);
  await take("payments.send", 1, (d) => d.messageId === held.messageId);
});

test("sendAndWait: forged denials of the request neither end the wait nor reach onDecision", async () => {
  const subject = `agentgw.reply.${TENANT}.${agent.publicKey}`;
  // A genuine denial of another message of the agent's, to relabel.
  const raw = agentNC.subscribe(subject);
  const other = await rejectsWith(
    agent.sendAndDecide({ capability: "read", target: "nope.nothing", plain: { q: "other" } }, { trustedGateways: [gw.gatewayKey], signal: AbortSignal.timeout(30_000) }),
    MessageDeniedError,
  );
  let genuine: Uint8Array | undefined;
  for await (const m of raw) {
    if (isNotice(m) && m.headers?.get("Agentgw-Message-Id") === other.messageId) {
      genuine = m.data;
      break;
    }
  }
  raw.unsubscribe();
  assert.ok(genuine);

  const messageId = newMessageId();
  const deny = bytes(JSON.stringify({ message_id: messageId, route: "deny", reason: "policy_denied" }));
  const w = newWorld(); // a gateway key nobody trusts
  const now = Math.floor(Date.now() / 1000);
  const untrusted = signBatch(w.gwSign, [
    wireClaims(w.gwKey, {
      jti: "FORGED" + messageId.slice(0, 8).toUpperCase(), sub: agent.publicKey, aud: agent.publicKey, iat: now, exp: now + 300,
      tenant: TENANT, scope: "notice", traceId: newTraceId(), messageId, bodyDigest: "00".repeat(32), payloadDigest: digestHex(deny), route: "notice",
    }),
  ])[0]!;
  const forgeries = [
    formatNoticeDoc(untrusted, deny),
    // The genuine denial of the other message, labelled as this one's.
    genuine,
    // The same, its notice edited to name this message: the token binds other bytes.
    bytes(dec.decode(genuine).replace(`"message_id":"${other.messageId}"`, `"message_id":"${messageId}"`)),
  ];
  // Someone who may write to the agent's reply subject (here: the
  // gateway's own NATS user) publishes them while the agent waits, before
  // the gateway can have decided the message.
  const forger = await connectAs(gw.key("nats-gateway"));
  const spy = await Agent.fromCreds(agentNC, gw.creds("agent"), gw.curve("agent"), { gatewayXKey: gw.gatewayXKey });
  setHooks(spy, {
    newId: () => messageId,
    publish: async (s, data, o, real) => {
      const h = headers();
      h.set("Agentgw-Notice", "decision");
      h.set("Agentgw-Message-Id", messageId);
      for (const f of forgeries) {
        forger.publish(subject, f, { headers: h });
      }
      await forger.flush();
      return real!(s, data, o);
    },
  });
  const ctl = new AbortController();
  const waiting = waitInBackground(spy, { capability: "read", target: "kb.search", plain: { q: "not denied" } }, AbortSignal.any([ctl.signal, AbortSignal.timeout(30_000)]));
  // The gateway's notice comes after the forgeries: the first decision handed over is it.
  const d = await waiting.next();
  assert.equal(d.route, "allow", "the gateway's notice, not a forged denial");
  assert.equal(d.messageId, messageId);
  ctl.abort();
  await rejectsWith(waiting.waiting, NoReplyError);
  assert.equal(waiting.seen.length, 1);
  await take("kb.search", 1, (d) => d.messageId === messageId);
});

test("sendAndWait: the denial of a copy of the request neither ends the wait nor reaches onDecision", async () => {
  const subject = `agentgw.reply.${TENANT}.${agent.publicKey}`;
  const raw = agentNC.subscribe(subject);
  let sent: { subject: string; data: Uint8Array; headers: MsgHdrs } | undefined;
  const spy = await Agent.fromCreds(agentNC, gw.creds("agent"), gw.curve("agent"), { gatewayXKey: gw.gatewayXKey });
  setHooks(spy, {
    publish: (s, data, o, real) => {
      sent = { subject: s, data, headers: o.headers };
      return real!(s, data, o);
    },
  });
  const ctl = new AbortController();
  const w = waitInBackground(spy, { capability: "read", target: "kb.search", plain: { q: "copied" } }, AbortSignal.any([ctl.signal, AbortSignal.timeout(30_000)]));
  const d = await w.next();
  assert.equal(d.route, "allow");
  assert.ok(sent);
  // Whoever holds the request's bytes re-publishes them, past the
  // stream's dedup: the gateway denies the copy replay_detected, in a
  // genuine notice that carries the request's message id.
  const h = headers();
  for (const k of sent.headers.keys()) {
    for (const v of sent.headers.values(k)) {
      h.append(k, v);
    }
  }
  h.set("Nats-Msg-Id", `copy-${d.messageId}`);
  agentNC.publish(sent.subject, sent.data, { headers: h });
  for await (const m of raw) {
    if (isNotice(m) && m.headers?.get("Agentgw-Message-Id") === d.messageId && dec.decode(m.data).includes('"replay_detected"')) {
      break;
    }
  }
  raw.unsubscribe();
  await agentNC.flush();
  ctl.abort();
  await rejectsWith(w.waiting, NoReplyError);
  assert.equal(w.seen.length, 1, "the copy's denial reached onDecision");
  await take("kb.search", 1, (x) => x.messageId === d.messageId);
});

test("sendAndWait: eight calls in flight of one agent each get their own reply, and only their own notices", async () => {
  // The consumer answers nothing until every call was told its request
  // was delivered: all of them wait at once, on the agent's one
  // subscription (test/waiter.test.ts counts it).
  const calls = 8;
  let told = 0;
  let allTold = (): void => {};
  const delivered = new Promise<void>((resolve) => (allTold = resolve));
  const seen: Decision[][] = [];
  const waits = Array.from({ length: calls }, (_, i) => {
    const mine: Decision[] = [];
    seen.push(mine);
    const onDecision = (d: Decision): void => {
      mine.push(d);
      if (d.route === "allow" && ++told === calls) {
        allTold();
      }
    };
    const req: Request = { capability: "tool_call", target: "refunds.draft_refund", sealed: { order_id: `ord_many${i}`, amount_cents: 100 + i } };
    return agent.sendAndWait(req, { trustedGateways: [gw.gatewayKey], signal: AbortSignal.timeout(90_000), onDecision });
  });
  const settled = Promise.allSettled(waits);
  await take(
    "refunds.draft_refund",
    calls,
    (d) => String((d.json() as { order_id?: string }).order_id).startsWith("ord_many"),
    async (d) => {
      await delivered;
      const { order_id } = d.json() as { order_id: string };
      await d.respond({ refund_id: `rf_${order_id}`, status: "drafted" });
    },
  );
  const got = await settled;
  got.forEach((r, i) => {
    assert.equal(r.status, "fulfilled", `call ${i}: ${r.status === "rejected" ? String(r.reason) : ""}`);
    const { receipt, reply } = (r as PromiseFulfilledResult<Awaited<(typeof waits)[number]>>).value;
    assert.deepEqual(reply.json(), { refund_id: `rf_ord_many${i}`, status: "drafted" }, `call ${i}'s reply`);
    assert.equal(reply.requestId, receipt.messageId);
    assert.deepEqual(
      seen[i]!.map((d) => [d.route, d.messageId]),
      [["allow", receipt.messageId]],
      `call ${i}: the notices handed to onDecision`,
    );
  });
});

test("denials: bad signature, replay and missing scope reach the denied stream with their reason codes", async () => {
  let sent: { data: Uint8Array; headers: MsgHdrs } | undefined;
  const spy = await Agent.fromCreds(agentNC, gw.creds("agent"), gw.curve("agent"), { gatewayXKey: gw.gatewayXKey });
  setHooks(spy, {
    publish: (s, data, o, real) => {
      sent = { data, headers: o.headers };
      return real!(s, data, o);
    },
  });
  const rcpt = await spy.send({ capability: "read", target: "kb.search", plain: { q: "hello" } });
  await take("kb.search", 1, (d) => d.messageId === rcpt.messageId);
  assert.ok(sent);

  // An attacker re-publishes what it saw, under a fresh Nats-Msg-Id.
  const republish = async (data: Uint8Array): Promise<void> => {
    const h = headers();
    for (const k of ["Agentgw-Credential", "Agentgw-Signature", "traceparent"]) {
      h.set(k, sent!.headers.get(k));
    }
    await jetstream(agentNC).publish(agent.subject, data, { headers: h, msgID: `attacker-${Date.now()}-${Math.random()}` });
  };
  await republish(sent.data);
  // The same bytes with another message id: the signature no longer covers them.
  const tamperedId = `${rcpt.messageId.slice(0, -4)}beef`;
  const tampered = dec.decode(sent.data).replace(`"message_id":"${rcpt.messageId}"`, `"message_id":"${tamperedId}"`);
  assert.equal(parseEnvelope(bytes(tampered)).messageId, tamperedId);
  await republish(bytes(tampered));

  // A credential without the refund scope, for the same key.
  const narrow = join(gw.dir, "narrow.creds");
  const issued = await gw.run([
    "creds", "issue", "--issuer", gw.key("tenant_a-issuer"), "--agent-seed", gw.creds("agent"), "--tenant", TENANT,
    "--audience", agent.audience, "--xkey", agent.xkey, "--scopes", "kb:read", "--service", "support-agent-runtime", "--out", narrow,
  ]);
  assert.equal(issued.code, 0, issued.stderr);
  const narrowAgent = await Agent.fromCreds(agentNC, narrow, gw.curve("agent"), { gatewayXKey: gw.gatewayXKey });
  const denied = await narrowAgent.send({ capability: "tool_call", target: "refunds.draft_refund", sealed: { order_id: "ord_x", amount_cents: 1 } });

  const replay = await deniedReason(rcpt.messageId);
  const bad = await deniedReason(tamperedId);
  const scope = await deniedReason(denied.messageId);
  for (const r of [replay, bad, scope]) {
    assert.ok(isReasonCode(r), `${r} is not in the reason table`);
  }
  assert.equal(replay, "replay_detected");
  assert.equal(bad, "bad_signature");
  assert.equal(scope, "missing_scope");
});

test("denials: forged deliveries are terminated by the TypeScript consumer with typed reasons", async () => {
  // Someone past the permissions wall (here: the gateway's own NATS user)
  // publishes deliveries the gateway never decided.
  const forger = await connectAs(gw.key("nats-gateway"));
  const fjs = jetstream(forger);
  const w = newWorld(); // a gateway key nobody trusts
  const { key } = await readCreds(gw.creds("agent"));
  const curve = await readCurveSeed(gw.curve("agent"));
  const real = { kp: key, pub: agent.publicKey, curve, box: new Box(curve), xkey: agent.xkey };
  const untrusted = forward({ w, a: real, target: "kb.search", plain: bytes(`{"q":"forged"}`) });
  const stripped = editDoc(untrusted, (d) => (d.decision = ""));
  for (const m of [untrusted, stripped]) {
    await fjs.publish(m.subject, m.data);
  }
  // And a genuine one after them, so the consumer can tell when it has seen all three.
  const rcpt = await agent.send({ capability: "read", target: "kb.search", plain: { q: "genuine" } });

  const rejected: string[] = [];
  const c = await consumerOf("kb.search", { onReject: (_s, e) => rejected.push(e.reason) });
  const handed: string[] = [];
  for await (const d of c.deliveries({ signal: AbortSignal.timeout(60_000) })) {
    handed.push(d.messageId);
    d.ack();
    if (d.messageId === rcpt.messageId) {
      break;
    }
  }
  assert.deepEqual(handed, [rcpt.messageId], "only the genuine delivery is handed out");
  assert.deepEqual(rejected, ["decision_token_invalid", "decision_token_missing"]);
});

test("the README's example runs against the gateway", () => {
  const example = fileURLToPath(new URL("../examples/refund.js", import.meta.url));
  const r = spawnSync(process.execPath, [example], {
    encoding: "utf8",
    timeout: 60_000,
    env: cliEnv({ AGENTGW_DIR: gw.dir, NATS_URL: gw.url, GATEWAY_KEY: gw.gatewayKey, GATEWAY_XKEY: gw.gatewayXKey }),
  });
  assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /^sent [0-9a-f]{32}, reply from U[A-Z2-7]{55}: \{"refund_id":"rf_ord_42","status":"drafted"\}\n$/);
});
