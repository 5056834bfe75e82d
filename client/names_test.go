package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/internal/natstest"
	"github.com/agentgw/agentgw/subjects"
)

func TestConsumerNames(t *testing.T) {
	if got := CapabilityConsumerName("tenant_a", "refunds.draft_refund"); got != "tenant_a~refunds~draft_refund" {
		t.Errorf("CapabilityConsumerName = %q", got)
	}
	if got := ApprovalConsumerName("tenant_a"); got != "tenant_a-approvals" {
		t.Errorf("ApprovalConsumerName = %q", got)
	}
	if MaxConsumerNameLen != server.JSMaxNameLen {
		t.Errorf("MaxConsumerNameLen = %d; nats-server's JSMaxNameLen is %d", MaxConsumerNameLen, server.JSMaxNameLen)
	}
}

// parseCapabilityConsumerName is the inverse CapabilityConsumerName's
// documentation gives: the first "~" ends the tenant, every later one is
// a dot of the target.
func parseCapabilityConsumerName(name string) (tenant, target string, ok bool) {
	tenant, rest, ok := strings.Cut(name, ConsumerNameSep)
	return tenant, strings.ReplaceAll(rest, ConsumerNameSep, "."), ok
}

// consumerNamePairs are (tenant, target) pairs that a name joining
// tenant and target with "-", dots as "_", would not tell apart: two
// targets of one tenant, and two tenants.
var consumerNamePairs = [][2][2]string{
	{{"tenant_a", "refunds.issue"}, {"tenant_a", "refunds_issue"}},
	{{"a", "b-c"}, {"a-b", "c"}},
	{{"a", "b-c.d"}, {"a-b", "c_d"}},
	{{"t", "x.y.z"}, {"t", "x_y.z"}},
}

// TestCapabilityConsumerNameIsInjective: two (tenant, target) pairs never
// share a name, and the name gives back its tenant and target.
func TestCapabilityConsumerNameIsInjective(t *testing.T) {
	for _, p := range consumerNamePairs {
		a, b := CapabilityConsumerName(p[0][0], p[0][1]), CapabilityConsumerName(p[1][0], p[1][1])
		if a == b {
			t.Errorf("tenant %s target %s and tenant %s target %s share the consumer name %q", p[0][0], p[0][1], p[1][0], p[1][1], a)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	// A small alphabet with every separator-like byte makes near
	// collisions likely.
	const alphabet = "ab_-"
	token := func() string {
		b := make([]byte, 1+r.IntN(4))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	seen := map[string][2]string{}
	for range 20000 {
		tenant := token()
		parts := make([]string, 1+r.IntN(3))
		for i := range parts {
			parts[i] = token()
		}
		target := strings.Join(parts, ".")
		if !subjects.ValidToken(tenant) || !subjects.ValidTarget(target) {
			t.Fatalf("generated an invalid pair %q %q", tenant, target)
		}
		name := CapabilityConsumerName(tenant, target)
		if gt, gg, ok := parseCapabilityConsumerName(name); !ok || gt != tenant || gg != target {
			t.Fatalf("%q reads as tenant %q target %q; want %q %q", name, gt, gg, tenant, target)
		}
		if prev, ok := seen[name]; ok && prev != [2]string{tenant, target} {
			t.Fatalf("tenant %s target %s and tenant %s target %s share the consumer name %q", prev[0], prev[1], tenant, target, name)
		}
		seen[name] = [2]string{tenant, target}
		if err := CheckConsumerName(name); err != nil {
			t.Fatalf("CheckConsumerName(%q) = %v", name, err)
		}
	}
}

// FuzzCapabilityConsumerName: for any valid tenant and target the name
// reads back as them, so no two pairs share it.
func FuzzCapabilityConsumerName(f *testing.F) {
	for _, p := range consumerNamePairs {
		f.Add(p[0][0], p[0][1])
		f.Add(p[1][0], p[1][1])
	}
	f.Fuzz(func(t *testing.T, tenant, target string) {
		if !subjects.ValidToken(tenant) || !subjects.ValidTarget(target) {
			return
		}
		name := CapabilityConsumerName(tenant, target)
		if gt, gg, ok := parseCapabilityConsumerName(name); !ok || gt != tenant || gg != target {
			t.Fatalf("%q reads as tenant %q target %q; want %q %q", name, gt, gg, tenant, target)
		}
	})
}

func TestConsumerNamesPlan(t *testing.T) {
	p := ConsumerNames{}
	if err := p.Add("tenant_a~refunds~issue", "tenant_a refunds.issue"); err != nil {
		t.Fatal(err)
	}
	if err := p.Add("tenant_a~refunds~issue", "tenant_a refunds.issue"); err != nil {
		t.Errorf("planning a name again for the same use = %v", err)
	}
	err := p.Add("tenant_a~refunds~issue", "the bridge's refunds.issue")
	if !errors.Is(err, ErrConsumerName) || !strings.Contains(err.Error(), "tenant_a refunds.issue") || !strings.Contains(err.Error(), "the bridge's refunds.issue") {
		t.Errorf("a name planned twice = %v; want ErrConsumerName naming both uses", err)
	}
	for _, bad := range []string{"", strings.Repeat("a", MaxConsumerNameLen+1), "a.b", "a b", "a*", "a>", "a/b", `a\b`, "a\tb"} {
		if err := p.Add(bad, "x"); !errors.Is(err, ErrConsumerName) {
			t.Errorf("Add(%.20q) = %v; want ErrConsumerName", bad, err)
		}
	}
	if err := p.Add(strings.Repeat("a", MaxConsumerNameLen), "longest"); err != nil {
		t.Errorf("a name of MaxConsumerNameLen bytes = %v", err)
	}
	if len(p) != 2 {
		t.Errorf("plan = %d names; want the two accepted", len(p))
	}
}

// TestConsumerNameOnServer: nats.go and nats-server take the names as
// consumer names (and the API subjects holding them), and the longest
// name CheckConsumerName accepts.
func TestConsumerNameOnServer(t *testing.T) {
	js, err := jetstream.New(natstest.Connect(t, natstest.Start(t, natstest.Options{})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: StreamCapability, Subjects: []string{"agentgw.cap.>"}}); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("t", 64) + strings.Repeat(".x", 95)
	if !subjects.ValidTarget(long) {
		t.Fatal("the long target is not valid")
	}
	longName := CapabilityConsumerName("a", long)[:MaxConsumerNameLen]
	for _, name := range []string{CapabilityConsumerName("a-b", "c.d_e"), CapabilityConsumerName("a", "b-c.d"), longName} {
		if err := CheckConsumerName(name); err != nil {
			t.Fatal(err)
		}
		if _, err := js.CreateOrUpdateConsumer(ctx, StreamCapability, jetstream.ConsumerConfig{
			Durable: name, FilterSubject: "agentgw.cap.a.b", AckPolicy: jetstream.AckExplicitPolicy,
		}); err != nil {
			t.Fatalf("create %q: %v", name, err)
		}
		c, err := js.Consumer(ctx, StreamCapability, name)
		if err != nil {
			t.Fatalf("bind %q: %v", name, err)
		}
		if got := c.CachedInfo().Name; got != name {
			t.Errorf("consumer %q is named %q", name, got)
		}
	}
	tooLong := CapabilityConsumerName("a", long)
	if err := CheckConsumerName(tooLong); !errors.Is(err, ErrConsumerName) {
		t.Fatalf("CheckConsumerName of %d bytes = %v", len(tooLong), err)
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, StreamCapability, jetstream.ConsumerConfig{
		Durable: tooLong, FilterSubject: "agentgw.cap.a.b", AckPolicy: jetstream.AckExplicitPolicy,
	}); err == nil {
		t.Errorf("nats-server took a consumer name of %d bytes, which CheckConsumerName refuses", len(tooLong))
	}
}
