// Replies: the gateway's validated, redacted answer to one of an agent's
// requests, sealed to the agent with a decision token addressed to it.
import { inspect } from "node:util";
import { sendNamed, type Agent, type Receipt, type Request, type SendOptions } from "./agent.js";
import { ConfigError, DeniedError, InvalidRequestError, MessageDeniedError, NoReplyError, VerificationError } from "./errors.js";
import { DECISION_HEADER, ROUTE_REPLY, verifyDecision, type DecisionClaims } from "./decision.js";
import { requestRef } from "./envelope.js";
import { digestHex, fromUtf8 } from "./internal/bytes.js";
import { isNotice, MESSAGE_ID_HEADER, verifyNotice, type Decision } from "./notice.js";
import { headersOf } from "./internal/headers.js";
import { verifiedMessages } from "./internal/verified.js";
import { boundedSubscribe } from "./internal/bounded.js";
import { openWaiter } from "./internal/waiter.js";
import { WAIT_SKEW_MS, waitSkewMs } from "./internal/skew.js";
import { reply as replySubject } from "./subjects.js";
import { isPublicKey, type Box } from "./keys.js";
import type { Delivery, HeaderSource } from "./verify.js";

/** Reply headers set by the gateway. */
export const REQUEST_ID_HEADER = "Agentgw-Request-Id";
export const RESPONDER_HEADER = "Agentgw-Responder";
export const SEALED_FROM_HEADER = "Agentgw-Sealed-From";

/** DEFAULT_REPLY_SKEW_MS is the skew tolerated on a reply token's times when skewMs is absent or 0 (30 s). */
export const DEFAULT_REPLY_SKEW_MS = WAIT_SKEW_MS;

/**
 * A Reply is a verified, opened response to one of the agent's requests.
 * payload is the response with the fields the catalog marks sensitive
 * already removed by the gateway. Printed forms show ids only.
 */
export class Reply {
  /**
   * The message id of the request answered, from Agentgw-Request-Id.
   * The decision token binds a reply to the gateway and the agent, not
   * to the request (docs/wire.md, "Responses and replies"): whoever can
   * publish on the agent's reply subject could re-publish a live reply
   * under another request's id. replies() hands out each token once.
   */
  readonly requestId: string;
  /** The public key of the consumer that answered, from Agentgw-Responder (not covered by the token either); "" when that header is not a user key. */
  readonly responder: string;
  /** The response envelope's message id. */
  readonly messageId: string;
  readonly payload: Uint8Array;
  readonly claims: DecisionClaims;

  constructor(v: { requestId: string; responder: string; payload: Uint8Array; claims: DecisionClaims }) {
    this.requestId = v.requestId;
    this.responder = v.responder;
    this.messageId = v.claims.messageId;
    this.payload = v.payload;
    this.claims = v.claims;
  }

  /** The payload as text. */
  string(): string {
    return fromUtf8(this.payload);
  }

  /** The payload decoded as JSON. */
  json<T = unknown>(): T {
    return JSON.parse(this.string()) as T;
  }

  toJSON(): object {
    return { request_id: this.requestId, message_id: this.messageId, responder: this.responder, payload_bytes: this.payload.length };
  }

  toString(): string {
    return `Reply{request_id=${this.requestId} message_id=${this.messageId} responder=${this.responder} payload=${this.payload.length} bytes}`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** Whom to trust for replies and decision notices. */
export interface WaitOptions {
  /** Gateway signing keys (N…) whose reply and notice tokens are accepted. Required. */
  trustedGateways: readonly string[];
  /**
   * Skew tolerated on the iat and exp of reply and notice tokens, in ms.
   * Absent or 0: 30 s (DEFAULT_REPLY_SKEW_MS), as a zero
   * WaitOptions.Skew is in the Go SDK. Negative or not a finite number:
   * ConfigError.
   */
  skewMs?: number;
  /** Gives up waiting (NoReplyError) when it aborts. */
  signal?: AbortSignal;
  /**
   * Called by sendAndWait with each verified decision notice of the
   * request (delivered, held for approval or denied) before it acts on
   * it: for example to learn that the request is held for approval. It is
   * called synchronously from the wait and must not block long; what it
   * throws rejects sendAndWait. replies() does not call it.
   */
  onDecision?: (d: Decision) => void;
  /**
   * Called by sendAndWait with each decision notice of the request and
   * each reply to it that does not verify, before it is skipped (and by
   * replies() with each reply that does not verify); its unknownKey is
   * set when the token's gateway key is not among trustedGateways: an
   * agent left out of a rotation of the gateway's key learns so here,
   * where its wait would otherwise only time out. The error is not
   * authenticated: whoever can publish on the reply subject can make
   * one, naming any key, so never trust a key on its word. Called
   * synchronously; what it throws rejects sendAndWait.
   */
  onReject?: (err: VerificationError) => void;
}

/** What verifyReply needs of an agent: its tenant, its keys and its clock. */
export interface ReplyReceiver {
  /** The agent's public user key: the reply token's audience and subject. */
  readonly publicKey: string;
  /** The agent's tenant: the reply token's tenant. */
  readonly tenant: string;
  /** The gateway's curve key the reply must be sealed from. */
  readonly gatewayXKey: string;
  /** More gateway curve keys a reply may be sealed from (a rotation). */
  readonly replyXKeys?: readonly string[];
  /** The agent's box: replies are sealed to its curve key. */
  readonly box: Box | undefined;
  now(): Date;
}

/**
 * verifyReply checks a message from the agent's reply subject: its
 * decision token (signed by a trusted gateway, a reply decision to this
 * agent, sub and aud its key and tenant its tenant, of a response
 * (scope respond:<target>) to target when given, bound to these exact
 * bytes) and its seal (from the gateway's curve key, to the agent's),
 * and opens it. m is the message as received (its header values are
 * read as received, see headersOf), or its data with a Map of exact
 * header values. The Agentgw-Request-Id and Agentgw-Responder headers
 * are not signed: a reply to another of the agent's requests can carry
 * any request id, so a caller that correlates by it passes the
 * request's target, as sendAndWait does. It throws a
 * VerificationError, or a ConfigError for a negative or non-finite
 * opt.skewMs or a receiver without a tenant.
 */
export function verifyReply(
  agent: ReplyReceiver,
  m: { data: Uint8Array; headers?: HeaderSource | undefined },
  opt: Omit<WaitOptions, "signal">,
  target?: string,
): Reply {
  if (typeof agent.tenant !== "string" || agent.tenant === "") {
    // A receiver without a tenant: say so, rather than refuse every
    // reply as bound to another tenant.
    throw new ConfigError("invalid config: the reply receiver has no tenant");
  }
  const box = agent.box;
  if (box === undefined) {
    throw new ConfigError("replies are sealed to the agent: configure its curve key");
  }
  const hs = headersOf(m);
  const h = (k: string): string => hs?.get(k) ?? "";
  const claims = verifyDecision(h(DECISION_HEADER), {
    trustedGateways: opt.trustedGateways,
    audience: agent.publicKey,
    now: agent.now(),
    skewMs: waitSkewMs(opt.skewMs),
  });
  if (claims.route !== ROUTE_REPLY || claims.payloadDigest !== digestHex(m.data)) {
    throw new VerificationError("decision_token_binding", "reply token does not bind these bytes");
  }
  const scopeOK = target === undefined ? claims.scope.startsWith("respond:") : claims.scope === `respond:${target}`;
  if (!scopeOK || claims.tenant !== agent.tenant || claims.subject !== agent.publicKey) {
    throw new VerificationError(
      "decision_token_binding",
      `jti ${claims.id}: reply token is not of a response${target === undefined ? "" : ` to ${target}`} by this agent's tenant and key`,
    );
  }
  const from = h(SEALED_FROM_HEADER);
  if (from === "" || (from !== agent.gatewayXKey && !(agent.replyXKeys ?? []).includes(from))) {
    throw new VerificationError("seal_mismatch", "reply not sealed by the gateway's curve key");
  }
  let payload: Uint8Array;
  try {
    payload = box.open(m.data, from);
  } catch (err) {
    if (err instanceof DeniedError) {
      throw new VerificationError(err.reason, err.detail);
    }
    throw err;
  }
  // The header is unsigned: kept only when it is what the gateway writes,
  // a user key, so no other text reaches what prints it.
  const responder = h(RESPONDER_HEADER);
  return new Reply({ requestId: h(REQUEST_ID_HEADER), responder: isPublicKey(responder, "U") ? responder : "", payload, claims });
}

function checkWait(agent: Agent, opt: WaitOptions): string {
  if (agent.box === undefined) {
    throw new ConfigError("replies are sealed to the agent: configure its curve key");
  }
  if (!opt.trustedGateways || opt.trustedGateways.length === 0) {
    throw new ConfigError("no trusted gateway keys for replies");
  }
  waitSkewMs(opt.skewMs);
  return replySubject(agent.tenant, agent.publicKey);
}

/**
 * replies yields every verified reply to this agent, on
 * agentgw.reply.<tenant>.<agent>, until the signal aborts. Decision
 * notices, which come on the same subject marked Agentgw-Notice, are
 * skipped; other messages that do not verify are skipped (passed to
 * onReject when given); a reply yielded lately (its token id among the
 * last 4096) is skipped, as the gateway re-emits one on a redelivery.
 * The subscription is made before the first value is awaited.
 */
export function replies(agent: Agent, opt: WaitOptions): AsyncIterableIterator<Reply> {
  const sub = boundedSubscribe(agent.connection, checkWait(agent, opt));
  // Decision notices come on the same subject: decisions() reads those.
  return verifiedMessages(sub, opt.signal, (m) => !isNotice(m), (m) => verifyReply(agent, m, opt), opt.onReject);
}

/**
 * sendAndWait sends req and waits, until the signal aborts, for the reply
 * to it on agentgw.reply.<tenant>.<agent>, correlated by message id. The
 * reply's decision token must be signed by a trusted gateway, addressed
 * to this agent (sub and aud its key, tenant its tenant), of a response
 * to req.target (scope respond:<target>) and bound to the sealed bytes,
 * which must open with the agent's curve key from the gateway's curve
 * key. The request id is an unsigned header: a genuine reply to another
 * request of this agent to the same target, still fresh, can be taken
 * for this one's by whoever can publish on the reply subject; one to
 * another target cannot.
 *
 * The calls of one agent in flight (sendAndWait and sendAndDecide) share
 * one subscription to its reply subject, made before the first of them
 * publishes and ended when the last is done; each reply and notice is
 * handed to the call of the envelope it names (a reply's
 * Agentgw-Request-Id, a notice's Agentgw-Message-Id), and to no other.
 * The call's waiter is registered before its envelope is published, and
 * follows a re-issue under a new message id.
 *
 * The gateway's decision notices of the request come on the same
 * subject; each is verified as DecisionWatch verifies it (a trusted
 * gateway's token, route notice, addressed to this agent, bound to the
 * notice's bytes, naming this request) and passed to opt.onDecision. A
 * verified denial of the request ends the wait: it rejects with a
 * MessageDeniedError (its reason code) that carries the receipt. A denial
 * replay_detected or replay_refused is the gateway's answer to a copy of
 * the request (its bytes re-published, or an operator replay), which
 * carries the request's message id: it is skipped, neither handed to
 * onDecision nor ending the wait; so is, once the request was delivered
 * or held, a denial message_expired, credential_expired or
 * ledger_incomplete (a copy sent late, or after the journal was lost). A
 * notice that the request was delivered or held for approval does not
 * end it: the reply does. A notice or reply of the request that does
 * not verify is skipped, after opt.onReject is handed its error; anything
 * else handed to the call is ignored. Without a reply or a denial in
 * time it rejects with a NoReplyError that carries the receipt, as it
 * does whenever the gateway sends no notices (notify_senders off), and
 * when the connection closes.
 */
export async function sendAndWait(agent: Agent, req: Request, opt: WaitOptions & SendOptions): Promise<{ receipt: Receipt; reply: Reply }> {
  checkWait(agent, opt);
  if (req.noNotice === true) {
    throw new InvalidRequestError("invalid request: noNotice: sendAndWait learns a denial from its notice");
  }
  // Wait before sending: the reply cannot arrive unseen.
  const w = await openWaiter(agent);
  try {
    const receipt = await sendNamed(agent, req, opt.signal ? { signal: opt.signal } : {}, (id) => w.expect(id));
    let decided = false; // the request was delivered or held
    for (;;) {
      const m = await w.next(opt.signal);
      if (m === undefined) {
        break; // the signal aborted, or the connection closed
      }
      const d = noticeOf(agent, m, receipt.messageId, opt);
      if (d !== undefined) {
        if (
          d.route === "deny" &&
          (d.reason === "replay_detected" ||
            d.reason === "replay_refused" ||
            (decided && (d.reason === "message_expired" || d.reason === "credential_expired" || d.reason === "ledger_incomplete")))
        ) {
          // The gateway's answer to a copy of the request (one
          // re-published by whoever holds its bytes, or an operator
          // replay of it), which carries its message id: not the
          // request's own outcome. Once the request was delivered or
          // held, a copy sent after it went stale or its credential
          // expired is refused so; the request itself never is.
          continue;
        }
        if (d.route === "allow" || d.route === "approval") {
          decided = true;
        }
        opt.onDecision?.(d);
        if (d.route === "deny" && d.answers === undefined) {
          const err = new MessageDeniedError(d);
          err.receipt = receipt;
          throw err;
        }
        continue;
      }
      if ((headersOf(m)?.get(REQUEST_ID_HEADER) ?? "") !== receipt.messageId) {
        continue;
      }
      try {
        return { receipt, reply: verifyReply(agent, m, opt, req.target) };
      } catch (err) {
        if (err instanceof VerificationError) {
          opt.onReject?.(err);
          continue; // not from a trusted gateway: not our reply
        }
        throw err;
      }
    }
    const err = new NoReplyError(receipt.messageId, `no reply to ${receipt.messageId}`, { cause: opt.signal?.reason });
    err.receipt = receipt;
    throw err;
  } finally {
    w.close();
  }
}

/**
 * noticeOf returns the Decision of m when m is a verified decision notice
 * of the envelope messageId: marked as a notice, its Agentgw-Message-Id
 * messageId, and verifyNotice's checks passed for that envelope. Any
 * other message, from a trusted gateway or not, is undefined; a marked
 * notice of messageId that does not verify goes to opt.onReject first.
 */
function noticeOf(agent: Agent, m: { data: Uint8Array; headers?: HeaderSource | undefined }, messageId: string, opt: WaitOptions): Decision | undefined {
  if (!isNotice(m) || (headersOf(m)?.get(MESSAGE_ID_HEADER) ?? "") !== messageId) {
    return undefined;
  }
  let d: Decision;
  try {
    d = verifyNotice(agent, m, opt);
  } catch (err) {
    if (err instanceof VerificationError) {
      opt.onReject?.(err);
      return undefined; // not from a trusted gateway: not our notice
    }
    throw err;
  }
  return d.messageId === messageId ? d : undefined;
}

/**
 * respond answers a delivered request as agent (a capability consumer
 * whose credential holds respond:<target>): a respond envelope whose
 * target names the request by its agent and message id (requestRef), in
 * the request's trace, the answer sealed to the gateway from agent's
 * curve key. The gateway takes the answer only from the consumer the
 * request was delivered to: agent's curve key must be the target's
 * consumer_xkey (the consumer's curve), or it is denied wrong_responder.
 * answer is JSON bytes or text, or a value sent as JSON.
 */
export function respond(agent: Agent, d: Delivery, answer: Uint8Array | string | object, opts: SendOptions = {}): Promise<Receipt> {
  if (d === undefined || d === null || d.envelope === undefined) {
    return Promise.reject(new InvalidRequestError("invalid request: no delivery to answer"));
  }
  // The default idempotency key (the message id): a corrected answer
  // after an invalid one is a new request, not a conflict.
  return agent.send({ capability: "respond", target: requestRef(d.agent, d.envelope.messageId), sealed: answer, traceId: d.envelope.traceId }, opts);
}
