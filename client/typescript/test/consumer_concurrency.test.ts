// ConsumerConfig.concurrency against a real nats-server: consume holds up
// to that many handler calls at once and never more, settles each
// delivery when its own handler settles, and on abort hands over nothing
// further and resolves once the handlers in flight are done. The Go SDK's
// TestConsumeHandsOverConcurrently, and what the Go SDK's Consume does on
// a done context and a handler error with Concurrency above one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { headers } from "@nats-io/transport-node";
import { Consumer, MAX_CONCURRENCY, type ConsumerConfig } from "../src/consumer.js";
import { ConfigError } from "../src/errors.js";
import { bound, bytes, sleep, waitFor } from "./helpers.js";
import { useNatsServer } from "./servers.js";
import { CLOCK, forward, newActor, newWorld, TARGET, TENANT } from "./world.js";

const nats = useNatsServer();
const w = newWorld();

/** capStream creates the capability stream afresh and publishes n genuine deliveries, payloads {"i":0} to {"i":n-1}. */
async function capStream(n: number): Promise<void> {
  try {
    await nats.jsm.streams.delete("AGENTGW_CAP");
  } catch {
    // absent
  }
  await nats.jsm.streams.add({ name: "AGENTGW_CAP", subjects: ["agentgw.cap.>"] });
  const a = newActor();
  for (let i = 0; i < n; i++) {
    const m = forward({ w, a, target: TARGET, plain: bytes(`{"i":${i}}`) });
    const h = headers();
    for (const [k, v] of m.headers) h.set(k, v);
    await nats.js.publish(m.subject, m.data, { headers: h });
  }
}

function config(over: Partial<ConsumerConfig> = {}): ConsumerConfig {
  return { tenant: TENANT, targets: [TARGET], trustedGateways: [w.gwKey], clock: () => CLOCK, ...over };
}


/** state reads the durable's counts: not yet delivered, delivered and not acknowledged, and the acknowledged floor. */
async function state(durable: string): Promise<{ pending: number; ackPending: number; floor: number } | null> {
  const info = await nats.jsm.consumers.info("AGENTGW_CAP", durable).catch(() => null); // null until consume created it
  return info && { pending: info.num_pending, ackPending: info.num_ack_pending, floor: info.ack_floor.stream_seq };
}

/** gate returns a promise and the function that resolves it. */
function gate(): [Promise<void>, () => void] {
  let open!: () => void;
  const p = new Promise<void>((r) => (open = r));
  return [p, open];
}

test("consume: with concurrency 4 the handler holds four deliveries at once, never more, and every one is acknowledged", { timeout: 60_000 }, async (t) => {
  const n = 10;
  const concurrency = 4;
  await capStream(n);
  let active = 0;
  let top = 0;
  let calls = 0;
  const handled = new Set<string>();
  const sawFour: boolean[] = []; // for each of the first four calls: whether four ran at once before its wait ended
  const [full, fill] = gate();
  let isFull = false;
  const ctl = new AbortController();
  t.after(() => ctl.abort()); // on a failure too: no consume left running
  const c = new Consumer(nats.js, config({ durable: "concurrent", concurrency }));
  const serving = c.consume(
    async (d) => {
      const call = ++calls;
      active++;
      top = Math.max(top, active);
      if (active === concurrency && handled.size === 0) {
        isFull = true;
        fill();
      }
      if (call <= concurrency) {
        // One at a time this never fills: the wait ends on its timeout, with one running.
        await Promise.race([full, bound(2_000)]);
        sawFour.push(isFull);
      }
      active--;
      handled.add(d.string());
      if (handled.size === n) {
        ctl.abort();
      }
    },
    { signal: ctl.signal },
  );
  let done = false;
  await Promise.race([serving.then(() => (done = true)), bound(30_000)]);
  ctl.abort();
  assert.ok(done, `deliveries never all handled: ${handled.size} of ${n}, at most ${top} at once`);
  assert.equal(top, concurrency, `at most ${top} handler calls at once; want ${concurrency}`);
  assert.deepEqual(sawFour, [true, true, true, true], "each of the first four calls waits until four run");
  assert.equal(handled.size, n, "every delivery handled");
  await waitFor("every delivery acknowledged", async () => {
    const s = await state("concurrent");
    return s !== null && s.pending === 0 && s.ackPending === 0 && s.floor === n;
  });
});

test("consume: on abort no further delivery is handed over, and consume resolves only after the handlers in flight finish", { timeout: 60_000 }, async (t) => {
  await capStream(5);
  const [release, open] = gate();
  const started: string[] = [];
  let finished = 0;
  const ctl = new AbortController();
  const again = new AbortController();
  t.after(() => {
    // On a failure too: no consume left running, no handler left waiting.
    open();
    ctl.abort();
    again.abort();
  });
  const c = new Consumer(nats.js, config({ durable: "aborted", concurrency: 2, ackWaitMs: 2_000 }));
  let resolved = false;
  const serving = c
    .consume(
      async (d) => {
        started.push(d.string());
        await release;
        finished++;
      },
      { signal: ctl.signal },
    )
    .then(() => {
      resolved = true;
    });
  await waitFor("two handler calls running", () => started.length === 2);
  ctl.abort();
  await sleep(300);
  assert.equal(resolved, false, "consume resolved while its handlers run");
  open();
  await serving;
  assert.equal(finished, 2, "consume resolved before its handlers finished");
  assert.deepEqual(started, [`{"i":0}`, `{"i":1}`], "only the first two handed over");
  // The two handled are acknowledged; the other three are left as they
  // were: delivered to the buffer and unacknowledged, or not delivered.
  await waitFor("the handled two acknowledged", async () => (await state("aborted"))?.floor === 2);
  const s = await state("aborted");
  assert.ok(s !== null);
  assert.equal(s.pending + s.ackPending, 3, `pending ${s.pending}, ack pending ${s.ackPending}; want 3 unacknowledged`);

  // They come back (after AckWait if they were in the buffer) and are handed over.
  started.length = 0;
  const serving2 = c.consume((d) => void started.push(d.string()), { signal: again.signal });
  await waitFor("the three left handled and acknowledged", async () => {
    const s = await state("aborted");
    return started.length === 3 && s !== null && s.pending === 0 && s.ackPending === 0 && s.floor === 5;
  });
  again.abort();
  await serving2;
  assert.deepEqual([...started].sort(), [`{"i":2}`, `{"i":3}`, `{"i":4}`]);
});

test("consume: a handler that rejects has its delivery nak'd and redelivered while the other handler calls go on", { timeout: 60_000 }, async (t) => {
  await capStream(4);
  const calls: { payload: string; redelivered: boolean }[] = [];
  const [redone, markRedone] = gate();
  let slowSawRedelivery = false;
  const ctl = new AbortController();
  t.after(() => {
    // On a failure too: no consume left running, no handler left waiting.
    markRedone();
    ctl.abort();
  });
  const c = new Consumer(nats.js, config({ durable: "rejecting", concurrency: 3, nakDelayMs: 100 }));
  const serving = c.consume(
    async (d) => {
      const payload = d.string();
      calls.push({ payload, redelivered: d.redelivered });
      if (payload === `{"i":0}`) {
        if (!d.redelivered) {
          throw new Error("transient"); // nak: must come back
        }
        markRedone();
        return;
      }
      if (payload === `{"i":1}`) {
        // In flight until the failing delivery was nak'd and handled again.
        slowSawRedelivery = await Promise.race([redone.then(() => true), bound(10_000).then(() => false)]);
      }
    },
    { signal: ctl.signal },
  );
  await waitFor("every delivery acknowledged", async () => {
    const s = await state("rejecting");
    return calls.length === 5 && s !== null && s.pending === 0 && s.ackPending === 0 && s.floor === 4;
  });
  ctl.abort();
  await serving;
  assert.ok(slowSawRedelivery, "the nak'd delivery came back while another handler call was in flight");
  assert.deepEqual(
    calls.filter((x) => x.payload === `{"i":0}`).map((x) => x.redelivered),
    [false, true],
    "the rejected delivery handled twice: once failing, once redelivered",
  );
  for (const i of [1, 2, 3]) {
    assert.deepEqual(
      calls.filter((x) => x.payload === `{"i":${i}}`).map((x) => x.redelivered),
      [false],
      `delivery ${i} handled once`,
    );
  }
});

test("Consumer: concurrency is an integer in [0, MAX_CONCURRENCY]", () => {
  assert.equal(MAX_CONCURRENCY, 1024);
  for (const v of [-1, 1.5, MAX_CONCURRENCY + 1, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(
      () => new Consumer(nats.js, config({ concurrency: v })),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, `concurrency ${v}: ${String(err)}`);
        assert.match(err.message, new RegExp(`concurrency ${v} is not an integer in \\[0, 1024\\]`));
        return true;
      },
      `concurrency ${v}`,
    );
  }
  for (const v of [undefined, 0, 1, 4, MAX_CONCURRENCY]) {
    new Consumer(nats.js, config(v === undefined ? {} : { concurrency: v }));
  }
});

test("consume: one at a time, at most two deliveries are pending acknowledgement while the handler runs", { timeout: 60_000 }, async (t) => {
  // A buffered delivery gets no in-progress word until its turn: a deep
  // buffer behind a slow handler lets AckWait pass for it and hands it
  // to another instance of the durable, to be handled again. The Go
  // SDK's TestConsumeOneAtATimeBuffersTwo.
  const n = 20;
  await capStream(n);
  let handled = 0;
  let top = 0;
  const ctl = new AbortController();
  t.after(() => ctl.abort());
  const c = new Consumer(nats.js, config({ durable: "sequential" }));
  const serving = c.consume(
    async () => {
      await sleep(100); // the client's pulls settle
      const s = await state("sequential");
      top = Math.max(top, s?.ackPending ?? 0);
      if (++handled === n) ctl.abort();
    },
    { signal: ctl.signal },
  );
  await Promise.race([serving, bound(30_000).then(() => assert.fail("the handler never finished"))]);
  assert.equal(handled, n);
  assert.ok(top <= 2, `up to ${top} deliveries pending acknowledgement while one handler ran; want at most 2`);
});
