package delivery

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const env = `{"v":1,"message_id":"m-0123456789abcdef","payload":{"plain":{"q":"x"}}}`

func sample() Doc {
	return Doc{Decision: "eyJhbGciOiJlZDI1NTE5In0.eyJ9.cHJvb2Y.c2ln", Signature: "c2ln_-",
		Sealed: "c2VhbGVk", SealedFrom: "XABC234", Envelope: []byte(env)}
}

func TestRoundTripKeepsEnvelopeBytes(t *testing.T) {
	for _, d := range []Doc{sample(), {Decision: "a.b.c", Envelope: []byte(`{ "spaced" : [1, 2] }`)}} {
		b, err := d.Append(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(b) {
			t.Fatalf("Append wrote invalid JSON: %s", b)
		}
		if len(b) > d.Size() {
			t.Errorf("Size() = %d < encoded %d", d.Size(), len(b))
		}
		got, err := Parse(b, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Envelope, d.Envelope) {
			t.Errorf("envelope = %s; want the exact bytes %s", got.Envelope, d.Envelope)
		}
		got.Envelope, d.Envelope = nil, nil
		if got.Decision != d.Decision || got.Signature != d.Signature || got.Sealed != d.Sealed || got.SealedFrom != d.SealedFrom {
			t.Errorf("Parse(Append(d)) = %+v; want %+v", got, d)
		}
	}
}

func TestAppendRefusesWhatWouldNeedEscaping(t *testing.T) {
	for name, mod := range map[string]func(*Doc){
		"no token":          func(d *Doc) { d.Decision = "" },
		"quote in token":    func(d *Doc) { d.Decision = `a"b` },
		"backslash in sig":  func(d *Doc) { d.Signature = `a\b` },
		"newline in sealed": func(d *Doc) { d.Sealed = "a\nb" },
		"sealed, no sender": func(d *Doc) { d.SealedFrom = "" },
		"sender, no sealed": func(d *Doc) { d.Sealed = "" },
		"envelope array":    func(d *Doc) { d.Envelope = []byte(`[1]`) },
		"no envelope":       func(d *Doc) { d.Envelope = nil },
	} {
		d := sample()
		mod(&d)
		if _, err := d.Append(nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Append error = %v; want ErrInvalid", name, err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	good, _ := sample().Append(nil)
	for name, data := range map[string]string{
		"empty":          "",
		"not json":       "hello",
		"envelope only":  env,
		"other version":  strings.Replace(string(good), `"v":1`, `"v":2`, 1),
		"unknown field":  strings.Replace(string(good), `"v":1`, `"v":1,"extra":true`, 1),
		"no token":       `{"v":1,"envelope":` + env + `}`,
		"empty token":    `{"v":1,"decision":"","envelope":` + env + `}`,
		"no envelope":    `{"v":1,"decision":"a.b.c"}`,
		"envelope array": `{"v":1,"decision":"a.b.c","envelope":[1]}`,
		"trailing data":  string(good) + "}",
		"two documents":  string(good) + string(good),
		"case variant":   strings.Replace(string(good), `"decision":`, `"Decision":`, 1),
		"duplicate":      strings.Replace(string(good), `"sealed":`, `"sealed":"AAAA","sealed":`, 1),
		"case duplicate": strings.Replace(string(good), `"envelope":`, `"ENVELOPE":{},"envelope":`, 1),
		"version 1.0":    strings.Replace(string(good), `"v":1`, `"v":1.0`, 1),
		"version string": strings.Replace(string(good), `"v":1`, `"v":"1"`, 1),
		"token number":   `{"v":1,"decision":7,"envelope":` + env + `}`,
		// What the TypeScript reader refuses, this one does too: only
		// JSON's white space may follow, and strings are valid UTF-8
		// without lone surrogates.
		"trailing vertical tab":   string(good) + "\v",
		"trailing no-break space": string(good) + "\u00a0",
		"trailing next line":      string(good) + "\u0085",
		"lone surrogate":          strings.Replace(string(good), `"signature":"`, `"signature":"\ud800`, 1),
		"invalid UTF-8":           strings.Replace(string(good), `"signature":"`, "\"signature\":\"\xff", 1),
	} {
		if _, err := Parse([]byte(data), 1<<20); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Parse error = %v; want ErrInvalid", name, err)
		}
	}
	if _, err := Parse(good, len(good)-1); !errors.Is(err, ErrInvalid) {
		t.Errorf("Parse over max: error = %v; want ErrInvalid", err)
	}
	if _, err := Parse(append(good, " \n"...), 1<<20); err != nil {
		t.Errorf("trailing whitespace: %v", err)
	}
}

// FuzzParse: Parse never panics and refuses only with ErrInvalid; what it
// accepts has a token and a JSON envelope, and, when Append can write it,
// Append writes a document that parses to the same Doc.
func FuzzParse(f *testing.F) {
	good, _ := sample().Append(nil)
	f.Add(good)
	f.Add([]byte(`{"v":1,"decision":"a","envelope":{}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data, 1<<16)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse(%q) = %v; want ErrInvalid", data, err)
			}
			return
		}
		if d.Decision == "" || len(d.Envelope) == 0 || !json.Valid(d.Envelope) {
			t.Fatalf("Parse accepted %q as %+v", data, d)
		}
		again, err := d.Append(nil)
		if err != nil {
			// Parse reads fields Append would not write together (sealed
			// without sealed_from): verifying the delivery refuses them.
			return
		}
		d2, err := Parse(again, 1<<16)
		if err != nil || !reflect.DeepEqual(d, d2) {
			t.Fatalf("Parse(Append(Parse(%q))) = %+v, %v; want %+v", data, d2, err, d)
		}
	})
}

func BenchmarkAppend(b *testing.B) {
	d := Doc{Decision: strings.Repeat("eyJhbGciOiJlZDI1NTE5In0.", 64), Signature: strings.Repeat("c", 86),
		Sealed: strings.Repeat("c2VhbGVk", 180), SealedFrom: "X" + strings.Repeat("A", 55), Envelope: []byte(env)}
	buf := make([]byte, 0, d.Size())
	b.SetBytes(int64(d.Size()))
	for b.Loop() {
		if _, err := d.Append(buf[:0]); err != nil {
			b.Fatal(err)
		}
	}
}

// TestAlphabets checks in against the alphabets' definition for every
// byte at every position of the unrolled loop and of its tail.
func TestAlphabets(t *testing.T) {
	isB64 := func(c byte) bool {
		return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_'
	}
	for c := range 256 {
		for _, n := range []int{1, 7, 8, 9, 17, 40} {
			for at := range n {
				s := []byte(strings.Repeat("a", n))
				s[at] = byte(c)
				if got := in(&base64Chars, string(s)); got != isB64(byte(c)) {
					t.Fatalf("in(base64, %q) = %v", s, got)
				}
				if got := in(&tokenChars, string(s)); got != (isB64(byte(c)) || c == '.') {
					t.Fatalf("in(token, %q) = %v", s, got)
				}
			}
		}
	}
	if !in(&base64Chars, "") {
		t.Fatal("the empty string is not in the alphabet")
	}
}

// TestAppendWith: a token written by a function gives Append's bytes,
// and what the function writes is checked as Decision is: a refused
// token leaves the buffer as it was.
func TestAppendWith(t *testing.T) {
	d := sample()
	want, err := d.Append([]byte("prefix"))
	if err != nil {
		t.Fatal(err)
	}
	tok := d.Decision
	d.Decision = ""
	got, err := d.AppendWith([]byte("prefix"), func(b []byte) []byte { return append(b, tok...) })
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("AppendWith = %s; want %s", got, want)
	}
	for name, bad := range map[string]string{"no token": "", "quote in token": `a"b`, "space in token": "a b"} {
		b, err := d.AppendWith([]byte("prefix"), func(b []byte) []byte { return append(b, bad...) })
		if !errors.Is(err, ErrInvalid) || string(b) != "prefix" {
			t.Errorf("%s: AppendWith = %q, %v; want the buffer unchanged and ErrInvalid", name, b, err)
		}
	}
}
