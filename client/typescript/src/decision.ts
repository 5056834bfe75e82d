// Gateway decision tokens: verification, as a capability consumer, a
// waiting agent or an approver does it.
//
// A decision token is four unpadded base64url segments:
//
//   header . claims . proof . signature
//
// header is exactly {"typ":"agentgw-decision","alg":"ed25519-nkey-merkle"}.
// The gateway signs a batch of tokens at once: each token's leaf is
// SHA-256(0x00 ‖ header "." claims) (the two segments as sent), the
// leaves form an RFC 9162 Merkle tree (interior nodes SHA-256(0x01 ‖ left
// ‖ right)), and the signature is Ed25519 by the gateway's 'N' key over
// "agentgw-decision-root-v1\n" ‖ uint64be(tree size) ‖ root. proof is
// uvarint(leaf index) ‖ uvarint(tree size) ‖ the audit path (32 bytes per
// level, lowest first). Each token verifies on its own.
import { VerificationError, type VerificationErrorOptions } from "./errors.js";
import { concat, digestHex, equalString, fromB64url, sha256, utf8 } from "./internal/bytes.js";
import { decodeStrict, type Shape } from "./internal/strict.js";
import { validToken } from "./envelope.js";
import { decodePublicKey, isPublicKey, verifyEd25519 } from "./keys.js";

/** DECISION_HEADER is the NATS header of a reply or an approval request that carries its decision token. */
export const DECISION_HEADER = "Agentgw-Decision";
/** TYPE is the claim type (nats.type) of a decision token. */
export const DECISION_TYPE = "agentgw-decision";
/** Routes a decision token may carry. */
export const ROUTE_ALLOW = "allow";
export const ROUTE_REPLY = "reply";
/** ROUTE_NOTICE binds a decision notice to its sender: it authorizes nothing. */
export const ROUTE_NOTICE = "notice";
/**
 * ROUTE_APPROVAL binds an approval request on the approval queue to the
 * held envelope and to the request's exact bytes (audience: the target),
 * so that an approver shows only what the gateway wrote: it authorizes
 * nothing.
 */
export const ROUTE_APPROVAL = "approval";
/** MAX_BATCH bounds the leaves of one signed batch. */
export const MAX_BATCH = 1 << 16;
/** MAX_DECISION_TOKEN_SIZE bounds a token's length. */
export const MAX_DECISION_TOKEN_SIZE = 16 << 10;

export const TOKEN_HEADER = `{"typ":"agentgw-decision","alg":"ed25519-nkey-merkle"}`;
export const TOKEN_HEADER_B64 = Buffer.from(TOKEN_HEADER).toString("base64url");
export const ROOT_CONTEXT = "agentgw-decision-root-v1\n";
const CLAIM_VERSION = 2;
const MAX_POLICY_IDS = 64;
const MAX_UNIX_SECOND = 253402300799; // 9999-12-31T23:59:59Z

/** Who asked through whom. */
export interface Actor {
  /** The agent's public 'U' key. */
  sub: string;
  /** The gateway's public 'N' key. */
  via: string;
  /** The approver's 'U' key, for a released approval. */
  approver?: string;
}

/** The claims of a verified decision token. Times are at second precision. */
export interface DecisionClaims {
  /** jti */
  id: string;
  /** iss: the gateway's public 'N' key. */
  issuer: string;
  /** sub: the agent's public 'U' key. */
  subject: string;
  /** aud: the target (or, for a reply or a notice, the agent; for an approval request, its target). */
  audience: string;
  issuedAt: Date;
  expires: Date;
  tenant: string;
  /** The one scope the message used. */
  scope: string;
  act: Actor;
  traceId: string;
  messageId: string;
  /** Lowercase hex SHA-256 of the original envelope body. */
  bodyDigest: string;
  /**
   * Lowercase hex SHA-256 of the payload bytes the consumer receives (for
   * an approval request, of the request's bytes as published).
   */
  payloadDigest: string;
  policyIds: string[];
  policyVersion: string;
  /** "allow", "reply", "notice" or "approval". */
  route: string;
}

/** What a verifier trusts and expects. */
export interface DecisionVerifyOptions {
  /** Public 'N' keys of the gateways whose tokens are accepted. Empty trusts none. */
  trustedGateways: readonly string[];
  /** This consumer's target (or, for a reply, the agent's key); aud must equal it. */
  audience: string;
  /** The verification instant. */
  now: Date;
  /**
   * Clock skew tolerated on exp and iat, in milliseconds. Absent or 0:
   * none. Negative or not a finite number: refused (internal_error), as
   * the Go SDK refuses a negative skew.
   */
  skewMs?: number;
}

const CLAIMS_SHAPE: Shape = {
  aud: "string",
  exp: "int",
  jti: "string",
  iat: "int",
  iss: "string",
  sub: "string",
  nats: {
    act: { sub: "string", via: "string", approver: "string" },
    body_digest: "string",
    message_id: "string",
    payload_digest: "string",
    policy_ids: "strings",
    policy_version: "string",
    route: "string",
    scope: "string",
    tenant: "string",
    trace_id: "string",
    type: "string",
    version: "int",
  },
};

/** The claims as they travel (JSON member names). */
export interface WireClaims {
  aud: string;
  exp: number;
  jti: string;
  iat: number;
  iss: string;
  sub: string;
  nats: {
    act: Actor;
    body_digest: string;
    message_id: string;
    payload_digest: string;
    policy_ids: string[];
    policy_version: string;
    route: string;
    scope: string;
    tenant: string;
    trace_id: string;
    type: string;
    version: number;
  };
}

function wireOf(v: Record<string, unknown>): WireClaims {
  const s = (x: unknown): string => (typeof x === "string" ? x : "");
  const i = (x: unknown): number => (typeof x === "number" ? x : 0);
  const n = (v.nats ?? {}) as Record<string, unknown>;
  const act = (n.act ?? {}) as Record<string, unknown>;
  const a: Actor = { sub: s(act.sub), via: s(act.via) };
  if (s(act.approver) !== "") {
    a.approver = s(act.approver);
  }
  return {
    aud: s(v.aud),
    exp: i(v.exp),
    jti: s(v.jti),
    iat: i(v.iat),
    iss: s(v.iss),
    sub: s(v.sub),
    nats: {
      act: a,
      body_digest: s(n.body_digest),
      message_id: s(n.message_id),
      payload_digest: s(n.payload_digest),
      policy_ids: Array.isArray(n.policy_ids) ? (n.policy_ids as string[]) : [],
      policy_version: s(n.policy_version),
      route: s(n.route),
      scope: s(n.scope),
      tenant: s(n.tenant),
      trace_id: s(n.trace_id),
      type: s(n.type),
      version: i(n.version),
    },
  };
}

const SAFE_ID = /^[A-Za-z0-9._:-]*$/;

function safeId(s: string, min: number): boolean {
  return s.length >= min && s.length <= 128 && SAFE_ID.test(s);
}

function lowerHex(s: string, n: number): boolean {
  return s.length === n && /^[0-9a-f]*$/.test(s);
}

/**
 * checkClaims returns every claim rule w breaks, as the gateway's signer
 * and every verifier apply them. Details never echo claim values not
 * already known to be safe.
 */
export function checkClaims(w: WireClaims): string[] {
  const p: string[] = [];
  const n = w.nats;
  if (n.type !== DECISION_TYPE || n.version !== CLAIM_VERSION) {
    p.push(`claim type or version is not ${DECISION_TYPE} v${CLAIM_VERSION}`);
  }
  if (!safeId(w.jti, 1)) {
    p.push("jti missing or not [A-Za-z0-9._:-]{1,128}");
  }
  if (!isPublicKey(w.iss, "N")) {
    p.push("iss is not a public server ('N') nkey");
  }
  if (!isPublicKey(w.sub, "U")) {
    p.push("sub is not a public user ('U') nkey");
  }
  if (!safeId(w.aud, 1)) {
    p.push("aud missing or not [A-Za-z0-9._:-]{1,128}");
  }
  if (w.iat <= 0 || w.iat > MAX_UNIX_SECOND || w.exp <= 0 || w.exp > MAX_UNIX_SECOND) {
    p.push("iat or exp missing or out of range");
  } else if (w.exp <= w.iat) {
    p.push("exp is not after iat");
  }
  if (!validToken(n.tenant)) {
    p.push("tenant missing or not [a-z0-9_-]{1,64}");
  }
  if (!safeId(n.scope, 1)) {
    p.push("scope missing or not one concrete [A-Za-z0-9._:-]{1,128} scope");
  }
  if (n.act.sub !== w.sub || n.act.via !== w.iss) {
    p.push("act is not {sub: sub, via: iss}");
  }
  if (n.act.approver !== undefined && n.act.approver !== "" && (!isPublicKey(n.act.approver, "U") || n.act.approver === w.sub)) {
    p.push("act.approver is not a user ('U') nkey other than sub");
  }
  if (!lowerHex(n.trace_id, 32) || n.trace_id === "0".repeat(32)) {
    p.push("trace_id is not 32 lowercase hex, not all zero");
  }
  if (!safeId(n.message_id, 16)) {
    p.push("message_id is not 16-128 of [A-Za-z0-9._:-]");
  }
  if (!lowerHex(n.body_digest, 64)) {
    p.push("body_digest is not 64 lowercase hex");
  }
  if (!lowerHex(n.payload_digest, 64)) {
    p.push("payload_digest is not 64 lowercase hex");
  }
  if (n.policy_ids.length > MAX_POLICY_IDS) {
    p.push(`more than ${MAX_POLICY_IDS} policy_ids`);
  }
  n.policy_ids.forEach((id, i) => {
    if (!safeId(id, 1)) {
      p.push(`policy_ids[${i}] is not [A-Za-z0-9._:-]{1,128}`);
    }
  });
  if (n.policy_version !== "" && !safeId(n.policy_version, 1)) {
    p.push("policy_version is not [A-Za-z0-9._:-]{0,128}");
  }
  if (n.route !== ROUTE_ALLOW && n.route !== ROUTE_REPLY && n.route !== ROUTE_NOTICE && n.route !== ROUTE_APPROVAL) {
    p.push(`route is none of ${ROUTE_ALLOW}, ${ROUTE_REPLY}, ${ROUTE_NOTICE}, ${ROUTE_APPROVAL}`);
  }
  return p;
}

/** leafHash is SHA-256(0x00 ‖ header "." claims). */
export function leafHash(signingInput: Uint8Array): Uint8Array {
  return sha256(Uint8Array.of(0), signingInput);
}

/** nodeHash is SHA-256(0x01 ‖ left ‖ right). */
export function nodeHash(l: Uint8Array, r: Uint8Array): Uint8Array {
  return sha256(Uint8Array.of(1), l, r);
}

/** rootInput is what the batch signature covers. */
export function rootInput(size: number, root: Uint8Array): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(size));
  return concat(utf8(ROOT_CONTEXT), b, root);
}

/**
 * uvarint reads an unsigned varint as Go's encoding/binary.Uvarint does:
 * it returns [value, bytes read], with n === 0 when buf is too short and
 * n < 0 on overflow past 64 bits.
 */
export function uvarint(buf: Uint8Array): [bigint, number] {
  let x = 0n;
  let s = 0n;
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i]!;
    if (i === 10) {
      return [0n, -(i + 1)];
    }
    if (b < 0x80) {
      if (i === 9 && b > 1) {
        return [0n, -(i + 1)];
      }
      return [x | (BigInt(b) << s), i + 1];
    }
    x |= BigInt(b & 0x7f) << s;
    s += 7n;
  }
  return [0n, 0];
}

/**
 * minimal reports whether the n-byte uvarint at the start of b is in its
 * shortest form (no final zero group after a continuation): a proof, and
 * so a token, has one encoding. Go's decision.minimal.
 */
function minimal(b: Uint8Array, n: number): boolean {
  return n === 1 || b[n - 1] !== 0;
}

/**
 * rootOf recomputes the root from a leaf and its proof (RFC 9162
 * §2.1.3.2) and returns it with the tree size, or throws an Error saying
 * what is malformed.
 */
export function rootOf(leaf: Uint8Array, proof: Uint8Array): [Uint8Array, number] {
  const [index, n1] = uvarint(proof);
  if (n1 <= 0 || !minimal(proof, n1)) {
    throw new Error("proof: bad leaf index");
  }
  let rest = proof.subarray(n1);
  const [size, n2] = uvarint(rest);
  if (n2 <= 0 || !minimal(rest, n2) || size === 0n || size > BigInt(MAX_BATCH) || index >= size) {
    throw new Error("proof: bad tree size");
  }
  rest = rest.subarray(n2);
  if (rest.length % 32 !== 0 || rest.length / 32 > 17) {
    throw new Error("proof: bad audit path");
  }
  let fn = Number(index);
  let sn = Number(size) - 1;
  let r = leaf;
  while (rest.length > 0) {
    const p = rest.subarray(0, 32);
    rest = rest.subarray(32);
    if (sn === 0) {
      throw new Error("proof: audit path too long");
    }
    if ((fn & 1) === 1 || fn === sn) {
      r = nodeHash(p, r);
      if ((fn & 1) === 0) {
        while ((fn & 1) === 0 && fn !== 0) {
          fn >>= 1;
          sn >>= 1;
        }
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1;
    sn >>= 1;
  }
  if (sn !== 0) {
    throw new Error("proof: audit path too short");
  }
  return [r, Number(size)];
}

interface ParsedToken {
  payload: Uint8Array;
  root: Uint8Array;
  size: number;
  sig: Uint8Array;
}

/** parseToken checks a token's form and recomputes its root; the signature is not checked. */
function parseToken(token: string): ParsedToken {
  if (token.length > MAX_DECISION_TOKEN_SIZE) {
    throw new Error(`token of ${token.length} bytes exceeds ${MAX_DECISION_TOKEN_SIZE}`);
  }
  const parts = token.split(".");
  if (parts.length !== 4) {
    throw new Error("not a four-part decision token");
  }
  const [head, claims, proofB64, sigB64] = parts as [string, string, string, string];
  if (head !== TOKEN_HEADER_B64) {
    throw new Error("header is not the decision token header");
  }
  const payload = fromB64url(claims);
  if (payload === undefined) {
    throw new Error("claims are not canonical base64url");
  }
  const proof = fromB64url(proofB64);
  if (proof === undefined) {
    throw new Error("proof is not canonical base64url");
  }
  const sig = fromB64url(sigB64);
  if (sig === undefined || sig.length !== 64) {
    throw new Error("signature is not 64 canonical base64url bytes");
  }
  const [root, size] = rootOf(leafHash(utf8(token.slice(0, head.length + 1 + claims.length))), proof);
  return { payload, root, size, sig };
}

// Roots whose signature verified, so the other tokens of a batch cost no
// Ed25519 verification. Bounded: emptied when full.
const verifiedRoots = new Set<string>();
const VERIFIED_ROOTS_MAX = 4096;

function verifyRoot(issuer: string, size: number, root: Uint8Array, sig: Uint8Array): boolean {
  const signed = rootInput(size, root);
  const k = digestHex(concat(utf8(issuer), Uint8Array.of(0), signed, sig));
  if (verifiedRoots.has(k)) {
    return true;
  }
  const raw = decodePublicKey(issuer, "N");
  if (raw === undefined || !verifyEd25519(raw, signed, sig)) {
    return false;
  }
  if (verifiedRoots.size >= VERIFIED_ROOTS_MAX) {
    verifiedRoots.clear();
  }
  verifiedRoots.add(k);
  return true;
}

function invalid(
  reason: "decision_token_invalid" | "decision_token_expired" | "decision_token_audience" | "decision_token_missing" | "internal_error",
  detail: string,
  options?: VerificationErrorOptions,
): VerificationError {
  return new VerificationError(reason, detail, options);
}

/**
 * verifyDecision checks a decision token and returns its claims, or
 * throws a VerificationError:
 *
 *  - decision_token_missing: the token is empty.
 *  - decision_token_invalid: not a four-part token with the exact header,
 *    canonical base64url and a well-formed Merkle proof; claims that are
 *    not strict JSON of the decision shape (no unknown or duplicate
 *    members); type not agentgw-decision or version not 2; any claim
 *    rule broken; iss not one of trustedGateways; a batch signature that
 *    does not verify over the root the proof leads to; or iat later than
 *    now + skew.
 *  - decision_token_expired: now > exp + skew.
 *  - decision_token_audience: aud is not audience (or audience is empty).
 *  - internal_error: now is not a valid date (no clock: fail closed), or
 *    skewMs is negative or not a finite number.
 *
 * An iss not among trustedGateways is checked before the signature, and
 * its error has unknownKey set; no other has.
 *
 * Binding to the message bytes is a separate step: checkBinding.
 */
export function verifyDecision(token: string, opt: DecisionVerifyOptions): DecisionClaims {
  if (typeof token !== "string" || token === "") {
    throw invalid("decision_token_missing", "no decision token");
  }
  const now = opt.now?.getTime();
  if (now === undefined || !Number.isFinite(now)) {
    throw invalid("internal_error", "decision: verify without a clock");
  }
  const skew = opt.skewMs ?? 0;
  if (!Number.isFinite(skew) || skew < 0) {
    throw invalid("internal_error", `decision: skew ${skew} ms is negative or not a number`);
  }
  let t: ParsedToken;
  try {
    t = parseToken(token);
  } catch (err) {
    throw invalid("decision_token_invalid", (err as Error).message);
  }
  const raw = decodeStrict(t.payload, CLAIMS_SHAPE);
  if (raw === undefined) {
    throw invalid("decision_token_invalid", "claims are not strict JSON of the decision shape");
  }
  const w = wireOf(raw);
  const problems = checkClaims(w);
  if (problems.length > 0) {
    throw invalid("decision_token_invalid", problems[0]!);
  }
  if (!opt.trustedGateways.includes(w.iss)) {
    // Before the signature: a key this verifier lacks (unknownKey), not a
    // forgery it can tell apart.
    throw invalid("decision_token_invalid", `jti ${w.jti}: gateway ${w.iss} is not trusted`, { unknownKey: true });
  }
  if (!verifyRoot(w.iss, t.size, t.root, t.sig)) {
    throw invalid("decision_token_invalid", `jti ${w.jti}: signature does not verify with gateway ${w.iss}`);
  }
  const iat = w.iat * 1000;
  const exp = w.exp * 1000;
  if (now + skew < iat) {
    throw invalid("decision_token_invalid", `jti ${w.jti} issued in the future (${new Date(iat).toISOString()})`);
  }
  if (now > exp + skew) {
    throw invalid("decision_token_expired", `jti ${w.jti} expired at ${new Date(exp).toISOString()}`);
  }
  if (opt.audience === "" || w.aud !== opt.audience) {
    throw invalid("decision_token_audience", `jti ${w.jti} is for ${w.aud}, not this consumer`);
  }
  const n = w.nats;
  return {
    id: w.jti,
    issuer: w.iss,
    subject: w.sub,
    audience: w.aud,
    issuedAt: new Date(iat),
    expires: new Date(exp),
    tenant: n.tenant,
    scope: n.scope,
    act: n.act,
    traceId: n.trace_id,
    messageId: n.message_id,
    bodyDigest: n.body_digest,
    payloadDigest: n.payload_digest,
    policyIds: n.policy_ids,
    policyVersion: n.policy_version,
    route: n.route,
  };
}

/**
 * checkBinding throws a VerificationError decision_token_binding unless
 * body hashes to bodyDigest and payload to payloadDigest, exactly.
 */
export function checkBinding(c: DecisionClaims, body: Uint8Array, payload: Uint8Array): void {
  const b = digestHex(body);
  if (!equalString(b, c.bodyDigest)) {
    throw new VerificationError("decision_token_binding", `jti ${c.id}: envelope body digest ${b} does not match`);
  }
  const p = digestHex(payload);
  if (!equalString(p, c.payloadDigest)) {
    throw new VerificationError("decision_token_binding", `jti ${c.id}: payload digest ${p} does not match`);
  }
}
