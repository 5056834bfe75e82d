package lease

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
)

// Keys in the bucket:
//
//	p<N>          the lease of partition N (value: owner, token, epoch)
//	m.<instance>  the member heartbeat of an instance (value: owner, token)
//
// Both live at most TTL after their last write.
const memberPrefix = "m."

func partitionKey(p int) string { return "p" + strconv.Itoa(p) }

func memberKey(instance string) string { return memberPrefix + instance }

func parseMemberKey(k string) (string, bool) {
	id, ok := strings.CutPrefix(k, memberPrefix)
	return id, ok && instanceRE.MatchString(id)
}

// value is what a lease or heartbeat key holds. Token is random per
// acquisition, so the holder recognises its own write after an answer
// was lost; Epoch is the revision of the Create that took the lease (0 in
// that first write, since the server assigns it).
type value struct {
	Owner string `json:"owner"`
	Token string `json:"token"`
	Epoch uint64 `json:"epoch,omitempty"`
}

func (v value) encode() []byte {
	b, _ := json.Marshal(v) // strings and an integer: cannot fail
	return b
}

func decodeValue(b []byte) (value, bool) {
	var v value
	if err := json.Unmarshal(b, &v); err != nil || v.Owner == "" {
		return value{}, false
	}
	return v, true
}

func newToken() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}
