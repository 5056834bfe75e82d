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
 * TokenRecord remembers which decision tokens a Consumer handed to its
 * handler, and from which sequence of its stream, until each token
 * expires.
 *
 * A token is identified by its jti: 128 random bits the gateway draws
 * when it signs, covered by its signature. A copy of a delivery carries
 * the same jti and cannot change it without the token failing to verify;
 * two decisions never share one.
 */
export class TokenRecord {
  readonly #max: number;
  // jti -> the JetStream consumer and stream sequence it was handed over
  // from, and until when it verifies (exp plus skew, ms).
  readonly #byId = new Map<string, { consumer: string; seq: number; expires: number }>();
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
   * (JetStream's delivery count, from 1), at now (ms). It returns for a
   * token not seen before and for a redelivery: the same sequence from
   * the same consumer again, delivered >= 2. Or it throws a
   * VerificationError:
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
  claim(id: string, consumer: string, seq: number, delivered: number, expires: number, now: number): void {
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
      if (h.seq === seq && h.consumer === consumer) {
        if (delivered >= 2) {
          return;
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
    this.#byId.set(id, { consumer, seq, expires });
    this.#push({ id, expires });
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
