import type { Msg, NatsConnection } from "@nats-io/transport-node";
import { MAX_QUEUED } from "./waiter.js";

/**
 * MsgSource is what the SDK's readers of the reply subject take from a
 * subscription: its messages, in order, and a way to end it.
 */
export interface MsgSource {
  [Symbol.asyncIterator](): AsyncIterator<Msg>;
  unsubscribe(): void;
}

/**
 * boundedSubscribe subscribes to subject and holds at most max unread
 * messages (MAX_QUEUED by default, as a wait holds): more that arrive
 * while the reader is busy are dropped, so that whoever can publish on
 * the subject cannot grow the reader's memory without bound. A nats.js
 * subscription read by iteration has no such limit. The iteration ends
 * once the subscription does (unsubscribe, or the connection closed),
 * after the messages already held.
 */
export function boundedSubscribe(nc: NatsConnection, subject: string, max = MAX_QUEUED): MsgSource {
  const queue: Msg[] = [];
  let ended = false;
  let waiting: (() => void)[] = [];
  const notify = (): void => {
    const ws = waiting;
    waiting = [];
    for (const w of ws) {
      w();
    }
  };
  const sub = nc.subscribe(subject, {
    callback: (err, m) => {
      if (err === null && queue.length < max) {
        queue.push(m);
        notify();
      }
    },
  });
  void sub.closed.then(
    () => {
      ended = true;
      notify();
    },
    () => {
      ended = true;
      notify();
    },
  );
  const it: AsyncIterator<Msg> = {
    async next(): Promise<IteratorResult<Msg>> {
      for (;;) {
        const m = queue.shift();
        if (m !== undefined) {
          return { done: false, value: m };
        }
        if (ended || sub.isClosed()) {
          return { done: true, value: undefined };
        }
        await new Promise<void>((r) => waiting.push(r));
      }
    },
    async return(): Promise<IteratorResult<Msg>> {
      sub.unsubscribe();
      return { done: true, value: undefined };
    },
  };
  return {
    [Symbol.asyncIterator]: () => it,
    unsubscribe: () => sub.unsubscribe(),
  };
}
