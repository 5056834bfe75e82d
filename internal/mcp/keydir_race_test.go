package mcp

import (
	"context"
	"testing"
	"time"
)

// TestSharedKeyDirOneKeyPerPrincipal: two endpoints share key_dir. The
// second makes keys for a principal it has no file for, and while it
// exchanges the principal's token the first writes the principal's
// keys. The second does not adopt its own keys (one principal, two
// agent keys): its request fails, and its next reads the file's.
func TestSharedKeyDirOneKeyPerPrincipal(t *testing.T) {
	h := newEndpointHarness(t)
	ep2, err := NewEndpoint(h.nc, h.cfg) // a second instance, the same key_dir
	must(t, err)
	t.Cleanup(func() { _ = ep2.Close() })
	tok := h.signed("petra", "support")
	c, err := parseBearer(tok)
	must(t, err)
	now := time.Now()
	p2, known, err := ep2.principal(c.Issuer, c.Subject, now) // no file yet: keys of its own
	must(t, err)
	if known {
		t.Fatal("principal known to the second endpoint before any request")
	}
	if code, body := h.postRPC(tok, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`); code != 200 { // the first writes the file
		t.Fatalf("first endpoint: %d %s", code, body)
	}
	s := &session{p: p2, sum: [32]byte{1}, expiry: time.Unix(int64(c.Expiry), 0)}
	must(t, ep2.refresh(context.Background(), s, tok, true)) // the second's exchange, with its own keys
	if q, err := ep2.adopt(p2, now); err == nil {
		k, _ := q.key.PublicKey()
		t.Errorf("second endpoint adopted key %s for a principal whose key_dir file holds another", k)
	}
	p3, _, err := ep2.principal(c.Issuer, c.Subject, now)
	must(t, err)
	k1 := func() string {
		h.endpoint.mu.Lock()
		defer h.endpoint.mu.Unlock()
		for _, p := range h.endpoint.principals {
			pub, _ := p.key.PublicKey()
			return pub
		}
		return ""
	}()
	if k3, _ := p3.key.PublicKey(); k3 != k1 {
		t.Errorf("the second endpoint's next request uses key %s; want the file's %s", k3, k1)
	}
}
