// handBackUnknownKeys for the approver against a real nats-server: on a
// shared durable, a request an approver refuses only because its token's
// gateway key is not among its trustedGateways is handed back for the
// approvers that trust it; without the option, on an ephemeral consumer,
// and for every other refusal, it is terminated. The Go SDK's
// ApproverConfig.HandBackUnknownKeys. The requests are published here,
// signed with a test gateway key as the gateway signs them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createAccount, createCurve, createServer, createUser, type KeyPair } from "@nats-io/nkeys";
import { headers } from "@nats-io/transport-node";
import { AckPolicy, DeliverPolicy, type ConsumerInfo } from "@nats-io/jetstream";
import { Approver, type ApproverConfig } from "../src/approver.js";
import { VerificationError } from "../src/errors.js";
import { signBatch, wireClaims } from "../src/internal/decision_sign.js";
import { bytes, firstShown, terminations, waitFor } from "./helpers.js";
import { useNatsServer } from "./servers.js";
import { approvalClaims, approvalRequest, CLOCK, issueCredential, TENANT } from "./world.js";

const nats = useNatsServer();
const issuer = createAccount();
const requester = createUser().getPublicKey();
/** The gateway that signs the requests' decision tokens. */
const gw = createServer();
/** A gateway key the misconfigured approvers trust instead of gw's. */
const otherGW = createServer().getPublicKey();
const DURABLE = `${TENANT}-approvals`;
const SUBJECT = `agentgw.approval.${TENANT}.payments.send`;


/** sharedQueue makes the approval stream afresh with the tenant's shared durable. */
async function sharedQueue(): Promise<void> {
  try {
    await nats.jsm.streams.delete("AGENTGW_APPROVAL");
  } catch {
    // absent
  }
  await nats.jsm.streams.add({ name: "AGENTGW_APPROVAL", subjects: ["agentgw.approval.>"] });
  await nats.jsm.consumers.add("AGENTGW_APPROVAL", {
    durable_name: DURABLE,
    filter_subject: `agentgw.approval.${TENANT}.>`,
    ack_policy: AckPolicy.Explicit,
    deliver_policy: DeliverPolicy.All,
  });
}

/** How a test request is signed and published. */
interface Hold {
  /** Signs with this key instead of gw's. */
  signer?: KeyPair;
  /** The issuer the token names. Absent: the signer's key. */
  iss?: string;
  /** Publishes these bytes instead of the request signed. */
  publishAs?: Record<string, unknown>;
}

/** hold publishes req with the decision token the gateway puts on it (see approver.test.ts). */
async function hold(req: Record<string, unknown>, o: Hold = {}): Promise<void> {
  const data = bytes(JSON.stringify(req));
  const c = approvalClaims(req, data);
  const key = o.signer ?? gw;
  const h = headers();
  h.set("Agentgw-Decision", signBatch(key, [wireClaims(o.iss ?? key.getPublicKey(), c)], false)[0]!);
  const sent = o.publishAs !== undefined ? bytes(JSON.stringify(o.publishAs)) : data;
  await nats.js.publish(SUBJECT, sent, { headers: h });
}

function approver(over: Partial<ApproverConfig> = {}): Approver {
  const kp = createUser();
  const credential = issueCredential(issuer, { sub: kp.getPublicKey(), scopes: ["approve:payments.*"], xkey: createCurve().getPublicKey() }, CLOCK);
  return new Approver(nats.nc, nats.js, { credential, key: kp, trustedGateways: [gw.getPublicKey()], clock: () => new Date(CLOCK.getTime() + 60_000), ...over });
}

function info(): Promise<ConsumerInfo> {
  return nats.jsm.consumers.info("AGENTGW_APPROVAL", DURABLE);
}

/** waitSettled waits until the durable has nothing pending or unacknowledged and its acknowledged floor is floor. */
async function waitSettled(floor: number): Promise<ConsumerInfo> {
  let last: ConsumerInfo | null = null;
  await waitFor(`the durable settled at ${floor}`, async () => {
    last = await info();
    return last.num_pending === 0 && last.num_ack_pending === 0 && last.ack_floor.stream_seq === floor;
  });
  return last!;
}

/** watching runs ap.watch in the background, recording what it shows and rejects; the returned stop ends it. */
function watching(ap: Approver, shown: string[]): () => Promise<void> {
  const ctl = new AbortController();
  const w = ap.watch((req) => void shown.push(req.heldMessageId), { signal: ctl.signal });
  w.catch(() => {}); // reported by stop
  return () => {
    ctl.abort();
    return w;
  };
}

test("watch: on a shared durable, with handBackUnknownKeys, a request signed by a gateway the approver does not trust is handed back and reported; an approver that trusts it is shown it", { timeout: 60_000 }, async () => {
  await sharedQueue();
  await hold(approvalRequest("held-message-000000101", requester));
  const term = terminations(nats.nc);
  const rejected: Error[] = [];
  const shown: string[] = [];
  const wrong = approver({ durable: DURABLE, bind: true, trustedGateways: [otherGW], handBackUnknownKeys: true, onReject: (_s, e) => void rejected.push(e) });
  const stop = watching(wrong, shown);
  try {
    // Reported twice: it came back after the first hand-back.
    await waitFor("the request refused twice", () => rejected.length >= 2);
    const i = await info();
    assert.ok(i.num_redelivered > 0, `num_redelivered ${i.num_redelivered}; want the request redelivered`);
    assert.equal(i.ack_floor.stream_seq, 0, "the ack floor passed the handed-back request");
  } finally {
    await stop();
  }
  assert.deepEqual(shown, [], "the misconfigured approver showed it");
  for (const e of rejected) {
    assert.ok(e instanceof VerificationError, String(e));
    assert.equal(e.reason, "decision_token_invalid", e.message);
    assert.equal(e.unknownKey, true, e.message);
  }
  // An approver with the right key, on the same durable, is shown it.
  assert.deepEqual(await firstShown(approver({ durable: DURABLE, bind: true })), ["held-message-000000101"]);
  await waitSettled(1);
  await nats.nc.flush();
  term.stop();
  assert.deepEqual([...term.got], [], "the request was terminated");
});

test("list: on a shared durable, with handBackUnknownKeys, a request signed by a gateway the approver does not trust is left out and handed back; an approver that trusts it lists it", { timeout: 60_000 }, async () => {
  await sharedQueue();
  await hold(approvalRequest("held-message-000000102", requester));
  const term = terminations(nats.nc);
  try {
    const wrong = approver({ durable: DURABLE, bind: true, trustedGateways: [otherGW], handBackUnknownKeys: true });
    for (const all of [false, true]) {
      assert.deepEqual(await wrong.list({ all }), [], `all=${all}`);
    }
    const i = await info();
    assert.ok(i.num_redelivered > 0, `num_redelivered ${i.num_redelivered}; want the request redelivered`);
    assert.equal(i.ack_floor.stream_seq, 0, "the ack floor passed the handed-back request");
    const right = approver({ durable: DURABLE, bind: true });
    assert.deepEqual((await right.list()).map((r) => r.heldMessageId), ["held-message-000000102"]);
    assert.equal((await right.find("held-message-000000102"))?.seq, 1);
    await nats.nc.flush();
  } finally {
    term.stop();
  }
  assert.deepEqual([...term.got], [], "the request was terminated");
});

test("watch and list: without handBackUnknownKeys, or on an ephemeral consumer, a request signed by a gateway the approver does not trust is terminated", { timeout: 60_000 }, async () => {
  // Without the option, on the shared durable.
  await sharedQueue();
  await hold(approvalRequest("held-message-000000111", requester));
  let rejected: Error[] = [];
  const shown: string[] = [];
  let stop = watching(approver({ durable: DURABLE, bind: true, trustedGateways: [otherGW], onReject: (_s, e) => void rejected.push(e) }), shown);
  let i: ConsumerInfo;
  try {
    // Terminated: the ack floor passes it and it never came back.
    i = await waitSettled(1);
  } finally {
    await stop();
  }
  assert.equal(i.num_redelivered, 0);
  assert.deepEqual(shown, []);
  assert.equal(rejected.length, 1);
  const e = rejected[0];
  assert.ok(e instanceof VerificationError, String(e));
  assert.equal(e.reason, "decision_token_invalid");
  assert.equal(e.unknownKey, true, "reported as an unknown key, terminated all the same");

  // list without the option, on the shared durable: terminated too.
  await sharedQueue();
  await hold(approvalRequest("held-message-000000112", requester));
  assert.deepEqual(await approver({ durable: DURABLE, bind: true, trustedGateways: [otherGW] }).list(), []);
  await waitSettled(1);

  // With the option on an ephemeral consumer, which nobody else reads:
  // terminated.
  await sharedQueue();
  await hold(approvalRequest("held-message-000000113", requester));
  const term = terminations(nats.nc);
  rejected = [];
  stop = watching(approver({ trustedGateways: [otherGW], handBackUnknownKeys: true, onReject: (_s, e) => void rejected.push(e) }), shown);
  try {
    await waitFor("the request terminated", () => term.got.size === 1);
  } finally {
    await stop();
    term.stop();
  }
  assert.deepEqual([...term.got], [[1, "decision_token_invalid"]]);
  assert.deepEqual(shown, []);
  assert.equal(rejected.length, 1);
});

test("watch and list: with handBackUnknownKeys on a shared durable, a trusted gateway's token with a broken body digest or signature is still terminated", { timeout: 60_000 }, async () => {
  await sharedQueue();
  // The body altered after signing: its payload digest no longer binds it.
  const altered = approvalRequest("held-message-000000121", requester);
  await hold(altered, { publishAs: { ...altered, fields: { amount_cents: 1, currency: "EUR" } } });
  // A token naming the trusted gateway, signed by another key.
  await hold(approvalRequest("held-message-000000122", requester), { signer: createServer(), iss: gw.getPublicKey() });
  const rejected: Error[] = [];
  const shown: string[] = [];
  const stop = watching(approver({ durable: DURABLE, bind: true, handBackUnknownKeys: true, onReject: (_s, e) => void rejected.push(e) }), shown);
  let i: ConsumerInfo;
  try {
    i = await waitSettled(2);
  } finally {
    await stop();
  }
  assert.equal(i.num_redelivered, 0, "a forgery was handed back");
  assert.deepEqual(shown, []);
  assert.deepEqual(
    rejected.map((e) => [(e as VerificationError).reason, (e as VerificationError).unknownKey]),
    [
      ["decision_token_binding", false],
      ["decision_token_invalid", false],
    ],
  );
  // list with the option terminates them on the shared durable too.
  await sharedQueue();
  await hold(altered, { publishAs: { ...altered, fields: { amount_cents: 1, currency: "EUR" } } });
  assert.deepEqual(await approver({ durable: DURABLE, bind: true, handBackUnknownKeys: true }).list(), []);
  await waitSettled(1);
});
