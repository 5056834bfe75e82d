// The capability consumer: hands its handler only messages whose gateway
// decision token verifies, each decision once.
import { inspect } from "node:util";
import type { JetStreamClient, JsMsg } from "@nats-io/jetstream";
import type { KeyPair } from "@nats-io/nkeys";
import type { Agent, Receipt, SendOptions } from "./agent.js";
import { openConsumer, pull } from "./consume.js";
import { safePath } from "./creds.js";
import { ConfigError, VerificationError } from "./errors.js";
import type { Limits } from "./envelope.js";
import { validTarget, validToken } from "./envelope.js";
import { Box, isPublicKey } from "./keys.js";
import { headersOf } from "./internal/headers.js";
import { keepAliveOff } from "./internal/hooks.js";
import { DEFAULT_MAX_TOKENS, HAND_BACK_DELAY_MS, TokenRecord, type Redelivery } from "./internal/tokens.js";
import { capability, STREAM_CAPABILITY } from "./subjects.js";
import { Delivery, DEFAULT_CONSUMER_SKEW_MS, verifyDelivery, type VerifyOptions } from "./verify.js";

export { DEFAULT_MAX_TOKENS };

/** MAX_CONCURRENCY bounds ConsumerConfig.concurrency. */
export const MAX_CONCURRENCY = 1024;

/**
 * PULL_BUFFER is how many deliveries deliveries() keeps buffered ahead of
 * its loop; consume keeps twice its concurrency. A buffered delivery gets
 * no in-progress word until its turn, so a deeper buffer would let
 * AckWait pass for it behind a slow handler and hand it to another
 * instance of the durable, to be handled again (the Go SDK's Consume
 * buffers as many).
 */
const PULL_BUFFER = 2;

/**
 * CLOCK_BEHIND_MARGIN_MS is how far ahead of the consumer's clock a
 * token may be issued and still be handed back rather than terminated:
 * the largest skew the gateway may be configured with (5 minutes).
 */
const CLOCK_BEHIND_MARGIN_MS = 300_000;

/**
 * settlers holds, for each ReceivedDelivery a Consumer handed over, the
 * function that records in the Consumer's token record how its handling
 * fared (TokenRecord.settle).
 */
const settlers = new WeakMap<ReceivedDelivery, (ok: boolean) => void>();

/** DEFAULT_ACK_WAIT_MS is JetStream's AckWait for a consumer created without one. */
const DEFAULT_ACK_WAIT_MS = 30_000;

/** ackWaits holds, for each ReceivedDelivery, its durable's AckWait in ms. */
const ackWaits = new WeakMap<ReceivedDelivery, number>();

/** settleToken records how the handling of d fared, once: later calls do nothing. */
function settleToken(d: ReceivedDelivery, ok: boolean): void {
  const settle = settlers.get(d);
  settlers.delete(d);
  settle?.(ok);
}

/** ConsumerConfig configures a capability consumer. It holds the consumer's curve key: never log it. */
export interface ConsumerConfig {
  /** The tenant whose capability subjects are read. */
  tenant: string;
  /** Targets served, each a catalog name; agentgw.cap.<tenant>.<target> is read for each. */
  targets: string[];
  /** The consumer's curve ('X') key pair, the catalog's consumer xkey. Absent: plain targets only. */
  curve?: KeyPair;
  /** The gateways' public server ('N') keys. */
  trustedGateways: string[];
  /** When set, the only sealed_from keys accepted. */
  gatewayXKeys?: string[];
  /** Also verify the agent's own signature. */
  verifyAgentSignature?: boolean;
  /**
   * Skew tolerated on token times, in ms. Absent: 30 s
   * (DEFAULT_CONSUMER_SKEW_MS, as the Go SDK's DefaultConsumerConfig);
   * 0: none, as a zero ConsumerConfig.Skew in the Go SDK. Negative or not
   * a finite number: ConfigError.
   */
  skewMs?: number;
  /** Bounds of envelope bodies; absent fields take the defaults. */
  limits?: Limits;
  /**
   * A durable consumer name (work is shared by every reader with that
   * name and resumes after a restart). Absent: an ephemeral consumer that
   * starts at the oldest message in the stream.
   */
  durable?: string;
  /**
   * Use the existing durable named durable instead of creating or updating
   * it: the least-privilege deployment pre-creates consumers
   * (capabilityConsumerName) and lets each consumer read only its own.
   */
  bind?: boolean;
  /** The capability stream. Absent: AGENTGW_CAP. */
  stream?: string;
  /**
   * How long JetStream waits for a word on a delivery before it
   * redelivers it, in ms. While consume's handler runs, the Consumer
   * tells JetStream the delivery is in progress every third of the
   * durable's AckWait, so a slow handler does not see it redelivered, to
   * this or another instance of the durable (deliveries' readers call
   * working() themselves). Absent: the server's default (30 s).
   */
  ackWaitMs?: number;
  /** Bounds deliveries of one message (handler errors included). Absent: unlimited. */
  maxDeliver?: number;
  /**
   * Delays redelivery after a handler error, and after a refusal that
   * hands the message back (see Consumer), in ms. Absent: at once after a
   * handler error, one second after a refusal.
   */
  nakDelayMs?: number;
  /**
   * The consumer's own agent identity (its credential holds
   * respond:<target>), used by respond. The gateway takes an answer only
   * sealed from the key the request was delivered under (the target's
   * consumer_xkey), so with curve set the responder's curve key must be
   * curve's: the constructor refuses it otherwise.
   */
  responder?: Agent;
  /**
   * Called with the subject and the VerificationError of every message
   * that is not handed over: one that fails verification or is a copy of
   * a delivery already handed over (terminated), or one the token record
   * refuses though it verifies, or one whose token is issued later than
   * the consumer's clock says it is now by up to 5 minutes, or one
   * refused for want of a key with handBackUnknownKeys on a durable
   * (handed back; see Consumer). It is called
   * from the loop that reads and verifies messages, one call at a time
   * whatever the concurrency (a refused message takes no handler's
   * place): keep it short.
   */
  onReject?: (subject: string, err: VerificationError) => void;
  /**
   * On a durable consumer (durable set, or bind), hands back (nak, after
   * nakDelayMs or one second), rather than terminates, a delivery
   * refused only for want of a key this consumer is configured with
   * (VerificationError.unknownKey): its token's issuer is not among
   * trustedGateways, or its re-sealed payload comes from a curve key
   * outside gatewayXKeys, arrives without curve, or does not open with
   * curve. So a reader of a shared durable that lacks a key does not
   * destroy a live delivery for the readers that have it. The refusal is
   * still reported to onReject, with its usual reason; every other
   * refusal is still terminated. An ephemeral consumer, which no one
   * else reads, still terminates it (handed back, it would come back to
   * this consumer every nakDelayMs for ever). Absent or false:
   * terminated, since anyone who can publish on capability subjects
   * could otherwise fill the durable's max_ack_pending with handed-back
   * forgeries naming an unknown gateway, or with genuine deliveries
   * re-published with another sealed_from (the token binds a re-sealed
   * payload's bytes, not sealed_from), which are handed back too.
   * maxDeliver bounds how often such a delivery comes back. The Go SDK's
   * ConsumerConfig.HandBackUnknownKeys.
   */
  handBackUnknownKeys?: boolean;
  /**
   * Bounds the decision tokens the consumer remembers having handed over
   * (see Consumer), each until it expires. Absent or 0:
   * DEFAULT_MAX_TOKENS (262 144). When it is full a new delivery is
   * refused, not handed over unrecorded: it is handed back (nak, after
   * nakDelayMs or one second) and reported to onReject with
   * decision_token_record_full, and comes back once tokens expire.
   */
  maxTokens?: number;
  /**
   * How many deliveries consume hands to its handler at once, each
   * settled when its handler settles. Absent, 0 or 1: one at a time, in
   * stream order. Above 1: up to that many handler calls in flight, which
   * overlap and finish in any order; a redelivery (after AckWait) of a
   * delivery whose handler still runs is left, not handed to a second
   * call (see Consumer). At most
   * MAX_CONCURRENCY; negative or not an integer: ConfigError. deliveries
   * always yields one at a time.
   */
  concurrency?: number;
  /** Replaces the clock for token expiry checks. */
  clock?: () => Date;
}

/** Options of consume and deliveries. */
export interface ConsumeOptions {
  /** Stops reading: consume resolves, the iteration ends. */
  signal?: AbortSignal;
}

/**
 * A ReceivedDelivery is a verified delivery from a Consumer, with the
 * JetStream message it came in. Settle it once: ack when handled, nak to
 * have it redelivered (and handed over again), term to drop it for good.
 * Until it is settled its redeliveries are not handed over (see
 * Consumer).
 */
export class ReceivedDelivery extends Delivery {
  readonly #msg: JsMsg;
  readonly #consumer: Consumer;
  #settled = false;

  constructor(d: Delivery, msg: JsMsg, consumer: Consumer) {
    super(d);
    this.#msg = msg;
    this.#consumer = consumer;
  }

  /** Whether JetStream delivered this message before. */
  get redelivered(): boolean {
    return this.#msg.redelivered;
  }

  /** The capability stream's sequence of the message. */
  get seq(): number {
    return this.#msg.seq;
  }

  /** Whether ack, nak or term was called. */
  get settled(): boolean {
    return this.#settled;
  }

  /**
   * ack acknowledges the message: it is handled and will not be
   * redelivered. A redelivery that comes all the same (the
   * acknowledgement was lost) is acknowledged, not handed over.
   */
  ack(): void {
    if (this.#settled) {
      return;
    }
    this.#settled = true;
    settleToken(this, true);
    this.#msg.ack();
  }

  /** nak hands the message back for redelivery, after delayMs if given: its decision is handed over again. */
  nak(delayMs?: number): void {
    if (this.#settled) {
      return;
    }
    this.#settled = true;
    settleToken(this, false);
    if (delayMs !== undefined && delayMs > 0) {
      this.#msg.nak(delayMs);
    } else {
      this.#msg.nak();
    }
  }

  /**
   * term terminates the message: it is never redelivered, and its
   * decision is not handed over again. reason, if given, is the term
   * reason JetStream reports.
   */
  term(reason?: string): void {
    if (this.#settled) {
      return;
    }
    this.#settled = true;
    settleToken(this, true);
    if (reason !== undefined && reason !== "") {
      this.#msg.term(reason);
    } else {
      this.#msg.term();
    }
  }

  /** working tells JetStream the handler needs more time (resets AckWait). */
  working(): void {
    this.#msg.working();
  }

  /** respond answers this request through the consumer's responder. */
  respond(answer: Uint8Array | string | object, opts: SendOptions = {}): Promise<Receipt> {
    return this.#consumer.respond(this, answer, opts);
  }
}

/**
 * A Consumer delivers verified capability messages, each gateway decision
 * at most once. Each consume or deliveries call runs its own
 * subscription; a message that fails verification is terminated (never
 * redelivered, its reason code as the term reason) and reported to
 * onReject.
 *
 * Each decision is handed over once. The consumer remembers the decision
 * token id (jti: 128 random bits the gateway signs into every token) of
 * each delivery it hands over, with the stream sequence it came from,
 * until the token expires (exp plus skew: from then on it no longer
 * verifies anyway). A verified message whose jti was handed over from
 * another stream sequence is a re-published copy (the same bytes stored
 * again under a new Nats-Msg-Id, which only a holder of publish rights on
 * the capability subject can do): it is terminated with
 * decision_token_duplicate and reported to onReject. The record also
 * remembers how the handling fared. A redelivery of the same stream
 * sequence by the same JetStream consumer (JetStream counts it delivered
 * twice or more) is handed over again when the handling failed (the
 * delivery was nak'd: the handler rejected), acknowledged without a
 * second call when it succeeded (acknowledged or terminated, and the
 * acknowledgement lost, or the handler ran past AckWait), and left alone
 * while the delivery is not settled yet (the handler still runs, and
 * settles the sequence). A decision whose handling failed is handed over
 * again from wherever it comes; one whose handling succeeded or still
 * runs is not. The same sequence delivered for the first time again under
 * the same consumer name (a durable deleted and created again, which
 * delivers the stream from its start) is not a redelivery: a duplicate.
 * A handler must still tolerate seeing a decision it did not finish: a
 * process that dies while its handler runs hands nothing on, and
 * JetStream redelivers the message to whichever reader asks next. The
 * record holds at most maxTokens tokens; when it is full a new delivery
 * is handed back rather than handed over unrecorded (see maxTokens).
 *
 * The record forgets a token once a clock reading passes its expiry. If
 * that reading was ahead (a VM resumed, a clock stepped forward and then
 * corrected) or the clock steps back since, a token that verifies by the
 * current reading but expires no later than a forgotten one may be a copy
 * of it: it is refused decision_token_expired and handed back (nak, after
 * nakDelayMs or one second), never terminated, so a Consumer with a fresh
 * record (a restarted process) can still handle it. Only a token expired
 * by the current reading is terminated.
 *
 * The record is in this process's memory, shared by every consume and
 * deliveries call of this Consumer and by nothing else. Other instances
 * bound to the same durable each have their own, and a restarted process
 * starts with an empty one: a copy that another instance receives, or
 * that arrives after a restart, is handed over there. A tool that runs
 * several instances and must never act twice keeps claims.id in shared
 * durable state of its own.
 *
 * A token issued later than the consumer's clock says it is now (the
 * clock runs behind the gateway's by more than skewMs) that would verify
 * by a clock up to 5 minutes ahead is reported with
 * decision_token_invalid and handed back (nak, after nakDelayMs or one
 * second), not terminated, so that a lagging clock does not destroy a
 * live delivery for every reader of the durable.
 *
 * With handBackUnknownKeys, a delivery to a durable (durable, or bind)
 * refused only for want of a key (VerificationError.unknownKey) is
 * handed back the same way and reported, not terminated; an ephemeral
 * consumer, read by no one else, still terminates it. The token binds a
 * re-sealed payload's bytes but not sealed_from, so a genuine delivery
 * re-published with another sealed_from is handed back too.
 */
export class Consumer {
  readonly #js: JetStreamClient;
  readonly #cfg: ConsumerConfig;
  readonly #box: Box | undefined;
  readonly #clock: () => Date;
  readonly #tokens: TokenRecord;

  /** Consumer reads through js (tenantJetStream(nc) for a tenant user). Throws a ConfigError listing every problem. */
  constructor(js: JetStreamClient, cfg: ConsumerConfig) {
    if (js === undefined || js === null) {
      throw new ConfigError("invalid config: no JetStream client");
    }
    const errs: string[] = [];
    if (!validToken(cfg.tenant ?? "")) {
      errs.push(`tenant ${JSON.stringify(String(cfg.tenant).slice(0, 72))} is not [a-z0-9_-]{1,64}`);
    }
    if (!cfg.targets || cfg.targets.length === 0) {
      errs.push("at least one target is required");
    }
    for (const t of cfg.targets ?? []) {
      if (!validTarget(t)) {
        errs.push(`target ${JSON.stringify(String(t).slice(0, 72))} is not dotted [a-z0-9_-]{1,64} parts`);
      }
    }
    if (!cfg.trustedGateways || cfg.trustedGateways.length === 0) {
      errs.push("at least one trusted gateway key is required");
    }
    for (const k of cfg.trustedGateways ?? []) {
      if (!isPublicKey(k, "N")) {
        errs.push(`trusted gateway ${JSON.stringify(safePath(String(k)).slice(0, 72))} is not a public server ('N') key`);
      }
    }
    for (const k of cfg.gatewayXKeys ?? []) {
      if (!isPublicKey(k, "X")) {
        errs.push(`gateway xkey ${JSON.stringify(safePath(String(k)).slice(0, 72))} is not a public curve ('X') key`);
      }
    }
    for (const [name, v] of [
      ["skew", cfg.skewMs],
      ["ack wait", cfg.ackWaitMs],
      ["nak delay", cfg.nakDelayMs],
      ["max deliver", cfg.maxDeliver],
      ["max tokens", cfg.maxTokens],
    ] as const) {
      if (v !== undefined && (!Number.isFinite(v) || v < 0)) {
        errs.push(`${name} ${v} is negative or not a number`);
      }
    }
    if (cfg.maxTokens !== undefined && !Number.isSafeInteger(cfg.maxTokens)) {
      errs.push(`max tokens ${cfg.maxTokens} is not an integer`);
    }
    const n = cfg.concurrency;
    if (n !== undefined && !(Number.isSafeInteger(n) && n >= 0 && n <= MAX_CONCURRENCY)) {
      errs.push(`concurrency ${n} is not an integer in [0, ${MAX_CONCURRENCY}]`);
    }
    if (cfg.bind && !cfg.durable) {
      errs.push("binding needs a durable name");
    }
    let box: Box | undefined;
    if (cfg.curve !== undefined) {
      try {
        box = new Box(cfg.curve);
      } catch {
        errs.push("curve key is not a curve ('X') seed");
      }
    }
    const r = cfg.responder;
    if (box !== undefined && r !== undefined && r.xkey !== box.publicKey) {
      errs.push(
        `the responder's curve key ${JSON.stringify(String(r.xkey).slice(0, 72))} is not the consumer's ${box.publicKey}: the gateway takes answers only from the consumer key`,
      );
    }
    if (errs.length > 0) {
      throw new ConfigError(`invalid config: ${errs.join("; ")}`);
    }
    this.#js = js;
    this.#cfg = { ...cfg, targets: [...cfg.targets] };
    this.#box = box;
    this.#clock = cfg.clock ?? (() => new Date());
    this.#tokens = new TokenRecord(cfg.maxTokens || DEFAULT_MAX_TOKENS);
  }

  /** verifyOptions returns the options each message is verified with, at the clock's current instant (or now). */
  verifyOptions(now: Date = this.#clock()): VerifyOptions {
    const c = this.#cfg;
    const o: VerifyOptions = {
      tenant: c.tenant,
      targets: c.targets,
      trustedGateways: c.trustedGateways,
      now,
      skewMs: c.skewMs ?? DEFAULT_CONSUMER_SKEW_MS,
    };
    if (this.#box !== undefined) o.curve = this.#box;
    if (c.gatewayXKeys !== undefined) o.gatewayXKeys = c.gatewayXKeys;
    if (c.verifyAgentSignature !== undefined) o.verifyAgentSignature = c.verifyAgentSignature;
    if (c.limits !== undefined) o.limits = c.limits;
    return o;
  }

  /**
   * deliveries yields each verified delivery of the configured targets,
   * one at a time whatever the concurrency, until the signal aborts or the
   * loop ends. Settle each one (ack, nak or term): until it is settled,
   * its redeliveries (after AckWait; working() defers them) are left to
   * come back, and once nak'd it is handed over again, as is one the
   * loop leaves unsettled when it stops (a break, a throw) holding it.
   * Messages that fail verification, and copies of a delivery already
   * handed over from another stream sequence, are terminated and reported
   * to onReject; one the token record refuses though it verifies (the
   * record is full, or the token may be one it forgot), whose token is
   * issued ahead of a lagging clock, or (with handBackUnknownKeys, on a
   * durable) that is refused for want of a key, is handed back and
   * reported (see Consumer). Throws a StreamError when the consumer cannot be created or
   * disappears, or the connection closes for good.
   */
  deliveries(opts: ConsumeOptions = {}): AsyncGenerator<ReceivedDelivery, void, undefined> {
    return this.#verified(opts.signal, PULL_BUFFER);
  }

  /**
   * consume calls handler with each verified delivery until the signal
   * aborts, one at a time or up to concurrency at once: it takes the next
   * delivery only when fewer than concurrency handler calls are in
   * flight. Each delivery is acknowledged when its handler resolves
   * (unless the handler settled it itself), and negatively acknowledged
   * (after nakDelayMs) to be redelivered when it rejects. With concurrency
   * above 1 the handler calls overlap and finish in any order. A
   * redelivery of a delivery whose handler still runs (the handler ran
   * past AckWait) is left, not handed over: the running call settles it;
   * one whose handler resolved is acknowledged; only one whose handler
   * rejected is handed over again. Once the signal aborts no further
   * delivery is handed over (it is left unacknowledged, to come back after
   * AckWait), and consume resolves when the handler calls in flight have
   * settled. Refused messages are settled as deliveries describes:
   * terminated, or handed back (among them, with handBackUnknownKeys on
   * a durable only, one refused for want of a key; an ephemeral
   * consumer terminates it) and reported to onReject. It rejects with a
   * StreamError when the consumer cannot be created or disappears, or
   * the connection closes for good, also only once the handler calls in
   * flight have settled.
   */
  async consume(handler: (d: ReceivedDelivery) => unknown, opts: ConsumeOptions = {}): Promise<void> {
    const slots = Math.max(1, this.#cfg.concurrency ?? 1);
    const nakDelay = this.#cfg.nakDelayMs;
    const running = new Set<Promise<void>>();
    // Settling can throw (a closed connection): the first such error stops
    // the loop and rejects consume, as it would one at a time.
    let failed: { err: unknown } | undefined;
    const quiet = keepAliveOff(this);
    const handle = async (d: ReceivedDelivery): Promise<void> => {
      // In progress every third of AckWait while the handler runs: a
      // redelivery would reach another instance of the durable, whose
      // token record knows nothing of this call.
      const every = Math.max((ackWaits.get(d) ?? DEFAULT_ACK_WAIT_MS) / 3, 10);
      const timer = quiet
        ? undefined
        : setInterval(() => {
            try {
              if (!d.settled) d.working();
            } catch {
              // a closed connection: the settlement reports it
            }
          }, every);
      try {
        await handler(d);
      } catch {
        d.nak(nakDelay);
        return;
      } finally {
        clearInterval(timer);
      }
      d.ack();
    };
    try {
      for await (const d of this.#verified(opts.signal, 2 * slots)) {
        if (opts.signal?.aborted || failed !== undefined) {
          // Left unacknowledged: it comes back after AckWait, and is
          // handed over then (verified records it as not handled).
          break;
        }
        const p: Promise<void> = handle(d)
          .catch((err: unknown) => {
            failed ??= { err };
          })
          .finally(() => running.delete(p));
        running.add(p);
        while (running.size >= slots) {
          await Promise.race(running);
        }
      }
    } finally {
      await Promise.allSettled(running);
    }
    if (failed !== undefined) {
      throw failed.err;
    }
  }

  /** verified reads the configured targets through a subscription buffering maxMessages: see deliveries. */
  async *#verified(signal: AbortSignal | undefined, maxMessages: number): AsyncGenerator<ReceivedDelivery, void, undefined> {
    const c = this.#cfg;
    const stream = c.stream || STREAM_CAPABILITY;
    const cons = await openConsumer(this.#js, {
      stream,
      durable: c.durable ?? "",
      bind: c.bind ?? false,
      description: "agentgw capability consumer",
      filters: c.targets.map((t) => capability(c.tenant, t)),
      ackWaitMs: c.ackWaitMs ?? 0,
      maxDeliver: c.maxDeliver ?? 0,
    });
    // bind requires durable (the constructor checks), so a name is what
    // makes the consumer a durable, shared with its other readers.
    const durable = (c.durable ?? "") !== "";
    const ackWaitNs = (await cons.info(true).catch(() => undefined))?.config.ack_wait ?? 0;
    const ackWaitMs = ackWaitNs > 0 ? ackWaitNs / 1_000_000 : DEFAULT_ACK_WAIT_MS;
    for await (const m of pull(cons, stream, signal, maxMessages)) {
      let d: Delivery | undefined;
      let redelivery: Redelivery | undefined;
      let handBack = false;
      try {
        const now = this.#clock();
        try {
          d = verifyDelivery(m.subject, headersOf(m), m.data, this.verifyOptions(now));
        } catch (err) {
          // A token issued later than this clock says it is now: the clock
          // runs behind the gateway's, and to a consumer whose clock is
          // right the delivery is live. Handed back, as the Approver does,
          // not terminated for every reader of the durable. Issued in the
          // future is the only refusal a wider skew lifts that was not an
          // expiry.
          if (err instanceof VerificationError && err.reason === "decision_token_invalid") {
            const wide = this.verifyOptions(now);
            wide.skewMs = (wide.skewMs ?? 0) + CLOCK_BEHIND_MARGIN_MS;
            try {
              verifyDelivery(m.subject, headersOf(m), m.data, wide);
              handBack = true;
            } catch {
              // invalid by any clock
            }
          }
          throw err;
        }
        redelivery = this.#claim(m, d, stream, now);
      } catch (err) {
        const v = err instanceof VerificationError ? err : new VerificationError("internal_error", "verification failed");
        // With d set the token verifies at now: the record refuses it as
        // expired only for an earlier clock reading, which now may show to
        // have been ahead. Refused, but not terminated.
        // A key this consumer lacks, with handBackUnknownKeys: another
        // reader of the durable may hold it. An ephemeral consumer is
        // read by no one else: handed back, it would only come back here.
        if (
          handBack ||
          v.reason === "decision_token_record_full" ||
          (d !== undefined && v.reason === "decision_token_expired") ||
          (c.handBackUnknownKeys === true && durable && v.unknownKey)
        ) {
          m.nak(c.nakDelayMs || HAND_BACK_DELAY_MS);
        } else {
          m.term(v.reason);
        }
        c.onReject?.(m.subject, v);
        continue;
      }
      if (redelivery === "handled") {
        // Its handling succeeded: the acknowledgement was lost, or came
        // after AckWait.
        m.ack();
        continue;
      }
      if (redelivery === "handling") {
        continue; // left: it comes back, by when the delivery it repeats is settled
      }
      const rd = new ReceivedDelivery(d, m, this);
      ackWaits.set(rd, ackWaitMs);
      const id = d.claims.id;
      settlers.set(rd, (ok) => this.#tokens.settle(id, ok));
      let left = true;
      try {
        yield rd;
        left = false;
      } finally {
        // The reading loop stopped (a break, a throw) holding rd: unless
        // it settled rd, rd was not handled, and is handed over again
        // when it comes back. Nothing if it was settled.
        if (left) {
          settleToken(rd, false);
        }
      }
    }
  }

  /** respond answers a delivery through the consumer's responder (ConsumerConfig.responder). */
  respond(d: Delivery, answer: Uint8Array | string | object, opts: SendOptions = {}): Promise<Receipt> {
    if (this.#cfg.responder === undefined) {
      return Promise.reject(new ConfigError("invalid config: ConsumerConfig.responder is not set"));
    }
    return this.#cfg.responder.respond(d, answer, opts);
  }

  /**
   * claim records that the verified delivery d, message m, is about to be
   * handed over (TokenRecord.claim). A message without JetStream
   * metadata, or from a stream other than the consumer's, cannot be told
   * apart from a copy: internal_error. It returns what TokenRecord.claim
   * does: "handled" or "handling" for a redelivery not to hand over.
   */
  #claim(m: JsMsg, d: Delivery, stream: string, now: Date): Redelivery | undefined {
    let from: string;
    let consumer: string;
    let delivered: number;
    try {
      from = m.info.stream;
      consumer = m.info.consumer;
      delivered = m.info.deliveryCount;
    } catch {
      throw new VerificationError("internal_error", `jti ${d.claims.id}: no JetStream metadata on the delivery`);
    }
    if (from !== stream) {
      throw new VerificationError("internal_error", `jti ${d.claims.id}: delivered from stream ${from}, not ${stream}`);
    }
    const skew = this.#cfg.skewMs ?? DEFAULT_CONSUMER_SKEW_MS;
    return this.#tokens.claim(d.claims.id, consumer, m.seq, delivered, d.claims.expires.getTime() + skew, now.getTime());
  }

  toString(): string {
    return `Consumer{tenant=${this.#cfg.tenant} targets=${this.#cfg.targets.join(",")} durable=${this.#cfg.durable ?? ""}}`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}
