// Decision notices: strict parsing, verification in the Go SDK's order,
// and the agent's watch, sendAndDecide, decisions() and replies() against
// a real nats-server, with notices signed by a test gateway key (the
// end-to-end tests use the real gateway).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createAccount, createCurve, createServer, createUser, type KeyPair } from "@nats-io/nkeys";
import { headers } from "@nats-io/transport-node";
import { Agent } from "../src/agent.js";
import { parseEnvelope } from "../src/envelope.js";
import { ConfigError, DeniedError, MessageDeniedError, NoDecisionError, NoReplyError, VerificationError } from "../src/errors.js";
import { digestHex } from "../src/internal/bytes.js";
import { signBatch, wireClaims, type ClaimsToSign } from "../src/internal/decision_sign.js";
import { Box } from "../src/keys.js";
import { formatNoticeDoc, parseNotice, parseNoticeDoc, verifyNotice, MAX_NOTICE_DOC_SIZE, type Decision } from "../src/notice.js";
import { bytes, rejectsWith, throwsReason } from "./helpers.js";
import { useNatsServer } from "./servers.js";
import { issueCredential, TENANT, unix } from "./world.js";

const gw = createServer();
const untrusted = createServer();
const gwCurve = new Box(createCurve());
const issuer = createAccount();
const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const BODY = "ab".repeat(32);

interface Made {
  data: Uint8Array;
  headers: Map<string, string>;
}

/** notice makes a notice message to agent about messageId, signed as the gateway does. */
function notice(
  agent: string,
  messageId: string,
  body: string | object,
  over: { signer?: KeyPair; edit?: (c: ClaimsToSign) => void; data?: (d: Uint8Array) => Uint8Array; now?: Date } = {},
): Made {
  const data = bytes(typeof body === "string" ? body : JSON.stringify(body));
  const now = over.now ?? new Date();
  const c: ClaimsToSign = {
    jti: `N${digestHex(data).slice(0, 24).toUpperCase()}`,
    sub: agent,
    aud: agent,
    iat: unix(now),
    exp: unix(now) + 300,
    tenant: TENANT,
    scope: "notice",
    traceId: TRACE,
    messageId,
    bodyDigest: BODY,
    payloadDigest: digestHex(data),
    route: "notice",
  };
  over.edit?.(c);
  const signer = over.signer ?? gw;
  const token = signBatch(signer, [wireClaims(signer.getPublicKey(), c)], false)[0]!;
  return {
    data: formatNoticeDoc(token, over.data ? over.data(data) : data),
    headers: new Map([
      ["Agentgw-Notice", "decision"],
      ["Agentgw-Message-Id", messageId],
    ]),
  };
}

const ID = "5d1e0c3a9b7f4e21a6c8d2f0b4e6a801";
const OTHER_ID = "5d1e0c3a9b7f4e21a6c8d2f0b4e6a802";
const allow = { message_id: ID, route: "allow", target: "refunds.draft_refund" };

test("parseNotice: the three routes and an approval answer decode", () => {
  assert.deepEqual(parseNotice(bytes(JSON.stringify(allow))), { messageId: ID, route: "allow", target: "refunds.draft_refund" });
  const held = parseNotice(bytes(`{"message_id":"${ID}","route":"approval","approval_id":"${ID}","deadline":"2026-11-26T01:23:41Z"}`));
  assert.equal(held.approvalId, ID);
  assert.equal(held.deadline?.toISOString(), "2026-11-26T01:23:41.000Z");
  assert.equal(held.deadlineUnixNano, "1795656221000000000");
  // The gateway writes the deadline to the nanosecond: kept, as in Go.
  const ns = parseNotice(bytes(`{"message_id":"${ID}","route":"approval","approval_id":"${ID}","deadline":"2026-11-26T01:23:41.123456789Z"}`));
  assert.equal(ns.deadline?.toISOString(), "2026-11-26T01:23:41.123Z");
  assert.equal(ns.deadlineUnixNano, "1795656221123456789");
  const early = parseNotice(bytes(`{"message_id":"${ID}","route":"approval","approval_id":"${ID}","deadline":"1969-12-31T23:59:59.9995Z"}`));
  assert.equal(early.deadline?.getTime(), -1);
  assert.equal(early.deadlineUnixNano, "-500000");
  assert.equal(parseNotice(bytes(`{"message_id":"${ID}","route":"deny","reason":"missing_scope"}`)).reason, "missing_scope");
  const answered = parseNotice(bytes(`{"message_id":"${ID}","route":"deny","reason":"approval_denied","answers":"${OTHER_ID}","answer":"deny"}`));
  assert.equal(answered.answers, OTHER_ID);
  assert.equal(answered.answer, "deny");
  // Members the gateway leaves out may be null or empty, as Go's decoder reads them.
  assert.equal(parseNotice(bytes(`{"message_id":"${ID}","route":"deny","reason":"revoked","target":null,"answers":""}`)).target, undefined);
});

test("parseNotice: anything but one strict notice object is refused internal_error", () => {
  const cases: [string, string][] = [
    ["unknown member", `{"message_id":"${ID}","route":"allow","target":"t","policy":"p1"}`],
    ["duplicate member", `{"message_id":"${ID}","route":"allow","target":"t","target":"u"}`],
    ["case-variant duplicate", `{"message_id":"${ID}","route":"allow","target":"t","Target":"u"}`],
    ["trailing data", `{"message_id":"${ID}","route":"allow","target":"t"} {}`],
    ["array", `[{"message_id":"${ID}","route":"allow","target":"t"}]`],
    ["not JSON", `message ${ID} allowed`],
    ["number for a string", `{"message_id":"${ID}","route":"allow","target":7}`],
    ["no message_id", `{"route":"allow","target":"t"}`],
    ["allow without target", `{"message_id":"${ID}","route":"allow"}`],
    ["approval without deadline", `{"message_id":"${ID}","route":"approval","approval_id":"${ID}"}`],
    ["approval without approval_id", `{"message_id":"${ID}","route":"approval","deadline":"2026-11-26T01:23:41Z"}`],
    ["deadline not RFC 3339", `{"message_id":"${ID}","route":"approval","approval_id":"${ID}","deadline":"2026-11-26 01:23:41"}`],
    ["deny without reason", `{"message_id":"${ID}","route":"deny"}`],
    ["another route", `{"message_id":"${ID}","route":"reply","target":"t"}`],
    ["answers without answer", `{"message_id":"${ID}","route":"allow","target":"t","answers":"${OTHER_ID}"}`],
    ["answer neither grant nor deny", `{"message_id":"${ID}","route":"allow","target":"t","answers":"${OTHER_ID}","answer":"maybe"}`],
    ["oversized", `{"message_id":"${ID}","route":"allow","target":"${"t".repeat(4096)}"}`],
  ];
  for (const [name, s] of cases) {
    throwsReason(() => parseNotice(bytes(s)), "internal_error", name);
  }
  const badUTF8 = Uint8Array.from([...bytes(`{"message_id":"${ID}","route":"allow","target":"`), 0xff, ...bytes(`"}`)]);
  throwsReason(() => parseNotice(badUTF8), "internal_error", "invalid UTF-8");
});

test("parseNoticeDoc: reads the token and the notice's exact bytes, strictly", () => {
  const n = `{"message_id":"${ID}","route":"deny","reason":"x"}`;
  const doc = parseNoticeDoc(bytes(`{"v":1,"decision":"a.b.c.d","notice":${n}}`));
  assert.equal(doc.decision, "a.b.c.d");
  assert.equal(new TextDecoder().decode(doc.notice), n);
  const spaced = parseNoticeDoc(bytes(` { "notice" : {"route":"deny", "message_id":"m","reason":"x"} , "decision":"t", "v":1 } `));
  assert.equal(new TextDecoder().decode(spaced.notice), `{"route":"deny", "message_id":"m","reason":"x"}`);
  const bad: [string, string][] = [
    ["bare notice", n],
    ["unknown member", `{"v":1,"decision":"t","notice":${n},"extra":1}`],
    ["member in case", `{"v":1,"Decision":"t","notice":${n}}`],
    ["duplicate member", `{"v":1,"decision":"t","decision":"u","notice":${n}}`],
    ["version 2", `{"v":2,"decision":"t","notice":${n}}`],
    ["version string", `{"v":"1","decision":"t","notice":${n}}`],
    ["version 1.0", `{"v":1.0,"decision":"t","notice":${n}}`],
    ["no version", `{"decision":"t","notice":${n}}`],
    ["empty token", `{"v":1,"decision":"","notice":${n}}`],
    ["null token", `{"v":1,"decision":null,"notice":${n}}`],
    ["token not string", `{"v":1,"decision":1,"notice":${n}}`],
    ["no notice", `{"v":1,"decision":"t"}`],
    ["notice not object", `{"v":1,"decision":"t","notice":"x"}`],
    ["trailing data", `{"v":1,"decision":"t","notice":${n}} {}`],
    ["truncated", `{"v":1,"decision":"t","notice":${n}`],
    ["not an object", `[]`],
    ["empty", ``],
    ["oversized", `{"v":1,"decision":"${"a".repeat(MAX_NOTICE_DOC_SIZE)}","notice":${n}}`],
  ];
  for (const [name, s] of bad) {
    assert.throws(
      () => parseNoticeDoc(bytes(s)),
      (e: unknown) => e instanceof Error && !e.message.includes("reason"),
      name,
    );
  }
});

test("verifyNotice: a notice from a trusted gateway for this agent verifies; each failure has its reason, in the Go SDK's order", () => {
  const a = createUser().getPublicKey();
  const other = createUser().getPublicKey();
  const me = { publicKey: a, tenant: TENANT, now: () => new Date() };
  const opt = { trustedGateways: [gw.getPublicKey()] };
  const good = notice(a, ID, allow);
  const d = verifyNotice(me, good, opt);
  assert.equal(d.route, "allow");
  assert.equal(d.target, "refunds.draft_refund");
  assert.equal(d.claims.issuer, gw.getPublicKey());
  assert.equal(d.claims.traceId, TRACE);

  const cases: [string, Made, string][] = [
    ["no document: the notice alone", { ...good, data: parseNoticeDoc(good.data).notice }, "decision_token_missing"],
    ["document with an unknown member", { ...good, data: bytes(new TextDecoder().decode(good.data).replace('{"v":1,', '{"v":1,"note":"x",')) }, "decision_token_missing"],
    ["untrusted gateway", notice(a, ID, allow, { signer: untrusted }), "decision_token_invalid"],
    // The token is checked first: a bad token with bad data is a bad token.
    ["untrusted gateway, malformed data", notice(a, ID, "{}", { signer: untrusted }), "decision_token_invalid"],
    ["expired", notice(a, ID, allow, { now: new Date(Date.now() - 3_600_000) }), "decision_token_expired"],
    ["another agent's notice", notice(other, ID, allow), "decision_token_audience"],
    ["route reply", notice(a, ID, allow, { edit: (c) => (c.route = "reply") }), "decision_token_binding"],
    ["route reply, malformed data", notice(a, ID, "{}", { edit: (c) => (c.route = "reply") }), "decision_token_binding"],
    ["route allow", notice(a, ID, allow, { edit: (c) => (c.route = "allow") }), "decision_token_binding"],
    ["route approval", notice(a, ID, allow, { edit: (c) => (c.route = "approval") }), "decision_token_binding"],
    ["addressed to this agent about another's", notice(a, ID, allow, { edit: (c) => (c.sub = other) }), "decision_token_binding"],
    ["another tenant's notice to this key", notice(a, ID, allow, { edit: (c) => (c.tenant = "tenant_b") }), "decision_token_binding"],
    ["data edited", notice(a, ID, allow, { data: () => bytes(JSON.stringify({ ...allow, target: "payments.send" })) }), "decision_token_binding"],
    ["malformed data, bound", notice(a, ID, { ...allow, detail: "policy p1 forbids" }), "internal_error"],
    ["data about another envelope than the token", notice(a, ID, { ...allow, message_id: OTHER_ID }), "decision_token_binding"],
  ];
  for (const [name, m, want] of cases) {
    throwsReason(() => verifyNotice(me, m, opt), want as never, name);
  }
  throwsReason(() => verifyNotice(me, good, { trustedGateways: [] }), "decision_token_invalid", "nothing trusted");
  // From untyped JavaScript, a receiver without a tenant: a configuration
  // error, not every notice refused.
  const noTenant = { publicKey: a, now: () => new Date() } as unknown as Parameters<typeof verifyNotice>[0];
  assert.throws(() => verifyNotice(noTenant, good, opt), (e: Error) => e instanceof ConfigError);
});

const nats = useNatsServer({
  setup: async (f) => {
    await f.jsm.streams.add({ name: "AGENTGW_IN", subjects: ["agentgw.in.*.*"] });
  },
});

/** newAgent is an agent of the test issuer; plain-only unless curve. */
function newAgent(curve = false): Agent {
  const kp = createUser();
  const ck = curve ? createCurve() : undefined;
  const credential = issueCredential(issuer, { sub: kp.getPublicKey(), scopes: ["refund:draft"], xkey: ck?.getPublicKey() ?? "" });
  return new Agent(nats.nc, { credential, key: kp, ...(ck ? { curve: ck, gatewayXKey: gwCurve.publicKey } : {}), retryWaitMs: 10 });
}

async function publish(a: Agent, m: Made): Promise<void> {
  const h = headers();
  for (const [k, v] of m.headers) h.set(k, v);
  nats.nc.publish(`agentgw.reply.${TENANT}.${a.publicKey}`, m.data, { headers: h });
  await nats.nc.flush();
}

test("DecisionWatch: skips what is not the awaited envelope's verified notice, reports forged ones, resolves with the genuine", async () => {
  const a = newAgent();
  const rejected: string[] = [];
  const w = a.watchDecisions({ trustedGateways: [gw.getPublicKey()], onReject: (e) => rejected.push(e.reason) });
  try {
    await w.ready();
    await publish(a, { data: bytes("a reply, not a notice"), headers: new Map([["Agentgw-Request-Id", ID]]) });
    await publish(a, notice(a.publicKey, OTHER_ID, { ...allow, message_id: OTHER_ID }));
    await publish(a, notice(a.publicKey, ID, { message_id: ID, route: "deny", reason: "policy_denied" }, { signer: untrusted }));
    await publish(a, notice(a.publicKey, ID, allow));
    const d = await w.await(ID, { signal: AbortSignal.timeout(10_000) });
    assert.equal(d.route, "allow");
    assert.equal(d.target, "refunds.draft_refund");
    assert.deepEqual(rejected, ["decision_token_invalid"], "the forged denial was refused, and only it");
  } finally {
    w.close();
  }
});

test("DecisionWatch: a denial rejects with MessageDeniedError; an approval answer the gateway took resolves, even a deny", async () => {
  const a = newAgent();
  const w = a.watchDecisions({ trustedGateways: [gw.getPublicKey()] });
  try {
    await w.ready();
    await publish(a, notice(a.publicKey, ID, { message_id: ID, route: "deny", reason: "missing_scope" }));
    const err = await rejectsWith(w.await(ID, { signal: AbortSignal.timeout(10_000) }), MessageDeniedError);
    assert.ok(err instanceof DeniedError);
    assert.equal(err.reason, "missing_scope");
    assert.equal(err.messageId, ID);
    assert.equal(err.decision.route, "deny");
    assert.doesNotMatch(err.message + String(err.decision), /eyJ/, "no token in the error's text");

    await publish(a, notice(a.publicKey, OTHER_ID, { message_id: OTHER_ID, route: "deny", reason: "approval_denied", answers: ID, answer: "deny" }));
    const d = await w.await(OTHER_ID, { signal: AbortSignal.timeout(10_000) });
    assert.equal(d.answers, ID);
    assert.equal(d.answer, "deny");
    assert.equal(d.reason, "approval_denied");
  } finally {
    w.close();
  }
});

test("DecisionWatch: no notice before the signal aborts is NoDecisionError, and a later await still sees what came meanwhile", async () => {
  const a = newAgent();
  const w = a.watchDecisions({ trustedGateways: [gw.getPublicKey()] });
  try {
    await w.ready();
    const err = await rejectsWith(w.await(ID, { signal: AbortSignal.timeout(200) }), NoDecisionError);
    assert.equal(err.messageId, ID);
    await publish(a, notice(a.publicKey, ID, allow));
    assert.equal((await w.await(ID, { signal: AbortSignal.timeout(10_000) })).route, "allow");
  } finally {
    w.close();
  }
  assert.throws(() => a.watchDecisions({ trustedGateways: [] }), ConfigError);
});

/** gatewayStandIn answers each envelope the agent publishes with the notice decide returns. */
function gatewayStandIn(a: Agent, decide: (messageId: string) => object, signer: KeyPair = gw): { stop: () => void } {
  const sub = nats.nc.subscribe(a.subject, {
    callback: (_err, m) => {
      const id = parseEnvelope(m.data).messageId;
      void publish(a, notice(a.publicKey, id, decide(id), { signer }));
    },
  });
  return { stop: () => sub.unsubscribe() };
}

test("sendAndDecide: a plain-only agent learns delivered, held and denied; a denial and a missing notice carry the receipt", async () => {
  const a = newAgent();
  const outcomes: Record<string, (id: string) => object> = {
    "refunds.draft_refund": (id) => ({ message_id: id, route: "allow", target: "refunds.draft_refund" }),
    "payments.send": (id) => ({ message_id: id, route: "approval", approval_id: id, deadline: "2026-11-26T01:23:41Z" }),
    "nope.nothing": (id) => ({ message_id: id, route: "deny", reason: "unknown_target" }),
  };
  let target = "";
  const stand = gatewayStandIn(a, (id) => outcomes[target]!(id));
  const opts = { trustedGateways: [gw.getPublicKey()], signal: AbortSignal.timeout(20_000) };
  const send = (t: string) => {
    target = t;
    return a.sendAndDecide({ capability: "tool_call", target: t, plain: { n: 1 } }, opts);
  };
  try {
    const delivered = await send("refunds.draft_refund");
    assert.equal(delivered.decision.messageId, delivered.receipt.messageId);
    assert.equal(delivered.decision.route, "allow");
    const held = await send("payments.send");
    assert.equal(held.decision.route, "approval");
    assert.equal(held.decision.approvalId, held.receipt.messageId);
    assert.ok(held.decision.deadline instanceof Date);
    const denied = await rejectsWith(send("nope.nothing"), MessageDeniedError);
    assert.equal(denied.reason, "unknown_target");
    assert.equal(denied.receipt?.messageId, denied.messageId);
  } finally {
    stand.stop();
  }
  // A stand-in whose key the agent does not trust: its notice is not believed.
  const forger = gatewayStandIn(a, (id) => ({ message_id: id, route: "allow", target: "refunds.draft_refund" }), untrusted);
  try {
    const err = await rejectsWith(
      a.sendAndDecide({ capability: "tool_call", target: "refunds.draft_refund", plain: { n: 2 } }, { trustedGateways: [gw.getPublicKey()], signal: AbortSignal.timeout(1_000) }),
      NoDecisionError,
    );
    assert.ok(err.receipt);
    assert.equal(err.receipt.messageId, err.messageId);
  } finally {
    forger.stop();
  }
});

test("replies() and decisions() tell a notice from a reply on the same subject", async () => {
  const a = newAgent(true);
  const responder = createUser().getPublicKey();
  // A reply as the gateway makes it: sealed to the agent, route reply.
  const data = gwCurve.seal(bytes(`{"refund_id":"rf_1"}`), a.xkey);
  const c: ClaimsToSign = {
    jti: "REPLY1", sub: a.publicKey, aud: a.publicKey, iat: unix(new Date()), exp: unix(new Date()) + 300, tenant: TENANT,
    scope: "respond:refunds.draft_refund", traceId: TRACE, messageId: OTHER_ID, bodyDigest: BODY, payloadDigest: digestHex(data), route: "reply",
  };
  const reply: Made = {
    data,
    headers: new Map([
      ["Agentgw-Decision", signBatch(gw, [wireClaims(gw.getPublicKey(), c)])[0]!],
      ["Agentgw-Request-Id", ID],
      ["Agentgw-Responder", responder],
      ["Agentgw-Sealed-From", gwCurve.publicKey],
    ]),
  };
  const ctl = new AbortController();
  const replyRejects: VerificationError[] = [];
  const noticeRejects: VerificationError[] = [];
  const replies = a.replies({ trustedGateways: [gw.getPublicKey()], signal: ctl.signal, onReject: (e) => replyRejects.push(e) });
  const decisions = a.decisions({ trustedGateways: [gw.getPublicKey()], signal: ctl.signal, onReject: (e) => noticeRejects.push(e) });
  await nats.nc.flush();
  await publish(a, notice(a.publicKey, ID, allow));
  await publish(a, reply);
  const r = await replies.next();
  const d = await decisions.next();
  ctl.abort();
  assert.equal(r.done, false);
  assert.equal((r.value as { requestId: string }).requestId, ID);
  assert.equal(d.done, false);
  assert.equal((d.value as Decision).route, "allow");
  assert.deepEqual(replyRejects, [], "a notice is not a failed reply");
  assert.deepEqual(noticeRejects, [], "a reply is not a failed notice");
});

test("Decision prints its notice only", () => {
  const a = createUser().getPublicKey();
  const d = verifyNotice({ publicKey: a, tenant: TENANT, now: () => new Date() }, notice(a, ID, allow), { trustedGateways: [gw.getPublicKey()] });
  assert.equal(String(d), `Decision{"message_id":"${ID}","route":"allow","target":"refunds.draft_refund"}`);
  assert.equal(JSON.stringify(d), JSON.stringify(allow));
});

test("sendAndWait: once the request was held, a denial message_expired, credential_expired or ledger_incomplete is a late copy's; before, it ends the wait", async () => {
  const a = newAgent(true);
  const held = (id: string) => ({ message_id: id, route: "approval", approval_id: id, deadline: "2026-11-26T01:23:41Z" });
  for (const reason of ["message_expired", "credential_expired", "ledger_incomplete"]) {
    const sub = nats.nc.subscribe(a.subject, {
      callback: (_err, m) => {
        const id = parseEnvelope(m.data).messageId;
        void (async () => {
          await publish(a, notice(a.publicKey, id, held(id)));
          await publish(a, notice(a.publicKey, id, { message_id: id, route: "deny", reason }));
        })();
      },
    });
    const seen: string[] = [];
    try {
      await rejectsWith(
        a.sendAndWait({ capability: "tool_call", target: "payments.send", plain: { n: 1 } }, {
          trustedGateways: [gw.getPublicKey()],
          signal: AbortSignal.timeout(1_500),
          onDecision: (d) => seen.push(d.route),
        }),
        NoReplyError,
      );
    } finally {
      sub.unsubscribe();
    }
    assert.deepEqual(seen, ["approval"], `${reason}: decisions handed to onDecision`);
  }
  // The request's own denial (no delivery or hold before it) ends the wait.
  const stand = gatewayStandIn(a, (id) => ({ message_id: id, route: "deny", reason: "message_expired" }));
  try {
    const err = await rejectsWith(
      a.sendAndWait({ capability: "tool_call", target: "payments.send", plain: { n: 2 } }, { trustedGateways: [gw.getPublicKey()], signal: AbortSignal.timeout(5_000) }),
      MessageDeniedError,
    );
    assert.equal(err.reason, "message_expired");
  } finally {
    stand.stop();
  }
});

test("decisions(): a notice the gateway re-emits (the same bytes again) is yielded once", async () => {
  const a = newAgent();
  const ctl = new AbortController();
  const it = a.decisions({ trustedGateways: [gw.getPublicKey()], signal: ctl.signal });
  const n = notice(a.publicKey, ID, allow);
  await publish(a, n);
  await publish(a, n); // the re-emission
  await publish(a, notice(a.publicKey, OTHER_ID, { message_id: OTHER_ID, route: "allow", target: "refunds.draft_refund" }));
  const got: string[] = [];
  for (let i = 0; i < 2; i++) {
    const r = await it.next();
    assert.ok(!r.done);
    got.push(r.value.messageId);
  }
  ctl.abort();
  assert.deepEqual(got, [ID, OTHER_ID]);
});
