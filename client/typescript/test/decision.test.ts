// Decision tokens: every leaf of a batch verifies through its Merkle audit
// path, and every change to a token is refused with its reason.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, createUser } from "@nats-io/nkeys";
import { checkBinding, leafHash, rootInput, rootOf, uvarint, verifyDecision, type DecisionVerifyOptions } from "../src/decision.js";
import { VerificationError } from "../src/errors.js";
import { b64url, digestHex } from "../src/internal/bytes.js";
import { encodeClaims, signBatch, wireClaims, type ClaimsToSign } from "../src/internal/decision_sign.js";
import type { ReasonCode } from "../src/reason.js";
import { bytes } from "./helpers.js";
import { CLOCK, unix } from "./world.js";

const gw = createServer();
const agent = createUser().getPublicKey();

function claims(i: number, over: Partial<ClaimsToSign> = {}): ClaimsToSign {
  return {
    jti: `JTI${i}`,
    sub: agent,
    aud: "refunds.draft_refund",
    iat: unix(CLOCK),
    exp: unix(CLOCK) + 300,
    tenant: "tenant_a",
    scope: "refund:draft",
    traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
    messageId: `message-${String(i).padStart(8, "0")}`,
    bodyDigest: digestHex(bytes(`body ${i}`)),
    payloadDigest: digestHex(bytes(`payload ${i}`)),
    policyIds: ["base.same_tenant_kind"],
    policyVersion: "sha256:abc",
    route: "allow",
    ...over,
  };
}

const opts: DecisionVerifyOptions = { trustedGateways: [gw.getPublicKey()], audience: "refunds.draft_refund", now: CLOCK, skewMs: 30_000 };

function reasonOf(fn: () => unknown): ReasonCode | "accepted" {
  try {
    fn();
    return "accepted";
  } catch (err) {
    assert.ok(err instanceof VerificationError, String(err));
    return err.reason;
  }
}

test("decision: every token of batches of 1 to 33 verifies on its own", () => {
  for (const n of [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33]) {
    const batch = Array.from({ length: n }, (_, i) => wireClaims(gw.getPublicKey(), claims(i)));
    const toks = signBatch(gw, batch);
    toks.forEach((t, i) => {
      const c = verifyDecision(t, opts);
      assert.equal(c.id, `JTI${i}`, `batch ${n}, leaf ${i}`);
      assert.equal(c.messageId, `message-${String(i).padStart(8, "0")}`);
      assert.equal(c.issuer, gw.getPublicKey());
      assert.deepEqual(c.act, { sub: agent, via: gw.getPublicKey() });
    });
    // A proof relabelled with another leaf's position does not lead to the signed root.
    if (n > 1) {
      const [h, p, proof, sig] = toks[0]!.split(".") as [string, string, string, string];
      const other = toks[1]!.split(".")[2]!;
      assert.notEqual(proof, other);
      assert.equal(reasonOf(() => verifyDecision([h, p, other, sig].join("."), opts)), "decision_token_invalid", `batch ${n}`);
    }
  }
});

test("decision: the claims are written byte for byte as the gateway writes them", () => {
  const w = wireClaims(gw.getPublicKey(), claims(1, { approver: createUser().getPublicKey() }));
  const json = new TextDecoder().decode(encodeClaims(w));
  assert.deepEqual(JSON.parse(json), w);
  assert.ok(json.startsWith(`{"aud":"refunds.draft_refund","exp":`), json);
  assert.match(json, /"nats":\{"act":\{"sub":"U[A-Z2-7]{55}","via":"N[A-Z2-7]{55}","approver":"U[A-Z2-7]{55}"\},"body_digest":/);
  assert.ok(json.endsWith(`,"type":"agentgw-decision","version":2}}`), json);
});

test("decision: changed, forged and misaddressed tokens are refused with their reasons", () => {
  const good = signBatch(gw, [wireClaims(gw.getPublicKey(), claims(1))])[0]!;
  const [h, p, proof, sig] = good.split(".") as [string, string, string, string];
  const mk = (over: Partial<ClaimsToSign>, key = gw): string => signBatch(key, [wireClaims(key.getPublicKey(), claims(1, over))], false)[0]!;
  const rawClaims = (json: string): string => {
    // A token whose claims are json, signed properly (a batch of one).
    const t = signBatch(gw, [wireClaims(gw.getPublicKey(), claims(1))])[0]!;
    const parts = t.split(".");
    const forged = `${parts[0]}.${b64url(bytes(json))}`;
    return signRaw(forged);
  };
  const signRaw = (signingInput: string): string => {
    // Sign an arbitrary header.claims as a batch of one.
    const sig = gw.sign(rootInput(1, leafHash(bytes(signingInput))));
    return `${signingInput}.${b64url(Uint8Array.of(0, 1))}.${b64url(sig)}`;
  };
  const wire = JSON.parse(Buffer.from(p, "base64url").toString());

  const cases: [string, () => unknown, ReasonCode | "accepted"][] = [
    ["genuine", () => verifyDecision(good, opts), "accepted"],
    ["empty", () => verifyDecision("", opts), "decision_token_missing"],
    ["no clock", () => verifyDecision(good, { ...opts, now: new Date(NaN) }), "internal_error"],
    ["three parts", () => verifyDecision([h, p, sig].join("."), opts), "decision_token_invalid"],
    ["five parts", () => verifyDecision(good + ".x", opts), "decision_token_invalid"],
    ["other header", () => verifyDecision([b64url(bytes(`{"typ":"JWT","alg":"ed25519-nkey"}`)), p, proof, sig].join("."), opts), "decision_token_invalid"],
    ["claims edited", () => verifyDecision([h, b64url(bytes(JSON.stringify({ ...wire, aud: "payments.send" }))), proof, sig].join("."), { ...opts, audience: "payments.send" }), "decision_token_invalid"],
    ["claims padded", () => verifyDecision([h, p + "=", proof, sig].join("."), opts), "decision_token_invalid"],
    ["signature of another root", () => verifyDecision([h, p, proof, mk({ jti: "OTHER" }).split(".")[3]].join("."), opts), "decision_token_invalid"],
    ["tree size relabelled", () => verifyDecision([h, p, b64url(Uint8Array.of(0, 2, ...new Uint8Array(32))), sig].join("."), opts), "decision_token_invalid"],
    ["index out of the tree", () => verifyDecision([h, p, b64url(Uint8Array.of(1, 1)), sig].join("."), opts), "decision_token_invalid"],
    ["untrusted gateway", () => verifyDecision(mk({}, createServer()), opts), "decision_token_invalid"],
    ["no trusted gateway", () => verifyDecision(good, { ...opts, trustedGateways: [] }), "decision_token_invalid"],
    ["route deny", () => verifyDecision(mk({ route: "deny" }), opts), "decision_token_invalid"],
    ["sub not a user key", () => verifyDecision(mk({ sub: gw.getPublicKey() }), opts), "decision_token_invalid"],
    ["trace id all zero", () => verifyDecision(mk({ traceId: "0".repeat(32) }), opts), "decision_token_invalid"],
    ["digest not hex", () => verifyDecision(mk({ bodyDigest: "sha256:" + "a".repeat(57) }), opts), "decision_token_invalid"],
    ["exp before iat", () => verifyDecision(mk({ exp: unix(CLOCK) - 1 }), opts), "decision_token_invalid"],
    ["approver is the agent", () => verifyDecision(mk({ approver: agent }), opts), "decision_token_invalid"],
    ["unknown claim", () => verifyDecision(rawClaims(JSON.stringify({ ...wire, extra: 1 })), opts), "decision_token_invalid"],
    ["duplicate claim", () => verifyDecision(rawClaims(JSON.stringify(wire).replace(`{"aud":`, `{"aud":"x","aud":`)), opts), "decision_token_invalid"],
    ["time with a fraction", () => verifyDecision(rawClaims(JSON.stringify(wire).replace(`"exp":${wire.exp}`, `"exp":${wire.exp}.0`)), opts), "decision_token_invalid"],
    ["time with an exponent", () => verifyDecision(rawClaims(JSON.stringify(wire).replace(`"version":2`, `"version":2e0`)), opts), "decision_token_invalid"],
    ["integer claims as written", () => verifyDecision(rawClaims(JSON.stringify(wire)), opts), "accepted"],
    ["string for a number", () => verifyDecision(rawClaims(JSON.stringify({ ...wire, exp: String(wire.exp) })), opts), "decision_token_invalid"],
    ["issued in the future", () => verifyDecision(mk({ iat: unix(CLOCK) + 31, exp: unix(CLOCK) + 300 }), opts), "decision_token_invalid"],
    ["issued within skew", () => verifyDecision(mk({ iat: unix(CLOCK) + 30, exp: unix(CLOCK) + 300 }), opts), "accepted"],
    ["expired", () => verifyDecision(mk({ iat: unix(CLOCK) - 300, exp: unix(CLOCK) - 31 }), opts), "decision_token_expired"],
    ["expired within skew", () => verifyDecision(mk({ iat: unix(CLOCK) - 300, exp: unix(CLOCK) - 30 }), opts), "accepted"],
    ["other audience", () => verifyDecision(good, { ...opts, audience: "payments.send" }), "decision_token_audience"],
    ["empty audience", () => verifyDecision(good, { ...opts, audience: "" }), "decision_token_audience"],
  ];
  for (const [name, fn, want] of cases) {
    assert.equal(reasonOf(fn), want, name);
  }
});

test("decision: checkBinding ties the token to the exact body and payload bytes", () => {
  const c = verifyDecision(signBatch(gw, [wireClaims(gw.getPublicKey(), claims(7))])[0]!, opts);
  checkBinding(c, bytes("body 7"), bytes("payload 7"));
  assert.equal(reasonOf(() => checkBinding(c, bytes("body 7 "), bytes("payload 7"))), "decision_token_binding");
  assert.equal(reasonOf(() => checkBinding(c, bytes("body 7"), bytes("payload 8"))), "decision_token_binding");
});

test("decision: proofs are read as Go's encoding/binary reads them", () => {
  assert.deepEqual(uvarint(Uint8Array.of(0x96, 0x01)), [150n, 2]);
  assert.deepEqual(uvarint(Uint8Array.of(0x80)), [0n, 0]);
  assert.deepEqual(uvarint(Uint8Array.of(...new Array(10).fill(0xff), 0x01)), [0n, -11]);
  assert.deepEqual(uvarint(Uint8Array.of(...new Array(9).fill(0xff), 0x02)), [0n, -10]);
  const leaf = new Uint8Array(32);
  assert.throws(() => rootOf(leaf, Uint8Array.of(0, 0)), /bad tree size/);
  assert.throws(() => rootOf(leaf, Uint8Array.of(0, 1, 5)), /bad audit path/);
  assert.throws(() => rootOf(leaf, Uint8Array.of(0, 1, ...new Uint8Array(32))), /too long/);
  assert.throws(() => rootOf(leaf, Uint8Array.of(0, 2)), /too short/);
  assert.throws(() => rootOf(leaf, Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 1)), /bad leaf index/);
});
