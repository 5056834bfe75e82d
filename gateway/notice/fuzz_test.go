package notice

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// FuzzParseDoc: ParseDoc never panics on any bytes and refuses only with
// ErrInvalid; what it accepts gives back a token and the notice's bytes
// verbatim, and AppendDoc of those parses to the same again.
func FuzzParseDoc(f *testing.F) {
	body, err := (&Notice{MessageID: "m1", Route: RouteAllow, Target: "billing.refund"}).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	doc, err := AppendDoc(nil, docToken, body)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(doc)
	f.Add([]byte(`{"notice":{"route":"deny"}, "v":1 ,"decision":"x"}`))
	f.Add([]byte(`{"v":1,"decision":"x","notice":{}} trailing`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		tok, n, err := ParseDoc(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ParseDoc(%q) = %v; want ErrInvalid", raw, err)
			}
			return
		}
		if tok == "" || len(n) == 0 || !bytes.Contains(raw, n) {
			t.Fatalf("ParseDoc(%q) = %q, %q: want a token and the notice's bytes as sent", raw, tok, n)
		}
		again, err := AppendDoc(nil, tok, n)
		if err != nil {
			return // AppendDoc writes what the gateway signs; a document of others' may not be one
		}
		tok2, n2, err := ParseDoc(again)
		if err != nil || tok2 != tok || !bytes.Equal(n2, n) {
			t.Fatalf("ParseDoc(AppendDoc(%q, %q)) = %q, %q, %v", tok, n, tok2, n2, err)
		}
	})
}

// FuzzParse: Parse never panics and refuses only with ErrInvalid; what
// it accepts has a known route and survives Marshal and Parse unchanged.
func FuzzParse(f *testing.F) {
	for _, n := range []Notice{
		{MessageID: "m1", Route: RouteAllow, Target: "billing.refund"},
		{MessageID: "m3", Route: RouteDeny, Reason: "policy_denied"},
		{MessageID: "m4", Route: RouteDeny, Reason: "approval_denied", Answers: "m9", Answer: AnswerDeny},
	} {
		b, err := n.Marshal()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"message_id":"m2","route":"approval","approval_id":"m2","deadline":"2026-01-02T03:04:05Z"}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		n, err := Parse(raw)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) = %v; want ErrInvalid", raw, err)
			}
			return
		}
		switch n.Route {
		case RouteAllow, RouteApproval, RouteDeny:
		default:
			t.Fatalf("Parse(%q) accepted route %q", raw, n.Route)
		}
		b, err := n.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed notice %+v: %v", n, err)
		}
		n2, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(Marshal(Parse(%q))) = %v", raw, err)
		}
		if !reflect.DeepEqual(n, n2) {
			t.Fatalf("round trip changed the notice: %+v, then %+v", n, n2)
		}
	})
}
