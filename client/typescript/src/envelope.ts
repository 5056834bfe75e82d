// Wire format v1 envelopes: the exact bytes an agent signs, built and
// parsed as the Go envelope package does it, member for member.
import { ConfigError, DeniedError } from "./errors.js";
import { b64url, concat, fromB64url, hex, random, sha256, utf8 } from "./internal/bytes.js";
import { checkObject, foldName as foldNameOf, Scanner, type ScanLimits, type Str } from "./internal/json.js";
import { isPublicKey, verifyEd25519 } from "./keys.js";

/** VERSION is the wire format version this package reads and writes. */
export const VERSION = 1;

/**
 * SIGNING_CONTEXT is prepended to the body bytes before signing, so an
 * envelope signature can never be replayed as a signature over another
 * structure.
 */
export const SIGNING_CONTEXT = "agentgw-envelope-v1\n";

/** Freshness defaults, in milliseconds (checkFreshness compares nanoseconds). */
export const DEFAULT_MAX_TTL_MS = 5 * 60_000;
export const DEFAULT_SKEW_MS = 30_000;
/** DEFAULT_TTL_MS is expires_at - issued_at of a built envelope by default (60 s). */
export const DEFAULT_TTL_MS = 60_000;

/** The six capabilities of wire format v1. */
export const CAPABILITIES = ["read", "delegate", "tool_call", "workflow_command", "approve", "respond"] as const;

/** Capability is what an envelope asks the gateway to do with its target. */
export type Capability = (typeof CAPABILITIES)[number];

/** isCapability reports whether s is one of the six capabilities. */
export function isCapability(s: unknown): s is Capability {
  return typeof s === "string" && (CAPABILITIES as readonly string[]).includes(s);
}

/**
 * answersMessage: the target of approve and respond names a message
 * rather than a catalog entry: a held message id for approve, a request
 * reference (requestRef) for respond.
 */
export function answersMessage(c: Capability): boolean {
  return c === "approve" || c === "respond";
}

/** USER_KEY_LEN is the length of an nkeys public key. */
const USER_KEY_LEN = 56;

/**
 * requestRef is the target of a respond envelope: the request it
 * answers, "<requesting agent's U key>/<request message_id>". A message
 * id is unique per agent only, so an id alone could name another agent's
 * request sent under the same id.
 */
export function requestRef(agent: string, messageId: string): string {
  return `${agent}/${messageId}`;
}

/**
 * parseRequestRef splits a request reference into the agent key and the
 * message id, or returns undefined unless ref is a user public key
 * (checksum included), '/', and a message id.
 */
export function parseRequestRef(ref: string): { agent: string; messageId: string } | undefined {
  if (!validRequestRef(ref)) {
    return undefined;
  }
  return { agent: ref.slice(0, USER_KEY_LEN), messageId: ref.slice(USER_KEY_LEN + 1) };
}

/** validRequestRef checks a respond target: "<U key>/<message id>". */
export function validRequestRef(s: string): boolean {
  return (
    typeof s === "string" &&
    s.length > USER_KEY_LEN &&
    s[USER_KEY_LEN] === "/" &&
    validMessageId(s.slice(USER_KEY_LEN + 1)) &&
    isPublicKey(s.slice(0, USER_KEY_LEN), "U")
  );
}

/**
 * Limits bound what parseEnvelope reads: bytes of the body, levels of
 * nesting (the body is level 1, payload 2, the plain object 3), and
 * decoded bytes of any one string (payload.sealed excepted: it is bounded
 * by maxBytes only). Absent or non-positive fields take the defaults:
 * 64 KiB, 32, 16 KiB. maxDepth is clamped to 1024.
 */
export interface Limits {
  maxBytes?: number;
  maxDepth?: number;
  maxString?: number;
}

/** DEFAULT_LIMITS are the gateway's defaults. */
export const DEFAULT_LIMITS: Readonly<Required<Limits>> = { maxBytes: 64 << 10, maxDepth: 32, maxString: 16 << 10 };

/** withDefaults fills absent limits. */
export function withDefaults(l: Limits | undefined): ScanLimits {
  const pos = (v: number | undefined, d: number): number => (v !== undefined && v > 0 ? v : d);
  return {
    maxBytes: pos(l?.maxBytes, DEFAULT_LIMITS.maxBytes),
    maxDepth: Math.min(pos(l?.maxDepth, DEFAULT_LIMITS.maxDepth), 1024),
    maxString: pos(l?.maxString, DEFAULT_LIMITS.maxString),
  };
}

/** A payload: sealed (sealed, from, to set) or plain (plain set), never both. */
export interface Payload {
  /** base64url (no padding) xkey ciphertext. */
  sealed?: string;
  /** Sender curve key X…. */
  from?: string;
  /** Recipient curve key X…. */
  to?: string;
  /** Exact bytes of a JSON object. */
  plain?: Uint8Array;
}

/**
 * An envelope body as parsed: every field rule of the wire format holds.
 * Its byte arrays are views of the parsed bytes: do not modify those.
 */
export interface Envelope {
  v: 1;
  messageId: string;
  idempotencyKey: string;
  traceId: string;
  /**
   * issued_at to the millisecond, rounded down (toward the past). The
   * time itself is issuedAtUnixNano: a time may have up to nine fraction
   * digits, and freshness is decided on those (checkFreshness).
   */
  issuedAt: Date;
  /** expires_at to the millisecond, rounded down (toward the past); expiresAtUnixNano is the time itself. */
  expiresAt: Date;
  /** issued_at to the nanosecond, as the Go SDK's time.Time holds it: Unix nanoseconds in decimal (BigInt reads it). */
  issuedAtUnixNano: string;
  /** expires_at to the nanosecond: Unix nanoseconds in decimal. */
  expiresAtUnixNano: string;
  tenant: string;
  audience: string;
  capability: Capability;
  target: string;
  payload: Payload;
  /** The exact bytes of the body. */
  raw: Uint8Array;
  /** The exact bytes of the "payload" member value, from '{' to '}'. */
  payloadRaw: Uint8Array;
}

/** signingInput returns SIGNING_CONTEXT followed by body: the exact bytes that are signed. */
export function signingInput(body: Uint8Array): Uint8Array {
  return concat(utf8(SIGNING_CONTEXT), body);
}

/**
 * signEnvelope signs signingInput(body) with sign (an nkeys key pair's
 * sign, or any Ed25519 signer) and returns the signature as base64url
 * without padding (86 characters).
 */
export function signEnvelope(sign: (input: Uint8Array) => Uint8Array, body: Uint8Array): string {
  return b64url(sign(signingInput(body)));
}

/**
 * verifyEnvelope checks sig (base64url, no padding, canonical) as the
 * Ed25519 signature of signingInput(body) by pub (32 raw bytes). Every
 * failure is a DeniedError bad_signature; it never throws anything else.
 */
export function verifyEnvelope(pub: Uint8Array, body: Uint8Array, sig: string): void {
  if (typeof sig !== "string" || sig.length !== 86) {
    throw new DeniedError("bad_signature", `signature is ${typeof sig === "string" ? sig.length : 0} characters; want 86`);
  }
  const raw = fromB64url(sig);
  if (raw === undefined || raw.length !== 64) {
    throw new DeniedError("bad_signature", "signature is not canonical base64url");
  }
  if (pub.length !== 32) {
    throw new DeniedError("bad_signature", `public key is ${pub.length} bytes; want 32`);
  }
  if (!verifyEd25519(pub, signingInput(body), raw)) {
    throw new DeniedError("bad_signature", "signature does not verify");
  }
}

/** digest returns the SHA-256 of the exact body bytes, as lowercase hex. */
export function digest(body: Uint8Array): string {
  return hex(sha256(body));
}

/** newMessageId returns 128 random bits as 32 lowercase hex: a valid, unguessable message_id. */
export function newMessageId(): string {
  return hex(random(16));
}

/** newTraceId returns a random W3C trace-id: 32 lowercase hex, never all zero. */
export function newTraceId(): string {
  for (;;) {
    const b = random(16);
    if (b.some((x) => x !== 0)) {
      return hex(b);
    }
  }
}

// Field alphabets (wire format v1). All ASCII, so a length in characters
// is a length in bytes.
const MESSAGE_ID = /^[A-Za-z0-9._:-]{16,128}$/;
const IDEMPOTENCY_KEY = /^[A-Za-z0-9._:/+=@-]{1,128}$/;
const AUDIENCE = /^[A-Za-z0-9._:/-]{1,128}$/;
const TOKEN = /^[a-z0-9_-]{1,64}$/;
const TRACE_ID = /^[0-9a-f]{32}$/;

export function validMessageId(s: string): boolean {
  return MESSAGE_ID.test(s);
}
export function validIdempotencyKey(s: string): boolean {
  return IDEMPOTENCY_KEY.test(s);
}
export function validAudience(s: string): boolean {
  return AUDIENCE.test(s);
}
/** validToken: a tenant, or one part of a target: [a-z0-9_-]{1,64}. */
export function validToken(s: string): boolean {
  return TOKEN.test(s);
}
/** validTraceId: 32 lowercase hex, not all zero. */
export function validTraceId(s: string): boolean {
  return TRACE_ID.test(s) && !/^0+$/.test(s);
}
/** validTarget: dot-separated tokens, at most 255 bytes in all. */
export function validTarget(s: string): boolean {
  return s.length > 0 && s.length <= 255 && s.split(".").every(validToken);
}

/**
 * validSealed: non-empty base64url without padding, of a possible length,
 * whose unused trailing bits are zero, so each ciphertext has one encoding.
 */
export function validSealed(s: string): boolean {
  return s.length > 0 && fromB64url(s) !== undefined;
}

/**
 * parseTime reads YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z exactly: RFC 3339 in UTC
 * with upper-case T and Z; other offsets, lower-case letters, impossible
 * dates and second 60 are refused. The Date is the time's millisecond,
 * rounded down (parseTimeNs has the nanoseconds).
 */
export function parseTime(s: string): Date | undefined {
  const ns = parseTimeNs(s);
  return ns === undefined ? undefined : dateOfNs(ns);
}

/** parseTimeNs reads a time as parseTime does, to the nanosecond: Unix nanoseconds. */
export function parseTimeNs(s: string): bigint | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?Z$/.exec(s);
  if (m === null) {
    return undefined;
  }
  const [year, month, day, hour, minute, sec] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month) || hour > 23 || minute > 59 || sec > 59) {
    return undefined;
  }
  const d = new Date(Date.UTC(2000, 0, 1, hour, minute, sec));
  // Date.UTC maps years 0-99 to 1900-1999 (where 0000-02-29 would be a
  // 1900-02-29 that does not exist): the date is set whole.
  d.setUTCFullYear(year, month - 1, day);
  return BigInt(d.getTime()) * NS_PER_MS + BigInt((m[7] ?? "").padEnd(9, "0"));
}

const NS_PER_MS = 1_000_000n;
const NS_PER_S = 1_000_000_000n;

/**
 * nsOfMs is a length of time given in milliseconds (a finite number,
 * possibly with a fraction) in nanoseconds, rounded to the nearest: the
 * time.Duration the Go SDK would be given.
 */
function nsOfMs(ms: number): bigint {
  const whole = Math.trunc(ms);
  return BigInt(whole) * NS_PER_MS + BigInt(Math.round((ms - whole) * 1e6));
}

/**
 * unixNanoOf is the instant now in Unix nanoseconds: a Date is its
 * millisecond, a bigint is taken as Unix nanoseconds. Throws a
 * ConfigError for an invalid Date (no clock: fail closed).
 */
function unixNanoOf(now: Date | bigint): bigint {
  if (typeof now === "bigint") {
    return now;
  }
  const ms = now instanceof Date ? now.getTime() : NaN;
  if (!Number.isFinite(ms)) {
    throw new ConfigError("invalid clock: not a valid Date");
  }
  return BigInt(ms) * NS_PER_MS;
}

/** msText writes nanoseconds ns as exact decimal milliseconds, for details. */
function msText(ns: bigint): string {
  const neg = ns < 0n;
  const a = neg ? -ns : ns;
  const frac = (a % NS_PER_MS).toString().padStart(6, "0").replace(/0+$/, "");
  return `${neg ? "-" : ""}${a / NS_PER_MS}${frac === "" ? "" : "." + frac} ms`;
}

/** dateOfNs is the Date of Unix nanoseconds ns: its millisecond, rounded down (toward the past). */
export function dateOfNs(ns: bigint): Date {
  const q = ns / NS_PER_MS; // rounded toward zero
  return new Date(Number(ns < 0n && q * NS_PER_MS !== ns ? q - 1n : q));
}

function daysIn(year: number, month: number): number {
  switch (month) {
    case 2:
      return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
    case 4:
    case 6:
    case 9:
    case 11:
      return 30;
  }
  return 31;
}

// 9999-12-31T23:59:59.999999999Z: the last time of four-digit years.
const LAST_TIME_NS = 253402300800n * NS_PER_S - 1n;

/** formatTime writes t, truncated to the second, as YYYY-MM-DDTHH:MM:SSZ. */
export function formatTime(t: Date): string {
  const s = new Date(Math.floor(t.getTime() / 1000) * 1000).toISOString();
  return s.slice(0, 19) + "Z";
}

const BODY_NAMES = [
  "v",
  "message_id",
  "idempotency_key",
  "trace_id",
  "issued_at",
  "expires_at",
  "tenant",
  "audience",
  "capability",
  "target",
  "payload",
] as const;
const PAYLOAD_NAMES = ["sealed", "from", "to", "plain"] as const;

/**
 * parseEnvelope reads one envelope body strictly and checks every field
 * rule of wire format v1 (not freshness: see checkFreshness), exactly as
 * the gateway does. It throws a DeniedError: oversized when the body is
 * larger than limits.maxBytes (checked before any byte is read);
 * unsupported_version when "v" is a number other than the literal 1;
 * malformed_envelope for everything else.
 */
export function parseEnvelope(raw: Uint8Array, limits?: Limits): Envelope {
  const lim = withDefaults(limits);
  if (raw.length > lim.maxBytes) {
    throw new DeniedError("oversized", `body is ${raw.length} bytes; limit ${lim.maxBytes}`);
  }
  const p = new Parser(raw, lim);
  p.body();
  p.end();
  if (p.version !== undefined && p.version !== "1") {
    throw new DeniedError("unsupported_version", `v is ${p.version.slice(0, 16)}; this gateway reads ${VERSION}`);
  }
  if (p.fieldErr !== undefined) {
    throw p.fieldErr;
  }
  for (const name of BODY_NAMES) {
    if (!p.seen.has(name)) {
      throw new DeniedError("malformed_envelope", `missing member "${name}"`);
    }
  }
  return p.build();
}

/**
 * Parser reads the body object on top of the scanner. Syntax errors abort
 * at once; field-rule errors are remembered (the first one) and reported
 * after the whole body was read, so that a body with "v": 2 is reported
 * as unsupported_version even if its other members are what version 2
 * means.
 */
class Parser extends Scanner {
  fieldErr: DeniedError | undefined;
  readonly seen = new Set<string>();
  readonly seenPayload = new Set<string>();
  readonly #names = new Set<string>(); // folded body member names
  readonly #payNames = new Set<string>(); // folded payload member names
  version: string | undefined;
  readonly vals = new Map<string, string>();
  payloadRaw: Uint8Array | undefined;
  plain: Uint8Array | undefined;

  fieldFail(detail: string): void {
    this.fieldErr ??= new DeniedError("malformed_envelope", detail);
  }

  /** member records a name of a fixed-schema object, refusing duplicates under case folding. */
  member(names: Set<string>, name: Str, at: number): void {
    const f = foldNameOf(name.value);
    if (names.has(f)) {
      this.pos = at;
      throw this.fail(`duplicate member name ${quote(name.value)} (names differing only in case are duplicates)`);
    }
    names.add(f);
  }

  body(): void {
    if (this.peek() !== 0x7b) {
      throw this.fail("body is not a JSON object");
    }
    this.pos++;
    if (this.peek() === 0x7d) {
      this.pos++;
      return;
    }
    for (;;) {
      if (this.peek() !== 0x22) {
        throw this.fail("want a member name");
      }
      const at = this.pos;
      const name = this.name();
      this.member(this.#names, name, at);
      this.expect(0x3a);
      if ((BODY_NAMES as readonly string[]).includes(name.value)) {
        this.seen.add(name.value);
        this.bodyValue(name.value);
      } else {
        this.fieldFail(`unknown member ${quote(name.value)}`);
        this.value(1);
      }
      const c = this.peek();
      if (c === 0x2c) {
        this.pos++;
      } else if (c === 0x7d) {
        this.pos++;
        return;
      } else {
        throw this.fail("want ',' or '}' in body");
      }
    }
  }

  bodyValue(name: string): void {
    const c = this.peek();
    if (name === "v") {
      if (c !== 0x2d && (c < 0x30 || c > 0x39)) {
        this.fieldFail("v is not a number");
        this.value(1);
        return;
      }
      this.version = this.number();
      return;
    }
    if (name === "payload") {
      if (c !== 0x7b) {
        this.fieldFail("payload is not an object");
        this.value(1);
        return;
      }
      const start = this.pos;
      this.payload();
      this.payloadRaw = this.data.subarray(start, this.pos);
      return;
    }
    if (c !== 0x22) {
      this.fieldFail(`${name} is not a string`);
      this.value(1);
      return;
    }
    this.vals.set(name, this.str(this.lim.maxString).value);
  }

  payload(): void {
    if (2 > this.lim.maxDepth) {
      throw this.fail(`nesting deeper than ${this.lim.maxDepth}`);
    }
    this.pos++; // '{'
    if (this.peek() === 0x7d) {
      this.pos++;
      return;
    }
    for (;;) {
      if (this.peek() !== 0x22) {
        throw this.fail("want a member name");
      }
      const at = this.pos;
      const name = this.name();
      this.member(this.#payNames, name, at);
      this.expect(0x3a);
      const c = this.peek();
      const n = name.value;
      if (!(PAYLOAD_NAMES as readonly string[]).includes(n)) {
        this.fieldFail(`unknown member payload.${quote(n)}`);
        this.value(2);
      } else if (n === "plain") {
        this.seenPayload.add(n);
        if (c !== 0x7b) {
          this.fieldFail("payload.plain is not an object");
          this.value(2);
        } else {
          const start = this.pos;
          this.value(2);
          this.plain = this.data.subarray(start, this.pos);
        }
      } else {
        this.seenPayload.add(n);
        if (c !== 0x22) {
          this.fieldFail(`payload.${n} is not a string`);
          this.value(2);
        } else {
          this.vals.set(`payload.${n}`, this.str(n === "sealed" ? this.lim.maxBytes : this.lim.maxString).value);
        }
      }
      const d = this.peek();
      if (d === 0x2c) {
        this.pos++;
      } else if (d === 0x7d) {
        this.pos++;
        return;
      } else {
        throw this.fail("want ',' or '}' in payload");
      }
    }
  }

  build(): Envelope {
    const v = (k: string): string => this.vals.get(k) ?? "";
    const bad = (detail: string): DeniedError => new DeniedError("malformed_envelope", detail);
    if (!validMessageId(v("message_id"))) {
      throw bad("message_id must be 16-128 of [A-Za-z0-9._:-]");
    }
    if (!validIdempotencyKey(v("idempotency_key"))) {
      throw bad("idempotency_key must be 1-128 of [A-Za-z0-9._:/+=@-]");
    }
    if (!validTraceId(v("trace_id"))) {
      throw bad("trace_id must be 32 lowercase hex, not all zero");
    }
    const issuedAt = parseTimeNs(v("issued_at"));
    if (issuedAt === undefined) {
      throw bad("issued_at must be RFC 3339 UTC: YYYY-MM-DDTHH:MM:SS[.fraction]Z");
    }
    const expiresAt = parseTimeNs(v("expires_at"));
    if (expiresAt === undefined) {
      throw bad("expires_at must be RFC 3339 UTC: YYYY-MM-DDTHH:MM:SS[.fraction]Z");
    }
    if (!validToken(v("tenant"))) {
      throw bad("tenant must be 1-64 of [a-z0-9_-]");
    }
    if (!validAudience(v("audience"))) {
      throw bad("audience must be 1-128 of [A-Za-z0-9._:/-]");
    }
    const capability = v("capability");
    if (!isCapability(capability)) {
      throw bad(`capability ${quote(capability.slice(0, 32))} is not one of the six`);
    }
    if (capability === "respond") {
      if (!validRequestRef(v("target"))) {
        throw bad("target of respond must be <requesting agent key>/<message id>");
      }
    } else if (capability === "approve") {
      if (!validMessageId(v("target"))) {
        throw bad("target of approve must be a message id");
      }
    } else if (!validTarget(v("target"))) {
      throw bad("target must be dotted parts of [a-z0-9_-]{1,64}, at most 255 chars");
    }
    const payload = this.checkPayload();
    return {
      v: 1,
      messageId: v("message_id"),
      idempotencyKey: v("idempotency_key"),
      traceId: v("trace_id"),
      issuedAt: dateOfNs(issuedAt),
      expiresAt: dateOfNs(expiresAt),
      issuedAtUnixNano: issuedAt.toString(),
      expiresAtUnixNano: expiresAt.toString(),
      tenant: v("tenant"),
      audience: v("audience"),
      capability,
      target: v("target"),
      payload,
      raw: this.data,
      payloadRaw: this.payloadRaw ?? new Uint8Array(0),
    };
  }

  checkPayload(): Payload {
    const has = (n: string): boolean => this.seenPayload.has(n);
    const bad = (detail: string): DeniedError => new DeniedError("malformed_envelope", detail);
    if (has("sealed") && has("plain")) {
      throw bad("payload has both sealed and plain");
    }
    if (has("plain")) {
      if (has("from") || has("to")) {
        throw bad("plain payload has from or to");
      }
      return { plain: this.plain! };
    }
    if (has("sealed")) {
      const sealed = this.vals.get("payload.sealed") ?? "";
      const from = this.vals.get("payload.from") ?? "";
      const to = this.vals.get("payload.to") ?? "";
      if (!validSealed(sealed)) {
        throw bad("payload.sealed must be non-empty canonical base64url without padding");
      }
      if (!isPublicKey(from, "X")) {
        throw bad("payload.from must be an nkeys curve public key");
      }
      if (!isPublicKey(to, "X")) {
        throw bad("payload.to must be an nkeys curve public key");
      }
      return { sealed, from, to };
    }
    throw bad("payload has neither sealed nor plain");
  }
}

function quote(s: string): string {
  return JSON.stringify(s.slice(0, 64));
}

/** sealedBytes returns the decoded ciphertext of a sealed payload. */
export function sealedBytes(p: Payload): Uint8Array {
  const b = p.sealed === undefined ? undefined : fromB64url(p.sealed);
  if (b === undefined || b.length === 0) {
    throw new DeniedError("malformed_envelope", "payload is not sealed, or not canonical base64url");
  }
  return b;
}

/** payloadDigest returns the SHA-256 (hex) of the exact bytes of the payload member value. */
export function payloadDigest(e: Envelope): string {
  return digest(e.payloadRaw);
}

/**
 * checkFreshness checks the envelope's lifetime against now, to the
 * nanosecond as the gateway and the Go SDK do: the envelope's times are
 * issuedAtUnixNano and expiresAtUnixNano (not the Dates, which are cut
 * to the millisecond), now is a Date (a whole millisecond) or Unix
 * nanoseconds as a bigint, and maxTtlMs and skewMs are read to the
 * nanosecond (rounded to the nearest). maxTtlMs that is not positive
 * (NaN included) means DEFAULT_MAX_TTL_MS, Infinity no maximum; a
 * negative or NaN skew counts as zero, an infinite one as no limit.
 * Checks, in order: ttl_too_long when expires_at - issued_at is not
 * positive or exceeds maxTtl; message_expired when now > expires_at +
 * skew; issued_in_future when issued_at > now + skew. Throws a
 * DeniedError, or a ConfigError for an invalid Date.
 */
export function checkFreshness(e: Envelope, now: Date | bigint, maxTtlMs = DEFAULT_MAX_TTL_MS, skewMs = DEFAULT_SKEW_MS): void {
  const at = unixNanoOf(now);
  // undefined: no bound.
  let maxTtl: bigint | undefined = nsOfMs(DEFAULT_MAX_TTL_MS);
  if (maxTtlMs === Infinity) {
    maxTtl = undefined;
  } else if (Number.isFinite(maxTtlMs) && nsOfMs(maxTtlMs) > 0n) {
    maxTtl = nsOfMs(maxTtlMs);
  }
  let skew: bigint | undefined = 0n;
  if (skewMs === Infinity) {
    skew = undefined;
  } else if (Number.isFinite(skewMs) && skewMs > 0) {
    skew = nsOfMs(skewMs);
  }
  const issued = BigInt(e.issuedAtUnixNano);
  const expires = BigInt(e.expiresAtUnixNano);
  const ttl = expires - issued;
  if (ttl <= 0n || (maxTtl !== undefined && ttl > maxTtl)) {
    throw new DeniedError("ttl_too_long", `ttl ${msText(ttl)}; want (0, ${maxTtl === undefined ? "∞" : msText(maxTtl)}]`);
  }
  const skewText = skew === undefined ? "unlimited" : msText(skew);
  if (skew !== undefined && at > expires + skew) {
    throw new DeniedError("message_expired", `expired ${msText(at - expires)} ago (skew ${skewText})`);
  }
  if (skew !== undefined && issued > at + skew) {
    throw new DeniedError("issued_in_future", `issued ${msText(issued - at)} ahead (skew ${skewText})`);
  }
}

/** The fields of an envelope to build. */
export interface EnvelopeFields {
  /** Empty: newMessageId(). */
  messageId?: string;
  /** Empty: the message id (every build is its own request). */
  idempotencyKey?: string;
  /** Empty: newTraceId(). */
  traceId?: string;
  tenant: string;
  /** The gateway's audience. */
  audience: string;
  capability: Capability;
  /** A catalog name; for approve the held message id; for respond requestRef(agent, message id). */
  target: string;
  /**
   * expires_at - issued_at in milliseconds, read to the nanosecond
   * (rounded to the nearest); absent or 0: DEFAULT_TTL_MS. Times are
   * written in whole seconds, so expires_at is issued_at + ttl with the
   * fraction of a second dropped, to the nanosecond: 999.999999 ms
   * writes expires_at = issued_at, as the Go SDK does with 999999999 ns.
   */
  ttlMs?: number;
  /** Exactly one of sealed (with from, to) or plain. */
  payload: Payload;
  /** The limits the result is checked against. */
  limits?: Limits;
}

// JSON string escaping of the Go builder: '"' and '\' escaped, control
// characters as \u00XX, everything else verbatim.
function jsonString(s: string): string {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x22 || c === 0x5c) {
      out += "\\" + s[i];
    } else if (c < 0x20) {
      out += "\\u00" + c.toString(16).padStart(2, "0");
    } else {
      out += s[i];
    }
  }
  return out + '"';
}

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * buildEnvelope returns the body bytes: v = 1, issued_at = now in UTC
 * truncated to the second, expires_at = issued_at + ttl, members in wire
 * order, no insignificant whitespace except inside plain, which is copied
 * verbatim. The result is checked with parseEnvelope before it is
 * returned, so it never returns a body the gateway would find malformed.
 * Throws the DeniedError of the first rule broken.
 */
export function buildEnvelope(f: EnvelopeFields, now: Date): Uint8Array {
  let ttl = f.ttlMs ?? 0;
  if (ttl === 0) {
    ttl = DEFAULT_TTL_MS;
  }
  if (ttl < 0 || !Number.isFinite(ttl)) {
    throw new DeniedError("ttl_too_long", `negative TTL ${ttl} ms`);
  }
  const lim = withDefaults(f.limits);
  const p = f.payload;
  if (p.plain !== undefined) {
    // plain is spliced in verbatim: check it is one object on its own,
    // so it cannot close the payload and smuggle members around it.
    checkObject(p.plain, lim, 3);
  }
  for (const s of [f.messageId, f.idempotencyKey, f.traceId, f.tenant, f.audience, f.capability, f.target, p.sealed, p.from, p.to]) {
    if (typeof s === "string" && LONE_SURROGATE.test(s)) {
      throw new DeniedError("malformed_envelope", "a field is not valid Unicode");
    }
  }
  const mid = f.messageId || newMessageId();
  const key = f.idempotencyKey || mid;
  const tid = f.traceId || newTraceId();
  // issued_at + ttl in nanoseconds, then cut to the second: adding a
  // fraction of a millisecond to a Date would round to a millisecond first.
  const issuedNs = BigInt(Math.floor(now.getTime() / 1000)) * NS_PER_S;
  const expiresNs = issuedNs + nsOfMs(ttl);
  if (expiresNs > LAST_TIME_NS) {
    throw new DeniedError("malformed_envelope", "expires_at is after 9999-12-31T23:59:59Z");
  }
  const issued = dateOfNs(issuedNs);
  const expires = dateOfNs(expiresNs);
  let head =
    `{"v":1,"message_id":${jsonString(mid)},"idempotency_key":${jsonString(key)},"trace_id":${jsonString(tid)}` +
    `,"issued_at":"${formatTime(issued)}","expires_at":"${formatTime(expires)}"` +
    `,"tenant":${jsonString(f.tenant)},"audience":${jsonString(f.audience)}` +
    `,"capability":${jsonString(f.capability)},"target":${jsonString(f.target)},"payload":{`;
  let sep = "";
  for (const [name, val] of [
    ["sealed", p.sealed],
    ["from", p.from],
    ["to", p.to],
  ] as const) {
    if (val) {
      head += `${sep}"${name}":${jsonString(val)}`;
      sep = ",";
    }
  }
  let body: Uint8Array;
  if (p.plain !== undefined) {
    body = concat(utf8(head + sep + '"plain":'), p.plain, utf8("}}"));
  } else {
    body = utf8(head + "}}");
  }
  parseEnvelope(body, f.limits);
  return body;
}
