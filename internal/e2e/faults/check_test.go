package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/internal/invariant"
)

// smsg is one stored stream message.
type smsg struct {
	seq     uint64
	subject string
	hdr     nats.Header
	data    []byte
	at      time.Time // when the stream stored it
}

// readStream reads every message of a stream with an ordered consumer.
func readStream(ctx context.Context, js jetstream.JetStream, name string) ([]smsg, error) {
	s, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", name, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.State.Msgs == 0 {
		return nil, nil
	}
	last := info.State.LastSeq
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return nil, err
	}
	out := make([]smsg, 0, info.State.Msgs)
	for empty := 0; empty < 10; {
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil {
				return nil, err
			}
			out = append(out, smsg{seq: md.Sequence.Stream, subject: m.Subject(), hdr: m.Headers(), data: m.Data(), at: md.Timestamp})
			if md.Sequence.Stream >= last {
				return out, nil
			}
		}
		if n == 0 {
			empty++
		}
	}
	return nil, fmt.Errorf("read %s: stopped before sequence %d (have %d messages)", name, last, len(out))
}

// result is what a run proved, for the summary line.
type result struct {
	Ingress       int
	Lost          int
	Duplicated    int
	Orphans       int
	ReplayCopies  int // copies of an earlier message, each denied
	ReplaysLetIn  int
	Wrong         int // decisions other than the kind's
	FutureLate    int // messages issued ahead, decided once they no longer were (allowed, rightly)
	Leaks         int // sealed-payload plaintext found in outputs or logs
	PlainSeen     int // plain markers seen in capability outputs (the scan works)
	AuditMissing  int
	AuditDup      int
	Held          int
	Released      int
	Expired       int
	FatesBad      int // held requests released and expired, or neither
	IngressLost   int // acknowledged publishes missing from the ingress stream
	Unknown       int // publishes given up during outages (fate unknown to the sender)
	Redeliveries  uint64
	Recoveries    []recovery // per restart: messages in flight at the kill, time to the last decided
	ExpiryAudits  int
	ByRoute       map[string]int
	ByReason      map[string]int
	Problems      []string
	InvariantLine string
}

func (r *result) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

// settle waits until the gateway has acknowledged every ingress message
// and every held request has been answered or expired.
func settle(t testing.TB, e *env, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	caughtUp := func() {
		t.Helper()
		var last *jetstream.ConsumerInfo
		var lastErr error
		for stable := 0; stable < 3; {
			if ctx.Err() != nil {
				t.Fatalf("settle: the gateway did not catch up in %s (last consumer info: %s; last error: %v)", timeout, describe(last), lastErr)
			}
			ictx, icancel := context.WithTimeout(ctx, 5*time.Second)
			info, err := e.consumerInfo(ictx)
			icancel()
			switch {
			case err != nil:
				lastErr, stable = err, 0
			case info.NumPending == 0 && info.NumAckPending == 0:
				last = info
				stable++
			default:
				last, stable = info, 0
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	caughtUp()
	// Held requests expire approval_ttl after their decision; the
	// expiry loop runs every second and tries again on the next tick
	// what it could not end. Wait until each has ended, or for a minute
	// more at most: check reports any that has not.
	time.Sleep(e.opts.approvalTTL + 2*time.Second)
	waitEnded(t, e, time.Minute)
	caughtUp()
}

// waitEnded waits until every request in the approval queue has been
// released to the capability stream or expired, or until patience
// passes (then logs the ones left).
func waitEnded(t testing.TB, e *env, patience time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	for {
		left, err := unended(ctx, e.js)
		if err == nil && len(left) == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Logf("settle: held requests not ended after %s more: %v (last error: %v)", patience, left, err)
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// unended returns the message ids of the requests in the approval queue
// that were neither released (their message in the capability stream)
// nor expired (their .expired output in the denied stream).
func unended(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	ended := map[string]bool{}
	for _, name := range []string{gateway.StreamCap, gateway.StreamDenied} {
		msgs, err := readStream(ctx, js, name)
		if err != nil {
			return nil, err
		}
		for _, m := range msgs {
			if name == gateway.StreamCap || strings.HasSuffix(m.hdr.Get(header.MsgID), ".expired") {
				ended[m.hdr.Get(header.MessageID)] = true
			}
		}
	}
	held, err := readStream(ctx, js, gateway.StreamApproval)
	if err != nil {
		return nil, err
	}
	var left []string
	for _, m := range held {
		if id := m.hdr.Get(header.MessageID); m.hdr.Get(notice.Header) == "" && !ended[id] {
			left = append(left, id)
		}
	}
	return left, nil
}

func describe(info *jetstream.ConsumerInfo) string {
	if info == nil {
		return "none"
	}
	return fmt.Sprintf("pending=%d ack_pending=%d redelivered=%d ack_floor=%d delivered=%d",
		info.NumPending, info.NumAckPending, info.NumRedelivered, info.AckFloor.Stream, info.Delivered.Stream)
}

// check reads every stream after a run and verifies, beyond the
// invariant package's exactly-one-output check:
//   - every copy of a message id but one is denied replay_detected (or
//     message_expired, if replayed after its expiry), and no message id
//     reaches the capability stream twice;
//   - each message got the decision its kind calls for;
//   - no sealed-payload plaintext appears in any output or gateway log;
//   - exactly one audit decision event per ingress message;
//   - every held request was released or expired, exactly once;
//   - every publish JetStream acknowledged is in the ingress stream.
//
// Every failed property is reported with t.Errorf.
func check(t testing.TB, e *env, l *load) *result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := &result{ByRoute: map[string]int{}, ByReason: map[string]int{}, Recoveries: e.recoveries}
	streams := map[string][]smsg{}
	for _, name := range []string{gateway.StreamIngress, gateway.StreamCap, gateway.StreamApproval, gateway.StreamDenied, gateway.StreamAudit} {
		msgs, err := readStream(ctx, e.js, name)
		must(t, err)
		streams[name] = msgs
	}
	ingress := map[uint64]smsg{}
	for _, m := range streams[gateway.StreamIngress] {
		ingress[m.seq] = m
	}
	r.Ingress = len(ingress)

	// The invariant package's check: an approver's answer that arrives
	// after the deadline is its own message's output (denied
	// approval_expired), not an expiry follow-up of the held request.
	rep, err := invariant.Collect(ctx, e.js)
	must(t, err)
	if err := rep.Err(); err != nil {
		r.problem("invariant: %v", err)
	}
	r.Lost, r.Duplicated, r.Orphans = len(rep.Lost), len(rep.Duplicated), len(rep.Orphans)
	r.InvariantLine = rep.String()

	// Primary outputs by ingress sequence, and follow-ups.
	type out struct {
		stream, route, reason, msgID string
	}
	primary := map[uint64][]out{}
	capByID := map[string]int{}
	heldByID := map[string]uint64{}
	expiredByID := map[string]int{}
	for _, name := range invariant.Terminal {
		for _, m := range streams[name] {
			if m.hdr.Get(notice.Header) != "" {
				continue // a decision notice: not where a message ends (the invariant checks it)
			}
			seq, err := strconv.ParseUint(m.hdr.Get(header.IngressSeq), 10, 64)
			if err != nil {
				continue // counted as an orphan by the invariant check
			}
			o := out{stream: name, route: m.hdr.Get(header.Route), reason: m.hdr.Get(header.Reason), msgID: m.hdr.Get(header.MessageID)}
			if strings.HasSuffix(m.hdr.Get(header.MsgID), ".expired") {
				expiredByID[o.msgID]++
				continue
			}
			primary[seq] = append(primary[seq], o)
			r.ByRoute[o.route]++
			if o.reason != "" {
				r.ByReason[o.reason]++
			}
			switch name {
			case gateway.StreamCap:
				capByID[o.msgID]++
			case gateway.StreamApproval:
				heldByID[o.msgID] = seq
			}
		}
	}

	// Audit events by ingress sequence, and when each ingress message was
	// decided (its decision event's time).
	auditBySeq := map[uint64]int{}
	decidedAt := map[uint64]time.Time{}
	for _, m := range streams[gateway.StreamAudit] {
		evs, err := audit.Decode(m.data)
		if err != nil {
			r.problem("audit message %d does not decode: %v", m.seq, err)
		}
		for _, ev := range evs {
			switch ev.Kind {
			case audit.KindApprovalExpired:
				r.ExpiryAudits++
			case audit.KindDecision:
				if t, ok := decidedAt[ev.IngressSeq]; !ok || ev.Time.Before(t) {
					decidedAt[ev.IngressSeq] = ev.Time
				}
			}
			auditBySeq[ev.IngressSeq]++
		}
	}

	// Replays: group ingress sequences by (subject, message id).
	type env1 struct {
		MessageID  string `json:"message_id"`
		Capability string `json:"capability"`
	}
	groups := map[string][]uint64{}
	for seq, m := range ingress {
		var b env1
		if json.Unmarshal(m.data, &b) != nil || b.MessageID == "" {
			continue
		}
		k := m.subject + "|" + b.MessageID
		groups[k] = append(groups[k], seq)
	}
	for k, seqs := range groups {
		slices.Sort(seqs)
		var decided []uint64 // sequences not refused as copies
		for _, s := range seqs {
			o := primary[s]
			if len(o) == 1 && (o[0].reason == "replay_detected" || o[0].reason == "message_expired" && len(seqs) > 1 && s != seqs[0]) {
				continue
			}
			decided = append(decided, s)
		}
		if len(seqs) > 1 {
			r.ReplayCopies += len(seqs) - len(decided)
		}
		if len(decided) > 1 {
			r.ReplaysLetIn += len(decided) - 1
			r.problem("message %s: %d ingress copies decided as originals (%v)", k, len(decided), decided)
		}
		// The decision of the original against what its kind calls for.
		id := k[strings.IndexByte(k, '|')+1:]
		l.mu.Lock()
		kd, known := l.kinds[id]
		l.mu.Unlock()
		if known && len(decided) == 1 {
			if o := primary[decided[0]]; len(o) == 1 {
				route, why := kd.want()
				if kd == kFuture && o[0].route == "allow" && aheadNoLonger(ingress[decided[0]].data, decidedAt[decided[0]], e.opts.skew) {
					// Decided (after faults) once its issued_at was no
					// longer beyond the skew: allowing it was right.
					r.FutureLate++
					route, why = "allow", ""
				}
				if route != "" && o[0].route != route || why != "" && o[0].reason != why {
					r.Wrong++
					r.problem("message %s (%s) at ingress %d: %s %s; want %s %s", id, kd, decided[0], o[0].route, o[0].reason, route, why)
				}
			}
		}
	}
	for id, n := range capByID {
		if n > 1 {
			r.ReplaysLetIn += n - 1
			r.problem("message %s reached the capability stream %d times", id, n)
		}
	}

	// Approvals: each held request is released or expires, once.
	for id := range heldByID {
		r.Held++
		rel, exp := capByID[id], expiredByID[id]
		r.Released += rel
		r.Expired += exp
		if rel+exp != 1 {
			r.FatesBad++
			r.problem("held request %s: released %d times, expired %d times; want exactly one of them", id, rel, exp)
		}
	}
	for id, n := range expiredByID {
		if _, ok := heldByID[id]; !ok {
			r.problem("expiry of %s (%d) without a held request", id, n)
		}
	}

	// Audit: one decision event per ingress message, and for a held
	// request that expired a second one, its expiry, on the same ingress
	// sequence (with its own Nats-Msg-Id: until d0b3916 JetStream dropped
	// it as a copy of the first).
	wantAudit := map[uint64]int{}
	for id, seq := range heldByID {
		wantAudit[seq] = 1 + expiredByID[id]
	}
	for seq := range ingress {
		n, want := auditBySeq[seq], max(wantAudit[seq], 1)
		switch {
		case n < want:
			r.AuditMissing++
		case n > want:
			r.AuditDup++
		}
	}
	if r.AuditMissing+r.AuditDup > 0 {
		r.problem("audit: %d ingress messages with fewer audit events than decisions, %d with more", r.AuditMissing, r.AuditDup)
	}
	if r.ExpiryAudits != r.Expired {
		r.problem("audit: %d approval_expired events for %d expiries", r.ExpiryAudits, r.Expired)
	}

	// Plaintext: no sealed marker anywhere the gateway wrote.
	scan := func(where string, data []byte) {
		if n := bytes.Count(data, []byte(sealedMarker)); n > 0 {
			r.Leaks += n
			r.problem("%s: sealed-payload plaintext appears %d times", where, n)
		}
	}
	for _, name := range []string{gateway.StreamCap, gateway.StreamApproval, gateway.StreamDenied, gateway.StreamAudit} {
		for _, m := range streams[name] {
			scan(fmt.Sprintf("%s #%d body", name, m.seq), m.data)
			scan(fmt.Sprintf("%s #%d headers", name, m.seq), []byte(fmt.Sprint(m.hdr)))
			if name == gateway.StreamCap {
				r.PlainSeen += bytes.Count(m.data, []byte(plainMarker))
			}
		}
	}
	for _, p := range e.logs() {
		data, err := os.ReadFile(p)
		if err == nil {
			scan(p, data)
		}
	}
	l.mu.Lock()
	plainSent := l.counts[kPlain]
	sentCopy := slices.Clone(l.sent)
	r.Unknown = l.unknown
	l.mu.Unlock()
	if plainSent > 0 && r.PlainSeen == 0 {
		r.problem("the plaintext scan is blind: %d plain messages sent, no plain marker seen in capability outputs", plainSent)
	}

	// Every acknowledged publish is in the ingress stream, as itself.
	for _, s := range sentCopy {
		m, ok := ingress[s.seq]
		if !ok {
			r.IngressLost++
			continue
		}
		if s.msgID != "" && !bytes.Contains(m.data, []byte(`"message_id":"`+s.msgID+`"`)) {
			r.IngressLost++
		}
	}
	if r.IngressLost > 0 {
		r.problem("%d acknowledged publishes are not in the ingress stream", r.IngressLost)
	}

	// Everything acknowledged; how many redeliveries it took.
	if info, err := e.consumerInfo(ctx); err == nil {
		if info.NumPending != 0 || info.NumAckPending != 0 {
			r.problem("ingress consumer not drained: %s", describe(info))
		}
		if info.Delivered.Consumer > uint64(r.Ingress) {
			r.Redeliveries = info.Delivered.Consumer - uint64(r.Ingress)
		}
	} else {
		r.problem("ingress consumer: %v", err)
	}

	sort.Strings(r.Problems)
	for i, p := range r.Problems {
		if i == 20 {
			t.Errorf("... and %d more problems", len(r.Problems)-20)
			break
		}
		t.Error(p)
	}
	recordSummary(t.Name(), r.InvariantLine, r)
	return r
}

// summary is the one line a run ends with.
func (r *result) summary(name string, faults map[string]int, elapsed time.Duration) string {
	var fs []string
	total := 0
	for k, v := range faults {
		fs = append(fs, fmt.Sprintf("%s=%d", k, v))
		total += v
	}
	sort.Strings(fs)
	return fmt.Sprintf("%s: %s, messages %d, faults injected %d (%s), lost %d, duplicated %d, orphans %d, "+
		"replays let in %d (replay copies denied %d), wrong decisions %d (issued ahead, decided once current %d), plaintext leaks %d, audit missing %d dup %d, "+
		"held %d released %d expired %d (expiry audit events %d) bad fates %d, ingress lost %d, unknown %d, redeliveries %d, routes %v%s",
		name, elapsed.Round(time.Second), r.Ingress, total, strings.Join(fs, " "), r.Lost, r.Duplicated, r.Orphans,
		r.ReplaysLetIn, r.ReplayCopies, r.Wrong, r.FutureLate, r.Leaks, r.AuditMissing, r.AuditDup,
		r.Held, r.Released, r.Expired, r.ExpiryAudits, r.FatesBad, r.IngressLost, r.Unknown, r.Redeliveries, r.ByRoute, r.recoveryText())
}

// recoveryText is "; recoveries [...]" when the run measured any.
func (r *result) recoveryText() string {
	if len(r.Recoveries) == 0 {
		return ""
	}
	parts := make([]string, len(r.Recoveries))
	for i, rc := range r.Recoveries {
		parts[i] = rc.String()
	}
	return "; recoveries [" + strings.Join(parts, "; ") + "]"
}

// recordSummary appends one line per checked run to the file named by
// AGENTGW_FAULT_SUMMARY, so CI can print what the fault tests saw even
// though go test hides the output of passing packages.
func recordSummary(name, invariantLine string, r *result) {
	path := os.Getenv("AGENTGW_FAULT_SUMMARY")
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s: lost %d, duplicated %d, orphans %d, replays let in %d, plaintext leaks %d, wrong decisions %d; %s%s\n",
		name, r.Lost, r.Duplicated, r.Orphans, r.ReplaysLetIn, r.Leaks, r.Wrong, invariantLine, r.recoveryText())
}

// aheadNoLonger reports whether an envelope (body) issued ahead of the
// clock was decided at a time when its issued_at was no longer beyond
// the tolerated skew: the gateway must then allow it. A message without
// a decision time or issued_at is not excused.
func aheadNoLonger(body []byte, decided time.Time, skew time.Duration) bool {
	var b struct {
		IssuedAt time.Time `json:"issued_at"`
	}
	if decided.IsZero() || json.Unmarshal(body, &b) != nil || b.IssuedAt.IsZero() {
		return false
	}
	return !b.IssuedAt.After(decided.Add(skew))
}

// TestAheadNoLonger: a message issued ahead is excused only when it was
// decided once its issued_at was within the skew.
func TestAheadNoLonger(t *testing.T) {
	issued := time.Date(2026, 1, 1, 12, 2, 0, 0, time.UTC)
	body := []byte(`{"issued_at":"2026-01-01T12:02:00Z"}`)
	for _, c := range []struct {
		decided time.Time
		want    bool
	}{
		{issued.Add(-2 * time.Minute), false}, // decided at once: still 2 min ahead
		{issued.Add(-31 * time.Second), false},
		{issued.Add(-30 * time.Second), true}, // exactly at the skew
		{issued.Add(time.Minute), true},
		{time.Time{}, false}, // no decision event
	} {
		if got := aheadNoLonger(body, c.decided, 30*time.Second); got != c.want {
			t.Errorf("decided %v: aheadNoLonger = %v; want %v", c.decided, got, c.want)
		}
	}
	if aheadNoLonger([]byte(`not json`), issued, 30*time.Second) {
		t.Error("an envelope that does not parse was excused")
	}
}
