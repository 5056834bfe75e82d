package identity

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/rs/zerolog"
)

// leaks reports which secret fragment out contains, if any: 12-character
// windows of the seed past its role prefix and of the token's payload and
// signature, and their hex forms.
func leaks(out string, seed Seed, tok Token) string {
	var frags []string
	s := string(seed)
	for i := 3; i+12 <= len(s); i += 6 {
		frags = append(frags, s[i:i+12])
	}
	parts := strings.Split(string(tok), ".")
	for _, p := range parts[1:] {
		for i := 0; i+12 <= len(p); i += 12 {
			frags = append(frags, p[i:i+12])
		}
	}
	frags = append(frags, hex.EncodeToString(seed[3:12]), hex.EncodeToString([]byte(parts[2][:9])))
	for _, f := range frags {
		if strings.Contains(out, f) {
			return f
		}
	}
	return ""
}

type Embeds struct {
	Seed
	Token
	Name string
}

type Holder struct {
	S   Seed
	T   Token
	TP  *Token
	Tks []Token
	M   map[string]Seed
	E   Embeds
}

func TestSecretsRedacted(t *testing.T) {
	v := loadVector(t)
	seed := Seed(v.Keys.AgentSeed)
	tok := Token(v.Credential.JWT)
	h := Holder{S: seed, T: tok, TP: &tok, Tks: []Token{tok}, M: map[string]Seed{"k": seed}, E: Embeds{seed, tok, "x"}}
	values := map[string]any{"seed": seed, "token": tok, "holder": h, "holder-ptr": &h, "embeds": h.E}

	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%o", "%b", "%c", "%U", "%e", "%f", "%g", "%t", "%10.3s", "%-20v"}
	for name, val := range values {
		for _, verb := range verbs {
			out := fmt.Sprintf(verb, val)
			if f := leaks(out, seed, tok); f != "" {
				t.Errorf("Sprintf(%q, %s) = %q leaks %q", verb, name, out, f)
			}
		}
		out := fmt.Sprint(val) + fmt.Sprintln(val)
		if f := leaks(out, seed, tok); f != "" {
			t.Errorf("Sprint(%s) leaks %q", name, f)
		}
		b, err := json.Marshal(val)
		if err != nil {
			t.Fatalf("json.Marshal(%s) = %v", name, err)
		}
		if f := leaks(string(b), seed, tok); f != "" {
			t.Errorf("json.Marshal(%s) = %s leaks %q", name, b, f)
		}
		var buf bytes.Buffer
		slog.New(slog.NewJSONHandler(&buf, nil)).Info("m", "v", val)
		slog.New(slog.NewTextHandler(&buf, nil)).Info("m", "v", val)
		if f := leaks(buf.String(), seed, tok); f != "" {
			t.Errorf("slog(%s) = %s leaks %q", name, buf.String(), f)
		}
	}

	var buf bytes.Buffer
	log := zerolog.New(&buf)
	log.Info().Interface("seed", seed).Interface("token", tok).Interface("holder", h).Msg("interface")
	log.Info().Any("seed", seed).Any("token", tok).Any("holder", &h).Msg("any")
	log.Info().Stringer("seed", seed).Stringer("token", tok).Msg("stringer")
	log.Info().Object("seed", seed).Object("token", tok).Msg("object")
	log.Info().Fields(map[string]any{"seed": seed, "token": tok, "holder": h}).Msg("fields")
	log.Info().Fields([]any{"seed", seed, "token", tok}).Msg("fields-slice")
	log.Info().Err(fmt.Errorf("wrapped %v and %s", seed, tok)).Msg("err")
	ctxLog := log.With().Interface("seed", seed).Any("token", tok).Logger()
	ctxLog.Info().Msg("context")
	if f := leaks(buf.String(), seed, tok); f != "" {
		t.Errorf("zerolog output leaks %q:\n%s", f, buf.String())
	}
	if !strings.Contains(buf.String(), `"jti":"`+v.Credential.Claims["jti"].(string)+`"`) {
		t.Errorf("zerolog Object(token) does not name the jti:\n%s", buf.String())
	}

	if got, want := tok.String(), "jwt[jti="+v.Credential.Claims["jti"].(string)+"]"; got != want {
		t.Errorf("Token.String() = %q; want %q", got, want)
	}
	if got := Token("garbage").String(); got != "[redacted jwt]" {
		t.Errorf(`Token("garbage").String() = %q`, got)
	}
	if got := seed.String(); got != "[redacted user seed]" {
		t.Errorf("Seed.String() = %q", got)
	}
	if tok.Reveal() != v.Credential.JWT || string(seed.Reveal()) != v.Keys.AgentSeed {
		t.Error("Reveal does not return the secret")
	}
}

func TestTokenJTIIsLogSafe(t *testing.T) {
	w := newWorld(t)
	hostile := Token(w.token(t, nil, set0("jti", "x\n{\"level\":\"fatal\"}")))
	if got := hostile.String(); got != "[redacted jwt]" {
		t.Errorf("Token with hostile jti prints %q", got)
	}
}

func TestSignerAndBoxRedacted(t *testing.T) {
	kp := mustKey(t, NewGatewayKey)
	seed, _ := kp.Seed()
	s, err := NewSigner(kp)
	if err != nil {
		t.Fatal(err)
	}
	ck := mustKey(t, NewCurve)
	cseed, _ := ck.Seed()
	b, err := NewBox(ck)
	if err != nil {
		t.Fatal(err)
	}
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%q"} {
		for _, val := range []any{s, b, *s, *b} {
			out := fmt.Sprintf(verb, val)
			_, raw, _ := decodeSeedForTest(seed)
			_, craw, _ := decodeSeedForTest(cseed)
			for _, secret := range [][]byte{raw, craw, seed[3:15], cseed[3:15]} {
				if strings.Contains(out, string(secret)) || strings.Contains(out, hex.EncodeToString(secret[:8])) ||
					bytes.Contains([]byte(out), secret) {
					t.Errorf("Sprintf(%q, %T) = %q leaks key material", verb, val, out)
				}
			}
		}
	}
	if !strings.Contains(fmt.Sprint(s), s.PublicKey()) {
		t.Errorf("Signer prints %q; want its public key", fmt.Sprint(s))
	}
}
