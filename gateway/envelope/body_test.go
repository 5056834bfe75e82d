package envelope

import "strings"

// member is one body member as raw JSON text, for building variants of the
// wire-v1 body without going through a JSON encoder.
type member struct{ name, raw string }

const (
	testFrom = "XBSHZ4TUNLRHJXE6F3H7CUYIPJE75ZZM6M7ERNX2N3WHM2OBEEMFAP4Y"
	testTo   = "XDNU5DBPGDWOL5A2I5VNBW5GNU2IS6PCV7TV2J5TB5KSWLUAZMRSOAOQ"
)

func baseMembers() []member {
	return []member{
		{"v", `1`},
		{"message_id", `"9f1c2b7e4d8a4c3fb6e15a2d7c9e0f41"`},
		{"idempotency_key", `"refund:ord_123:draft"`},
		{"trace_id", `"4bf92f3577b34da6a3ce929d0e0e4736"`},
		{"issued_at", `"2026-11-26T01:08:41Z"`},
		{"expires_at", `"2026-11-26T01:09:41Z"`},
		{"tenant", `"tenant_a"`},
		{"audience", `"billing-gateway"`},
		{"capability", `"tool_call"`},
		{"target", `"refunds.draft_refund"`},
		{"payload", `{"plain":{"order_id":"ord_123","amount_cents":2500}}`},
	}
}

func render(ms []member) []byte {
	var b strings.Builder
	b.WriteByte('{')
	for i, m := range ms {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + m.name + `":` + m.raw)
	}
	b.WriteByte('}')
	return []byte(b.String())
}

// withMember returns the base body with member name's value replaced by raw.
func withMember(name, raw string) []byte {
	ms := baseMembers()
	for i := range ms {
		if ms[i].name == name {
			ms[i].raw = raw
		}
	}
	return render(ms)
}

// withMembers applies several replacements.
func withMembers(kv ...string) []byte {
	ms := baseMembers()
	for j := 0; j < len(kv); j += 2 {
		for i := range ms {
			if ms[i].name == kv[j] {
				ms[i].raw = kv[j+1]
			}
		}
	}
	return render(ms)
}

func withoutMember(name string) []byte {
	var ms []member
	for _, m := range baseMembers() {
		if m.name != name {
			ms = append(ms, m)
		}
	}
	return render(ms)
}

// plusRaw returns the base body with raw text (e.g. `"x":1`) added as the
// last member.
func plusRaw(raw string) []byte {
	b := render(baseMembers())
	return append(append(b[:len(b)-1:len(b)-1], ","+raw...), '}')
}

func plain(raw string) []byte { return withMember("payload", `{"plain":`+raw+`}`) }

func sealed(s, from, to string) []byte {
	return withMember("payload", `{"sealed":"`+s+`","from":"`+from+`","to":"`+to+`"}`)
}
