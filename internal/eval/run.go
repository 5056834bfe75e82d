package eval

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/subjects/reason"
)

// Verdicts of a case.
const (
	Pass        = "pass"
	FalseAllow  = "false_allow"  // less restrictive than expected: allowed or held instead of denied, allowed instead of held
	FalseDenial = "false_denial" // more restrictive than expected
	WrongReason = "wrong_reason" // denied, with another reason code
	WrongPolicy = "wrong_policy" // the route is right; other policies decided
	WrongTarget = "wrong_target" // delivered, on another subject than the target's
	NoOutcome   = "no_outcome"   // no output within the timeout
	CaseError   = "error"        // the case could not be sent
)

// Options tune a run.
type Options struct {
	// Timeout is how long a case waits for its output. Zero: 20s.
	Timeout time.Duration
	// Progress, when set, is called after each case.
	Progress func(done, total int, r *CaseResult)
}

// Outcome is what became of a case's message.
type Outcome struct {
	Route      string   `json:"route,omitempty"`
	Reason     string   `json:"reason,omitempty"`
	Policy     []string `json:"policy,omitempty"`
	Subject    string   `json:"subject,omitempty"`
	IngressSeq uint64   `json:"ingress_seq,omitempty"`
}

// CaseResult is one case's verdict.
type CaseResult struct {
	File    string  `json:"file"`
	Name    string  `json:"name"`
	Verdict string  `json:"verdict"`
	Expect  Expect  `json:"expect"`
	Got     Outcome `json:"got"`
	// Problem explains an error verdict.
	Problem string `json:"problem,omitempty"`
	// ReplaySent: the case sent a replay.
	ReplaySent bool `json:"replay_sent,omitempty"`
	// ReplayDetected: the case sent a replay and the gateway denied it
	// as one.
	ReplayDetected bool `json:"replay_detected,omitempty"`
	// MissingTrace lists trace fields absent on the case's outputs or
	// their audit events, as "<where>:<field>".
	MissingTrace []string `json:"missing_trace,omitempty"`
}

// Totals sum a run.
type Totals struct {
	Cases              int `json:"cases"`
	Passed             int `json:"passed"`
	FalseAllows        int `json:"false_allows"`
	FalseDenials       int `json:"false_denials"`
	WrongReasons       int `json:"wrong_reasons"`
	WrongPolicies      int `json:"wrong_policies"`
	WrongTargets       int `json:"wrong_targets"`
	NoOutcome          int `json:"no_outcome"`
	Errors             int `json:"errors"`
	ReplaysSent        int `json:"replays_sent"`
	ReplaysDetected    int `json:"replays_detected"`
	MissingTraceFields int `json:"missing_trace_fields"`
	RedactionFailures  int `json:"redaction_failures"`
}

// Coverage says which policies decided at least one case.
type Coverage struct {
	Decided map[string]int `json:"decided"`
	Never   []string       `json:"never"`
}

// Report is a run's result.
type Report struct {
	Cases     []*CaseResult `json:"cases"`
	Totals    Totals        `json:"totals"`
	Redaction []string      `json:"redaction_failures,omitempty"`
	Coverage  Coverage      `json:"coverage"`
}

// Failed reports whether any case failed or anything leaked.
func (r *Report) Failed() bool {
	return r.Totals.Passed != r.Totals.Cases || r.Totals.RedactionFailures > 0 || r.Totals.MissingTraceFields > 0
}

// Rejected reports the failures CI must never let through: a false allow
// or a redaction failure.
func (r *Report) Rejected() bool {
	return r.Totals.FalseAllows > 0 || r.Totals.RedactionFailures > 0
}

// Run sends every case of files through t, in order, and reports.
func Run(ctx context.Context, t *Target, files []*File, opts Options) (*Report, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 20 * time.Second
	}
	if t.Down != nil {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		go func() {
			select {
			case <-t.Down:
				cancel(fmt.Errorf("eval: the gateway under test stopped: %w", t.DownErr()))
			case <-ctx.Done():
			}
		}()
	}
	js, err := jetstream.New(t.NC)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	obs, err := observe(ctx, js)
	if err != nil {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}
	defer obs.stop()
	var secrets []secret
	for _, s := range t.Secrets {
		secrets = append(secrets, secret{"seed", s})
	}
	b := &builder{t: t, secrets: &secrets, now: time.Now}
	rep := &Report{Coverage: Coverage{Decided: map[string]int{}}}
	total := 0
	for _, f := range files {
		total += len(f.Cases)
	}
	for _, f := range files {
		held := map[string]output{}
		for i := range f.Cases {
			if ctx.Err() != nil {
				return nil, context.Cause(ctx)
			}
			r := runCase(ctx, js, obs, b, f, &f.Cases[i], held, opts)
			if ctx.Err() != nil {
				// The case was cut short, not decided: no verdict.
				return nil, context.Cause(ctx)
			}
			rep.add(r)
			if opts.Progress != nil {
				opts.Progress(len(rep.Cases), total, r)
			}
		}
	}
	obs.mu.Lock()
	if obs.err != nil {
		obs.mu.Unlock()
		return nil, obs.err
	}
	obs.mu.Unlock()
	rep.Redaction, err = scan(ctx, js, t, obs.start, secrets)
	if ctx.Err() != nil {
		return nil, context.Cause(ctx) // a scan cut short proves nothing
	}
	if err != nil {
		return nil, err // nor does one that could not read what it scans
	}
	rep.Totals.RedactionFailures = len(rep.Redaction)
	for _, id := range t.PolicyIDs {
		if rep.Coverage.Decided[id] == 0 {
			rep.Coverage.Never = append(rep.Coverage.Never, id)
		}
	}
	sort.Strings(rep.Coverage.Never)
	return rep, nil
}

func (r *Report) add(c *CaseResult) {
	r.Cases = append(r.Cases, c)
	t := &r.Totals
	t.Cases++
	switch c.Verdict {
	case Pass:
		t.Passed++
	case FalseAllow:
		t.FalseAllows++
	case FalseDenial:
		t.FalseDenials++
	case WrongReason:
		t.WrongReasons++
	case WrongPolicy:
		t.WrongPolicies++
	case WrongTarget:
		t.WrongTargets++
	case NoOutcome:
		t.NoOutcome++
	default:
		t.Errors++
	}
	if c.ReplaySent {
		t.ReplaysSent++
	}
	if c.ReplayDetected {
		t.ReplaysDetected++
	}
	t.MissingTraceFields += len(c.MissingTrace)
	for _, id := range c.Got.Policy {
		r.Coverage.Decided[id]++
	}
}

func runCase(ctx context.Context, js jetstream.JetStream, obs *observer, b *builder, f *File, c *Case, held map[string]output, opts Options) *CaseResult {
	r := &CaseResult{File: f.Path(), Name: c.Name, Expect: c.Expect, ReplaySent: slices.Contains(c.Tamper, "replay")}
	fail := func(err error) *CaseResult {
		r.Verdict, r.Problem = CaseError, err.Error()
		return r
	}
	a, err := b.actor(c.From, f.Actors[c.From], c.Tamper)
	if err != nil {
		return fail(err)
	}
	var msgs []message
	if ans := c.Send.Answer; ans != nil {
		h, ok := held[ans.To]
		if !ok {
			return fail(fmt.Errorf("eval: answer to %q: that case held nothing", ans.To))
		}
		m, err := b.answer(a, h, ans.Decision)
		if err != nil {
			return fail(err)
		}
		msgs = []message{m}
	} else if msgs, err = b.messages(c, a); err != nil {
		return fail(err)
	}
	var seqs []uint64
	for _, m := range msgs {
		nm := natsMsg(m)
		ack, err := js.PublishMsg(ctx, nm)
		if err != nil {
			return fail(fmt.Errorf("eval: publish: %w", err))
		}
		seqs = append(seqs, ack.Sequence)
	}
	for i, seq := range seqs {
		out, evs, ok := obs.wait(ctx, seq, opts.Timeout, 2*time.Second)
		if !ok {
			r.Verdict, r.Problem = NoOutcome, fmt.Sprintf("no output for ingress sequence %d (message %d of %d) within %s", seq, i+1, len(seqs), opts.Timeout)
			return r
		}
		r.MissingTrace = append(r.MissingTrace, missingTrace(out, evs)...)
		if i == len(seqs)-1 {
			r.Got = outcomeOf(seq, out, evs)
			if out.stream == gateway.StreamApproval {
				held[c.Name] = out
			}
		}
	}
	r.ReplaySent = slices.Contains(c.Tamper, "replay")
	r.ReplayDetected = r.ReplaySent && r.Got.Reason == string(reason.ReplayDetected)
	target := c.Send.Target
	if ans := c.Send.Answer; ans != nil {
		if i := slices.IndexFunc(f.Cases, func(e Case) bool { return e.Name == ans.To }); i >= 0 {
			target = f.Cases[i].Send.Target
		}
	}
	r.Verdict = verdict(c, target, r.Got)
	return r
}

// outcomeOf reads the route, reason and deciding policies off an output
// and its decision event.
func outcomeOf(seq uint64, out output, evs []audit.Event) Outcome {
	h := headerOf(out)
	o := Outcome{Route: h(header.Route), Reason: h(header.Reason), Subject: out.subject, IngressSeq: seq}
	if o.Route == "" {
		switch out.stream {
		case gateway.StreamCap:
			o.Route = RouteAllow
		case gateway.StreamApproval:
			o.Route = RouteApproval
		case gateway.StreamDenied:
			o.Route = RouteDeny
		}
	}
	for _, ev := range evs {
		if len(ev.PolicyIDs) > 0 {
			o.Policy = slices.Clone(ev.PolicyIDs)
			break
		}
	}
	if len(o.Policy) == 0 {
		if p := h(header.Policy); p != "" {
			o.Policy = strings.Split(p, ",")
		}
	}
	sort.Strings(o.Policy)
	return o
}

var restrictive = map[string]int{RouteAllow: 0, RouteApproval: 1, RouteDeny: 2}

// verdict compares got with c's expectation; target is where an allow
// must be delivered (for an answer, the held request's target).
func verdict(c *Case, target string, got Outcome) string {
	want := c.Expect
	if got.Route != want.Route {
		g, ok := restrictive[got.Route]
		if !ok {
			return FalseAllow // an output the gateway should never write counts as the worst
		}
		if g < restrictive[want.Route] {
			return FalseAllow
		}
		return FalseDenial
	}
	if want.Route == RouteDeny && got.Reason != want.Reason {
		// Denied by a later gate: the gate that should have denied let
		// the message through, which is an allow by that gate.
		if stageAfter(reason.Code(got.Reason), reason.Code(want.Reason)) {
			return FalseAllow
		}
		return WrongReason
	}
	if want.Route == RouteAllow && c.Send.Raw == nil {
		if !strings.HasSuffix(got.Subject, "."+target) {
			return WrongTarget
		}
	}
	if want.Policy != nil {
		w := slices.Clone(want.Policy)
		sort.Strings(w)
		if !slices.Equal(w, got.Policy) {
			return WrongPolicy
		}
	}
	return Pass
}

// stageOrder is the pipeline order of the gates.
var stageOrder = []reason.Stage{
	reason.StageTransport, reason.StageEnvelope, reason.StageCredential, reason.StageSignature,
	reason.StageFreshness, reason.StageLedger, reason.StageCatalog, reason.StageBudget,
	reason.StagePolicy, reason.StagePayload, reason.StageApproval,
}

// stageAfter reports whether got's gate comes after want's.
func stageAfter(got, want reason.Code) bool {
	g, ok1 := reason.Lookup(got)
	w, ok2 := reason.Lookup(want)
	if !ok1 || !ok2 {
		return false
	}
	gi, wi := slices.Index(stageOrder, g.Stage), slices.Index(stageOrder, w.Stage)
	return gi >= 0 && wi >= 0 && gi > wi
}

// headerOf returns a getter for out's headers.
func headerOf(out output) func(string) string {
	return func(k string) string {
		if v := out.header[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
}

// missingTrace lists the trace fields an output and its decision event
// lack. What is required depends on how far the message got: a body that
// did not parse has no message or trace id to carry.
func missingTrace(out output, evs []audit.Event) []string {
	h := headerOf(out)
	var missing []string
	need := func(where, field, v string) {
		if v == "" {
			missing = append(missing, where+":"+field)
		}
	}
	need(out.stream, header.Route, h(header.Route))
	need(out.stream, header.IngressSeq, h(header.IngressSeq))
	stage := reason.Stage("")
	if out.stream == gateway.StreamDenied {
		need(out.stream, header.Reason, h(header.Reason))
		need(out.stream, header.Stage, h(header.Stage))
		need(out.stream, header.DecidedAt, h(header.DecidedAt))
		if info, ok := reason.Lookup(reason.Code(h(header.Reason))); ok {
			stage = info.Stage
		}
	}
	parsed := stage != reason.StageTransport && stage != reason.StageEnvelope
	if parsed {
		need(out.stream, header.MessageID, h(header.MessageID))
	}
	if out.stream != gateway.StreamCap && parsed {
		need(out.stream, header.TraceID, h(header.TraceID))
		need(out.stream, header.Target, h(header.Target))
	}
	var ev *audit.Event
	for i := range evs {
		if decisionKind(evs[i].Kind) {
			ev = &evs[i]
			break
		}
	}
	if ev == nil {
		return append(missing, "audit:event")
	}
	need("audit", "route", ev.Route)
	if parsed {
		need("audit", "message_id", ev.MessageID)
		need("audit", "trace_id", ev.TraceID)
	}
	if out.stream == gateway.StreamDenied {
		need("audit", "reason", ev.Reason)
	}
	return missing
}

// scan looks for every secret in everything the target emitted during
// the run: each message stored this run on every stream but ingress (where
// agents themselves put credentials), and the gateway's log; a secret as
// it is, escaped as a JSON string holds it (the log and the audit events
// are JSON), and in base64. It returns one line per leak, naming the kind
// of secret and where, never the value. A stream it cannot list, open or
// read a message of (but one removed since) is an error: a scan that
// could not read proves nothing.
func scan(ctx context.Context, js jetstream.JetStream, t *Target, start map[string]uint64, secrets []secret) ([]string, error) {
	type place struct {
		where string
		text  string
	}
	var places []place
	if t.Logs != nil {
		places = append(places, place{"gateway log", t.Logs()})
	}
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		if name == gateway.StreamIngress {
			continue
		}
		st, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue // deleted since it was listed
		}
		if err != nil {
			return nil, fmt.Errorf("eval: redaction scan: stream %s: %w", name, err)
		}
		info := st.CachedInfo()
		from := max(start[name], info.State.FirstSeq, 1)
		for seq := from; seq <= info.State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue // removed since (a limit, a deleted message)
			}
			if err != nil {
				return nil, fmt.Errorf("eval: redaction scan: %s message %d: %w", name, seq, err)
			}
			places = append(places, place{fmt.Sprintf("%s#%d", name, seq), fmt.Sprint(m.Header) + "\n" + string(m.Data)})
		}
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("eval: redaction scan: listing the streams: %w", err)
	}
	var leaks []string
	seen := map[string]bool{}
	for _, p := range places {
		for _, s := range secrets {
			if slices.ContainsFunc(secretForms(s.value), func(f string) bool { return strings.Contains(p.text, f) }) {
				l := fmt.Sprintf("a %s (%d bytes) in %s", s.kind, len(s.value), p.where)
				if !seen[l] {
					seen[l] = true
					leaks = append(leaks, l)
				}
			}
		}
		for _, frag := range []string{"eyJ0eXAiOiJKV1Qi", "eyJhbGciOi"} {
			if strings.Contains(p.text, frag) {
				l := "a JWT-shaped string in " + p.where
				if !seen[l] {
					seen[l] = true
					leaks = append(leaks, l)
				}
			}
		}
	}
	return leaks, nil
}

// secretForms returns value as it is, escaped as a JSON string holds it
// (without its quotes), and in standard and URL-safe base64, each once.
func secretForms(value string) []string {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(value)
	escaped := strings.TrimSuffix(strings.TrimSuffix(b.String(), "\n"), `"`)
	escaped = strings.TrimPrefix(escaped, `"`)
	forms := []string{value}
	for _, f := range []string{escaped, base64.StdEncoding.EncodeToString([]byte(value)), base64.RawURLEncoding.EncodeToString([]byte(value))} {
		if !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	return forms
}

// loadPolicyIDs returns the ids of the policies in files.
func loadPolicyIDs(files []string) ([]string, error) {
	if len(files) == 0 {
		return []string{}, nil
	}
	set, err := policy.Load(files...)
	if err != nil {
		return nil, fmt.Errorf("eval: %w", err)
	}
	return set.IDs(), nil
}

// natsMsg is m as a NATS message.
func natsMsg(m message) *nats.Msg {
	nm := nats.NewMsg(m.subject)
	nm.Data = m.body
	for k, v := range m.header {
		nm.Header[k] = v
	}
	return nm
}
