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
	sum := replayHash(id, body)
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

// forget drops the record of a request use recorded, for a call refused
// before anything was sent: the client may send it again as it was.
func (r *replaySet) forget(id, body []byte) {
	delete(r.seen, replayHash(id, body))
}

func replayHash(id, body []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(replaySeed)
	_, _ = h.Write(id)
	_ = h.WriteByte(0)
	_, _ = h.Write(body)
	return h.Sum64()
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
// variant of a JSON-RPC one ("ID", "Method", "ſ"-spellings), or of a
// params member the endpoint reads, at the depth it reads it (paramNames:
// "Name" beside "name", "TaskID", "TTL" in task): the reading under which
// the replay check, the task layer and the SDK (whatever its decoder
// folds) see the same id, method and parameters.
func readRPC(body []byte) (rpcMessage, error) {
	var members map[string]jsontext.Value
	if err := jsonv2.Unmarshal(body, &members); err != nil || members == nil {
		return rpcMessage{}, errNotOneMessage
	}
	if hasVariant(members, rpcNames) || hasVariant(objectMembers(members["params"]), paramNames) {
		return rpcMessage{}, errNotOneMessage
	}
	return rpcMessage{ID: json.RawMessage(members["id"]), Method: unquote(members["method"]), Params: json.RawMessage(members["params"])}, nil
}

// memberNames are the member names of a JSON object that are read, each
// with the names read in its value when that is an object too.
type memberNames map[string]memberNames

var rpcNames = memberNames{"jsonrpc": nil, "id": nil, "method": nil, "params": nil, "result": nil, "error": nil}

// paramNames are the params members the endpoint reads (withTasks,
// declaresTaskExtension), of every method: the tool's arguments are the
// tool's data, and only their object form is read.
var paramNames = memberNames{
	"name": nil, "arguments": nil, "taskId": nil,
	"task":  {"ttl": nil},
	"_meta": {"io.modelcontextprotocol/clientCapabilities": {"extensions": nil}},
}

// hasVariant reports whether members holds a case or Unicode variant of
// a name in names, or holds one in the value of a name in names.
func hasVariant(members map[string]jsontext.Value, names memberNames) bool {
	for name, v := range members {
		for known := range names {
			if name != known && strings.EqualFold(name, known) {
				return true
			}
		}
		if inner := names[name]; len(inner) > 0 && hasVariant(objectMembers(v), inner) {
			return true
		}
	}
	return false
}

// objectMembers is the members of v when it is a JSON object (readRPC
// has checked it is strict JSON), else nil.
func objectMembers(v jsontext.Value) map[string]jsontext.Value {
	if len(v) == 0 || v.Kind() != '{' {
		return nil
	}
	var members map[string]jsontext.Value
	if jsonv2.Unmarshal(v, &members) != nil {
		return nil
	}
	return members
}

// unquote is a JSON string's value, or "" for any other value.
func unquote(v jsontext.Value) string {
	var s string
	if len(v) == 0 || jsonv2.Unmarshal(v, &s) != nil {
		return ""
	}
	return s
}
