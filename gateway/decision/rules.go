package decision

import (
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/subjects"
)

// MaxPolicyIDs is the most policy ids a decision token names.
const MaxPolicyIDs = 64

const maxUnixSecond = 253402300799 // 9999-12-31T23:59:59Z

// check returns every claim rule w breaks. Details never echo claim
// values that are not already known to be safe.
func check(w *wire) []error {
	var p []error
	add := func(format string, args ...any) { p = append(p, fmt.Errorf(format, args...)) }
	n := &w.Nats
	if n.Type != Type || n.Version != version {
		add("claim type or version is not %s v%d", Type, version)
	}
	if !safeID(w.ID, 1) {
		add("jti missing or not [A-Za-z0-9._:-]{1,128}")
	}
	if !validGatewayKey(w.Issuer) {
		add("iss is not a public server ('N') nkey")
	}
	if !subjects.ValidAgent(w.Subject) {
		add("sub is not a public user ('U') nkey")
	}
	if !safeID(w.Audience, 1) {
		add("aud missing or not [A-Za-z0-9._:-]{1,128}")
	}
	switch {
	case w.IssuedAt <= 0 || w.IssuedAt > maxUnixSecond || w.Expires <= 0 || w.Expires > maxUnixSecond:
		add("iat or exp missing or out of range")
	case w.Expires <= w.IssuedAt:
		add("exp is not after iat")
	}
	if !identity.ValidTenant(n.Tenant) {
		add("tenant missing or not [a-z0-9_-]{1,64}")
	}
	if !safeID(n.Scope, 1) {
		add("scope missing or not one concrete [A-Za-z0-9._:-]{1,128} scope")
	}
	if n.Act.Subject != w.Subject || n.Act.Via != w.Issuer {
		add("act is not {sub: sub, via: iss}")
	}
	if n.Act.Approver != "" && (!subjects.ValidAgent(n.Act.Approver) || n.Act.Approver == w.Subject) {
		add("act.approver is not a user ('U') nkey other than sub")
	}
	if !lowerHex(n.TraceID, 32) || n.TraceID == "00000000000000000000000000000000" {
		add("trace_id is not 32 lowercase hex, not all zero")
	}
	if len(n.MessageID) < 16 || !safeID(n.MessageID, 16) {
		add("message_id is not 16-128 of [A-Za-z0-9._:-]")
	}
	if !lowerHex(n.BodyDigest, 64) {
		add("body_digest is not 64 lowercase hex")
	}
	if !lowerHex(n.PayloadDigest, 64) {
		add("payload_digest is not 64 lowercase hex")
	}
	if len(n.PolicyIDs) > MaxPolicyIDs {
		add("more than %d policy_ids", MaxPolicyIDs)
	}
	for i, id := range n.PolicyIDs {
		if !safeID(id, 1) {
			add("policy_ids[%d] is not [A-Za-z0-9._:-]{1,128}", i)
		}
	}
	if n.PolicyVersion != "" && !safeID(n.PolicyVersion, 1) {
		add("policy_version is not [A-Za-z0-9._:-]{0,128}")
	}
	switch n.Route {
	case RouteAllow, RouteReply, RouteNotice, RouteApproval:
	default:
		add("route is none of %s, %s, %s, %s", RouteAllow, RouteReply, RouteNotice, RouteApproval)
	}
	return p
}

// validGatewayKey reports whether s is a public server ('N') nkey
// (subjects.ValidKey). A gateway signs every token with one key, and a
// consumer trusts few: the last key found valid is remembered, which
// spares a base32 decoding per token.
func validGatewayKey(s string) bool {
	if k := lastGatewayKey.Load(); k != nil && *k == s {
		return true
	}
	if !subjects.ValidKey(s, 'N') {
		return false
	}
	k := strings.Clone(s) // s may be part of a token's claims
	lastGatewayKey.Store(&k)
	return true
}

var lastGatewayKey atomic.Pointer[string]

// MaxClaimID is the most characters of an identifier claim (jti, aud,
// scope, message_id, policy ids and version). A catalog target is a
// token's aud and its scope the token's scope, so the catalog refuses,
// when it loads, a target or scope that ValidClaimID refuses
// (catalog.Parse).
const MaxClaimID = 128

// ValidClaimID reports whether s can be an identifier claim: 1 to
// MaxClaimID characters of [A-Za-z0-9._:-].
func ValidClaimID(s string) bool { return safeID(s, 1) }

// safeID reports whether s is min–MaxClaimID characters of [A-Za-z0-9._:-].
func safeID(s string, min int) bool {
	if len(s) < min || len(s) > MaxClaimID {
		return false
	}
	return allIn(s, &idChars)
}

func lowerHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	return allIn(s, &hexChars)
}

// idChars ([A-Za-z0-9._:-]) and hexChars ([0-9a-f]) are the claims'
// alphabets as tables: one lookup per byte. A chain of range comparisons
// branches on which range a byte is in, and random ids and digests make
// that branch a coin toss on every byte (BenchmarkPrepare).
var idChars, hexChars = func() (id, hex [256]bool) {
	for c := range 256 {
		digit, lower := '0' <= c && c <= '9', 'a' <= c && c <= 'z'
		id[c] = digit || lower || 'A' <= c && c <= 'Z' || c == '.' || c == '_' || c == ':' || c == '-'
		hex[c] = digit || 'a' <= c && c <= 'f'
	}
	return
}()

func allIn(s string, t *[256]bool) bool {
	for i := 0; i < len(s); i++ {
		if !t[s[i]] {
			return false
		}
	}
	return true
}
