package subjects

import (
	"strconv"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/subjects/reason"
)

// FuzzParseIngress: ParseIngress never panics, refuses with InvalidSubject
// only, and what it accepts is exactly what Ingress (or the partition
// transform) produces, so it can be rebuilt byte for byte.
func FuzzParseIngress(f *testing.F) {
	for _, s := range []string{
		"agentgw.in.tenant_a." + agent,
		"agentgw.in.7.tenant_a." + agent,
		"agentgw.in.*." + agent,
		"agentgw.in.tenant_a.>",
		"agentgw.in..",
		"agentgw.in.tenant_a." + agent + "\r\n",
		"$JS.API.>",
		"agentgw.in.01.t." + agent,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, subj string) {
		ref, err := ParseIngress(subj)
		if err != nil {
			if reason.Of(err) != reason.InvalidSubject || ref != (IngressRef{}) {
				t.Fatalf("ParseIngress(%q) = %+v, %v", subj, ref, err)
			}
			return
		}
		if !ValidToken(ref.Tenant) || !ValidAgent(ref.Agent) || ref.Partition < -1 || ref.Partition >= MaxPartitions {
			t.Fatalf("ParseIngress(%q) = %+v: invalid parts accepted", subj, ref)
		}
		if strings.ContainsAny(subj, "*> \t\r\n$") {
			t.Fatalf("ParseIngress(%q) accepted a forbidden character", subj)
		}
		want, err := Ingress(ref.Tenant, ref.Agent)
		if err != nil {
			t.Fatalf("Ingress(%+v) = %v", ref, err)
		}
		if ref.Partition >= 0 {
			want = "agentgw.in." + strconv.Itoa(ref.Partition) + want[len("agentgw.in"):]
		}
		if want != subj {
			t.Fatalf("ParseIngress(%q) = %+v, which rebuilds as %q", subj, ref, want)
		}
	})
}
