// The approver against a real nats-server: listing consumes nothing,
// answers bind to the held body digest and policy version, what an
// approver may not answer is refused, and only requests a trusted gateway
// signed (decision token, route approval, over their exact bytes) are
// shown. The Go SDK's approver tests. The requests are published here,
// signed with a test gateway key as the gateway signs them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createAccount, createCurve, createServer, createUser, type KeyPair } from "@nats-io/nkeys";
import { headers } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, jetstream } from "@nats-io/jetstream";
import { answerKey, Approver, decodeRequest, type ApprovalRequest, type ApproverConfig } from "../src/approver.js";
import { ConfigError, DeniedError, InvalidRequestError, SelfApprovalError, StreamError, VerificationError } from "../src/errors.js";
import { parseEnvelope } from "../src/envelope.js";
import { signBatch, wireClaims, type ClaimsToSign } from "../src/internal/decision_sign.js";
import { bytes, dec, firstShown, rejectsWith, terminations, throwsReason } from "./helpers.js";
import { useNatsServer } from "./servers.js";
import { approvalClaims, approvalRequest, CLOCK, issueCredential, sec, TENANT, unix } from "./world.js";

const nats = useNatsServer({
  setup: async (f) => {
    await f.jsm.streams.add({ name: "AGENTGW_IN", subjects: ["agentgw.in.*.*"] });
  },
});
const issuer = createAccount();
const requester = createUser().getPublicKey();
/** The gateway the approvers trust: it signs the requests' decision tokens. */
const gw = createServer();

async function approvalStream(): Promise<void> {
  try {
    await nats.jsm.streams.delete("AGENTGW_APPROVAL");
  } catch {
    // absent
  }
  await nats.jsm.streams.add({ name: "AGENTGW_APPROVAL", subjects: ["agentgw.approval.>"] });
}

function request(held: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  return approvalRequest(held, requester, over);
}

/** How a test request is signed and published. */
interface Hold {
  /** The subject. Absent: the tenant's payments.send approval subject. */
  subject?: string;
  /** Changes the claims before signing. */
  edit?: (c: ClaimsToSign) => void;
  /** Signs instead of the trusted gateway key. */
  signer?: KeyPair;
  /** Publishes no decision token. */
  unsigned?: boolean;
  /** Publishes this request instead of the one signed (its fields changed after signing). */
  publishAs?: Record<string, unknown>;
  /** Sets Agentgw-Decided-At, as the gateway does. */
  decidedAt?: string;
}

/**
 * requestToken signs the decision token the gateway puts on req's message
 * (data, its body): route approval, for its target, bound to data and the
 * held envelope, expiring at the deadline rounded up to the second.
 */
function requestToken(req: Record<string, unknown>, data: Uint8Array, o: Hold = {}): string {
  const c = approvalClaims(req, data);
  o.edit?.(c);
  const key = o.signer ?? gw;
  return signBatch(key, [wireClaims(key.getPublicKey(), c)], false)[0]!;
}

async function hold(req: Record<string, unknown>, o: Hold = {}): Promise<void> {
  const data = bytes(JSON.stringify(req));
  const h = headers();
  if (!o.unsigned && typeof req.agent === "string") {
    h.set("Agentgw-Decision", requestToken(req, data, o));
  }
  if (o.decidedAt !== undefined) {
    h.set("Agentgw-Decided-At", o.decidedAt);
  }
  const sent = o.publishAs !== undefined ? bytes(JSON.stringify(o.publishAs)) : data;
  await nats.js.publish(o.subject ?? `agentgw.approval.${TENANT}.payments.send`, sent, { headers: h });
}

function approver(over: Partial<ApproverConfig> = {}): Approver {
  const kp = createUser();
  const curve = createCurve();
  const credential = issueCredential(issuer, { sub: kp.getPublicKey(), scopes: ["approve:payments.*"], xkey: curve.getPublicKey() }, CLOCK);
  return new Approver(nats.nc, nats.js, { credential, key: kp, trustedGateways: [gw.getPublicKey()], clock: () => new Date(CLOCK.getTime() + 60_000), ...over });
}

test("list: the tenant's held requests, oldest first, consuming nothing", async () => {
  await approvalStream();
  await hold(request("held-message-000000001"));
  await hold(request("held-message-000000002", { deadline: "2026-11-26T01:08:50Z" })); // expired at the clock
  await hold({ not: "a request" });
  await hold(request("held-message-000000003", { tenant: "tenant_b" }), { subject: `agentgw.approval.tenant_b.payments.send` });
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

test("find: requests of two agents under one held id are not taken for one another", async () => {
  // Message ids are unique per agent only: another agent may be held
  // under an id once the first agent's hold has ended.
  const other = createUser().getPublicKey();
  await hold(request("held-message-000000081"));
  await hold(request("held-message-000000081", { agent: other, body_digest: "sha256:" + "b".repeat(64) }));
  const ap = approver();
  await rejectsWith(ap.find("held-message-000000081"), InvalidRequestError, "two agents");
  assert.equal((await ap.find("held-message-000000081", { agent: requester }))?.agent, requester);
  assert.equal((await ap.find("held-message-000000081", { agent: other }))?.agent, other);
});

test("answer: an approve envelope bound to the held digest and policy version, in the request's trace", async () => {
  await approvalStream();
  await hold(request("held-message-000000011"));
  const ap = approver();
  const [req] = await ap.list();
  const rcpt = await ap.grant(req!, "within budget");
  const m = await nats.jsm.streams.getMessage("AGENTGW_IN", { seq: rcpt.seq });
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
  const e2 = parseEnvelope((await nats.jsm.streams.getMessage("AGENTGW_IN", { seq: rc2.seq }))!.data);
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
  const giveUp = setTimeout(() => ctl.abort(), 15_000); // not shown: fail, not hang
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
  clearTimeout(giveUp);
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

test("watch: on a durable, an approver whose clock runs behind hands back a request issued 'in the future', and reports it", async () => {
  await approvalStream();
  const durable = `${TENANT}-approvals`;
  const term = terminations(nats.nc);
  // requested_at (its token's iat) is CLOCK; this approver's clock runs
  // two minutes behind it, beyond the 30 s skew.
  const rejected: Error[] = [];
  const behind = approver({ durable, clock: () => new Date(CLOCK.getTime() - 2 * 60_000), onReject: (_s, e) => void rejected.push(e) });
  await hold(request("held-message-000000061"));
  // A forgery valid by either clock but for its bytes: still terminated.
  const forged = request("held-message-000000062", { requested_at: "2026-11-26T00:58:41Z" });
  await hold(forged, { publishAs: { ...forged, fields: { amount_cents: 1, currency: "EUR" } } });
  const shown: string[] = [];
  const stop = new AbortController();
  const w = behind.watch(async (req) => void shown.push(req.heldMessageId), { signal: stop.signal });
  await until(() => rejected.length >= 2, "both requests reported");
  stop.abort();
  await w;
  assert.deepEqual(shown, []);
  assert.deepEqual(
    rejected.map((e) => (e as DeniedError).reason),
    ["decision_token_invalid", "decision_token_binding"],
  );
  await until(() => term.got.size === 1, "the forgery terminated");
  assert.deepEqual([...term.got.values()], ["decision_token_binding"], "only the forgery is terminated");
  term.stop();
  // An approver whose clock is right binds the same durable and is shown it.
  assert.deepEqual(await firstShown(approver({ durable, bind: true })), ["held-message-000000061"]);
});

test("watch: on a durable, an approver a minute behind hands back a request live by any clock up to 5 minutes ahead, even one with a short ttl", async () => {
  await approvalStream();
  const durable = `${TENANT}-approvals`;
  const term = terminations(nats.nc);
  // Issued at CLOCK for 3 minutes: it verifies by a clock a minute ahead
  // of this approver's, though not by one 5 minutes ahead.
  await hold(request("held-message-000000063", { requested_at: "2026-11-26T01:08:41Z", deadline: "2026-11-26T01:11:41Z" }));
  const rejected: Error[] = [];
  const behind = approver({ durable, clock: () => new Date(CLOCK.getTime() - 60_000), onReject: (_s, e) => void rejected.push(e) });
  const stop = new AbortController();
  const w = behind.watch(async () => assert.fail("shown to the approver whose clock is behind"), { signal: stop.signal });
  await until(() => rejected.length >= 1, "the request handed back and reported");
  stop.abort();
  await w;
  assert.equal(term.got.size, 0, "nothing terminated");
  term.stop();
  assert.deepEqual(await firstShown(approver({ durable, bind: true, clock: () => CLOCK })), ["held-message-000000063"]);
});

test("watch: on a durable, a request rebuilt after its hold ended is checked as of when it was decided, and consumed", async () => {
  await approvalStream();
  const durable = `${TENANT}-approvals`;
  const deadline = "2026-11-26T00:38:41Z"; // 30 minutes before CLOCK
  const rebuilt = sec(deadline, 0) + 300;
  await hold(request("held-message-000000064", { requested_at: "2026-11-26T00:28:41Z", deadline }), {
    edit: (c) => {
      c.iat = rebuilt;
      c.exp = rebuilt + 1;
    },
    decidedAt: new Date(rebuilt * 1000).toISOString(),
  });
  const rejected: Error[] = [];
  const ap = approver({ durable, clock: () => CLOCK, onReject: (_s, e) => void rejected.push(e) });
  const stop = new AbortController();
  const w = ap.watch(async () => assert.fail("an expired request shown"), { signal: stop.signal });
  let info = await nats.jsm.consumers.info("AGENTGW_APPROVAL", durable).catch(() => undefined);
  for (let i = 0; i < 100 && (info === undefined || info.ack_floor.stream_seq < 1); i++) {
    await new Promise((r) => setTimeout(r, 50));
    info = await nats.jsm.consumers.info("AGENTGW_APPROVAL", durable).catch(() => undefined);
  }
  stop.abort();
  await w;
  assert.equal(info?.ack_floor.stream_seq, 1, "the rebuilt request consumed");
  assert.deepEqual(rejected, [], "not handed back nor terminated");
});

test("watch: rejects with a StreamError once its connection is closed", async (t) => {
  await approvalStream();
  const own = await nats.srv.connect();
  t.after(() => own.close());
  const durable = `${TENANT}-closing`;
  const kp = createUser();
  const credential = issueCredential(issuer, { sub: kp.getPublicKey(), scopes: ["approve:payments.*"], xkey: createCurve().getPublicKey() }, CLOCK);
  const ap = new Approver(own, jetstream(own), { credential, key: kp, trustedGateways: [gw.getPublicKey()], durable, clock: () => CLOCK });
  const stop = new AbortController();
  t.after(() => stop.abort()); // on a failure: no watch left running
  const watching = ap.watch(() => {}, { signal: stop.signal });
  watching.catch(() => {}); // asserted below
  for (let i = 0; (await nats.jsm.consumers.info("AGENTGW_APPROVAL", durable).catch(() => null)) === null; i++) {
    assert.ok(i < 300, "the durable was not created");
    await new Promise((r) => setTimeout(r, 50));
  }
  await own.close();
  await rejectsWith(watching, StreamError, "watch after its connection closed");
});

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 100 && !cond(); i++) {
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.ok(cond(), what);
}

/** sharedQueue makes the approval stream afresh with the tenant's shared durable, max_ack_pending n, and returns its name. */
async function sharedQueue(n: number): Promise<string> {
  await approvalStream();
  const durable = `${TENANT}-approvals`;
  await nats.jsm.consumers.add("AGENTGW_APPROVAL", {
    durable_name: durable,
    filter_subject: `agentgw.approval.${TENANT}.>`,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
    max_ack_pending: n,
  });
  return durable;
}

/**
 * What someone able to publish on the approval queue, without the
 * gateway's key, could put there: each is left out by list and find, and
 * terminated by watch with its reason and reported to onReject.
 */
const FORGED: [held: string, what: string, how: Hold, want: string][] = [
  ["held-message-000000051", "no token", { unsigned: true }, "decision_token_missing"],
  ["held-message-000000052", "a token signed by an untrusted key", { signer: createServer() }, "decision_token_invalid"],
  [
    "held-message-000000053",
    "the fields changed after signing (payload digest of other bytes)",
    { publishAs: request("held-message-000000053", { fields: { amount_cents: 100, currency: "EUR" } }) },
    "decision_token_binding",
  ],
  ["held-message-000000054", "a token with route notice", { edit: (c) => (c.route = "notice") }, "decision_token_invalid"],
  ["held-message-000000055", "a token with route allow", { edit: (c) => (c.route = "allow") }, "decision_token_invalid"],
  ["held-message-000000056", "a token for another audience", { edit: (c) => (c.aud = "payments.refund") }, "decision_token_audience"],
  ["held-message-000000057", "a token naming another held message", { edit: (c) => (c.messageId = "held-message-000000060") }, "decision_token_binding"],
];

test("list and find: only requests whose decision token verifies are shown", async () => {
  await approvalStream();
  for (const [held, , how] of FORGED) {
    await hold(request(held), how);
  }
  await hold(request("held-message-000000060"));
  const ap = approver();
  for (const all of [false, true]) {
    const list = await ap.list({ all });
    assert.deepEqual(
      list.map((r) => r.heldMessageId),
      ["held-message-000000060"],
      `list all=${all}: ${FORGED.filter(([h]) => list.some((r) => r.heldMessageId === h))
        .map(([, what]) => what)
        .join(", ")} shown`,
    );
    assert.equal(list[0]!.seq, FORGED.length + 1);
  }
  for (const [held, what] of FORGED) {
    assert.equal(await ap.find(held), undefined, what);
  }
  assert.equal((await ap.find("held-message-000000060"))?.seq, FORGED.length + 1);
  // Listing consumed nothing: a second approver sees the same.
  assert.deepEqual(
    (await approver().list()).map((r) => r.heldMessageId),
    ["held-message-000000060"],
  );
});

test("watch: a request whose token does not verify is terminated with its reason and reported to onReject, never shown", async () => {
  await approvalStream();
  await hold({ not: "a request" });
  for (const [held, , how] of FORGED) {
    await hold(request(held), how);
  }
  await hold(request("held-message-000000060"));
  const rejected: [string, Error][] = [];
  const ap = approver({ onReject: (subject, err) => void rejected.push([subject, err]) });
  const term = terminations(nats.nc);
  try {
    assert.deepEqual(await firstShown(ap), ["held-message-000000060"]);
    // One at a time, oldest first: every message before the shown one was rejected.
    assert.equal(rejected.length, FORGED.length + 1, rejected.map(([, e]) => e.message).join("\n"));
    for (const [subject] of rejected) {
      assert.equal(subject, `agentgw.approval.${TENANT}.payments.send`);
    }
    assert.ok(rejected[0]![1] instanceof InvalidRequestError, String(rejected[0]![1]));
    FORGED.forEach(([, what, , want], i) => {
      const err = rejected[i + 1]![1];
      assert.ok(err instanceof VerificationError, `${what}: ${String(err)}`);
      assert.equal(err.reason, want, `${what}: ${err.message}`);
    });
    // Terminated, with the reason code as the term reason.
    await until(() => term.got.size === FORGED.length + 1, `terminated: ${JSON.stringify([...term.got])}`);
    assert.equal(term.got.get(1), "approval request does not match its subject");
    FORGED.forEach(([, what, , want], i) => assert.equal(term.got.get(i + 2), want, what));
    assert.equal(term.got.has(FORGED.length + 2), false, "the shown request was terminated");
  } finally {
    term.stop();
  }
});

test("list all: an expired request is checked as of its deadline with the usual skew, so a token issued after it does not pass", async () => {
  await approvalStream();
  // The approver's clock is CLOCK + 60 s, 51 s past this deadline.
  const deadline = "2026-11-26T01:08:50Z";
  await hold(request("held-message-000000081", { deadline }));
  const issued = sec(deadline, 0) + 111; // 60 s after the approver's clock, 111 s after the deadline
  await hold(request("held-message-000000082", { deadline }), {
    edit: (c) => {
      c.iat = issued;
      c.exp = issued + 1;
    },
  });
  assert.deepEqual(
    (await approver().list({ all: true })).map((r) => [r.heldMessageId, r.state]),
    [["held-message-000000081", "expired"]],
  );
});

test("watch: own and expired requests are checked too: unsigned ones are terminated and reported; signed ones are not shown, nor terminated", async () => {
  await approvalStream();
  const rejected: Error[] = [];
  const ap = approver({ onReject: (_s, err) => void rejected.push(err) });
  await hold(request("held-message-000000071", { agent: ap.agent.publicKey }), { unsigned: true });
  await hold(request("held-message-000000072", { deadline: "2026-11-26T01:08:50Z" }), { unsigned: true });
  await hold(request("held-message-000000073", { deadline: "2026-11-26T01:08:50Z" })); // expired, signed
  await hold(request("held-message-000000075", { agent: ap.agent.publicKey })); // own, signed
  await hold(request("held-message-000000074"));
  // Listed with all: the expired request whose token verifies (as of its
  // deadline: the token expired with it), not the unsigned ones.
  assert.deepEqual(
    (await ap.list({ all: true })).map((r) => [r.heldMessageId, r.state]),
    [
      ["held-message-000000073", "expired"],
      ["held-message-000000075", "pending"],
      ["held-message-000000074", "pending"],
    ],
  );
  const term = terminations(nats.nc);
  try {
    assert.deepEqual(await firstShown(ap), ["held-message-000000074"]);
    assert.deepEqual(
      rejected.map((e) => (e as DeniedError).reason),
      ["decision_token_missing", "decision_token_missing"],
      "the unsigned own and expired requests reported",
    );
    await until(() => term.got.size === 2, `terminated: ${JSON.stringify([...term.got])}`);
    assert.deepEqual(
      [...term.got].sort(),
      [
        [1, "decision_token_missing"],
        [2, "decision_token_missing"],
      ],
      "only the unsigned requests are terminated",
    );
  } finally {
    term.stop();
  }
});

test("watch and list on a durable: forged own or expired requests are terminated, so they cannot fill max_ack_pending and hide a real one", async () => {
  const n = 100; // the durable's max_ack_pending
  for (const [what, forged] of [
    ["own", (ap: Approver, i: number) => request(`forged-own-${String(i).padStart(10, "0")}`, { agent: ap.agent.publicKey })],
    ["expired", (_ap: Approver, i: number) => request(`forged-exp-${String(i).padStart(10, "0")}`, { deadline: "2026-11-26T01:08:50Z" })],
  ] as const) {
    const durable = await sharedQueue(n);
    const rejected: string[] = [];
    const ap = approver({ durable, bind: true, onReject: (_s, err) => void rejected.push((err as DeniedError).reason) });
    for (let i = 0; i < n; i++) {
      // No gateway key: no valid token.
      const h = headers();
      h.set("Agentgw-Decision", "not-a-token");
      await nats.js.publish(`agentgw.approval.${TENANT}.payments.send`, bytes(JSON.stringify(forged(ap, i))), { headers: h });
    }
    await hold(request("real-held-message-0001"));
    const shown = await firstShown(ap);
    assert.deepEqual(shown, ["real-held-message-0001"], `${what}: ${n} forged requests hold every max_ack_pending slot (onReject calls: ${rejected.length})`);
    assert.equal(rejected.length, n, `${what}: forgeries reported`);
    assert.ok(
      rejected.every((r) => r === "decision_token_invalid"),
      `${what}: ${[...new Set(rejected)].join(", ")}`,
    );
    await nats.nc.flush(); // the last settlements reach the server
    let info = await nats.jsm.consumers.info("AGENTGW_APPROVAL", durable);
    for (let i = 0; i < 40 && info.num_ack_pending > 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
      info = await nats.jsm.consumers.info("AGENTGW_APPROVAL", durable);
    }
    assert.equal(info.num_ack_pending, 0, `${what}: messages still pending`);
    assert.equal(info.num_redelivered, 0, `${what}: messages handed back`);
  }
  // list and find, on the same bound queue: forgeries terminated there
  // too, the real request found.
  const durable = await sharedQueue(n);
  const lister = approver({ durable, bind: true });
  for (let i = 0; i < n; i++) {
    await hold(request(`forged-list-${String(i).padStart(10, "0")}`, i % 2 === 0 ? { agent: lister.agent.publicKey } : { deadline: "2026-11-26T01:08:50Z" }), {
      unsigned: true,
    });
  }
  await hold(request("real-held-message-0002"));
  const term = terminations(nats.nc);
  try {
    assert.deepEqual(
      (await lister.list({ all: true })).map((r) => r.heldMessageId),
      ["real-held-message-0002"],
      "listed behind forgeries that would fill max_ack_pending if handed back",
    );
    await until(() => term.got.size === n, `terminated: ${term.got.size} of ${n}`);
    assert.ok([...term.got.values()].every((r) => r === "decision_token_missing"), JSON.stringify([...new Set(term.got.values())]));
  } finally {
    term.stop();
  }
  assert.equal((await lister.find("real-held-message-0002"))?.seq, n + 1, "the real request found");
  // Bodies that are no request of this tenant at all need no token: list
  // terminates them as watch does, so they cannot fill the slots either.
  const durable2 = await sharedQueue(n);
  const lister2 = approver({ durable: durable2, bind: true });
  for (let i = 0; i < n; i++) {
    await nats.js.publish(`agentgw.approval.${TENANT}.payments.send`, bytes(`{"garbage":${i}}`));
  }
  await hold(request("real-held-message-0003"));
  const term2 = terminations(nats.nc);
  try {
    assert.deepEqual(
      (await lister2.list({ all: true })).map((r) => r.heldMessageId),
      ["real-held-message-0003"],
      "listed behind undecodable bodies that would fill max_ack_pending if handed back",
    );
    await until(() => term2.got.size === n, `terminated: ${term2.got.size} of ${n}`);
  } finally {
    term2.stop();
  }
  assert.equal((await lister2.find("real-held-message-0003"))?.seq, n + 1, "the real request found behind undecodable bodies");
});

test("verifyRequest (the method): the approver's trusted gateways, clock and skew; 30 s when absent or 0", async () => {
  const req = request("held-message-000000081");
  const data = bytes(JSON.stringify(req));
  const r = decodeRequest(`agentgw.approval.${TENANT}.payments.send`, data, TENANT);
  // The approver's clock is CLOCK + 60 s; a token issued 45 s after it.
  const ahead = requestToken(req, data, { edit: (c) => (c.iat = unix(CLOCK) + 105) });
  const good = requestToken(req, data);
  assert.equal(approver().verifyRequest(good, data, r).messageId, "held-message-000000081");
  throwsReason(() => approver().verifyRequest(ahead, data, r), "decision_token_invalid", "default skew");
  throwsReason(() => approver({ skewMs: 0 }).verifyRequest(ahead, data, r), "decision_token_invalid", "skew 0");
  throwsReason(() => approver({ skewMs: 40_000 }).verifyRequest(ahead, data, r), "decision_token_invalid", "skew 40 s");
  assert.equal(approver({ skewMs: 45_000 }).verifyRequest(ahead, data, r).route, "approval");
  throwsReason(() => approver({ trustedGateways: [createServer().getPublicKey()] }).verifyRequest(good, data, r), "decision_token_invalid", "other gateway");
  throwsReason(() => approver().verifyRequest(undefined, data, r), "decision_token_missing", "no token");
  // The clock past the deadline (01:23:41) by more than the skew.
  const late = approver({ clock: () => new Date("2026-11-26T01:24:12Z") });
  throwsReason(() => late.verifyRequest(good, data, r), "decision_token_expired", "past the deadline");
  assert.equal(approver({ clock: () => new Date("2026-11-26T01:24:11Z") }).verifyRequest(good, data, r).route, "approval");
});

test("ApproverConfig: trusted gateways are required, each a server ('N') key; the skew is not negative", () => {
  const kp = createUser();
  const credential = issueCredential(issuer, { sub: kp.getPublicKey(), scopes: ["approve:payments.*"], xkey: createCurve().getPublicKey() }, CLOCK);
  const base = { credential, key: kp, trustedGateways: [gw.getPublicKey()] } as ApproverConfig;
  const refused = (cfg: ApproverConfig, want: RegExp, what: string): void => {
    assert.throws(() => new Approver(nats.nc, nats.js, cfg), (err: unknown) => err instanceof ConfigError && want.test(err.message), what);
  };
  refused({ ...base, trustedGateways: undefined as unknown as string[] }, /no trusted gateway keys/, "absent");
  refused({ ...base, trustedGateways: [] }, /no trusted gateway keys/, "empty");
  refused({ ...base, trustedGateways: [kp.getPublicKey()] }, /trusted gateway "U[A-Z2-7]+" is not a public server \('N'\) key/, "a user key");
  refused({ ...base, trustedGateways: [gw.getPublicKey(), "NOTAKEY"] }, /trusted gateway "NOTAKEY" is not a public server/, "not a key");
  const gwKey = gw.getPublicKey();
  const badSum = gwKey.slice(0, -1) + (gwKey.endsWith("A") ? "B" : "A"); // the last character is all checksum
  refused({ ...base, trustedGateways: [badSum] }, /is not a public server/, "bad checksum");
  refused({ ...base, skewMs: -1 }, /skew -1 is negative/, "negative skew");
  refused({ ...base, skewMs: NaN }, /skew NaN is negative or not a number/, "skew not a number");
  refused({ ...base, trustedGateways: [], skewMs: -1, ackWaitMs: -1 }, /ack wait -1 is negative; no trusted gateway keys for approval requests; skew -1 is negative/, "every problem at once");
  for (const skewMs of [undefined, 0, 1000]) {
    assert.ok(new Approver(nats.nc, nats.js, { ...base, ...(skewMs !== undefined ? { skewMs } : {}) }) instanceof Approver, `skew ${skewMs}`);
  }
  // The keys are copied: changing the caller's array later trusts nothing new.
  const keys = [gw.getPublicKey()];
  const ap = new Approver(nats.nc, nats.js, { ...base, trustedGateways: keys });
  const other = createServer();
  keys.push(other.getPublicKey());
  const req = request("held-message-000000091");
  const data = bytes(JSON.stringify(req));
  const r = decodeRequest(`agentgw.approval.${TENANT}.payments.send`, data, TENANT);
  const e = throwsReason(() => ap.verifyRequest(requestToken(req, data, { signer: other }), data, r), "decision_token_invalid", "a key added later");
  assert.ok(e instanceof DeniedError);
});
