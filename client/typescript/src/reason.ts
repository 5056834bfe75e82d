// The reason table: every code the gateway and the SDKs deny with, in
// pipeline order, with the gate (stage) that produces it. It is the Go
// table of the reason package, append only: a code is never renamed or
// reused. test/reason.test.ts fails if the two drift apart.

/** One entry of the reason table. */
export interface ReasonInfo {
  /** Stable snake_case code, safe in NATS subjects and metric labels. */
  readonly code: ReasonCode;
  /** The gate that produces it. */
  readonly stage: string;
  /** What it means. */
  readonly description: string;
}

const TABLE = [
  { code: "oversized", stage: "envelope", description: "message body larger than the configured limit" },
  { code: "missing_header", stage: "envelope", description: "a required header (credential or signature) is absent or empty" },
  { code: "invalid_subject", stage: "transport", description: "the ingress subject does not parse or holds a forbidden token" },
  { code: "malformed_envelope", stage: "envelope", description: "body is not strict JSON: invalid UTF-8, duplicate or unknown keys, a control character in a key, too deep, bad field form" },
  { code: "unsupported_version", stage: "envelope", description: "envelope version is not 1" },
  { code: "schema_violation", stage: "envelope", description: "body does not match the envelope JSON Schema" },
  { code: "malformed_credential", stage: "credential", description: "credential is not a decodable agentgw JWT or misses a required claim" },
  { code: "untrusted_issuer", stage: "credential", description: "credential issuer is not trusted for the tenant it names" },
  { code: "revoked", stage: "credential", description: "credential jti or agent key is revoked" },
  { code: "wrong_audience", stage: "credential", description: "credential or envelope audience is not this gateway" },
  { code: "credential_expired", stage: "credential", description: "credential exp is past (beyond skew)" },
  { code: "credential_not_yet_valid", stage: "credential", description: "credential nbf or iat is in the future (beyond skew)" },
  { code: "credential_lifetime_too_long", stage: "credential", description: "credential lifetime exceeds the configured maximum" },
  { code: "bad_signature", stage: "signature", description: "envelope signature does not verify with the credential's subject key" },
  { code: "tenant_mismatch", stage: "signature", description: "envelope, credential and subject disagree on the tenant" },
  { code: "subject_mismatch", stage: "signature", description: "ingress subject agent is not the credential subject" },
  { code: "message_expired", stage: "freshness", description: "expires_at is past (beyond skew)" },
  { code: "issued_in_future", stage: "freshness", description: "issued_at is in the future (beyond skew)" },
  { code: "ttl_too_long", stage: "freshness", description: "expires_at - issued_at exceeds the maximum TTL, or is not positive" },
  { code: "replay_detected", stage: "ledger", description: "message_id already seen from this agent at another stream sequence" },
  { code: "duplicate_request", stage: "ledger", description: "idempotency key already used with the same payload; prior decision stands" },
  { code: "idempotency_conflict", stage: "ledger", description: "idempotency key already used with a different payload" },
  { code: "ledger_incomplete", stage: "ledger", description: "the ledger lost what was decided before a time (a new ledger after decisions, a scaled-out journal deleted or purged), and this message, or the request its idempotency key names, may have been decided then" },
  { code: "unknown_target", stage: "catalog", description: "target is not in the capability catalog" },
  { code: "capability_mismatch", stage: "catalog", description: "capability does not match the target's kind" },
  { code: "missing_scope", stage: "catalog", description: "credential lacks the scope the target requires" },
  { code: "tenant_not_allowed", stage: "catalog", description: "the target does not serve this tenant" },
  { code: "budget_exceeded", stage: "budget", description: "rate budget for tenant, agent or target exhausted" },
  { code: "policy_denied", stage: "policy", description: "no policy permits, or a policy forbids" },
  { code: "plain_not_allowed", stage: "payload", description: "plain payload sent to a target that requires sealing" },
  { code: "seal_mismatch", stage: "payload", description: "sealed payload not from the credential's xkey or not to the gateway's xkey" },
  { code: "seal_broken", stage: "payload", description: "sealed payload does not open" },
  { code: "payload_invalid", stage: "payload", description: "opened payload does not match the target's payload schema" },
  { code: "content_denied", stage: "payload", description: "content policy rejects the opened payload" },
  { code: "approval_denied", stage: "approval", description: "an approver denied the held request" },
  { code: "approval_expired", stage: "approval", description: "no approval arrived before the deadline" },
  { code: "approval_invalid", stage: "approval", description: "approval does not bind to a held request, its digest or policy version" },
  { code: "self_approval", stage: "approval", description: "approver is the requester: the same agent key, or a credential issued for the same principal" },
  { code: "no_such_request", stage: "response", description: "response answers no known request" },
  { code: "not_your_request", stage: "response", description: "response comes from a consumer of another target" },
  { code: "already_answered", stage: "response", description: "request already has a response" },
  { code: "response_late", stage: "response", description: "response after the request's deadline" },
  { code: "response_invalid", stage: "response", description: "response does not match the target's response schema" },
  { code: "replay_refused", stage: "gateway", description: "operator replay refused: already replayed or not replayable" },
  { code: "internal_error", stage: "gateway", description: "internal failure; denied to fail closed" },
  { code: "decision_token_missing", stage: "consumer", description: "message reached a consumer without a gateway decision token" },
  { code: "decision_token_invalid", stage: "consumer", description: "decision token is malformed or not signed by a trusted gateway key" },
  { code: "decision_token_expired", stage: "consumer", description: "decision token is expired" },
  { code: "decision_token_audience", stage: "consumer", description: "decision token is for another target" },
  { code: "decision_token_binding", stage: "consumer", description: "decision token is bound to other envelope or payload bytes" },
  { code: "exchange_request_invalid", stage: "exchange", description: "exchange request is not strict JSON of the request shape, or names another audience" },
  { code: "exchange_untrusted_idp", stage: "exchange", description: "IdP token issuer is not a configured IdP, or that IdP may not speak for the tenant" },
  { code: "exchange_token_invalid", stage: "exchange", description: "IdP token signature, algorithm, key id, issuer or a required claim does not check out" },
  { code: "exchange_token_audience", stage: "exchange", description: "IdP token audience is not the one configured for that IdP" },
  { code: "exchange_token_expired", stage: "exchange", description: "IdP token is expired, or its nbf or iat is in the future (beyond skew)" },
  {
    code: "exchange_proof_invalid",
    stage: "exchange",
    description:
      "proof of possession missing or not signed by the agent key the credential is for, or the xkey proof does not open from the xkey the credential is for",
  },
  { code: "exchange_proof_stale", stage: "exchange", description: "exchange request too old or in the future, or its request id was already used" },
  { code: "exchange_actor_denied", stage: "exchange", description: "IdP token's may_act does not name the agent key, or it carries an act chain the IdP may not delegate" },
  { code: "exchange_no_scope", stage: "exchange", description: "IdP token claims map to no scope or no tenant" },
  { code: "exchange_scope_denied", stage: "exchange", description: "requested scopes go beyond what the mapping rules grant" },
  { code: "wrong_responder", stage: "response", description: "response not sealed from the consumer key the request was delivered under" },
  {
    code: "payload_case_variant",
    stage: "payload",
    description:
      "opened payload or response has a top-level member differing only in case from a field the gateway reads by name (policy- or approver-visible, sensitive, or a claim field)",
  },
  {
    code: "decision_token_duplicate",
    stage: "consumer",
    description: "decision token already handed over by this consumer from another stream sequence (a re-published copy), or from the same one by another JetStream consumer or as its first delivery again (a durable created again)",
  },
  {
    code: "decision_token_record_full",
    stage: "consumer",
    description: "the consumer's record of handed-over decision tokens is full; the message is handed back, not acted on, until entries expire",
  },
  {
    code: "exchange_idp_unavailable",
    stage: "exchange",
    description:
      "the IdP's signing keys could not be obtained (discovery or JWKS unreachable, timed out, not 200, or no usable key), or all of that IdP's exchange slots were in use: the token was not checked and nothing was issued; retry later",
  },
] as const;

/** A decision reason code: one of the codes of {@link REASONS}. */
export type ReasonCode = (typeof TABLE)[number]["code"];

/** The reason table, in pipeline order. */
export const REASONS: readonly ReasonInfo[] = TABLE;

/**
 * The codes by their Go names (`reason.BadSignature` is
 * `Reason.BadSignature`), for comparisons that read like the Go SDK's
 * `errors.Is(err, reason.BadSignature)`.
 */
export const Reason = {
  Oversized: "oversized",
  MissingHeader: "missing_header",
  InvalidSubject: "invalid_subject",
  MalformedEnvelope: "malformed_envelope",
  UnsupportedVersion: "unsupported_version",
  SchemaViolation: "schema_violation",
  MalformedCredential: "malformed_credential",
  UntrustedIssuer: "untrusted_issuer",
  Revoked: "revoked",
  WrongAudience: "wrong_audience",
  CredentialExpired: "credential_expired",
  CredentialNotYetValid: "credential_not_yet_valid",
  CredentialTooLong: "credential_lifetime_too_long",
  BadSignature: "bad_signature",
  TenantMismatch: "tenant_mismatch",
  SubjectMismatch: "subject_mismatch",
  MessageExpired: "message_expired",
  IssuedInFuture: "issued_in_future",
  TTLTooLong: "ttl_too_long",
  ReplayDetected: "replay_detected",
  DuplicateRequest: "duplicate_request",
  IdempotencyConflict: "idempotency_conflict",
  LedgerIncomplete: "ledger_incomplete",
  UnknownTarget: "unknown_target",
  CapabilityMismatch: "capability_mismatch",
  MissingScope: "missing_scope",
  TenantNotAllowed: "tenant_not_allowed",
  BudgetExceeded: "budget_exceeded",
  PolicyDenied: "policy_denied",
  PlainNotAllowed: "plain_not_allowed",
  SealMismatch: "seal_mismatch",
  SealBroken: "seal_broken",
  PayloadInvalid: "payload_invalid",
  ContentDenied: "content_denied",
  ApprovalDenied: "approval_denied",
  ApprovalExpired: "approval_expired",
  ApprovalInvalid: "approval_invalid",
  SelfApproval: "self_approval",
  NoSuchRequest: "no_such_request",
  NotYourRequest: "not_your_request",
  AlreadyAnswered: "already_answered",
  ResponseLate: "response_late",
  ResponseInvalid: "response_invalid",
  ReplayRefused: "replay_refused",
  Internal: "internal_error",
  DecisionMissing: "decision_token_missing",
  DecisionInvalid: "decision_token_invalid",
  DecisionExpired: "decision_token_expired",
  DecisionAudience: "decision_token_audience",
  DecisionBinding: "decision_token_binding",
  ExchangeRequestInvalid: "exchange_request_invalid",
  ExchangeUntrustedIdP: "exchange_untrusted_idp",
  ExchangeTokenInvalid: "exchange_token_invalid",
  ExchangeTokenAudience: "exchange_token_audience",
  ExchangeTokenExpired: "exchange_token_expired",
  ExchangeProofInvalid: "exchange_proof_invalid",
  ExchangeProofStale: "exchange_proof_stale",
  ExchangeActorDenied: "exchange_actor_denied",
  ExchangeNoScope: "exchange_no_scope",
  ExchangeScopeDenied: "exchange_scope_denied",
  WrongResponder: "wrong_responder",
  PayloadCaseVariant: "payload_case_variant",
  DecisionDuplicate: "decision_token_duplicate",
  DecisionRecordFull: "decision_token_record_full",
  ExchangeIdPUnavailable: "exchange_idp_unavailable",
} as const satisfies Record<string, ReasonCode>;

const INDEX: ReadonlyMap<string, ReasonInfo> = new Map(REASONS.map((r) => [r.code, r]));

/** Reports whether s is a code of the table. */
export function isReasonCode(s: unknown): s is ReasonCode {
  return typeof s === "string" && INDEX.has(s);
}

/** Returns the table entry of code, or undefined for a string outside the table. */
export function lookupReason(code: string): ReasonInfo | undefined {
  return INDEX.get(code);
}
