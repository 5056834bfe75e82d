// The repository's test vectors, reproduced byte for byte: wire-v1.json
// (the worked example of wire format v1), every envelope fixture of
// testdata/envelopes with its reason code, Project Wycheproof's Ed25519
// vectors, and the wire specification's vectors of testdata/wire
// (wire_vectors.ts).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fromSeed } from "@nats-io/nkeys";
import { parseJWT, peekCredential } from "../src/creds.js";
import {
  checkFreshness,
  parseEnvelope,
  payloadDigest,
  sealedBytes,
  signEnvelope,
  signingInput,
  verifyEnvelope,
  digest,
} from "../src/envelope.js";
import { Box, curveKeyPair, decodePublicKey, verifyByKey, verifyEd25519 } from "../src/keys.js";
import { isReasonCode } from "../src/reason.js";
import { ingress } from "../src/subjects.js";
import { bytes, dec, listTestdata, readJSON, testdata, throwsReason } from "./helpers.js";
// The wire specification's vectors (testdata/wire), when present.
import "./wire_vectors.js";

interface WireV1 {
  credential: { check_at_unix: number; claims: any; jwt: string };
  envelope: { body: string; signature_b64url: string; signature_hex: string; subject: string };
  keys: Record<string, string>;
  sealed_payload: { from: string; to: string; plaintext: string; sealed_b64url: string };
  verify_at: string;
}

const w = readJSON<WireV1>("wire-v1.json");

test("wire-v1: the envelope parses, and its signature is reproduced byte for byte", () => {
  const body = bytes(w.envelope.body);
  const e = parseEnvelope(body);
  assert.equal(e.v, 1);
  assert.equal(e.messageId, "9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41");
  assert.equal(e.idempotencyKey, "refund:ord_123:draft");
  assert.equal(e.traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
  assert.equal(e.tenant, "tenant_a");
  assert.equal(e.audience, "billing-gateway");
  assert.equal(e.capability, "tool_call");
  assert.equal(e.target, "refunds.draft_refund");
  assert.equal(e.issuedAt.toISOString(), new Date(w.verify_at).toISOString());
  assert.equal(e.expiresAt.getTime() - e.issuedAt.getTime(), 60_000);
  assert.equal(dec.decode(e.payload.plain), `{"order_id":"ord_123","amount_cents":2500}`);
  assert.equal(e.payload.sealed, undefined);
  assert.equal(payloadDigest(e), digest(bytes(`{"plain":{"order_id":"ord_123","amount_cents":2500}}`)));
  checkFreshness(e, new Date(w.verify_at));

  // Ed25519 is deterministic: the agent's nkey reproduces the vector.
  const kp = fromSeed(bytes(w.keys.agent_seed!));
  assert.equal(kp.getPublicKey(), w.keys.agent_public);
  assert.equal(signEnvelope((m) => kp.sign(m), body), w.envelope.signature_b64url);
  assert.equal(Buffer.from(kp.sign(signingInput(body))).toString("hex"), w.envelope.signature_hex);
  const pub = decodePublicKey(w.keys.agent_public!, "U")!;
  verifyEnvelope(pub, body, w.envelope.signature_b64url);
  assert.ok(verifyEd25519(pub, signingInput(body), Buffer.from(w.envelope.signature_hex, "hex")));
  assert.equal(ingress(e.tenant, w.keys.agent_public!), w.envelope.subject);

  // One byte changed anywhere breaks it.
  const tampered = bytes(w.envelope.body.replace('"tool_call"', '"read"'));
  throwsReason(() => verifyEnvelope(pub, tampered, w.envelope.signature_b64url), "bad_signature");
});

test("wire-v1: signature encodings other than canonical unpadded base64url are refused", () => {
  const body = bytes(w.envelope.body);
  const pub = decodePublicKey(w.keys.agent_public!, "U")!;
  const sig = w.envelope.signature_b64url;
  const std = Buffer.from(sig, "base64url").toString("base64");
  for (const [name, s] of [
    ["empty", ""],
    ["padded", sig + "=="],
    ["standard alphabet", std.replace(/=+$/, "")],
    ["stray bits", sig.slice(0, -1) + (sig.endsWith("g") ? "h" : "g")],
    ["short", sig.slice(0, -2)],
    ["line break", sig.slice(0, 40) + "\n" + sig.slice(41)],
  ] as const) {
    throwsReason(() => verifyEnvelope(pub, body, s), "bad_signature", name);
  }
  throwsReason(() => verifyEnvelope(pub.subarray(0, 31), body, sig), "bad_signature", "short key");
});

test("wire-v1: the sealed payload opens with the gateway's curve key, and seals back", () => {
  const sp = w.sealed_payload;
  const gw = new Box(curveKeyPair(w.keys.gateway_xkey_seed!));
  assert.equal(gw.publicKey, w.keys.gateway_xkey_public);
  assert.equal(sp.to, w.keys.gateway_xkey_public);
  assert.equal(sp.from, w.keys.agent_xkey_public);
  const ct = Buffer.from(sp.sealed_b64url, "base64url");
  assert.equal(dec.decode(gw.open(ct, sp.from)), sp.plaintext);

  // The vector's body with its payload sealed parses as a sealed envelope.
  const sealedBody = w.envelope.body.replace(
    /"payload":\{.*\}\}$/,
    `"payload":{"sealed":"${sp.sealed_b64url}","from":"${sp.from}","to":"${sp.to}"}}`,
  );
  const e = parseEnvelope(bytes(sealedBody));
  assert.equal(e.payload.from, w.keys.agent_xkey_public);
  assert.deepEqual(sealedBytes(e.payload), new Uint8Array(ct));

  // The agent's box seals what the gateway's opens, and not from another key.
  const agent = new Box(curveKeyPair(w.keys.agent_xkey_seed!));
  const again = agent.seal(bytes(sp.plaintext), gw.publicKey);
  assert.equal(dec.decode(gw.open(again, agent.publicKey)), sp.plaintext);
  throwsReason(() => gw.open(again, gw.publicKey), "seal_broken", "wrong sender");
  const flipped = Uint8Array.from(again);
  flipped[flipped.length - 1]! ^= 1;
  throwsReason(() => gw.open(flipped, agent.publicKey), "seal_broken", "flipped byte");
  throwsReason(() => gw.open(again.subarray(0, 20), agent.publicKey), "seal_broken", "truncated");
  throwsReason(() => gw.open(again, w.keys.agent_public!), "seal_mismatch", "user key as sender");
  throwsReason(() => agent.seal(bytes("x"), "X" + "A".repeat(55)), "seal_mismatch", "bad recipient");
});

test("wire-v1: a curve key of a low-order point is refused", () => {
  // The all-zero point, as a public curve nkey: any shared key with it is zero.
  const gw = new Box(curveKeyPair(w.keys.gateway_xkey_seed!));
  const zero = encodeCurveKey(new Uint8Array(32));
  throwsReason(() => gw.seal(bytes("{}"), zero), "seal_mismatch");
});

test("wire-v1: the credential decodes to its claims and verifies by its issuer", () => {
  const c = w.credential;
  const j = parseJWT(c.jwt);
  assert.deepEqual(JSON.parse(dec.decode(j.payload)), c.claims);
  assert.ok(verifyByKey(c.claims.iss, "A", j.signingInput, j.signature));
  assert.ok(!verifyByKey(w.keys.agent_public!, "A", j.signingInput, j.signature));
  const claims = peekCredential(c.jwt);
  assert.equal(claims.sub, w.keys.agent_public);
  assert.equal(claims.tenant, "tenant_a");
  assert.equal(claims.xkey, w.keys.agent_xkey_public);
  assert.deepEqual(claims.scopes, ["agent:delegate", "refund:draft"]);
  const issuer = fromSeed(bytes(w.keys.issuer_seed!));
  assert.equal(issuer.getPublicKey(), c.claims.iss);
  // Signing the same input with the issuer's seed gives the same JWT.
  assert.equal(Buffer.from(issuer.sign(j.signingInput)).toString("base64url"), c.jwt.split(".")[2]);
});

test("envelope fixtures: every valid one parses, every invalid one fails with the reason in its name", () => {
  const valid = listTestdata("envelopes", "valid");
  const invalid = listTestdata("envelopes", "invalid");
  assert.ok(valid.length >= 6 && invalid.length >= 60, `found ${valid.length} valid, ${invalid.length} invalid fixtures`);
  for (const name of valid) {
    const raw = readFileSync(testdata("envelopes", "valid", name));
    try {
      parseEnvelope(raw);
    } catch (err) {
      assert.fail(`valid/${name}: ${String(err)}`);
    }
  }
  for (const name of invalid) {
    const code = name.split("--")[0]!;
    assert.ok(isReasonCode(code), `fixture ${name} does not start with a reason code`);
    const raw = readFileSync(testdata("envelopes", "invalid", name));
    throwsReason(() => parseEnvelope(raw), code, `invalid/${name}`);
  }
});

interface Wycheproof {
  numberOfTests: number;
  testGroups: { publicKey: { pk: string }; tests: { tcId: number; comment: string; msg: string; sig: string; result: string }[] }[];
}

test("wycheproof: Ed25519 verification agrees with every vector", () => {
  const file = readJSON<Wycheproof>("wycheproof", "ed25519_test.json");
  let n = 0;
  for (const g of file.testGroups) {
    const pk = Buffer.from(g.publicKey.pk, "hex");
    for (const tc of g.tests) {
      n++;
      assert.ok(tc.result === "valid" || tc.result === "invalid", `tc ${tc.tcId}: result ${tc.result}`);
      const got = verifyEd25519(pk, Buffer.from(tc.msg, "hex"), Buffer.from(tc.sig, "hex"));
      assert.equal(got, tc.result === "valid", `tc ${tc.tcId} (${tc.comment})`);
    }
  }
  assert.equal(n, 151);
  assert.equal(file.numberOfTests, 151);
});

// encodeCurveKey encodes 32 raw bytes as a public curve nkey.
function encodeCurveKey(raw: Uint8Array): string {
  const b = new Uint8Array(35);
  b[0] = 23 << 3; // 'X'
  b.set(raw, 1);
  const crc = crc16(b.subarray(0, 33));
  b[33] = crc & 0xff;
  b[34] = crc >> 8;
  return base32(b);
}

function crc16(d: Uint8Array): number {
  let crc = 0;
  for (const x of d) {
    crc ^= x << 8;
    for (let i = 0; i < 8; i++) {
      crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    }
  }
  return crc;
}

function base32(d: Uint8Array): string {
  const A = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let v = 0;
  let out = "";
  for (const x of d) {
    v = (v << 8) | x;
    bits += 8;
    while (bits >= 5) {
      out += A[(v >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) {
    out += A[(v << (5 - bits)) & 31];
  }
  return out;
}

test("keys: a small-order Ed25519 key and a prefix byte with its low bits set are refused, as in Go", () => {
  // Encoded by nkeys (Go): the identity point as a user key, the point of
  // order two's alias as a server key, and a curve key whose prefix byte
  // has its low three bits set (checksum recomputed; nkeys reads it).
  for (const [key, role] of [
    ["UAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABET7", "U"],
    ["NAAQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAABM5N", "N"],
    ["X56NIPYYTW2XT2OOW6JV55IH4LD7UEOML226WLJU7X4AEDLQD32AX3ND", "X"],
  ] as const) {
    assert.equal(decodePublicKey(key, role), undefined, `${role} key ${key}`);
  }
  assert.ok(decodePublicKey(w.keys.agent_public!, "U"), "a genuine user key still decodes");
});
