// The consumer against a real nats-server: forged messages are
// terminated with their reason and never handed out, genuine ones are,
// once each; a handler error hands the message back. The Go SDK's
// consumer tests, case for case, plus de-duplication.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createAccount, createCurve, createUser, type KeyPair } from "@nats-io/nkeys";
import { headers } from "@nats-io/transport-node";
import { AckPolicy } from "@nats-io/jetstream";
import { Agent } from "../src/agent.js";
import { Consumer, type ConsumerConfig, type ReceivedDelivery } from "../src/consumer.js";
import { ConfigError, StreamError, VerificationError } from "../src/errors.js";
import { Box } from "../src/keys.js";
import type { Delivery } from "../src/verify.js";
import { bytes, dec, rejectsWith, waitFor } from "./helpers.js";
import { useNatsServer } from "./servers.js";
import { CLOCK, editDoc, forward, issueCredential, newActor, newWorld, TARGET, TENANT, type Msg } from "./world.js";

const nats = useNatsServer();
const w = newWorld();

async function capStream(): Promise<void> {
  try {
    await nats.jsm.streams.delete("AGENTGW_CAP");
  } catch {
    // absent
  }
  await nats.jsm.streams.add({ name: "AGENTGW_CAP", subjects: ["agentgw.cap.>"] });
}

async function publish(m: Msg, msgID?: string): Promise<void> {
  const h = headers();
  for (const [k, v] of m.headers) h.set(k, v);
  await nats.js.publish(m.subject, m.data, msgID ? { headers: h, msgID } : { headers: h });
}

function config(curve: KeyPair | undefined, over: Partial<ConsumerConfig> = {}): ConsumerConfig {
  return {
    tenant: TENANT,
    targets: [TARGET],
    trustedGateways: [w.gwKey],
    ...(curve ? { curve } : {}),
    clock: () => CLOCK,
    ...over,
  };
}

test("consume: a forgery is terminated with its reason, the genuine message is handled after a nak", async () => {
  await capStream();
  const a = newActor();
  const ck = createCurve();
  const plaintext = `{"order":"A-1"}`;
  const genuine = () => forward({ w, a, target: TARGET, plain: bytes(plaintext), sealed: true, consumer: new Box(ck) });
  // A genuine message whose token was stripped, as if published to agentgw.cap.> without the gateway.
  const forged = editDoc(genuine(), (d) => (d.decision = ""));
  await publish(forged);
  await publish(genuine());

  const rejected: [string, VerificationError][] = [];
  const got: Delivery[] = [];
  let calls = 0;
  const ctl = new AbortController();
  const c = new Consumer(nats.js, config(ck, { durable: "refunds", onReject: (s, e) => rejected.push([s, e]) }));
  await c.consume(
    (d) => {
      calls++;
      if (calls === 1) {
        throw new Error("transient"); // nak: must come back
      }
      got.push(d);
      ctl.abort();
    },
    { signal: ctl.signal },
  );
  assert.equal(calls, 2, "handled twice: once failing, once after redelivery");
  assert.equal(got.length, 1);
  assert.equal(got[0]!.string(), plaintext);
  assert.equal(rejected.length, 1);
  assert.equal(rejected[0]![0], forged.subject);
  assert.equal(rejected[0]![1].reason, "decision_token_missing");

  // Terminated and acknowledged: nothing pending, nothing to redeliver.
  await waitFor("the consumer to settle", async () => {
    const info = await nats.jsm.consumers.info("AGENTGW_CAP", "refunds");
    return info.num_pending === 0 && info.num_ack_pending === 0 && info.ack_floor.stream_seq === 2;
  });
});

test("consume: a copy re-published under a new Nats-Msg-Id is terminated as a duplicate; after a nak the decision is handed over once more, from the redelivery or the copy", async () => {
  await capStream();
  const a = newActor();
  const ck = createCurve();
  const genuine = forward({ w, a, target: TARGET, plain: bytes(`{"order":"C-3"}`), sealed: true, consumer: new Box(ck) });
  await publish(genuine, "agw-output-1"); // seq 1
  // The same subject, headers and bytes stored again, past JetStream's
  // de-duplication: the same decision token at another stream sequence.
  await publish(genuine, "republished-copy-2"); // seq 2
  const calls: { messageId: string; seq: number; redelivered: boolean }[] = [];
  const rejected: [string, VerificationError][] = [];
  const ctl = new AbortController();
  const c = new Consumer(nats.js, config(ck, { durable: "refunds", onReject: (s, e) => rejected.push([s, e]) }));
  const serving = c.consume(
    (d) => {
      calls.push({ messageId: d.messageId, seq: d.seq, redelivered: d.redelivered });
      if (calls.length === 1) {
        throw new Error("transient"); // nak: handed over once more
      }
    },
    { signal: ctl.signal },
  );
  await waitFor("the consumer to settle", async () => {
    const info = await nats.jsm.consumers.info("AGENTGW_CAP", "refunds").catch(() => null); // null until consume created it
    return info !== null && calls.length === 2 && info.num_pending === 0 && info.num_ack_pending === 0 && info.ack_floor.stream_seq === 2;
  });
  ctl.abort();
  await serving;
  // Seq 1, nak'd, then its redelivery or the copy at seq 2, whichever
  // comes first; the other is terminated as a duplicate.
  assert.deepEqual(calls[0] && [calls[0].seq, calls[0].redelivered], [1, false], "seq 1 first");
  assert.ok(
    calls.length === 2 && [`1,true`, `2,false`].includes(`${calls[1]!.seq},${calls[1]!.redelivered}`),
    `calls ${JSON.stringify(calls.map((x) => [x.seq, x.redelivered]))}; want seq 1, then its redelivery or the copy`,
  );
  assert.equal(rejected.length, 1);
  assert.equal(rejected[0]![0], genuine.subject);
  assert.equal(rejected[0]![1].reason, "decision_token_duplicate");
});

test("consume: a durable deleted and created again does not hand over a handled message again", async () => {
  await capStream();
  const a = newActor();
  await publish(forward({ w, a, target: TARGET, plain: bytes(`{"refund":"R-9"}`) }));
  const handled: string[] = [];
  const rejected: string[] = [];
  const c = new Consumer(nats.js, config(undefined, { durable: "recreated", onReject: (_s, e) => rejected.push(e.reason) }));
  const settled = async (): Promise<boolean> => {
    const info = await nats.jsm.consumers.info("AGENTGW_CAP", "recreated").catch(() => null);
    return info !== null && info.num_pending === 0 && info.num_ack_pending === 0 && info.ack_floor.stream_seq === 1;
  };
  let ctl = new AbortController();
  let serving = c.consume((d) => void handled.push(d.string()), { signal: ctl.signal });
  await waitFor("the message handled and acknowledged", async () => handled.length === 1 && (await settled()));
  ctl.abort();
  await serving;
  await nats.jsm.consumers.delete("AGENTGW_CAP", "recreated");

  ctl = new AbortController();
  serving = c.consume((d) => void handled.push(d.string()), { signal: ctl.signal }); // creates "recreated" again
  await waitFor("the durable created again to settle", async () => rejected.length === 1 && (await settled()));
  ctl.abort();
  await serving;
  assert.deepEqual(handled, [`{"refund":"R-9"}`], "handled once: the durable created again delivers it again");
  assert.deepEqual(rejected, ["decision_token_duplicate"]);
});

test("consume: after a clock reading that was ahead, a delivery verifying now is handed back or handled, never terminated", async () => {
  await capStream();
  const a = newActor();
  const expiring = (ms: number): Msg =>
    forward({ w, a, target: TARGET, plain: bytes(`{"ms":${ms}}`), edit: (c) => (c.exp = Math.floor((CLOCK.getTime() + ms) / 1000)) });
  let now = CLOCK;
  const at = (ms: number): void => {
    now = new Date(CLOCK.getTime() + ms);
  };
  const settled = (floor: number) => async (): Promise<boolean> => {
    const info = await nats.jsm.consumers.info("AGENTGW_CAP", "ahead").catch(() => null);
    return info !== null && info.num_pending === 0 && info.num_ack_pending === 0 && info.ack_floor.stream_seq === floor;
  };
  const handled: string[] = [];
  const rejected: string[] = [];
  const cfg = config(undefined, { durable: "ahead", nakDelayMs: 20, clock: () => now, onReject: (_s, e) => rejected.push(e.reason) });
  let ctl = new AbortController();
  let serving = new Consumer(nats.js, cfg).consume((d) => void handled.push(d.string()), { signal: ctl.signal });
  await publish(expiring(60_000), "seq-1"); // handled at CLOCK
  await waitFor("seq 1 handled", settled(1));
  at(600_000); // ahead
  await publish(expiring(3_600_000), "seq-2"); // its reading drops seq 1's token
  await waitFor("seq 2 handled", settled(2));
  at(1_000); // back
  await publish(expiring(60_000), "seq-3"); // expires with seq 1's token
  await publish(expiring(300_000), "seq-4"); // later than every dropped entry
  await waitFor("seq 3 handed back twice and seq 4 handled", () => rejected.length >= 2 && handled.length === 3);
  ctl.abort();
  await serving;
  assert.deepEqual(handled, [`{"ms":60000}`, `{"ms":3600000}`, `{"ms":300000}`]);
  assert.ok(
    rejected.every((r) => r === "decision_token_expired"),
    `rejections ${rejected}`,
  );

  // Not terminated: a Consumer with a fresh record handles seq 3.
  handled.length = 0;
  rejected.length = 0;
  ctl = new AbortController();
  serving = new Consumer(nats.js, cfg).consume((d) => void handled.push(d.string()), { signal: ctl.signal });
  await waitFor("seq 3 handled by a fresh record", settled(4));
  ctl.abort();
  await serving;
  assert.deepEqual(handled, [`{"ms":60000}`]);
  assert.deepEqual(rejected, []);
});

test("consume: with the token record full a new delivery is handed back, not handed over, until a token expires", async () => {
  await capStream();
  const a = newActor();
  const first = forward({ w, a, target: TARGET, plain: bytes(`{"n":1}`) }); // expires at CLOCK + 1 m
  const second = forward({ w, a, target: TARGET, plain: bytes(`{"n":2}`), edit: (c) => (c.exp = Math.floor(CLOCK.getTime() / 1000) + 600) });
  await publish(first, "out-1");
  await publish(second, "out-2");
  let now = CLOCK;
  const handled: string[] = [];
  const rejected: string[] = [];
  const ctl = new AbortController();
  const c = new Consumer(
    nats.js,
    config(undefined, { durable: "full", maxTokens: 1, nakDelayMs: 20, clock: () => now, onReject: (_s, e) => rejected.push(e.reason) }),
  );
  const serving = c.consume((d) => void handled.push(d.string()), { signal: ctl.signal });
  await waitFor("the second delivery refused twice (handed back, not terminated)", () => rejected.length >= 2);
  assert.deepEqual(handled, [`{"n":1}`], "only the first while the record is full");
  // The first token expires (1 m + 30 s skew): room for the second.
  now = new Date(CLOCK.getTime() + 120_000);
  await waitFor("the consumer to settle", async () => {
    const info = await nats.jsm.consumers.info("AGENTGW_CAP", "full").catch(() => null);
    return info !== null && handled.length === 2 && info.num_pending === 0 && info.num_ack_pending === 0 && info.ack_floor.stream_seq === 2;
  });
  ctl.abort();
  await serving;
  assert.deepEqual(handled, [`{"n":1}`, `{"n":2}`]);
  assert.ok(
    rejected.every((r) => r === "decision_token_record_full"),
    `rejections ${rejected}`,
  );
});

test("deliveries: an unsettled delivery stays with the reader; ack and nak settle once", async () => {
  await capStream();
  const a = newActor();
  await publish(forward({ w, a, target: TARGET, plain: bytes(`{"n":3}`) }));
  const c = new Consumer(nats.js, config(undefined, { durable: "settle" }));
  let first: ReceivedDelivery | undefined;
  for await (const d of c.deliveries()) {
    first = d;
    assert.equal(d.settled, false);
    assert.equal(d.redelivered, false);
    d.nak();
    d.ack(); // no effect: already settled
    assert.equal(d.settled, true);
    break;
  }
  assert.ok(first);
  for await (const d of c.deliveries()) {
    assert.equal(d.redelivered, true, "the nak handed it back");
    assert.equal(d.messageId, first.messageId);
    d.ack();
    break;
  }
});

test("consume: a missing stream is a StreamError", async () => {
  try {
    await nats.jsm.streams.delete("AGENTGW_CAP");
  } catch {
    // absent
  }
  const c = new Consumer(nats.js, config(undefined));
  await rejectsWith(c.consume(() => {}), StreamError);
});

test("Consumer: a misconfiguration is a ConfigError", () => {
  const cases: [string, Partial<ConsumerConfig>][] = [
    ["no tenant", { tenant: "" }],
    ["wildcard target", { targets: ["refunds.>"] }],
    ["no targets", { targets: [] }],
    ["no gateways", { trustedGateways: [] }],
    ["user key as gateway", { trustedGateways: [createUser().getPublicKey()] }],
    ["negative skew", { skewMs: -1000 }],
    ["agent key as curve", { curve: createUser() }],
    ["bind without a durable", { bind: true }],
    ["negative max tokens", { maxTokens: -1 }],
    ["fractional max tokens", { maxTokens: 1.5 }],
  ];
  for (const [name, over] of cases) {
    assert.throws(() => new Consumer(nats.js, config(undefined, over)), ConfigError, name);
  }
  new Consumer(nats.js, config(createCurve()));
});

test("Consumer: a responder whose curve key is not the consumer's is a ConfigError", () => {
  // The gateway takes an answer only sealed from the key the request was
  // delivered under (the target's consumer_xkey): wrong_responder.
  const responder = (curve: KeyPair): Agent => {
    const kp = createUser();
    const xkey = curve.getPublicKey();
    const credential = issueCredential(createAccount(), { sub: kp.getPublicKey(), scopes: [`respond:${TARGET}`], xkey });
    return new Agent(nats.nc, { credential, key: kp, curve, gatewayXKey: w.gwCurve.publicKey });
  };
  const ck = createCurve();
  const other = createCurve();
  assert.throws(() => new Consumer(nats.js, config(ck, { responder: responder(other) })), (err: unknown) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /responder's curve key/);
    assert.doesNotMatch(err.message, new RegExp(dec.decode(ck.getSeed())));
    return true;
  });
  new Consumer(nats.js, config(ck, { responder: responder(ck) }));
  // Without a curve key the consumer reads plain targets only: nothing to bind.
  new Consumer(nats.js, config(undefined, { responder: responder(other) }));
});

test("consume: with bind, the consumer uses an administrator's durable and never creates one", async () => {
  await capStream();
  const a = newActor();
  const ck = createCurve();
  await publish(forward({ w, a, target: TARGET, plain: bytes(`{"order":"B-2"}`), sealed: true, consumer: new Box(ck) }));
  const c = new Consumer(nats.js, config(ck, { durable: "admin-made", bind: true }));
  await rejectsWith(c.consume(() => {}), StreamError, "bound before the durable exists");
  await assert.rejects(nats.jsm.consumers.info("AGENTGW_CAP", "admin-made"), "a binding consumer created its durable");
  await nats.jsm.consumers.add("AGENTGW_CAP", { durable_name: "admin-made", filter_subject: `agentgw.cap.${TENANT}.${TARGET}`, ack_policy: AckPolicy.Explicit });
  const ctl = new AbortController();
  let got = "";
  await c.consume(
    (d) => {
      got = d.string();
      ctl.abort();
    },
    { signal: ctl.signal },
  );
  assert.equal(got, `{"order":"B-2"}`);
  assert.equal(dec.decode(bytes(got)), `{"order":"B-2"}`);
});
