// The agent: builds, signs, seals and publishes envelopes.
import { inspect } from "node:util";
import { headers as natsHeaders, type NatsConnection } from "@nats-io/transport-node";
import { jetstream, type JetStreamClient, type PubAck } from "@nats-io/jetstream";
import type { KeyPair } from "@nats-io/nkeys";
import {
  CollisionError,
  ConfigError,
  DeniedError,
  InvalidRequestError,
  PublishError,
  UnavailableError,
} from "./errors.js";
import { readCreds, readCurveSeed, peekCredential, type CredentialClaims } from "./creds.js";
import {
  buildEnvelope,
  isCapability,
  newMessageId,
  newTraceId,
  signEnvelope,
  validToken,
  withDefaults,
  type Capability,
  type Payload,
} from "./envelope.js";
import { b64url, hex, random, utf8 } from "./internal/bytes.js";
import { hooksOf, type PublishFn } from "./internal/hooks.js";
import { checkObject } from "./internal/json.js";
import { Box, isPublicKey } from "./keys.js";
import { ingress } from "./subjects.js";
import { replies, respond, sendAndWait, type Reply, type WaitOptions } from "./reply.js";
import { decisions, DecisionWatch, sendAndDecide, type Decision, type WatchOptions } from "./notice.js";
import type { Delivery } from "./verify.js";

/** Headers an agent sets on ingress. */
export const CREDENTIAL_HEADER = "Agentgw-Credential";
export const SIGNATURE_HEADER = "Agentgw-Signature";
export const MSG_ID_HEADER = "Nats-Msg-Id";
export const TRACEPARENT_HEADER = "traceparent";
/**
 * NOTIFY_HEADER, set to NOTIFY_NONE, asks the gateway for no decision
 * notice of the message (Request.noNotice).
 */
export const NOTIFY_HEADER = "Agentgw-Notify";
export const NOTIFY_NONE = "none";

/** Defaults of an agent's retry settings. */
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 2_000;
export const DEFAULT_MAX_ATTEMPTS = 5;
export const DEFAULT_RETRY_WAIT_MS = 100;
export const DEFAULT_MAX_REISSUES = 3;
/** The doubling back-off between attempts stops here. */
const MAX_RETRY_WAIT_MS = 2_000;

/**
 * AgentConfig is an agent's identity and publishing behaviour. It holds
 * secrets (key, curve, credential): never log it.
 */
export interface AgentConfig {
  /** The agent's credential JWT. Required. */
  credential: string;
  /** The agent's user ('U') key pair, the credential's subject. Required. */
  key: KeyPair;
  /** The agent's curve ('X') key pair, the credential's xkey. Absent: plain payloads only. */
  curve?: KeyPair;
  /**
   * The gateway's public curve key that sealed payloads are sealed to, and
   * replies are sealed from. Required with curve.
   */
  gatewayXKey?: string;
  /**
   * More gateway curve keys a reply may be sealed from. During a rotation
   * of the gateway's curve key, list the new key here before the gateway
   * takes it: a reply to a plain request is sealed from the gateway's
   * current key, a reply to a sealed one from the key it was sealed to.
   */
  replyXKeys?: string[];
  /** The agent's tenant. Absent: the credential's; if set it must equal it. */
  tenant?: string;
  /** The gateway's audience. Absent: the credential's aud; if set it must equal it. */
  audience?: string;
  /** Bounds the wait for one PubAck, in ms. Default 2000. */
  attemptTimeoutMs?: number;
  /** Bounds publish attempts of one message id, the first included. Default 5. */
  maxAttempts?: number;
  /** Pause before the second attempt, in ms; it doubles per attempt up to 2 s. Default 100. */
  retryWaitMs?: number;
  /** Bounds re-issues under a new id after a collision. Default 3. */
  maxReissues?: number;
  /** Replaces the clock: for issued_at of sent envelopes and reply token checks. */
  clock?: () => Date;
}

/** One message to send. Exactly one of plain and sealed is set. */
export interface Request {
  /** What the agent asks for. */
  capability: Capability;
  /**
   * A catalog name; for approve the held message id; for respond the
   * request answered, requestRef(agent, message id) (respond builds it).
   */
  target: string;
  /**
   * A plain payload: JSON bytes or text (sent verbatim), or any other
   * value, which is sent as JSON.stringify writes it. It must be one JSON
   * object.
   */
  plain?: Uint8Array | string | object;
  /**
   * The plaintext of a sealed payload, sealed to the gateway's curve key:
   * bytes, text, or any other value as JSON. It must be one JSON object
   * under the strict rules the gateway holds an opened payload to (no
   * duplicate member names, valid UTF-8, nothing after the object);
   * anything else, empty bytes included, is refused with
   * InvalidRequestError before it is sealed or published. The agent's
   * curve key seals other boxes to the gateway too (the token exchange's
   * xkey proof), so a box of arbitrary bytes could stand in for one of
   * them.
   */
  sealed?: Uint8Array | string | object;
  /** Names the request for the gateway's idempotency ledger. Absent: the message id. */
  idempotencyKey?: string;
  /** expires_at - issued_at in ms. Absent: 60 s. */
  ttlMs?: number;
  /** The W3C trace id (32 lowercase hex). Absent: a new one. */
  traceId?: string;
  /**
   * Asks the gateway for no decision notice of this message (header
   * Agentgw-Notify: none): for a sender that will not read it, so that
   * the gateway neither signs nor stores one. sendAndDecide and
   * sendAndWait, which read it, refuse it; so would a DecisionWatch's
   * await, which would wait in vain.
   */
  noNotice?: boolean;
}

/** Where a message landed. */
export interface Receipt {
  /** The envelope message id that was acknowledged. */
  messageId: string;
  traceId: string;
  /** The stream that acknowledged (AGENTGW_IN). */
  stream: string;
  /** The stream sequence of the message. */
  seq: number;
  /** Publish attempts over all message ids. */
  attempts: number;
}

/** Options of one send. */
export interface SendOptions {
  /** Aborts the send; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

function bytesOf(v: Uint8Array | string | object): Uint8Array {
  if (v instanceof Uint8Array) {
    return v;
  }
  if (typeof v === "string") {
    return utf8(v);
  }
  const s = JSON.stringify(v);
  if (typeof s !== "string") {
    throw new InvalidRequestError("payload does not encode as JSON");
  }
  return utf8(s);
}

function positive(v: number | undefined, d: number, what: string, errs: string[]): number {
  if (v === undefined || v === 0) {
    return d;
  }
  if (!Number.isFinite(v) || v < 0) {
    errs.push(`${what} ${v} is negative or not a number`);
  }
  return v;
}

/** sendWith is sendNamed's way into an agent's #send, set as the class is defined. */
let sendWith!: (agent: Agent, req: Request, opts: SendOptions, named: (messageId: string) => void) => Promise<Receipt>;

/**
 * An Agent sends signed envelopes for one agent identity. It is safe to
 * use from many tasks at once; its printed forms show only public keys.
 */
export class Agent {
  readonly #cfg: AgentConfig;
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #box: Box | undefined;
  readonly #clock: () => Date;
  readonly #attemptTimeout: number;
  readonly #maxAttempts: number;
  readonly #retryWait: number;
  readonly #maxReissues: number;
  /** The agent's public user key. */
  readonly publicKey: string;
  /** The agent's public curve key, or "" for a plain-only agent. */
  readonly xkey: string;
  /** The agent's tenant. */
  readonly tenant: string;
  /** The gateway's audience. */
  readonly audience: string;
  /** The agent's ingress subject. */
  readonly subject: string;
  /** The credential's claims, unverified (the gateway verifies them). */
  readonly claims: CredentialClaims;

  /**
   * Agent publishes through nc. The credential is read (not verified: the
   * gateway does that) to check that it names this key, this curve key,
   * the tenant and the audience, so a misconfiguration fails here and not
   * at the gateway. Throws a ConfigError listing every problem.
   */
  constructor(nc: NatsConnection, cfg: AgentConfig) {
    if (nc === undefined || nc === null) {
      throw new ConfigError("invalid config: no connection");
    }
    const errs: string[] = [];
    if (!cfg.credential) {
      errs.push("credential is required");
    }
    if (!cfg.key) {
      errs.push("agent key is required");
    }
    if (cfg.tenant !== undefined && cfg.tenant !== "" && !validToken(cfg.tenant)) {
      errs.push(`tenant ${JSON.stringify(cfg.tenant.slice(0, 72))} is not [a-z0-9_-]{1,64}`);
    }
    if (cfg.curve !== undefined && !isPublicKey(cfg.gatewayXKey ?? "", "X")) {
      errs.push("gateway xkey is not a public curve ('X') key");
    }
    let i = 0;
    for (const k of cfg.replyXKeys ?? []) {
      if (!isPublicKey(k, "X")) {
        errs.push(`reply xkey ${i} is not a public curve ('X') key`);
      }
      i++;
    }
    this.#attemptTimeout = positive(cfg.attemptTimeoutMs, DEFAULT_ATTEMPT_TIMEOUT_MS, "attempt timeout", errs);
    this.#maxAttempts = positive(cfg.maxAttempts, DEFAULT_MAX_ATTEMPTS, "max attempts", errs);
    this.#retryWait = positive(cfg.retryWaitMs, DEFAULT_RETRY_WAIT_MS, "retry wait", errs);
    this.#maxReissues = positive(cfg.maxReissues, DEFAULT_MAX_REISSUES, "max reissues", errs);
    if (errs.length > 0) {
      throw new ConfigError(`invalid config: ${errs.join("; ")}`);
    }
    let pub = "";
    try {
      pub = cfg.key.getPublicKey();
    } catch {
      // reported below
    }
    if (!isPublicKey(pub, "U")) {
      throw new ConfigError("invalid config: agent key is not a user ('U') seed");
    }
    let claims: CredentialClaims;
    try {
      claims = peekCredential(cfg.credential);
    } catch {
      throw new ConfigError("invalid config: credential is not a compact nkey JWT");
    }
    this.publicKey = pub;
    this.claims = claims;
    if (claims.sub !== pub) {
      errs.push("credential subject is not the agent key");
    }
    this.tenant = cfg.tenant || claims.tenant;
    if (cfg.tenant && cfg.tenant !== claims.tenant) {
      errs.push(`tenant ${cfg.tenant} is not the credential's`);
    }
    this.audience = cfg.audience || claims.aud;
    if (cfg.audience && cfg.audience !== claims.aud) {
      errs.push("audience is not the credential's");
    }
    let xkey = "";
    if (cfg.curve !== undefined) {
      try {
        this.#box = new Box(cfg.curve);
        xkey = this.#box.publicKey;
        if (xkey !== claims.xkey) {
          errs.push("curve key is not the credential's xkey");
        }
      } catch {
        errs.push("curve key is not a curve ('X') seed");
      }
    }
    this.xkey = xkey;
    let subject = "";
    try {
      subject = ingress(this.tenant, pub);
    } catch (err) {
      errs.push((err as Error).message);
    }
    this.subject = subject;
    if (errs.length > 0) {
      throw new ConfigError(`invalid config: ${errs.join("; ")}`);
    }
    this.#cfg = cfg;
    this.#nc = nc;
    this.#js = jetstream(nc);
    this.#clock = cfg.clock ?? (() => new Date());
  }

  /**
   * fromCreds returns an Agent whose credential and user key come from a
   * NATS .creds file and whose curve key comes from curveSeedPath (a file
   * holding an "SX…" seed; absent for a plain-only agent). cfg supplies
   * everything else (gatewayXKey, retry settings).
   */
  static async fromCreds(
    nc: NatsConnection,
    credsPath: string,
    curveSeedPath?: string,
    cfg: Omit<AgentConfig, "credential" | "key" | "curve"> = {},
  ): Promise<Agent> {
    const { credential, key } = await readCreds(credsPath);
    const curve = curveSeedPath ? await readCurveSeed(curveSeedPath) : undefined;
    return new Agent(nc, { ...cfg, credential, key, ...(curve ? { curve } : {}) });
  }

  /** The connection the agent publishes through. */
  get connection(): NatsConnection {
    return this.#nc;
  }

  /** now reads the agent's clock. */
  now(): Date {
    return this.#clock();
  }

  /** The agent's box, for opening what is sealed to it. Undefined for a plain-only agent. */
  get box(): Box | undefined {
    return this.#box;
  }

  /** The gateway's curve key from the config. */
  get gatewayXKey(): string {
    return this.#cfg.gatewayXKey ?? "";
  }

  /** The config's replyXKeys: more curve keys a reply may be sealed from. */
  get replyXKeys(): readonly string[] {
    return this.#cfg.replyXKeys ?? [];
  }

  toString(): string {
    return `Agent{${this.tenant} ${this.publicKey}}`;
  }

  toJSON(): object {
    return { tenant: this.tenant, agent: this.publicKey };
  }

  [inspect.custom](): string {
    return this.toString();
  }

  /**
   * send builds, signs and publishes req and resolves once JetStream has
   * acknowledged it.
   *
   * A timeout or a missing stream (no responders) is retried with the
   * same message id and the same bytes; a duplicate acknowledgement of a
   * retry means an earlier attempt landed, which is success. A duplicate
   * acknowledgement when no earlier attempt can have landed means another
   * publisher used the id: the message is re-issued under a new id (a new
   * body and signature), at most maxReissues times.
   *
   * Rejects with InvalidRequestError, UnavailableError, CollisionError,
   * PublishError, or the signal's reason.
   */
  send(req: Request, opts: SendOptions = {}): Promise<Receipt> {
    return this.#send(req, opts, undefined);
  }

  static {
    sendWith = (agent, req, opts, named) => agent.#send(req, opts, named);
  }

  /**
   * #send is send, calling named, when set, with each message id before
   * the envelope under it is published: a waiter for its reply or notice
   * is registered before either can arrive (sendNamed).
   */
  async #send(req: Request, opts: SendOptions, named: ((messageId: string) => void) | undefined): Promise<Receipt> {
    const signal = opts.signal;
    signal?.throwIfAborted();
    const payload = this.#payload(req);
    if (req.ttlMs !== undefined && req.ttlMs < 0) {
      throw new InvalidRequestError("invalid request: negative TTL");
    }
    const traceId = req.traceId || newTraceId();
    const hooks = hooksOf(this);
    const newId = hooks?.newId ?? newMessageId;
    let attempts = 0;
    for (let issue = 0; ; issue++) {
      const messageId = newId();
      const now = this.#clock();
      let body: Uint8Array;
      try {
        body = buildEnvelope(
          {
            messageId,
            idempotencyKey: req.idempotencyKey ?? "",
            traceId,
            tenant: this.tenant,
            audience: this.audience,
            capability: req.capability,
            target: req.target,
            ttlMs: req.ttlMs ?? 0,
            payload,
          },
          now,
        );
      } catch (err) {
        throw buildError(err, payload);
      }
      const h = natsHeaders();
      h.set(CREDENTIAL_HEADER, this.#cfg.credential);
      h.set(SIGNATURE_HEADER, signEnvelope((input) => this.#cfg.key.sign(input), body));
      h.set(MSG_ID_HEADER, messageId);
      h.set(TRACEPARENT_HEADER, `00-${traceId}-${hex(random(8))}-00`);
      if (req.noNotice === true) {
        h.set(NOTIFY_HEADER, NOTIFY_NONE);
      }
      named?.(messageId);
      const r = await this.#publish(body, h, messageId, hooks?.publish, signal);
      attempts += r.attempts;
      if (r.collision) {
        if (issue < this.#maxReissues) {
          continue;
        }
        throw new CollisionError(`message id collision: ${issue + 1} ids in a row already taken`);
      }
      return { messageId, traceId, stream: r.ack.stream, seq: r.ack.seq, attempts };
    }
  }

  /**
   * sendAndWait sends req and waits, until opts.signal aborts, for the
   * verified reply to it (see reply.ts). Each verified decision notice of
   * it goes to opts.onDecision; a verified denial rejects with
   * MessageDeniedError at once, a delivery or a hold keeps waiting.
   * Rejects with NoReplyError (with the receipt) when no reply came. The
   * agent's calls in flight share one subscription to its reply subject;
   * each reply and notice is handed to the call it names.
   */
  sendAndWait(req: Request, opts: WaitOptions & SendOptions): Promise<{ receipt: Receipt; reply: Reply }> {
    return sendAndWait(this, req, opts);
  }

  /**
   * sendAndDecide sends req and waits, until opts.signal aborts, for the
   * gateway's verified decision notice of it (see notice.ts): resolves
   * when it was delivered or held, rejects with MessageDeniedError when it
   * was denied and NoDecisionError (with the receipt) when no notice came.
   * The agent's calls in flight share one subscription to its reply
   * subject; each notice is handed to the call it names.
   */
  sendAndDecide(req: Request, opts: WatchOptions & SendOptions): Promise<{ receipt: Receipt; decision: Decision }> {
    return sendAndDecide(this, req, opts);
  }

  /**
   * watchDecisions subscribes to this agent's decision notices; await()
   * one envelope's after sending it. Close it when done.
   */
  watchDecisions(opts: WatchOptions): DecisionWatch {
    return new DecisionWatch(this, opts);
  }

  /**
   * decisions yields every verified decision notice to this agent until
   * opts.signal aborts or the loop ends; replies are skipped, notices that
   * do not verify are skipped and passed to opts.onReject.
   */
  decisions(opts: WatchOptions & { signal?: AbortSignal }): AsyncIterableIterator<Decision> {
    return decisions(this, opts);
  }

  /**
   * replies yields every verified reply to this agent until opts.signal
   * aborts or the loop ends; decision notices on the same subject are
   * skipped, other messages that do not verify are skipped and passed to
   * opts.onReject.
   */
  replies(opts: WaitOptions): AsyncIterableIterator<Reply> {
    return replies(this, opts);
  }

  /**
   * respond answers a delivered request as this agent (a capability
   * consumer whose credential holds respond:<target>): a respond envelope
   * whose target names the request by its agent and message id
   * (requestRef), in its trace, the answer sealed to the gateway from this
   * agent's curve key, which must be the target's consumer_xkey or the
   * gateway denies it wrong_responder. The answer must be one JSON object
   * (see Request.sealed).
   */
  respond(d: Delivery, answer: Uint8Array | string | object, opts: SendOptions = {}): Promise<Receipt> {
    return respond(this, d, answer, opts);
  }

  /** payload validates the request's shape and returns its wire payload. */
  #payload(req: Request): Payload {
    if (!isCapability(req.capability)) {
      throw new InvalidRequestError(`invalid request: capability ${JSON.stringify(String(req.capability).slice(0, 32))} is not one of the six`);
    }
    if (req.plain !== undefined && req.sealed !== undefined) {
      throw new InvalidRequestError("invalid request: both plain and sealed payloads");
    }
    if (req.sealed !== undefined) {
      if (this.#box === undefined) {
        throw new InvalidRequestError("invalid request: sealed payload but the agent has no curve key");
      }
      const plaintext = bytesOf(req.sealed);
      // Only a JSON object is sealed: the same key pair's box of other
      // bytes could be an xkey proof of the token exchange. The detail
      // may quote the plaintext, so only its reason is reported.
      const lim = withDefaults(undefined);
      let refused: string | undefined;
      if (plaintext.length > lim.maxBytes) {
        refused = "oversized";
      } else {
        try {
          // Level 2: the depth the gateway scans an opened payload at (Go's envelope.CheckPayload).
          checkObject(plaintext, lim, 2);
        } catch (err) {
          refused = err instanceof DeniedError ? err.reason : "malformed_envelope";
        }
      }
      if (refused !== undefined) {
        throw new InvalidRequestError(`invalid request: sealed payload is not one strict JSON object within the limits (${refused})`);
      }
      let ct: Uint8Array;
      try {
        ct = this.#box.seal(plaintext, this.gatewayXKey);
      } catch (err) {
        const why = err instanceof DeniedError ? err.reason : "internal_error";
        throw new InvalidRequestError(`invalid request: seal: ${why}`);
      }
      return { sealed: b64url(ct), from: this.xkey, to: this.gatewayXKey };
    }
    if (req.plain !== undefined) {
      return { plain: bytesOf(req.plain) };
    }
    throw new InvalidRequestError("invalid request: no payload");
  }

  /**
   * publish sends one message until it is acknowledged, retrying
   * retryable failures with the same bytes. collision reports a duplicate
   * acknowledgement when no earlier attempt can have stored it: only a
   * timed-out attempt may have landed, a no-responders one never reached
   * a stream.
   */
  async #publish(
    body: Uint8Array,
    h: ReturnType<typeof natsHeaders>,
    messageId: string,
    hook: PublishFn | undefined,
    signal: AbortSignal | undefined,
  ): Promise<{ ack: PubAck; attempts: number; collision: boolean }> {
    let mayHaveLanded = false;
    let wait = this.#retryWait;
    const real: PublishFn = (subject, data, o) =>
      this.#js.publish(subject, data, { headers: o.headers, msgID: o.msgID, timeout: o.timeout, retries: 1 });
    const publish = hook === undefined ? real : (s: string, d: Uint8Array, o: Parameters<PublishFn>[2]) => hook(s, d, o, real);
    for (let attempts = 1; ; attempts++) {
      let ack: PubAck;
      try {
        ack = await abortable(publish(this.subject, body, { headers: h, msgID: messageId, timeout: this.#attemptTimeout }), signal);
      } catch (err) {
        if (signal?.aborted) {
          throw signal.reason;
        }
        const lost = isTimeout(err);
        const absent = isNoResponders(err);
        if (!lost && !absent) {
          throw new PublishError(`publish ${messageId} refused: ${(err as Error)?.message ?? err}`, { cause: err });
        }
        mayHaveLanded ||= lost;
        if (attempts >= this.#maxAttempts) {
          throw new UnavailableError(`send ${messageId}: no acknowledgement from JetStream after ${attempts} attempts`, { cause: err });
        }
        await delay(wait, signal);
        wait = Math.min(2 * wait, MAX_RETRY_WAIT_MS);
        continue;
      }
      return { ack, attempts, collision: ack.duplicate && !mayHaveLanded };
    }
  }
}

/**
 * sendNamed is agent.send(req, opts), calling named with each message id
 * before the envelope under it is published: the first id, and each new
 * id a collision re-issues the request under. sendAndWait and
 * sendAndDecide register their waiter for the id before its reply or
 * notice can arrive, and follow a re-issue to the new id. Internal to the
 * package (index.ts does not export it).
 */
export function sendNamed(agent: Agent, req: Request, opts: SendOptions, named: (messageId: string) => void): Promise<Receipt> {
  return sendWith(agent, req, opts, named);
}

/**
 * buildError reports why the envelope did not build. A detail about the
 * plain payload may quote it, so it is replaced by the reason alone.
 */
function buildError(err: unknown, payload: Payload): InvalidRequestError {
  if (!(err instanceof DeniedError)) {
    return new InvalidRequestError("invalid request: envelope does not build");
  }
  if (payload.plain !== undefined) {
    return new InvalidRequestError(`invalid request: the request is not a valid envelope with this plain payload (${err.reason})`);
  }
  return new InvalidRequestError(`invalid request: ${err.message}`);
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && (err.name === "TimeoutError" || (err.cause instanceof Error && err.cause.name === "TimeoutError"));
}

function isNoResponders(err: unknown): boolean {
  if (!(err instanceof Error)) {
    return false;
  }
  const c = err.cause as { isNoResponders?: () => boolean; name?: string } | undefined;
  return err.name === "NoResponders" || c?.name === "NoResponders" || c?.isNoResponders?.() === true;
}

/** abortable rejects with signal's reason as soon as it aborts. */
export function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) {
    return p;
  }
  signal.throwIfAborted();
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (e) => {
        signal.removeEventListener("abort", onAbort);
        reject(e);
      },
    );
  });
}

/** delay waits ms, or rejects with the signal's reason. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
