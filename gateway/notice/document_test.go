package notice

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const docToken = "eyJ0eXAiOiJ4In0.eyJhIjoxfQ.AAEB.c2ln-_"

func TestDocRoundTrip(t *testing.T) {
	n := Notice{MessageID: "m1", Route: RouteAllow, Target: "billing.refund"}
	body, err := n.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := AppendDoc(nil, docToken, body)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"v":1,"decision":"` + docToken + `","notice":` + string(body) + `}`; string(doc) != want {
		t.Fatalf("AppendDoc = %s; want %s", doc, want)
	}
	tok, got, err := ParseDoc(doc)
	if err != nil || tok != docToken || !bytes.Equal(got, body) {
		t.Fatalf("ParseDoc = %q, %s, %v; want the token and the notice's bytes", tok, got, err)
	}
	// Members in another order, with whitespace around them: the notice's
	// own bytes come back verbatim.
	spaced := ` { "notice" : {"route":"deny", "message_id":"m","reason":"x"} , "decision":"` + docToken + `", "v":1 } `
	if tok, got, err := ParseDoc([]byte(spaced)); err != nil || tok != docToken || string(got) != `{"route":"deny", "message_id":"m","reason":"x"}` {
		t.Errorf("ParseDoc(reordered) = %q, %s, %v", tok, got, err)
	}
}

func TestParseDocStrict(t *testing.T) {
	n := `{"message_id":"m","route":"deny","reason":"x"}`
	bad := map[string]string{
		"bare notice":       n,
		"unknown member":    `{"v":1,"decision":"t","notice":` + n + `,"extra":1}`,
		"member in case":    `{"v":1,"Decision":"t","notice":` + n + `}`,
		"duplicate member":  `{"v":1,"decision":"t","decision":"u","notice":` + n + `}`,
		"version 2":         `{"v":2,"decision":"t","notice":` + n + `}`,
		"version string":    `{"v":"1","decision":"t","notice":` + n + `}`,
		"version 1.0":       `{"v":1.0,"decision":"t","notice":` + n + `}`,
		"no version":        `{"decision":"t","notice":` + n + `}`,
		"empty token":       `{"v":1,"decision":"","notice":` + n + `}`,
		"null token":        `{"v":1,"decision":null,"notice":` + n + `}`,
		"token not string":  `{"v":1,"decision":1,"notice":` + n + `}`,
		"no notice":         `{"v":1,"decision":"t"}`,
		"notice not object": `{"v":1,"decision":"t","notice":"` + strings.ReplaceAll(n, `"`, `\"`) + `"}`,
		"trailing data":     `{"v":1,"decision":"t","notice":` + n + `} {}`,
		"truncated":         `{"v":1,"decision":"t","notice":` + n,
		"not an object":     `[]`,
		"empty":             ``,
	}
	for name, in := range bad {
		if _, _, err := ParseDoc([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: ParseDoc(%s) = %v; want ErrInvalid", name, in, err)
		} else if strings.Contains(err.Error(), "reason") {
			t.Errorf("%s: error %q quotes the document", name, err)
		}
	}
	big := `{"v":1,"decision":"` + strings.Repeat("a", MaxDocSize) + `","notice":` + n + `}`
	if _, _, err := ParseDoc([]byte(big)); !errors.Is(err, ErrInvalid) {
		t.Errorf("ParseDoc(oversized) = %v; want ErrInvalid", err)
	}
}

func TestAppendDocRefuses(t *testing.T) {
	for name, c := range map[string]struct{ token, notice string }{
		"empty token":       {"", `{}`},
		"token with quote":  {`a"b`, `{}`},
		"notice not object": {docToken, `[]`},
		"empty notice":      {docToken, ``},
	} {
		if _, err := AppendDoc(nil, c.token, []byte(c.notice)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: AppendDoc = %v; want ErrInvalid", name, err)
		}
	}
}

// TestAppendDocWith: a token written by a function gives AppendDoc's
// bytes, and what it writes is checked as AppendDoc's token is.
func TestAppendDocWith(t *testing.T) {
	n := []byte(`{"message_id":"m1","route":"deny"}`)
	want, err := AppendDoc([]byte("x"), docToken, n)
	if err != nil {
		t.Fatal(err)
	}
	got, err := AppendDocWith([]byte("x"), func(b []byte) []byte { return append(b, docToken...) }, n)
	if err != nil || string(got) != string(want) {
		t.Fatalf("AppendDocWith = %s, %v; want %s", got, err, want)
	}
	for name, bad := range map[string]string{"no token": "", "quote in token": `a"b`} {
		b, err := AppendDocWith([]byte("x"), func(b []byte) []byte { return append(b, bad...) }, n)
		if !errors.Is(err, ErrInvalid) || string(b) != "x" {
			t.Errorf("%s: AppendDocWith = %q, %v; want the buffer unchanged and ErrInvalid", name, b, err)
		}
	}
}
