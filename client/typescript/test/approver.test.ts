// The approver against a real nats-server: listing consumes nothing,
// answers bind to the held body digest and policy version, and what an
// approver may not answer is refused. The Go SDK's approver tests.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createAccount, createCurve, createUser } from "@nats-io/nkeys";
import type { NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from "@nats-io/jetstream";
import { answerKey, Approver, type ApprovalRequest, type ApproverConfig } from "../src/approver.js";
import { InvalidRequestError, SelfApprovalError } from "../src/errors.js";
import { parseEnvelope } from "../src/envelope.js";
import { bytes, dec, rejectsWith } from "./helpers.js";
import { startNatsServer, type NatsServer } from "./servers.js";
import { CLOCK, issueCredential, TENANT } from "./world.js";

let srv: NatsServer;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
const issuer = createAccount();
const requester = createUser().getPublicKey();

before(async () => {
  srv = await startNatsServer();
  nc = await srv.connect();
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "AGENTGW_IN", subjects: ["agentgw.in.*.*"] });
});

after(async () => {
  await nc?.close();
  await srv?.stop();
});

async function approvalStream(): Promise<void> {
  try {
    await jsm.streams.delete("AGENTGW_APPROVAL");
  } catch {
    // absent
  }
  await jsm.streams.add({ name: "AGENTGW_APPROVAL", subjects: ["agentgw.approval.>"] });
}

function request(held: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    held_message_id: held,
    trace_id: "8a3c60f7d188f8fa79d48a391a778fa6",
    tenant: TENANT,
    agent: requester,
    service: "support-agent-runtime",
    capability: "tool_call",
    target: "payments.send",
    risk: "critical",
    policy_ids: ["base.high_risk_approval"],
    policy_version: "sha256:b51102883285d783156a13add3e2ac5036ab31ea946b6ac315c5d8b76c895162",
    body_digest: "sha256:076115a7df26e1d53f1533ef4d77d9b221f32486fe662b4a4deada26bd746401",
    payload_digest: "sha256:e29f7b91eb38b52aed983bb60015712e6f32cf8cf7477459f7540bd396d624ea",
    fields: { amount_cents: 990000, currency: "EUR" },
    requested_at: "2026-11-26T01:08:41Z",
    deadline: "2026-11-26T01:23:41Z",
    ...over,
  };
}

async function hold(req: Record<string, unknown>, subject = `agentgw.approval.${TENANT}.payments.send`): Promise<void> {
  await js.publish(subject, bytes(JSON.stringify(req)));
}

function approver(over: Partial<ApproverConfig> = {}): Approver {
  const kp = createUser();
  const curve = createCurve();
  const credential = issueCredential(issuer, { sub: kp.getPublicKey(), scopes: ["approve:payments.*"], xkey: curve.getPublicKey() }, CLOCK);
  return new Approver(nc, js, { credential, key: kp, clock: () => new Date(CLOCK.getTime() + 60_000), ...over });
}

test("list: the tenant's held requests, oldest first, consuming nothing", async () => {
  await approvalStream();
  await hold(request("held-message-000000001"));
  await hold(request("held-message-000000002", { deadline: "2026-11-26T01:08:50Z" })); // expired at the clock
  await hold({ not: "a request" });
  await hold(request("held-message-000000003", { tenant: "tenant_b" }), `agentgw.approval.tenant_b.payments.send`);
  await hold(request("held-message-000000004", { target: "refunds.draft_refund" })); // not its subject's target
  const ap = approver();
  for (let i = 0; i < 2; i++) {
    const list = await ap.list();
    assert.deepEqual(
      list.map((r) => [r.heldMessageId, r.state]),
      [["held-message-000000001", "pending"]],
      `listing ${i + 1}`,
    );
    assert.deepEqual(list[0]!.fields, { amount_cents: 990000, currency: "EUR" });
    assert.equal(list[0]!.deadline?.toISOString(), "2026-11-26T01:23:41.000Z");
  }
  const all = await ap.list({ all: true });
  assert.deepEqual(
    all.map((r) => [r.heldMessageId, r.state]),
    [
      ["held-message-000000001", "pending"],
      ["held-message-000000002", "expired"],
    ],
  );
  assert.equal((await ap.find("held-message-000000001"))?.seq, 1);
  assert.equal(await ap.find("held-message-000000009"), undefined);
});

test("answer: an approve envelope bound to the held digest and policy version, in the request's trace", async () => {
  await approvalStream();
  await hold(request("held-message-000000011"));
  const ap = approver();
  const [req] = await ap.list();
  const rcpt = await ap.grant(req!, "within budget");
  const m = await jsm.streams.getMessage("AGENTGW_IN", { seq: rcpt.seq });
  assert.ok(m);
  assert.equal(m.subject, `agentgw.in.${TENANT}.${ap.agent.publicKey}`);
  const e = parseEnvelope(m.data);
  assert.equal(e.capability, "approve");
  assert.equal(e.target, "held-message-000000011");
  assert.equal(e.idempotencyKey, "approve-held-message-000000011");
  assert.equal(e.traceId, "8a3c60f7d188f8fa79d48a391a778fa6");
  assert.equal(
    dec.decode(e.payload.plain),
    `{"decision":"grant","reason":"within budget","body_digest":"${req!.bodyDigest}","policy_version":"${req!.policyVersion}"}`,
  );
  const rc2 = await ap.deny(req!);
  const e2 = parseEnvelope((await jsm.streams.getMessage("AGENTGW_IN", { seq: rc2.seq }))!.data);
  assert.equal(dec.decode(e2.payload.plain), `{"decision":"deny","body_digest":"${req!.bodyDigest}","policy_version":"${req!.policyVersion}"}`);
  assert.equal(answerKey("x".repeat(130)).length, "approve-".length + 64);
});

test("answer: what an approver may not answer is refused before sending", async () => {
  await approvalStream();
  const ap = approver();
  const base = {
    heldMessageId: "held-message-000000021",
    traceId: "8a3c60f7d188f8fa79d48a391a778fa6",
    tenant: TENANT,
    agent: requester,
    bodyDigest: "sha256:aa",
    policyVersion: "v1",
  } as ApprovalRequest;
  await rejectsWith(ap.answer({ ...base, agent: ap.agent.publicKey }, "grant"), SelfApprovalError, "own request");
  await rejectsWith(ap.answer({ ...base, tenant: "tenant_b" }, "grant"), InvalidRequestError, "other tenant");
  await rejectsWith(ap.answer({ ...base, bodyDigest: "" }, "grant"), InvalidRequestError, "no digest");
  await rejectsWith(ap.answer({ ...base, policyVersion: "" }, "deny"), InvalidRequestError, "no policy version");
  await rejectsWith(ap.answer(base, "maybe" as any), InvalidRequestError, "not a decision");
  // A request with a broken trace id still gets an answer, in a fresh trace.
  const rc = await ap.grant({ ...base, traceId: "NOT-A-TRACE" });
  assert.notEqual(rc.traceId, "NOT-A-TRACE");
});

test("watch: answered requests are acknowledged; own and expired ones are skipped; strangers are terminated", async () => {
  await approvalStream();
  const ap = approver();
  await hold(request("held-message-000000031", { agent: ap.agent.publicKey }));
  await hold(request("held-message-000000032", { deadline: "2026-11-26T01:08:50Z" }));
  await hold({ not: "a request" });
  await hold(request("held-message-000000033"));
  const seen: string[] = [];
  const ctl = new AbortController();
  let calls = 0;
  await ap.watch(
    async (req) => {
      calls++;
      if (calls === 1) {
        throw new Error("not now"); // shown again
      }
      seen.push(req.heldMessageId);
      await ap.grant(req);
      ctl.abort();
    },
    { signal: ctl.signal },
  );
  assert.deepEqual(seen, ["held-message-000000033"]);
  assert.equal(calls, 2);
});

test("watch: on a durable other approvers read too, what one approver will not show is handed back, not consumed", async () => {
  await approvalStream();
  const durable = `${TENANT}-approvals`;
  // The first approver is also a requester, and its clock runs 10
  // minutes ahead: by it, one request has just expired.
  const a = approver({ durable, clock: () => new Date(CLOCK.getTime() + 10 * 60_000) });
  await hold(request("held-message-000000041", { agent: a.agent.publicKey }));
  await hold(request("held-message-000000042", { deadline: "2026-11-26T01:15:00Z" })); // past by a's clock, live by b's
  await hold(request("held-message-000000043", { deadline: "2026-11-26T00:50:00Z" })); // past by both, long ago
  const shownToA: string[] = [];
  const stopA = new AbortController();
  const watchA = a.watch(async (req) => void shownToA.push(req.heldMessageId), { signal: stopA.signal });
  await new Promise((r) => setTimeout(r, 1000));
  stopA.abort();
  await watchA;
  assert.deepEqual(shownToA, [], "the first approver showed a request it cannot answer");
  // The second, its clock right, binds the same durable.
  const b = approver({ durable, bind: true });
  const shownToB: string[] = [];
  const stopB = new AbortController();
  const giveUp = setTimeout(() => stopB.abort(), 10_000); // not shown: fail, not hang
  await b.watch(
    async (req) => {
      shownToB.push(req.heldMessageId);
      if (shownToB.length === 2) {
        stopB.abort();
      }
    },
    { signal: stopB.signal },
  );
  clearTimeout(giveUp);
  assert.deepEqual(shownToB.sort(), ["held-message-000000041", "held-message-000000042"]);
});
