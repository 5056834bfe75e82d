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
