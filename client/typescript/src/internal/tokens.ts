// The record of decision tokens a Consumer handed over: client/tokens.go
// of the Go SDK, rule for rule.
import { VerificationError } from "../errors.js";

/**
 * DEFAULT_MAX_TOKENS is the number of decision tokens a Consumer remembers
 * when ConsumerConfig.maxTokens is absent or 0: at the gateway's default
 * token lifetime (5 minutes, plus the 30 s default skew) it covers some
 * 790 deliveries a second, sustained.
 */
export const DEFAULT_MAX_TOKENS = 1 << 18;

/**
 * HAND_BACK_DELAY_MS is how long a delivery the token record hands back
 * (the record is full, or the token may be one it dropped) waits before
 * it comes back, when nakDelayMs is absent.
 */
export const HAND_BACK_DELAY_MS = 1_000;

interface Expiring {
  id: string;
  expires: number;
}

/**
 * TokenState is how the handling of a token handed over fared: handling,
 * handed over and not settled yet; done, acknowledged (its handler
 * succeeded) or terminated; failed, handed back (its handler failed): it
 * may be handed over again.
 */
export type TokenState = "handling" | "done" | "failed";

/**
 * Redelivery is what claim returns for a redelivery it does not hand
 * over, and does not refuse: "handled", one of a delivery whose handling
 * succeeded (its acknowledgement lost, or the handler slower than
 * AckWait), to be acknowledged; "handling", one of a delivery not settled
 * yet, to be left alone: it comes back, by when the running handler has
 * settled it.
 */
export type Redelivery = "handled" | "handling";

/**
 * HandedOver is the JetStream consumer and stream sequence a token was
 * handed over from, until when it verifies (exp plus skew, ms), and how
 * its handling fared.
 */
interface HandedOver {
  consumer: string;
  seq: number;
  expires: number;
  state: TokenState;
}

/**
 * TokenRecord remembers which decision tokens a Consumer handed to its
 * handler, from which sequence of its stream, and how their handling
 * fared, until each token expires.
 *
 * A token is identified by its jti: 128 random bits the gateway draws
 * when it signs, covered by its signature. A copy of a delivery carries
 * the same jti and cannot change it without the token failing to verify;
 * two decisions never share one.
 */
export class TokenRecord {
  readonly #max: number;
  // jti -> where it was handed over from, until when, and how it fared.
  readonly #byId = new Map<string, HandedOver>();
  // A binary min-heap on expires.
  readonly #expiry: Expiring[] = [];
  // The latest expiry (ms) of an entry dropped because a clock reading
  // passed it. Entries are dropped soonest first, so a token expiring
  // later than this that is not recorded was never handed over; one
  // expiring no later may have been, and is refused even when a clock
  // stepped back since says it verifies.
  #dropped = -Infinity;

  /** max bounds the unexpired tokens held; it must be a positive integer. */
  constructor(max: number) {
    this.#max = max;
  }

  /** The number of tokens recorded, expired ones included until the next claim drops them. */
  get size(): number {
    return this.#byId.size;
  }

  /**
   * claim records that the token id, verifying until expires (ms), is
   * about to be handed over from stream sequence seq as delivered by the
   * JetStream consumer named consumer for the delivered-th time
   * (JetStream's delivery count, from 1), at now (ms). It returns
   * undefined, to hand it over, for a token not seen before and for one
   * whose handling failed (settle), from wherever it comes. A redelivery
   * (the same sequence from the same consumer again, delivered >= 2) of a
   * token whose handling succeeded returns "handled" (acknowledge it, do
   * not hand it over), and of one not settled yet "handling" (leave it).
   * Or it throws a VerificationError:
   *
   *  - decision_token_duplicate: the token was handed over from another
   *    stream sequence (a re-published copy), or from the same sequence
   *    by another JetStream consumer (two ephemeral consumers, each
   *    reading the whole stream), or from the same sequence by a consumer
   *    of the same name delivering it for the first time (a durable
   *    deleted and created again, which delivers the stream again from
   *    the start).
   *  - decision_token_record_full: the token is new and the record holds
   *    max unexpired tokens; nothing is forgotten to make room.
   *  - decision_token_expired: the token is expired at now, or it is not
   *    recorded and expires no later than an entry dropped at an earlier
   *    reading (the clock stepped back, or an earlier reading was ahead):
   *    it may be a copy of a token handed over and forgotten. Only the
   *    first kind is expired for good; the second may verify at now.
   *
   * Entries expire with their token, at the first claim whose now passes
   * their expiry.
   */
  claim(id: string, consumer: string, seq: number, delivered: number, expires: number, now: number): Redelivery | undefined {
    while (this.#expiry.length > 0 && now > this.#expiry[0]!.expires) {
      const e = this.#pop();
      this.#byId.delete(e.id);
      this.#dropped = Math.max(this.#dropped, e.expires);
    }
    if (now > expires) {
      throw new VerificationError("decision_token_expired", `jti ${id} expired at ${new Date(expires).toISOString()}`);
    }
    const h = this.#byId.get(id);
    if (h !== undefined) {
      if (h.state === "failed") {
        // Its handling did not finish the job: handed over again, whether
        // redelivered, delivered by a consumer created again, or copied.
        this.#byId.set(id, { consumer, seq, expires: h.expires, state: "handling" });
        return undefined;
      }
      if (h.seq === seq && h.consumer === consumer) {
        if (delivered >= 2) {
          return h.state === "done" ? "handled" : "handling";
        }
        // A first delivery of a sequence this consumer name has delivered
        // before: not this consumer's redelivery (its count would be 2 or
        // more) but another consumer created under the same name since.
        throw new VerificationError("decision_token_duplicate", `jti ${id} already handed over from stream sequence ${seq} by consumer ${consumer}; delivered again as a first delivery (the consumer was created again)`);
      }
      if (h.seq === seq) {
        throw new VerificationError("decision_token_duplicate", `jti ${id} already handed over from stream sequence ${seq} by consumer ${h.consumer}; delivered again by ${consumer}`);
      }
      throw new VerificationError("decision_token_duplicate", `jti ${id} already handed over from stream sequence ${h.seq}; this copy is sequence ${seq}`);
    }
    if (expires <= this.#dropped) {
      throw new VerificationError("decision_token_expired", `jti ${id} expires at ${new Date(expires).toISOString()}, no later than a token dropped from the record at an earlier clock reading: it may have been handed over`);
    }
    if (this.#byId.size >= this.#max) {
      throw new VerificationError("decision_token_record_full", `jti ${id}: ${this.#byId.size} unexpired decision tokens recorded; handed back until one expires`);
    }
    this.#byId.set(id, { consumer, seq, expires, state: "handling" });
    this.#push({ id, expires });
    return undefined;
  }

  /**
   * settle records how the handling of token id fared: ok (acknowledged,
   * or terminated), its redeliveries are acknowledged and its copies
   * refused; not ok (handed back), it may be handed over again. An id not
   * recorded (never claimed, or expired and dropped) is ignored.
   */
  settle(id: string, ok: boolean): void {
    const h = this.#byId.get(id);
    if (h !== undefined) {
      h.state = ok ? "done" : "failed";
    }
  }

  #push(e: Expiring): void {
    const h = this.#expiry;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (h[p]!.expires <= h[i]!.expires) break;
      [h[p], h[i]] = [h[i]!, h[p]!];
      i = p;
    }
  }

  #pop(): Expiring {
    const h = this.#expiry;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && h[l]!.expires < h[m]!.expires) m = l;
        if (r < h.length && h[r]!.expires < h[m]!.expires) m = r;
        if (m === i) break;
        [h[m], h[i]] = [h[i]!, h[m]!];
        i = m;
      }
    }
    return top;
  }
}
