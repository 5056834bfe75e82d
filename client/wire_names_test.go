package client

import (
	"strings"
	"testing"
)

// consumers.json: the names of the consumers an administrator pre-creates
// (docs/wire.md, "Consumer names"), which every SDK binds by name.

type wvConsumerNamesFile struct {
	About      string                 `json:"about"`
	Capability []wvCapabilityConsumer `json:"capability"`
	Approval   []wvApprovalConsumer   `json:"approval"`
}

type wvCapabilityConsumer struct {
	Tenant string `json:"tenant"`
	Target string `json:"target"`
	Name   string `json:"name"`
}

type wvApprovalConsumer struct {
	Tenant string `json:"tenant"`
	Name   string `json:"name"`
}

// wvConsumerNames holds the scenario's consumers, pairs whose names must
// differ though they differ only where a dot meets an underscore or a
// hyphen meets the tenant, and a target of the longest catalog length.
func wvConsumerNames() wvConsumerNamesFile {
	f := wvConsumerNamesFile{
		About: "consumer names (docs/wire.md, \"Consumer names\"): a capability consumer is <tenant>~<target with every . as ~>, " +
			"an approval queue <tenant>-approvals. No two entries of capability share a name.",
	}
	long := strings.Repeat("x", 64) + "." + strings.Repeat("y", 63) // 128 bytes: the longest catalog target
	for _, p := range [][2]string{
		{wvTenant, "refunds.draft_refund"}, {wvTenant, "kb.search"}, {wvTenant, "payments.send"},
		{wvTenant, "refunds.issue"}, {wvTenant, "refunds_issue"},
		{"a", "b-c"}, {"a-b", "c"},
		{"a", "b-c.d"}, {"a-b", "c_d"}, {"a-b", "c.d"},
		{"t", "x.y.z"}, {"t", "x_y.z"}, {"t", "x.y_z"}, {"t", "x_y_z"},
		{strings.Repeat("t", 64), long},
	} {
		f.Capability = append(f.Capability, wvCapabilityConsumer{Tenant: p[0], Target: p[1], Name: CapabilityConsumerName(p[0], p[1])})
	}
	for _, tn := range []string{wvTenant, "a", "a-b"} {
		f.Approval = append(f.Approval, wvApprovalConsumer{Tenant: tn, Name: ApprovalConsumerName(tn)})
	}
	return f
}

// TestWireVectorConsumerNames: every name in consumers.json is the one
// this SDK gives, is a name nats-server takes, and is no other entry's.
func TestWireVectorConsumerNames(t *testing.T) {
	f := wvLoad[wvConsumerNamesFile](t, "consumers.json")
	seen := ConsumerNames{}
	for _, c := range f.Capability {
		if got := CapabilityConsumerName(c.Tenant, c.Target); got != c.Name {
			t.Errorf("CapabilityConsumerName(%s, %s) = %q; the vectors say %q", c.Tenant, c.Target, got, c.Name)
		}
		if err := seen.Add(c.Name, c.Tenant+" "+c.Target); err != nil {
			t.Error(err)
		}
	}
	for _, a := range f.Approval {
		if got := ApprovalConsumerName(a.Tenant); got != a.Name {
			t.Errorf("ApprovalConsumerName(%s) = %q; the vectors say %q", a.Tenant, got, a.Name)
		}
	}
}
