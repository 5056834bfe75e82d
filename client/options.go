package client

import "time"

// Option injects a collaborator into an Agent, Consumer or Approver.
type Option func(*options)

type options struct {
	now func() time.Time
}

// WithClock replaces time.Now: for issued_at of sent envelopes and for
// the expiry checks of decision tokens. A nil clock is ignored.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

func applyOptions(opts []Option) options {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}
