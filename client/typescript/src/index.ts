/**
 * @agentgw/client: the TypeScript SDK of agentgw, for the three kinds of
 * users that are not the gateway itself.
 *
 *  - {@link Agent} builds wire-v1 envelopes, signs them with the agent's
 *    nkey, seals payloads to the gateway's curve key and publishes them to
 *    the agent's ingress subject, retrying lost acknowledgements under the
 *    same message id and re-issuing under a new one when a first attempt
 *    collides with another publisher's id. {@link Agent.sendAndWait} waits
 *    for the verified reply (a verified denial ends it),
 *    {@link Agent.sendAndDecide} for the gateway's verified decision
 *    notice (delivered, held or denied).
 *  - {@link Consumer} reads capability subjects and hands out only
 *    messages whose gateway decision token verifies, once each; everything
 *    else is terminated with a typed reason. {@link verifyDelivery} is the
 *    same check as a pure function.
 *  - {@link Approver} lists held requests whose gateway decision token
 *    verifies ({@link verifyRequest}) and answers them, bound to the held
 *    body digest and policy version.
 *
 * Every refusal is a {@link DeniedError} (a {@link VerificationError} on
 * the consumer side) whose `reason` is a code of the reason table
 * ({@link REASONS}). No error, string form or log line of this package
 * contains a credential, a seed or payload bytes; the key pairs and
 * Creds it reads print their public key and the credential's jti only.
 *
 * The package talks to NATS only through the connections it is given
 * (@nats-io/transport-node, @nats-io/jetstream) and depends on the wire
 * format alone.
 */
export {
  Agent,
  CREDENTIAL_HEADER,
  DEFAULT_ATTEMPT_TIMEOUT_MS,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_MAX_REISSUES,
  DEFAULT_RETRY_WAIT_MS,
  MSG_ID_HEADER,
  NOTIFY_HEADER,
  NOTIFY_NONE,
  SIGNATURE_HEADER,
  TRACEPARENT_HEADER,
  type AgentConfig,
  type Receipt,
  type Request,
  type SendOptions,
} from "./agent.js";
export {
  Approver,
  answerKey,
  decodeRequest,
  DEFAULT_APPROVER_SKEW_MS,
  DENY,
  GRANT,
  requestExpired,
  verifyRequest,
  type ApprovalDecision,
  type ApprovalRequest,
  type ApproverConfig,
  type HeldRequest,
  type RequestVerifyOptions,
} from "./approver.js";
export { Consumer, DEFAULT_MAX_TOKENS, MAX_CONCURRENCY, ReceivedDelivery, type ConsumeOptions, type ConsumerConfig } from "./consumer.js";
export { tenantJetStream } from "./consume.js";
export {
  MAX_TOKEN_SIZE,
  parseCreds,
  parseJWT,
  parseSeedFile,
  peekCredential,
  readCreds,
  readCurveSeed,
  readUserSeed,
  userConnectOptions,
  type CredentialClaims,
  type Creds,
  type ParsedJWT,
  type SeedRole,
  type UserConnectOptions,
} from "./creds.js";
export {
  checkBinding,
  DECISION_HEADER,
  DECISION_TYPE,
  MAX_BATCH,
  ROUTE_ALLOW,
  ROUTE_APPROVAL,
  ROUTE_NOTICE,
  ROUTE_REPLY,
  verifyDecision,
  type Actor,
  type DecisionClaims,
  type DecisionVerifyOptions,
} from "./decision.js";
export { DELIVERY_VERSION, parseDelivery, type DeliveryDoc } from "./delivery.js";
export {
  buildEnvelope,
  CAPABILITIES,
  checkFreshness,
  DEFAULT_LIMITS,
  DEFAULT_MAX_TTL_MS,
  DEFAULT_SKEW_MS,
  DEFAULT_TTL_MS,
  digest,
  isCapability,
  newMessageId,
  newTraceId,
  parseEnvelope,
  parseRequestRef,
  payloadDigest,
  requestRef,
  sealedBytes,
  SIGNING_CONTEXT,
  signEnvelope,
  signingInput,
  verifyEnvelope,
  VERSION,
  type Capability,
  type Envelope,
  type EnvelopeFields,
  type Limits,
  type Payload,
} from "./envelope.js";
export {
  AgentgwError,
  CollisionError,
  ConfigError,
  DeniedError,
  InvalidRequestError,
  MessageDeniedError,
  NoDecisionError,
  NoReplyError,
  PublishError,
  reasonOf,
  SelfApprovalError,
  StreamError,
  UnavailableError,
  VerificationError,
  type VerificationErrorOptions,
} from "./errors.js";
export { Box, curveKeyPair, decodePublicKey, isPublicKey, userKeyPair, verifyEd25519, type KeyPair, type KeyRole } from "./keys.js";
export {
  Decision,
  DecisionWatch,
  DEFAULT_NOTICE_SKEW_MS,
  formatNoticeDoc,
  isNotice,
  MAX_NOTICE_DOC_SIZE,
  MAX_NOTICE_SIZE,
  MESSAGE_ID_HEADER,
  NOTICE_HEADER,
  NOTICE_KIND,
  NOTICE_DOC_VERSION,
  NOTICE_SCOPE,
  parseNotice,
  parseNoticeDoc,
  verifyNotice,
  type Notice,
  type NoticeAnswer,
  type NoticeDoc,
  type NoticeReceiver,
  type NoticeRoute,
  type WatchOptions,
} from "./notice.js";
export { isReasonCode, lookupReason, Reason, REASONS, type ReasonCode, type ReasonInfo } from "./reason.js";
export { DEFAULT_REPLY_SKEW_MS, Reply, REQUEST_ID_HEADER, RESPONDER_HEADER, SEALED_FROM_HEADER, verifyReply, type ReplyReceiver, type WaitOptions } from "./reply.js";
export * as subjects from "./subjects.js";
export { AGENT_HEADER, DEFAULT_CONSUMER_SKEW_MS, Delivery, headersOf, parseHeaderBlock, verifyDelivery, type HeaderSource, type VerifyOptions } from "./verify.js";
