package audit

import (
	"encoding/json"
	"strconv"
	"time"
)

// AppendJSON appends e encoded exactly as json.Marshal(e) encodes it (the
// same members, order, omissions and escaping; TestAppendJSONMatches
// Marshal and FuzzAppendJSON compare them), without reflection: the
// gateway encodes one event per message.
func (e *Event) AppendJSON(b []byte) []byte {
	b = append(b, `{"time":`...)
	b = appendTime(b, e.Time)
	b = append(b, `,"event":`...)
	b = appendString(b, e.Kind)
	b = appendStr(b, `,"gateway":`, e.Gateway)
	b = appendStr(b, `,"route":`, e.Route)
	b = appendStr(b, `,"reason":`, e.Reason)
	b = appendStr(b, `,"stage":`, e.Stage)
	b = appendStr(b, `,"detail":`, e.Detail)
	b = appendStr(b, `,"trace_id":`, e.TraceID)
	b = appendStr(b, `,"message_id":`, e.MessageID)
	b = appendStr(b, `,"tenant":`, e.Tenant)
	b = appendStr(b, `,"agent":`, e.Agent)
	b = appendStr(b, `,"service":`, e.Service)
	b = appendStr(b, `,"credential_jti":`, e.CredentialID)
	b = appendStr(b, `,"issuer":`, e.Issuer)
	b = appendStrs(b, `,"scopes":`, e.Scopes)
	b = appendStr(b, `,"capability":`, e.Capability)
	b = appendStr(b, `,"target":`, e.Target)
	b = appendStrs(b, `,"policy_ids":`, e.PolicyIDs)
	b = appendStr(b, `,"policy_version":`, e.PolicyVersion)
	b = appendUint(b, `,"ingress_seq":`, e.IngressSeq)
	b = appendUint(b, `,"delivery":`, e.Delivery)
	b = appendStr(b, `,"output":`, e.Output)
	b = appendStr(b, `,"body_digest":`, e.BodyDigest)
	b = appendStr(b, `,"payload_digest":`, e.PayloadDigest)
	b = appendStr(b, `,"approver":`, e.Approver)
	b = appendStr(b, `,"held_message_id":`, e.HeldMessageID)
	b = appendStr(b, `,"held_operator":`, e.HeldOperator)
	b = appendStr(b, `,"operator":`, e.Operator)
	b = appendUint(b, `,"denied_seq":`, e.DeniedSeq)
	if e.DryRun {
		b = append(b, `,"dry_run":true`...)
	}
	if e.LatencyMicros != 0 {
		b = append(b, `,"latency_us":`...)
		b = strconv.AppendInt(b, e.LatencyMicros, 10)
	}
	b = appendStr(b, `,"idp_issuer":`, e.IdPIssuer)
	b = appendStr(b, `,"idp_subject":`, e.IdPSubject)
	b = appendStrs(b, `,"idp_actors":`, e.IdPActors)
	b = appendStrs(b, `,"rules":`, e.Rules)
	b = appendStr(b, `,"request_id":`, e.RequestID)
	return append(b, '}')
}

// appendTime writes t as time.Time.MarshalJSON does; a time it refuses
// (a year outside 0–9999) goes through json.Marshal's error path as
// encoding/json would, which the gateway's clock never produces.
func appendTime(b []byte, t time.Time) []byte {
	if y := t.Year(); y < 0 || y > 9999 {
		v, _ := json.Marshal(t)
		return append(b, v...)
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

func appendStr(b []byte, key, s string) []byte {
	if s == "" {
		return b
	}
	b = append(b, key...)
	return appendString(b, s)
}

func appendStrs(b []byte, key string, ss []string) []byte {
	if len(ss) == 0 {
		return b
	}
	b = append(b, key...)
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

func appendUint(b []byte, key string, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = append(b, key...)
	return strconv.AppendUint(b, v, 10)
}

// appendString writes s as a JSON string. Printable ASCII that
// encoding/json leaves alone (no quote, backslash or HTML character) is
// copied; anything else is encoded by encoding/json itself, so escaping
// never differs.
func appendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			v, _ := json.Marshal(s)
			return append(b, v...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
