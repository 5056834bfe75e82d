// How the consumer settles each decision once, against a real
// nats-server: a redelivery of a delivery whose handler succeeded is
// acknowledged, one whose handler still runs is left, one whose handler
// failed is handed over again; a lagging clock hands a live delivery
// back; consume ends with its connection. The Go SDK's
// consumer_settle_test.go, case for case.
import { test } from "node:test";
import assert from "node:assert/strict";
import { headers } from "@nats-io/transport-node";
import { jetstream, type JetStreamClient } from "@nats-io/jetstream";
import { Consumer, type ConsumerConfig, type ReceivedDelivery } from "../src/consumer.js";
import { StreamError } from "../src/errors.js";
import { setNoKeepAlive } from "../src/internal/hooks.js";
import { bound, bytes, consumeInBackground, Recorder, rejectsWith, sleep, waitFor } from "./helpers.js";
import { useNatsServer } from "./servers.js";
import { CLOCK, forward, newActor, newWorld, TARGET, TENANT } from "./world.js";

const nats = useNatsServer();
const w = newWorld();


/** capStream creates the capability stream afresh and publishes one genuine delivery of plain. */
async function capStream(plain: string): Promise<void> {
  try {
    await nats.jsm.streams.delete("AGENTGW_CAP");
  } catch {
    // absent
  }
  await nats.jsm.streams.add({ name: "AGENTGW_CAP", subjects: ["agentgw.cap.>"] });
  const m = forward({ w, a: newActor(), target: TARGET, plain: bytes(plain) });
  const h = headers();
  for (const [k, v] of m.headers) h.set(k, v);
  await nats.js.publish(m.subject, m.data, { headers: h });
}

/** waitSettled waits until the durable has nothing pending or unacknowledged and its acknowledged floor is floor. */
async function waitSettled(durable: string, floor: number): Promise<void> {
  await waitFor(`consumer ${durable} settled at ${floor}`, async () => {
    const info = await nats.jsm.consumers.info("AGENTGW_CAP", durable).catch(() => null); // null until consume created it
    return info !== null && info.num_pending === 0 && info.num_ack_pending === 0 && info.ack_floor.stream_seq === floor;
  });
}

/** plainConsumer is a Consumer of TARGET on durable, at the clock now, reporting to r. */
function plainConsumer(durable: string, r: Recorder, now: Date, over: Partial<ConsumerConfig> = {}, through: JetStreamClient = nats.js): Consumer {
  return new Consumer(through, {
    tenant: TENANT,
    targets: [TARGET],
    trustedGateways: [w.gwKey],
    durable,
    onReject: r.reject,
    clock: () => now,
    ...over,
  });
}

test("consume: a handler that runs past AckWait and then succeeds sees the decision once; its redelivery is left to the running handler or acknowledged, never handed over again", { timeout: 60_000 }, async (t) => {
  await capStream(`{"refund":"R-1"}`);
  const r = new Recorder();
  const ctl = new AbortController();
  t.after(() => ctl.abort()); // on a failure too: no consume left running
  // Two slots: a second is free while the handler runs, so the
  // redelivery reaches this consumer and is handed to no handler.
  const c = plainConsumer("slow", r, CLOCK, { ackWaitMs: 1_000, concurrency: 2 });
  setNoKeepAlive(c); // its in-progress word lost
  let redelivered = false;
  const serving = c.consume(
    async (d) => {
      r.handle(d);
      // Resolve only once JetStream has redelivered the message.
      while (!ctl.signal.aborted) {
        const info = await nats.jsm.consumers.info("AGENTGW_CAP", "slow").catch(() => null);
        if (info !== null && info.num_redelivered > 0) {
          redelivered = true;
          return;
        }
        await sleep(20);
      }
    },
    { signal: ctl.signal },
  );
  await waitSettled("slow", 1);
  // The redelivery reaches the consumer while the handler runs (left to
  // it) or after its ack (acknowledged): a moment for it to be read and
  // settled.
  await sleep(500);
  ctl.abort();
  await serving;
  assert.ok(redelivered, "JetStream redelivered the message while the handler ran");
  assert.equal(r.calls.length, 1, `handler called ${r.calls.length} times; want once: the redelivery came after it had succeeded`);
  assert.deepEqual(r.rejected, []);
});

test("consume: a handler that runs three times AckWait keeps its delivery in progress; JetStream does not redeliver it", { timeout: 60_000 }, async (t) => {
  await capStream(`{"refund":"R-7"}`);
  const r = new Recorder();
  const ctl = new AbortController();
  t.after(() => ctl.abort());
  const c = plainConsumer("slow-kept", r, CLOCK, { ackWaitMs: 1_000 });
  let redelivered = -1;
  const serving = c.consume(
    async (d) => {
      r.handle(d);
      await sleep(3_000);
      const info = await nats.jsm.consumers.info("AGENTGW_CAP", "slow-kept");
      redelivered = info.num_redelivered;
    },
    { signal: ctl.signal },
  );
  await waitSettled("slow-kept", 1);
  ctl.abort();
  await serving;
  assert.equal(redelivered, 0, `${redelivered} redelivered while the handler ran 3 × AckWait; want none`);
  assert.equal(r.calls.length, 1);
});

test("consume: a decision whose handler failed is handed over again by a durable deleted and created again, not refused as a duplicate", { timeout: 60_000 }, async () => {
  await capStream(`{"refund":"R-2"}`);
  const r = new Recorder(1);
  const c = plainConsumer("again", r, CLOCK, { nakDelayMs: 3_600_000 });
  let stop = consumeInBackground(c, r);
  await waitFor("the handler called", () => r.calls.length === 1);
  await stop();
  await nats.jsm.consumers.delete("AGENTGW_CAP", "again");
  stop = consumeInBackground(c, r); // creates "again" anew
  await waitSettled("again", 1);
  await stop();
  assert.equal(r.calls.length, 2, `handler called ${r.calls.length} times; want 2, the second one handling it (rejections: ${r.rejected.map((e) => e.reason)})`);
  assert.deepEqual(r.rejected, [], "nothing rejected");
});

test("consume: to a consumer whose clock runs a minute behind, a live delivery is handed back and reported, not terminated; one whose clock is right handles it", { timeout: 60_000 }, async () => {
  await capStream(`{"refund":"R-3"}`);
  const behind = new Recorder();
  let stop = consumeInBackground(plainConsumer("shared", behind, new Date(CLOCK.getTime() - 60_000), { nakDelayMs: 100 }), behind);
  await waitFor("the lagging consumer to report", () => behind.rejections("decision_token_invalid") > 0);
  await stop();
  const right = new Recorder();
  stop = consumeInBackground(plainConsumer("shared", right, CLOCK), right);
  await waitSettled("shared", 1);
  // Before stopping: a delivery terminated for good settles the durable
  // at once, maybe before the right consumer reads.
  assert.equal(right.calls.length, 1, `the right consumer handled it ${right.calls.length} times; want once: it was handed back, not terminated`);
  await stop();
  assert.equal(behind.calls.length, 0, "the lagging consumer handled it");
  assert.ok(
    behind.rejected.every((e) => e.reason === "decision_token_invalid"),
    `the lagging consumer's rejections: ${behind.rejected.map((e) => e.reason)}`,
  );
  assert.equal(right.calls.length, 1, "the right consumer handled it again");
  assert.deepEqual(right.rejected, []);
});

test("consume: rejects with a StreamError once its connection is closed", { timeout: 60_000 }, async (t) => {
  await capStream(`{"refund":"R-4"}`);
  const own = await nats.srv.connect();
  t.after(() => own.close());
  const r = new Recorder();
  const c = plainConsumer("closing", r, CLOCK, {}, jetstream(own));
  const ctl = new AbortController();
  t.after(() => ctl.abort()); // on a failure: no consume left running
  const serving = c.consume(r.handle, { signal: ctl.signal });
  await waitSettled("closing", 1); // created, and its one message handled
  await own.close();
  const done = await Promise.race([rejectsWith(serving, StreamError, "consume after its connection closed").then(() => true), bound(15_000).then(() => false)]);
  assert.ok(done, "consume did not settle after its connection closed");
  assert.equal(r.calls.length, 1);
});

test("deliveries: throws a StreamError once its connection is closed", { timeout: 60_000 }, async (t) => {
  await capStream(`{"refund":"R-5"}`);
  const own = await nats.srv.connect();
  t.after(() => own.close());
  const c = plainConsumer("closing-iter", new Recorder(), CLOCK, {}, jetstream(own));
  const it = c.deliveries();
  const first = await it.next();
  assert.equal(first.done, false);
  first.value!.ack();
  await waitSettled("closing-iter", 1);
  await own.close();
  await rejectsWith(it.next(), StreamError, "the next delivery after the connection closed");
});

test("deliveries: a delivery the reading loop leaves unsettled when it stops is handed over again when it comes back", { timeout: 60_000 }, async () => {
  await capStream(`{"refund":"R-6"}`);
  const r = new Recorder();
  const c = plainConsumer("left", r, CLOCK, { ackWaitMs: 1_000 });
  let first: ReceivedDelivery | undefined;
  for await (const d of c.deliveries()) {
    first = d;
    break; // not settled
  }
  assert.ok(first);
  assert.equal(first.settled, false);
  let again: ReceivedDelivery | undefined;
  for await (const d of c.deliveries({ signal: AbortSignal.timeout(15_000) })) {
    again = d;
    d.ack();
    break;
  }
  assert.ok(again, "not handed over again after AckWait");
  assert.equal(again.messageId, first.messageId);
  assert.equal(again.redelivered, true);
  assert.deepEqual(r.rejected, []);
  await waitSettled("left", 1);
});
