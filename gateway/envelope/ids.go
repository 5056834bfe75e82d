package envelope

import (
	"crypto/rand"
	"encoding/hex"
)

// NewMessageID returns 128 random bits as 32 lowercase hex characters, a
// valid message_id. It is unguessable, so no agent can pre-empt another's
// id on the shared ingress stream (docs/wire.md). Safe for concurrent use.
func NewMessageID() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return hex.EncodeToString(b[:])
}

// NewTraceID returns a random W3C trace-id: 32 lowercase hex characters,
// never all zero. Safe for concurrent use.
func NewTraceID() string {
	var b [16]byte
	for {
		rand.Read(b[:])
		if b != ([16]byte{}) {
			return hex.EncodeToString(b[:])
		}
	}
}
