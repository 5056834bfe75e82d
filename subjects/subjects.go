package subjects

import (
	"strconv"
	"strings"
	"sync"

	"github.com/agentgw/agentgw/subjects/reason"
	"github.com/nats-io/nkeys"
)

// Root is the first token of every agentgw subject.
const Root = "agentgw"

// Stream subjects: what each stream listens on.
const (
	IngressStreamSubject    = "agentgw.in.*.*"
	CapabilityStreamSubject = "agentgw.cap.>"
	ApprovalStreamSubject   = "agentgw.approval.>"
	DeniedStreamSubject     = "agentgw.denied.*.*"
	AuditStreamSubject      = "agentgw.audit.*"
	ReplyStreamSubject      = "agentgw.reply.*.*"
)

// UnroutableTenant is the tenant token of denied subjects for messages
// whose tenant could not be determined or trusted enough to name a subject
// (a bad ingress subject, a body that does not parse). It is a valid token
// so the denied stream's subjects stay uniform; the leading underscore
// marks it reserved: no tenant may be configured under this name.
const UnroutableTenant = "_unroutable"

// MaxPartitions bounds the ingress partition count.
const MaxPartitions = 1024

// maxSubjectLen bounds any subject this package builds or parses; the
// longest legitimate one (an approval with a 255-byte target) is under 350.
const maxSubjectLen = 512

// Limits of the token rules.
const (
	maxToken  = 64
	maxTarget = 255
)

// ValidToken reports whether s is a tenant token or one target part:
// [a-z0-9_-]{1,64}.
func ValidToken(s string) bool {
	if len(s) == 0 || len(s) > maxToken {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// maxReply bounds a reply subject the gateway's services answer.
const maxReply = 256

// ReplyInbox reports whether the gateway's request services (the token
// exchange, operator replay) may answer on s: a reply subject under
// "_INBOX." (what NATS clients create) or "_R_." (what a service import
// maps replies to), at most 256 bytes, of non-empty tokens of printable
// ASCII without wildcards. The services publish on the gateway's own
// connection, which may publish to its streams and their API: answering
// whatever subject a request names would let anyone who can send it
// make the gateway write there (a line in a tenant's audit stream, an
// ack of an undecided ingress message).
//
// A reply that crossed a NATS gateway between clusters within two
// seconds of its inbox subscription arrives as "_GR_.<cluster>.<server>."
// followed by the client's own reply subject: it is judged by that.
func ReplyInbox(s string) bool {
	if len(s) > maxReply {
		return false
	}
	if rest, ok := strings.CutPrefix(s, "_GR_."); ok {
		toks := strings.SplitN(rest, ".", 3)
		if len(toks) != 3 || !routeToken(toks[0]) || !routeToken(toks[1]) || strings.HasPrefix(toks[2], "_GR_.") {
			return false
		}
		s = toks[2]
	}
	if !(strings.HasPrefix(s, "_INBOX.") || strings.HasPrefix(s, "_R_.")) {
		return false
	}
	for tok := range strings.SplitSeq(s, ".") {
		if tok == "" || tok == "*" || tok == ">" {
			return false
		}
		for i := 0; i < len(tok); i++ {
			if c := tok[i]; c <= ' ' || c > '~' {
				return false
			}
		}
	}
	return true
}

// routeToken reports whether s is one token of a "_GR_." prefix: letters
// and digits (nats-server writes a hash of the cluster and the server).
func routeToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

// ValidTarget reports whether s is dot-separated ValidTokens, at most 255
// bytes in all.
func ValidTarget(s string) bool {
	if len(s) == 0 || len(s) > maxTarget {
		return false
	}
	for {
		part, rest, more := strings.Cut(s, ".")
		if !ValidToken(part) {
			return false
		}
		if !more {
			return true
		}
		s = rest
	}
}

// ValidAgent reports whether s is an nkey user public key (ValidKey with
// role 'U').
func ValidAgent(s string) bool {
	if len(s) != 56 || s[0] != 'U' {
		return false
	}
	knownAgents.RLock()
	_, known := knownAgents.keys[s]
	knownAgents.RUnlock()
	if known {
		return true
	}
	if !ValidKey(s, 'U') {
		return false
	}
	knownAgents.Lock()
	if len(knownAgents.keys) >= maxKnownAgents {
		clear(knownAgents.keys)
	}
	knownAgents.keys[strings.Clone(s)] = struct{}{}
	knownAgents.Unlock()
	return true
}

// ValidKey reports whether s is a public nkey of role ('A', 'N', 'U' or
// 'X') in the wire's strict form: the role letter, 55 characters of
// A–Z 2–7, and a valid checksum. The form is checked before the checksum:
// base32 decoding skips CR and LF, so nkeys alone would accept a key with
// a line break in it. The prefix byte is exactly role << 3, so the second
// character, which carries its low three bits, is A–D: nkeys masks those
// bits off a curve key, and would take a second spelling of one key.
func ValidKey(s string, role byte) bool {
	if len(s) != 56 || s[0] != role || s[1] < 'A' || s[1] > 'D' {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !('A' <= c && c <= 'Z' || '2' <= c && c <= '7') {
			return false
		}
	}
	switch role {
	case 'A':
		return nkeys.IsValidPublicAccountKey(s)
	case 'N':
		return nkeys.IsValidPublicServerKey(s)
	case 'U':
		return nkeys.IsValidPublicUserKey(s)
	case 'X':
		return nkeys.IsValidPublicCurveKey(s)
	}
	return false
}

// knownAgents remembers keys ValidAgent accepted. A message names its
// agent's key several times (its ingress subject, its reply subject, the
// subjects of its decision tokens), a fleet has few agents beside its
// messages, and the checksum costs a base32 decoding each time. Only
// valid keys are remembered and the set is emptied when it is full, so
// it stays bounded whatever keys a sender tries.
var knownAgents = struct {
	sync.RWMutex
	keys map[string]struct{}
}{keys: make(map[string]struct{})}

// maxKnownAgents bounds knownAgents: about a megabyte.
const maxKnownAgents = 1 << 14

func invalid(format string, args ...any) error {
	return reason.Deny(reason.InvalidSubject, format, args...)
}

func checkTenant(tenant string) error {
	if !ValidToken(tenant) {
		return invalid("tenant %.72q is not [a-z0-9_-]{1,64}", tenant)
	}
	return nil
}

func checkAgent(agent string) error {
	if !ValidAgent(agent) {
		return invalid("agent %.72q is not an nkey user public key", agent)
	}
	return nil
}

func checkTarget(target string) error {
	if !ValidTarget(target) {
		return invalid("target %.72q is not dotted [a-z0-9_-]{1,64} parts of at most 255 bytes", target)
	}
	return nil
}

// Ingress returns agentgw.in.<tenant>.<agent>, where agents publish.
// Errors are *reason.Denial with code InvalidSubject.
func Ingress(tenant, agent string) (string, error) {
	if err := checkTenant(tenant); err != nil {
		return "", err
	}
	if err := checkAgent(agent); err != nil {
		return "", err
	}
	return "agentgw.in." + tenant + "." + agent, nil
}

// IngressRef is a parsed ingress subject.
type IngressRef struct {
	Partition int // -1 when unpartitioned (the published form)
	Tenant    string
	Agent     string
}

// ParseIngress parses the published form agentgw.in.<tenant>.<agent> and
// the stored partitioned form agentgw.in.<p>.<tenant>.<agent>, where p is
// a decimal in [0, MaxPartitions) without leading zeros. Anything else is a
// *reason.Denial with code InvalidSubject.
func ParseIngress(subj string) (IngressRef, error) {
	toks, err := split(subj, "in", 4, 5)
	if err != nil {
		return IngressRef{}, err
	}
	ref := IngressRef{Partition: -1}
	if len(toks) == 5 {
		p, ok := parsePartition(toks[2])
		if !ok {
			return IngressRef{}, invalid("partition %.16q is not a decimal in [0, %d)", toks[2], MaxPartitions)
		}
		ref.Partition = p
		toks = toks[1:]
	}
	if err := checkTenant(toks[2]); err != nil {
		return IngressRef{}, err
	}
	if err := checkAgent(toks[3]); err != nil {
		return IngressRef{}, err
	}
	ref.Tenant, ref.Agent = toks[2], toks[3]
	return ref, nil
}

func parsePartition(s string) (int, bool) {
	if len(s) == 0 || len(s) > 4 || len(s) > 1 && s[0] == '0' {
		return 0, false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
		n = n*10 + int(s[i]-'0')
	}
	return n, n < MaxPartitions
}

// IngressTransform returns the ingress stream's subject transform: source
// IngressStreamSubject, destination
// agentgw.in.{{partition(N,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}, which
// keeps each (tenant, agent) on one partition. It panics unless
// 1 <= partitions <= MaxPartitions: configuration validation must check
// that first.
func IngressTransform(partitions int) (src, dest string) {
	if partitions < 1 || partitions > MaxPartitions {
		panic("subjects: partitions " + strconv.Itoa(partitions) + " outside [1, " + strconv.Itoa(MaxPartitions) + "]")
	}
	return IngressStreamSubject, "agentgw.in.{{partition(" + strconv.Itoa(partitions) + ",1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}"
}

// PartitionFilter returns agentgw.in.<p>.*.*, the consumer filter of one
// partition. It panics unless 0 <= p < MaxPartitions.
func PartitionFilter(p int) string {
	if p < 0 || p >= MaxPartitions {
		panic("subjects: partition " + strconv.Itoa(p) + " outside [0, " + strconv.Itoa(MaxPartitions) + ")")
	}
	return "agentgw.in." + strconv.Itoa(p) + ".*.*"
}

// split checks the form of an agentgw subject of kind and returns its
// tokens (including the leading two). A token count outside
// [minToks, maxToks] (maxToks < 0: unbounded), empty tokens, and overlong
// subjects are refused; the callers check each token's alphabet, which
// excludes wildcards, whitespace and '$'.
func split(subj, kind string, minToks, maxToks int) ([]string, error) {
	if err := form(subj, kind, minToks, maxToks); err != nil {
		return nil, err
	}
	return strings.Split(subj, "."), nil
}

func form(subj, kind string, minToks, maxToks int) error {
	if len(subj) > maxSubjectLen {
		return invalid("subject is %d bytes; limit %d", len(subj), maxSubjectLen)
	}
	if rest, ok := strings.CutPrefix(subj, Root+"."); !ok || !strings.HasPrefix(rest, kind) || !strings.HasPrefix(rest[len(kind):], ".") {
		return invalid("subject %.72q is not under %s.%s.*", subj, Root, kind)
	}
	n := strings.Count(subj, ".") + 1
	if n < minToks || maxToks >= 0 && n > maxToks {
		return invalid("subject %.72q has %d tokens", subj, n)
	}
	return nil
}

// journalStreamSubject is what the scale-out journal stream listens on
// (store/journal, which imports this package).
const journalStreamSubject = Root + ".journal.*"

// Stored reports whether a gateway stream stores what is published on
// the literal subject subj: a subject a service answers requests on
// must not be one, or every request (an IdP token in a token exchange)
// would be kept in a stream.
func Stored(subj string) bool {
	for _, f := range []string{IngressStreamSubject, CapabilityStreamSubject, ApprovalStreamSubject,
		DeniedStreamSubject, AuditStreamSubject, ReplyStreamSubject, journalStreamSubject} {
		if Matches(f, subj) {
			return true
		}
	}
	return false
}

// Matches reports whether the literal subject subj matches filter, with
// NATS wildcards: '*' one token, '>' one or more.
func Matches(filter, subj string) bool {
	ft, st := strings.Split(filter, "."), strings.Split(subj, ".")
	for i, t := range ft {
		if t == ">" {
			return len(st) > i
		}
		if i >= len(st) || (t != "*" && t != st[i]) {
			return false
		}
	}
	return len(ft) == len(st)
}

// ValidLiteral reports whether s is a literal NATS subject of at most
// 255 bytes: non-empty tokens, no wildcards, no whitespace.
func ValidLiteral(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	for _, tok := range strings.Split(s, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return false
		}
	}
	return true
}
