// The agent against a real nats-server: what it publishes, retries under
// the same id, re-issues on a collision, and what it refuses to send.
// The Go SDK's agent tests, case for case.
import { test } from "node:test";
import assert from "node:assert/strict";
import { inspect } from "node:util";
import { createAccount, createCurve, createUser, type KeyPair } from "@nats-io/nkeys";
import { headers, TimeoutError } from "@nats-io/transport-node";
import { jetstream, type StoredMsg } from "@nats-io/jetstream";
import { Agent, type AgentConfig } from "../src/agent.js";
import { peekCredential } from "../src/creds.js";
import { CollisionError, ConfigError, InvalidRequestError, UnavailableError } from "../src/errors.js";
import { parseEnvelope, verifyEnvelope } from "../src/envelope.js";
import { setHooks, type PublishFn } from "../src/internal/hooks.js";
import { Box, decodePublicKey } from "../src/keys.js";
import { bytes, dec, rejectsWith } from "./helpers.js";
import { useNatsServer } from "./servers.js";
import { AUDIENCE, issueCredential, TENANT } from "./world.js";

const nats = useNatsServer();
const issuer = createAccount();
const gwCurve = new Box(createCurve());

async function ingressStream(): Promise<void> {
  await nats.jsm.streams.add({ name: "AGENTGW_IN", subjects: ["agentgw.in.*.*"], duplicate_window: 5 * 60 * 1e9 });
}

async function dropIngress(): Promise<void> {
  try {
    await nats.jsm.streams.delete("AGENTGW_IN");
  } catch {
    // absent
  }
}

async function all(): Promise<StoredMsg[]> {
  const info = await nats.jsm.streams.info("AGENTGW_IN");
  const out: StoredMsg[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await nats.jsm.streams.getMessage("AGENTGW_IN", { seq });
    assert.ok(m !== null, `no message at ${seq}`);
    out.push(m);
  }
  return out;
}

interface TestActor {
  kp: KeyPair;
  pub: string;
  curve: KeyPair;
  xkey: string;
  credential: string;
}

function newActor(scopes = ["refund:draft"]): TestActor {
  const kp = createUser();
  const curve = createCurve();
  const xkey = curve.getPublicKey();
  return { kp, pub: kp.getPublicKey(), curve, xkey, credential: issueCredential(issuer, { sub: kp.getPublicKey(), scopes, xkey }) };
}

function config(a: TestActor, over: Partial<AgentConfig> = {}): AgentConfig {
  return { credential: a.credential, key: a.kp, curve: a.curve, gatewayXKey: gwCurve.publicKey, retryWaitMs: 10, ...over };
}

/** lossy records every attempt and loses the acks of the attempts in lose. */
function lossy(lose: number[] = [], before?: (n: number) => Promise<void>) {
  const rec = { bodies: [] as string[], ids: [] as string[], n: 0 };
  const publish: PublishFn = async (subject, data, opts, real) => {
    const n = ++rec.n;
    rec.bodies.push(dec.decode(data));
    rec.ids.push(opts.msgID);
    await before?.(n);
    const ack = await real!(subject, data, opts);
    if (lose.includes(n)) {
      throw new TimeoutError();
    }
    return ack;
  };
  return { rec, publish };
}

/** checkIngress checks a stored ingress message as the gateway would. */
function checkIngress(m: StoredMsg, a: TestActor) {
  assert.equal(m.subject, `agentgw.in.${TENANT}.${a.pub}`);
  const e = parseEnvelope(m.data);
  assert.equal(m.header.get("Nats-Msg-Id"), e.messageId);
  assert.equal(m.header.get("Agentgw-Credential"), a.credential);
  verifyEnvelope(decodePublicKey(a.pub, "U")!, m.data, m.header.get("Agentgw-Signature"));
  assert.match(m.header.get("traceparent"), new RegExp(`^00-${e.traceId}-[0-9a-f]{16}-00$`));
  assert.equal(e.tenant, TENANT);
  assert.equal(e.audience, AUDIENCE);
  return e;
}

test("send: a sealed request is stored signed, and opens with the gateway's key", async () => {
  await dropIngress();
  await ingressStream();
  const a = newActor();
  const ag = new Agent(nats.nc, config(a));
  const rcpt = await ag.send({ capability: "tool_call", target: "refunds.draft_refund", sealed: { order_id: "ord_1", amount_cents: 100 } });
  assert.equal(rcpt.stream, "AGENTGW_IN");
  assert.equal(rcpt.attempts, 1);
  const msgs = await all();
  assert.equal(msgs.length, 1);
  assert.equal(msgs[0]!.seq, rcpt.seq);
  const e = checkIngress(msgs[0]!, a);
  assert.equal(e.messageId, rcpt.messageId);
  assert.equal(e.traceId, rcpt.traceId);
  assert.equal(e.idempotencyKey, rcpt.messageId);
  assert.equal(e.payload.from, a.xkey);
  assert.equal(e.payload.to, gwCurve.publicKey);
  const opened = gwCurve.open(Buffer.from(e.payload.sealed!, "base64url"), a.xkey);
  assert.deepEqual(JSON.parse(dec.decode(opened)), { order_id: "ord_1", amount_cents: 100 });
});

test("send: a plain request keeps its bytes, its key and its trace", async () => {
  await dropIngress();
  await ingressStream();
  const a = newActor();
  const ag = new Agent(nats.nc, config(a, { curve: undefined, gatewayXKey: undefined }));
  const trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const rcpt = await ag.send({ capability: "read", target: "kb.search", plain: bytes(`{"q": "refund policy"}`), idempotencyKey: "search:1", traceId: trace, ttlMs: 30_000 });
  const e = checkIngress((await all())[0]!, a);
  assert.equal(dec.decode(e.payload.plain), `{"q": "refund policy"}`);
  assert.equal(e.idempotencyKey, "search:1");
  assert.equal(e.traceId, trace);
  assert.equal(rcpt.traceId, trace);
  assert.equal(e.expiresAt.getTime() - e.issuedAt.getTime(), 30_000);
});

test("send: a lost acknowledgement is retried with the same id and bytes", async () => {
  await dropIngress();
  await ingressStream();
  const a = newActor();
  const ag = new Agent(nats.nc, config(a));
  const l = lossy([1, 2]);
  setHooks(ag, { publish: l.publish });
  const rcpt = await ag.send({ capability: "read", target: "orders.status", plain: {} });
  assert.equal(rcpt.attempts, 3);
  assert.ok(l.rec.bodies.every((b) => b === l.rec.bodies[0]));
  assert.ok(l.rec.ids.every((id) => id === rcpt.messageId));
  const msgs = await all();
  assert.equal(msgs.length, 1, "the stream holds exactly one copy");
  assert.equal(msgs[0]!.seq, rcpt.seq);
  checkIngress(msgs[0]!, a);
});

test("send: retries while the stream is missing (no responders), then lands once", async () => {
  await dropIngress();
  const a = newActor();
  const ag = new Agent(nats.nc, config(a));
  const l = lossy([], async (n) => {
    if (n === 3) await ingressStream();
  });
  setHooks(ag, { publish: l.publish });
  const rcpt = await ag.send({ capability: "read", target: "orders.status", plain: {} });
  assert.equal(rcpt.attempts, 3);
  assert.equal((await all()).length, 1);
});

test("send: no stream at all is UnavailableError after maxAttempts", async () => {
  await dropIngress();
  const a = newActor();
  const ag = new Agent(nats.nc, config(a, { maxAttempts: 2 }));
  await rejectsWith(ag.send({ capability: "read", target: "orders.status", plain: {} }), UnavailableError);
});

/** preempt stores a message under id on the agent's ingress subject, as another publisher would. */
async function preempt(a: TestActor, id: string): Promise<void> {
  const h = headers();
  h.set("Nats-Msg-Id", id);
  await jetstream(nats.nc).publish(`agentgw.in.${TENANT}.${a.pub}`, bytes("someone else's message"), { headers: h });
}

test("send: a duplicate ack on a first attempt is a collision, re-issued under a new id", async () => {
  await dropIngress();
  await ingressStream();
  const a = newActor();
  const ag = new Agent(nats.nc, config(a));
  const taken = "taken-id-0000000000000001";
  await preempt(a, taken);
  const ids = [taken];
  const l = lossy();
  setHooks(ag, { newId: () => ids.shift() ?? crypto.randomUUID().replaceAll("-", ""), publish: l.publish });
  const rcpt = await ag.send({ capability: "read", target: "orders.status", plain: {} });
  assert.notEqual(rcpt.messageId, taken);
  assert.equal(rcpt.attempts, 2);
  assert.equal(l.rec.bodies.length, 2);
  assert.notEqual(l.rec.bodies[0], l.rec.bodies[1], "a re-issue is a new body");
  const msgs = await all();
  assert.equal(msgs.length, 2, "the other publisher's and ours");
  const e = checkIngress(msgs[1]!, a);
  assert.equal(e.messageId, rcpt.messageId);
  assert.equal(e.idempotencyKey, rcpt.messageId);
});

test("send: a duplicate ack after a no-responders attempt is a collision", async () => {
  // A no-responders attempt never reached a stream, so a duplicate ack on
  // the next attempt cannot be our own.
  await dropIngress();
  const a = newActor();
  const ag = new Agent(nats.nc, config(a));
  const taken = "taken-id-0000000000000002";
  let first = true;
  const l = lossy([], async (n) => {
    if (n === 2) {
      await ingressStream();
      await preempt(a, taken);
    }
  });
  setHooks(ag, {
    newId: () => {
      if (first) {
        first = false;
        return taken;
      }
      return crypto.randomUUID().replaceAll("-", "");
    },
    publish: l.publish,
  });
  const rcpt = await ag.send({ capability: "read", target: "orders.status", plain: {} });
  assert.notEqual(rcpt.messageId, taken);
  assert.equal(rcpt.attempts, 3);
});

test("send: every id taken is CollisionError, and nothing of ours is stored", async () => {
  await dropIngress();
  await ingressStream();
  const a = newActor();
  const ag = new Agent(nats.nc, config(a));
  const taken = "taken-id-0000000000000003";
  await preempt(a, taken);
  setHooks(ag, { newId: () => taken });
  await rejectsWith(ag.send({ capability: "read", target: "orders.status", plain: {} }), CollisionError);
  assert.equal((await all()).length, 1);
});

test("send: requests that cannot be sent are refused before publishing, without quoting the payload", async () => {
  const a = newActor();
  const ag = new Agent(nats.nc, config(a));
  const plainOnly = new Agent(nats.nc, config(a, { curve: undefined, gatewayXKey: undefined }));
  const cases: [string, Promise<unknown>][] = [
    ["no payload", ag.send({ capability: "read", target: "kb.search" })],
    ["both payloads", ag.send({ capability: "read", target: "kb.search", plain: {}, sealed: "x" })],
    ["unknown capability", ag.send({ capability: "exec" as any, target: "kb.search", plain: {} })],
    ["sealed without a curve key", plainOnly.send({ capability: "read", target: "kb.search", sealed: "secret-ish" })],
    ["plain not an object", ag.send({ capability: "read", target: "kb.search", plain: bytes(`["secret-ish"]`) })],
    ["plain with duplicates", ag.send({ capability: "read", target: "kb.search", plain: bytes(`{"a":"secret-ish","a":1}`) })],
    ["wildcard target", ag.send({ capability: "read", target: "kb.>", plain: {} })],
    ["negative ttl", ag.send({ capability: "read", target: "kb.search", plain: {}, ttlMs: -1 })],
  ];
  for (const [name, p] of cases) {
    const err = await rejectsWith(p, InvalidRequestError, name);
    assert.ok(!err.message.includes("secret-ish"), `${name}: ${err.message}`);
  }
  const ctl = new AbortController();
  ctl.abort(new Error("stop"));
  await assert.rejects(ag.send({ capability: "read", target: "kb.search", plain: {} }, { signal: ctl.signal }), /stop/);
});

test("Agent: a misconfiguration is refused up front, every problem at once", () => {
  const a = newActor();
  const b = newActor();
  const tooMany = (cfg: AgentConfig, ...want: RegExp[]) => {
    assert.throws(
      () => new Agent(nats.nc, cfg),
      (err: Error) => err instanceof ConfigError && want.every((re) => re.test(err.message)),
    );
  };
  tooMany(config(a, { credential: b.credential }), /subject is not the agent key/);
  tooMany(config(a, { curve: b.curve }), /not the credential's xkey/);
  tooMany(config(a, { tenant: "tenant_b", audience: "other" }), /tenant tenant_b/, /audience/);
  tooMany(config(a, { gatewayXKey: a.pub }), /gateway xkey/);
  tooMany(config(a, { maxAttempts: -1, retryWaitMs: -5 }), /max attempts/, /retry wait/);
  tooMany(config(a, { key: a.curve }), /user/);
  tooMany(config(a, { credential: "not.a.jwt" }), /compact nkey JWT/);
});

test("Agent: a credential naming its principal (nats.principal, from the token exchange) is read and sends", async () => {
  const kp = createUser();
  const curve = createCurve();
  const principal = "https://idp.example.com#user-1";
  const credential = issueCredential(issuer, { sub: kp.getPublicKey(), scopes: ["refund:draft"], xkey: curve.getPublicKey(), principal });
  const claims = peekCredential(credential);
  assert.equal(claims.principal, principal);
  assert.equal(claims.sub, kp.getPublicKey());
  assert.equal(peekCredential(newActor().credential).principal, "", "absent: empty");
  const ag = new Agent(nats.nc, { credential, key: kp, curve, gatewayXKey: gwCurve.publicKey, retryWaitMs: 10 });
  const r = await ag.send({ capability: "tool_call", target: "refunds.draft_refund", sealed: { order_id: "ord_p", amount_cents: 1 } });
  assert.match(r.messageId, /^[0-9a-f]{32}$/);
});

test("Agent: printed forms show public keys only", () => {
  const a = newActor();
  const ag = new Agent(nats.nc, config(a));
  const seed = dec.decode(a.kp.getSeed());
  for (const s of [String(ag), inspect(ag), JSON.stringify(ag), inspect(ag, { showHidden: true, depth: 5 })]) {
    assert.ok(!s.includes(a.credential.split(".")[1]!.slice(0, 30)), s);
    assert.ok(!s.includes(seed), s);
  }
  assert.ok(String(ag).includes(a.pub));
  const box = new Box(a.curve);
  const curveSeed = dec.decode(a.curve.getSeed());
  for (const s of [String(box), inspect(box, { showHidden: true, depth: 5 }), JSON.stringify({ box })]) {
    assert.ok(!s.includes(curveSeed) && !s.includes(curveSeed.slice(2, 20)), s);
  }
});
