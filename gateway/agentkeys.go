package gateway

import (
	"sync"
	"sync/atomic"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/envelope"
)

// maxAgentKeys bounds the decoded-key cache; past it the cache is dropped
// and refilled, so memory stays bounded whatever the key churn.
const maxAgentKeys = 16384

// A key that has verified precomputeAfter signatures gets its table of
// multiples (envelope.PublicKey.Precompute: about two verifications of
// work, a third less for each one after), and at most maxKeyTables keys
// per filling of the cache do (envelope.TableBytes each, 10 MiB in all).
// Only verified signatures count, so only the holder of an agent's
// private key can make the gateway build a table for it.
const (
	precomputeAfter = 16
	maxKeyTables    = 256
)

// agentKeys caches agents' decoded Ed25519 keys (envelope.PublicKey) by
// their public 'U' key: decoding takes a square root, a good part of a
// verification, and agents repeat. The key is derived from the string
// it is cached under, so an entry can never be stale. The zero value is
// ready.
type agentKeys struct {
	mu     sync.RWMutex
	keys   map[string]*agentKey
	tables int // keys of this map given a table, or promised one
}

// agentKey is a cached key and the signatures it has verified.
type agentKey struct {
	*envelope.PublicKey
	verified atomic.Uint32
}

func (c *agentKeys) get(subject string) (*agentKey, error) {
	c.mu.RLock()
	k, ok := c.keys[subject]
	c.mu.RUnlock()
	if ok {
		return k, nil
	}
	raw, err := nkeys.Decode(nkeys.PrefixByteUser, []byte(subject))
	if err != nil {
		return nil, err
	}
	pub, err := envelope.NewPublicKey(raw)
	if err != nil {
		return nil, err
	}
	k = &agentKey{PublicKey: pub}
	c.mu.Lock()
	if c.keys == nil || len(c.keys) >= maxAgentKeys {
		c.keys = make(map[string]*agentKey)
		c.tables = 0
	}
	c.keys[subject] = k
	c.mu.Unlock()
	return k, nil
}

// verify checks sigB64 over body with k (envelope.PublicKey.Verify) and
// gives k its table when this was its precomputeAfter'th verified
// signature and the budget allows.
func (c *agentKeys) verify(k *agentKey, body []byte, sigB64 string) error {
	if err := k.Verify(body, sigB64); err != nil {
		return err
	}
	// Counted up to precomputeAfter only: a hot key's counter is then
	// read, never written, by the workers verifying its messages.
	if k.verified.Load() >= precomputeAfter || k.verified.Add(1) != precomputeAfter {
		return nil
	}
	c.mu.Lock()
	ok := c.tables < maxKeyTables
	if ok {
		c.tables++
	}
	c.mu.Unlock()
	if ok {
		k.Precompute()
	}
	return nil
}
