package bench

import (
	"fmt"
	"math"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/header"
)

// packedMsgs holds a corpus's messages as spans of one byte arena and a
// slice of pointer-free records, and builds each *nats.Msg when it is
// published. The bench holds tens of thousands of pre-signed messages for
// a whole scenario, in the process of the system it measures, whose every
// garbage-collection cycle marks the live heap: packed, they are a few
// objects the collector does not walk, as an agent's messages, held in
// its own process, would be (docs/performance.md, "Garbage collection").
type packedMsgs struct {
	arena []byte
	// strs are the values many messages share: subjects, credentials,
	// Agentgw-Notify. strs[0] is "", an absent value.
	strs []string
	recs []packedMsg
}

// span is bytes [off, off+n) of the arena.
type span struct{ off, n uint32 }

// packedMsg is one message: indexes into strs and spans of the arena.
// An empty mid span means no Nats-Msg-Id.
type packedMsg struct {
	subject, cred, notify uint32
	body, sig, mid        span
}

// packMsgs packs msgs, whose headers may hold only the credential, the
// signature, Nats-Msg-Id and Agentgw-Notify, each with one value that is
// not empty (what sign and replayOf set); anything else is an error, so
// that At never returns a message other than the one packed.
func packMsgs(msgs []*nats.Msg) (*packedMsgs, error) {
	size := 0
	for i, m := range msgs {
		for k, v := range m.Header {
			switch {
			case len(v) != 1:
				return nil, fmt.Errorf("bench: pack: message %d: header %s has %d values", i, k, len(v))
			case v[0] == "":
				return nil, fmt.Errorf("bench: pack: message %d: header %s is empty", i, k)
			case k != header.Credential && k != header.Signature && k != header.MsgID && k != header.Notify:
				return nil, fmt.Errorf("bench: pack: message %d: header %s", i, k)
			}
		}
		size += len(m.Data) + len(m.Header.Get(header.Signature)) + len(m.Header.Get(header.MsgID))
	}
	if size > math.MaxUint32 {
		return nil, fmt.Errorf("bench: pack: %d bytes of messages", size)
	}
	p := &packedMsgs{arena: make([]byte, 0, size), strs: []string{""}, recs: make([]packedMsg, len(msgs))}
	interned := map[string]uint32{"": 0}
	intern := func(s string) uint32 {
		i, ok := interned[s]
		if !ok {
			i = uint32(len(p.strs))
			p.strs = append(p.strs, s)
			interned[s] = i
		}
		return i
	}
	put := func(b []byte) span {
		s := span{uint32(len(p.arena)), uint32(len(b))}
		p.arena = append(p.arena, b...)
		return s
	}
	for i, m := range msgs {
		p.recs[i] = packedMsg{
			subject: intern(m.Subject),
			cred:    intern(m.Header.Get(header.Credential)),
			notify:  intern(m.Header.Get(header.Notify)),
			body:    put(m.Data),
			sig:     put([]byte(m.Header.Get(header.Signature))),
			mid:     put([]byte(m.Header.Get(header.MsgID))),
		}
	}
	return p, nil
}

// Len is the number of messages.
func (p *packedMsgs) Len() int { return len(p.recs) }

// At builds message i. Its Data is the arena's bytes, capped, and must
// not be written.
func (p *packedMsgs) At(i int) *nats.Msg {
	r := &p.recs[i]
	h := make(nats.Header, 4)
	if r.cred != 0 {
		h.Set(header.Credential, p.strs[r.cred])
	}
	if r.sig.n != 0 {
		h.Set(header.Signature, string(p.bytes(r.sig)))
	}
	if r.mid.n != 0 {
		h.Set(header.MsgID, string(p.bytes(r.mid)))
	}
	if r.notify != 0 {
		h.Set(header.Notify, p.strs[r.notify])
	}
	return &nats.Msg{Subject: p.strs[r.subject], Data: p.bytes(r.body), Header: h}
}

// slice is messages [lo, hi), sharing p's arena.
func (p *packedMsgs) slice(lo, hi int) *packedMsgs {
	return &packedMsgs{arena: p.arena, strs: p.strs, recs: p.recs[lo:hi:hi]}
}

// heldBytes is the bodies, signatures and message ids held.
func (p *packedMsgs) heldBytes(i int) int64 {
	r := &p.recs[i]
	return int64(r.body.n) + int64(r.sig.n) + int64(r.mid.n)
}

func (p *packedMsgs) bytes(s span) []byte {
	end := s.off + s.n
	return p.arena[s.off:end:end]
}

// msgSource is what publish sends: Len messages, message i built by At.
type msgSource interface {
	Len() int
	At(i int) *nats.Msg
}

// msgSlice is a msgSource of messages held as they are.
type msgSlice []*nats.Msg

func (s msgSlice) Len() int           { return len(s) }
func (s msgSlice) At(i int) *nats.Msg { return s[i] }
