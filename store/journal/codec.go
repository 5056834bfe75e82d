package journal

import (
	"encoding/binary"
	"fmt"
	"time"
)

// Wire format, version 1. A journal message body is
//
//	version (1 byte) record*
//	record   = uvarint(length) op (1 byte) fields
//
// with the fields of each op, in order:
//
//	replay       str tenant, str agent, str id, uvarint seq, time expires, digest, decision
//	idem         str tenant, str agent, str id, digest, str first message id, time expires, decision
//	marker       str kind, str id, time expires
//	hold         str id, time deadline, bytes value
//	hold delete  str id
//	outcome      uvarint seq, bytes value
//	fence        uvarint epoch
//
//	str, bytes   uvarint(length) raw
//	time         varint(Unix nanoseconds)
//	digest       32 raw bytes
//	decision     str route, str reason, str target, str capability,
//	             uvarint(n) n×str policy id, str policy version, str output msg id
//
// A reader refuses a version it does not know (ErrVersion) and an op it
// does not know (ErrCorrupt): skipping records would rebuild a ledger
// that silently forgot something.
const formatV1 byte = 1

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendTime(b []byte, t time.Time) []byte { return binary.AppendVarint(b, t.UnixNano()) }

func appendDecision(b []byte, d Decision) []byte {
	b = appendStr(b, d.Route)
	b = appendStr(b, d.Reason)
	b = appendStr(b, d.Target)
	b = appendStr(b, d.Capability)
	b = binary.AppendUvarint(b, uint64(len(d.PolicyIDs)))
	for _, id := range d.PolicyIDs {
		b = appendStr(b, id)
	}
	b = appendStr(b, d.PolicyVersion)
	return appendStr(b, d.OutputMsgID)
}

// encodeRecord returns r's body (op and fields, without the length).
// r must be valid.
func encodeRecord(r Record, epoch uint64) []byte {
	b := make([]byte, 0, 64+len(r.Value))
	b = append(b, byte(r.Op))
	switch r.Op {
	case OpReplay:
		b = appendStr(b, r.Tenant)
		b = appendStr(b, r.Agent)
		b = appendStr(b, r.ID)
		b = binary.AppendUvarint(b, r.Seq)
		b = appendTime(b, r.Expires)
		b = append(b, r.Digest[:]...)
		b = appendDecision(b, r.Decision)
	case OpIdem:
		b = appendStr(b, r.Tenant)
		b = appendStr(b, r.Agent)
		b = appendStr(b, r.ID)
		b = append(b, r.Digest[:]...)
		b = appendStr(b, r.FirstMessageID)
		b = appendTime(b, r.Expires)
		b = appendDecision(b, r.Decision)
	case OpMarker:
		b = appendStr(b, r.MarkerKind)
		b = appendStr(b, r.ID)
		b = appendTime(b, r.Expires)
	case OpHold:
		b = appendStr(b, r.ID)
		b = appendTime(b, r.Expires)
		b = appendBytes(b, r.Value)
	case OpHoldDelete:
		b = appendStr(b, r.ID)
	case OpOutcome:
		b = binary.AppendUvarint(b, r.Seq)
		b = appendBytes(b, r.Value)
	case opFence:
		b = binary.AppendUvarint(b, epoch)
	}
	return b
}

// appendRecord appends one encoded record body with its length.
func appendRecord(msg, body []byte) []byte {
	msg = binary.AppendUvarint(msg, uint64(len(body)))
	return append(msg, body...)
}

// decoder reads one message body; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("journal: "+format+": %w", append(args, ErrCorrupt)...)
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) raw(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("field of %d bytes, %d left", n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string { return string(d.raw(d.uvarint())) }

func (d *decoder) bytes() []byte {
	v := d.raw(d.uvarint())
	if len(v) == 0 {
		return nil
	}
	return append([]byte{}, v...)
}

func (d *decoder) time() time.Time {
	if d.err != nil {
		return time.Time{}
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad time")
		return time.Time{}
	}
	d.b = d.b[n:]
	return time.Unix(0, v).UTC()
}

func (d *decoder) digest() (out [32]byte) {
	copy(out[:], d.raw(32))
	return out
}

func (d *decoder) decision() Decision {
	var x Decision
	x.Route, x.Reason, x.Target, x.Capability = d.str(), d.str(), d.str(), d.str()
	n := d.uvarint()
	if n > uint64(len(d.b)) || n > maxPolicyIDs {
		d.fail("%d policy ids", n)
		return x
	}
	if n > 0 {
		x.PolicyIDs = make([]string, n)
		for i := range x.PolicyIDs {
			x.PolicyIDs[i] = d.str()
		}
	}
	x.PolicyVersion, x.OutputMsgID = d.str(), d.str()
	return x
}

// decodeMessage calls fn for every record in body, fences included (as
// records with Op opFence and the epoch in Seq).
func decodeMessage(body []byte, fn func(Record) error) error {
	if len(body) == 0 {
		return fmt.Errorf("journal: empty message: %w", ErrCorrupt)
	}
	if body[0] != formatV1 {
		return fmt.Errorf("journal: format version %d: %w", body[0], ErrVersion)
	}
	outer := &decoder{b: body[1:]}
	for len(outer.b) > 0 {
		n := outer.uvarint()
		rb := outer.raw(n)
		if outer.err != nil {
			return outer.err
		}
		r, err := decodeRecord(rb)
		if err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

func decodeRecord(b []byte) (Record, error) {
	if len(b) == 0 {
		return Record{}, fmt.Errorf("journal: empty record: %w", ErrCorrupt)
	}
	d := &decoder{b: b[1:]}
	r := Record{Op: Op(b[0])}
	switch r.Op {
	case OpReplay:
		r.Tenant, r.Agent, r.ID = d.str(), d.str(), d.str()
		r.Seq = d.uvarint()
		r.Expires = d.time()
		r.Digest = d.digest()
		r.Decision = d.decision()
	case OpIdem:
		r.Tenant, r.Agent, r.ID = d.str(), d.str(), d.str()
		r.Digest = d.digest()
		r.FirstMessageID = d.str()
		r.Expires = d.time()
		r.Decision = d.decision()
	case OpMarker:
		r.MarkerKind, r.ID = d.str(), d.str()
		r.Expires = d.time()
	case OpHold:
		r.ID = d.str()
		r.Expires = d.time()
		r.Value = d.bytes()
	case OpHoldDelete:
		r.ID = d.str()
	case OpOutcome:
		r.Seq = d.uvarint()
		r.Value = d.bytes()
	case opFence:
		r.Seq = d.uvarint()
	default:
		return Record{}, fmt.Errorf("journal: unknown op %d: %w", b[0], ErrCorrupt)
	}
	if d.err != nil {
		return Record{}, d.err
	}
	if len(d.b) != 0 {
		return Record{}, fmt.Errorf("journal: %s record has %d trailing bytes: %w", r.Op, len(d.b), ErrCorrupt)
	}
	if r.Op != opFence {
		if err := r.Validate(); err != nil {
			return Record{}, fmt.Errorf("journal: decoded an invalid record: %w: %v", ErrCorrupt, err)
		}
	}
	return r, nil
}
