package header

// Set by agents on ingress.
const (
	// Credential carries the agent's credential (a compact JWT).
	Credential = "Agentgw-Credential"
	// Signature is the base64url Ed25519 signature over the domain
	// separated body bytes.
	Signature = "Agentgw-Signature"
	// Traceparent is the W3C trace context; the signed trace_id wins.
	Traceparent = "traceparent"
	// MsgID is JetStream's de-duplication header.
	MsgID = "Nats-Msg-Id"
	// Notify, optional, says which decision notices the sender wants:
	// notice.NotifyNone asks for none; absent or any other value, the
	// notices the gateway's configuration sends.
	Notify = "Agentgw-Notify"
)

// Set by the gateway on outputs.
const (
	// Decision is the gateway decision token of a reply or an approval
	// request (deliveries and notices carry theirs in their body).
	Decision = "Agentgw-Decision"
	// Agent is the requesting agent's public key.
	Agent = "Agentgw-Agent"
	// Sealed is the payload re-sealed to the consumer (base64url).
	Sealed = "Agentgw-Sealed"
	// SealedFrom is the gateway curve key that sealed it.
	SealedFrom = "Agentgw-Sealed-From"
	// Reason is the decision reason code.
	Reason = "Agentgw-Reason"
	// Stage is the gate that decided.
	Stage = "Agentgw-Stage"
	// Detail is the operator-facing explanation (never a secret).
	Detail = "Agentgw-Detail"
	// IngressSeq is the ingress stream sequence decided on.
	IngressSeq = "Agentgw-Ingress-Seq"
	// IngressSubject is the ingress subject as the ingress stream stored
	// it, agentgw.in.<p>.<tenant>.<agent> with the partition NATS chose,
	// not the four-token agentgw.in.<tenant>.<agent> the agent published
	// to (subjects.ParseIngress reads both forms).
	IngressSubject = "Agentgw-Ingress-Subject"
	// DecidedAt is the RFC 3339 decision time.
	DecidedAt = "Agentgw-Decided-At"
	// Policy lists the policy ids that decided, comma separated.
	Policy = "Agentgw-Policy"
	// PolicyVersion is the digest of the policy set that decided.
	PolicyVersion = "Agentgw-Policy-Version"
	// MessageID is the envelope message id.
	MessageID = "Agentgw-Message-Id"
	// TraceID is the envelope trace id.
	TraceID = "Agentgw-Trace-Id"
	// Tenant is the tenant the decision was made for.
	Tenant = "Agentgw-Tenant"
	// Target is the requested target.
	Target = "Agentgw-Target"
	// Route is allow, approval or deny.
	Route = "Agentgw-Route"
	// CredentialSealed is the agent's credential header, as received,
	// sealed by the gateway to its own curve key and bound to the
	// message body (base64url; identity.Box.SealCredential). Denied
	// records carry it instead of Credential: an operator replay needs
	// the credential, a reader of the stream must not get it.
	CredentialSealed = "Agentgw-Credential-Sealed"
	// CredentialSealedTo is the gateway curve key ("X…") that
	// CredentialSealed is sealed to, and the only key that opens it.
	CredentialSealedTo = "Agentgw-Credential-Sealed-To"
	// BodyDigest is "sha256:<hex>" of a message body a denied record
	// does not carry (a body denied oversized, or a record the server
	// refused as too large), and BodyBytes that body's length, decimal:
	// what identifies the body instead of the body itself.
	BodyDigest = "Agentgw-Body-Digest"
	BodyBytes  = "Agentgw-Body-Bytes"
	// Replay is the gateway's authorization for an operator replay of a
	// denied message: "<denied seq>.<operator key>.<expires unix>.<sig>".
	// Only the gateway can mint it; agents cannot forge one.
	Replay = "Agentgw-Replay"
	// ReplayCredential is the credential of the operator a Replay
	// authorization names, sealed by the gateway to its own curve key and
	// bound to the message body (as CredentialSealed): the re-submission
	// is decided under that credential's standing at the time.
	ReplayCredential = "Agentgw-Replay-Credential"
)
