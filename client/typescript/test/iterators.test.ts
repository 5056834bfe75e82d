// How the SDK's readers end and what they hold: an iteration that ends
// with an error stops its subscription, a reader aborted while it starts
// resolves, and the readers of the reply subject hold a bounded queue.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createAccount, createCurve, createServer, createUser } from "@nats-io/nkeys";
import { headers } from "@nats-io/transport-node";
import { Agent } from "../src/agent.js";
import { Consumer } from "../src/consumer.js";
import { boundedSubscribe } from "../src/internal/bounded.js";
import { MAX_QUEUED } from "../src/internal/waiter.js";
import { Box } from "../src/keys.js";
import { reply as replySubject } from "../src/subjects.js";
import { bytes, sleep } from "./helpers.js";
import { useNatsServer } from "./servers.js";
import { issueCredential, TENANT } from "./world.js";

const gw = createServer();
const trust = { trustedGateways: [gw.getPublicKey()] };
const nats = useNatsServer({
  monitor: true,
  setup: async (f) => void (await f.jsm.streams.add({ name: "AGENTGW_CAP", subjects: ["agentgw.cap.>"] })),
});

function newAgent(): Agent {
  const kp = createUser();
  const curve = createCurve();
  const credential = issueCredential(createAccount(), { sub: kp.getPublicKey(), scopes: ["refund:draft"], xkey: curve.getPublicKey() });
  return new Agent(nats.nc, { credential, key: kp, curve, gatewayXKey: new Box(createCurve()).publicKey });
}

test("replies(): a loop that ends because onReject threw unsubscribes, though its signal never aborts", async () => {
  const a = newAgent();
  const subj = replySubject(a.tenant, a.publicKey);
  const it = a.replies({ ...trust, signal: new AbortController().signal, onReject: () => { throw new Error("logger down"); } });
  const first = it.next();
  await nats.nc.flush();
  const h = headers();
  h.set("Agentgw-Decision", "x");
  nats.nc.publish(subj, bytes("{}"), { headers: h });
  await assert.rejects(first, /logger down/);
  // A for await loop does not call return() when next() rejects.
  for (let i = 0; i < 40 && (await nats.srv.subscriptionsTo(subj)) > 0; i++) {
    await sleep(50);
  }
  assert.equal(await nats.srv.subscriptionsTo(subj), 0, "the subscription to the reply subject ended");
});

test("consume(): a signal aborted while the consumer is opened stops reading, and consume resolves", async () => {
  const c = new Consumer(nats.js, { tenant: TENANT, targets: ["refunds.draft_refund"], trustedGateways: trust.trustedGateways });
  const ctl = new AbortController();
  const p = c.consume(async () => assert.fail("nothing to handle"), { signal: ctl.signal });
  ctl.abort();
  await p;
  await c.consume(async () => assert.fail("nothing to handle"), { signal: AbortSignal.abort() });
});

test("watchDecisions, replies and decisions read through a queue of at most MAX_QUEUED: a burst on the reply subject is dropped past it", async () => {
  const subject = "agentgw.reply.tenant_a.UBOUNDED";
  const src = boundedSubscribe(nats.nc, subject);
  await nats.nc.flush();
  for (let i = 0; i < 3 * MAX_QUEUED; i++) {
    nats.nc.publish(subject, bytes(String(i)));
  }
  await nats.nc.flush();
  await sleep(200);
  src.unsubscribe();
  let held = 0;
  for await (const m of { [Symbol.asyncIterator]: () => src[Symbol.asyncIterator]() }) {
    assert.equal(new TextDecoder().decode(m.data), String(held), "the first ones, in order");
    held++;
  }
  assert.equal(held, MAX_QUEUED, "held no more than MAX_QUEUED, then ended with the subscription");
});
