package envelope

import (
	"bytes"
	"strings"

	"github.com/agentgw/agentgw/subjects/reason"
)

// Member names of the body, in wire order, and of the payload object.
var (
	bodyNames    = [...]string{"v", "message_id", "idempotency_key", "trace_id", "issued_at", "expires_at", "tenant", "audience", "capability", "target", "payload"}
	payloadNames = [...]string{"sealed", "from", "to", "plain"}
)

const (
	fV = iota
	fMessageID
	fIdempotencyKey
	fTraceID
	fIssuedAt
	fExpiresAt
	fTenant
	fAudience
	fCapability
	fTarget
	fPayload
	nBody
)

const (
	pSealed = iota
	pFrom
	pTo
	pPlain
	nPayload
)

// Indexes into parser.vals for string fields that end up in the Body.
const (
	sMessageID = iota
	sIdempotencyKey
	sTraceID
	sTenant
	sAudience
	sTarget
	sSealed
	sFrom
	sTo
	nStrings
)

// parser reads the body object on top of scanner. Syntax errors abort at
// once; field-rule errors are remembered (the first one) and reported after
// the whole body was read, so that a body with "v": 2 is reported as
// UnsupportedVersion even if its other members are what version 2 means.
type parser struct {
	scanner
	fieldErr error

	seen        uint16              // body members present
	seenPayload uint8               // payload members present
	others      map[string]struct{} // unknown body member names, folded
	payOthers   map[string]struct{} // unknown payload member names, folded
	version     []byte
	vals        [nStrings][]byte
	issued      []byte
	expires     []byte
	capability  []byte
	payloadRaw  []byte
	plain       []byte
}

func (p *parser) fieldFail(format string, args ...any) {
	if p.fieldErr == nil {
		p.fieldErr = reason.Deny(reason.MalformedEnvelope, format, args...)
	}
}

// Parse reads one envelope body strictly and checks every field rule of
// docs/wire.md (not freshness: see Freshness). lim's zero fields take
// their defaults.
//
// Errors are *reason.Denial: Oversized when len(raw) > lim.MaxBytes,
// checked before any byte is read; UnsupportedVersion when "v" is a number
// other than the literal 1; MalformedEnvelope for everything else.
//
// The returned Body keeps sub-slices of raw (see Body).
func Parse(raw []byte, lim Limits) (*Body, error) {
	var p parser
	return p.parse(raw, lim)
}

func (p *parser) parse(raw []byte, lim Limits) (*Body, error) {
	lim = lim.withDefaults()
	if len(raw) > lim.MaxBytes {
		return nil, reason.Deny(reason.Oversized, "body is %d bytes; limit %d", len(raw), lim.MaxBytes)
	}
	p.scanner = scanner{data: raw, lim: lim}
	if err := p.body(); err != nil {
		return nil, err
	}
	if err := p.end(); err != nil {
		return nil, err
	}
	if p.version != nil && string(p.version) != "1" {
		return nil, reason.Deny(reason.UnsupportedVersion, "v is %.16s; this gateway reads %d", p.version, Version)
	}
	if p.fieldErr != nil {
		return nil, p.fieldErr
	}
	for i, name := range bodyNames {
		if p.seen&(1<<i) == 0 {
			return nil, reason.Deny(reason.MalformedEnvelope, "missing member %q", name)
		}
	}
	return p.build()
}

// member resolves a name of a fixed-schema object to its index in known
// (-1 when unknown), refusing duplicates under case folding. seen has bit
// i set when known[i] was already read; *others holds the folded unknown
// names read so far (nil until the first). Each name costs at most one
// comparison per known name and one set lookup, whatever the number of
// members before it.
func (p *parser) member(known []string, seen uint16, others *map[string]struct{}, name []byte) (idx int, err error) {
	idx = -1
	for i, k := range known {
		if string(name) == k {
			idx = i
			break
		}
	}
	if idx >= 0 && seen&(1<<idx) != 0 {
		return -1, p.fail("duplicate member name %.64q", name)
	}
	const dupFold = "duplicate member name %.64q (names differing only in case are duplicates)"
	if idx >= 0 {
		if *others != nil {
			p.probes++
			if _, dup := (*others)[foldBytes(name)]; dup {
				return -1, p.fail(dupFold, name)
			}
		}
		return idx, nil
	}
	for i, k := range known {
		if seen&(1<<i) == 0 {
			continue
		}
		p.probes++
		if strings.EqualFold(k, string(name)) {
			return -1, p.fail(dupFold, name)
		}
	}
	if *others == nil {
		*others = make(map[string]struct{})
	}
	p.probes++
	n := len(*others)
	(*others)[foldBytes(name)] = struct{}{} // one hash: a duplicate leaves the size as it was
	if len(*others) == n {
		return -1, p.fail(dupFold, name)
	}
	return -1, nil
}

func (p *parser) body() error {
	if p.peek() != '{' {
		return p.fail("body is not a JSON object")
	}
	p.pos++
	if p.peek() == '}' {
		p.pos++
		return nil
	}
	for {
		if p.peek() != '"' {
			return p.fail("want a member name")
		}
		name, _, err := p.name()
		if err != nil {
			return err
		}
		idx, err := p.member(bodyNames[:], p.seen, &p.others, name)
		if err != nil {
			return err
		}
		if err := p.expect(':'); err != nil {
			return err
		}
		if idx < 0 {
			if p.fieldErr == nil {
				p.fieldFail("unknown member %.64q", name)
			}
			err = p.value(1)
		} else {
			p.seen |= 1 << idx
			err = p.bodyValue(idx)
		}
		if err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return nil
		default:
			return p.fail("want ',' or '}' in body")
		}
	}
}

func (p *parser) bodyValue(idx int) error {
	c := p.peek()
	switch idx {
	case fV:
		if c != '-' && (c < '0' || c > '9') {
			p.fieldFail("v is not a number")
			return p.value(1)
		}
		v, err := p.number()
		p.version = v
		return err
	case fPayload:
		if c != '{' {
			p.fieldFail("payload is not an object")
			return p.value(1)
		}
		start := p.pos
		if err := p.payload(); err != nil {
			return err
		}
		p.payloadRaw = p.data[start:p.pos]
		return nil
	}
	if c != '"' {
		p.fieldFail("%s is not a string", bodyNames[idx])
		return p.value(1)
	}
	v, escaped, err := p.str(p.lim.MaxString)
	if err != nil {
		return err
	}
	if escaped {
		v = bytes.Clone(v)
	}
	switch idx {
	case fIssuedAt:
		p.issued = v
	case fExpiresAt:
		p.expires = v
	case fCapability:
		p.capability = v
	case fMessageID:
		p.vals[sMessageID] = v
	case fIdempotencyKey:
		p.vals[sIdempotencyKey] = v
	case fTraceID:
		p.vals[sTraceID] = v
	case fTenant:
		p.vals[sTenant] = v
	case fAudience:
		p.vals[sAudience] = v
	case fTarget:
		p.vals[sTarget] = v
	}
	return nil
}

// payload reads the payload object (level 2) at p.pos.
func (p *parser) payload() error {
	if 2 > p.lim.MaxDepth {
		return p.fail("nesting deeper than %d", p.lim.MaxDepth)
	}
	p.pos++ // '{'
	if p.peek() == '}' {
		p.pos++
		return nil
	}
	for {
		if p.peek() != '"' {
			return p.fail("want a member name")
		}
		name, escaped, err := p.name()
		if err != nil {
			return err
		}
		idx, err := p.member(payloadNames[:], uint16(p.seenPayload), &p.payOthers, name)
		if err != nil {
			return err
		}
		if err := p.expect(':'); err != nil {
			return err
		}
		c := p.peek()
		switch {
		case idx < 0:
			if p.fieldErr == nil {
				p.fieldFail("unknown member payload.%.64q", name)
			}
			err = p.value(2)
		case idx == pPlain:
			p.seenPayload |= 1 << idx
			if c != '{' {
				p.fieldFail("payload.plain is not an object")
				err = p.value(2)
				break
			}
			start := p.pos
			err = p.value(2)
			p.plain = p.data[start:p.pos]
		default:
			p.seenPayload |= 1 << idx
			if c != '"' {
				p.fieldFail("payload.%s is not a string", payloadNames[idx])
				err = p.value(2)
				break
			}
			max := p.lim.MaxString
			if idx == pSealed {
				max = p.lim.MaxBytes
			}
			var v []byte
			v, escaped, err = p.str(max)
			if escaped {
				v = bytes.Clone(v)
			}
			p.vals[sSealed+idx] = v
		}
		if err != nil {
			return err
		}
		switch p.peek() {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return nil
		default:
			return p.fail("want ',' or '}' in payload")
		}
	}
}

// build checks the field rules and assembles the Body. All string fields
// share one allocation.
func (p *parser) build() (*Body, error) {
	v := &p.vals
	if !validMessageID(v[sMessageID]) {
		return nil, reason.Deny(reason.MalformedEnvelope, "message_id must be 16-128 of [A-Za-z0-9._:-]")
	}
	if !validIdempotencyKey(v[sIdempotencyKey]) {
		return nil, reason.Deny(reason.MalformedEnvelope, "idempotency_key must be 1-128 of [A-Za-z0-9._:/+=@-]")
	}
	if !validTraceID(v[sTraceID]) {
		return nil, reason.Deny(reason.MalformedEnvelope, "trace_id must be 32 lowercase hex, not all zero")
	}
	issued, ok := parseTime(p.issued)
	if !ok {
		return nil, reason.Deny(reason.MalformedEnvelope, "issued_at must be RFC 3339 UTC: YYYY-MM-DDTHH:MM:SS[.fraction]Z")
	}
	expires, ok := parseTime(p.expires)
	if !ok {
		return nil, reason.Deny(reason.MalformedEnvelope, "expires_at must be RFC 3339 UTC: YYYY-MM-DDTHH:MM:SS[.fraction]Z")
	}
	if !validTenant(v[sTenant]) {
		return nil, reason.Deny(reason.MalformedEnvelope, "tenant must be 1-64 of [a-z0-9_-]")
	}
	if !validAudience(v[sAudience]) {
		return nil, reason.Deny(reason.MalformedEnvelope, "audience must be 1-128 of [A-Za-z0-9._:/-]")
	}
	capability, ok := parseCapability(p.capability)
	if !ok {
		return nil, reason.Deny(reason.MalformedEnvelope, "capability %.32q is not one of the six", p.capability)
	}
	switch {
	case capability == Respond:
		if !validRequestRef(v[sTarget]) {
			return nil, reason.Deny(reason.MalformedEnvelope, "target of respond must be <requesting agent key>/<message id>")
		}
	case capability == Approve:
		if !validMessageID(v[sTarget]) {
			return nil, reason.Deny(reason.MalformedEnvelope, "target of approve must be a message id")
		}
	case !validTarget(v[sTarget]):
		return nil, reason.Deny(reason.MalformedEnvelope, "target must be dotted parts of [a-z0-9_-]{1,64}, at most 255 chars")
	}
	if err := p.checkPayload(); err != nil {
		return nil, err
	}

	n := 0
	for _, s := range v {
		n += len(s)
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, s := range v {
		sb.Write(s)
	}
	all := sb.String()
	var strs [nStrings]string
	off := 0
	for i, s := range v {
		strs[i] = all[off : off+len(s)]
		off += len(s)
	}
	return &Body{
		V:              Version,
		MessageID:      strs[sMessageID],
		IdempotencyKey: strs[sIdempotencyKey],
		TraceID:        strs[sTraceID],
		IssuedAt:       issued,
		ExpiresAt:      expires,
		Tenant:         strs[sTenant],
		Audience:       strs[sAudience],
		Capability:     capability,
		Target:         strs[sTarget],
		Payload: Payload{
			Sealed: strs[sSealed],
			From:   strs[sFrom],
			To:     strs[sTo],
			Plain:  p.plain,
		},
		payloadRaw: p.payloadRaw,
	}, nil
}

func (p *parser) checkPayload() error {
	has := func(i int) bool { return p.seenPayload&(1<<i) != 0 }
	switch {
	case has(pSealed) && has(pPlain):
		return reason.Deny(reason.MalformedEnvelope, "payload has both sealed and plain")
	case has(pPlain):
		if has(pFrom) || has(pTo) {
			return reason.Deny(reason.MalformedEnvelope, "plain payload has from or to")
		}
		return nil
	case has(pSealed):
		if !validSealed(p.vals[sSealed]) {
			return reason.Deny(reason.MalformedEnvelope, "payload.sealed must be non-empty canonical base64url without padding")
		}
		if !validCurveKey(p.vals[sFrom]) {
			return reason.Deny(reason.MalformedEnvelope, "payload.from must be an nkeys curve public key")
		}
		if !validCurveKey(p.vals[sTo]) {
			return reason.Deny(reason.MalformedEnvelope, "payload.to must be an nkeys curve public key")
		}
		return nil
	}
	return reason.Deny(reason.MalformedEnvelope, "payload has neither sealed nor plain")
}
