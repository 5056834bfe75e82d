package reason

// Stage names the gate (docs/design.md §3) that produces a reason.
type Stage string

// Gates in pipeline order.
const (
	StageTransport  Stage = "transport"
	StageEnvelope   Stage = "envelope"
	StageCredential Stage = "credential"
	StageSignature  Stage = "signature"
	StageFreshness  Stage = "freshness"
	StageLedger     Stage = "ledger"
	StageCatalog    Stage = "catalog"
	StageBudget     Stage = "budget"
	StagePolicy     Stage = "policy"
	StagePayload    Stage = "payload"
	StageApproval   Stage = "approval"
	StageResponse   Stage = "response"
	StageGateway    Stage = "gateway"
	StageConsumer   Stage = "consumer"
)

// Info describes one reason.
type Info struct {
	Code        Code
	Stage       Stage
	Description string
}

// The reasons. Append only; never rename or reuse a string.
const (
	Oversized             Code = "oversized"
	MissingHeader         Code = "missing_header"
	InvalidSubject        Code = "invalid_subject"
	MalformedEnvelope     Code = "malformed_envelope"
	UnsupportedVersion    Code = "unsupported_version"
	SchemaViolation       Code = "schema_violation"
	MalformedCredential   Code = "malformed_credential"
	UntrustedIssuer       Code = "untrusted_issuer"
	Revoked               Code = "revoked"
	WrongAudience         Code = "wrong_audience"
	CredentialExpired     Code = "credential_expired"
	CredentialNotYetValid Code = "credential_not_yet_valid"
	CredentialTooLong     Code = "credential_lifetime_too_long"
	BadSignature          Code = "bad_signature"
	TenantMismatch        Code = "tenant_mismatch"
	SubjectMismatch       Code = "subject_mismatch"
	MessageExpired        Code = "message_expired"
	IssuedInFuture        Code = "issued_in_future"
	TTLTooLong            Code = "ttl_too_long"
	ReplayDetected        Code = "replay_detected"
	DuplicateRequest      Code = "duplicate_request"
	IdempotencyConflict   Code = "idempotency_conflict"
	LedgerIncomplete      Code = "ledger_incomplete"
	UnknownTarget         Code = "unknown_target"
	CapabilityMismatch    Code = "capability_mismatch"
	MissingScope          Code = "missing_scope"
	TenantNotAllowed      Code = "tenant_not_allowed"
	BudgetExceeded        Code = "budget_exceeded"
	PolicyDenied          Code = "policy_denied"
	PlainNotAllowed       Code = "plain_not_allowed"
	SealMismatch          Code = "seal_mismatch"
	SealBroken            Code = "seal_broken"
	PayloadInvalid        Code = "payload_invalid"
	ContentDenied         Code = "content_denied"
	ApprovalDenied        Code = "approval_denied"
	ApprovalExpired       Code = "approval_expired"
	ApprovalInvalid       Code = "approval_invalid"
	SelfApproval          Code = "self_approval"
	NoSuchRequest         Code = "no_such_request"
	NotYourRequest        Code = "not_your_request"
	AlreadyAnswered       Code = "already_answered"
	ResponseLate          Code = "response_late"
	ResponseInvalid       Code = "response_invalid"
	ReplayRefused         Code = "replay_refused"
	Internal              Code = "internal_error"

	// Consumer-side reasons: a message on a capability or reply subject
	// whose gateway decision token does not check out.
	DecisionMissing  Code = "decision_token_missing"
	DecisionInvalid  Code = "decision_token_invalid"
	DecisionExpired  Code = "decision_token_expired"
	DecisionAudience Code = "decision_token_audience"
	DecisionBinding  Code = "decision_token_binding"

	// Token exchange reasons (package exchange): why an IdP token was
	// not exchanged for a credential. Their stage is "exchange".
	ExchangeRequestInvalid Code = "exchange_request_invalid"
	ExchangeUntrustedIdP   Code = "exchange_untrusted_idp"
	ExchangeTokenInvalid   Code = "exchange_token_invalid"
	ExchangeTokenAudience  Code = "exchange_token_audience"
	ExchangeTokenExpired   Code = "exchange_token_expired"
	ExchangeProofInvalid   Code = "exchange_proof_invalid"
	ExchangeProofStale     Code = "exchange_proof_stale"
	ExchangeActorDenied    Code = "exchange_actor_denied"
	ExchangeNoScope        Code = "exchange_no_scope"
	ExchangeScopeDenied    Code = "exchange_scope_denied"

	// WrongResponder: a response from a holder of respond:<target> that
	// is not the consumer the request was delivered to: its payload is
	// not sealed from the target's consumer_xkey of that delivery.
	WrongResponder Code = "wrong_responder"

	// PayloadCaseVariant: an opened payload (or response) has a member
	// that is not a field the gateway reads by name but case-folds equal
	// to one, so checks would miss it while a case-insensitive decoder
	// downstream (encoding/json's) reads it as that field.
	PayloadCaseVariant Code = "payload_case_variant"

	// Consumer-side reasons about a delivery whose token verifies: the
	// consumer has already handed that decision over, or cannot record
	// that it did.
	DecisionDuplicate  Code = "decision_token_duplicate"
	DecisionRecordFull Code = "decision_token_record_full"

	// ExchangeIdPUnavailable: the token exchange could not obtain the
	// IdP's signing keys (discovery or JWKS unreachable, timed out, not
	// 200, or no usable key in it), or every one of that IdP's exchange
	// slots was in use, so the token's signature was not checked and
	// nothing was issued. Unlike exchange_token_invalid it
	// says nothing about the token: the same request may succeed later.
	ExchangeIdPUnavailable Code = "exchange_idp_unavailable"
)

// All is the table, in pipeline order. Tests iterate it.
var All = []Info{
	{Oversized, StageEnvelope, "message body larger than the configured limit"},
	{MissingHeader, StageEnvelope, "a required header (credential or signature) is absent or empty"},
	{InvalidSubject, StageTransport, "the ingress subject does not parse or holds a forbidden token"},
	{MalformedEnvelope, StageEnvelope, "body is not strict JSON: invalid UTF-8, duplicate or unknown keys, a control character in a key, too deep, bad field form"},
	{UnsupportedVersion, StageEnvelope, "envelope version is not 1"},
	{SchemaViolation, StageEnvelope, "body does not match the envelope JSON Schema"},
	{MalformedCredential, StageCredential, "credential is not a decodable agentgw JWT or misses a required claim"},
	{UntrustedIssuer, StageCredential, "credential issuer is not trusted for the tenant it names"},
	{Revoked, StageCredential, "credential jti or agent key is revoked"},
	{WrongAudience, StageCredential, "credential or envelope audience is not this gateway"},
	{CredentialExpired, StageCredential, "credential exp is past (beyond skew)"},
	{CredentialNotYetValid, StageCredential, "credential nbf or iat is in the future (beyond skew)"},
	{CredentialTooLong, StageCredential, "credential lifetime exceeds the configured maximum"},
	{BadSignature, StageSignature, "envelope signature does not verify with the credential's subject key"},
	{TenantMismatch, StageSignature, "envelope, credential and subject disagree on the tenant"},
	{SubjectMismatch, StageSignature, "ingress subject agent is not the credential subject"},
	{MessageExpired, StageFreshness, "expires_at is past (beyond skew)"},
	{IssuedInFuture, StageFreshness, "issued_at is in the future (beyond skew)"},
	{TTLTooLong, StageFreshness, "expires_at - issued_at exceeds the maximum TTL, or is not positive"},
	{ReplayDetected, StageLedger, "message_id already seen from this agent at another stream sequence"},
	{DuplicateRequest, StageLedger, "idempotency key already used with the same payload; prior decision stands"},
	{IdempotencyConflict, StageLedger, "idempotency key already used with a different payload"},
	{LedgerIncomplete, StageLedger, "the ledger lost what was decided before a time (a new ledger after decisions, a scaled-out journal deleted or purged), and this message, or the request its idempotency key names, may have been decided then"},
	{UnknownTarget, StageCatalog, "target is not in the capability catalog"},
	{CapabilityMismatch, StageCatalog, "capability does not match the target's kind"},
	{MissingScope, StageCatalog, "credential lacks the scope the target requires"},
	{TenantNotAllowed, StageCatalog, "the target does not serve this tenant"},
	{BudgetExceeded, StageBudget, "rate budget for tenant, agent or target exhausted"},
	{PolicyDenied, StagePolicy, "no policy permits, or a policy forbids"},
	{PlainNotAllowed, StagePayload, "plain payload sent to a target that requires sealing"},
	{SealMismatch, StagePayload, "sealed payload not from the credential's xkey or not to the gateway's xkey"},
	{SealBroken, StagePayload, "sealed payload does not open"},
	{PayloadInvalid, StagePayload, "opened payload does not match the target's payload schema"},
	{ContentDenied, StagePayload, "content policy rejects the opened payload"},
	{ApprovalDenied, StageApproval, "an approver denied the held request"},
	{ApprovalExpired, StageApproval, "no approval arrived before the deadline"},
	{ApprovalInvalid, StageApproval, "approval does not bind to a held request, its digest or policy version"},
	{SelfApproval, StageApproval, "approver is the requester: the same agent key, or a credential issued for the same principal"},
	{NoSuchRequest, StageResponse, "response answers no known request"},
	{NotYourRequest, StageResponse, "response comes from a consumer of another target"},
	{AlreadyAnswered, StageResponse, "request already has a response"},
	{ResponseLate, StageResponse, "response after the request's deadline"},
	{ResponseInvalid, StageResponse, "response does not match the target's response schema"},
	{ReplayRefused, StageGateway, "operator replay refused: already replayed or not replayable"},
	{Internal, StageGateway, "internal failure; denied to fail closed"},
	{DecisionMissing, StageConsumer, "message reached a consumer without a gateway decision token"},
	{DecisionInvalid, StageConsumer, "decision token is malformed or not signed by a trusted gateway key"},
	{DecisionExpired, StageConsumer, "decision token is expired"},
	{DecisionAudience, StageConsumer, "decision token is for another target"},
	{DecisionBinding, StageConsumer, "decision token is bound to other envelope or payload bytes"},
	{ExchangeRequestInvalid, "exchange", "exchange request is not strict JSON of the request shape, or names another audience"},
	{ExchangeUntrustedIdP, "exchange", "IdP token issuer is not a configured IdP, or that IdP may not speak for the tenant"},
	{ExchangeTokenInvalid, "exchange", "IdP token signature, algorithm, key id, issuer or a required claim does not check out"},
	{ExchangeTokenAudience, "exchange", "IdP token audience is not the one configured for that IdP"},
	{ExchangeTokenExpired, "exchange", "IdP token is expired, or its nbf or iat is in the future (beyond skew)"},
	{ExchangeProofInvalid, "exchange", "proof of possession missing or not signed by the agent key the credential is for, or the xkey proof does not open from the xkey the credential is for"},
	{ExchangeProofStale, "exchange", "exchange request too old or in the future, or its request id was already used"},
	{ExchangeActorDenied, "exchange", "IdP token's may_act does not name the agent key, or it carries an act chain the IdP may not delegate"},
	{ExchangeNoScope, "exchange", "IdP token claims map to no scope or no tenant"},
	{ExchangeScopeDenied, "exchange", "requested scopes go beyond what the mapping rules grant"},
	{WrongResponder, StageResponse, "response not sealed from the consumer key the request was delivered under"},
	{PayloadCaseVariant, StagePayload, "opened payload or response has a top-level member differing only in case from a field the gateway reads by name (policy- or approver-visible, sensitive, or a claim field)"},
	{DecisionDuplicate, StageConsumer, "decision token already handed over by this consumer from another stream sequence (a re-published copy), or from the same one by another JetStream consumer or as its first delivery again (a durable created again)"},
	{DecisionRecordFull, StageConsumer, "the consumer's record of handed-over decision tokens is full; the message is handed back, not acted on, until entries expire"},
	{ExchangeIdPUnavailable, "exchange", "the IdP's signing keys could not be obtained (discovery or JWKS unreachable, timed out, not 200, or no usable key), or all of that IdP's exchange slots were in use: the token was not checked and nothing was issued; retry later"},
}
