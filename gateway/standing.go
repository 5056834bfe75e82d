package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/subjects/reason"
)

// A held request keeps the standing of the credential it was sent with
// (and, for an operator's replay, of the operator's) only as long as that
// credential would still be accepted: the identity
// gates that can change after the request was held are revocation (of
// its jti or of the agent key) and the trust of its issuer for the
// tenant (with the audience and the maximum lifetime, which are
// configuration). heldStanding re-runs the whole credential gate on the
// recorded credential, against the revocations and trust in force now,
// at the instant the request was held.
//
// Time is judged at that instant, not at release: a credential that
// expires while its request waits does not stop the release. It was
// valid when the agent signed and the gateway held the request; the held
// request cannot be sent again (the replay ledger has its nonce), so a
// stolen credential gains nothing from the wait; and the hold's own
// deadline (approval_ttl) bounds how long past expiry a release can
// come. Withdrawing an agent's authority is what revocation is for, and
// revocation is checked now. Judging expiry at release instead would
// make every request whose credential is shorter than the approver's
// response time unreleasable, for no security gain.
//
// Where it runs:
//   - at release (approvalGate): a grant of a request whose requester no
//     longer stands sends it to the denied stream with the credential
//     gate's reason, as the answer's output;
//   - in a sweep (sweepHolds) at start, after every reload of the
//     revocations, after a batch that held a request while the
//     revocations changed (sweepAfter), and, scaled out, at the start of
//     each partition's tenure and after a hold is given back (untake): each held request whose requester no longer stands is
//     denied at once (withdrawn), as its second, final output, with its
//     audit event, and its hold is consumed so no approver can grant it.

// withdrawnPrefix names the record of a decided withdrawal awaiting
// publish (as expiredPrefix does for an expiry).
const withdrawnPrefix = "withdrawn:"

// heldStanding returns nil if the held request's credential would still
// be accepted, as of the instant the request was held, under the
// revocations and trust in force now; otherwise the credential gate's
// denial, its detail saying the request was held.
func (g *Gateway) heldStanding(h *held) error {
	// The hold keeps the credential sealed to the gateway's curve key
	// (holdRecord). One that no longer opens (the curve key changed, the
	// old one not among keys.accepted_curves) can no longer be checked,
	// so the request no longer stands.
	tok, err := g.openCredential(h.CredentialSealed, h.CredentialSealedTo, h.Body)
	if err != nil {
		var d *reason.Denial
		if errors.As(err, &d) {
			return reason.Deny(d.Code, "held request: %s", d.Detail)
		}
		return reason.Deny(reason.Internal, "held request: credential does not open")
	}
	cred, err := g.verifier.Verify(string(tok), h.RequestedAt)
	if err == nil && (cred.ID != h.CredentialID || cred.Subject != h.Agent) {
		err = reason.Deny(reason.Internal, "held record's credential is not the one it names")
	}
	if err == nil && h.ReplayBy != "" {
		// An operator's replay: the operator must still stand too.
		err = g.replayStanding(h.ReplayCredential, h.Body, h.Tenant, h.ReplayBy, h.ReplayExp)
	}
	if err == nil {
		return nil
	}
	return heldDenial(err)
}

// heldDenial is a gate's denial of a held request, its detail saying so;
// an error that is not a denial is internal_error (fail closed).
func heldDenial(err error) *reason.Denial {
	var d *reason.Denial
	if !errors.As(err, &d) {
		return reason.Deny(reason.Internal, "held request: check failed")
	}
	return reason.Deny(d.Code, "held request: %s", d.Detail)
}

// requestSweep asks expireLoop to sweep the held requests. It never
// blocks: a sweep already requested covers this one.
func (g *Gateway) requestSweep() {
	select {
	case g.sweep <- struct{}{}:
	default:
	}
}

// sweepHolds denies every held request whose requester no longer stands
// (heldStanding). Each is decided in a ledger batch, serialized with the
// pipeline like an expiry: a grant that consumed the hold first wins,
// and once the withdrawal has consumed it no grant can find it.
func (g *Gateway) sweepHolds(ctx context.Context) error {
	now := g.clock()
	if g.kvh != nil {
		return g.sweepKV(ctx, now)
	}
	var errs []error // one failing hold does not stop the others
	for _, led := range g.ledgers() {
		// Collect first: a batch cannot start while the scan reads.
		var ids []string
		err := led.ScanHolds(func(hd store.Hold) error {
			if !approvalHoldID(hd.ID) {
				return nil
			}
			var h held
			if json.Unmarshal(hd.Value, &h) != nil {
				// Not this sweep's to report: the expiry meets it at
				// its deadline and says so. Failing here would retry
				// the whole sweep every tick, for ever.
				return nil
			}
			if g.heldStanding(&h) != nil {
				ids = append(ids, hd.ID)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := g.withdraw(ctx, led, id, now); err != nil {
				errs = append(errs, fmt.Errorf("hold %s: %w", id, err))
			}
		}
	}
	return errors.Join(errs...)
}

// approvalHoldID reports whether a hold id names a request held for an
// approver (not an outstanding request or a decided end awaiting
// publish).
func approvalHoldID(id string) bool {
	return !strings.HasPrefix(id, respPrefix) && !strings.HasPrefix(id, expiredPrefix) && !strings.HasPrefix(id, withdrawnPrefix)
}

// withdraw denies one held request whose requester no longer stands,
// inside a ledger batch; its outputs are recorded in the same commit and
// published after it (re-published after a crash, into JetStream's
// de-duplication), as an expiry's are.
func (g *Gateway) withdraw(ctx context.Context, led *store.Ledger, id string, now time.Time) error {
	b := led.NewBatch()
	defer b.Close()
	_, v, ok, err := b.Hold(id)
	if err != nil || !ok {
		return err // answered or expired meanwhile
	}
	var h held
	if err := json.Unmarshal(v, &h); err != nil {
		return fmt.Errorf("gateway: held record %s: %w", id, err)
	}
	rec, ev, err := g.withdrawal(&h, now)
	if err != nil || rec == nil {
		return err
	}
	if err := b.DeleteHold(id); err != nil {
		return err
	}
	if err := b.PutHold(withdrawnPrefix+id, now, rec); err != nil {
		return err
	}
	if err := b.Commit(); err != nil {
		return err
	}
	g.countWithdrawal(&h, ev, now)
	return g.publishExpiry(ctx, led, withdrawnPrefix+id, rec)
}

// withdrawal builds the outputs of a held request's withdrawal, or nil
// outputs and error when its requester stands after all (restored
// meanwhile) or the held record cannot be rebuilt.
func (g *Gateway) withdrawal(h *held, now time.Time) ([]byte, audit.Event, error) {
	cause := g.heldStanding(h)
	if cause == nil {
		return nil, audit.Event{}, nil
	}
	var d *reason.Denial
	errors.As(cause, &d) // heldStanding returns denials only
	return g.heldEndOutputs(h, d, audit.KindApprovalWithdrawn, ".withdrawn", now)
}

func (g *Gateway) countWithdrawal(h *held, ev audit.Event, now time.Time) {
	g.metrics.Approvals.WithLabelValues("withdrawn").Inc()
	g.metrics.ApprovalAge.Observe(now.Sub(h.RequestedAt).Seconds())
	g.logDecision(ev)
}

// sweepKV is sweepHolds for the shared holds bucket. Every instance
// sweeps when its own revocations change; the revision-checked update
// decides which one withdraws a hold, and the outputs are recorded in
// the hold before they are published, so whoever scans next re-publishes
// them if the publisher died (expireKV).
func (g *Gateway) sweepKV(ctx context.Context, now time.Time) error {
	k := g.kvh
	keys, err := k.keys(ctx)
	if err != nil {
		return err
	}
	var errs []error // one failing hold does not stop the others
	for _, key := range keys {
		id, ok := holdIDOf(key)
		if !ok || !approvalHoldID(id) {
			continue
		}
		kh, rev, err := k.get(key)
		if err != nil {
			errs = append(errs, fmt.Errorf("hold %s: %w", id, err))
			continue
		}
		if kh == nil || kh.State != kvHeld {
			continue
		}
		var h held
		if json.Unmarshal(kh.Value, &h) != nil {
			continue // the expiry reports it (sweepHolds)
		}
		outs, ev, err := g.withdrawal(&h, now)
		if err != nil {
			errs = append(errs, fmt.Errorf("hold %s: %w", id, err))
			continue
		}
		if outs == nil {
			continue
		}
		rev, ok, err = k.markExpired(ctx, kvDue{key: key, id: id, rev: rev, h: kh}, outs)
		if err != nil {
			errs = append(errs, fmt.Errorf("hold %s: %w", id, err))
			continue
		}
		if !ok {
			continue // a grant, the expiry or another instance took it first
		}
		g.countWithdrawal(&h, ev, now)
		if err := g.publishKVExpiry(ctx, key, rev, outs); err != nil {
			errs = append(errs, fmt.Errorf("hold %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}
