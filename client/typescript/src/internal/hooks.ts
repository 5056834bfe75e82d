// Test seams of an Agent: the message id source and the publish call, the
// way the Go SDK's tests replace its newID and pubFn. Not exported from
// the package; tests reach them through this module.
import type { MsgHdrs } from "@nats-io/transport-node";
import type { PubAck } from "@nats-io/jetstream";

/** One publish with its options; real is the agent's own publish. */
export type PublishFn = (
  subject: string,
  data: Uint8Array,
  opts: { headers: MsgHdrs; msgID: string; timeout: number },
  real?: PublishFn,
) => Promise<PubAck>;

export interface AgentHooks {
  newId?: () => string;
  /** Wraps each publish attempt; call real to publish for real. */
  publish?: PublishFn;
}

const hooks = new WeakMap<object, AgentHooks>();

/** setHooks installs test seams on an agent. */
export function setHooks(agent: object, h: AgentHooks): void {
  hooks.set(agent, h);
}

/** hooksOf returns the seams of an agent, if any. */
export function hooksOf(agent: object): AgentHooks | undefined {
  return hooks.get(agent);
}

const quiet = new WeakSet<object>();

/**
 * setNoKeepAlive turns a consumer's in-progress word off: tests of a
 * redelivery that reaches a running handler, as one does when that word
 * is lost.
 */
export function setNoKeepAlive(consumer: object): void {
  quiet.add(consumer);
}

/** keepAliveOff reports whether setNoKeepAlive was called for consumer. */
export function keepAliveOff(consumer: object): boolean {
  return quiet.has(consumer);
}
