package reason

import (
	"errors"
	"fmt"
)

// Code is a stable, snake_case decision reason. Codes are safe to place in
// NATS subjects (they match [a-z0-9_]+), metric labels and audit events.
//
// Code implements error so that a Denial can be matched with
// errors.Is(err, reason.WrongAudience).
type Code string

// Error returns the code's string form.
func (c Code) Error() string { return string(c) }

// String returns the code's string form.
func (c Code) String() string { return string(c) }

// Denial is the error every verification function returns when input is
// rejected. Code is what the caller (and the denied stream) is told; Detail
// is an operator-facing explanation that must never contain a secret
// (JWT, seed, key or payload bytes): name a credential by its jti and a
// payload by its digest.
type Denial struct {
	Code   Code
	Detail string
}

// Error returns "code: detail".
func (d *Denial) Error() string {
	if d.Detail == "" {
		return string(d.Code)
	}
	return string(d.Code) + ": " + d.Detail
}

// Unwrap returns the Code so errors.Is matches on it.
func (d *Denial) Unwrap() error { return d.Code }

// Deny returns a *Denial with a formatted detail. Arguments must not be
// secrets.
func Deny(c Code, format string, args ...any) *Denial {
	return &Denial{Code: c, Detail: fmt.Sprintf(format, args...)}
}

// Mark returns err marked with mark: errors.Is(m, mark) holds, while
// Of, errors.As and the message still see err alone. For a refusal a
// caller may treat apart without a code of its own (a key this side
// lacks, rather than input proven bad).
func Mark(err, mark error) error {
	if err == nil {
		return nil
	}
	return marked{err, mark}
}

type marked struct{ err, mark error }

func (m marked) Error() string   { return m.err.Error() }
func (m marked) Unwrap() []error { return []error{m.err, m.mark} }

// Of returns the Code carried by err. A nil error yields "" and an error
// that carries no Code yields Internal: an unexplained failure is a denial,
// never a pass (fail closed).
func Of(err error) Code {
	if err == nil {
		return ""
	}
	var d *Denial
	if errors.As(err, &d) {
		return d.Code
	}
	var c Code
	if errors.As(err, &c) {
		return c
	}
	return Internal
}

// Known reports whether c is in the table.
func Known(c Code) bool {
	_, ok := index[c]
	return ok
}

// Lookup returns the table entry for c.
func Lookup(c Code) (Info, bool) {
	i, ok := index[c]
	if !ok {
		return Info{}, false
	}
	return All[i], true
}

var index = func() map[Code]int {
	m := make(map[Code]int, len(All))
	for i, info := range All {
		if _, dup := m[info.Code]; dup {
			panic("reason: duplicate code " + string(info.Code))
		}
		m[info.Code] = i
	}
	return m
}()
