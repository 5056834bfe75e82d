package store

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/agentgw/agentgw/subjects/reason"
)

// Value format. Every value starts with a version byte (valueV1); the rest
// is a fixed sequence of fields:
//
//	uvarint   unsigned LEB128 (encoding/binary)
//	varint    zig-zag signed LEB128; times are Unix nanoseconds
//	str       uvarint length, then the bytes
//	digest    32 raw bytes
//
//	format     v1 | uvarint genWidthNanos
//	gen meta   v1 | uvarint maxSeq | uvarint count
//	replay     v1 | flags (bit 0 = acked) | uvarint seq | varint expires | digest body | decision
//	idem       v1 | varint expires | digest payload | str messageID | decision
//	decision   str route | str reason | str target | str capability |
//	           uvarint n | n × str policyID | str policyVersion | str outputMsgID
//	hold index v1 | varint deadline
//	hold       v1 | value bytes
//	marker     v1 | varint expires
//
// Decoding checks every length against the bytes that remain and against
// the field bounds below, so a damaged value yields ErrCorrupt, never a
// panic or a huge allocation. A new layout gets a new version byte; old
// versions stay decodable.
const valueV1 byte = 1

// Field bounds, enforced on encode (ErrInvalid) and decode (ErrCorrupt).
const (
	maxFieldLen  = 1024
	maxPolicyIDs = 256
	maxHoldValue = 1 << 20
)

const flagAcked byte = 1

// offFlags is the offset of the flags byte in a replay value; MarkAcked
// sets the acked bit in place.
const offFlags = 1

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (d Decision) check() error {
	fields := []struct{ name, v string }{
		{"route", string(d.Route)}, {"reason", string(d.Reason)},
		{"target", d.Target}, {"capability", d.Capability},
		{"policy version", d.PolicyVersion}, {"output msg id", d.OutputMsgID},
	}
	for _, f := range fields {
		if len(f.v) > maxFieldLen {
			return fmt.Errorf("store: decision %s is %d bytes, max %d: %w", f.name, len(f.v), maxFieldLen, ErrInvalid)
		}
	}
	if len(d.PolicyIDs) > maxPolicyIDs {
		return fmt.Errorf("store: decision has %d policy ids, max %d: %w", len(d.PolicyIDs), maxPolicyIDs, ErrInvalid)
	}
	for _, p := range d.PolicyIDs {
		if len(p) > maxFieldLen {
			return fmt.Errorf("store: policy id is %d bytes, max %d: %w", len(p), maxFieldLen, ErrInvalid)
		}
	}
	return nil
}

func appendDecision(b []byte, d Decision) []byte {
	b = appendStr(b, string(d.Route))
	b = appendStr(b, string(d.Reason))
	b = appendStr(b, d.Target)
	b = appendStr(b, d.Capability)
	b = binary.AppendUvarint(b, uint64(len(d.PolicyIDs)))
	for _, p := range d.PolicyIDs {
		b = appendStr(b, p)
	}
	b = appendStr(b, d.PolicyVersion)
	return appendStr(b, d.OutputMsgID)
}

func encodeReplay(e ReplayEntry) []byte {
	b := make([]byte, 0, 64+len(e.Decision.OutputMsgID)+len(e.Decision.Target))
	var flags byte
	if e.Acked {
		flags |= flagAcked
	}
	b = append(b, valueV1, flags)
	b = binary.AppendUvarint(b, e.Seq)
	b = binary.AppendVarint(b, e.Expires.UnixNano())
	b = append(b, e.BodyDigest[:]...)
	return appendDecision(b, e.Decision)
}

func encodeIdem(e IdemEntry) []byte {
	b := make([]byte, 0, 64+len(e.MessageID)+len(e.Decision.OutputMsgID))
	b = append(b, valueV1)
	b = binary.AppendVarint(b, e.Expires.UnixNano())
	b = append(b, e.PayloadDigest[:]...)
	b = appendStr(b, e.MessageID)
	return appendDecision(b, e.Decision)
}

func encodeUvarints(vs ...uint64) []byte {
	b := []byte{valueV1}
	for _, v := range vs {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

func encodeTime(t time.Time) []byte {
	return binary.AppendVarint([]byte{valueV1}, t.UnixNano())
}

// decoder reads a value; the first error sticks and later reads return
// zero values.
type decoder struct {
	b    []byte
	what string
	err  error
}

func newDecoder(what string, b []byte) *decoder {
	d := &decoder{b: b, what: what}
	if len(b) == 0 {
		d.fail("empty value")
	} else if b[0] != valueV1 {
		d.fail(fmt.Sprintf("unknown version %d", b[0]))
	} else {
		d.b = b[1:]
	}
	return d
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("store: decode %s: %s: %w", d.what, msg, ErrCorrupt)
	}
	d.b = nil
}

func (d *decoder) byte1() byte {
	if d.err != nil || len(d.b) < 1 {
		d.fail("truncated")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) time() time.Time {
	if d.err != nil {
		return time.Time{}
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return time.Time{}
	}
	d.b = d.b[n:]
	return time.Unix(0, v).UTC()
}

func (d *decoder) digest() (out [32]byte) {
	if d.err != nil || len(d.b) < 32 {
		d.fail("truncated digest")
		return out
	}
	copy(out[:], d.b)
	d.b = d.b[32:]
	return out
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > maxFieldLen || n > uint64(len(d.b)) {
		d.fail("bad string length")
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) decision() Decision {
	var x Decision
	x.Route = Route(d.str())
	x.Reason = reason.Code(d.str())
	x.Target = d.str()
	x.Capability = d.str()
	n := d.uvarint()
	if n > maxPolicyIDs {
		d.fail("too many policy ids")
		return Decision{}
	}
	if n > 0 && d.err == nil {
		x.PolicyIDs = make([]string, 0, n)
		for i := uint64(0); i < n && d.err == nil; i++ {
			x.PolicyIDs = append(x.PolicyIDs, d.str())
		}
	}
	x.PolicyVersion = d.str()
	x.OutputMsgID = d.str()
	return x
}

// done returns the sticky error, or ErrCorrupt if bytes remain.
func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("trailing bytes")
	}
	return d.err
}

func decodeReplay(b []byte) (ReplayEntry, error) {
	d := newDecoder("replay entry", b)
	var e ReplayEntry
	flags := d.byte1()
	e.Acked = flags&flagAcked != 0
	e.Seq = d.uvarint()
	e.Expires = d.time()
	e.BodyDigest = d.digest()
	e.Decision = d.decision()
	if err := d.done(); err != nil {
		return ReplayEntry{}, err
	}
	return e, nil
}

func decodeIdem(b []byte) (IdemEntry, error) {
	d := newDecoder("idempotency entry", b)
	var e IdemEntry
	e.Expires = d.time()
	e.PayloadDigest = d.digest()
	e.MessageID = d.str()
	e.Decision = d.decision()
	if err := d.done(); err != nil {
		return IdemEntry{}, err
	}
	return e, nil
}

// decodeUvarints decodes a value written by encodeUvarints with n fields.
func decodeUvarints(what string, b []byte, n int) ([]uint64, error) {
	d := newDecoder(what, b)
	out := make([]uint64, n)
	for i := range out {
		out[i] = d.uvarint()
	}
	return out, d.done()
}

func decodeTime(what string, b []byte) (time.Time, error) {
	d := newDecoder(what, b)
	t := d.time()
	return t, d.done()
}
