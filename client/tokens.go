package client

import (
	"container/heap"
	"errors"
	"sync"
	"time"

	"github.com/agentgw/agentgw/subjects/reason"
)

// DefaultMaxTokens is the number of decision tokens a Consumer remembers
// when ConsumerConfig.MaxTokens is zero: at the gateway's default token
// lifetime (5 minutes, plus the 30 s DefaultSkew) it covers some 790
// deliveries a second, sustained, in at most about 40 MB (some 140
// bytes a token).
const DefaultMaxTokens = 1 << 18

// handBackDelay is how long a delivery the token record hands back (the
// record is full, or the token may be one it dropped) waits before it
// comes back, when NakDelay is zero.
const handBackDelay = time.Second

// tokenRecord remembers which decision tokens a Consumer handed to its
// handler, and from which sequence of its stream, until each token
// expires. It is safe for concurrent use.
//
// A token is identified by its jti: 128 random bits the gateway draws
// when it signs (decision.Sign), covered by its signature. A copy of a
// delivery carries the same jti and cannot change it without the token
// failing to verify; two decisions never share one.
type tokenRecord struct {
	mu     sync.Mutex
	max    int
	byID   map[string]handedOver
	expiry expiryHeap
	// dropped is the latest expiry (Unix nanoseconds) of an entry dropped
	// because a clock reading passed it. Entries are dropped soonest
	// first, so a token expiring later than dropped that is not recorded
	// was never handed over; one expiring no later may have been, and is
	// refused even when a clock stepped back since says it verifies.
	dropped int64
}

// handedOver is the JetStream consumer and stream sequence a token was
// handed over from, until when it verifies (exp plus skew, Unix
// nanoseconds), and how its handler fared.
type handedOver struct {
	consumer string
	seq      uint64
	expires  int64
	state    tokenState
}

// tokenState is how the handler of a token handed over fared.
type tokenState uint8

const (
	tokenHandling tokenState = iota // its handler has not returned
	tokenDone                       // its handler succeeded
	tokenFailed                     // its handler failed: it may be handed over again
)

// Redeliveries the record does not hand over, and that are not refused:
// errHandled, one of a delivery whose handler succeeded (its
// acknowledgement lost, or the handler slower than AckWait), is
// acknowledged; errHandling, one of a delivery whose handler still runs,
// is left to come back, by when that handler has settled it.
var (
	errHandled  = errors.New("client: a redelivery of a delivery already handled")
	errHandling = errors.New("client: a redelivery of a delivery still being handled")
)

func newTokenRecord(max int) *tokenRecord {
	return &tokenRecord{max: max, byID: make(map[string]handedOver)}
}

// claim records that the token id, verifying until expires, is about to
// be handed over from stream sequence seq as delivered by the JetStream
// consumer named consumer for the delivered-th time (JetStream's
// NumDelivered, from 1), at now. It returns nil for a token not seen
// before, and for one whose handler failed (settle), from wherever it
// comes. A redelivery (the same sequence from the same consumer again,
// delivered ≥ 2) of a token whose handler succeeded is errHandled, and of
// one whose handler still runs errHandling. Or it returns a
// *reason.Denial:
//
//   - DecisionDuplicate: the token was handed over from another stream
//     sequence (a re-published copy), or from the same sequence by
//     another JetStream consumer (two ephemeral consumers, each reading
//     the whole stream), or from the same sequence by a consumer of the
//     same name delivering it for the first time (a durable deleted and
//     created again, which delivers the stream again from the start).
//   - DecisionRecordFull: the token is new and the record holds max
//     unexpired tokens; nothing is forgotten to make room.
//   - DecisionExpired: the token is expired at now, or it is not
//     recorded and expires no later than an entry dropped at an earlier
//     reading (the clock stepped back, or an earlier reading was ahead):
//     it may be a copy of a token handed over and forgotten. Only the
//     first kind is expired for good; the second may verify at now.
//
// Entries expire with their token, at the first claim whose now passes
// their expiry.
func (r *tokenRecord) claim(id, consumer string, seq, delivered uint64, expires, now time.Time) error {
	// Wall clock only: with monotonic readings Before would not see the
	// wall clock step back, while expiry is judged on the wall clock.
	now = now.Round(0)
	r.mu.Lock()
	defer r.mu.Unlock()
	for len(r.expiry) > 0 && now.UnixNano() > r.expiry[0].expires {
		e := heap.Pop(&r.expiry).(expiring)
		delete(r.byID, e.id)
		r.dropped = max(r.dropped, e.expires)
	}
	if now.After(expires) {
		return reason.Deny(reason.DecisionExpired, "jti %s expired at %s", id, expires.Format(time.RFC3339))
	}
	if h, ok := r.byID[id]; ok {
		if h.state == tokenFailed {
			// Its handler did not finish the job: handed over again,
			// whether redelivered, delivered by a consumer created
			// again, or copied.
			r.byID[id] = handedOver{consumer: consumer, seq: seq, expires: h.expires}
			return nil
		}
		if h.seq == seq && h.consumer == consumer {
			if delivered >= 2 {
				if h.state == tokenDone {
					return errHandled
				}
				return errHandling
			}
			// A first delivery of a sequence this consumer name has
			// delivered before: not this consumer's redelivery (its
			// count would be 2 or more) but another consumer created
			// under the same name since.
			return reason.Deny(reason.DecisionDuplicate, "jti %s already handed over from stream sequence %d by consumer %s; delivered again as a first delivery (the consumer was created again)", id, seq, consumer)
		}
		if h.seq == seq {
			return reason.Deny(reason.DecisionDuplicate, "jti %s already handed over from stream sequence %d by consumer %s; delivered again by %s", id, seq, h.consumer, consumer)
		}
		return reason.Deny(reason.DecisionDuplicate, "jti %s already handed over from stream sequence %d; this copy is sequence %d", id, h.seq, seq)
	}
	if expires.UnixNano() <= r.dropped {
		return reason.Deny(reason.DecisionExpired, "jti %s expires at %s, no later than a token dropped from the record at an earlier clock reading: it may have been handed over", id, expires.Format(time.RFC3339Nano))
	}
	if len(r.byID) >= r.max {
		return reason.Deny(reason.DecisionRecordFull, "jti %s: %d unexpired decision tokens recorded; handed back until one expires", id, len(r.byID))
	}
	r.byID[id] = handedOver{consumer: consumer, seq: seq, expires: expires.UnixNano()}
	heap.Push(&r.expiry, expiring{id: id, expires: expires.UnixNano()})
	return nil
}

// settle records how the handler of token id fared: ok, its redeliveries
// are acknowledged and its copies refused; failed, it may be handed over
// again.
func (r *tokenRecord) settle(id string, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, found := r.byID[id]
	if !found {
		return
	}
	h.state = tokenFailed
	if ok {
		h.state = tokenDone
	}
	r.byID[id] = h
}

// len returns the number of tokens recorded, expired ones included until
// the next claim drops them.
func (r *tokenRecord) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.byID)
}

// expiring is a token id and its expiry (Unix nanoseconds); expiryHeap
// orders them soonest first.
type expiring struct {
	id      string
	expires int64
}

type expiryHeap []expiring

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires < h[j].expires }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiring)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = expiring{}
	*h = old[:len(old)-1]
	return e
}
