// The approver: reads a tenant's held requests, shows only those whose
// gateway decision token verifies, and answers them with `approve`
// envelopes bound to what it was shown.
import { inspect } from "node:util";
import type { NatsConnection } from "@nats-io/transport-node";
import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import { Agent, delay, type AgentConfig, type Receipt, type SendOptions } from "./agent.js";
import { openConsumer, pull } from "./consume.js";
import { DECISION_HEADER, ROUTE_APPROVAL, verifyDecision, type DecisionClaims, type DecisionVerifyOptions } from "./decision.js";
import { safePath } from "./creds.js";
import { ConfigError, DeniedError, InvalidRequestError, SelfApprovalError, VerificationError } from "./errors.js";
import { dateOfNs, validTraceId } from "./envelope.js";
import { digestHex, fromUtf8, utf8 } from "./internal/bytes.js";
import { headersOf } from "./internal/headers.js";
import { Scanner } from "./internal/json.js";
import { WAIT_SKEW_MS } from "./internal/skew.js";
import { isPublicKey } from "./keys.js";
import { approvalConsumerName, parseApproval, ROOT, STREAM_APPROVAL } from "./subjects.js";

const BATCH = 64;

/** Decisions an approver can give. */
export const GRANT = "grant";
export const DENY = "deny";
export type ApprovalDecision = typeof GRANT | typeof DENY;

/**
 * A held request as approvers see it: redacted, no credential, no sealed
 * or opened payload, only the fields the catalog marks approver-visible.
 */
export interface ApprovalRequest {
  heldMessageId: string;
  traceId: string;
  tenant: string;
  /** The requesting agent's public key. */
  agent: string;
  service: string;
  capability: string;
  target: string;
  risk: string;
  policyIds: string[];
  /** The policy version to bind the answer to, exactly as received. */
  policyVersion: string;
  /** The held body's digest to bind the answer to, exactly as received. */
  bodyDigest: string;
  payloadDigest: string;
  /** The approver-visible payload fields. */
  fields: Record<string, unknown>;
  /**
   * requested_at to the millisecond, rounded down (toward the past);
   * undefined if none. requestedAtUnixNano is the exact instant.
   */
  requestedAt: Date | undefined;
  /**
   * requested_at to the nanosecond, as the Go SDK's time.Time holds it:
   * Unix nanoseconds in decimal (BigInt reads it); undefined if none.
   */
  requestedAtUnixNano: string | undefined;
  /**
   * deadline to the millisecond, rounded down (toward the past);
   * undefined if none. The deadline itself is deadlineUnixNano: the
   * gateway denies an answer as approval_expired when its clock is later
   * than that instant, to the nanosecond (see requestExpired).
   */
  deadline: Date | undefined;
  /** deadline to the nanosecond, as Unix nanoseconds in decimal; undefined if none. */
  deadlineUnixNano: string | undefined;
}

/** A held request read from the approval stream, with its stream sequence. */
export interface HeldRequest extends ApprovalRequest {
  seq: number;
  /** "pending", or "expired" (past its deadline). */
  state: "pending" | "expired";
}

/**
 * DEFAULT_APPROVER_SKEW_MS is the clock skew tolerated on an approval
 * request's token (iat and exp) when skewMs is absent or 0 (30 s, the Go
 * SDK's DefaultSkew).
 */
export const DEFAULT_APPROVER_SKEW_MS = WAIT_SKEW_MS;

/**
 * ApproverConfig is an approver's identity (an agent whose credential
 * holds approve:<target> scopes), the gateways it believes, and how it
 * reads the queue.
 */
export interface ApproverConfig extends AgentConfig {
  /**
   * A durable consumer name, so requests seen by one watch are not shown
   * again after a restart. Absent: an ephemeral consumer (or, with bind,
   * the tenant's pre-created queue "<tenant>-approvals").
   */
  durable?: string;
  /** Use the existing durable instead of creating it (least privilege). */
  bind?: boolean;
  /** The approval stream. Absent: AGENTGW_APPROVAL. */
  stream?: string;
  /** How long a request handed to watch may stay unanswered before it is shown again, in ms. */
  ackWaitMs?: number;
  /**
   * The public server ('N') keys of the gateways whose approval requests
   * are shown: a request is shown only with a decision token (route
   * approval) that one of them signed over its exact bytes (see
   * verifyRequest). Required: anyone able to publish on the approval
   * queue could otherwise show an approver harmless fields beside a real
   * held request's id and digests, and a grant would release the real one.
   */
  trustedGateways: string[];
  /**
   * Clock skew tolerated on that token's iat and exp, in ms. Absent or 0:
   * 30 s (DEFAULT_APPROVER_SKEW_MS), as a zero ApproverConfig.Skew in the
   * Go SDK. Negative or not a finite number: ConfigError.
   */
  skewMs?: number;
  /**
   * Called with the subject and the error of every message watch
   * terminates without showing it: one that is not a request of this
   * tenant (an InvalidRequestError, or a DeniedError invalid_subject), or
   * whose token does not verify (a VerificationError with its reason
   * code); also for a request watch hands back on a durable because its
   * token is not yet valid by this approver's clock, or for want of a
   * key with handBackUnknownKeys (see watch). Keep it short.
   */
  onReject?: (subject: string, err: Error) => void;
  /**
   * Hands back (nak), rather than terminates, a request whose token
   * names a gateway key not among trustedGateways (a VerificationError
   * with unknownKey set, reason decision_token_invalid), so that the
   * approvers of the durable that trust that key still see it: for an
   * approver whose keys are not yet updated for a rotation. Only on a
   * durable (durable, or bind), which other approvers read too: an
   * ephemeral consumer is this approver's alone, and still terminates
   * it. watch hands it back to be shown again about 2 s later, and
   * reports it to onReject; list leaves it out and hands it back at
   * once, as it does every request it lists. Every other request whose
   * token does not verify is still terminated. Absent or false:
   * terminated, since anyone able to publish on the approval queue could
   * otherwise keep forgeries naming a gateway key nobody trusts pending
   * on the shared durable, taking its max_ack_pending slots from the
   * real requests. The Go SDK's ApproverConfig.HandBackUnknownKeys.
   */
  handBackUnknownKeys?: boolean;
}

/** What verifyRequest trusts: its audience is always the request's target. */
export type RequestVerifyOptions = Omit<DecisionVerifyOptions, "audience">;

/**
 * verifyRequest checks the decision token of an approval request, as the
 * Go SDK's VerifyRequest does: token (the message's Agentgw-Decision
 * header, as received: see headersOf) must verify under
 * opts.trustedGateways at opts.now within opts.skewMs (absent or 0: none,
 * as verifyDecision), with audience req.target and route approval, and
 * bind data (the request's body exactly as received: its payload digest)
 * and the held envelope the request names: its tenant, held message id,
 * agent (the token's subject), body digest and trace id. It returns the
 * token's claims or throws a VerificationError (a DeniedError):
 * decision_token_missing, decision_token_invalid (a route other than
 * approval included), decision_token_expired, decision_token_audience or
 * decision_token_binding; internal_error for a clock that is not a valid
 * Date or a negative skew.
 *
 * What it proves: the gateway held that envelope and published exactly
 * these fields for it. Someone who can publish on the approval queue but
 * does not hold the gateway's key cannot show an approver other fields
 * (a harmless amount, another requester) beside a real held request's id
 * and digests, which a grant bound to them would release.
 */
export function verifyRequest(token: string | undefined, data: Uint8Array, req: ApprovalRequest, opts: RequestVerifyOptions): DecisionClaims {
  const c = verifyDecision(token ?? "", { ...opts, audience: req.target });
  if (c.route !== ROUTE_APPROVAL) {
    throw new VerificationError("decision_token_invalid", `jti ${c.id}: route ${c.route} is not an approval request's`);
  }
  if (c.payloadDigest !== digestHex(data)) {
    throw new VerificationError("decision_token_binding", `jti ${c.id} does not bind this approval request's bytes`);
  }
  if (
    c.tenant !== req.tenant ||
    c.messageId !== req.heldMessageId ||
    c.subject !== req.agent ||
    `sha256:${c.bodyDigest}` !== req.bodyDigest ||
    c.traceId !== req.traceId
  ) {
    throw new VerificationError("decision_token_binding", `jti ${c.id} names another held envelope than the request`);
  }
  return c;
}

/** MAX_REQUEST_DEPTH bounds an approval request's nesting (the request object is level 1), as in the Go SDK. */
const MAX_REQUEST_DEPTH = 64;

const STRING_MEMBERS = [
  "held_message_id",
  "trace_id",
  "tenant",
  "agent",
  "service",
  "capability",
  "target",
  "risk",
  "policy_version",
  "body_digest",
  "payload_digest",
] as const;

const badRequest = (): InvalidRequestError => new InvalidRequestError("approval request is not JSON of the request shape");

/**
 * readRequest reads an approval request as the Go SDK does (docs/wire.md,
 * "Approvals"): one JSON object, strict JSON's strings (valid UTF-8, no
 * lone surrogate escapes) and numbers (at most 64 bytes, exponent at
 * most 1000), at most 64 levels, no duplicate names, compared exactly (a
 * case variant is another, unknown, member, and unknown members are
 * ignored). The members it knows must have their type (null reads as
 * absent) and every number in fields must be a finite IEEE 754 double:
 * 1e400 would read as Infinity and print as null.
 */
function readRequest(data: Uint8Array): Record<string, unknown> {
  let v: Record<string, unknown>;
  try {
    const s = new Scanner(data, { maxBytes: data.length, maxDepth: MAX_REQUEST_DEPTH, maxString: data.length });
    s.foldNames = false;
    s.controlNames = true; // the Go SDK reads requests with jsontext, which allows them
    if (s.peek() !== 0x7b) {
      throw badRequest();
    }
    s.value(0);
    s.end();
    v = JSON.parse(fromUtf8(data)) as Record<string, unknown>;
  } catch {
    throw badRequest();
  }
  const has = (k: string): boolean => Object.hasOwn(v, k) && v[k] !== null;
  for (const k of STRING_MEMBERS) {
    if (has(k) && typeof v[k] !== "string") {
      throw badRequest();
    }
  }
  const ids = v.policy_ids;
  if (has("policy_ids") && (!Array.isArray(ids) || !ids.every((x) => x === null || typeof x === "string"))) {
    throw badRequest();
  }
  const fields = v.fields;
  if (has("fields") && (typeof fields !== "object" || Array.isArray(fields) || !finite(fields))) {
    throw badRequest();
  }
  for (const k of ["requested_at", "deadline"]) {
    if (has(k) && (typeof v[k] !== "string" || parseRFC3339(v[k] as string) === undefined)) {
      throw badRequest();
    }
  }
  return v;
}

/** finite reports whether every number in v is finite. */
function finite(v: unknown): boolean {
  if (typeof v === "number") {
    return Number.isFinite(v);
  }
  if (typeof v === "object" && v !== null) {
    return Object.values(v).every(finite);
  }
  return true;
}

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:Z|([+-])(\d{2}):(\d{2}))$/;

// Go's zero time.Time, 0001-01-01T00:00:00Z, in Unix nanoseconds.
const GO_ZERO_NS = -62135596800n * 1_000_000_000n;

const NS_PER_MS = 1_000_000n;

/**
 * parseRFC3339 parses a time as Go's time.Time reads JSON: RFC 3339 with
 * upper-case T and Z or a ±hh:mm offset (hour at most 23), a real date,
 * hour at most 23, minute and second at most 59, any number of fraction
 * digits, of which the first nine count (the rest are dropped, not
 * rounded). It returns the instant in Unix nanoseconds, or null for Go's
 * zero time (no time), or undefined if s is not such a time.
 */
function parseRFC3339(s: string): bigint | null | undefined {
  const m = RFC3339.exec(s);
  if (m === null) {
    return undefined;
  }
  const [y, mo, d, h, mi, sec] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const frac = m[7] ?? "";
  const days = new Date(Date.UTC(2000, mo, 0)).getUTCDate(); // of month mo in a leap year
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0);
  if (mo < 1 || mo > 12 || d < 1 || d > days || (mo === 2 && d === 29 && !leap) || h > 23 || mi > 59 || sec > 59) {
    return undefined;
  }
  let offsetMin = 0;
  if (m[8] !== undefined) {
    const oh = Number(m[9]);
    const om = Number(m[10]);
    if (oh > 23 || om > 59) {
      return undefined;
    }
    offsetMin = (m[8] === "-" ? -1 : 1) * (oh * 60 + om);
  }
  const t = new Date(0);
  t.setUTCFullYear(y, mo - 1, d);
  t.setUTCHours(h, mi, sec, 0);
  const ns = (BigInt(t.getTime()) - BigInt(offsetMin) * 60_000n) * NS_PER_MS + BigInt(frac.slice(0, 9).padEnd(9, "0"));
  return ns === GO_ZERO_NS ? null : ns;
}

/**
 * expiredAt is the instant an expired request's token is checked at: when
 * the gateway decided it (its Agentgw-Decided-At header), else its
 * deadline. The header only picks the instant: the token must verify then.
 */
function expiredAt(m: JsMsg, req: ApprovalRequest): Date {
  const decided = parseRFC3339(headersOf(m)?.get(DECIDED_AT_HEADER) ?? "");
  if (typeof decided === "bigint") {
    return new Date(Number(decided / NS_PER_MS));
  }
  return req.deadline ?? new Date(0);
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function instant(v: unknown): bigint | undefined {
  return typeof v === "string" ? (parseRFC3339(v) ?? undefined) : undefined;
}

/** How long a request watch hands back waits before it is delivered again. */
const REDELIVER_DELAY_MS = 2000;
/** The header of the instant the gateway decided a message. */
const DECIDED_AT_HEADER = "Agentgw-Decided-At";
/**
 * How far past its deadline, by the approver's clock, a request on a
 * durable must be before watch consumes it: the largest clock skew the
 * gateway may be configured with.
 */
const EXPIRED_ACK_MARGIN_MS = 5 * 60_000;

/**
 * requestExpired reports whether req is past its deadline at now, as the
 * Go SDK and the gateway decide it: now is later than the deadline to
 * the nanosecond (deadlineUnixNano), so an answer at the deadline itself
 * still counts, and a request without a deadline never expires. now is a
 * Date (a whole millisecond) or Unix nanoseconds. Throws a ConfigError
 * for an invalid Date.
 */
export function requestExpired(req: ApprovalRequest, now: Date | bigint): boolean {
  if (req.deadlineUnixNano === undefined) {
    return false;
  }
  let ns: bigint;
  if (typeof now === "bigint") {
    ns = now;
  } else {
    const ms = now.getTime();
    if (!Number.isFinite(ms)) {
      throw new ConfigError("invalid clock: not a valid Date");
    }
    ns = BigInt(ms) * NS_PER_MS;
  }
  return ns > BigInt(req.deadlineUnixNano);
}

/**
 * decodeRequest reads an approval request from subject and data and checks
 * that it belongs to tenant and names the subject's target, as the Go SDK
 * does (see readRequest). Errors name no payload bytes.
 */
export function decodeRequest(subject: string, data: Uint8Array, tenant: string): ApprovalRequest {
  const { tenant: subjTenant, target } = parseApproval(subject);
  const v = readRequest(data);
  const req: ApprovalRequest = {
    heldMessageId: str(v.held_message_id),
    traceId: str(v.trace_id),
    tenant: str(v.tenant),
    agent: str(v.agent),
    service: str(v.service),
    capability: str(v.capability),
    target: str(v.target),
    risk: str(v.risk),
    policyIds: Array.isArray(v.policy_ids) ? v.policy_ids.map(str) : [],
    policyVersion: str(v.policy_version),
    bodyDigest: str(v.body_digest),
    payloadDigest: str(v.payload_digest),
    fields: typeof v.fields === "object" && v.fields !== null ? (v.fields as Record<string, unknown>) : {},
    requestedAt: undefined,
    requestedAtUnixNano: undefined,
    deadline: undefined,
    deadlineUnixNano: undefined,
  };
  const requestedAt = instant(v.requested_at);
  if (requestedAt !== undefined) {
    req.requestedAt = dateOfNs(requestedAt);
    req.requestedAtUnixNano = requestedAt.toString();
  }
  const deadline = instant(v.deadline);
  if (deadline !== undefined) {
    req.deadline = dateOfNs(deadline);
    req.deadlineUnixNano = deadline.toString();
  }
  if (subjTenant !== tenant || req.tenant !== tenant || req.target !== target) {
    throw new InvalidRequestError("approval request does not match its subject");
  }
  return req;
}

/**
 * answerKey is the idempotency key of an answer to held: "approve-<held>",
 * or "approve-<sha256 of held>" when that would exceed 128 characters.
 */
export function answerKey(held: string): string {
  const k = `approve-${held}`;
  return k.length <= 128 ? k : `approve-${digestHex(utf8(held))}`;
}

/**
 * An Approver lists held requests of its tenant that a trusted gateway
 * signed (see verifyRequest) and answers them.
 */
export class Approver {
  readonly #js: JetStreamClient;
  readonly #cfg: ApproverConfig;
  /** The identity the approver answers with. */
  readonly agent: Agent;

  /**
   * Approver sends answers through nc and reads the approval queue through
   * js (tenantJetStream(nc) for a tenant user). Throws a ConfigError.
   */
  constructor(nc: NatsConnection, js: JetStreamClient, cfg: ApproverConfig) {
    if (js === undefined || js === null) {
      throw new ConfigError("invalid config: no JetStream client");
    }
    const errs: string[] = [];
    if (cfg.ackWaitMs !== undefined && (!Number.isFinite(cfg.ackWaitMs) || cfg.ackWaitMs < 0)) {
      errs.push(`ack wait ${cfg.ackWaitMs} is negative`);
    }
    if (!Array.isArray(cfg.trustedGateways) || cfg.trustedGateways.length === 0) {
      errs.push("no trusted gateway keys for approval requests");
    }
    for (const k of Array.isArray(cfg.trustedGateways) ? cfg.trustedGateways : []) {
      if (!isPublicKey(k, "N")) {
        errs.push(`trusted gateway ${JSON.stringify(safePath(String(k)).slice(0, 72))} is not a public server ('N') key`);
      }
    }
    if (cfg.skewMs !== undefined && (!Number.isFinite(cfg.skewMs) || cfg.skewMs < 0)) {
      errs.push(`skew ${cfg.skewMs} is negative or not a number`);
    }
    if (errs.length > 0) {
      throw new ConfigError(`invalid config: ${errs.join("; ")}`);
    }
    this.agent = new Agent(nc, cfg);
    this.#js = js;
    this.#cfg = { ...cfg, trustedGateways: [...cfg.trustedGateways] };
  }

  #spec() {
    const tenant = this.agent.tenant;
    const bind = this.#cfg.bind ?? false;
    return {
      stream: this.#cfg.stream || STREAM_APPROVAL,
      durable: this.#cfg.durable || (bind ? approvalConsumerName(tenant) : ""),
      bind,
      description: `agentgw approver ${this.agent.publicKey}`,
      filters: [`${ROOT}.approval.${tenant}.>`],
      ackWaitMs: this.#cfg.ackWaitMs ?? 0,
      maxDeliver: 0,
    };
  }

  /**
   * verifyRequest checks that a request read from the approval queue (by
   * the caller's own reader) is what a trusted gateway published, at the
   * agent's clock with this approver's trustedGateways and skewMs: token
   * is the message's Agentgw-Decision header as received (headersOf) and
   * data its body exactly as received. See the function verifyRequest for
   * the checks; it throws a VerificationError. list and watch do this
   * themselves.
   */
  verifyRequest(token: string | undefined, data: Uint8Array, req: ApprovalRequest): DecisionClaims {
    return this.#verify(token, data, req, this.agent.now());
  }

  /** #verify is verifyRequest at now, with the configured skew widened by widerMs. */
  #verify(token: string | undefined, data: Uint8Array, req: ApprovalRequest, now: Date, widerMs = 0): DecisionClaims {
    const skewMs = (this.#cfg.skewMs || DEFAULT_APPROVER_SKEW_MS) + widerMs;
    return verifyRequest(token, data, req, { trustedGateways: this.#cfg.trustedGateways, now, skewMs });
  }

  /**
   * list returns the tenant's held requests, oldest first, and consumes
   * nothing it shows: each is handed back to the queue (nak) once read.
   * Requests past their deadline are left out unless all. Requests
   * already answered are still listed until their deadline; requests
   * another reader holds are not shown until it lets them go.
   * Every request's decision token is checked (see verifyRequest: signed
   * by a trusted gateway, over these bytes and this held envelope), an
   * expired one's as of its deadline (its token expires with it, which
   * is not held against a request already listed as expired). A request
   * that does not decode as a request of this tenant is terminated; one
   * whose token does not verify is left out; it is terminated (term,
   * with the reason code) unless it would verify by a clock up to 5
   * minutes ahead of the approver's (issued "in the future": this clock
   * runs behind the gateway's), which is handed back; so is, on a durable
   * with handBackUnknownKeys, one whose token names a gateway key not
   * among trustedGateways. Each is handed back at once (nak, no delay),
   * as every request list reads is. A terminated forgery holds no slot
   * of the queue's max_ack_pending.
   */
  async list(opts: { all?: boolean; signal?: AbortSignal } = {}): Promise<HeldRequest[]> {
    const spec = this.#spec();
    const cons = await openConsumer(this.#js, spec);
    // A durable may be bound by other approvers too (see watch).
    const shared = spec.durable !== "";
    const held = new Map<number, JsMsg>();
    const out: HeldRequest[] = [];
    try {
      for (;;) {
        opts.signal?.throwIfAborted();
        // A fetch waits its expiry unless the batch fills: one that comes
        // back short has read everything the queue had.
        const batch = await cons.fetch({ max_messages: BATCH, expires: 1000 });
        let n = 0;
        for await (const m of batch) {
          n++;
          const seen = held.has(m.seq);
          held.set(m.seq, m); // the latest delivery is the one to hand back
          if (seen) {
            continue;
          }
          let req: ApprovalRequest;
          try {
            req = decodeRequest(m.subject, m.data, this.agent.tenant);
          } catch (err) {
            // Not a request of this tenant: terminated as watch does, or
            // enough of them handed back would fill max_ack_pending.
            held.delete(m.seq);
            m.term(err instanceof Error ? err.message : "approval request is not JSON of the request shape");
            continue;
          }
          const now = this.agent.now();
          const state = requestExpired(req, now) ? "expired" : "pending";
          // The token's exp is the deadline (rounded up to the second):
          // an expired request is checked as of when the gateway decided
          // it (Agentgw-Decided-At; its deadline without one), with the
          // usual skew, as the Go CLI checks it (a skew widened by the
          // time since would also let through a token issued that much
          // in the future). Every request is checked, listed or not.
          const at = state === "expired" ? expiredAt(m, req) : now;
          const token = headersOf(m)?.get(DECISION_HEADER) ?? undefined;
          try {
            this.#verify(token, m.data, req, at);
          } catch (err) {
            if (!this.#handsBack(err, shared) && !this.#verifies(token, m.data, req, at, EXPIRED_ACK_MARGIN_MS)) {
              // No trusted gateway's by any clock: terminated, not
              // handed back to hold a slot of the queue for good.
              held.delete(m.seq);
              m.term(err instanceof DeniedError ? err.reason : "internal_error");
            }
            continue;
          }
          if (state === "expired" && !opts.all) {
            continue;
          }
          out.push({ ...req, seq: m.seq, state });
        }
        if (n < BATCH) {
          return out;
        }
      }
    } finally {
      for (const m of held.values()) {
        m.nak();
      }
      await this.agent.connection.flush();
    }
  }

  /**
   * find returns the held request with message id heldMessageId (of
   * opts.agent, when given), or undefined. It reads through list (all
   * included), so it finds only a request whose decision token verifies.
   * Message ids are unique per agent only: once one agent's hold under an
   * id has ended another agent may be held under it, so when requests of
   * several agents are held under heldMessageId and opts.agent does not
   * name one, find rejects with an InvalidRequestError rather than pick
   * one the approver may not have looked at. A bound queue does not show
   * what another reader holds, so it looks again a few times.
   */
  async find(heldMessageId: string, opts: { signal?: AbortSignal; agent?: string } = {}): Promise<HeldRequest | undefined> {
    for (let i = 0; i < 10; i++) {
      const all = await this.list({ all: true, ...(opts.signal ? { signal: opts.signal } : {}) });
      const latest = new Map<string, HeldRequest>(); // by agent, the latest
      for (const r of all) {
        if (r.heldMessageId === heldMessageId && (opts.agent === undefined || r.agent === opts.agent)) {
          latest.set(r.agent, r);
        }
      }
      if (latest.size > 1) {
        throw new InvalidRequestError(`invalid request: requests of ${latest.size} agents are held under ${heldMessageId}: name the agent to answer`);
      }
      const hit = [...latest.values()][0];
      if (hit !== undefined || !this.#cfg.bind) {
        return hit;
      }
      await delay(200, opts.signal);
    }
    return undefined;
  }

  /**
   * watch calls fn for each held request of the approver's tenant
   * (agentgw.approval.<tenant>.>) until the signal aborts, one at a time,
   * oldest first. A request is acknowledged when fn resolves and shown
   * again about 2 s later when it rejects.
   *
   * Every message's decision token is checked first (see verifyRequest:
   * signed by a trusted gateway over its exact bytes, for its target,
   * naming the held envelope it names), at this approver's clock, or as
   * of its deadline for a request past it (its token expired with it). A
   * message that is not a request of this tenant, or whose token does not
   * verify, is terminated (with the reason code) and reported to
   * onReject: fn never sees it, and it holds no slot of the consumer's
   * max_ack_pending. On a durable, a request whose token would verify by
   * a clock up to 5 minutes ahead of this approver's (issued "in the
   * future": this clock runs behind the gateway's by more than skewMs) is
   * handed back instead, and reported, so that a lagging clock does not
   * hide a live request from the others; with handBackUnknownKeys, so is
   * one whose token names a gateway key not among trustedGateways (a
   * VerificationError with unknownKey set), so that an approver not yet
   * given a rotated key does not end it for those that have it. Both are
   * handed back to be shown again about 2 s later.
   *
   * Requests that verify but that this approver cannot answer are not
   * shown: those past their deadline and those made by the approver
   * itself. With an ephemeral consumer they are acknowledged. On a
   * durable (a name, or bind), which other approvers may read too, the
   * approver's own requests are handed back (shown again to any approver
   * about 2 s later), and expired ones are acknowledged only once past
   * their deadline by more than 5 minutes, the largest clock skew the
   * gateway allows, and handed back until then. The Go SDK's Watch does
   * the same. Rejects with a StreamError when the consumer cannot be
   * created or disappears, or the connection closes for good.
   */
  async watch(fn: (req: ApprovalRequest) => unknown, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const spec = this.#spec();
    const cons = await openConsumer(this.#js, spec);
    for await (const m of pull(cons, spec.stream, opts.signal)) {
      let req: ApprovalRequest;
      try {
        req = decodeRequest(m.subject, m.data, this.agent.tenant);
      } catch (err) {
        const e = err instanceof Error ? err : new InvalidRequestError("approval request is not JSON of the request shape");
        this.#reject(m, e, e.message);
        continue;
      }
      // An ephemeral consumer is this approver's alone; a durable may be
      // bound by other approvers too, and consuming what this one will
      // not show would hide it from all of them.
      const shared = spec.durable !== "";
      const now = this.agent.now();
      const expired = requestExpired(req, now);
      // Every request's token is checked before anything else is decided
      // about it: what is handed back takes a max_ack_pending slot of a
      // shared durable again and again, so a request no trusted gateway
      // signed is terminated, whatever it claims to be. A request past
      // its deadline is checked as of when the gateway decided it
      // (Agentgw-Decided-At; its deadline without one): its token expired
      // with it, and one rebuilt after its hold ended was issued after
      // the deadline. The header only picks the instant.
      const at = expired ? expiredAt(m, req) : now;
      const token = headersOf(m)?.get(DECISION_HEADER) ?? undefined;
      try {
        this.#verify(token, m.data, req, at);
      } catch (err) {
        const v = err instanceof DeniedError ? err : new VerificationError("internal_error", "verification failed");
        if (this.#handsBack(v, shared) || (shared && this.#verifies(token, m.data, req, at, EXPIRED_ACK_MARGIN_MS))) {
          // Issued later than this clock says it is now, by up to the
          // margin (any clock up to that far ahead): the clock runs
          // behind the gateway's, and to an approver whose clock is right
          // the request is live. Handed back, as an expired one is, not
          // terminated for everyone. So is one signed by a gateway key
          // this approver was not given, with handBackUnknownKeys: the
          // approvers that trust it still see it.
          m.nak(REDELIVER_DELAY_MS);
          this.#cfg.onReject?.(m.subject, v);
          continue;
        }
        this.#reject(m, v, v.reason);
        continue;
      }
      if (req.agent === this.agent.publicKey) {
        if (shared) {
          m.nak(REDELIVER_DELAY_MS);
        } else {
          m.ack();
        }
        continue;
      }
      if (expired) {
        // Past the deadline by this clock, which may run ahead of the
        // gateway's and the other approvers': on a shared durable it is
        // consumed only once past it by more than any skew the gateway
        // allows (the gateway expires the hold itself), and handed back
        // until then.
        const pastMs = now.getTime() - (req.deadline?.getTime() ?? 0);
        if (!shared || pastMs > EXPIRED_ACK_MARGIN_MS) {
          m.ack();
        } else {
          m.nak(REDELIVER_DELAY_MS);
        }
        continue;
      }
      try {
        await fn(req);
      } catch {
        m.nak(REDELIVER_DELAY_MS);
        continue;
      }
      m.ack();
    }
  }

  /**
   * #handsBack reports whether a request refused with err is handed back
   * rather than terminated for want of a key (handBackUnknownKeys): only
   * on a shared durable, and only for a token whose issuer is not among
   * trustedGateways.
   */
  #handsBack(err: unknown, shared: boolean): boolean {
    return shared && this.#cfg.handBackUnknownKeys === true && err instanceof VerificationError && err.unknownKey;
  }

  /** #verifies reports whether the request's token verifies at now. */
  #verifies(token: string | undefined, data: Uint8Array, req: ApprovalRequest, now: Date, widerMs = 0): boolean {
    try {
      this.#verify(token, data, req, now, widerMs);
      return true;
    } catch {
      return false;
    }
  }

  /** #reject terminates m, never to be shown, and reports it to onReject. */
  #reject(m: JsMsg, err: Error, why: string): void {
    m.term(why);
    this.#cfg.onReject?.(m.subject, err);
  }

  /** grant answers req with a grant. See answer. */
  grant(req: ApprovalRequest, why = "", opts: SendOptions = {}): Promise<Receipt> {
    return this.answer(req, GRANT, why, opts);
  }

  /** deny answers req with a denial. See answer. */
  deny(req: ApprovalRequest, why = "", opts: SendOptions = {}): Promise<Receipt> {
    return this.answer(req, DENY, why, opts);
  }

  /**
   * answer sends an `approve` envelope whose target is req.heldMessageId
   * and whose plain payload carries decision, why, and req's bodyDigest and
   * policyVersion unchanged, so the answer binds to exactly the bytes and
   * the policy the approver was shown. The envelope carries req's trace id
   * (one trace from request to decision) and the idempotency key
   * "approve-<held id>", so a repeated answer is reported by the gateway as
   * a duplicate and a contradicting one as a conflict.
   *
   * Rejects with InvalidRequestError (req is not of this tenant, lacks its
   * id, digest or policy version, or decision is neither grant nor deny),
   * SelfApprovalError, or send's errors.
   */
  async answer(req: ApprovalRequest, decision: ApprovalDecision, why = "", opts: SendOptions = {}): Promise<Receipt> {
    const errs: string[] = [];
    if (decision !== GRANT && decision !== DENY) {
      errs.push(`decision ${JSON.stringify(String(decision).slice(0, 16))} is neither grant nor deny`);
    }
    if (req.tenant !== this.agent.tenant) {
      errs.push(`request of tenant ${JSON.stringify(String(req.tenant).slice(0, 72))}, approver of ${this.agent.tenant}`);
    }
    if (!req.heldMessageId || !req.bodyDigest || !req.policyVersion) {
      errs.push("request lacks its held message id, body digest or policy version");
    }
    if (errs.length > 0) {
      throw new InvalidRequestError(`invalid request: ${errs.join("; ")}`);
    }
    if (req.agent === this.agent.publicKey) {
      throw new SelfApprovalError("approver is the requesting agent");
    }
    const answer: Record<string, string> = { decision };
    if (why !== "") {
      answer.reason = why;
    }
    answer.body_digest = req.bodyDigest;
    answer.policy_version = req.policyVersion;
    return this.agent.send(
      {
        capability: "approve",
        target: req.heldMessageId,
        plain: answer,
        idempotencyKey: answerKey(req.heldMessageId),
        // A fresh trace rather than an envelope that cannot build.
        ...(validTraceId(req.traceId) ? { traceId: req.traceId } : {}),
      },
      opts,
    );
  }

  toString(): string {
    return `Approver{${this.agent.tenant} ${this.agent.publicKey}}`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}
