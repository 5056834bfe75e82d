import type { Msg, Subscription } from "@nats-io/transport-node";
import { VerificationError } from "../errors.js";

/**
 * verifiedMessages iterates over sub's messages that keep selects, each
 * passed through verify, until signal aborts or the subscription ends. A
 * message verify refuses with a VerificationError goes to onReject and
 * is skipped; any other error ends the iteration.
 */
export function verifiedMessages<T>(
  sub: Subscription,
  signal: AbortSignal | undefined,
  keep: (m: Msg) => boolean,
  verify: (m: Msg) => T,
  onReject?: (err: VerificationError) => void,
): AsyncIterableIterator<T> {
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
          return { done: false, value: verify(r.value) };
        } catch (err) {
          if (err instanceof VerificationError) {
            onReject?.(err);
            continue;
          }
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
