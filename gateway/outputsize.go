package gateway

import (
	"fmt"

	"github.com/nats-io/nats.go"
)

// Every output is one NATS message, and the server refuses one whose
// headers and data together exceed its max_payload: an output that
// cannot be published never ends its message. These are the largest
// outputs for an envelope body of at most B = limits.max_body_bytes
// bytes (a payload is part of the body, so at most B; a sealed one opens
// to less than 3/4·B; a box adds 44 bytes: identity.Box.Seal), and the
// one bound the gateway checks at start (checkOutputRoom):
//
//	delivery (agentgw.cap)        B + 4/3·(B + 44) + 16 KiB + 1 KiB
//	    the envelope verbatim, the payload re-sealed to the consumer
//	    in base64url (a plain payload grows by a third), the decision
//	    token (at most 16 KiB, docs/wire.md), the document's other
//	    members and its five headers
//	approval request              6·B + 16 KiB + 4 KiB + 2·P
//	    the approver-visible fields of the payload re-encoded by
//	    encoding/json, which writes each <, > and & as \u003c: six
//	    bytes for one; the request's other members, all bounded, its
//	    decision token in a header, and the decision headers
//	reply                         6·3/4·B + 44 + 16 KiB + 4 KiB + P
//	    the response re-encoded (the same six for one) and sealed to
//	    the agent, its decision token in a header, the decision headers
//	denied record                 B + 22 KiB + 4 KiB + P
//	    the body, the credential sealed and base64url (a credential is
//	    at most 16 KiB, and a longer header is not kept), a signature
//	    of at most maxKeptSignature bytes, the decision headers with a
//	    detail of at most 512
//	decision notice               under 20 KiB: no payload, a token
//	audit message                 at most half max_payload and one
//	    event (maxAuditMessage)
//
// where P is the length of the ids of the policies that decided, which
// the operator writes, not the sender, and which the allowance below
// takes to be under 16 KiB. Every line is at most 6·B + outputAllowance:
// the approval request sets the factor.
const outputAllowance = 64 << 10

// maxOutputBytes is the bound above: the largest message, headers
// included, the gateway may publish for bodies of at most maxBody bytes.
func maxOutputBytes(maxBody int) int64 {
	return 6*int64(maxBody) + outputAllowance
}

// checkOutputRoom refuses (a *ConfigError) a limits.max_body_bytes whose
// largest output (maxOutputBytes) the server, whose max_payload is
// maxPayload, would refuse.
func checkOutputRoom(maxBody int, maxPayload int64) error {
	need := maxOutputBytes(maxBody)
	if need <= maxPayload {
		return nil
	}
	most := max((maxPayload-outputAllowance)/6, 0)
	return &ConfigError{Stage: StageValidate, Problems: []error{fmt.Errorf(
		"limits.max_body_bytes (%d) is too large for the NATS server's max_payload (%d): an output for such a body can be %d bytes (6 × max_body_bytes + %d; docs/design.md, \"Outputs\"); set max_body_bytes to at most %d, or raise the server's max_payload to at least %d",
		maxBody, maxPayload, need, outputAllowance, most, need)}}
}

// wireSize is what the server counts against max_payload for a message
// of hdr and data: the header block as nats.go writes it, and the data.
func wireSize(hdr nats.Header, data []byte) int {
	if len(hdr) == 0 {
		return len(data)
	}
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range hdr {
		for _, v := range vs {
			n += len(k) + len(": ") + len(v) + len("\r\n")
		}
	}
	return n + len(data)
}
