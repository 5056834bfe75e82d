// Verifying a capability delivery: what a consumer may act on.
import { inspect } from "node:util";
import { DeniedError, VerificationError } from "./errors.js";
import { checkBinding, ROUTE_ALLOW, verifyDecision, type DecisionClaims } from "./decision.js";
import { parseDelivery, type DeliveryDoc } from "./delivery.js";
import { parseEnvelope, verifyEnvelope, withDefaults, type Envelope, type Limits } from "./envelope.js";
import { digestHex, fromB64url, fromUtf8 } from "./internal/bytes.js";
import { decodePublicKey, type Box } from "./keys.js";
import { parseCapability } from "./subjects.js";

export { headersOf, parseHeaderBlock } from "./internal/headers.js";

/** DEFAULT_CONSUMER_SKEW_MS is the clock skew tolerated on a decision token's iat and exp (30 s). */
export const DEFAULT_CONSUMER_SKEW_MS = 30_000;

/** The header the gateway sets to the requesting agent's key. */
export const AGENT_HEADER = "Agentgw-Agent";

/** What a capability consumer trusts and serves. */
export interface VerifyOptions {
  /** The tenant whose capability subjects are read. */
  tenant: string;
  /**
   * The targets served. A message must arrive on
   * agentgw.cap.<tenant>.<target> for one of them, and its token's
   * audience must be that target.
   */
  targets: readonly string[];
  /** Public server ('N') keys of the gateways whose decision tokens are accepted. */
  trustedGateways: readonly string[];
  /** The consumer's curve key that re-sealed payloads are sealed to. Absent: only plain deliveries verify. */
  curve?: Box;
  /**
   * When set, the only sealed_from keys accepted. Empty: any; the box
   * authenticates its sender and the token binds the sealed bytes, so only
   * the gateway's re-seal verifies anyway.
   */
  gatewayXKeys?: readonly string[];
  /** Also verify the agent's own signature over the body with the token's subject key. */
  verifyAgentSignature?: boolean;
  /** The verification instant. Absent: now. */
  now?: Date;
  /**
   * Clock skew tolerated on the token's iat and exp, in milliseconds.
   * Absent or 0: none, as a zero VerifyOptions.Skew in the Go SDK.
   * Negative or not a finite number fails every message (internal_error).
   */
  skewMs?: number;
  /** Bounds of the envelope body; set them to the gateway's if it allows more. */
  limits?: Limits;
}

/**
 * Reads a header by name: a Map of values exactly as received, what
 * headersOf returns for a nats.js message, or undefined. A nats.js
 * MsgHdrs (msg.headers) has its values trimmed by nats.js: pass
 * headersOf(msg) instead, so that a value is compared as received.
 */
export interface HeaderSource {
  get(name: string): string | undefined | null;
}

/**
 * A Delivery is a message that passed verifyDelivery. Its printed forms
 * show ids and a payload digest only, never the payload.
 */
export class Delivery {
  /** The parsed original envelope: ids, capability, target. Its payload is the agent's payload to the gateway; use payload instead. */
  readonly envelope: Envelope;
  /** The exact original envelope bytes, signed by the agent. */
  readonly body: Uint8Array;
  /** What the consumer acts on: the re-sealed payload opened with its curve key, or the envelope's plain object. */
  readonly payload: Uint8Array;
  /** Whether the payload arrived re-sealed to the consumer. */
  readonly sealed: boolean;
  /** The verified decision token's claims. */
  readonly claims: DecisionClaims;
  /** The requesting agent's public key (the token's subject). */
  readonly agent: string;
  /** The capability subject the message arrived on. */
  readonly subject: string;
  /** The target of that subject and the token's audience. */
  readonly target: string;

  constructor(v: {
    envelope: Envelope;
    body: Uint8Array;
    payload: Uint8Array;
    sealed: boolean;
    claims: DecisionClaims;
    subject: string;
    target: string;
  }) {
    this.envelope = v.envelope;
    this.body = v.body;
    this.payload = v.payload;
    this.sealed = v.sealed;
    this.claims = v.claims;
    this.agent = v.claims.subject;
    this.subject = v.subject;
    this.target = v.target;
  }

  /** The envelope's message id. */
  get messageId(): string {
    return this.envelope.messageId;
  }

  /** The envelope's trace id. */
  get traceId(): string {
    return this.envelope.traceId;
  }

  /** The payload as text. */
  string(): string {
    return fromUtf8(this.payload);
  }

  /** The payload decoded as JSON. */
  json<T = unknown>(): T {
    return JSON.parse(this.string()) as T;
  }

  toString(): string {
    return `Delivery{subject=${this.subject} message_id=${this.messageId} agent=${this.agent} payload=${this.payload.length} bytes}`;
  }

  toJSON(): object {
    return { subject: this.subject, message_id: this.messageId, agent: this.agent, payload_bytes: this.payload.length };
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

function asVerification(err: unknown): never {
  if (err instanceof VerificationError) {
    throw err;
  }
  if (err instanceof DeniedError) {
    throw new VerificationError(err.reason, err.detail);
  }
  throw new VerificationError("internal_error", "verification failed unexpectedly");
}

/**
 * verifyDelivery checks one message from a capability subject, given its
 * subject, headers (headersOf(msg) for a nats.js message) and data
 * exactly as received, and returns what a handler may act on. Nothing in
 * the message is trusted before the token verifies. It throws a
 * VerificationError:
 *
 *  - invalid_subject: subject is not agentgw.cap.<tenant>.<target> for one
 *    of targets.
 *  - decision_token_missing: data is not a delivery with a decision token.
 *  - decision_token_invalid: the token is malformed, not signed by one of
 *    trustedGateways, not an allow decision, or issued in the future.
 *  - decision_token_expired: the token is expired (beyond skew).
 *  - decision_token_audience: the token is for another target or tenant.
 *  - decision_token_binding: the body or the payload are not the bytes the
 *    token binds, or the token and the body (or Agentgw-Agent) disagree on
 *    message id, trace id, tenant, target or agent.
 *  - malformed_envelope (or oversized, unsupported_version): the bound
 *    body does not parse, which only a broken gateway can cause.
 *  - seal_broken: the re-sealed payload is not base64url, is not from an
 *    accepted gateway key, does not open with curve, or is missing for an
 *    envelope whose own payload is sealed.
 *  - bad_signature: with verifyAgentSignature, the agent's signature does
 *    not verify.
 *
 * The checks run in that order, so a message with several faults is
 * reported by the first. unknownKey is set on the error of a token whose
 * issuer is not among trustedGateways, and of a re-sealed payload from a
 * key outside gatewayXKeys, without curve, or that does not open with
 * curve: refusals that a reader with other keys may lift (the token that
 * binds the re-sealed bytes verified), though the message may as well be
 * a forgery. It is false on every other refusal. Details never contain
 * payload bytes. It is the Go SDK's VerifyDelivery, check for check.
 */
export function verifyDelivery(subject: string, headers: HeaderSource | undefined, data: Uint8Array, opt: VerifyOptions): Delivery {
  try {
    return verify(subject, headers, data, opt);
  } catch (err) {
    asVerification(err);
  }
}

function verify(subject: string, headers: HeaderSource | undefined, data: Uint8Array, opt: VerifyOptions): Delivery {
  const { tenant, target } = parseCapability(subject);
  // Array.isArray: from untyped JavaScript, a string's includes would
  // match any substring of it.
  if (tenant !== opt.tenant || !Array.isArray(opt.targets) || !opt.targets.includes(target)) {
    throw new VerificationError("invalid_subject", `subject ${subject.slice(0, 128)} is not one this consumer serves`);
  }
  const now = opt.now ?? new Date();
  const maxBody = withDefaults(opt.limits).maxBytes;
  // The envelope, a re-sealed copy of its payload (base64) and a token.
  let doc: DeliveryDoc;
  try {
    doc = parseDelivery(data, 3 * maxBody + (64 << 10));
  } catch (err) {
    throw new VerificationError("decision_token_missing", `no decision token: ${(err as Error).message}`);
  }
  const claims = verifyDecision(doc.decision, {
    trustedGateways: opt.trustedGateways,
    audience: target,
    now,
    skewMs: opt.skewMs ?? 0,
  });
  if (claims.route !== ROUTE_ALLOW) {
    throw new VerificationError("decision_token_invalid", `jti ${claims.id}: route ${claims.route} on a capability subject`);
  }
  if (claims.tenant !== tenant) {
    throw new VerificationError("decision_token_audience", `jti ${claims.id} is for tenant ${claims.tenant}, not ${tenant}`);
  }
  // The body digest first, so an altered body is reported as such and
  // not as whatever parse error the alteration causes.
  const body = doc.envelope;
  if (digestHex(body) !== claims.bodyDigest) {
    throw new VerificationError("decision_token_binding", `jti ${claims.id}: envelope body digest ${digestHex(body)} does not match`);
  }
  const env = parseEnvelope(body, opt.limits);

  let resealed: Uint8Array | undefined;
  if (doc.sealed !== "") {
    resealed = fromB64url(doc.sealed);
    if (resealed === undefined) {
      throw new VerificationError("seal_broken", `jti ${claims.id}: the re-sealed payload is not base64url`);
    }
  } else if (env.payload.sealed !== undefined) {
    throw new VerificationError("seal_broken", `jti ${claims.id}: envelope payload is sealed to the gateway and no re-sealed payload came with it`);
  }
  const bound = resealed ?? env.payload.plain ?? new Uint8Array(0);
  checkBinding(claims, body, bound);
  checkAgreement(claims, env, headers);

  let payload: Uint8Array;
  if (resealed !== undefined) {
    payload = openResealed(claims, resealed, doc.sealedFrom, opt);
  } else {
    payload = env.payload.plain ?? new Uint8Array(0);
  }
  if (opt.verifyAgentSignature) {
    const raw = decodePublicKey(claims.subject, "U");
    if (raw === undefined) {
      throw new VerificationError("bad_signature", `jti ${claims.id}: subject is not a user key`);
    }
    verifyEnvelope(raw, body, doc.signature);
  }
  return new Delivery({ envelope: env, body, payload, sealed: resealed !== undefined, claims, subject, target });
}

/**
 * checkAgreement checks that the token and the body it binds describe the
 * same message. The body digest already ties them; a disagreement means a
 * gateway signed inconsistent claims.
 */
function checkAgreement(c: DecisionClaims, env: Envelope, headers: HeaderSource | undefined): void {
  const differs = (what: string): VerificationError => new VerificationError("decision_token_binding", `jti ${c.id}: ${what}`);
  if (c.messageId !== env.messageId) {
    throw differs("message id differs from the body's");
  }
  if (c.traceId !== env.traceId) {
    throw differs("trace id differs from the body's");
  }
  if (c.tenant !== env.tenant) {
    throw differs("tenant differs from the body's");
  }
  if (c.audience !== env.target) {
    throw differs("audience differs from the body's target");
  }
  const a = headers?.get(AGENT_HEADER) ?? "";
  if (a !== "" && a !== c.subject) {
    throw differs(`${AGENT_HEADER} differs from the token's subject`);
  }
}

/**
 * openResealed opens the re-sealed payload, whose bytes the verified
 * token binds: each refusal is for want of a key this consumer is
 * configured with (unknownKey), not of a forgery.
 */
function openResealed(c: DecisionClaims, resealed: Uint8Array, from: string, opt: VerifyOptions): Uint8Array {
  if (opt.gatewayXKeys !== undefined && opt.gatewayXKeys.length > 0 && !opt.gatewayXKeys.includes(from)) {
    throw new VerificationError("seal_broken", `jti ${c.id}: re-sealed payload is not from an accepted gateway curve key`, { unknownKey: true });
  }
  if (opt.curve === undefined) {
    throw new VerificationError("seal_broken", `jti ${c.id}: re-sealed payload but this consumer has no curve key`, { unknownKey: true });
  }
  try {
    return opt.curve.open(resealed, from);
  } catch (err) {
    // To the consumer, an unusable sender key and a box that does not
    // open are the same: the payload does not open.
    const why = err instanceof DeniedError ? err.reason : "internal_error";
    throw new VerificationError("seal_broken", `jti ${c.id}: re-sealed payload does not open (${why})`, { unknownKey: true });
  }
}
