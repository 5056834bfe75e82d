package identity

import (
	"errors"
	"strings"
	"testing"

	"github.com/agentgw/agentgw/subjects/reason"
)

func TestSealedCredential(t *testing.T) {
	newBox := func() *Box {
		kp, err := NewCurve()
		if err != nil {
			t.Fatal(err)
		}
		b, err := NewBox(kp)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	gw, other := newBox(), newBox()
	const token = "eyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5LW5rZXkifQ.e30.c2ln"
	body := []byte(`{"v":1}`)
	sealed, err := gw.SealCredential(token, body)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(sealed, "eyJ") || strings.Contains(sealed, "c2ln") {
		t.Fatalf("SealCredential = %q; holds the credential readable", sealed)
	}
	got, err := gw.OpenCredential(sealed, gw.PublicKey(), body)
	if err != nil || got.Reveal() != token {
		t.Fatalf("OpenCredential = %v, %v; want the credential back", got, err)
	}
	again, _ := gw.SealCredential(token, body)
	if again == sealed {
		t.Error("two seals of one credential are identical: the nonce is not random")
	}
	for _, tc := range []struct {
		name           string
		box            *Box
		sealed, sealTo string
		body           []byte
		want           reason.Code
	}{
		{"deny/another_body", gw, sealed, gw.PublicKey(), []byte(`{"v":2}`), reason.SealBroken},
		{"deny/another_key", other, sealed, gw.PublicKey(), body, reason.SealMismatch},
		{"deny/another_key_claimed_its_own", other, sealed, other.PublicKey(), body, reason.SealBroken},
		{"deny/not_base64", gw, "!!", gw.PublicKey(), body, reason.SealBroken},
		{"deny/truncated", gw, sealed[:20], gw.PublicKey(), body, reason.SealBroken},
		{"deny/no_key", gw, sealed, "", body, reason.SealMismatch},
		// One encoding: no CR or LF (Go's base64 decoder skips them).
		{"deny/line_break", gw, sealed[:20] + "\n" + sealed[20:], gw.PublicKey(), body, reason.SealBroken},
		{"deny/carriage_return", gw, sealed + "\r", gw.PublicKey(), body, reason.SealBroken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := tc.box.OpenCredential(tc.sealed, tc.sealTo, tc.body)
			if !errors.Is(err, tc.want) || tok != "" {
				t.Fatalf("OpenCredential = %q, %v; want %s", tok.Reveal(), err, tc.want)
			}
			if strings.Contains(err.Error(), token) {
				t.Errorf("error %q holds the credential", err)
			}
		})
	}
	// Another box's own-key seal never opens here, even for the same body.
	foreign, _ := other.SealCredential(token, body)
	if _, err := gw.OpenCredential(foreign, gw.PublicKey(), body); !errors.Is(err, reason.SealBroken) {
		t.Errorf("OpenCredential(another key's seal) = %v; want seal_broken", err)
	}
}
