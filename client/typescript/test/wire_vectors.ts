// The vectors of the wire specification (testdata/wire/*.json, docs/wire.md),
// reproduced byte for byte: keys, credentials and .creds files, envelopes
// and their signatures, sealed payloads (with their nonces), decision
// tokens and their Merkle batches, deliveries, approval requests and
// answers, replies and decision notices, each with its rejects and their
// reason codes, and the cases two readers could read two ways (.creds
// and seed files, envelope times, approval requests and their times,
// header blocks), and the names of the pre-created consumers.
//
// Each file has a reader below; the tests of a file are registered (by
// vectors.test.ts importing this module) when it is present. A vector file
// without a reader fails the suite, so a new one cannot go unread.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromCurveSeed, fromSeed } from "@nats-io/nkeys";
import { MsgImpl } from "@nats-io/nats-core/internal";
import { answerKey, decodeRequest, requestExpired, verifyRequest } from "../src/approver.js";
import { parseCreds, parseJWT, readCurveSeed, readUserSeed } from "../src/creds.js";
import { rootInput, rootOf, leafHash, verifyDecision } from "../src/decision.js";
import {
  buildEnvelope,
  checkFreshness,
  digest,
  parseEnvelope,
  parseRequestRef,
  parseTime,
  payloadDigest,
  requestRef,
  sealedBytes,
  signEnvelope,
  signingInput,
  verifyEnvelope,
} from "../src/envelope.js";
import { ConfigError, DeniedError, InvalidRequestError, VerificationError } from "../src/errors.js";
import { b64url, hex } from "../src/internal/bytes.js";
import { signBatch } from "../src/internal/decision_sign.js";
import { Box, curveKeyPair, decodePublicKey } from "../src/keys.js";
import { isNotice, parseNoticeDoc, verifyNotice } from "../src/notice.js";
import { verifyReply } from "../src/reply.js";
import { isReasonCode, type ReasonCode } from "../src/reason.js";
import { approvalConsumerName, capabilityConsumerName, parseCapability } from "../src/subjects.js";
import { headersOf, parseHeaderBlock, verifyDelivery } from "../src/verify.js";
import { bytes, dec, listTestdata, readJSON } from "./helpers.js";

/** Files of testdata/wire that are not for a client SDK. */
const NOT_FOR_CLIENTS: Record<string, string> = {
  "operator.json": "operator replay requests: the Go CLI's, not a client SDK's",
  "catalog.yaml": "the gateway configuration the vectors were made with",
  "policy.cedar": "the gateway configuration the vectors were made with",
};

interface Header {
  name: string;
  value: string;
}
interface Message {
  subject: string;
  headers: Header[];
  body: string;
}

const files = listTestdata("wire");
const readers: Record<string, () => void> = {
  "keys.json": keysVectors,
  "credential.json": credentialVectors,
  "envelope.json": envelopeVectors,
  "sealed.json": sealedVectors,
  "decision.json": decisionVectors,
  "delivery.json": deliveryVectors,
  "approval.json": approvalVectors,
  "response.json": responseVectors,
  "notice.json": noticeVectors,
  "headers.json": headerVectors,
  "consumers.json": consumerNameVectors,
};

if (files.length > 0) {
  test("wire vectors: every file has a reader", () => {
    for (const f of files) {
      assert.ok(f in readers || f in NOT_FOR_CLIENTS, `testdata/wire/${f} has no reader in test/wire.test.ts`);
    }
  });
}
for (const f of files) {
  readers[f]?.();
}

/** mutateBytes applies a mutation of decision.json or delivery.json to b; at is a byte offset. */
function mutateBytes(b: Uint8Array, m: { op: string; at: number; text?: string }): Uint8Array {
  const last = b.length - 1 + (m.op === "swap" ? -1 : m.op === "insert" || m.op === "truncate" ? 1 : 0);
  assert.ok(Number.isInteger(m.at) && m.at >= 0 && m.at <= last, `${m.op} at ${m.at}, out of ${b.length} bytes`);
  const text = bytes(m.text ?? "");
  const head = b.subarray(0, m.at);
  switch (m.op) {
    case "set":
      return Buffer.concat([head, text, b.subarray(m.at + 1)]);
    case "insert":
      return Buffer.concat([head, text, b.subarray(m.at)]);
    case "delete":
      return Buffer.concat([head, b.subarray(m.at + 1)]);
    case "swap":
      return Buffer.concat([head, b.subarray(m.at + 1, m.at + 2), b.subarray(m.at, m.at + 1), b.subarray(m.at + 2)]);
    case "truncate":
      return Buffer.from(head);
    default:
      throw new Error(`unknown mutation ${m.op}`);
  }
}

/** mutate applies a decision.json mutation to a token. */
function mutate(tok: string, m: { op: string; at: number; text?: string }): string {
  return dec.decode(mutateBytes(bytes(tok), m));
}

/** keys.json by label: seed and public key. */
function keys(): Map<string, { seed: string; public: string }> {
  const k = readJSON<{ keys: { label: string; seed: string; public: string }[] }>("wire", "keys.json");
  return new Map(k.keys.map((x) => [x.label, x]));
}

function seedOf(label: string): string {
  const k = keys().get(label);
  assert.ok(k, `keys.json has no ${label}`);
  return k.seed;
}

/** labelOf returns the label of a public key in keys.json. */
function labelOf(pub: string): string {
  for (const [label, k] of keys()) {
    if (k.public === pub) return label;
  }
  assert.fail(`keys.json has no key ${pub}`);
}

function headerMap(hs: Header[]): Map<string, string> {
  return new Map(hs.map((h) => [h.name, h.value]));
}

function reasonOf(fn: () => unknown): ReasonCode | "accepted" {
  try {
    fn();
    return "accepted";
  } catch (err) {
    assert.ok(err instanceof DeniedError, String(err));
    return err.reason;
  }
}

function keysVectors(): void {
  test("wire/keys.json: every seed gives its public key and raw bytes", () => {
    const k = readJSON<{ keys: { label: string; seed: string; seed_raw_hex: string; public: string; public_raw_hex: string }[] }>("wire", "keys.json");
    assert.ok(k.keys.length >= 10);
    for (const x of k.keys) {
      const role = x.public[0] as "U" | "N" | "X" | "A";
      const kp = role === "X" ? fromCurveSeed(bytes(x.seed)) : fromSeed(bytes(x.seed));
      assert.equal(kp.getPublicKey(), x.public, x.label);
      assert.equal(hex(decodePublicKey(x.public, role)!), x.public_raw_hex, x.label);
    }
  });
}

function credentialVectors(): void {
  const c = readJSON("wire", "credential.json");
  test("wire/credential.json: JWTs and .creds files are reproduced and read", () => {
    for (const x of c.credentials) {
      assert.equal(b64url(bytes(x.header_json)), x.header_b64url, x.label);
      assert.equal(b64url(bytes(x.claims_json)), x.claims_b64url, x.label);
      assert.equal(x.signing_input, `${x.header_b64url}.${x.claims_b64url}`, x.label);
      const issuer = fromSeed(bytes(seedOf(labelOf(x.issuer))));
      assert.equal(b64url(issuer.sign(bytes(x.signing_input))), x.signature_b64url, x.label);
      assert.equal(x.jwt, `${x.signing_input}.${x.signature_b64url}`, x.label);
      const j = parseJWT(x.jwt);
      assert.equal(dec.decode(j.payload), x.claims_json, x.label);
      assert.deepEqual(JSON.parse(x.claims_json), x.claims, x.label);
      const creds = parseCreds(x.creds);
      assert.equal(creds.credential, x.jwt, x.label);
      assert.equal(creds.key.getPublicKey(), x.request.subject, x.label);
    }
  });
  test("wire/credential.json: every .creds case is accepted or refused as the file says", () => {
    const agent = c.credentials[0];
    assert.ok(c.creds_cases.length > 0);
    for (const x of c.creds_cases) {
      const data = x.creds_hex ? Buffer.from(x.creds_hex, "hex") : bytes(x.creds);
      let got = "accepted";
      try {
        assert.equal(parseCreds(data).key.getPublicKey(), agent.request.subject, x.name);
      } catch (err) {
        assert.ok(err instanceof ConfigError, `${x.name}: ${String(err)}`);
        got = "refused";
      }
      assert.equal(got, x.want, x.name);
    }
  });
  test("wire/credential.json: every seed file case is read, with its key, or refused as the file says", async () => {
    assert.ok(c.seed_file_cases.length > 0);
    const dir = mkdtempSync(join(tmpdir(), "agentgw-seeds-"));
    try {
      for (const [i, x] of c.seed_file_cases.entries()) {
        const path = join(dir, `seed${i}`);
        writeFileSync(path, x.file_hex ? Buffer.from(x.file_hex, "hex") : bytes(x.file ?? ""));
        assert.ok(x.role === "user" || x.role === "curve", x.name);
        let got = "accepted";
        try {
          const kp = await (x.role === "user" ? readUserSeed(path) : readCurveSeed(path));
          assert.equal(kp.getPublicKey(), x.public_key, x.name);
        } catch (err) {
          assert.ok(err instanceof ConfigError, `${x.name}: ${String(err)}`);
          got = "refused";
        }
        assert.equal(got, x.want, x.name);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test("wire/credential.json: every reject is a compact JWT with a known reason", () => {
    // Verifying a credential is the gateway's job; a client reads its own
    // credential only to check its configuration. The rejects still parse
    // as JWTs but for the legacy algorithm, which a client refuses too.
    for (const r of c.rejects) {
      assert.ok(isReasonCode(r.want), r.name);
      if (r.name === "legacy_alg_ed25519") {
        assert.throws(() => parseJWT(r.jwt), TypeError, r.name);
      } else {
        parseJWT(r.jwt);
      }
    }
  });
}

function envelopeVectors(): void {
  const e = readJSON("wire", "envelope.json");
  const sealed = new Map<string, any>(listTestdata("wire").includes("sealed.json") ? readJSON("wire", "sealed.json").seals.map((s: any) => [s.name, s]) : []);
  test("wire/envelope.json: bodies parse, signatures and digests are reproduced, the builder writes the same bytes", () => {
    for (const x of e.envelopes) {
      const m: Message = x.message;
      const h = headerMap(m.headers);
      const body = bytes(m.body);
      const env = parseEnvelope(body);
      assert.equal(dec.decode(signingInput(body)), x.signing_input, x.name);
      const kp = fromSeed(bytes(seedOf(x.signer)));
      assert.equal(m.subject, `agentgw.in.${env.tenant}.${kp.getPublicKey()}`, x.name);
      assert.equal(signEnvelope((i) => kp.sign(i), body), x.signature_b64url, x.name);
      assert.equal(hex(kp.sign(signingInput(body))), x.signature_hex, x.name);
      assert.equal(h.get("Agentgw-Signature"), x.signature_b64url, x.name);
      assert.equal(h.get("Nats-Msg-Id"), env.messageId, x.name);
      verifyEnvelope(decodePublicKey(kp.getPublicKey(), "U")!, body, x.signature_b64url);
      assert.equal(digest(body), x.body_sha256_hex, x.name);
      assert.equal(dec.decode(env.payloadRaw), x.payload_member, x.name);
      assert.equal(payloadDigest(env), x.payload_sha256_hex, x.name);
      checkFreshness(env, new Date(e.verify_at_unix * 1000));
      const rebuilt = buildEnvelope(
        {
          messageId: env.messageId,
          idempotencyKey: env.idempotencyKey,
          traceId: env.traceId,
          tenant: env.tenant,
          audience: env.audience,
          capability: env.capability,
          target: env.target,
          ttlMs: env.expiresAt.getTime() - env.issuedAt.getTime(),
          payload: env.payload,
        },
        env.issuedAt,
      );
      assert.equal(dec.decode(rebuilt), m.body, `${x.name}: the builder's bytes`);
      if (x.seal) {
        const s = sealed.get(x.seal);
        if (s) {
          assert.equal(env.payload.sealed, s.sealed_b64url, x.name);
          const to = new Box(curveKeyPair(seedOf(labelOf(env.payload.to!))));
          assert.equal(dec.decode(to.open(Buffer.from(env.payload.sealed!, "base64url"), env.payload.from!)), x.plaintext, x.name);
        }
      }
    }
  });
  envelopeTimeCases(e);
}

/** envelopeTimeCases: envelope.json's freshness_cases and build_cases, to the nanosecond. */
function envelopeTimeCases(e: any): void {
  // A length of the file (nanoseconds) in milliseconds, as the API takes it.
  const ms = (ns: string): number => Number(BigInt(ns)) / 1e6;
  const verdict = (fn: () => unknown): string => {
    const r = reasonOf(fn);
    return r === "accepted" ? "fresh" : r;
  };
  test("wire/envelope.json: every freshness case is decided to the nanosecond as the file says", () => {
    assert.ok(e.freshness_cases.length > 0);
    for (const x of e.freshness_cases) {
      assert.ok(x.body.includes(`"issued_at":"${x.issued_at}","expires_at":"${x.expires_at}"`), x.name);
      const env = parseEnvelope(bytes(x.body));
      assert.equal(env.issuedAtUnixNano, x.issued_at_unix_nano, `${x.name}: issued_at`);
      assert.equal(env.expiresAtUnixNano, x.expires_at_unix_nano, `${x.name}: expires_at`);
      const now = BigInt(x.now_unix_nano);
      assert.equal(verdict(() => checkFreshness(env, now, ms(x.max_ttl_ns), ms(x.skew_ns))), x.want, `${x.name}: at ${x.now}`);
      // A Date clock is a whole millisecond: at one, the same verdict.
      if (now % 1_000_000n === 0n) {
        const d = new Date(Number(now / 1_000_000n));
        assert.equal(verdict(() => checkFreshness(env, d, ms(x.max_ttl_ns), ms(x.skew_ns))), x.want, `${x.name}: at ${d.toISOString()}`);
      }
    }
  });
  test("wire/envelope.json: every build case writes its body, or is refused, as the file says", () => {
    assert.ok(e.build_cases.length > 0);
    const search = parseEnvelope(bytes(e.envelopes.find((x: any) => x.name === "search").message.body));
    for (const x of e.build_cases) {
      let got = "accepted";
      let body = "";
      try {
        const f = { ...search, ttlMs: ms(x.ttl_ns) };
        body = dec.decode(buildEnvelope(f, parseTime(x.now)!));
      } catch (err) {
        assert.ok(err instanceof DeniedError, `${x.name}: ${String(err)}`);
        got = err.reason;
      }
      assert.equal(got, x.want, x.name);
      assert.equal(body, x.body ?? "", x.name);
    }
  });
}

function sealedVectors(): void {
  const s = readJSON("wire", "sealed.json");
  test("wire/sealed.json: seals are reproduced from their nonces and open; rejects fail with their reasons", () => {
    for (const x of s.seals) {
      const from = fromCurveSeed(bytes(seedOf(x.from_label)));
      assert.equal(from.getPublicKey(), x.from, x.name);
      // The xkey box of @nats-io/nkeys, with the vector's nonce: the same bytes as Go's.
      const ct = from.seal(bytes(x.plaintext), x.to, Buffer.from(x.nonce_hex, "hex"));
      assert.equal(hex(ct), x.sealed_hex, x.name);
      assert.equal(b64url(ct), x.sealed_b64url, x.name);
      const to = new Box(curveKeyPair(seedOf(x.to_label)));
      assert.equal(dec.decode(to.open(ct, x.from)), x.plaintext, x.name);
    }
    for (const r of s.rejects) {
      const box = new Box(curveKeyPair(seedOf(r.open_with)));
      assert.equal(reasonOf(() => box.open(Buffer.from(r.sealed_hex, "hex"), r.from)), r.want, r.name);
    }
  });
}

function decisionVectors(): void {
  const d = readJSON("wire", "decision.json");
  test("wire/decision.json: batches verify, their roots and signatures are reproduced, rejects fail with their reasons", () => {
    assert.equal(b64url(bytes(d.header_json)), d.header_b64url);
    const gw = fromSeed(bytes(seedOf(labelOf(d.gateway))));
    for (const b of d.batches) {
      assert.equal(b.tokens.length, b.size, b.name);
      const claims: any[] = [];
      for (const t of b.tokens as any[]) {
        const [h, p, proof, sig] = t.token.split(".") as [string, string, string, string];
        assert.equal(h, d.header_b64url, t.name);
        assert.equal(`${h}.${p}`, t.signing_input, t.name);
        assert.equal(p, t.claims_b64url, t.name);
        assert.equal(b64url(bytes(t.claims_json)), t.claims_b64url, t.name);
        assert.equal(proof, t.proof_b64url, t.name);
        assert.equal(hex(Buffer.from(proof, "base64url")), t.proof_hex, t.name);
        assert.equal(sig, b.signature_b64url, t.name);
        const leaf = leafHash(bytes(t.signing_input));
        assert.equal(hex(leaf), t.leaf_hex, t.name);
        assert.equal(hex(Buffer.from(proof, "base64url").subarray(2)), (t.path_hex as string[]).join(""), t.name);
        const [root, size] = rootOf(leaf, Buffer.from(proof, "base64url"));
        assert.equal(hex(root), b.root_hex, t.name);
        assert.equal(size, b.size, t.name);
        assert.deepEqual(JSON.parse(t.claims_json), t.claims, t.name);
        claims.push(t.claims);
        const c = verifyDecision(t.token, { trustedGateways: [d.gateway], audience: t.audience, now: new Date(d.verify_at_unix * 1000), skewMs: d.skew_seconds * 1000 });
        assert.equal(c.issuer, d.gateway, t.name);
        assert.equal(c.id, t.claims.jti, t.name);
      }
      assert.equal(hex(rootInput(b.size, Buffer.from(b.root_hex, "hex"))), b.root_signing_input_hex, b.name);
      assert.equal(hex(gw.sign(Buffer.from(b.root_signing_input_hex, "hex"))), b.signature_hex, b.name);
      // The same claims signed as one batch give the same tokens, byte for byte.
      assert.deepEqual(signBatch(gw, claims), b.tokens.map((t: any) => t.token), `${b.name}: re-signed`);
    }
    for (const r of d.rejects) {
      const got = reasonOf(() =>
        verifyDecision(r.token, { trustedGateways: r.trusted, audience: r.audience, now: new Date(r.now_unix * 1000), skewMs: r.skew_seconds * 1000 }),
      );
      assert.equal(got, r.want, r.name);
    }
  });
  test("wire/decision.json: every mutation of a token is refused with its reason", () => {
    const byName = new Map<string, { token: string; audience: string }>();
    for (const b of d.batches) {
      for (const t of b.tokens as any[]) byName.set(t.name, t);
    }
    assert.equal(d.mutations.length, 400, "the mutations docs/wire.md counts");
    for (const [i, m] of (d.mutations as any[]).entries()) {
      const t = byName.get(m.of);
      assert.ok(t, `mutation ${i} edits ${m.of}, no token of the file`);
      assert.match(t.token, /^[\x21-\x7e]+$/, `${m.of}: a token is ASCII, so its byte offsets are its string's`);
      const got = reasonOf(() =>
        verifyDecision(mutate(t.token, m), { trustedGateways: [d.gateway], audience: t.audience, now: new Date(d.verify_at_unix * 1000), skewMs: d.skew_seconds * 1000 }),
      );
      assert.equal(got, m.want, `mutation ${i}: ${m.of} ${m.op} at ${m.at}`);
    }
  });
}

function deliveryVectors(): void {
  const d = readJSON("wire", "delivery.json");
  const byName = new Map<string, any>(d.deliveries.map((x: any) => [x.name, x]));
  const opts = (v: any) => ({
    tenant: v.tenant,
    targets: v.targets,
    trustedGateways: v.trusted_gateways,
    gatewayXKeys: v.gateway_xkeys,
    ...(v.consumer_xkey ? { curve: new Box(curveKeyPair(seedOf(labelOf(v.consumer_xkey)))) } : {}),
    now: new Date(v.now_unix * 1000),
    skewMs: v.skew_seconds * 1000,
    verifyAgentSignature: v.verify_agent_signature,
  });
  test("wire/delivery.json: deliveries verify to their payloads; rejects fail with their reasons", () => {
    for (const x of d.deliveries) {
      const m: Message = x.message;
      const got = verifyDelivery(m.subject, headerMap(m.headers), bytes(m.body), opts(x.verify));
      assert.equal(got.string(), x.want_payload, x.name);
      assert.equal(got.sealed, x.want_sealed, x.name);
      assert.equal(got.target, parseCapability(m.subject).target, x.name);
    }
    for (const r of d.rejects) {
      const m: Message = r.message;
      const of = byName.get(r.of);
      assert.ok(of, r.name);
      let err: unknown;
      try {
        verifyDelivery(m.subject, headerMap(m.headers), bytes(m.body), opts(of.verify));
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof VerificationError, `${r.name}: ${String(err)}`);
      assert.equal(err.reason, r.want, `${r.name}: ${err.message}`);
    }
  });
  test("wire/delivery.json: every mutation of a body is refused with its reason, or yields the delivery's payload", () => {
    assert.equal(d.mutations.length, 180, "the mutations docs/wire.md counts");
    for (const [i, m] of (d.mutations as any[]).entries()) {
      const x = byName.get(m.of);
      assert.ok(x, `mutation ${i} edits ${m.of}, no delivery of the file`);
      const msg: Message = x.message;
      let verdict: string;
      try {
        const got = verifyDelivery(msg.subject, headerMap(msg.headers), mutateBytes(bytes(msg.body), m), opts(x.verify));
        assert.equal(got.string(), x.want_payload, `mutation ${i}: another payload`);
        verdict = "accepted";
      } catch (e) {
        assert.ok(e instanceof VerificationError, `mutation ${i}: ${String(e)}`);
        verdict = e.reason;
      }
      assert.equal(verdict, m.want, `mutation ${i}: ${m.of} ${m.op} at ${m.at}`);
    }
  });
}

function approvalVectors(): void {
  const a = readJSON("wire", "approval.json");
  approvalRequestCases(a);
  approvalTimeCases(a);
  approvalTokenCases(a);
  test("wire/approval.json: the request reads as the approver sees it, and the answers are written byte for byte", () => {
    const m: Message = a.request;
    const req = decodeRequest(m.subject, bytes(m.body), "tenant_a");
    assert.equal(req.bodyDigest, a.body_digest);
    assert.equal(req.payloadDigest, a.payload_digest);
    assert.equal(req.policyVersion, a.policy_version);
    assert.equal(answerKey(req.heldMessageId), a.idempotency_key);
    assert.equal(headerMap(m.headers).get("Agentgw-Message-Id"), req.heldMessageId);
    for (const ans of a.answers) {
      const parsed = JSON.parse(ans.payload);
      // What Approver.answer writes (member order and omitted empty reason).
      const mine: Record<string, string> = { decision: ans.name };
      if (parsed.reason) mine.reason = parsed.reason;
      mine.body_digest = req.bodyDigest;
      mine.policy_version = req.policyVersion;
      assert.equal(JSON.stringify(mine), ans.payload, ans.name);
    }
    if (listTestdata("wire").includes("envelope.json")) {
      const env = readJSON("wire", "envelope.json").envelopes.find((e: any) => e.name === a.approve_envelope);
      const e = parseEnvelope(bytes(env.message.body));
      assert.equal(e.capability, "approve");
      assert.equal(e.target, req.heldMessageId);
      assert.equal(e.idempotencyKey, a.idempotency_key);
      assert.equal(e.traceId, req.traceId);
      assert.equal(dec.decode(e.payload.plain), a.answers.find((x: any) => x.name === "grant").payload);
    }
  });
}

function approvalTokenCases(a: any): void {
  test("wire/approval.json: the request's decision token verifies (verifyRequest) with decision.json's trust at its verify_at_unix", () => {
    const d = readJSON("wire", "decision.json");
    const m: Message = a.request;
    const h = headerMap(m.headers);
    const tok = h.get("Agentgw-Decision");
    assert.ok(tok, "the request has no Agentgw-Decision header");
    // The token of decision.json's approval batch, for the request's target.
    const t = (d.batches as any[]).flatMap((b) => b.tokens as any[]).find((x) => x.token === tok);
    assert.ok(t, "the request's token is not in decision.json");
    assert.equal(t.audience, "payments.send");
    assert.equal(t.claims.nats.route, "approval");
    const data = bytes(m.body);
    const req = decodeRequest(m.subject, data, "tenant_a");
    const opts = { trustedGateways: [d.gateway], now: new Date(d.verify_at_unix * 1000), skewMs: d.skew_seconds * 1000 };
    const c = verifyRequest(tok, data, req, opts);
    assert.equal(c.id, t.claims.jti);
    assert.equal(c.issuer, d.gateway);
    assert.equal(c.audience, req.target);
    assert.equal(c.messageId, req.heldMessageId);
    assert.equal(c.messageId, h.get("Agentgw-Message-Id"));
    assert.equal(c.subject, req.agent);
    assert.equal(`sha256:${c.bodyDigest}`, a.body_digest);
    assert.equal(c.payloadDigest, digest(data));
    assert.deepEqual(c.policyIds, req.policyIds);
    assert.equal(c.policyVersion, req.policyVersion);
    // It expires with the request: the deadline, to the second.
    assert.equal(c.expires.getTime(), req.deadline!.getTime());
    // Changed, it does not verify.
    assert.equal(reasonOf(() => verifyRequest(tok, data, req, { ...opts, trustedGateways: [labelKey("untrusted-gateway")] })), "decision_token_invalid", "other trust");
    assert.equal(reasonOf(() => verifyRequest(undefined, data, req, opts)), "decision_token_missing", "no token");
    const edited = bytes(m.body.replace(`"amount_cents":990000`, `"amount_cents":100`));
    assert.notDeepEqual(edited, data);
    assert.equal(reasonOf(() => verifyRequest(tok, edited, decodeRequest(m.subject, edited, "tenant_a"), opts)), "decision_token_binding", "fields edited");
    assert.equal(reasonOf(() => verifyRequest(tok, data, { ...req, heldMessageId: "5d1e0c3a9b7f4e21a6c8d2f0b4e6a801" }, opts)), "decision_token_binding", "another held id");
    assert.equal(reasonOf(() => verifyRequest(tok, data, { ...req, target: "refunds.draft_refund" }, opts)), "decision_token_audience", "another target");
    assert.equal(reasonOf(() => verifyRequest(tok, data, req, { ...opts, now: new Date((t.claims.exp + d.skew_seconds + 1) * 1000) })), "decision_token_expired", "after the deadline");
    // The request's other tokens (a delivery's, a notice's) are not an approval request's.
    for (const other of (d.batches as any[]).flatMap((b) => b.tokens as any[]).filter((x) => x.audience === "payments.send" && x.token !== tok)) {
      assert.equal(reasonOf(() => verifyRequest(other.token, data, req, opts)), "decision_token_invalid", other.name);
    }
  });
}

function approvalTimeCases(a: any): void {
  test("wire/approval.json: every time case reads to the nanosecond and expires as the file says", () => {
    assert.ok(a.time_cases.length > 0);
    const ms = (ns: string): number | undefined => {
      if (ns === "") return undefined;
      const n = BigInt(ns);
      const q = n / 1_000_000n;
      return Number(n < 0n && q * 1_000_000n !== n ? q - 1n : q);
    };
    for (const x of a.time_cases) {
      const req = decodeRequest(a.request.subject, bytes(x.body), "tenant_a");
      assert.equal(req.requestedAtUnixNano ?? "", x.requested_at_unix_nano, `${x.name}: requested_at`);
      assert.equal(req.deadlineUnixNano ?? "", x.deadline_unix_nano, `${x.name}: deadline`);
      assert.equal(req.requestedAt?.getTime(), ms(x.requested_at_unix_nano), `${x.name}: requestedAt`);
      assert.equal(req.deadline?.getTime(), ms(x.deadline_unix_nano), `${x.name}: deadline`);
      const got = requestExpired(req, BigInt(x.now_unix_nano)) ? "expired" : "pending";
      assert.equal(got, x.want, `${x.name}: at ${x.now}`);
      // A Date clock is a whole millisecond: that instant, compared exactly.
      const nowMs = ms(x.now_unix_nano)!;
      const wantAtMs = x.deadline_unix_nano !== "" && BigInt(nowMs) * 1_000_000n > BigInt(x.deadline_unix_nano);
      assert.equal(requestExpired(req, new Date(nowMs)), wantAtMs, `${x.name}: at ${new Date(nowMs).toISOString()}`);
    }
  });
}

function approvalRequestCases(a: any): void {
  test("wire/approval.json: every request case is accepted, with its fields, or refused as the file says", () => {
    assert.ok(a.request_cases.length > 0);
    for (const x of a.request_cases) {
      let got = "accepted";
      try {
        const req = decodeRequest(a.request.subject, bytes(x.body), "tenant_a");
        assert.deepEqual(req.fields, JSON.parse(x.fields), x.name);
      } catch (err) {
        assert.ok(err instanceof InvalidRequestError, `${x.name}: ${String(err)}`);
        got = "refused";
      }
      assert.equal(got, x.want, x.name);
    }
  });
}

function consumerNameVectors(): void {
  const f = readJSON("wire", "consumers.json");
  test("wire/consumers.json: every consumer name is the Go SDK's, and no two pairs share one", () => {
    assert.ok(f.capability.length > 0 && f.approval.length > 0);
    const seen = new Set<string>();
    for (const c of f.capability) {
      assert.equal(capabilityConsumerName(c.tenant, c.target), c.name, `${c.tenant} ${c.target}`);
      assert.ok(!seen.has(c.name) && c.name.length <= 255, c.name);
      seen.add(c.name);
    }
    for (const a of f.approval) {
      assert.equal(approvalConsumerName(a.tenant), a.name, a.tenant);
    }
  });
}

function headerVectors(): void {
  const f = readJSON("wire", "headers.json");
  test("wire/headers.json: every header block reads as the file says, from a nats.js message", () => {
    assert.ok(f.blocks.length > 0);
    for (const b of f.blocks) {
      const hdr = bytes(b.block);
      const raw = new Uint8Array([...hdr, ...bytes("{}")]);
      const msg = new MsgImpl({ subject: bytes("agentgw.reply.x"), sid: 1, size: raw.length, hdr: hdr.length } as never, raw, {} as never);
      for (const r of b.reads) {
        assert.equal(headersOf(msg)?.get(r.name) ?? "", r.value, `${b.name}: ${r.name}`);
        assert.equal(parseHeaderBlock(hdr).get(r.name) ?? "", r.value, `${b.name}: ${r.name}`);
      }
    }
  });
}

function responseVectors(): void {
  const r = readJSON("wire", "response.json");
  test("wire/response.json: the respond envelope names its request by agent and message id, sealed from the consumer key", () => {
    const envs = new Map<string, any>(readJSON("wire", "envelope.json").envelopes.map((e: any) => [e.name, e]));
    const request = parseEnvelope(bytes(envs.get(r.request_envelope).message.body));
    const respond = parseEnvelope(bytes(envs.get(r.respond_envelope).message.body));
    assert.equal(respond.capability, "respond");
    assert.equal(respond.target, requestRef(r.agent, request.messageId));
    assert.deepEqual(parseRequestRef(respond.target), { agent: r.agent, messageId: request.messageId });
    assert.equal(respond.traceId, request.traceId);
    // The gateway takes the answer only from the target's consumer_xkey.
    assert.equal(respond.payload.from, labelKey("consumer-xkey"));
    assert.equal(respond.payload.to, r.gateway_xkey);
    const gw = new Box(curveKeyPair(seedOf(labelOf(r.gateway_xkey))));
    assert.equal(dec.decode(gw.open(sealedBytes(respond.payload), respond.payload.from!)), r.response_plaintext);
    // What Agent.respond builds from the delivery of the request.
    const rebuilt = buildEnvelope(
      {
        messageId: respond.messageId,
        idempotencyKey: respond.idempotencyKey,
        traceId: request.traceId,
        tenant: respond.tenant,
        audience: respond.audience,
        capability: "respond",
        target: requestRef(r.agent, request.messageId),
        ttlMs: respond.expiresAt.getTime() - respond.issuedAt.getTime(),
        payload: respond.payload,
      },
      respond.issuedAt,
    );
    assert.deepEqual(rebuilt, respond.raw);
  });
  test("wire/response.json: the reply verifies and opens to the redacted plaintext", () => {
    const m = r.reply;
    const h = headerMap(m.headers);
    const agent = {
      publicKey: r.agent,
      tenant: m.subject.split(".")[2]!,
      gatewayXKey: r.gateway_xkey,
      box: new Box(curveKeyPair(seedOf(labelOf(r.agent_xkey)))),
      now: () => new Date(r.verify_at_unix * 1000),
    };
    const data = Buffer.from(m.data_hex, "hex");
    assert.equal(b64url(data), m.data_b64url);
    const reply = verifyReply(agent, { data, headers: h }, { trustedGateways: r.trusted_gateways });
    assert.equal(reply.string(), r.reply_plaintext);
    assert.equal(reply.requestId, h.get("Agentgw-Request-Id"));
    assert.equal(reply.claims.route, "reply");
    const respond = readJSON("wire", "envelope.json").envelopes.find((e: any) => e.name === r.respond_envelope);
    assert.equal(reply.messageId, parseEnvelope(bytes(respond.message.body)).messageId);
    assert.equal(reply.claims.bodyDigest, respond.body_sha256_hex);
    assert.equal(`agentgw.in.tenant_a.${reply.responder}`, respond.message.subject);
    // Not from the gateway's curve key, not for this agent, or other bytes: refused.
    assert.equal(reasonOf(() => verifyReply({ ...agent, gatewayXKey: r.agent_xkey }, { data, headers: h }, { trustedGateways: r.trusted_gateways })), "seal_mismatch");
    assert.equal(reasonOf(() => verifyReply({ ...agent, publicKey: labelKey("consumer") }, { data, headers: h }, { trustedGateways: r.trusted_gateways })), "decision_token_audience");
    const flipped = Buffer.from(data);
    flipped[flipped.length - 1]! ^= 1;
    assert.equal(reasonOf(() => verifyReply(agent, { data: flipped, headers: h }, { trustedGateways: r.trusted_gateways })), "decision_token_binding");
  });
}

function labelKey(label: string): string {
  return keys().get(label)!.public;
}

function noticeVectors(): void {
  const f = readJSON("wire", "notice.json");
  const envs = new Map<string, any>(readJSON("wire", "envelope.json").envelopes.map((e: any) => [e.name, e]));
  const tokens = new Map<string, string>();
  for (const b of readJSON("wire", "decision.json").batches) {
    for (const t of b.tokens) tokens.set(t.name, t.token);
  }
  // The agents of the scenario are of the tenant of the notices' reply subjects.
  const tenant = f.notices[0].message.subject.split(".")[2];
  const receiver = (label: string) => ({ publicKey: labelKey(label), tenant, now: () => new Date(f.verify_at_unix * 1000) });
  const opt = { trustedGateways: f.trusted_gateways, skewMs: f.skew_seconds * 1000 };
  const dataOf = (m: any): Uint8Array => (m.data_hex ? Buffer.from(m.data_hex, "hex") : bytes(m.body));
  test("wire/notice.json: every notice verifies for its agent and reports on its envelope", () => {
    const routes = new Set<string>();
    for (const n of f.notices) {
      const m = n.message;
      const h = headerMap(m.headers);
      assert.ok(isNotice({ headers: h }), n.name);
      assert.equal(h.get("Agentgw-Decision"), undefined, n.name);
      assert.equal(parseNoticeDoc(bytes(m.body)).decision, tokens.get(n.token), n.name);
      assert.equal(m.subject, `agentgw.reply.tenant_a.${labelKey(n.to)}`, n.name);
      const d = verifyNotice(receiver(n.to), { data: bytes(m.body), headers: h }, opt);
      const env = envs.get(n.envelope);
      const e = parseEnvelope(bytes(env.message.body));
      assert.equal(d.messageId, e.messageId, n.name);
      assert.equal(h.get("Agentgw-Message-Id"), e.messageId, n.name);
      assert.equal(d.claims.traceId, e.traceId, n.name);
      assert.equal(d.claims.bodyDigest, env.body_sha256_hex, n.name);
      assert.equal(d.claims.route, "notice", n.name);
      assert.equal(d.claims.scope, "notice", n.name);
      assert.deepEqual(d.claims.policyIds, [], n.name);
      // The decoded notice is the data, member for member.
      const want = JSON.parse(m.body).notice;
      if (want.deadline) want.deadline = new Date(want.deadline).toISOString();
      assert.deepEqual(JSON.parse(JSON.stringify(d)), want, n.name);
      routes.add(d.route);
    }
    assert.deepEqual([...routes].sort(), ["allow", "approval", "deny"]);
  });
  test("wire/notice.json: every reject is refused with its reason", () => {
    for (const r of f.rejects) {
      const h = headerMap(r.message.headers);
      assert.equal(reasonOf(() => verifyNotice(receiver(r.to), { data: dataOf(r.message), headers: h }, opt)), r.want, r.name);
    }
  });
}
