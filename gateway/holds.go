package gateway

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/agentgw/agentgw/gateway/audit"
	"github.com/agentgw/agentgw/subjects/reason"
)

// holdStore keeps what an answer must find whichever partition it comes
// in on: requests held for an approver, requests outstanding for a
// response, and the single-use marker of each answer. A single instance
// keeps them in its ledger, in the same batch as everything else; scaled
// out, an approver's or responder's envelope is decided by the owner of
// the answerer's partition, not the requester's, so they live in a
// JetStream KV bucket shared by every instance (kvHolds).
//
// seq is the ingress sequence of the message doing the operation: a KV
// write happens before the batch's commit, so a redelivery of the same
// message must find its own earlier write and carry on.
type holdStore interface {
	// hold returns hold id if it is pending, or was taken by seq.
	hold(b *ledgerBatch, id string, seq uint64) (h foundHold, ok bool, err error)
	// putHold stores hold id. Unless replace, a pending hold of another
	// creator is errHoldExists.
	putHold(b *ledgerBatch, id string, deadline time.Time, v []byte, seq uint64, replace bool) error
	// takeHold consumes a hold hold() returned; false means another
	// message (or the expiry) took it first.
	takeHold(b *ledgerBatch, id string, seq uint64) (bool, error)
	// once sets a single-use marker; false if another message set it.
	once(b *ledgerBatch, kind, id string, expires time.Time, seq uint64) (bool, error)
}

var errHoldExists = errors.New("gateway: a hold with this id is pending")

// foundHold is a hold as holdStore.hold finds it.
type foundHold struct {
	deadline time.Time
	value    []byte
	creator  uint64 // the sequence that put it (0 when the store cannot tell)
	// takenBySeq: the message asking took it already, so this is that
	// message's redelivery. Its take was made by the deadline
	// (approvalGate checks the deadline before taking).
	takenBySeq bool
}

// ledgerHolds keeps holds in the partition's ledger batch.
type ledgerHolds struct{}

func (ledgerHolds) hold(b *ledgerBatch, id string, _ uint64) (foundHold, bool, error) {
	// A take commits with its message's decision: a redelivery never
	// finds its own.
	d, v, ok, err := b.Hold(id)
	return foundHold{deadline: d, value: v}, ok, err
}

func (ledgerHolds) putHold(b *ledgerBatch, id string, deadline time.Time, v []byte, _ uint64, _ bool) error {
	return b.PutHold(id, deadline, v)
}

func (ledgerHolds) takeHold(b *ledgerBatch, id string, _ uint64) (bool, error) {
	return true, b.DeleteHold(id)
}

func (ledgerHolds) once(b *ledgerBatch, kind, id string, expires time.Time, _ uint64) (bool, error) {
	return b.SetOnce(kind, id, expires)
}

// HoldsBucket is the KV bucket of scale-out mode's holds.
const HoldsBucket = "AGENTGW_HOLDS"

// kvHold is one value of the holds bucket.
type kvHold struct {
	State    string    `json:"state"`             // held, taken, expired, marker
	Creator  uint64    `json:"creator"`           // ingress sequence that put it
	TakenBy  uint64    `json:"taken_by,omitzero"` // ingress sequence that consumed it; 0: its expiry or withdrawal, published
	Deadline time.Time `json:"deadline"`          // hold deadline; marker expiry
	Value    []byte    `json:"value,omitempty"`
	Outputs  []byte    `json:"outputs,omitempty"` // a decided expiry's outputs
}

const (
	kvHeld    = "held"
	kvTaken   = "taken"
	kvExpired = "expired" // ended without an answer (expired or withdrawn): Outputs await publish
	kvMarker  = "marker"
)

// kvHolds keeps holds in a JetStream KV bucket: every state change is a
// revision-checked update, so of two instances racing for one hold (two
// grants, a grant and the expiry) exactly one wins.
type kvHolds struct {
	kv      jetstream.KeyValue
	pending atomic.Int64 // held approvals seen by the last expiry scan
	oldest  atomic.Int64 // when the oldest of them was requested, unix nanoseconds
}

func holdKey(id string) string { return "h." + base64.RawURLEncoding.EncodeToString([]byte(id)) }

func markerKey(kind, id string) string {
	return "m." + base64.RawURLEncoding.EncodeToString([]byte(kind+"\x00"+id))
}

func holdIDOf(key string) (string, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(key, "h."))
	return string(raw), err == nil && strings.HasPrefix(key, "h.")
}

// kvTimeout bounds one KV operation on the decision path.
const kvTimeout = 10 * time.Second

// revisionMoved reports whether a revision-checked Update or Delete
// failed because the key is no longer at that revision. A replicated
// bucket reports it with another error code than a single replica's, and
// only jetstream.ErrKeyRevisionMismatch matches both: on an R3 bucket
// jetstream.ErrKeyExists would miss every conflict.
func revisionMoved(err error) bool { return errors.Is(err, jetstream.ErrKeyRevisionMismatch) }

func (k *kvHolds) get(key string) (*kvHold, uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), kvTimeout)
	defer cancel()
	e, err := k.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("gateway: holds: %w", err)
	}
	var h kvHold
	if err := json.Unmarshal(e.Value(), &h); err != nil {
		return nil, 0, fmt.Errorf("gateway: holds: value of %s: %w: %v", key, errBadValue, err)
	}
	return &h, e.Revision(), nil
}

// errBadValue: a value of the holds bucket does not decode.
var errBadValue = errors.New("not a hold")

func (k *kvHolds) hold(b *ledgerBatch, id string, seq uint64) (foundHold, bool, error) {
	h, rev, err := k.get(holdKey(id))
	if err != nil || h == nil {
		return foundHold{}, false, err
	}
	own := h.State == kvTaken && h.TakenBy == seq
	if h.State == kvHeld || own {
		if b.revs == nil {
			b.revs = map[string]uint64{}
		}
		b.revs[id] = rev
		return foundHold{deadline: h.Deadline, value: h.Value, creator: h.Creator, takenBySeq: own}, true, nil
	}
	return foundHold{}, false, nil
}

func (k *kvHolds) putHold(b *ledgerBatch, id string, deadline time.Time, v []byte, seq uint64, replace bool) error {
	val, _ := json.Marshal(kvHold{State: kvHeld, Creator: seq, Deadline: deadline, Value: v})
	ctx, cancel, err := b.kvContext()
	if err != nil {
		return err
	}
	defer cancel()
	if replace {
		_, err := k.kv.Put(ctx, holdKey(id), val)
		return err
	}
	_, err = k.kv.Create(ctx, holdKey(id), val)
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	h, _, err := k.get(holdKey(id))
	if err != nil {
		return err
	}
	if h != nil && h.Creator == seq {
		if h.State != kvHeld {
			return &ownHoldEnded{hold: h}
		}
		return nil // this message's own write, before a redelivery
	}
	return errHoldExists
}

// ownHoldEnded: the hold a message puts is its own, written by a decision
// of it before a crash, and has ended since (expired, withdrawn, or taken
// by an answer). That end is the request's answer (stageHold).
type ownHoldEnded struct{ hold *kvHold }

func (e *ownHoldEnded) Error() string { return "gateway: this message's own hold has ended" }

func (k *kvHolds) takeHold(b *ledgerBatch, id string, seq uint64) (bool, error) {
	rev, ok := b.revs[id]
	if !ok {
		return false, fmt.Errorf("gateway: holds: take %s without reading it", id)
	}
	h, cur, err := k.get(holdKey(id))
	if err != nil || h == nil {
		return false, err
	}
	if h.State == kvTaken && h.TakenBy == seq {
		return true, nil
	}
	if cur != rev || h.State != kvHeld {
		return false, nil
	}
	h.State, h.TakenBy = kvTaken, seq
	val, _ := json.Marshal(h)
	ctx, cancel, err := b.kvContext()
	if err != nil {
		return false, err
	}
	defer cancel()
	_, err = k.kv.Update(ctx, holdKey(id), val, rev)
	if revisionMoved(err) {
		return false, nil // revision moved: someone else took it
	}
	return err == nil, err
}

// retire removes hold id if the message at seq put it and it is still
// held: that message was decided again and is not held this time (see
// finish). A hold another message put is not its to remove. One of its
// own that an answer took or the expiry ended meanwhile is left as it is
// and returned (ended): that ended the request already. (A take needs an
// answerer who knew the request's digest although its approval request
// was never published.) A revision that moves under the removal fails the
// batch, whose messages are then redelivered and look again.
func (k *kvHolds) retire(b *ledgerBatch, id string, seq uint64) (ended *kvHold, err error) {
	h, rev, err := k.get(holdKey(id))
	if errors.Is(err, errBadValue) {
		return nil, nil // not a hold this message can have put
	}
	if err != nil || h == nil || h.Creator != seq {
		return nil, err
	}
	if h.State != kvHeld {
		return h, nil
	}
	ctx, cancel, err := b.kvContext()
	if err != nil {
		return nil, err
	}
	defer cancel()
	if err := k.kv.Delete(ctx, holdKey(id), jetstream.LastRevision(rev)); err != nil {
		return nil, fmt.Errorf("gateway: holds: retire %s: %w", id, err)
	}
	return nil, nil
}

// untake gives hold id back if the message at seq took it: that
// message, an answer decided again after its instance died before its
// batch was journaled, is refused this time (its approver revoked, its
// answer expired, a policy changed), so its take must not stand: the
// held request would have no end. Revision-checked; a revision that
// moves under it fails the batch, whose messages then look again. back
// reports that it gave the hold back.
func (k *kvHolds) untake(b *ledgerBatch, id string, seq uint64) (back bool, err error) {
	h, rev, err := k.get(holdKey(id))
	if errors.Is(err, errBadValue) {
		return false, nil // not a hold this message can have taken
	}
	if err != nil || h == nil || h.State != kvTaken || h.TakenBy != seq {
		return false, err
	}
	h.State, h.TakenBy = kvHeld, 0
	val, _ := json.Marshal(h)
	ctx, cancel, err := b.kvContext()
	if err != nil {
		return false, err
	}
	defer cancel()
	if _, err := k.kv.Update(ctx, holdKey(id), val, rev); err != nil {
		return false, fmt.Errorf("gateway: holds: give back %s: %w", id, err)
	}
	return true, nil
}

// unmark gives back the single-use marker kind/id if the message at seq
// set it: that message, a response decided again after its instance died
// before its batch was journaled, is refused this time (its credential
// expired, its requester revoked, a policy changed), so it must not use
// up its request's one answer. Revision-checked, as untake.
func (k *kvHolds) unmark(b *ledgerBatch, kind, id string, seq uint64) error {
	h, rev, err := k.get(markerKey(kind, id))
	if errors.Is(err, errBadValue) {
		return nil // not a marker this message can have set
	}
	if err != nil || h == nil || h.State != kvMarker || h.Creator != seq {
		return err
	}
	ctx, cancel, err := b.kvContext()
	if err != nil {
		return err
	}
	defer cancel()
	if err := k.kv.Delete(ctx, markerKey(kind, id), jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("gateway: holds: give back marker %s: %w", id, err)
	}
	return nil
}

func (k *kvHolds) once(b *ledgerBatch, kind, id string, expires time.Time, seq uint64) (bool, error) {
	val, _ := json.Marshal(kvHold{State: kvMarker, Creator: seq, Deadline: expires})
	ctx, cancel, err := b.kvContext()
	if err != nil {
		return false, err
	}
	defer cancel()
	_, err = k.kv.Create(ctx, markerKey(kind, id), val)
	if err == nil {
		return true, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return false, err
	}
	h, _, err := k.get(markerKey(kind, id))
	if err != nil {
		return false, err
	}
	return h != nil && h.Creator == seq, nil
}

// ensureHoldsBucket creates the holds bucket (history 1, file storage).
func ensureHoldsBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      HoldsBucket,
		Description: "agentgw: held approvals, outstanding requests and answer markers (scale-out)",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return js.KeyValue(ctx, HoldsBucket)
	}
	return kv, err
}

// markerGrace is how long a marker of the holds bucket (a held message
// id, a request's one answer) outlives the last instant it can matter:
// ack_wait and the clocks' margin. A recovered batch is judged up to
// ack_wait back, on an instance whose clock may be behind the scanning
// one's, and must still find it.
func markerGrace(ackWait time.Duration) time.Duration { return ackWait + journalClockMargin }

// kvDue is one entry of the holds bucket the expiry scan must act on.
type kvDue struct {
	key string
	id  string
	rev uint64
	h   *kvHold
}

// scan lists the bucket and returns what is due at now: held approvals
// past their deadline, decided expiries not yet published, taken holds
// and outstanding requests past their life and grace, and markers past
// their life and markerGrace. It counts the pending approvals for the
// gauges on the way. A value that cannot be read is reported in the error
// and skipped: the others are returned.
func (k *kvHolds) scan(ctx context.Context, now time.Time, grace, markerGrace time.Duration) ([]kvDue, error) {
	keys, err := k.keys(ctx)
	if err != nil {
		return nil, err
	}
	var due []kvDue
	var pending, oldest int64
	var rec struct {
		RequestedAt time.Time `json:"requested_at"`
	}
	var bad []error // a value that does not read is reported, not in the way of the others
	for _, key := range keys {
		h, rev, err := k.get(key)
		if err != nil {
			bad = append(bad, err)
			continue
		}
		if h == nil {
			continue
		}
		id, _ := holdIDOf(key)
		approvalHold := strings.HasPrefix(key, "h.") && !strings.HasPrefix(id, respPrefix)
		if h.State == kvHeld && approvalHold {
			pending++
			// The hold's value is the held request (holdRecord); its
			// deadline alone does not say when it was requested, since a
			// target may set its own approval_ttl.
			rec.RequestedAt = time.Time{}
			if json.Unmarshal(h.Value, &rec) == nil && !rec.RequestedAt.IsZero() {
				if at := rec.RequestedAt.UnixNano(); oldest == 0 || at < oldest {
					oldest = at
				}
			}
		}
		switch {
		case h.State == kvExpired,
			h.State == kvHeld && now.After(h.Deadline), // an answer at the deadline itself still counts
			h.State == kvTaken && now.After(h.Deadline.Add(grace)),
			h.State == kvMarker && now.After(h.Deadline.Add(markerGrace)):
			due = append(due, kvDue{key: key, id: id, rev: rev, h: h})
		}
	}
	k.pending.Store(pending)
	k.oldest.Store(oldest)
	return due, errors.Join(bad...)
}

// keys lists the keys of the bucket (none when it is empty).
func (k *kvHolds) keys(ctx context.Context) ([]string, error) {
	lister, err := k.kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []string
	for key := range lister.Keys() {
		keys = append(keys, key)
	}
	return keys, nil
}

// remove deletes key if it is still at rev.
func (k *kvHolds) remove(ctx context.Context, key string, rev uint64) error {
	err := k.kv.Delete(ctx, key, jetstream.LastRevision(rev))
	if revisionMoved(err) {
		return nil // changed meanwhile; the next scan looks again
	}
	return err
}

// markExpired records the outputs of a decided expiry or withdrawal in
// the hold, if it is still pending at rev; false means a grant (or the
// other of the two) took it first.
func (k *kvHolds) markExpired(ctx context.Context, d kvDue, outputs []byte) (uint64, bool, error) {
	h := *d.h
	h.State, h.Outputs, h.Value = kvExpired, outputs, nil
	val, _ := json.Marshal(h)
	rev, err := k.kv.Update(ctx, d.key, val, d.rev)
	if revisionMoved(err) {
		return 0, false, nil
	}
	return rev, err == nil, err
}

// expireKV is expireDue for the shared holds bucket. Every instance runs
// it; the revision-checked update decides which one expires a hold, and
// the expiry's outputs are recorded in the hold before they are
// published, so whoever scans next re-publishes them (into JetStream's
// de-duplication) if the publisher died.
func (g *Gateway) expireKV(ctx context.Context, now time.Time) error {
	k := g.kvh
	// A taken hold is kept while the message that took it (decided by the
	// deadline) may still be fresh, so its redelivery finds its own take;
	// an ended one (end) while the request that put it may be; and an
	// approval's, either way, until both are acknowledged (below).
	due, err := k.scan(ctx, now, g.fresh.Span(), markerGrace(g.cfg.Consumer.AckWait))
	if err != nil && due == nil {
		return err
	}
	errs := []error{err} // one failing hold does not stop the others
	floor := g.ingressFloor(ctx)
	for _, d := range due {
		approval := strings.HasPrefix(d.key, "h.") && !strings.HasPrefix(d.id, respPrefix)
		switch {
		case d.h.State == kvExpired:
			err = g.publishKVExpiry(ctx, d.key, d.rev, d.h.Outputs)
		case d.h.State == kvHeld && approval:
			err = g.expireKVHold(ctx, d, now)
		case d.h.State == kvTaken && approval && !floor.passed(max(d.h.Creator, d.h.TakenBy)):
			// A taken or ended approval hold outlives its freshness
			// while the message that put it or took it may still be
			// decided again: a partition down longer than that (its
			// instances all stopped, or its journal failing) decides
			// them late, as expired, and they must still find it. Their
			// redelivery gives back a take (untake) or rebuilds the
			// approval request of an ended hold (heldBefore); without
			// the hold the request would have no end, or two.
			err = nil
		default:
			// Outstanding requests past their answer window, taken
			// holds and markers past their life.
			err = k.remove(ctx, d.key, d.rev)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("hold %s: %w", d.id, err))
		}
	}
	return errors.Join(errs...)
}

// ingressFloor reads, at most once, the ack floor of every ingress
// consumer of every partition (floorOf): a message at or below it has
// been acknowledged and is not delivered again.
func (g *Gateway) ingressFloor(ctx context.Context) *lazyFloor {
	return &lazyFloor{read: func() (uint64, bool) {
		if g.scale == nil || len(g.scale.consumers) == 0 {
			return 0, false
		}
		cons := slices.Clone(g.scale.consumers)
		for _, ts := range g.scale.tenants {
			for _, tc := range ts {
				cons = append(cons, tc.cons)
			}
		}
		floor, _, ok := g.floorOf(ctx, cons)
		return floor, ok
	}}
}

// lazyFloor is an ack floor read when first needed.
type lazyFloor struct {
	read  func() (uint64, bool)
	done  bool
	floor uint64
	ok    bool
}

// passed reports whether seq is at or below the floor; false when the
// floor cannot be read.
func (f *lazyFloor) passed(seq uint64) bool {
	if !f.done {
		f.floor, f.ok = f.read()
		f.done = true
	}
	return f.ok && seq <= f.floor
}

func (g *Gateway) expireKVHold(ctx context.Context, d kvDue, now time.Time) error {
	var h held
	if err := json.Unmarshal(d.h.Value, &h); err != nil {
		return fmt.Errorf("gateway: held record %s: %w", d.id, err)
	}
	outs, ev, err := g.heldEndOutputs(&h, reason.Deny(reason.ApprovalExpired, "no answer before %s", d.h.Deadline.UTC().Format(time.RFC3339)),
		audit.KindApprovalExpired, ".expired", now)
	if err != nil || outs == nil {
		return err
	}
	rev, ok, err := g.kvh.markExpired(ctx, d, outs)
	if err != nil || !ok {
		return err // a grant took it first
	}
	g.metrics.Approvals.WithLabelValues("expired").Inc()
	g.metrics.ApprovalAge.Observe(now.Sub(h.RequestedAt).Seconds())
	g.logDecision(ev)
	return g.publishKVExpiry(ctx, d.key, rev, outs)
}

// publishKVExpiry publishes a decided expiry's or withdrawal's outputs,
// then ends the hold.
func (g *Gateway) publishKVExpiry(ctx context.Context, key string, rev uint64, outs []byte) error {
	if left, err := g.publishRecorded(ctx, outs); err != nil {
		if left != nil {
			// Only what is left is published again (publishExpiry).
			return errors.Join(err, g.kvh.narrow(ctx, key, rev, left))
		}
		return err
	}
	return g.kvh.end(ctx, key, rev)
}

// narrow replaces the outputs a decided expiry or withdrawal recorded in
// hold key by left, if the hold is still at rev.
func (k *kvHolds) narrow(ctx context.Context, key string, rev uint64, left []byte) error {
	h, cur, err := k.get(key)
	if err != nil || h == nil || cur != rev {
		return err // changed meanwhile; the next scan looks again
	}
	h.Outputs = left
	val, _ := json.Marshal(h)
	if _, err := k.kv.Update(ctx, key, val, rev); err != nil && !revisionMoved(err) {
		return fmt.Errorf("gateway: holds: narrow %s: %w", key, err)
	}
	return nil
}

// end marks a hold whose expiry or withdrawal is published as taken by
// no message, if it is still at rev. It stays, like a hold a grant took,
// while the request that put it may still be fresh and until it is
// acknowledged (expireKV): an instance can die after the hold's write
// and before the request's batch is journaled, and the request's
// redelivery must then find its own write (putHold) and go to the
// approval queue without being held again, or a grant could release
// what already expired.
func (k *kvHolds) end(ctx context.Context, key string, rev uint64) error {
	h, cur, err := k.get(key)
	if err != nil || h == nil || cur != rev {
		return err // changed meanwhile; the next scan looks again
	}
	h.State, h.TakenBy, h.Outputs, h.Value = kvTaken, 0, nil, nil
	val, _ := json.Marshal(h)
	_, err = k.kv.Update(ctx, key, val, rev)
	if revisionMoved(err) {
		return nil
	}
	return err
}
