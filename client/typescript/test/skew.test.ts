// The clock skew of replies and decision notices read as the Go SDK reads
// WaitOptions.Skew: 0 and absent are both the 30 s default, never "no
// tolerance"; a negative or non-finite skew is a configuration error.
// Decision tokens verified with a negative or non-finite skew fail
// closed (internal_error), as Go's decision.Verify fails a negative one.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createCurve, createServer, createUser } from "@nats-io/nkeys";
import type { Agent } from "../src/agent.js";
import { verifyDecision } from "../src/decision.js";
import { ConfigError } from "../src/errors.js";
import { digestHex } from "../src/internal/bytes.js";
import { signBatch, wireClaims, type ClaimsToSign } from "../src/internal/decision_sign.js";
import { Box } from "../src/keys.js";
import { decisions, DecisionWatch, formatNoticeDoc, verifyNotice } from "../src/notice.js";
import { sendAndWait, verifyReply } from "../src/reply.js";
import { bytes, throwsReason } from "./helpers.js";
import { CLOCK, TENANT, unix } from "./world.js";

const gw = createServer();
const gwCurve = new Box(createCurve());
const agentKey = createUser().getPublicKey();
const agentBox = new Box(createCurve());
const ID = "5d1e0c3a9b7f4e21a6c8d2f0b4e6a801";
const trust = { trustedGateways: [gw.getPublicKey()] };

/** token signs claims of route for the test agent, issued at iat and living a minute. */
function token(route: "reply" | "notice", iat: Date, payload: Uint8Array): string {
  const c: ClaimsToSign = {
    jti: `J${unix(iat)}${route}`,
    sub: agentKey,
    aud: agentKey,
    iat: unix(iat),
    exp: unix(iat) + 60,
    tenant: TENANT,
    scope: route === "notice" ? "notice" : "respond:refunds.draft_refund",
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    messageId: ID,
    bodyDigest: "ab".repeat(32),
    payloadDigest: digestHex(payload),
    route,
  };
  return signBatch(gw, [wireClaims(gw.getPublicKey(), c)], false)[0]!;
}

function reply(iat: Date): { data: Uint8Array; headers: Map<string, string> } {
  const data = gwCurve.seal(bytes(`{"refund_id":"rf_1"}`), agentBox.publicKey);
  return {
    data,
    headers: new Map([
      ["Agentgw-Decision", token("reply", iat, data)],
      ["Agentgw-Request-Id", ID],
      ["Agentgw-Sealed-From", gwCurve.publicKey],
    ]),
  };
}

function notice(iat: Date): { data: Uint8Array; headers: Map<string, string> } {
  const n = bytes(JSON.stringify({ message_id: ID, route: "allow", target: "refunds.draft_refund" }));
  return { data: formatNoticeDoc(token("notice", iat, n), n), headers: new Map([["Agentgw-Notice", "decision"]]) };
}

const receiver = { publicKey: agentKey, tenant: TENANT, gatewayXKey: gwCurve.publicKey, box: agentBox, now: () => CLOCK };
const at = (s: number): Date => new Date(CLOCK.getTime() + s * 1000);

test("replies and notices: skewMs 0 or absent tolerates 30 s, as a zero WaitOptions.Skew in the Go SDK", () => {
  for (const skewMs of [undefined, 0, -0]) {
    const opt = skewMs === undefined ? trust : { ...trust, skewMs };
    for (const [name, iat, want] of [
      ["issued 20 s ahead", at(20), undefined],
      ["issued 40 s ahead", at(40), "decision_token_invalid"],
      ["expired 20 s ago", at(-80), undefined],
      ["expired 40 s ago", at(-100), "decision_token_expired"],
    ] as const) {
      const what = `skewMs ${String(skewMs)}, ${name}`;
      if (want === undefined) {
        assert.equal(verifyReply(receiver, reply(iat), opt).requestId, ID, what);
        assert.equal(verifyNotice(receiver, notice(iat), opt).messageId, ID, what);
      } else {
        throwsReason(() => verifyReply(receiver, reply(iat), opt), want, `reply, ${what}`);
        throwsReason(() => verifyNotice(receiver, notice(iat), opt), want, `notice, ${what}`);
      }
    }
  }
  // Any other skew is taken as given.
  throwsReason(() => verifyReply(receiver, reply(at(20)), { ...trust, skewMs: 1000 }), "decision_token_invalid", "1 s");
  assert.equal(verifyNotice(receiver, notice(at(50)), { ...trust, skewMs: 60_000 }).messageId, ID, "60 s");
});

test("replies and notices: a negative or non-finite skewMs is a ConfigError, before anything is subscribed or sent", async () => {
  // Stand-ins that fail if touched: the options are checked first.
  const agent = { box: agentBox } as unknown as Agent;
  for (const skewMs of [-1, -30_000, Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
    const opt = { ...trust, skewMs };
    assert.throws(() => verifyReply(receiver, reply(CLOCK), opt), ConfigError, `verifyReply ${skewMs}`);
    assert.throws(() => verifyNotice(receiver, notice(CLOCK), opt), ConfigError, `verifyNotice ${skewMs}`);
    assert.throws(() => new DecisionWatch(agent, opt), ConfigError, `DecisionWatch ${skewMs}`);
    assert.throws(() => decisions(agent, opt), ConfigError, `decisions ${skewMs}`);
    await assert.rejects(sendAndWait(agent, { capability: "tool_call", target: "refunds.draft_refund", plain: {} }, opt), ConfigError, `sendAndWait ${skewMs}`);
  }
});

test("verifyDecision: a negative or non-finite skewMs fails closed (internal_error), 0 and absent are none", () => {
  const data = bytes("x");
  const tok = token("reply", at(-100), data); // expired 40 s ago
  const opt = { ...trust, audience: agentKey, now: CLOCK };
  for (const skewMs of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
    throwsReason(() => verifyDecision(tok, { ...opt, skewMs }), "internal_error", `skewMs ${skewMs}`);
  }
  throwsReason(() => verifyDecision(tok, opt), "decision_token_expired", "absent");
  throwsReason(() => verifyDecision(tok, { ...opt, skewMs: 0 }), "decision_token_expired", "0");
  assert.equal(verifyDecision(tok, { ...opt, skewMs: 60_000 }).messageId, ID, "60 s");
});
