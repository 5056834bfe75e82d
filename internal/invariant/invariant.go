package invariant

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
)

// Terminal streams: where an ingress message may end (a response ends on
// the reply stream).
var Terminal = []string{"AGENTGW_CAP", "AGENTGW_APPROVAL", "AGENTGW_DENIED", "AGENTGW_REPLY"}

// Output is one terminal message, keyed by the ingress sequence it
// answers.
type Output struct {
	Stream  string
	Seq     uint64
	Subject string
	Route   string
	Reason  string
}

// Report summarises a run.
type Report struct {
	Ingress    int
	Outputs    map[uint64][]Output
	Lost       []uint64 // ingress sequences with no output
	Duplicated []uint64 // ingress sequences with more than one output
	Orphans    []Output // outputs whose ingress sequence is unknown
	// FollowUps are approval expiries and withdrawals: the held message's
	// second, final stop after the approval queue. Each must follow an
	// approval output.
	FollowUps []Output
	// Notices are decision notices (package notice) on the reply
	// stream: not where a message ends, but each at most once per
	// ingress message and recipient.
	Notices          []Output
	DuplicateNotices []Output
	ByReason         map[string]int
	ByRoute          map[string]int
}

// Err is nil when the invariants hold.
func (r *Report) Err() error {
	var errs []error
	if len(r.Lost) > 0 {
		errs = append(errs, fmt.Errorf("%d ingress messages have no output: %v", len(r.Lost), head(r.Lost)))
	}
	if len(r.Duplicated) > 0 {
		errs = append(errs, fmt.Errorf("%d ingress messages have more than one output: %v", len(r.Duplicated), head(r.Duplicated)))
	}
	if len(r.Orphans) > 0 {
		errs = append(errs, fmt.Errorf("%d outputs answer no ingress message", len(r.Orphans)))
	}
	if len(r.DuplicateNotices) > 0 {
		errs = append(errs, fmt.Errorf("%d decision notices were sent twice", len(r.DuplicateNotices)))
	}
	return errors.Join(errs...)
}

// String is a one-line summary for test output.
func (r *Report) String() string {
	return fmt.Sprintf("ingress=%d outputs=%d lost=%d duplicated=%d orphans=%d routes=%v",
		r.Ingress, len(r.Outputs), len(r.Lost), len(r.Duplicated), len(r.Orphans), r.ByRoute)
}

func head(s []uint64) []uint64 {
	if len(s) > 10 {
		return s[:10]
	}
	return s
}

// Collect reads every ingress and terminal stream message.
func Collect(ctx context.Context, js jetstream.JetStream) (*Report, error) {
	in, err := js.Stream(ctx, "AGENTGW_IN")
	if err != nil {
		return nil, fmt.Errorf("invariant: ingress: %w", err)
	}
	info, err := in.Info(ctx)
	if err != nil {
		return nil, err
	}
	ingress := map[uint64]bool{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		if _, err := in.GetMsg(ctx, seq); err == nil {
			ingress[seq] = true
		}
	}
	r := &Report{Ingress: len(ingress), Outputs: map[uint64][]Output{}, ByReason: map[string]int{}, ByRoute: map[string]int{}}
	notified := map[string]bool{}
	for _, name := range Terminal {
		outs, err := readAll(ctx, js, name)
		if err != nil {
			return nil, err
		}
		for _, o := range outs {
			seqStr := o.hdr.Get(header.IngressSeq)
			seq, err := strconv.ParseUint(seqStr, 10, 64)
			out := Output{Stream: name, Seq: o.seq, Subject: o.subject, Route: o.hdr.Get(header.Route), Reason: o.hdr.Get(header.Reason)}
			// An expiry or withdrawal follow-up carries the held message's
			// sequence and a Nats-Msg-Id ending ".expired" or ".withdrawn";
			// a late approver answer denied approval_expired is an
			// ordinary output of its own message.
			if id := o.hdr.Get(header.MsgID); (strings.HasSuffix(id, ".expired") || strings.HasSuffix(id, ".withdrawn")) && err == nil {
				r.FollowUps = append(r.FollowUps, Output{Stream: name, Seq: seq, Subject: o.subject, Route: out.Route, Reason: out.Reason})
				continue
			}
			if o.hdr.Get(notice.Header) == notice.Kind {
				n := Output{Stream: name, Seq: seq, Subject: o.subject}
				if err != nil || !ingress[seq] {
					r.Orphans = append(r.Orphans, n)
					continue
				}
				key := seqStr + " " + o.subject + " " + o.hdr.Get(header.MessageID)
				if notified[key] {
					r.DuplicateNotices = append(r.DuplicateNotices, n)
				}
				notified[key] = true
				r.Notices = append(r.Notices, n)
				continue
			}
			if err != nil || !ingress[seq] {
				// Outputs of approval answers name the answer's ingress
				// sequence; anything else is an orphan.
				r.Orphans = append(r.Orphans, out)
				continue
			}
			r.Outputs[seq] = append(r.Outputs[seq], out)
			r.ByRoute[out.Route]++
			if out.Reason != "" {
				r.ByReason[out.Reason]++
			}
		}
	}
	for _, f := range r.FollowUps {
		if outs := r.Outputs[f.Seq]; len(outs) != 1 || outs[0].Stream != "AGENTGW_APPROVAL" {
			r.Orphans = append(r.Orphans, f)
		}
	}
	for seq := range ingress {
		switch n := len(r.Outputs[seq]); {
		case n == 0:
			r.Lost = append(r.Lost, seq)
		case n > 1:
			r.Duplicated = append(r.Duplicated, seq)
		}
	}
	sort.Slice(r.Lost, func(i, j int) bool { return r.Lost[i] < r.Lost[j] })
	sort.Slice(r.Duplicated, func(i, j int) bool { return r.Duplicated[i] < r.Duplicated[j] })
	return r, nil
}

type rawMsg struct {
	seq     uint64
	subject string
	hdr     interface{ Get(string) string }
}

func readAll(ctx context.Context, js jetstream.JetStream, stream string) ([]rawMsg, error) {
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("invariant: %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []rawMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		out = append(out, rawMsg{seq: m.Sequence, subject: m.Subject, hdr: m.Header})
	}
	return out, nil
}

// Wait polls until every ingress message has an output or the timeout
// passes, then returns the final report.
func Wait(ctx context.Context, js jetstream.JetStream, timeout time.Duration) (*Report, error) {
	deadline := time.Now().Add(timeout)
	for {
		r, err := Collect(ctx, js)
		if err != nil {
			return nil, err
		}
		if len(r.Lost) == 0 || time.Now().After(deadline) {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return r, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
