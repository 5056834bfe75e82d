import type { Msg } from "@nats-io/transport-node";
import type { MsgSource } from "./bounded.js";
import { VerificationError } from "../errors.js";

/**
 * verifiedMessages iterates over sub's messages that keep selects, each
 * passed through verify, until signal aborts or the subscription ends. A
 * message verify refuses with a VerificationError goes to onReject and
 * is skipped; any other error, or one onReject throws, ends the iteration
 * and unsubscribes. A value whose token id
 * was among the last 4096 yielded is skipped: the gateway's re-emission
 * of an output (byte for byte, on a redelivery) is yielded once.
 */
/** SEEN_MAX bounds the token ids verifiedMessages remembers. */
const SEEN_MAX = 4096;

export function verifiedMessages<T extends { readonly claims: { readonly id: string } }>(
  sub: MsgSource,
  signal: AbortSignal | undefined,
  keep: (m: Msg) => boolean,
  verify: (m: Msg) => T,
  onReject?: (err: VerificationError) => void,
): AsyncIterableIterator<T> {
  // The gateway re-emits an output byte for byte when a message is
  // redelivered; JetStream drops the copy from the stream, but a core
  // subscriber sees both. A value whose token id was yielded lately is
  // not yielded again (the last SEEN_MAX ids).
  const seen = new Set<string>();
  const stop = (): void => sub.unsubscribe();
  signal?.addEventListener("abort", stop, { once: true });
  if (signal?.aborted) {
    stop();
  }
  const it = sub[Symbol.asyncIterator]();
  const out: AsyncIterableIterator<T> = {
    async next(): Promise<IteratorResult<T>> {
      for (;;) {
        const r = await it.next();
        if (r.done) {
          signal?.removeEventListener("abort", stop);
          return { done: true, value: undefined };
        }
        if (!keep(r.value)) {
          continue;
        }
        try {
          const v = verify(r.value);
          if (seen.has(v.claims.id)) {
            continue;
          }
          seen.add(v.claims.id);
          if (seen.size > SEEN_MAX) {
            seen.delete(seen.values().next().value as string);
          }
          return { done: false, value: v };
        } catch (err) {
          try {
            if (err instanceof VerificationError) {
              onReject?.(err);
              continue;
            }
          } catch (thrown) {
            err = thrown; // onReject threw: the iteration ends with it
          }
          // A for await loop does not call return() when next() rejects:
          // the subscription ends here, or the server would go on
          // queueing the agent's messages for it.
          stop();
          signal?.removeEventListener("abort", stop);
          throw err;
        }
      }
    },
    async return(): Promise<IteratorResult<T>> {
      stop();
      signal?.removeEventListener("abort", stop);
      return { done: true, value: undefined };
    },
    [Symbol.asyncIterator]() {
      return out;
    },
  };
  return out;
}
