package envelope

import (
	"encoding/json"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/agentgw/agentgw/subjects/reason"
)

// Builder makes envelope bodies. Set the fields and call Build; the zero
// values of MessageID, TraceID, IdempotencyKey, TTL and Limits are filled
// in by Build (see there). A Builder is a value: Build does not modify it,
// so one Builder may be used concurrently.
type Builder struct {
	MessageID      string        // empty: NewMessageID() per Build
	IdempotencyKey string        // empty: the message id (every Build is its own request)
	TraceID        string        // empty: NewTraceID() per Build
	Tenant         string        // required
	Audience       string        // required: the gateway's audience
	Capability     Capability    // required
	Target         string        // required: catalog name; message id for approve; RequestRef for respond
	TTL            time.Duration // expires_at - issued_at; zero: DefaultTTL; negative is refused
	Payload        Payload       // exactly one of Sealed (with From, To) or Plain
	Limits         Limits        // the limits the result is checked against; zero: DefaultLimits
}

// Build returns the body: v = 1, issued_at = now in UTC truncated to the
// second, expires_at = issued_at + TTL, members in the order of
// wire-v1.json, no insignificant whitespace except inside Plain, which is
// copied verbatim. The result is checked with Parse before it is returned,
// so Build never returns a body the gateway would find malformed. Errors
// wrap the *reason.Denial from Parse (errors.Is works).
func (bd Builder) Build(now time.Time) ([]byte, error) {
	ttl := bd.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	if ttl < 0 {
		return nil, fmt.Errorf("envelope: build: %w", reason.Deny(reason.TTLTooLong, "negative TTL %s", ttl))
	}
	if bd.Payload.Plain != nil {
		// Plain is spliced in verbatim: check it is one object on its own,
		// so it cannot close the payload and smuggle members around it.
		if err := checkObject(bd.Payload.Plain, bd.Limits.withDefaults()); err != nil {
			return nil, fmt.Errorf("envelope: build: payload.plain: %w", err)
		}
	}
	mid := bd.MessageID
	if mid == "" {
		mid = NewMessageID()
	}
	key := bd.IdempotencyKey
	if key == "" {
		key = mid
	}
	tid := bd.TraceID
	if tid == "" {
		tid = NewTraceID()
	}
	issued := now.UTC().Truncate(time.Second)
	expires := issued.Add(ttl)

	p := bd.Payload
	b := make([]byte, 0, 384+len(p.Sealed)+len(p.Plain))
	b = append(b, `{"v":1,"message_id":`...)
	b = appendString(b, mid)
	b = append(b, `,"idempotency_key":`...)
	b = appendString(b, key)
	b = append(b, `,"trace_id":`...)
	b = appendString(b, tid)
	b = append(b, `,"issued_at":"`...)
	b = issued.AppendFormat(b, timeLayout)
	b = append(b, `","expires_at":"`...)
	b = expires.AppendFormat(b, timeLayout)
	b = append(b, `","tenant":`...)
	b = appendString(b, bd.Tenant)
	b = append(b, `,"audience":`...)
	b = appendString(b, bd.Audience)
	b = append(b, `,"capability":`...)
	b = appendString(b, string(bd.Capability))
	b = append(b, `,"target":`...)
	b = appendString(b, bd.Target)
	b = append(b, `,"payload":{`...)
	sep := ""
	for _, m := range [...]struct{ name, val string }{{"sealed", p.Sealed}, {"from", p.From}, {"to", p.To}} {
		if m.val != "" {
			b = append(b, sep...)
			b = appendString(b, m.name)
			b = append(b, ':')
			b = appendString(b, m.val)
			sep = ","
		}
	}
	if p.Plain != nil {
		b = append(b, sep...)
		b = append(b, `"plain":`...)
		b = append(b, p.Plain...)
	}
	b = append(b, "}}"...)

	if _, err := Parse(b, bd.Limits); err != nil {
		return nil, fmt.Errorf("envelope: build: %w", err)
	}
	return b, nil
}

const timeLayout = "2006-01-02T15:04:05Z"

// checkObject checks that raw is exactly one strict JSON object.
func checkObject(raw json.RawMessage, lim Limits) error {
	s := scanner{data: raw, lim: lim}
	if s.peek() != '{' {
		return s.fail("not a JSON object")
	}
	// Depth 2: the object will sit at level 3 of the body.
	if err := s.value(2); err != nil {
		return err
	}
	return s.end()
}

// appendString appends s as a JSON string. Invalid UTF-8 is written as is
// (Parse then refuses it) rather than silently replaced.
func appendString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			b = append(b, c)
			i++
			continue
		}
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
		i++
	}
	return append(b, '"')
}
