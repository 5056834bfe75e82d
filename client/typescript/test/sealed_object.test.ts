// A sealed payload's plaintext must be one strict JSON object: the agent's
// curve key also seals the token exchange's xkey proof to the gateway, so
// sealing bytes of the application's choosing could mint one. Unit-level:
// the agent runs on a stand-in connection and a publish hook that records
// what would be published; a counting curve key records what is sealed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createAccount, createCurve, createUser, type KeyPair } from "@nats-io/nkeys";
import type { NatsConnection } from "@nats-io/transport-node";
import type { PubAck } from "@nats-io/jetstream";
import { Agent } from "../src/agent.js";
import { InvalidRequestError } from "../src/errors.js";
import { parseEnvelope } from "../src/envelope.js";
import { fromB64url } from "../src/internal/bytes.js";
import { setHooks } from "../src/internal/hooks.js";
import { Box } from "../src/keys.js";
import { bytes, dec, rejectsWith } from "./helpers.js";
import { issueCredential } from "./world.js";

const issuer = createAccount();
const gwCurve = new Box(createCurve());

function harness() {
  const kp = createUser();
  const curve = createCurve();
  let seals = 0;
  // Box seals through kp.seal: count each call.
  const counting = {
    getPublicKey: () => curve.getPublicKey(),
    getPrivateKey: () => curve.getPrivateKey(),
    seal: (...args: Parameters<KeyPair["seal"]>) => {
      seals++;
      return curve.seal(...args);
    },
  } as unknown as KeyPair;
  const credential = issueCredential(issuer, { sub: kp.getPublicKey(), scopes: ["refund:draft"], xkey: curve.getPublicKey() });
  // Nothing reaches the connection: the publish hook never calls real.
  const nc = { options: {} } as unknown as NatsConnection;
  const ag = new Agent(nc, { credential, key: kp, curve: counting, gatewayXKey: gwCurve.publicKey, retryWaitMs: 10 });
  const published: Uint8Array[] = [];
  let seq = 0;
  setHooks(ag, {
    publish: async (_subject, data) => {
      published.push(data);
      return { stream: "AGENTGW_IN", seq: ++seq, duplicate: false, domain: "" } as PubAck;
    },
  });
  return { ag, agentKey: kp.getPublicKey(), published, seals: () => seals };
}

/** xkeyProofInput is the plaintext of the token exchange's xkey proof (gateway/exchange/protocol). */
function xkeyProofInput(agent: string, requestId: string): Uint8Array {
  return bytes(`agentgw-exchange-xkey-v1\n${agent}\n${requestId}`);
}

test("send: a sealed plaintext that is not one strict JSON object is refused before sealing or publishing, unquoted", async () => {
  const h = harness();
  const secret = "secret-ish";
  const cases: [string, Uint8Array | string | object][] = [
    ["xkey proof input (bytes)", xkeyProofInput(h.agentKey, "req-0123456789abcdef")],
    ["xkey proof input (text)", dec.decode(xkeyProofInput(h.agentKey, "req-0123456789abcdef"))],
    ["array", bytes("[1]")],
    ["array as a value", [1, secret]],
    ["string", bytes(`"${secret}"`)],
    ["string as text", `"${secret}"`],
    ["number", "1"],
    ["raw text", secret],
    ["empty", new Uint8Array(0)],
    ["duplicate member", bytes(`{"a":"${secret}","a":1}`)],
    ["case-variant duplicate", bytes(`{"amount":1,"Amount":"${secret}"}`)],
    ["data after the object", bytes(`{"a":1} ${secret}`)],
    ["two objects", bytes(`{"a":1}{"b":2}`)],
    ["invalid UTF-8", new Uint8Array([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d])],
  ];
  for (const [name, sealed] of cases) {
    const err = await rejectsWith(h.ag.send({ capability: "tool_call", target: "refunds.draft_refund", sealed }), InvalidRequestError, name);
    assert.match(err.message, /sealed payload is not one strict JSON object/, name);
    assert.ok(!err.message.includes(secret) && !err.message.includes("agentgw-exchange"), `${name}: ${err.message}`);
    assert.equal(h.seals(), 0, `${name}: sealed`);
    assert.equal(h.published.length, 0, `${name}: published`);
  }
  // respond seals its answer through the same path.
  const refused = h.ag.send({ capability: "respond", target: `${h.agentKey}/0123456789abcdef0123456789abcdef`, sealed: "[1]" });
  await rejectsWith(refused, InvalidRequestError, "respond");
  assert.equal(h.seals(), 0);
  assert.equal(h.published.length, 0);
});

test("send: a sealed JSON object seals to the gateway and is published", async () => {
  const h = harness();
  const cases: [string, Uint8Array | string | object, string][] = [
    ["value", { order_id: "ord_1", amount_cents: 100 }, `{"order_id":"ord_1","amount_cents":100}`],
    ["bytes", bytes(`{"order_id":"ord_2"}`), `{"order_id":"ord_2"}`],
    ["text with whitespace", ` {"nested":{"a":[1,2,{"b":null}]}}\n`, ` {"nested":{"a":[1,2,{"b":null}]}}\n`],
    ["empty object", "{}", "{}"],
  ];
  for (const [name, sealed, want] of cases) {
    const before = h.published.length;
    const r = await h.ag.send({ capability: "tool_call", target: "refunds.draft_refund", sealed });
    const body = h.published[before];
    if (body === undefined || h.published.length !== before + 1) {
      assert.fail(`${name}: ${h.published.length - before} messages published; want 1`);
    }
    const env = parseEnvelope(body);
    assert.equal(env.messageId, r.messageId, name);
    assert.equal(env.payload.plain, undefined, name);
    const ct = fromB64url(env.payload.sealed ?? "");
    if (ct === undefined) {
      assert.fail(`${name}: payload.sealed is not base64url`);
    }
    assert.equal(dec.decode(gwCurve.open(ct, env.payload.from ?? "")), want, name);
  }
  assert.equal(h.seals(), cases.length);
});
