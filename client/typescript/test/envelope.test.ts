// Building envelopes and reading credentials: the bytes the Go builder
// writes, and the refusals it makes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCurve, createUser, fromPublic } from "@nats-io/nkeys";
import { ConfigError } from "../src/errors.js";
import { parseCreds, parseJWT, readCreds, readCurveSeed, userConnectOptions } from "../src/creds.js";
import { buildEnvelope, checkFreshness, formatTime, parseEnvelope, parseRequestRef, parseTime, parseTimeNs, requestRef, type EnvelopeFields } from "../src/envelope.js";
import { checkObject, foldName } from "../src/internal/json.js";
import { bytes, dec, readJSON, throwsReason } from "./helpers.js";

const w = readJSON("wire-v1.json");

test("buildEnvelope reproduces the wire-v1 body byte for byte", () => {
  const body = buildEnvelope(
    {
      messageId: "9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41",
      idempotencyKey: "refund:ord_123:draft",
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      tenant: "tenant_a",
      audience: "billing-gateway",
      capability: "tool_call",
      target: "refunds.draft_refund",
      payload: { plain: bytes(`{"order_id":"ord_123","amount_cents":2500}`) },
    },
    new Date(Date.parse(w.verify_at) + 999),
  );
  assert.equal(dec.decode(body), w.envelope.body);
});

// kbRead is a plain read of kb.search for tenant_a.
const kbRead: EnvelopeFields = {
  tenant: "tenant_a",
  audience: "billing-gateway",
  capability: "read",
  target: "kb.search",
  payload: { plain: bytes(`{"q":"x"}`) },
};

test("buildEnvelope fills ids, and refuses what the gateway would", () => {
  const base: EnvelopeFields = kbRead;
  const now = new Date("2026-11-26T01:08:41.5Z");
  const e = parseEnvelope(buildEnvelope(base, now));
  assert.match(e.messageId, /^[0-9a-f]{32}$/);
  assert.equal(e.idempotencyKey, e.messageId);
  assert.match(e.traceId, /^[0-9a-f]{32}$/);
  assert.equal(formatTime(e.issuedAt), "2026-11-26T01:08:41Z");
  assert.equal(e.expiresAt.getTime() - e.issuedAt.getTime(), 60_000);

  const refused: [string, Partial<EnvelopeFields>, string][] = [
    ["plain smuggles members", { payload: { plain: bytes(`{}},"x":{"y":1`) } }, "malformed_envelope"],
    ["plain is an array", { payload: { plain: bytes(`[1]`) } }, "malformed_envelope"],
    ["plain has duplicates", { payload: { plain: bytes(`{"a":1,"A":2}`) } }, "malformed_envelope"],
    ["plain and sealed", { payload: { plain: bytes("{}"), sealed: "AAAA", from: w.keys.agent_xkey_public, to: w.keys.gateway_xkey_public } }, "malformed_envelope"],
    ["negative ttl", { ttlMs: -1000 }, "ttl_too_long"],
    ["tenant with a wildcard", { tenant: "tenant_*" }, "malformed_envelope"],
    ["target with a quote", { target: 'kb."search' }, "malformed_envelope"],
    ["control character in the key", { idempotencyKey: "a\u0001b" }, "malformed_envelope"],
    ["lone surrogate", { audience: "gw\ud800" }, "malformed_envelope"],
    ["respond to a dotted target", { capability: "respond", target: "kb.search" }, "malformed_envelope"],
    ["oversized", { payload: { plain: bytes(`{"q":"${"x".repeat(70_000)}"}`) } }, "malformed_envelope"],
  ];
  for (const [name, over, reason] of refused) {
    throwsReason(() => buildEnvelope({ ...base, ...over } as EnvelopeFields, now), reason as any, name);
  }
});

test("requestRef: a respond target names the requesting agent and its message id, the key's checksum checked", () => {
  const agent = createUser().getPublicKey();
  const id = "9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41";
  assert.equal(requestRef(agent, id), `${agent}/${id}`);
  assert.deepEqual(parseRequestRef(requestRef(agent, id)), { agent, messageId: id });
  // The last character of a key is part of its checksum.
  const badSum = agent.slice(0, -1) + (agent.endsWith("A") ? "B" : "A");
  const refused: [string, string][] = [
    ["bare message id", id],
    ["checksum", `${badSum}/${id}`],
    ["curve key", `${createCurve().getPublicKey()}/${id}`],
    ["lower case key", `${agent.toLowerCase()}/${id}`],
    ["short id", `${agent}/abc`],
    ["no separator", `${agent}${id}`],
    ["line break in the key", `${agent.slice(0, 20)}\n${agent.slice(21)}/${id}`],
  ];
  const base: EnvelopeFields = {
    tenant: "tenant_a",
    audience: "billing-gateway",
    capability: "respond",
    target: requestRef(agent, id),
    payload: { sealed: "AAAA", from: w.keys.agent_xkey_public, to: w.keys.gateway_xkey_public },
  };
  const now = new Date("2026-11-26T01:08:41Z");
  assert.equal(parseEnvelope(buildEnvelope(base, now)).target, `${agent}/${id}`);
  for (const [name, ref] of refused) {
    assert.equal(parseRequestRef(ref), undefined, name);
    throwsReason(() => buildEnvelope({ ...base, target: ref }, now), "malformed_envelope", name);
  }
  // approve still names a held message id alone.
  assert.equal(parseEnvelope(buildEnvelope({ ...base, capability: "approve", target: id, payload: { plain: bytes("{}") } }, now)).target, id);
  throwsReason(() => buildEnvelope({ ...base, capability: "approve", target: requestRef(agent, id), payload: { plain: bytes("{}") } }, now), "malformed_envelope");
});

test("checkFreshness: ttl, expiry and the future, with skew", () => {
  const e = parseEnvelope(bytes(w.envelope.body));
  const at = (s: number): Date => new Date(e.issuedAt.getTime() + s * 1000);
  checkFreshness(e, at(0));
  checkFreshness(e, at(90)); // expired 30 s ago: within skew
  throwsReason(() => checkFreshness(e, at(91)), "message_expired");
  checkFreshness(e, at(-30));
  throwsReason(() => checkFreshness(e, at(-31)), "issued_in_future");
  throwsReason(() => checkFreshness(e, at(0), 59_000), "ttl_too_long");
});

test("checkFreshness: to the nanosecond, whatever the clock and the lengths", () => {
  const body = (issued: string, expires: string) =>
    parseEnvelope(bytes(w.envelope.body.replace(/"issued_at":"[^"]*","expires_at":"[^"]*"/, `"issued_at":"${issued}","expires_at":"${expires}"`)));
  const e = body("2026-11-26T01:08:41.0001Z", "2026-11-26T01:09:41.0005Z");
  assert.equal(e.issuedAtUnixNano, "1795655321000100000");
  assert.equal(e.expiresAtUnixNano, "1795655381000500000");
  assert.equal(e.issuedAt.getTime(), 1795655321000); // the Dates are cut to the millisecond
  const last = 1795655381000500000n + 30_000_000_000n;
  checkFreshness(e, last);
  throwsReason(() => checkFreshness(e, last + 1n), "message_expired");
  checkFreshness(e, 1795655321000100000n - 30_000_000_000n);
  throwsReason(() => checkFreshness(e, 1795655321000099999n - 30_000_000_000n), "issued_in_future");
  // maxTtlMs and skewMs are read to the nanosecond.
  checkFreshness(e, new Date(1795655321000), 60_000.4);
  throwsReason(() => checkFreshness(e, new Date(1795655321000), 60_000.399999), "ttl_too_long");
  checkFreshness(e, new Date(1795655381001), 60_001, 0.5);
  throwsReason(() => checkFreshness(e, new Date(1795655381001), 60_001, 0.499999), "message_expired");
  // Non-positive or NaN max TTL: the default; an infinite one: none.
  const long = body("2026-11-26T01:08:41Z", "2026-11-26T01:13:41.000000001Z");
  for (const m of [0, -1, NaN, 0.0000001]) {
    throwsReason(() => checkFreshness(long, new Date(1795655321000), m), "ttl_too_long", String(m));
  }
  checkFreshness(body("0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"), new Date(1795655321000), Infinity);
  // A negative or NaN skew is none, never a pass for every time.
  for (const s of [-1, NaN]) {
    throwsReason(() => checkFreshness(e, new Date(1795655381001), 60_001, s), "message_expired", String(s));
  }
  checkFreshness(e, new Date(8.64e15), 60_001, Infinity);
  // No clock fails closed.
  assert.throws(() => checkFreshness(e, new Date(NaN)), ConfigError);
});

test("buildEnvelope adds the TTL to the nanosecond before cutting to the second", () => {
  const f: EnvelopeFields = {
    ...kbRead,
    messageId: "9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41",
    payload: { plain: bytes("{}") },
  };
  const at = new Date(Date.parse(w.verify_at));
  const expires = (ttlMs: number) => formatTime(parseEnvelope(buildEnvelope({ ...f, ttlMs }, at)).expiresAt);
  assert.equal(expires(999.999999), "2026-11-26T01:08:41Z");
  assert.equal(expires(1000), "2026-11-26T01:08:42Z");
  assert.equal(expires(59_999.999999), "2026-11-26T01:09:40Z");
  throwsReason(() => buildEnvelope({ ...f, ttlMs: 1e18 }, at), "malformed_envelope");
  throwsReason(() => buildEnvelope({ ...f, ttlMs: -0.000001 }, at), "ttl_too_long");
});

test("parseTime reads RFC 3339 UTC exactly", () => {
  assert.equal(parseTime("2026-11-26T01:08:41Z")?.toISOString(), "2026-11-26T01:08:41.000Z");
  assert.equal(parseTime("2026-11-26T01:08:41.123456789Z")?.toISOString(), "2026-11-26T01:08:41.123Z");
  assert.equal(parseTime("2024-02-29T00:00:00Z")?.toISOString(), "2024-02-29T00:00:00.000Z");
  assert.equal(parseTime("0099-01-01T00:00:00Z")?.getUTCFullYear(), 99);
  for (const bad of ["2026-11-26T01:08:41+00:00", "2026-11-26t01:08:41Z", "2026-11-26T01:08:60Z", "2023-02-29T00:00:00Z", "2026-11-26T01:08Z", "2026-11-26T01:08:41.Z", "2026-11-26T01:08:41.1234567890Z"]) {
    assert.equal(parseTime(bad), undefined, bad);
  }
});

test("duplicate member names fold as Go's simple case folding does", () => {
  assert.equal(foldName("k"), foldName("\u212a")); // Kelvin sign
  assert.equal(foldName("s"), foldName("\u017f")); // long s
  assert.equal(foldName("\u00b5"), foldName("\u03bc")); // micro sign and mu
  assert.notEqual(foldName("i"), foldName("\u0131")); // dotless i has no simple folding
  assert.notEqual(foldName("ss"), foldName("\u00df"));
  throwsReason(() => parseEnvelope(bytes(w.envelope.body.replace(`{"order_id"`, `{"\\u00b5":1,"\\u03bc":2,"order_id"`))), "malformed_envelope");
  parseEnvelope(bytes(w.envelope.body.replace(`{"order_id"`, `{"i":1,"\\u0131":2,"order_id"`)));
});

// formatCreds writes a .creds file as jwt/v2 and the Go SDK do.
function formatCreds(jwt: string, seed: string): string {
  return (
    `-----BEGIN NATS AGENTGW-CREDENTIAL JWT-----\n${jwt}\n------END NATS AGENTGW-CREDENTIAL JWT------\n\n` +
    `************************* IMPORTANT *************************\nNKEY Seed printed below can be used to sign and prove identity.\n` +
    `NKEYs are sensitive and should be treated as secrets.\n\n-----BEGIN USER NKEY SEED-----\n${seed}\n------END USER NKEY SEED------\n\n` +
    `*************************************************************\n`
  );
}

test("creds: a .creds file gives the credential and its subject's key", async () => {
  const c = parseCreds(formatCreds(w.credential.jwt, w.keys.agent_seed));
  assert.equal(c.credential, w.credential.jwt);
  assert.equal(c.key.getPublicKey(), w.keys.agent_public);

  const other = new TextDecoder().decode(createUser().getSeed());
  for (const [name, text] of [
    ["seed of another key", formatCreds(w.credential.jwt, other)],
    ["no blocks", `${w.credential.jwt}\n${w.keys.agent_seed}\n`],
    ["curve seed", formatCreds(w.credential.jwt, w.keys.agent_xkey_seed)],
    ["not a jwt", formatCreds("abc.def", w.keys.agent_seed)],
  ] as const) {
    assert.throws(
      () => parseCreds(text),
      (err: Error) => err instanceof ConfigError && !err.message.includes(w.keys.agent_seed) && !err.message.includes(w.credential.jwt.slice(40, 80)),
      name,
    );
  }

  const dir = mkdtempSync(join(tmpdir(), "agentgw-creds-"));
  try {
    writeFileSync(join(dir, "agent.creds"), formatCreds(w.credential.jwt, w.keys.agent_seed), { mode: 0o600 });
    writeFileSync(join(dir, "agent.xk"), `${w.keys.agent_xkey_seed}\n`, { mode: 0o600 });
    writeFileSync(join(dir, "bad.xk"), `${w.keys.agent_seed}\n`, { mode: 0o600 });
    const rc = await readCreds(join(dir, "agent.creds"));
    assert.equal(rc.key.getPublicKey(), w.keys.agent_public);
    assert.equal((await readCurveSeed(join(dir, "agent.xk"))).getPublicKey(), w.keys.agent_xkey_public);
    await assert.rejects(readCurveSeed(join(dir, "bad.xk")), ConfigError);
    await assert.rejects(readCreds(join(dir, "missing.creds")), ConfigError);
    const o = await userConnectOptions(join(dir, "agent.creds"));
    assert.equal(o.inboxPrefix, `_INBOX.${w.keys.agent_public}`);
    assert.equal(typeof o.authenticator, "function");
    const nonce = "nonce-1";
    const auth = o.authenticator(nonce) as { nkey: string; sig: string };
    assert.equal(auth.nkey, w.keys.agent_public);
    assert.ok(!JSON.stringify(auth).includes(w.keys.agent_seed));
    assert.ok(fromPublic(auth.nkey).verify(new TextEncoder().encode(nonce), Buffer.from(auth.sig, "base64url")));
    // The user key signs envelopes too: it signs no nonce but a server's.
    for (const bad of ["", `agentgw-envelope-v1\n{"v":1}`, `{"v":1}`, "A".repeat(65), "aaaa=", "a+b/c", "nonce with space"]) {
      assert.throws(() => o.authenticator(bad), ConfigError, JSON.stringify(bad).slice(0, 30));
    }
    assert.ok(o.authenticator("z".repeat(64)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("parseJWT: only compact nkey JWTs of the exact form", () => {
  const jwt = w.credential.jwt;
  const [h, p, s] = jwt.split(".");
  parseJWT(jwt);
  for (const [name, t] of [
    ["empty", ""],
    ["two parts", `${h}.${p}`],
    ["four parts", `${jwt}.x`],
    ["padding", `${h}.${p}=.${s}`],
    ["v1 algorithm", `${Buffer.from(`{"typ":"JWT","alg":"ed25519"}`).toString("base64url")}.${p}.${s}`],
    ["duplicate header member", `${Buffer.from(`{"typ":"JWT","alg":"ed25519-nkey","alg":"ed25519-nkey"}`).toString("base64url")}.${p}.${s}`],
    ["short signature", `${h}.${p}.${s!.slice(0, 40)}`],
    ["line break", `${h}.${p.slice(0, 10)}\n${p.slice(10)}.${s}`],
  ] as const) {
    assert.throws(() => parseJWT(t), TypeError, name);
  }
  // The header may be written in another member order, as jwt/v2 accepts.
  parseJWT(`${Buffer.from(`{"alg":"ed25519-nkey","typ":"JWT"}`).toString("base64url")}.${p}.${s}`);
  assert.ok(createCurve().getPublicKey().startsWith("X"));
});

test("parseTimeNs reads the years 0000-0099 as Go does, leap days included", () => {
  // Go's envelope.ParseTime(...).Unix() for each.
  for (const [text, unix] of [
    ["0000-02-29T00:00:00Z", -62162121600n],
    ["0000-03-01T00:00:00Z", -62162035200n],
    ["0004-02-29T12:00:00Z", -62035848000n],
    ["0099-12-31T23:59:59Z", -59011459201n],
  ] as const) {
    assert.equal(parseTimeNs(text), unix * 1_000_000_000n, text);
  }
});

test("checkObject: a refusal gives the offset and what was wanted, never the input's bytes, as the Go scanner words it", () => {
  const lim = { maxBytes: 1 << 20, maxDepth: 32, maxString: 1 << 20 };
  for (const [input, want] of [
    [`{"pin":"12\\q4"}`, "offset 11: bad escape"],
    [`{"pin":S}`, "offset 7: unexpected byte"],
    [`{"pin" S}`, "offset 7: unexpected byte, want ':'"],
  ] as const) {
    const err = throwsReason(() => checkObject(bytes(input), lim, 1), "malformed_envelope", input);
    assert.ok(err.message.endsWith(want), `${input}: ${err.message}; want ${want}`);
    for (const leak of ["0x53", "0x71", "\\q", "S"]) {
      assert.equal(err.message.includes(leak), false, `${input}: ${err.message} shows ${leak}`);
    }
  }
});
