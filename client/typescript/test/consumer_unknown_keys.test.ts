// handBackUnknownKeys against a real nats-server: a delivery a reader of
// a shared durable refuses only for want of a key (a gateway it does not
// trust, a curve key it lacks) is handed back for the readers that have
// the key; without the option, on an ephemeral consumer, and for every
// other refusal, it is terminated. The Go SDK's
// ConsumerConfig.HandBackUnknownKeys.
import { test } from "node:test";
import assert from "node:assert/strict";
import { headers } from "@nats-io/transport-node";
import type { ConsumerInfo } from "@nats-io/jetstream";
import { createServer } from "@nats-io/nkeys";
import { Consumer, type ConsumerConfig } from "../src/consumer.js";
import { bytes, consumeInBackground, dec, Recorder, sleep, waitFor } from "./helpers.js";
import { useNatsServer } from "./servers.js";
import { CLOCK, forward, newActor, newWorld, TARGET, TENANT, type Msg } from "./world.js";

const nats = useNatsServer();
const w = newWorld();
/** A gateway key the misconfigured readers trust instead of w's. */
const otherGW = createServer().getPublicKey();


/** capStream creates the capability stream afresh and publishes msgs, in order (stream sequences 1, 2, …). */
async function capStream(...msgs: Msg[]): Promise<void> {
  try {
    await nats.jsm.streams.delete("AGENTGW_CAP");
  } catch {
    // absent
  }
  await nats.jsm.streams.add({ name: "AGENTGW_CAP", subjects: ["agentgw.cap.>"] });
  for (const m of msgs) {
    const h = headers();
    for (const [k, v] of m.headers) h.set(k, v);
    await nats.js.publish(m.subject, m.data, { headers: h });
  }
}

function info(durable: string): Promise<ConsumerInfo> {
  return nats.jsm.consumers.info("AGENTGW_CAP", durable);
}

/** waitSettled waits until the durable has nothing pending or unacknowledged and its acknowledged floor is floor. */
async function waitSettled(durable: string, floor: number): Promise<ConsumerInfo> {
  let last: ConsumerInfo | null = null;
  await waitFor(`consumer ${durable} settled at ${floor}`, async () => {
    last = await info(durable).catch(() => null); // null until consume created it
    return last !== null && last.num_pending === 0 && last.num_ack_pending === 0 && last.ack_floor.stream_seq === floor;
  });
  return last!;
}

/** reader is a Consumer of TARGET on durable at CLOCK, trusting w's gateway key unless over says otherwise. */
function reader(durable: string, r: Recorder, over: Partial<ConsumerConfig> = {}): Consumer {
  return new Consumer(nats.js, {
    tenant: TENANT,
    targets: [TARGET],
    trustedGateways: [w.gwKey],
    durable,
    ackWaitMs: 2_000,
    nakDelayMs: 100,
    onReject: r.reject,
    clock: () => CLOCK,
    ...over,
  });
}

/**
 * handedBack runs a misconfigured reader on durable until it has refused
 * the delivery at stream sequence 1 twice (it came back), and checks
 * through the durable that it was never acknowledged or terminated; then
 * a correctly configured reader on the durable handles it.
 */
async function handedBack(durable: string, wrong: Partial<ConsumerConfig>, right: Partial<ConsumerConfig>, reason: string): Promise<void> {
  const bad = new Recorder();
  let stop = consumeInBackground(reader(durable, bad, { ...wrong, handBackUnknownKeys: true }), bad);
  try {
    await waitFor("the misconfigured reader to refuse the delivery twice", () => bad.rejected.length >= 2);
    const i = await info(durable);
    assert.ok(i.num_redelivered > 0, `num_redelivered ${i.num_redelivered}; want the delivery redelivered`);
    assert.equal(i.ack_floor.stream_seq, 0, "the ack floor passed the handed-back delivery");
  } finally {
    await stop();
  }
  assert.equal(bad.calls.length, 0, "the misconfigured reader handled it");
  for (const e of bad.rejected) {
    assert.equal(e.reason, reason, e.message);
    assert.equal(e.unknownKey, true, e.message);
  }
  const good = new Recorder();
  stop = consumeInBackground(reader(durable, good, right), good);
  try {
    await waitSettled(durable, 1);
    assert.equal(good.calls.length, 1, `the right reader handled it ${good.calls.length} times; want once (rejections: ${good.rejected.map((e) => e.reason)})`);
  } finally {
    await stop();
  }
  assert.deepEqual(good.rejected, []);
}

test("consume: with handBackUnknownKeys, a delivery signed by a gateway the reader does not trust is handed back and reported; a reader that trusts it handles it", { timeout: 60_000 }, async () => {
  await capStream(forward({ w, a: newActor(), target: TARGET, plain: bytes(`{"refund":"U-1"}`) }));
  await handedBack("untrusted-gw", { trustedGateways: [otherGW] }, {}, "decision_token_invalid");
});

test("consume: with handBackUnknownKeys, a re-sealed delivery to a reader without a curve key is handed back; the reader with the key handles it", { timeout: 60_000 }, async () => {
  const ck = newActor();
  await capStream(forward({ w, a: newActor(), target: TARGET, plain: bytes(`{"refund":"U-2"}`), sealed: true, consumer: ck.box }));
  await handedBack("no-curve", {}, { curve: ck.curve }, "seal_broken");
});

test("consume: without handBackUnknownKeys, a delivery signed by a gateway the reader does not trust is terminated", { timeout: 60_000 }, async () => {
  await capStream(forward({ w, a: newActor(), target: TARGET, plain: bytes(`{"refund":"U-3"}`) }));
  const r = new Recorder();
  const stop = consumeInBackground(reader("untrusted-term", r, { trustedGateways: [otherGW] }), r);
  let i: ConsumerInfo;
  try {
    // Terminated: the ack floor passes it, nothing is left to deliver
    // to any reader of the durable, and it never came back.
    i = await waitSettled("untrusted-term", 1);
  } finally {
    await stop();
  }
  assert.equal(i.num_redelivered, 0);
  assert.equal(i.delivered.stream_seq, 1);
  assert.equal(r.calls.length, 0);
  assert.equal(r.rejected.length, 1);
  assert.equal(r.rejected[0]!.reason, "decision_token_invalid");
  assert.equal(r.rejected[0]!.unknownKey, true, "reported as an unknown key, terminated all the same");
});

test("consume: with handBackUnknownKeys, an ephemeral consumer terminates a delivery signed by a gateway it does not trust: no one else reads it", { timeout: 60_000 }, async () => {
  await capStream(forward({ w, a: newActor(), target: TARGET, plain: bytes(`{"refund":"U-6"}`) }));
  const terminated: number[] = [];
  const sub = nats.nc.subscribe("$JS.EVENT.ADVISORY.CONSUMER.MSG_TERMINATED.AGENTGW_CAP.*", {
    callback: (_err, m) => void terminated.push((JSON.parse(dec.decode(m.data)) as { stream_seq: number }).stream_seq),
  });
  await nats.nc.flush();
  const r = new Recorder();
  // No durable name: an ephemeral consumer.
  const stop = consumeInBackground(reader("", r, { trustedGateways: [otherGW], handBackUnknownKeys: true, nakDelayMs: 50 }), r);
  try {
    await waitFor("the ephemeral consumer to terminate the delivery", () => terminated.length > 0);
    // Handed back, it would come back every 50 ms: about 20 refusals in 1 s.
    await sleep(1_000);
  } finally {
    await stop();
    sub.unsubscribe();
  }
  assert.deepEqual(terminated, [1]);
  assert.equal(r.calls.length, 0);
  assert.equal(r.rejected.length, 1, `refused ${r.rejected.length} times; want once (terminated, not handed back)`);
  assert.equal(r.rejected[0]!.reason, "decision_token_invalid");
  assert.equal(r.rejected[0]!.unknownKey, true);
});

test("consume: with handBackUnknownKeys, a trusted gateway's token with a broken body digest or signature is still terminated", { timeout: 60_000 }, async () => {
  const altered = forward({ w, a: newActor(), target: TARGET, plain: bytes(`{"refund":"U-4"}`) });
  await capStream(
    { ...altered, data: bytes(dec.decode(altered.data).replace(`"idem-1"`, `"idem-2"`)) },
    forward({ w, a: newActor(), target: TARGET, plain: bytes(`{"refund":"U-5"}`), signer: createServer(), issuer: w.gwKey }),
  );
  const r = new Recorder();
  const stop = consumeInBackground(reader("forged", r, { handBackUnknownKeys: true }), r);
  let i: ConsumerInfo;
  try {
    i = await waitSettled("forged", 2);
  } finally {
    await stop();
  }
  assert.equal(i.num_redelivered, 0, "a forgery was handed back");
  assert.equal(r.calls.length, 0);
  assert.deepEqual(
    r.rejected.map((e) => [e.reason, e.unknownKey]),
    [
      ["decision_token_binding", false],
      ["decision_token_invalid", false],
    ],
  );
});
