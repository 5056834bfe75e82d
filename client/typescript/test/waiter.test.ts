// The waits of an agent's calls in flight against a real nats-server
// (with its monitoring endpoint, to count subscriptions as the server
// sees them): sendAndWait and sendAndDecide share one subscription to
// the agent's reply subject, each reply and notice goes to the call of
// the envelope it names, and the subscription ends with the last call.
// A stand-in signs replies and notices with a test gateway key; the
// end-to-end tests use the real gateway. The Go SDK's waiter_test.go and
// TestConcurrentWaitsShareOneSubscription, case for case.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createAccount, createCurve, createServer, createUser } from "@nats-io/nkeys";
import { headers, type Msg, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Agent } from "../src/agent.js";
import { parseEnvelope } from "../src/envelope.js";
import { MessageDeniedError, NoDecisionError, NoReplyError, VerificationError } from "../src/errors.js";
import { digestHex } from "../src/internal/bytes.js";
import { signBatch, wireClaims } from "../src/internal/decision_sign.js";
import { setHooks } from "../src/internal/hooks.js";
import { MAX_QUEUED, openWaiter, type Waiter } from "../src/internal/waiter.js";
import { Box } from "../src/keys.js";
import { formatNoticeDoc, type Decision } from "../src/notice.js";
import { reply as replySubject } from "../src/subjects.js";
import { bytes, dec, rejectsWith } from "./helpers.js";
import { startNatsServer, type NatsServer } from "./servers.js";
import { issueCredential, TENANT, unix } from "./world.js";

const gw = createServer();
const gwCurve = new Box(createCurve());
const issuer = createAccount();
const trust = { trustedGateways: [gw.getPublicKey()] };

let srv: NatsServer;
let nc: NatsConnection;
/** The stand-in gateway's own connection: what it publishes reaches the agent's subscription from outside. */
let gwNC: NatsConnection;

before(async () => {
  srv = await startNatsServer({ monitor: true });
  nc = await srv.connect();
  gwNC = await srv.connect();
  const jsm = await jetstreamManager(nc);
  await jsm.streams.add({ name: "AGENTGW_IN", subjects: ["agentgw.in.*.*"], duplicate_window: 5 * 60 * 1e9 });
});

after(async () => {
  await nc?.close();
  await gwNC?.close();
  await srv?.stop();
});

function newAgent(): Agent {
  const kp = createUser();
  const curve = createCurve();
  const credential = issueCredential(issuer, { sub: kp.getPublicKey(), scopes: ["refund:draft"], xkey: curve.getPublicKey() });
  return new Agent(nc, { credential, key: kp, curve, gatewayXKey: gwCurve.publicKey, retryWaitMs: 10 });
}

const subjectOf = (a: Agent): string => replySubject(a.tenant, a.publicKey);

/** token signs a decision token of route for agent about messageId, over payload. */
function token(a: Agent, route: "reply" | "notice", messageId: string, payload: Uint8Array): string {
  const now = new Date();
  return signBatch(gw, [
    wireClaims(gw.getPublicKey(), {
      jti: `J${randomUUID().replaceAll("-", "").toUpperCase()}`,
      sub: a.publicKey,
      aud: a.publicKey,
      iat: unix(now),
      exp: unix(now) + 300,
      tenant: TENANT,
      scope: route === "notice" ? "notice" : "respond:refunds.draft_refund",
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      messageId,
      bodyDigest: "ab".repeat(32),
      payloadDigest: digestHex(payload),
      route,
    }),
  ])[0]!;
}

/** notify publishes the gateway's verified notice of messageId to a. */
function notify(a: Agent, messageId: string, n: object): void {
  const data = bytes(JSON.stringify({ message_id: messageId, ...n }));
  const h = headers();
  h.set("Agentgw-Notice", "decision");
  h.set("Agentgw-Message-Id", messageId);
  gwNC.publish(subjectOf(a), formatNoticeDoc(token(a, "notice", messageId, data), data), { headers: h });
}

/** answer publishes the gateway's verified, sealed reply to a's request requestId. */
function answer(a: Agent, requestId: string, payload: object): void {
  const data = gwCurve.seal(bytes(JSON.stringify(payload)), a.xkey);
  const h = headers();
  h.set("Agentgw-Decision", token(a, "reply", randomUUID().replaceAll("-", ""), data));
  h.set("Agentgw-Request-Id", requestId);
  h.set("Agentgw-Responder", createUser().getPublicKey());
  h.set("Agentgw-Sealed-From", gwCurve.publicKey);
  gwNC.publish(subjectOf(a), data, { headers: h });
}

/** An envelope the agent published, as the stand-in saw it on ingress. */
interface Seen {
  messageId: string;
  body: { n?: number };
}

/**
 * standIn watches a's ingress subject and calls on with each envelope the
 * agent publishes (each attempt); seen(k) resolves once k were seen.
 */
function standIn(a: Agent, on: (e: Seen) => void = () => {}): { seen: (k: number) => Promise<Seen[]>; stop: () => void } {
  const got: Seen[] = [];
  const wants: { k: number; resolve: (v: Seen[]) => void }[] = [];
  const sub = gwNC.subscribe(a.subject, {
    callback: (_err, m) => {
      const env = parseEnvelope(m.data);
      const e = { messageId: env.messageId, body: JSON.parse(dec.decode(env.payload.plain ?? bytes("{}"))) as { n?: number } };
      got.push(e);
      on(e);
      for (const w of wants.filter((w) => got.length >= w.k)) {
        w.resolve(got.slice());
      }
    },
  });
  return {
    seen: (k) => (got.length >= k ? Promise.resolve(got.slice()) : new Promise((resolve) => wants.push({ k, resolve }))),
    stop: () => sub.unsubscribe(),
  };
}

/** acks counts the publishes of a that JetStream acknowledged; acked(k) resolves once k were. */
function acks(a: Agent): { acked: (k: number) => Promise<void> } {
  let n = 0;
  const wants: { k: number; resolve: () => void }[] = [];
  setHooks(a, {
    publish: async (s, data, o, real) => {
      const ack = await real!(s, data, o);
      n++;
      for (const w of wants.filter((w) => n >= w.k)) {
        w.resolve();
      }
      return ack;
    },
  });
  return { acked: (k) => (n >= k ? Promise.resolve() : new Promise((resolve) => wants.push({ k, resolve }))) };
}

/** settled reports how p ended, without throwing. */
function settled<T>(p: Promise<T>): Promise<{ ok: true; value: T } | { ok: false; err: unknown }> {
  return p.then(
    (value) => ({ ok: true as const, value }),
    (err: unknown) => ({ ok: false as const, err }),
  );
}

test("sendAndWait: 8 calls in flight of one agent hold one subscription to its reply subject, and each gets its own reply", async () => {
  const calls = 8;
  const a = newAgent();
  // The stand-in tells each call its request was delivered at once, and
  // answers none until every call is waiting.
  const stand = standIn(a, (e) => notify(a, e.messageId, { route: "allow", target: "refunds.draft_refund" }));
  const decided: Decision[][] = [];
  const told: Promise<void>[] = [];
  const waits = [];
  for (let i = 0; i < calls; i++) {
    const seen: Decision[] = [];
    decided.push(seen);
    let wake = (): void => {};
    told.push(new Promise<void>((resolve) => (wake = resolve)));
    waits.push(
      settled(
        a.sendAndWait({ capability: "tool_call", target: "refunds.draft_refund", plain: { n: i } }, {
          ...trust,
          signal: AbortSignal.timeout(20_000),
          onDecision: (d) => {
            seen.push(d);
            wake();
          },
        }),
      ),
    );
  }
  try {
    const sent = await stand.seen(calls);
    await Promise.all(told); // every call has its notice: all are waiting
    assert.equal(await srv.subscriptionsTo(subjectOf(a)), 1, `subscriptions to the agent's reply subject with ${calls} calls waiting; want one`);
    // Answered in reverse order, each naming its request.
    for (const e of sent.slice().reverse()) {
      answer(a, e.messageId, { n: e.body.n, request: e.messageId });
    }
    const got = await Promise.all(waits);
    for (let i = 0; i < calls; i++) {
      const r = got[i]!;
      assert.ok(r.ok, `call ${i}: ${r.ok ? "" : String(r.err)}`);
      const { receipt, reply } = r.value;
      assert.deepEqual(reply.json(), { n: i, request: receipt.messageId }, `call ${i} got another call's reply`);
      assert.equal(reply.requestId, receipt.messageId);
      assert.deepEqual(
        decided[i]!.map((d) => [d.route, d.messageId]),
        [["allow", receipt.messageId]],
        `call ${i}: the notices handed to onDecision`,
      );
    }
  } finally {
    stand.stop();
  }
  await nc.flush(); // the unsubscription reaches the server
  assert.equal(await srv.subscriptionsTo(subjectOf(a)), 0, "subscriptions to the agent's reply subject after the calls; want none");
});

/** publishRaw publishes data to a's reply subject with the headers given. */
function publishRaw(a: Agent, data: string, hs: Record<string, string>): void {
  const h = headers();
  for (const [k, v] of Object.entries(hs)) {
    h.set(k, v);
  }
  gwNC.publish(subjectOf(a), bytes(data), { headers: h });
}

const asNotice = (id: string): Record<string, string> => ({ "Agentgw-Notice": "decision", "Agentgw-Message-Id": id });
const asReply = (id: string): Record<string, string> => ({ "Agentgw-Request-Id": id });

/** take reads n messages of w, failing after 5 s. */
async function take(w: Waiter, n: number): Promise<string[]> {
  const signal = AbortSignal.timeout(5_000);
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const m: Msg | undefined = await w.next(signal);
    assert.ok(m, `next: nothing after ${JSON.stringify(out)}`);
    out.push(dec.decode(m.data));
  }
  return out;
}

test("waiters: each takes only the messages naming its envelope, in order; an unnamed message goes nowhere; a re-targeted waiter no longer gets the old id's", async () => {
  const ag = newAgent();
  const a = await openWaiter(ag);
  const b = await openWaiter(ag);
  const c = await openWaiter(ag);
  a.expect("taken");
  c.expect("taken");
  assert.equal(await srv.subscriptionsTo(subjectOf(ag)), 1, "subscriptions with three waiters; want one");
  // A notice of taken reaches both its waiters; c's copy shows a has
  // queued its own.
  publishRaw(ag, "notice of taken", asNotice("taken"));
  assert.deepEqual(await take(c, 1), ["notice of taken"]);
  a.expect("a"); // re-issued: what a has of taken, queued or to come, is not a's
  b.expect("b");
  publishRaw(ag, "reply to taken", asReply("taken"));
  publishRaw(ag, "nothing named", {});
  publishRaw(ag, "empty ids", { "Agentgw-Notice": "decision", "Agentgw-Message-Id": "", "Agentgw-Request-Id": "" });
  publishRaw(ag, "notice of c", asNotice("c"));
  // A notice is routed by its message id only, whatever request id it
  // names; a reply by its request id only.
  publishRaw(ag, "notice of c naming a", { ...asNotice("c"), "Agentgw-Request-Id": "a" });
  publishRaw(ag, "reply naming b as a notice would", { "Agentgw-Message-Id": "b" });
  publishRaw(ag, "notice of b", asNotice("b"));
  publishRaw(ag, "reply to a", asReply("a"));
  publishRaw(ag, "notice of a", asNotice("a"));
  publishRaw(ag, "reply to b", asReply("b"));
  await gwNC.flush();
  assert.deepEqual(await take(a, 2), ["reply to a", "notice of a"]);
  assert.deepEqual(await take(b, 2), ["notice of b", "reply to b"]);
  assert.deepEqual(await take(c, 1), ["reply to taken"]);
  for (const [name, w] of [["a", a], ["b", b], ["c", c]] as const) {
    assert.equal(await w.next(AbortSignal.timeout(200)), undefined, `${name}: nothing more`);
  }
  a.close();
  c.close();
  await nc.flush();
  assert.equal(await srv.subscriptionsTo(subjectOf(ag)), 1, "subscriptions with one waiter left; want one");
  b.close();
  b.close(); // a second close is harmless
  assert.equal(await b.next(), undefined, "a closed waiter's next ends");
  await nc.flush();
  assert.equal(await srv.subscriptionsTo(subjectOf(ag)), 0, "subscriptions with no waiter; want none");
  // The next waiter opens a subscription again.
  const d = await openWaiter(ag);
  d.expect("d");
  assert.equal(await srv.subscriptionsTo(subjectOf(ag)), 1, "subscriptions with a new waiter; want one");
  publishRaw(ag, "reply to d", asReply("d"));
  assert.deepEqual(await take(d, 1), ["reply to d"]);
  d.close();
});

test("sendAndWait and sendAndDecide share the subscription; it is unsubscribed after the last call ends", async () => {
  const a = newAgent();
  const stand = standIn(a);
  const waiting = settled(a.sendAndWait({ capability: "tool_call", target: "refunds.draft_refund", plain: { n: 1 } }, { ...trust, signal: AbortSignal.timeout(20_000) }));
  const deciding = settled(a.sendAndDecide({ capability: "tool_call", target: "refunds.draft_refund", plain: { n: 2 } }, { ...trust, signal: AbortSignal.timeout(20_000) }));
  try {
    const sent = await stand.seen(2);
    assert.equal(await srv.subscriptionsTo(subjectOf(a)), 1, "subscriptions with sendAndWait and sendAndDecide in flight; want one");
    const byN = new Map(sent.map((e) => [e.body.n, e.messageId]));
    // The decided call's denial, then the waiting call's reply.
    notify(a, byN.get(2)!, { route: "deny", reason: "unknown_target" });
    const denied = await deciding;
    assert.ok(!denied.ok && denied.err instanceof MessageDeniedError, `sendAndDecide: ${denied.ok ? "resolved" : String(denied.err)}`);
    assert.equal(denied.err.receipt?.messageId, byN.get(2));
    await nc.flush();
    assert.equal(await srv.subscriptionsTo(subjectOf(a)), 1, "subscriptions with sendAndWait still waiting; want one");
    answer(a, byN.get(1)!, { ok: true });
    const r = await waiting;
    assert.ok(r.ok, r.ok ? "" : String(r.err));
    assert.deepEqual(r.value.reply.json(), { ok: true });
  } finally {
    stand.stop();
  }
  await nc.flush();
  assert.equal(await srv.subscriptionsTo(subjectOf(a)), 0, "subscriptions after the last call; want none");
});

test("sendAndWait and sendAndDecide: an aborted wait ends with NoReplyError or NoDecisionError carrying the receipt; the others wait on", async () => {
  const a = newAgent();
  const stand = standIn(a);
  const sends = acks(a);
  const ctl = new AbortController();
  const aborted = settled(a.sendAndWait({ capability: "tool_call", target: "refunds.draft_refund", plain: { n: 1 } }, { ...trust, signal: ctl.signal }));
  const undecided = new AbortController();
  const deciding = settled(a.sendAndDecide({ capability: "tool_call", target: "refunds.draft_refund", plain: { n: 2 } }, { ...trust, signal: undecided.signal }));
  const other = settled(a.sendAndWait({ capability: "tool_call", target: "refunds.draft_refund", plain: { n: 3 } }, { ...trust, signal: AbortSignal.timeout(20_000) }));
  try {
    const byN = new Map((await stand.seen(3)).map((e) => [e.body.n, e.messageId]));
    await sends.acked(3); // the sends are done: only the waits are left to abort
    ctl.abort(new Error("given up"));
    const r = await aborted;
    assert.ok(!r.ok && r.err instanceof NoReplyError, `aborted sendAndWait: ${r.ok ? "resolved" : String(r.err)}`);
    assert.equal(r.err.receipt?.messageId, byN.get(1), "the receipt of the request sent");
    assert.equal((r.err.cause as Error).message, "given up", "the signal's reason");
    undecided.abort();
    const d = await deciding;
    assert.ok(!d.ok && d.err instanceof NoDecisionError, `aborted sendAndDecide: ${d.ok ? "resolved" : String(d.err)}`);
    assert.equal(d.err.receipt?.messageId, byN.get(2));
    // The aborted calls' messages go nowhere; the last call still gets its own.
    answer(a, byN.get(1)!, { n: 1 });
    notify(a, byN.get(2)!, { route: "allow", target: "refunds.draft_refund" });
    answer(a, byN.get(3)!, { n: 3 });
    const o = await other;
    assert.ok(o.ok, o.ok ? "" : String(o.err));
    assert.deepEqual(o.value.reply.json(), { n: 3 });
  } finally {
    stand.stop();
  }
  await nc.flush();
  assert.equal(await srv.subscriptionsTo(subjectOf(a)), 0, "subscriptions after the last call; want none");
});

test("waiter: next with a signal already aborted ends at once, queued messages and all (none is taken past its wait); so does sendAndWait aborted after its send", async () => {
  const ag = newAgent();
  const w = await openWaiter(ag);
  try {
    const other = await openWaiter(ag);
    w.expect("x");
    other.expect("x");
    publishRaw(ag, "reply to x", asReply("x"));
    publishRaw(ag, "reply to x again", asReply("x"));
    assert.deepEqual(await take(other, 2), ["reply to x", "reply to x again"]); // so both are queued for w too
    other.close();
    const aborted = AbortSignal.abort();
    assert.equal(await w.next(aborted), undefined, "the abort, though two messages are queued");
    assert.deepEqual(dec.decode((await w.next())!.data), "reply to x", "still queued for a wait not over");
  } finally {
    w.close();
  }
  // The signal aborts once the publish was acknowledged, before the wait
  // looks for a message.
  const a = newAgent();
  const sends = acks(a);
  const ctl = new AbortController();
  void sends.acked(1).then(() => setImmediate(() => ctl.abort()));
  const err = await rejectsWith(a.sendAndWait({ capability: "tool_call", target: "refunds.draft_refund", plain: {} }, { ...trust, signal: ctl.signal }), NoReplyError);
  assert.ok(err.receipt, "the receipt of the request sent");
  assert.equal(err.requestId, err.receipt.messageId);
  await nc.flush();
  assert.equal(await srv.subscriptionsTo(subjectOf(a)), 0);
});

test("sendAndWait: a request re-issued after a collision is waited for under its new id, not the taken one", async () => {
  const a = newAgent();
  const taken = "taken-id-0000000000000001";
  // Another publisher holds the id in the stream's dedup window.
  const h = headers();
  h.set("Nats-Msg-Id", taken);
  await jetstream(gwNC).publish(a.subject, bytes("someone else's message"), { headers: h });
  const ids = [taken];
  setHooks(a, { newId: () => ids.shift() ?? randomUUID().replaceAll("-", "") });
  // The stand-in answers every envelope it sees with a notice and a
  // reply: our first attempt, under the taken id, with a denial.
  const stand = standIn(a, (e) => {
    notify(a, e.messageId, e.messageId === taken ? { route: "deny", reason: "policy_denied" } : { route: "allow", target: "refunds.draft_refund" });
    answer(a, e.messageId, { to: e.messageId });
  });
  try {
    const seen: Decision[] = [];
    const { receipt, reply } = await a
      .sendAndWait({ capability: "tool_call", target: "refunds.draft_refund", plain: { n: 1 } }, { ...trust, signal: AbortSignal.timeout(20_000), onDecision: (d) => seen.push(d) })
      .catch((err: unknown) => assert.fail(`sendAndWait: ${String(err)}`));
    assert.notEqual(receipt.messageId, taken);
    assert.deepEqual(reply.json(), { to: receipt.messageId });
    assert.deepEqual(
      seen.map((d) => [d.route, d.messageId]),
      [["allow", receipt.messageId]],
      "the taken id's denial is not the request's",
    );
  } finally {
    stand.stop();
  }
});

test("sendAndWait and sendAndDecide: a closed connection ends the waits instead of leaving them hanging", async () => {
  const own = await srv.connect();
  const kp = createUser();
  const curve = createCurve();
  const credential = issueCredential(issuer, { sub: kp.getPublicKey(), scopes: ["refund:draft"], xkey: curve.getPublicKey() });
  const a = new Agent(own, { credential, key: kp, curve, gatewayXKey: gwCurve.publicKey, retryWaitMs: 10 });
  const sends = acks(a);
  // No signal: only the connection's end can end these waits.
  const waiting = settled(a.sendAndWait({ capability: "tool_call", target: "refunds.draft_refund", plain: { n: 1 } }, trust));
  const deciding = settled(a.sendAndDecide({ capability: "tool_call", target: "refunds.draft_refund", plain: { n: 2 } }, trust));
  // Both sends were acknowledged before the connection closes.
  await sends.acked(2);
  await own.close();
  const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error("a wait outlived its connection")), 10_000).unref());
  const [w, d] = await Promise.race([Promise.all([waiting, deciding]), timeout]);
  assert.ok(!w.ok && w.err instanceof NoReplyError, `sendAndWait: ${w.ok ? "resolved" : String(w.err)}`);
  assert.ok(w.err.receipt);
  assert.ok(!d.ok && d.err instanceof NoDecisionError, `sendAndDecide: ${d.ok ? "resolved" : String(d.err)}`);
  assert.ok(d.err.receipt);
  // A closed connection refuses a new wait.
  await rejectsWith(a.sendAndWait({ capability: "tool_call", target: "refunds.draft_refund", plain: {} }, trust), Error, "a wait on a closed connection");
});

test("waiters: a wait aborted with nothing handed to it retires its subscription; one that was handed a message does not", async () => {
  const ag = newAgent();
  const answered = await openWaiter(ag);
  const empty = await openWaiter(ag);
  answered.expect("answered");
  empty.expect("empty");
  publishRaw(ag, "reply to answered", asReply("answered"));
  assert.deepEqual(await take(answered, 1), ["reply to answered"]);
  assert.equal(await answered.next(AbortSignal.timeout(100)), undefined, "answered: nothing more");
  const later = await openWaiter(ag);
  assert.equal(await srv.subscriptionsTo(subjectOf(ag)), 1, "a wait that was handed a message retired its subscription");
  later.close();
  assert.equal(await empty.next(AbortSignal.timeout(100)), undefined, "empty: nothing");
  const fresh = await openWaiter(ag);
  fresh.expect("fresh");
  assert.equal(await srv.subscriptionsTo(subjectOf(ag)), 2, "after a wait handed nothing: a new subscription beside the old");
  answered.close();
  empty.close();
  await nc.flush();
  assert.equal(await srv.subscriptionsTo(subjectOf(ag)), 1, "once the old one's waiters left: the new one only");
  publishRaw(ag, "reply to fresh", asReply("fresh"));
  assert.deepEqual(await take(fresh, 1), ["reply to fresh"]);
  fresh.close();
  await nc.flush();
  assert.equal(await srv.subscriptionsTo(subjectOf(ag)), 0, "no waiter: no subscription");
});

test("waiters: a waiter holds at most MAX_QUEUED unread messages; more naming its envelope are dropped", async () => {
  const ag = newAgent();
  const flooded = await openWaiter(ag);
  const marker = await openWaiter(ag);
  flooded.expect("flooded");
  marker.expect("marker");
  for (let i = 0; i < MAX_QUEUED + 50; i++) {
    publishRaw(ag, `flood ${i}`, asReply("flooded"));
  }
  publishRaw(ag, "marker", asReply("marker"));
  // Messages are handed over in order: once the marker's waiter has it,
  // the flood was handed over, or dropped.
  assert.deepEqual(await take(marker, 1), ["marker"]);
  const got = await take(flooded, MAX_QUEUED);
  assert.equal(got[MAX_QUEUED - 1], `flood ${MAX_QUEUED - 1}`, "the first MAX_QUEUED, in order");
  assert.equal(await flooded.next(AbortSignal.timeout(100)), undefined, "nothing past MAX_QUEUED");
  flooded.close();
  marker.close();
});

test("waiters: a wait after one that got nothing on a subscription the server refused (max_subscriptions) opens a new one and gets its reply", async () => {
  // nats-server refuses a subscription over its max_subscriptions with an
  // -ERR, and nats.js keeps it as valid: no message reaches the waits on it.
  const limited = await startNatsServer({ config: "max_subscriptions: 1\n" });
  const anc = await limited.connect();
  const pub = await limited.connect();
  try {
    const refused = (async () => {
      for await (const s of anc.status()) {
        if (s.type === "error" && /maximum subscriptions exceeded/i.test(String(s.error))) {
          return true;
        }
      }
      return false;
    })();
    const filler = anc.subscribe("agentgw.test.filler");
    await anc.flush();
    const ag = { connection: anc, tenant: TENANT, publicKey: createUser().getPublicKey() };
    const replyTo = (id: string): void => {
      const h = headers();
      h.set("Agentgw-Request-Id", id);
      pub.publish(replySubject(ag.tenant, ag.publicKey), bytes(`reply to ${id}`), { headers: h });
    };
    const held = await openWaiter(ag);
    held.expect("held");
    const short = await openWaiter(ag);
    short.expect("short");
    assert.equal(await Promise.race([refused, new Promise((r) => setTimeout(() => r(false), 5_000))]), true, "the server refused the reply subscription");
    replyTo("short");
    await pub.flush();
    assert.equal(await short.next(AbortSignal.timeout(200)), undefined, "a wait on the refused subscription gets nothing");

    filler.unsubscribe();
    const later = await openWaiter(ag);
    later.expect("later");
    replyTo("later");
    await pub.flush();
    assert.deepEqual(await take(later, 1), ["reply to later"], "the new subscription gets its reply");
    held.close();
    short.close();
    later.close();
  } finally {
    await anc.close();
    await pub.close();
    await limited.stop();
  }
});

test("sendAndWait: a gateway reply to another target, tenant or agent, under the request's id, is not its reply", async () => {
  // The request id that picks a reply is an unsigned header: whoever can
  // publish on the reply subject can re-send a genuine, fresh reply to
  // another of the agent's requests (to kb.search) under the id of one
  // to refunds.draft_refund. The Go SDK's TestSendAndWaitTakesOnlyAReplyOfItsTarget.
  const a = newAgent();
  const other = createUser().getPublicKey();
  const bad: Record<string, (c: { scope: string; tenant: string; sub: string }) => void> = {
    "kb.search": (c) => (c.scope = "respond:kb.search"),
    "another tenant": (c) => (c.tenant = "tenant_b"),
    "another agent": (c) => (c.sub = other),
  };
  const send = (requestId: string, payload: object, edit: (c: { scope: string; tenant: string; sub: string }) => void): void => {
    const data = gwCurve.seal(bytes(JSON.stringify(payload)), a.xkey);
    const now = new Date();
    const c = {
      jti: `J${randomUUID().replaceAll("-", "").toUpperCase()}`,
      sub: a.publicKey,
      aud: a.publicKey,
      iat: unix(now),
      exp: unix(now) + 300,
      tenant: TENANT,
      scope: "respond:refunds.draft_refund",
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      messageId: randomUUID().replaceAll("-", ""),
      bodyDigest: "ab".repeat(32),
      payloadDigest: digestHex(data),
      route: "reply" as const,
    };
    edit(c);
    const h = headers();
    h.set("Agentgw-Decision", signBatch(gw, [wireClaims(gw.getPublicKey(), c)])[0]!);
    h.set("Agentgw-Request-Id", requestId);
    h.set("Agentgw-Sealed-From", gwCurve.publicKey);
    gwNC.publish(subjectOf(a), data, { headers: h });
  };
  // The stand-in: once the request is published, a reply of the kind its
  // payload names comes first, then the reply to it.
  const stand = gwNC.subscribe(a.subject, {
    callback: (_err, m) => {
      const env = parseEnvelope(m.data);
      const kind = (JSON.parse(dec.decode(env.payload.plain ?? bytes("{}"))) as { kind: string }).kind;
      send(env.messageId, { status: kind }, bad[kind]!);
      send(env.messageId, { status: "drafted" }, () => {});
    },
  });
  try {
    for (const kind of Object.keys(bad)) {
      const { reply } = await a.sendAndWait(
        { capability: "tool_call", target: "refunds.draft_refund", plain: { kind } },
        { ...trust, signal: AbortSignal.timeout(10_000) },
      );
      assert.deepEqual(reply.json(), { status: "drafted" }, `sendAndWait took the reply of ${kind}`);
    }
  } finally {
    stand.unsubscribe();
  }
});

test("sendAndWait: a notice and a reply from a gateway key it does not trust go to onReject, unknownKey set, and it waits on", async () => {
  // An agent left out of a rotation of the gateway's key: what the
  // gateway sends it is refused, and onReject says why its wait ends
  // empty. The Go SDK's TestWaitReportsUntrustedGateway.
  const a = newAgent();
  const stand = standIn(a, (e) => {
    notify(a, e.messageId, { route: "allow", target: "refunds.draft_refund" });
    answer(a, e.messageId, { status: "drafted" });
  });
  const stop = new AbortController();
  const rejected: VerificationError[] = [];
  try {
    await rejectsWith(
      a.sendAndWait(
        { capability: "tool_call", target: "refunds.draft_refund", plain: { n: 1 } },
        {
          trustedGateways: [createServer().getPublicKey()],
          signal: AbortSignal.any([stop.signal, AbortSignal.timeout(10_000)]),
          onReject: (err) => {
            rejected.push(err);
            if (rejected.length === 2) {
              stop.abort();
            }
          },
        },
      ),
      NoReplyError,
    );
  } finally {
    stand.stop();
  }
  assert.equal(rejected.length, 2, "the notice and the reply");
  for (const err of rejected) {
    assert.equal(err.reason, "decision_token_invalid");
    assert.equal(err.unknownKey, true, err.message);
  }
});
