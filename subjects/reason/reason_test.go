package reason

import (
	"errors"
	"fmt"
	"regexp"
	"testing"
)

var codeForm = regexp.MustCompile(`^[a-z][a-z0-9_]{1,63}$`)

func TestTableCodesAreSubjectSafe(t *testing.T) {
	for _, info := range All {
		if !codeForm.MatchString(string(info.Code)) {
			t.Errorf("code %q is not snake_case subject-safe", info.Code)
		}
		if info.Description == "" || info.Stage == "" {
			t.Errorf("code %q lacks description or stage", info.Code)
		}
		if !Known(info.Code) {
			t.Errorf("Known(%q) = false", info.Code)
		}
	}
	if Known("no_such_code_at_all") {
		t.Error("Known accepted a code outside the table")
	}
}

func TestOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Code
	}{
		{"nil", nil, ""},
		{"denial", Deny(WrongAudience, "aud %q", "x"), WrongAudience},
		{"wrapped denial", fmt.Errorf("gate: %w", Deny(Revoked, "jti")), Revoked},
		{"bare code", BadSignature, BadSignature},
		{"foreign error fails closed", errors.New("disk on fire"), Internal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Of(tt.err); got != tt.want {
				t.Errorf("Of(%v) = %q; want %q", tt.err, got, tt.want)
			}
		})
	}
	if !errors.Is(Deny(MissingScope, "x"), MissingScope) {
		t.Error("errors.Is(Denial, Code) = false")
	}
	if errors.Is(Deny(MissingScope, "x"), WrongAudience) {
		t.Error("errors.Is matched another code")
	}
}

// TestMark: a marked denial matches its mark and still reads as the
// denial it marks, code, message and errors.As alike.
func TestMark(t *testing.T) {
	mark := errors.New("mark")
	d := Deny(SealBroken, "jti j: does not open")
	err := Mark(d, mark)
	var got *Denial
	if !errors.Is(err, mark) || !errors.Is(err, SealBroken) || Of(err) != SealBroken || !errors.As(err, &got) || got != d {
		t.Fatalf("Mark(%v) = %v: Is(mark) %v, Is(code) %v, Of %v, As %v", d, err, errors.Is(err, mark), errors.Is(err, SealBroken), Of(err), got)
	}
	if err.Error() != d.Error() {
		t.Errorf("Mark changed the message: %q, want %q", err.Error(), d.Error())
	}
	if Mark(nil, mark) != nil {
		t.Error("Mark(nil) is not nil")
	}
	if errors.Is(d, mark) {
		t.Error("the unmarked denial matches the mark")
	}
}
