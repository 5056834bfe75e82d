// The waits of an Agent's calls in flight: one subscription to the
// agent's reply subject, agentgw.reply.<tenant>.<agent>, shared by every
// sendAndWait and sendAndDecide in flight (the Go SDK's client/waiter.go).
// Each message is handed to the waiter of the envelope it names (a
// notice's Agentgw-Message-Id, a reply's Agentgw-Request-Id) and to no
// other, so n calls in flight cost one delivery of each reply and notice,
// not n. A message naming no waiting envelope is dropped: no call in
// flight awaits it. What a waiter is handed is still only a candidate:
// the call verifies it (a trusted gateway's token, addressed to the
// agent, bound to the bytes) exactly as it verifies every message on the
// subject.
//
// The subscription is opened when the first waiter registers and
// unsubscribed when the last leaves. A waiter registers, and the server
// has the subscription (a flush after subscribing), before its envelope
// is published, so its reply cannot arrive unseen. When the subscription
// ends (its connection closed, or the server refused it) every waiter of
// it ends. A wait aborted without having been handed anything retires
// the subscription it waited on (a server at its max_subscriptions
// refuses a subscription with an -ERR, and nats.js keeps it as if it
// were valid): later waits open a new one, and the old one is
// unsubscribed when its last waiter leaves. A waiter holds at most
// MAX_QUEUED unread messages; more naming its envelope are dropped. Not
// exported from the package.
import type { Msg, NatsConnection, Subscription } from "@nats-io/transport-node";
import { headersOf } from "./headers.js";
import { isNotice, MESSAGE_ID_HEADER } from "../notice.js";
import { REQUEST_ID_HEADER } from "../reply.js";
import { reply as replySubject } from "../subjects.js";

/** What a waiter needs of an agent: its connection and its reply subject's tokens. */
export interface WaitingAgent {
  readonly connection: NatsConnection;
  readonly tenant: string;
  readonly publicKey: string;
}

/** The unread messages a waiter holds at most, as the Go SDK's maxQueued. */
export const MAX_QUEUED = 1024;

/** The shared subscription of each agent that has waiters. */
const current = new WeakMap<object, Shared>();

/** One subscription to an agent's reply subject and the waiters it serves. */
class Shared {
  readonly sub: Subscription;
  /** Resolves once the server has the subscription. */
  readonly ready: Promise<void>;
  readonly waiters = new Set<Waiter>();
  readonly byId = new Map<string, Waiter[]>();
  /** Set when the subscription ended; error when it ended with one. */
  ended = false;
  /** Set when a wait ended with nothing handed to it: new waits open a new subscription. */
  retired = false;
  error: unknown;

  constructor(
    readonly agent: WaitingAgent,
    subject: string,
  ) {
    const nc = agent.connection;
    this.sub = nc.subscribe(subject);
    this.ready = nc.flush();
    // Each waiter awaits ready and sees its failure; this copy only
    // keeps an unawaited rejection from being reported as unhandled.
    this.ready.catch(() => {});
    void this.#pump();
  }

  /** pump hands each message to its waiters until the subscription ends, then ends them. */
  async #pump(): Promise<void> {
    let error: unknown;
    try {
      for await (const m of this.sub) {
        this.deliver(m);
      }
    } catch (err) {
      error = err;
    }
    this.ended = true;
    this.error = error;
    if (current.get(this.agent) === this) {
      current.delete(this.agent);
    }
    for (const w of this.waiters) {
      w.end();
    }
  }

  /** deliver queues m for the waiters of the envelope it names. It never blocks. */
  deliver(m: Msg): void {
    const h = headersOf(m);
    const id = (isNotice(m) ? h?.get(MESSAGE_ID_HEADER) : h?.get(REQUEST_ID_HEADER)) ?? "";
    if (id === "") {
      return;
    }
    for (const w of this.byId.get(id) ?? []) {
      w.take(m);
    }
  }

  /** leave removes w, and unsubscribes when it was the last waiter. */
  leave(w: Waiter): void {
    this.waiters.delete(w);
    if (this.waiters.size === 0) {
      if (current.get(this.agent) === this) {
        current.delete(this.agent);
      }
      if (!this.ended) {
        this.sub.unsubscribe();
      }
    }
  }
}

/**
 * A Waiter receives the messages on its agent's reply subject that name
 * its envelope's message id, in the order the subscription received
 * them. One next() at a time.
 */
export class Waiter {
  readonly #shared: Shared;
  /** The message id this waiter waits for; "" before the first. */
  #id = "";
  #queue: Msg[] = [];
  #wake: ((m: Msg | undefined) => void) | undefined;
  #closed = false;
  /** A message was handed to this waiter. */
  #handed = false;

  constructor(shared: Shared) {
    this.#shared = shared;
  }

  /**
   * expect makes id the message id this waiter waits for, in place of any
   * earlier one: send re-issues a request whose id another publisher took
   * under a new id, and the taken id's messages, those queued included,
   * are not this request's.
   */
  expect(id: string): void {
    if (this.#closed) {
      return;
    }
    this.#forget();
    this.#queue = [];
    this.#id = id;
    const ws = this.#shared.byId.get(id);
    if (ws === undefined) {
      this.#shared.byId.set(id, [this]);
    } else {
      ws.push(this);
    }
  }

  /**
   * next resolves with the next message naming this waiter's envelope,
   * or with undefined once the wait is over: signal aborted, the waiter
   * closed, or the subscription ended with its connection. It rejects
   * with the subscription's error when the server refused it. Messages
   * queued before the subscription ended are handed out first; none is
   * once the signal has aborted (a reply queued while the caller was
   * busy is not taken past its wait, nor can a stream of them hold it).
   */
  next(signal?: AbortSignal): Promise<Msg | undefined> {
    if (signal?.aborted) {
      this.#retireIfUnhanded();
      return Promise.resolve(undefined);
    }
    const m = this.#queue.shift();
    if (m !== undefined) {
      return Promise.resolve(m);
    }
    const shared = this.#shared;
    if (shared.ended && shared.error !== undefined && !this.#closed) {
      return Promise.reject(shared.error);
    }
    if (signal?.aborted) {
      this.#retireIfUnhanded();
    }
    if (this.#closed || shared.ended || signal?.aborted) {
      return Promise.resolve(undefined);
    }
    return new Promise<Msg | undefined>((resolve, reject) => {
      const onAbort = (): void => {
        this.#retireIfUnhanded();
        settle(undefined);
      };
      const settle = (v: Msg | undefined): void => {
        this.#wake = undefined;
        signal?.removeEventListener("abort", onAbort);
        if (v === undefined && shared.ended && shared.error !== undefined && !this.#closed) {
          reject(shared.error);
        } else {
          resolve(v);
        }
      };
      this.#wake = settle;
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** take hands m to this waiter: to a pending next, or to the queue while it holds fewer than MAX_QUEUED. */
  take(m: Msg): void {
    if (this.#wake !== undefined) {
      this.#handed = true;
      this.#wake(m);
    } else if (this.#queue.length < MAX_QUEUED) {
      this.#handed = true;
      this.#queue.push(m);
    }
  }

  /** retireIfUnhanded retires the subscription when this wait ends with nothing handed to it. */
  #retireIfUnhanded(): void {
    if (!this.#handed) {
      this.#shared.retired = true;
    }
  }

  /** end ends a pending next: the subscription ended. */
  end(): void {
    this.#wake?.(undefined);
  }

  /** close ends the wait, and the subscription when this was its last waiter. Closing twice is harmless. */
  close(): void {
    if (this.#closed) {
      return;
    }
    this.#closed = true;
    this.#forget();
    this.#queue = [];
    this.#wake?.(undefined);
    this.#shared.leave(this);
  }

  /** forget removes this waiter from its id's waiters. */
  #forget(): void {
    if (this.#id === "") {
      return;
    }
    const byId = this.#shared.byId;
    const ws = (byId.get(this.#id) ?? []).filter((w) => w !== this);
    if (ws.length === 0) {
      byId.delete(this.#id);
    } else {
      byId.set(this.#id, ws);
    }
    this.#id = "";
  }
}

/**
 * openWaiter registers a waiter for a message of agent's not yet
 * published, opening the agent's subscription to its reply subject if
 * no other waiter has, and resolves once the server has that
 * subscription. The caller names the envelope with expect before
 * publishing it and closes the waiter when done. A closed connection
 * refuses a new subscription (it throws).
 */
export async function openWaiter(agent: WaitingAgent): Promise<Waiter> {
  let shared = current.get(agent);
  if (shared === undefined || shared.ended || shared.retired) {
    shared = new Shared(agent, replySubject(agent.tenant, agent.publicKey));
    current.set(agent, shared);
  }
  const w = new Waiter(shared);
  shared.waiters.add(w);
  try {
    await shared.ready;
  } catch (err) {
    w.close();
    throw err;
  }
  return w;
}
