import type { Receipt } from "./agent.js";
import type { Decision } from "./notice.js";
import { isReasonCode, type ReasonCode } from "./reason.js";

/**
 * AgentgwError is the base class of every error this package throws on
 * purpose. Messages never contain a credential, a seed, a key's private
 * half or payload bytes: a credential is named by its jti, a payload by
 * its digest.
 */
export class AgentgwError extends Error {
  override name = "AgentgwError";
}

/**
 * DeniedError is a refusal with a code of the reason table: what the
 * gateway puts on its denied stream, and what this SDK reports when input
 * it was handed does not check out (an envelope that does not parse, a
 * seal that does not open). `reason` is what a caller matches on; `detail`
 * is an operator-facing explanation that never contains a secret.
 */
export class DeniedError extends AgentgwError {
  override name = "DeniedError";
  /** The reason code. */
  readonly reason: ReasonCode;
  /** The operator-facing explanation; may be empty. */
  readonly detail: string;

  constructor(reason: ReasonCode, detail = "", options?: ErrorOptions) {
    super(detail === "" ? reason : `${reason}: ${detail}`, options);
    this.reason = reason;
    this.detail = detail;
  }
}

/** Options of a VerificationError. */
export interface VerificationErrorOptions extends ErrorOptions {
  /** See VerificationError.unknownKey. Absent: false. */
  unknownKey?: boolean;
}

/**
 * VerificationError is a DeniedError raised by a consumer-side check: a
 * capability delivery, a decision token or a reply that does not verify.
 * A Consumer terminates such a message with `reason` as the term reason
 * (or hands it back: see Consumer and ConsumerConfig.handBackUnknownKeys).
 */
export class VerificationError extends DeniedError {
  override name = "VerificationError";
  /**
   * Whether the refusal is only for want of a key the verifier is
   * configured with (the Go SDK marks the same refusals
   * client.ErrUnknownKey). It is set on any
   * refusal of a decision token whose issuer is not one of the trusted
   * gateways (checked before its signature: decision_token_invalid),
   * wherever verifyDecision checks it: a capability delivery, an
   * approval request, a reply, a notice. It is also set on the three
   * re-sealed-payload refusals of a delivery: the payload comes from a
   * curve key outside gatewayXKeys, arrives at a consumer without a
   * curve key, or does not open with the consumer's curve key (its bytes
   * bound by the verified token, though not sealed_from: seal_broken). The reason code is the
   * same as without it. False for every other refusal. Only the Consumer
   * and the Approver act on it (handBackUnknownKeys); elsewhere (an
   * agent's onReject) it is information only.
   */
  readonly unknownKey: boolean;

  constructor(reason: ReasonCode, detail = "", options?: VerificationErrorOptions) {
    super(reason, detail, options);
    this.unknownKey = options?.unknownKey ?? false;
  }
}

/** ConfigError: a config, key or credential is unusable. */
export class ConfigError extends AgentgwError {
  override name = "ConfigError";
}

/** InvalidRequestError: a request (or an approval answer) cannot be sent as it is. */
export class InvalidRequestError extends AgentgwError {
  override name = "InvalidRequestError";
}

/**
 * UnavailableError: no stream acknowledged the message within maxAttempts
 * attempts (timeouts, no responders). The last cause is attached.
 */
export class UnavailableError extends AgentgwError {
  override name = "UnavailableError";
}

/**
 * CollisionError: every fresh message id was already in the ingress
 * stream's duplicate window (maxReissues + 1 times in a row).
 */
export class CollisionError extends AgentgwError {
  override name = "CollisionError";
}

/**
 * PublishError: JetStream refused the message (an API error such as a
 * full stream) or the connection is closed. The cause is attached.
 */
export class PublishError extends AgentgwError {
  override name = "PublishError";
}

/**
 * NoReplyError: no verified reply arrived in time. The request may be
 * held for approval, not answered, or denied by a gateway that sends no
 * decision notices (notify_senders off; see the denied stream). A denial
 * told by a verified notice is a MessageDeniedError instead.
 */
export class NoReplyError extends AgentgwError {
  override name = "NoReplyError";
  /** The message id of the request that got no reply. */
  readonly requestId: string;
  /** The request's receipt: it was sent and acknowledged. */
  receipt?: Receipt;
  constructor(requestId: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.requestId = requestId;
  }
}

/**
 * NoDecisionError: no verified decision notice arrived in time. The
 * gateway may be down or behind, or run with notify_senders off; the
 * message may still be decided.
 */
export class NoDecisionError extends AgentgwError {
  override name = "NoDecisionError";
  /** The message id of the envelope that got no notice. */
  readonly messageId: string;
  /** The envelope's receipt, when sendAndDecide sent it. */
  receipt?: Receipt;
  constructor(messageId: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.messageId = messageId;
  }
}

/**
 * MessageDeniedError: the gateway denied the envelope, by its decision
 * notice. `reason` is the code and only that (the policy that decided is
 * for operators); `decision` is the verified notice.
 */
export class MessageDeniedError extends DeniedError {
  override name = "MessageDeniedError";
  /** The message id of the denied envelope. */
  readonly messageId: string;
  readonly decision: Decision;
  /** The envelope's receipt, when sendAndDecide or sendAndWait sent it. */
  receipt?: Receipt;
  constructor(decision: Decision, options?: ErrorOptions) {
    super(decision.reason ?? "internal_error", `message ${decision.messageId} denied by the gateway`, options);
    this.messageId = decision.messageId;
    this.decision = decision;
  }
}

/**
 * StreamError: a stream or consumer could not be used (missing stream,
 * consumer creation refused, consumer deleted while consuming, connection
 * closed for good while consuming). The cause, if any, is attached.
 */
export class StreamError extends AgentgwError {
  override name = "StreamError";
}

/**
 * SelfApprovalError: the approver is the agent that made the request. The
 * gateway would deny the answer (self_approval); the SDK refuses to send it.
 */
export class SelfApprovalError extends AgentgwError {
  override name = "SelfApprovalError";
}

/**
 * reasonOf returns the reason code err carries: undefined for no error,
 * the code of a DeniedError, and internal_error for any other error, so an
 * unexplained failure is a denial, never a pass (fail closed).
 */
export function reasonOf(err: unknown): ReasonCode | undefined {
  if (err === undefined || err === null) {
    return undefined;
  }
  if (err instanceof DeniedError) {
    return err.reason;
  }
  if (isReasonCode(err)) {
    return err;
  }
  return "internal_error";
}

/** deny returns a DeniedError; details must never hold a secret. */
export function deny(reason: ReasonCode, detail = ""): DeniedError {
  return new DeniedError(reason, detail);
}
