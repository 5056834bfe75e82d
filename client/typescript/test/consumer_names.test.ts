// Consumer names: capabilityConsumerName gives every (tenant, target)
// pair a name of its own, which reads back as that pair, and nats.js and
// nats-server take it as a durable name.
import { test } from "node:test";
import assert from "node:assert/strict";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { validTarget, validToken } from "../src/envelope.js";
import { approvalConsumerName, capabilityConsumerName, CONSUMER_NAME_SEP } from "../src/subjects.js";
import { startNatsServer } from "./servers.js";

/**
 * The inverse capabilityConsumerName documents: the first "~" ends the
 * tenant, every later one is a dot of the target.
 */
function parseName(name: string): { tenant: string; target: string } | undefined {
  const i = name.indexOf(CONSUMER_NAME_SEP);
  if (i < 0) {
    return undefined;
  }
  return { tenant: name.slice(0, i), target: name.slice(i + 1).replaceAll(CONSUMER_NAME_SEP, ".") };
}

/** Pairs that a name joining tenant and target with "-", dots as "_", would not tell apart. */
const pairs: [string, string][][] = [
  [["tenant_a", "refunds.issue"], ["tenant_a", "refunds_issue"]],
  [["a", "b-c"], ["a-b", "c"]],
  [["a", "b-c.d"], ["a-b", "c_d"]],
  [["t", "x.y.z"], ["t", "x_y.z"]],
];

test("consumer names are the Go SDK's", () => {
  assert.equal(capabilityConsumerName("tenant_a", "refunds.draft_refund"), "tenant_a~refunds~draft_refund");
  assert.equal(approvalConsumerName("tenant_a"), "tenant_a-approvals");
});

test("two (tenant, target) pairs never share a capability consumer name", () => {
  for (const [a, b] of pairs) {
    const na = capabilityConsumerName(...a!);
    const nb = capabilityConsumerName(...b!);
    assert.notEqual(na, nb, `${a} and ${b}`);
    for (const [p, n] of [[a!, na], [b!, nb]] as const) {
      assert.deepEqual(parseName(n), { tenant: p[0], target: p[1] });
    }
  }
});

test("every name reads back as its tenant and target (random pairs)", () => {
  // A fixed-seed generator (mulberry32) over a small alphabet holding
  // every separator-like byte, so that near collisions are common.
  let seed = 0x2545f491;
  const rand = (n: number): number => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) % n);
  };
  const alphabet = "ab_-";
  const token = (): string => Array.from({ length: 1 + rand(4) }, () => alphabet[rand(alphabet.length)]).join("");
  const seen = new Map<string, string>();
  for (let i = 0; i < 20000; i++) {
    const tenant = token();
    const target = Array.from({ length: 1 + rand(3) }, token).join(".");
    assert.ok(validToken(tenant) && validTarget(target), `${tenant} ${target}`);
    const name = capabilityConsumerName(tenant, target);
    assert.deepEqual(parseName(name), { tenant, target }, name);
    const pair = `${tenant} ${target}`;
    const prev = seen.get(name);
    assert.ok(prev === undefined || prev === pair, `${prev} and ${pair} share ${name}`);
    seen.set(name, pair);
  }
});

test("nats.js and nats-server take the names as durable names", async () => {
  const srv = await startNatsServer();
  const nc = await srv.connect();
  try {
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: "AGENTGW_CAP", subjects: ["agentgw.cap.>"] });
    for (const [tenant, target] of pairs.flat()) {
      const name = capabilityConsumerName(tenant!, target!);
      await jsm.consumers.add("AGENTGW_CAP", { durable_name: name, filter_subject: `agentgw.cap.${tenant}.${target}`, ack_policy: AckPolicy.Explicit });
      const c = await jetstream(nc).consumers.get("AGENTGW_CAP", name);
      assert.equal((await c.info(true)).name, name);
    }
    assert.equal((await jsm.consumers.list("AGENTGW_CAP").next()).length, pairs.flat().length, "one consumer per pair");
  } finally {
    await nc.close();
    await srv.stop();
  }
});
