package gateway

import (
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/store"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// retireUndelivered removes, for a request decided again that is not
// allowed this time (denied or held), the outstanding-response record its
// first decision may have put before its journal append: it was never
// delivered, and must take no answer.
func (g *Gateway) retireUndelivered(b *ledgerBatch, it *item, env *envelope.Body) error {
	if env.Capability == envelope.Approve || env.Capability == envelope.Respond || it.route == store.RouteAllow {
		return nil
	}
	_, err := g.kvh.retire(b, responseID(env.Tenant, it.ref.Agent, env.MessageID), it.seq)
	return err
}

// heldIdemUntil is how long the idempotency key of it, held for
// approval at now, stays in force: until its hold's deadline, so that a
// retry under the key while the request waits (its own entry, which
// lives as long as freshness could accept the message, may be gone by
// then) is the same request and not a second one an approver could grant
// beside it. At most maxHeldIdem past now, however long the hold: each
// copy lies in the ledger generation of its expiry, which every lookup
// probes until it expires, so copies reaching further would make every
// lookup probe a generation per GenWidth of approval_ttl. Zero for an
// item not held.
func (g *Gateway) heldIdemUntil(it *item, now time.Time) time.Time {
	if it.route != store.RouteApproval || it.deadline.IsZero() {
		return time.Time{}
	}
	if bound := now.Add(g.cfg.maxHeldIdem()); bound.Before(it.deadline) {
		return bound
	}
	return it.deadline
}

// fateUnknown reports whether it, decided again scaled out, may have
// been decided and its outputs published before, its records since
// removed from the journal the partition's ledger was rebuilt from: it
// was stored before the journal's oldest record (journalFrom), whatever
// age limit removed the older ones, or before a loss the gateway
// detected (lostBefore), with unknownFate's margin for the clocks. A
// journal that was quiet for longer than its age limit holds nothing
// older than its newest records, so a message stored less than the
// margin after its oldest one counts as unknown too (fail closed). A
// message without its stream metadata counts as unknown.
func fateUnknown(b *ledgerBatch, it *item) bool {
	from := later(b.journalFrom, b.lostBefore)
	if from.IsZero() {
		return false
	}
	if it.msg == nil {
		return true
	}
	md, err := it.msg.Metadata()
	return err != nil || unknownFate(md.Timestamp, from)
}

// finish builds the denial output and the audit event and stages the
// ledger entries; recordOutcomes then adds the audit outputs and stages
// the outcomes.
func (g *Gateway) finish(b *ledgerBatch, it *item, now time.Time) error {
	if it.reemit {
		return nil
	}
	if it.route == "" {
		it.deny(reason.Deny(reason.Internal, "no gate decided"))
	}
	g.startSpan(it, "") // messages that never parsed get a trace of their own
	if it.route == store.RouteApproval {
		if err := g.stageHold(b, it, now); err != nil {
			return err
		}
		// Held (or refused by stageHold) this time, a request decided
		// again was not delivered: the response record an allow put the
		// first time must not let an answer through before a grant.
		if env := g.redecidedEnv(it); env != nil {
			if err := g.retireUndelivered(b, it, env); err != nil {
				return err
			}
		}
	} else if env := g.redecidedEnv(it); env != nil {
		// Scaled out, a hold goes to the shared bucket before the journal
		// append. A message held, then decided again after its instance
		// died, that is not held
		// this time (a policy or the catalog changed, or it expired
		// meanwhile) must not leave its first decision's hold behind: its
		// expiry or an answer would end the message a second time.
		id := holdID(env.Tenant, env.MessageID)
		ended, err := g.kvh.retire(b, id, it.seq)
		if err != nil {
			return err
		}
		if ended != nil && !g.heldBefore(it, env, ended, now) {
			g.log.Warn().Str("hold", id).Uint64("ingress_seq", it.seq).Str("route", string(it.route)).
				Msg("a message decided again after a crash had its earlier hold answered or expired meanwhile, and its approval request cannot be rebuilt; it ends twice")
		}
		if env.Capability == envelope.Approve && (it.heldItem == nil || it.route != store.RouteAllow) {
			// A grant that released its request the first time recorded
			// the request's outstanding response before its journal
			// append: refused this time, or releasing it to the denied
			// stream, the request is not delivered and must take no
			// answer.
			if err := g.retireReleasedResponse(b, env, it.seq); err != nil {
				return err
			}
		}
		// What the first decision took (a hold, a request's one answer)
		// is given back below only when that decision certainly was not
		// published: when the ledger, rebuilt from the journal, cannot
		// know (the message was stored before what the journal still
		// holds), it may have been published and its records aged out,
		// and giving back would let the request be released, or
		// answered, a second time.
		unknown := fateUnknown(b, it)
		if unknown && (env.Capability == envelope.Approve && it.heldItem == nil ||
			env.Capability == envelope.Respond && it.route != store.RouteAllow) {
			g.log.Warn().Uint64("ingress_seq", it.seq).Str("capability", string(env.Capability)).Time("journal_from", b.journalFrom).
				Msg("an answer decided again whose first decision the rebuilt ledger cannot know keeps what that decision took: it may have been published")
		}
		if env.Capability == envelope.Approve && it.heldItem == nil && !unknown {
			// An answer refused this time may have taken its hold the
			// first time: give it back, or the held request never ends.
			// Given back, it is swept: a revocation's sweep since skipped
			// it while it was taken.
			back, err := g.kvh.untake(b, holdID(env.Tenant, env.Target), it.seq)
			if err != nil {
				return err
			}
			if back {
				g.requestSweep()
			}
		}
		if err := g.retireUndelivered(b, it, env); err != nil {
			return err
		}
		if env.Capability == envelope.Respond && it.route != store.RouteAllow && !unknown {
			// Likewise a response refused this time may have used up its
			// request's one answer the first time: give it back, or the
			// request can no longer be answered.
			if agent, messageID, ok := envelope.ParseRequestRef(env.Target); ok {
				if err := g.kvh.unmark(b, answeredMarker, responseID(env.Tenant, agent, messageID), it.seq); err != nil {
					return err
				}
			}
		}
	}
	if it.route == store.RouteAllow && it.request != nil {
		if err := g.markAnswered(b, it); err != nil {
			return err
		}
	}
	if it.route == store.RouteAllow && it.request == nil {
		if err := g.stageOutstanding(b, it, now); err != nil {
			return err
		}
	}
	if it.route == store.RouteDeny && it.heldItem == nil {
		m, err := g.denyOutput(it, now)
		if err != nil {
			return fmt.Errorf("gateway: denied output: %w", err)
		}
		it.outputs = []*nats.Msg{m}
	}
	it.ev = g.auditEvent(it, g.clock(), it.outputs[0].Subject)
	d := store.Decision{Route: it.route, Target: targetName(it), PolicyIDs: it.pol.PolicyIDs, PolicyVersion: it.pol.Version, OutputMsgID: outputMsgID(it, "")}
	if it.denial != nil {
		d.Reason = it.denial.Code
	}
	if it.env != nil {
		d.Capability = string(it.env.Capability)
	}
	if it.keyed {
		if err := b.PutReplay(it.replay, store.ReplayEntry{Seq: it.seq, Expires: it.env.ExpiresAt, BodyDigest: it.digest, Decision: d}); err != nil {
			return err
		}
		b.journalMarker(it)
		if keepsIdem(it) {
			e := store.IdemEntry{PayloadDigest: it.payload, MessageID: it.env.MessageID, Expires: it.env.ExpiresAt, Decision: d}
			if err := b.PutIdem(it.idem, e); err != nil {
				return err
			}
			if until := g.heldIdemUntil(it, now); until.After(e.Expires) {
				// A copy for as long as the request is held: a retry
				// under its key is the same request until then.
				e.Expires = until
				if err := b.PutIdem(it.idem, e); err != nil {
					return err
				}
			}
		}
	}
	if err := g.stageNotices(it, now); err != nil {
		return err
	}
	it.finished = true
	return nil
}

// keepsIdem reports whether it's outcome is recorded under its
// idempotency key. A copy refused under a key already taken is not (the
// key keeps its first request), nor is an answer to a held request that
// the gate refused without taking the hold: the request stays held for
// another answer, and the approver's corrected one, which the SDKs send
// under the same key ("approve-<held id>"), is judged, not refused as a
// duplicate of the refusal. An answer that took the hold keeps its key
// whatever it ended the request with (a deny, a release refused).
func keepsIdem(it *item) bool {
	switch {
	case it.denial == nil:
		return true
	case it.denial.Code == reason.DuplicateRequest || it.denial.Code == reason.IdempotencyConflict:
		return false
	default:
		return it.env.Capability != envelope.Approve || it.heldItem != nil
	}
}

// maxAuditMessage bounds the events of one audit message, in bytes (a
// few hundred decisions), and so does half the server's max_payload.
const maxAuditMessage = 128 << 10

// recordOutcomes adds the audit outputs of the decided items of a batch
// and stages their outcomes, after the entries finish staged (the outcome
// last: a journal prefix never holds it without the entries).
//
// The events of one tenant in the batch go out as one audit message
// (audit.Lines), up to maxAuditMessage: publishing one message per
// decision was a tenth of the gateway's CPU. The message is an output of
// the batch's last item for that tenant, its carrier, and is recorded in
// the carrier's outcome only; the carrier is acknowledged only once the
// message is stored, so until then the carrier's redelivery re-emits it
// (same Nats-Msg-Id); the others are acknowledged once their own outputs
// are stored, their events being durable in the carrier's outcome. A
// stream that refuses the message for its size gets its events one per
// message instead (refused.go), recorded in the carrier's narrowed
// outcome. That needs the outcomes of a batch recorded all or none,
// which one Pebble commit is. A scale-out journal append can stop
// part way (a prefix holding a non-carrier's outcome but not its
// carrier's would lose the event), so journaled partitions keep one audit
// message per decision.
func (g *Gateway) recordOutcomes(b *ledgerBatch, items []*item) error {
	type group struct {
		data    []byte
		carrier *item
	}
	limit := maxAuditMessage
	if mp := int(g.nc.MaxPayload() / 2); mp > 0 && mp < limit {
		limit = mp
	}
	// Grouped by tenant (an invalid one's events under UnroutableTenant,
	// as auditSubject files them); the subject is built once per group.
	var open map[string]*group
	flush := func(tenant string, gr *group) {
		m := nats.NewMsg(auditSubject(tenant))
		m.Data = gr.data
		m.Header.Set(header.MsgID, outputMsgID(gr.carrier, ".audit"))
		gr.carrier.outputs = append(gr.carrier.outputs, m)
	}
	for _, it := range items {
		if it.reemit {
			continue
		}
		if b.journal {
			it.outputs = append(it.outputs, g.auditOutput(it, it.ev))
			continue
		}
		tenant := it.ev.Tenant
		if !subjects.ValidToken(tenant) {
			tenant = UnroutableTenant
		}
		gr := open[tenant]
		if gr != nil && len(gr.data) >= limit {
			flush(tenant, gr)
			gr = nil
		}
		if gr == nil {
			if open == nil {
				open = make(map[string]*group)
			}
			// Events are under a kilobyte: room for the batch's, up to
			// the limit and the event that crosses it, without regrowing.
			gr = &group{data: make([]byte, 0, min(1<<10*len(items), limit+8<<10))}
			open[tenant] = gr
		}
		gr.data, gr.carrier = it.ev.AppendLine(gr.data), it
	}
	for tenant, gr := range open {
		flush(tenant, gr)
	}
	for _, it := range items {
		if it.reemit {
			continue
		}
		rec, err := encodeOutputs(it.outputs, it.body)
		if err != nil {
			return err
		}
		if err := b.PutOutcome(it.seq, rec); err != nil {
			return err
		}
	}
	return nil
}

func targetName(it *item) string {
	if it.target != nil {
		return it.target.Name
	}
	if it.env != nil {
		return it.env.Target
	}
	return ""
}
