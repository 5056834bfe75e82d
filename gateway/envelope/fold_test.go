package envelope

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestFoldNameIsEqualFold proves FoldName(a) == FoldName(b) exactly when
// strings.EqualFold(a, b), rune by rune over all of Unicode: every rune
// folds to a member of its own simple-folding orbit (so runes of two
// orbits never meet), the same one for every member (so an orbit never
// splits). Strings follow, since both compare rune by rune and UTF-8 is
// one-to-one.
func TestFoldNameIsEqualFold(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		got := foldRune(r)
		in := got == r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			if foldRune(f) != got {
				t.Fatalf("foldRune(%U) = %U but foldRune(%U) = %U: one orbit, two forms", r, got, f, foldRune(f))
			}
			in = in || f == got
		}
		if !in {
			t.Fatalf("foldRune(%U) = %U, outside its orbit", r, got)
		}
	}
	tests := []struct {
		a, b string
		want bool
	}{
		{"amount_cents", "Amount_cents", true},
		{"amount_cents", "AMOUNT_CENTS", true},
		{"amount_cents", "amount_cent\u017f", true}, // LATIN SMALL LETTER LONG S
		{"kind", "\u212aind", true},                 // KELVIN SIGN
		{"\u03c3", "\u03c2", true},                  // σ and final ς
		{"amount_cents", "amount-cents", false},
		{"amount_cents", "amount_cents_", false},
		{"a\xff", "a\xfe", true}, // invalid bytes are U+FFFD to both
	}
	for _, tt := range tests {
		if got := FoldName(tt.a) == FoldName(tt.b); got != tt.want || strings.EqualFold(tt.a, tt.b) != tt.want {
			t.Errorf("FoldName(%q) == FoldName(%q) is %v, EqualFold %v; want %v", tt.a, tt.b, got, strings.EqualFold(tt.a, tt.b), tt.want)
		}
	}
	if n := testing.AllocsPerRun(10, func() { _ = FoldName("amount_cents") }); n != 0 {
		t.Errorf("FoldName(lower-case ASCII) allocates %v times; want 0", n)
	}
}

func FuzzFoldName(f *testing.F) {
	f.Add("amount_cents", "Amount_Cents")
	f.Add("kind", "\u212aIND")
	f.Add("a\xff", "A\xc0")
	f.Fuzz(func(t *testing.T, a, b string) {
		if got, want := FoldName(a) == FoldName(b), strings.EqualFold(a, b); got != want {
			t.Fatalf("FoldName(%q) == FoldName(%q) is %v; strings.EqualFold says %v", a, b, got, want)
		}
	})
}

func TestFoldSetVariant(t *testing.T) {
	s := NewFoldSet("amount_cents", "currency")
	tests := []struct {
		name, want string
		ok         bool
	}{
		{"amount_cents", "", false}, // the field itself
		{"Amount_cents", "amount_cents", true},
		{"CURRENC\u017f", "", false}, // ſ folds to s, not y
		{"CURRENCY", "currency", true},
		{"amount", "", false},
	}
	for _, tt := range tests {
		if got, ok := s.Variant(tt.name); got != tt.want || ok != tt.ok {
			t.Errorf("Variant(%q) = %q, %v; want %q, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
	if _, ok := (FoldSet{}).Variant("x"); ok {
		t.Error("the empty set matched")
	}
}
