package envelope

import (
	"unicode"
	"unicode/utf8"
)

// FoldName returns the case-folded form of a member name: FoldName(a) ==
// FoldName(b) exactly when strings.EqualFold(a, b), the relation (Unicode
// simple folding) by which encoding/json and other case-insensitive
// decoders match member names. It costs time linear in len(name), and
// returns a name of ASCII without upper-case letters as it is, without
// allocating.
func FoldName(name string) string { return fold(name) }

// foldBytes is FoldName of a []byte, as a string to key a set with.
func foldBytes(name []byte) string { return fold(name) }

func fold[T string | []byte](name T) string {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c >= utf8.RuneSelf || 'A' <= c && c <= 'Z' {
			out := make([]byte, 0, len(name))
			for _, r := range string(name) {
				out = utf8.AppendRune(out, foldRune(r))
			}
			return string(out)
		}
	}
	return string(name)
}

// foldRune maps r to one representative of its simple-folding orbit (the
// runes unicode.SimpleFold cycles through, at most four): the lower-case
// ASCII letter when the orbit holds one (so K, k and U+212A KELVIN SIGN
// all become k), else the orbit's smallest rune. An invalid byte decodes
// as U+FFFD, as it does for strings.EqualFold.
func foldRune(r rune) rune {
	if r < utf8.RuneSelf {
		if 'A' <= r && r <= 'Z' {
			r += 'a' - 'A'
		}
		return r
	}
	m := r
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if f < utf8.RuneSelf {
			return f | 0x20 // an ASCII letter: its lower case
		}
		m = min(m, f)
	}
	return m
}

// FoldSet holds member names to be matched under case folding, to find a
// member that is not one of them but that a case-insensitive decoder
// would read as one. The zero value is empty; a FoldSet is safe for
// concurrent reads.
type FoldSet struct {
	byFold map[string]string // FoldName(name) -> name
}

// NewFoldSet returns the set of names. Of names that case-fold equal to
// each other, the first is kept.
func NewFoldSet(names ...string) FoldSet {
	s := FoldSet{byFold: make(map[string]string, len(names))}
	for _, n := range names {
		f := FoldName(n)
		if _, dup := s.byFold[f]; !dup {
			s.byFold[f] = n
		}
	}
	return s
}

// Variant returns the name of s that name differs from only in case
// (strings.EqualFold(name, of) && name != of), if any. It costs time
// linear in len(name).
func (s FoldSet) Variant(name string) (of string, ok bool) {
	if len(s.byFold) == 0 {
		return "", false
	}
	of, ok = s.byFold[FoldName(name)]
	if !ok || of == name {
		return "", false
	}
	return of, true
}
