// A reply is sealed from the gateway's curve key (gatewayXKey) or, during
// a rotation of that key, from one listed in replyXKeys; from no other
// (README, "Rotating the gateway's curve key").
import { test } from "node:test";
import assert from "node:assert/strict";
import { createAccount, createCurve, createServer, createUser } from "@nats-io/nkeys";
import { Agent } from "../src/agent.js";
import { ConfigError } from "../src/errors.js";
import { digestHex } from "../src/internal/bytes.js";
import { signBatch, wireClaims, type ClaimsToSign } from "../src/internal/decision_sign.js";
import { Box } from "../src/keys.js";
import { verifyReply } from "../src/reply.js";
import { bytes, throwsReason } from "./helpers.js";
import { useNatsServer } from "./servers.js";
import { CLOCK, issueCredential, newActor, TENANT, unix } from "./world.js";

test("verifyReply: a reply sealed from a key of replyXKeys opens, from any other key it is seal_mismatch", () => {
  const gw = createServer();
  const current = new Box(createCurve());
  const next = new Box(createCurve());
  const agentBox = new Box(createCurve());
  const me = createUser().getPublicKey();
  const reply = (sealer: Box, sealedFrom = sealer.publicKey) => {
    const data = sealer.seal(bytes(`{"refund_id":"rf_1"}`), agentBox.publicKey);
    const c: ClaimsToSign = {
      jti: "R1", sub: me, aud: me, iat: unix(CLOCK), exp: unix(CLOCK) + 60, tenant: TENANT, scope: "respond:refunds.draft_refund",
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736", messageId: "5d1e0c3a9b7f4e21a6c8d2f0b4e6a801", bodyDigest: "ab".repeat(32),
      payloadDigest: digestHex(data), route: "reply",
    };
    const tok = signBatch(gw, [wireClaims(gw.getPublicKey(), c)])[0]!;
    const headers = new Map([["Agentgw-Decision", tok], ["Agentgw-Sealed-From", sealedFrom]]);
    return { subject: `agentgw.reply.${TENANT}.${me}`, data, headers } as never;
  };
  const opt = { trustedGateways: [gw.getPublicKey()] };
  const base = { publicKey: me, tenant: TENANT, gatewayXKey: current.publicKey, box: agentBox, now: () => CLOCK };
  const rotating = { ...base, replyXKeys: [next.publicKey] };
  for (const [what, sealer] of [["gatewayXKey", current], ["replyXKeys", next]] as const) {
    assert.equal(verifyReply(rotating, reply(sealer), opt).string(), `{"refund_id":"rf_1"}`, what);
  }
  throwsReason(() => verifyReply(base, reply(next), opt), "seal_mismatch", "a key not in replyXKeys");
  throwsReason(() => verifyReply(rotating, reply(new Box(createCurve())), opt), "seal_mismatch", "a stranger's key");
  throwsReason(() => verifyReply(rotating, reply(next, ""), opt), "seal_mismatch", "no sealed-from");
  // Agentgw-Responder is unsigned: kept only when it is a user key.
  const consumer = createUser().getPublicKey();
  for (const [responder, want] of [
    [consumer, consumer],
    ["\x1b[2J\x1b[31mUSURPER", ""],
    [`${consumer}\r\nforged`, ""],
    [`N${consumer.slice(1)}`, ""],
  ]) {
    const m = reply(current) as unknown as { headers: Map<string, string> };
    m.headers.set("Agentgw-Responder", responder!);
    assert.equal(verifyReply(base, m as never, opt).responder, want, JSON.stringify(responder));
  }
});

const nats = useNatsServer();

test("Agent: replyXKeys must be public curve keys, and the agent hands them to verifyReply", () => {
  const a = newActor();
  const credential = issueCredential(createAccount(), { sub: a.pub, scopes: ["refund:draft"], xkey: a.xkey });
  const next = createCurve().getPublicKey();
  const base = { credential, key: a.kp, curve: a.curve, gatewayXKey: createCurve().getPublicKey() };
  assert.throws(
    () => new Agent(nats.nc, { ...base, replyXKeys: [next, "XBAD"] }),
    (err: unknown) => err instanceof ConfigError && /reply xkey 1/.test(err.message) && !/reply xkey 0/.test(err.message),
  );
  assert.deepEqual(new Agent(nats.nc, { ...base, replyXKeys: [next] }).replyXKeys, [next]);
  assert.deepEqual(new Agent(nats.nc, base).replyXKeys, []);
});
