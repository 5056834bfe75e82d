package subjects

import (
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/subjects/reason"
	"github.com/nats-io/nkeys"
)

const (
	agent  = "UBEAFGHZ4WU2HWKV5UISUNSQ3HPVFCDDNRIU2NO67ILH5CAZ2IYTUFAM"
	issuer = "ABIZV3KHMZ6UPCHTZNGXCAFSELE6QI3KVYQ7COJWIM3FZPLJ6R33ZLXM"
	xkey   = "XBSHZ4TUNLRHJXE6F3H7CUYIPJE75ZZM6M7ERNX2N3WHM2OBEEMFAP4Y"
)

// badTokens are refused as a tenant and as any target part.
var badTokens = map[string]string{
	"star":        "*",
	"gt":          ">",
	"dot":         "a.b",
	"space":       "ten ant",
	"tab":         "ten\tant",
	"cr":          "tenant\r",
	"lf":          "tenant\n",
	"crlf":        "tenant\r\nPUB x",
	"js":          "$JS",
	"dollar":      "$sys",
	"empty":       "",
	"overlong":    strings.Repeat("a", 65),
	"uppercase":   "Tenant_a",
	"unicode":     "tenänt",
	"nul":         "ten\x00ant",
	"slash":       "a/b",
	"star-inside": "ten*ant",
}

func TestValidToken(t *testing.T) {
	for _, ok := range []string{"a", "tenant_a", "t-1", "_unroutable", strings.Repeat("z", 64), "0"} {
		if !ValidToken(ok) {
			t.Errorf("ValidToken(%q) = false", ok)
		}
	}
	for name, bad := range badTokens {
		if ValidToken(bad) {
			t.Errorf("ValidToken(%s %q) = true", name, bad)
		}
	}
}

func TestValidTarget(t *testing.T) {
	for _, ok := range []string{"refunds.draft_refund", "a", "a.b.c", strings.Repeat("a.", 127) + "a"} {
		if !ValidTarget(ok) {
			t.Errorf("ValidTarget(%q) = false", ok)
		}
	}
	bad := []string{"", ".", "a.", ".a", "a..b", "refunds.*", "refunds.>", ">", strings.Repeat("a.", 127) + "ab", "a." + strings.Repeat("b", 65)}
	for name, tok := range badTokens {
		if name != "dot" && name != "empty" {
			bad = append(bad, "refunds."+tok, tok+".draft")
		}
	}
	for _, b := range bad {
		if ValidTarget(b) {
			t.Errorf("ValidTarget(%q) = true", b)
		}
	}
}

func TestValidAgent(t *testing.T) {
	if !ValidAgent(agent) {
		t.Fatalf("ValidAgent(%q) = false", agent)
	}
	for name, bad := range map[string]string{
		"issuer":         issuer,
		"xkey":           xkey,
		"lowercase":      strings.ToLower(agent),
		"checksum":       agent[:55] + "A",
		"short":          agent[:55],
		"long":           agent + "A",
		"newline-inside": agent[:20] + "\n" + agent[20:55],
		"crlf-suffix":    agent[:54] + "\r\n",
		"wildcard":       "*",
		"empty":          "",
	} {
		if ValidAgent(bad) {
			t.Errorf("ValidAgent(%s) = true", name)
		}
	}
}

// TestValidKey: each role's keys in the strict form only, and a key never
// for another role.
func TestValidKey(t *testing.T) {
	kp, err := nkeys.CreateServer()
	if err != nil {
		t.Fatal(err)
	}
	server, _ := kp.PublicKey()
	keys := map[byte]string{'A': issuer, 'N': server, 'U': agent, 'X': xkey}
	for role, k := range keys {
		for other := range keys {
			if got := ValidKey(k, other); got != (other == role) {
				t.Errorf("ValidKey(%c key, %c) = %v", role, other, got)
			}
		}
		for name, bad := range map[string]string{
			"line break":  k[:20] + "\n" + k[20:55],
			"crlf suffix": k[:54] + "\r\n",
			"lowercase":   string(role) + strings.ToLower(k[1:]),
			"checksum":    k[:55] + map[bool]string{true: "B", false: "A"}[k[55] == 'A'],
		} {
			if ValidKey(bad, role) {
				t.Errorf("ValidKey(%c key with %s) = true", role, name)
			}
		}
	}
	if ValidKey("S"+agent[1:], 'S') {
		t.Error("ValidKey accepted a role that is not a public key's")
	}
	// The prefix byte is exactly role << 3: its low three bits set give
	// another spelling of a key, with a valid checksum (these were made
	// by setting them and recomputing the CRC), which nkeys decodes for a
	// curve key (it masks them) and the TypeScript SDK refuses.
	for role, alt := range map[byte]string{
		'A': "A6VY5TFOODWRLWK2LP3QXXB2OZW3GCP2Q6OZXAJWT6FYW6H4OTFWHD4A",
		'N': "N55UAOZHCHHQ2POPW4MZURSLBGTOWRLTMKZINFL6KTKU7BPWZHYMX4SB",
		'U': "U7LXP27AQEG2Q55OO3PETO3Q6U3T34ZZRIPZDMXHMRG2QWFRVE7QXBCF",
		'X': "X56NIPYYTW2XT2OOW6JV55IH4LD7UEOML226WLJU7X4AEDLQD32AX3ND",
	} {
		if ValidKey(alt, role) {
			t.Errorf("ValidKey(%c key with prefix bits set: %s) = true", role, alt)
		}
	}
}

// TestValidAgentRemembersOnlyValidKeys: the memo of accepted keys answers
// for exactly the keys the check accepted, and stays bounded however many
// valid keys a sender presents.
func TestValidAgentRemembersOnlyValidKeys(t *testing.T) {
	if !ValidAgent(agent) || !ValidAgent(agent) {
		t.Fatal("a valid key refused")
	}
	for _, bad := range []string{agent[:55] + "A", strings.ToLower(agent), agent[:20] + "\n" + agent[20:55]} {
		if ValidAgent(bad) || ValidAgent(bad) {
			t.Errorf("ValidAgent(%q) = true after the valid key was remembered", bad)
		}
	}
	for i := 0; i < maxKnownAgents+100; i++ {
		// A distinct well-formed key per round, without generating a
		// key pair: the raw bytes only need to differ (and not be one of
		// the small-order points nkeys refuses).
		raw := [32]byte{9}
		binary.BigEndian.PutUint64(raw[8:], uint64(i))
		b, err := nkeys.Encode(nkeys.PrefixByteUser, raw[:])
		if err != nil {
			t.Fatal(err)
		}
		pub := string(b)
		if !ValidAgent(pub) {
			t.Fatalf("fresh key %q refused", pub)
		}
	}
	knownAgents.RLock()
	n := len(knownAgents.keys)
	knownAgents.RUnlock()
	if n == 0 || n > maxKnownAgents {
		t.Errorf("%d keys remembered; want 1..%d", n, maxKnownAgents)
	}
	if !ValidAgent(agent) {
		t.Error("a valid key refused after the memo was emptied")
	}
}

func TestParseIngress(t *testing.T) {
	tests := []struct {
		name string
		subj string
		want IngressRef
		err  reason.Code
	}{
		{"ok/published", "agentgw.in.tenant_a." + agent, IngressRef{-1, "tenant_a", agent}, ""},
		{"ok/partitioned", "agentgw.in.7.tenant_a." + agent, IngressRef{7, "tenant_a", agent}, ""},
		{"ok/partition-0", "agentgw.in.0.tenant_a." + agent, IngressRef{0, "tenant_a", agent}, ""},
		{"ok/partition-max", "agentgw.in.1023.t." + agent, IngressRef{1023, "t", agent}, ""},
		{"ok/numeric-tenant", "agentgw.in.12." + agent, IngressRef{-1, "12", agent}, ""},
		{"deny/partition-too-big", "agentgw.in.1024.t." + agent, IngressRef{}, reason.InvalidSubject},
		{"deny/partition-leading-zero", "agentgw.in.07.t." + agent, IngressRef{}, reason.InvalidSubject},
		{"deny/partition-negative", "agentgw.in.-1.t." + agent, IngressRef{}, reason.InvalidSubject},
		{"deny/partition-wildcard", "agentgw.in.*.t." + agent, IngressRef{}, reason.InvalidSubject},
		{"deny/partition-huge", "agentgw.in.99999999999999999999.t." + agent, IngressRef{}, reason.InvalidSubject},
		{"deny/wildcard-tenant", "agentgw.in.*." + agent, IngressRef{}, reason.InvalidSubject},
		{"deny/wildcard-agent", "agentgw.in.tenant_a.*", IngressRef{}, reason.InvalidSubject},
		{"deny/full-wildcard", "agentgw.in.>", IngressRef{}, reason.InvalidSubject},
		{"deny/gt-agent", "agentgw.in.tenant_a.>", IngressRef{}, reason.InvalidSubject},
		{"deny/empty-tenant", "agentgw.in.." + agent, IngressRef{}, reason.InvalidSubject},
		{"deny/empty-agent", "agentgw.in.tenant_a.", IngressRef{}, reason.InvalidSubject},
		{"deny/space", "agentgw.in.tenant a." + agent, IngressRef{}, reason.InvalidSubject},
		{"deny/crlf", "agentgw.in.tenant_a." + agent + "\r\n", IngressRef{}, reason.InvalidSubject},
		{"deny/js", "$JS.API.STREAM.INFO.AGENTGW_IN", IngressRef{}, reason.InvalidSubject},
		{"deny/js-tenant", "agentgw.in.$JS." + agent, IngressRef{}, reason.InvalidSubject},
		{"deny/uppercase-tenant", "agentgw.in.Tenant_A." + agent, IngressRef{}, reason.InvalidSubject},
		{"deny/overlong-tenant", "agentgw.in." + strings.Repeat("t", 65) + "." + agent, IngressRef{}, reason.InvalidSubject},
		{"deny/overlong-subject", "agentgw.in.t." + agent + strings.Repeat("A", 1<<20), IngressRef{}, reason.InvalidSubject},
		{"deny/agent-not-user-key", "agentgw.in.tenant_a." + issuer, IngressRef{}, reason.InvalidSubject},
		{"deny/agent-bad-checksum", "agentgw.in.tenant_a." + agent[:55] + "A", IngressRef{}, reason.InvalidSubject},
		{"deny/three-tokens", "agentgw.in.tenant_a", IngressRef{}, reason.InvalidSubject},
		{"deny/six-tokens", "agentgw.in.1.tenant_a." + agent + ".x", IngressRef{}, reason.InvalidSubject},
		{"deny/other-root", "other.in.tenant_a." + agent, IngressRef{}, reason.InvalidSubject},
		{"deny/other-kind", "agentgw.cap.tenant_a." + agent, IngressRef{}, reason.InvalidSubject},
		{"deny/case-root", "AGENTGW.in.tenant_a." + agent, IngressRef{}, reason.InvalidSubject},
		{"deny/empty", "", IngressRef{}, reason.InvalidSubject},
		{"deny/leading-dot", ".agentgw.in.tenant_a." + agent, IngressRef{}, reason.InvalidSubject},
		{"deny/trailing-dot", "agentgw.in.tenant_a." + agent + ".", IngressRef{}, reason.InvalidSubject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseIngress(tt.subj)
			if tt.err == "" {
				if err != nil || got != tt.want {
					t.Fatalf("ParseIngress(%.80q) = %+v, %v; want %+v", tt.subj, got, err, tt.want)
				}
				return
			}
			if !errors.Is(err, tt.err) || got != (IngressRef{}) {
				t.Fatalf("ParseIngress(%.80q) = %+v, %v; want %v", tt.subj, got, err, tt.err)
			}
		})
	}
}

func TestBuildersRefuseBadTokens(t *testing.T) {
	for name, bad := range badTokens {
		t.Run(name, func(t *testing.T) {
			calls := map[string]func() (string, error){
				"Ingress/tenant":    func() (string, error) { return Ingress(bad, agent) },
				"Ingress/agent":     func() (string, error) { return Ingress("t", bad) },
				"Capability/tenant": func() (string, error) { return Capability(bad, "a.b") },
				"Capability/target": func() (string, error) { return Capability("t", "a."+bad) },
				"Approval/tenant":   func() (string, error) { return Approval(bad, "a.b") },
				"Approval/target":   func() (string, error) { return Approval("t", bad+".b") },
				"Denied/tenant":     func() (string, error) { return Denied(bad, reason.BadSignature) },
				"Denied/code":       func() (string, error) { return Denied("t", reason.Code(bad)) },
				"Audit":             func() (string, error) { return Audit(bad) },
				"Reply/tenant":      func() (string, error) { return Reply(bad, agent) },
				"Reply/agent":       func() (string, error) { return Reply("t", bad) },
			}
			for call, f := range calls {
				if name == "dot" && (call == "Capability/target" || call == "Approval/target") {
					continue // "a.a.b" is a valid dotted target
				}
				if s, err := f(); !errors.Is(err, reason.InvalidSubject) || s != "" {
					t.Errorf("%s(%q) = %q, %v; want %v", call, bad, s, err, reason.InvalidSubject)
				}
			}
		})
	}
}

func TestRoundTrips(t *testing.T) {
	s, err := Ingress("tenant_a", agent)
	if err != nil || s != "agentgw.in.tenant_a."+agent {
		t.Fatalf("Ingress = %q, %v", s, err)
	}
	if ref, err := ParseIngress(s); err != nil || ref != (IngressRef{-1, "tenant_a", agent}) {
		t.Errorf("ParseIngress(Ingress) = %+v, %v", ref, err)
	}
	for _, kind := range []struct {
		build func(string, string) (string, error)
		parse func(string) (string, string, error)
		want  string
	}{
		{Capability, ParseCapability, "agentgw.cap.tenant_a.refunds.draft_refund"},
		{Approval, ParseApproval, "agentgw.approval.tenant_a.refunds.draft_refund"},
	} {
		s, err := kind.build("tenant_a", "refunds.draft_refund")
		if err != nil || s != kind.want {
			t.Errorf("build = %q, %v; want %q", s, err, kind.want)
		}
		tn, tg, err := kind.parse(s)
		if err != nil || tn != "tenant_a" || tg != "refunds.draft_refund" {
			t.Errorf("parse(%q) = %q, %q, %v", s, tn, tg, err)
		}
		for _, bad := range []string{s + ".", s + ".*", s + ".>", strings.Replace(s, "tenant_a", "*", 1), s[:strings.LastIndex(s, "tenant_a")+8], s + " x"} {
			if _, _, err := kind.parse(bad); !errors.Is(err, reason.InvalidSubject) {
				t.Errorf("parse(%q) = %v; want %v", bad, err, reason.InvalidSubject)
			}
		}
	}
	for _, info := range reason.All {
		s, err := Denied("tenant_a", info.Code)
		if err != nil || s != "agentgw.denied.tenant_a."+string(info.Code) {
			t.Errorf("Denied(%s) = %q, %v", info.Code, s, err)
		}
		tn, code, err := ParseDenied(s)
		if err != nil || tn != "tenant_a" || code != info.Code {
			t.Errorf("ParseDenied(%q) = %q, %q, %v", s, tn, code, err)
		}
	}
	if s, err := Denied(UnroutableTenant, reason.InvalidSubject); err != nil || s != "agentgw.denied._unroutable.invalid_subject" {
		t.Errorf("Denied(UnroutableTenant) = %q, %v", s, err)
	}
	if _, _, err := ParseDenied("agentgw.denied.tenant_a.no_such_reason"); !errors.Is(err, reason.InvalidSubject) {
		t.Errorf("ParseDenied(unknown code) = %v", err)
	}
	s, _ = Audit("tenant_a")
	if tn, err := ParseAudit(s); s != "agentgw.audit.tenant_a" || tn != "tenant_a" || err != nil {
		t.Errorf("Audit round trip: %q → %q, %v", s, tn, err)
	}
	s, _ = Reply("tenant_a", agent)
	if tn, ag, err := ParseReply(s); s != "agentgw.reply.tenant_a."+agent || tn != "tenant_a" || ag != agent || err != nil {
		t.Errorf("Reply round trip: %q → %q %q, %v", s, tn, ag, err)
	}
	for _, bad := range []string{"agentgw.audit.*", "agentgw.audit.a.b", "agentgw.audit.", "agentgw.audit"} {
		if _, err := ParseAudit(bad); !errors.Is(err, reason.InvalidSubject) {
			t.Errorf("ParseAudit(%q) = %v", bad, err)
		}
	}
	for _, bad := range []string{"agentgw.reply.t.*", "agentgw.reply.t." + issuer, "agentgw.reply.t"} {
		if _, _, err := ParseReply(bad); !errors.Is(err, reason.InvalidSubject) {
			t.Errorf("ParseReply(%q) = %v", bad, err)
		}
	}
}

func TestPartitioning(t *testing.T) {
	src, dest := IngressTransform(8)
	if src != "agentgw.in.*.*" || dest != "agentgw.in.{{partition(8,1,2)}}.{{wildcard(1)}}.{{wildcard(2)}}" {
		t.Errorf("IngressTransform(8) = %q, %q", src, dest)
	}
	if got := PartitionFilter(3); got != "agentgw.in.3.*.*" {
		t.Errorf("PartitionFilter(3) = %q", got)
	}
	for _, n := range []int{0, -1, MaxPartitions + 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("IngressTransform(%d) did not panic", n)
				}
			}()
			IngressTransform(n)
		}()
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("PartitionFilter(-1) did not panic")
			}
		}()
		PartitionFilter(-1)
	}()
	// The stream's subject must not let an agent publish the five-token
	// stored form directly (and so choose its partition).
	if strings.Count(IngressStreamSubject, ".") != 3 || strings.Contains(IngressStreamSubject, ">") {
		t.Errorf("IngressStreamSubject = %q; want exactly four tokens", IngressStreamSubject)
	}
}

func TestReplyInbox(t *testing.T) {
	for _, s := range []string{"_INBOX.abc", "_INBOX.Ab9-_x.42", "_R_.aBc.dEf", "_INBOX." + strings.Repeat("a", 249),
		"_GR_.abc123.XyZ789._INBOX.abc", "_GR_.A1b2C3.d4E5f6._R_.x.y"} {
		if !ReplyInbox(s) {
			t.Errorf("ReplyInbox(%q) = false; want true", s)
		}
	}
	for _, s := range []string{
		"", "agentgw.audit.tenant_a", "$JS.ACK.AGENTGW_IN.agentgw.1.1.1.1.1", "$JS.API.CONSUMER.DELETE.AGENTGW_IN.x",
		"agentgw.in.tenant_a.UABC", "_INBOX", "_INBOX.", "_INBOX..a", "_INBOX.a.", "_INBOX.>", "_INBOX.*.a", "_INBOXX.a",
		"_inbox.a", "_R_", "_R_.", "_INBOX.a b", "_INBOX.a\tb", "_INBOX.a\x00", "_INBOX.é", "_INBOX." + strings.Repeat("a", 250),
		"_GR_.abc.def.agentgw.audit.tenant_a", "_GR_.abc._INBOX.x", "_GR_.a-b.c._INBOX.x", "_GR_.a.b._GR_.c.d._INBOX.x",
		"_GR_..b._INBOX.x", "_GR_.a.*._INBOX.x", "_GR_.a.b.", "_GR_.a.b",
	} {
		if ReplyInbox(s) {
			t.Errorf("ReplyInbox(%q) = true; want false", s)
		}
	}
}

// TestStored: the subjects a gateway stream stores, and ones beside
// them it does not (a request subject may be one of those).
func TestStored(t *testing.T) {
	for subj, want := range map[string]bool{
		"agentgw.in.tenant_a.exchange":    true,
		"agentgw.cap.tenant_a.kb.search":  true,
		"agentgw.approval.tenant_a.x":     true,
		"agentgw.denied.tenant_a.revoked": true,
		"agentgw.audit.tenant_a":          true,
		"agentgw.reply.tenant_a.x":        true,
		"agentgw.journal.3":               true,
		"agentgw.journal.loss":            true,
		"agentgw.exchange":                false,
		"agentgw.in.tenant_a":             false,
		"agentgw.in.0.tenant_a.x":         false,
		"agentgw.audit.tenant_a.x":        false,
		"agentgw.cap":                     false,
		"other.exchange":                  false,
	} {
		if got := Stored(subj); got != want {
			t.Errorf("Stored(%q) = %v; want %v", subj, got, want)
		}
	}
	for subj, want := range map[string]bool{"agentgw.exchange": true, "a": true, "a.*": false, "a.>": false, "a..b": false, "": false, "a b": false} {
		if got := ValidLiteral(subj); got != want {
			t.Errorf("ValidLiteral(%q) = %v; want %v", subj, got, want)
		}
	}
}
