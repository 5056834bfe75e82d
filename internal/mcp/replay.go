package mcp

import (
	"encoding/json"
	"errors"
	"hash/maphash"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// maxCallsPerToken bounds the tools/call requests one bearer token may
// make: each is remembered for the token's lifetime. Past it the token
// is refused as spent (HTTP 401), and the client gets a fresh one.
const maxCallsPerToken = 8192

// replaySeed keys the hashes requests are remembered by: no one outside
// the process can make two requests share one.
var replaySeed = maphash.MakeSeed()

// replaySet is the tools/call requests one token has made: a 64-bit
// keyed hash of each request's JSON-RPC id and body. A request sent
// again as it was captured (same id, same bytes) is a replay; a client
// that restarts with the same token and numbers its requests from 1
// again sends other bytes under the old ids, and is served. Callers
// serialize access.
type replaySet struct {
	seen map[uint64]struct{}
}

// callVerdict is what use decided for one request.
type callVerdict int

const (
	callFresh    callVerdict = iota // not made before: recorded now
	callReplayed                    // made before with this token
	callSpent                       // maxCallsPerToken made: refused
)

// use records the request (its id's JSON text and its whole body) if
// this token has not made it, in time linear in its length.
func (r *replaySet) use(id, body []byte) callVerdict {
	var h maphash.Hash
	h.SetSeed(replaySeed)
	_, _ = h.Write(id)
	_ = h.WriteByte(0)
	_, _ = h.Write(body)
	sum := h.Sum64()
	switch _, ok := r.seen[sum]; {
	case ok:
		return callReplayed
	case len(r.seen) >= maxCallsPerToken:
		return callSpent
	}
	if r.seen == nil {
		r.seen = make(map[uint64]struct{})
	}
	r.seen[sum] = struct{}{}
	return callFresh
}

// rpcMessage is the part of a JSON-RPC request the endpoint reads before
// the SDK does.
type rpcMessage struct {
	ID     json.RawMessage
	Method string
	Params json.RawMessage
}

// rpcKey is the request context key of the rpcMessage refuseReplay read.
type rpcKey struct{}

// errNotOneMessage: the body is not one strict JSON object.
var errNotOneMessage = errors.New("the request body is not one JSON-RPC message in strict JSON (exact member names, none twice, valid UTF-8, nothing after it)")

// readRPC reads a request body as one JSON object with exact member
// names, no member twice at any depth, valid UTF-8 and nothing but white
// space after it, and refuses a member whose name is a case or Unicode
// variant of a JSON-RPC one ("ID", "Method", "ſ"-spellings): the reading
// under which the replay check, the task layer and the SDK (whatever its
// decoder folds) see the same id, method and parameters.
func readRPC(body []byte) (rpcMessage, error) {
	var members map[string]jsontext.Value
	if err := jsonv2.Unmarshal(body, &members); err != nil || members == nil {
		return rpcMessage{}, errNotOneMessage
	}
	for name := range members {
		for _, known := range rpcNames {
			if name != known && strings.EqualFold(name, known) {
				return rpcMessage{}, errNotOneMessage
			}
		}
	}
	return rpcMessage{ID: json.RawMessage(members["id"]), Method: unquote(members["method"]), Params: json.RawMessage(members["params"])}, nil
}

var rpcNames = [...]string{"jsonrpc", "id", "method", "params", "result", "error"}

// unquote is a JSON string's value, or "" for any other value.
func unquote(v jsontext.Value) string {
	var s string
	if len(v) == 0 || jsonv2.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}
