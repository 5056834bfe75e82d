// Reading a gateway stream through a pull consumer: created and owned by
// the reader, or pre-created by an administrator and only bound.
import { AckPolicy, DeliverPolicy, type Consumer as JsConsumer, type ConsumerConfig, type ConsumerMessages, type JetStreamClient, type JsMsg } from "@nats-io/jetstream";
import { jetstream } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { ConfigError, StreamError } from "./errors.js";
import { TENANT_API_PREFIX } from "./subjects.js";

/**
 * tenantJetStream returns a JetStream client for a tenant user of the
 * least-privilege layout: API requests go to TENANT_API_PREFIX, where the
 * tenant account imports them. Use it with bind: true.
 */
export function tenantJetStream(nc: NatsConnection): JetStreamClient {
  return jetstream(nc, { apiPrefix: TENANT_API_PREFIX });
}

/** How to reach the pull consumer a reader reads. */
export interface PullSpec {
  stream: string;
  /** Durable name; empty for an ephemeral consumer. */
  durable: string;
  /** Use the existing durable as it is (it must exist). */
  bind: boolean;
  description: string;
  filters: string[];
  ackWaitMs: number;
  maxDeliver: number;
}

/**
 * openConsumer creates or updates the pull consumer of spec, or, with
 * bind, looks up the durable an administrator created: under
 * least-privilege permissions a consumer or approver may read its own
 * durable but not create or change consumers. Errors are StreamErrors.
 */
export async function openConsumer(js: JetStreamClient, spec: PullSpec): Promise<JsConsumer> {
  try {
    if (spec.bind) {
      if (spec.durable === "") {
        throw new ConfigError("invalid config: binding needs a durable name");
      }
      return await js.consumers.get(spec.stream, spec.durable);
    }
    const cfg: Partial<ConsumerConfig> = {
      description: spec.description,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      max_deliver: spec.maxDeliver > 0 ? spec.maxDeliver : -1,
    };
    if (spec.durable !== "") {
      cfg.durable_name = spec.durable;
    }
    if (spec.ackWaitMs > 0) {
      cfg.ack_wait = spec.ackWaitMs * 1_000_000;
    }
    // A single filter goes in filter_subject, so the request uses the
    // filtered create subject that permissions can pin.
    if (spec.filters.length === 1) {
      cfg.filter_subject = spec.filters[0]!;
    } else {
      cfg.filter_subjects = spec.filters;
    }
    const jsm = await js.jetstreamManager();
    const info = await jsm.consumers.add(spec.stream, cfg);
    return await js.consumers.get(spec.stream, info.name);
  } catch (err) {
    if (err instanceof ConfigError) {
      throw err;
    }
    throw new StreamError(`stream: consumer on ${spec.stream}: ${(err as Error)?.message ?? err}`, { cause: err });
  }
}

/**
 * pull yields the messages of cons, one at a time, until signal aborts,
 * the consumer disappears or the connection closes for good (both a
 * StreamError). Each pull request asks for up to maxMessages: a reader
 * that handles several messages at once asks for at least as many, so
 * that the buffer keeps every place filled. On abort the subscription is
 * stopped rather than drained: messages buffered but not yet handled are
 * left unacknowledged and come back after AckWait, instead of being
 * handed to a handler that is shutting down.
 */
export async function* pull(cons: JsConsumer, stream: string, signal: AbortSignal | undefined, maxMessages = 16): AsyncGenerator<JsMsg> {
  // Aborted before or while the consumer was opened: nothing is read,
  // and the reader ends as on any abort (consume resolves).
  if (signal?.aborted) {
    return;
  }
  let msgs: ConsumerMessages;
  try {
    msgs = await cons.consume({ max_messages: maxMessages });
  } catch (err) {
    if (signal?.aborted) {
      return;
    }
    throw new StreamError(`stream: consume ${stream}: ${(err as Error)?.message ?? err}`, { cause: err });
  }
  if (signal?.aborted) {
    msgs.stop();
    return;
  }
  let gone: Error | undefined;
  const stop = (): void => {
    msgs.stop();
  };
  signal?.addEventListener("abort", stop, { once: true });
  void (async () => {
    for await (const s of msgs.status()) {
      if (s.type === "consumer_deleted" || s.type === "consumer_not_found" || s.type === "stream_not_found") {
        gone = new StreamError(`stream: consumer on ${stream}: ${s.type}`);
        msgs.stop();
        return;
      }
    }
  })().catch(() => {});
  const it = msgs[Symbol.asyncIterator]();
  try {
    for (;;) {
      let r: IteratorResult<JsMsg>;
      try {
        r = await it.next();
      } catch (err) {
        // nats.js stops the messages with an error (the subscription
        // refused, a permissions violation): nothing more will come.
        if (signal?.aborted) {
          return;
        }
        throw gone ?? new StreamError(`stream: consumer on ${stream}: ${(err as Error)?.message ?? err}`, { cause: err });
      }
      if (r.done || signal?.aborted) {
        break;
      }
      yield r.value;
    }
  } finally {
    signal?.removeEventListener("abort", stop);
    msgs.stop();
  }
  if (signal?.aborted) {
    return;
  }
  // The messages end only when stopped: by pull itself on abort or when
  // the consumer is gone, or by nats.js when the connection closes (it
  // then ends them quietly, and reports nothing in status) or drains.
  throw gone ?? new StreamError(`stream: consumer on ${stream}: the connection closed`);
}
