package bench

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
)

// kind is what one message is and what the systems should do with it.
type kind uint8

const (
	kindPlain kind = iota
	kindSealed
	kindBadSig
	kindReplay
	numKinds
)

var kindNames = [numKinds]string{"plain", "sealed", "badsig", "replay"}

func (k kind) String() string { return kindNames[k] }

// corpus is a scenario's messages, built and signed before the measured
// phase so that signing and sealing are not charged to the system under
// test.
type corpus struct {
	// primer holds one valid plain message per agent: the first of the
	// warm-up (credential caches, connections) and the originals replays
	// copy.
	primer msgSlice
	// warm is the rest of the warm-up (Config.Warmup), of the mix.
	warm *packedMsgs
	// msgs are the measured messages; counts and bytes are theirs.
	msgs   *packedMsgs
	kinds  []kind
	counts [numKinds]int
	bytes  int64 // bodies and per-message header values held
}

// newCorpus builds the primer, warm messages of the mix and then n
// measured ones.
func newCorpus(w *world, mix Mix, warm, n, sealedBytes int, now time.Time) (*corpus, error) {
	c, err := buildCorpus(w, mix, warm+n, sealedBytes, now)
	if err != nil {
		return nil, err
	}
	c.warm, c.msgs, c.kinds = c.msgs.slice(0, warm), c.msgs.slice(warm, c.msgs.Len()), c.kinds[warm:]
	c.counts = [numKinds]int{}
	for i := range c.msgs.Len() {
		c.counts[c.kinds[i]]++
		if c.kinds[i] != kindReplay {
			c.bytes += c.msgs.heldBytes(i)
		}
	}
	return c, nil
}

func buildCorpus(w *world, mix Mix, n, sealedBytes int, now time.Time) (*corpus, error) {
	c := &corpus{kinds: make([]kind, n)}
	msgs := make([]*nats.Msg, n)
	for _, a := range w.agents {
		m, err := plainMsg(a, 0, now, false)
		if err != nil {
			return nil, err
		}
		c.primer = append(c.primer, m)
	}
	for i := range n {
		c.kinds[i] = mix.kind(i)
	}
	workers := runtime.GOMAXPROCS(0)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for wk := range workers {
		wg.Go(func() {
			for i := wk; i < n; i += workers {
				a := w.agents[i%len(w.agents)]
				var err error
				switch c.kinds[i] {
				case kindPlain:
					msgs[i], err = plainMsg(a, i, now, false)
				case kindBadSig:
					msgs[i], err = plainMsg(a, i, now, true)
				case kindSealed:
					msgs[i], err = sealedMsg(w, a, i, sealedBytes, now)
				case kindReplay:
					msgs[i] = replayOf(c.primer[i%len(c.primer)])
				}
				if err != nil {
					errs[wk] = err
					return
				}
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	var err error
	if c.msgs, err = packMsgs(msgs); err != nil {
		return nil, err
	}
	return c, nil
}

// sign returns the agent's headers for body, as client.Agent sets them.
func sign(a *agent, body []byte, msgID string) nats.Header {
	h := nats.Header{}
	h.Set(header.Credential, a.token)
	h.Set(header.Signature, base64.RawURLEncoding.EncodeToString(a.signer.Sign(envelope.SigningInput(body))))
	if msgID != "" {
		h.Set(header.MsgID, msgID)
	}
	if a.noNotice {
		h.Set(header.Notify, notice.NotifyNone)
	}
	return h
}

// plainMsg is a valid read of the plain target; tampered changes the
// body after signing (same length, still a valid envelope), so only the
// signature gate refuses it.
func plainMsg(a *agent, i int, now time.Time, tampered bool) (*nats.Msg, error) {
	mid := envelope.NewMessageID()
	b := envelope.Builder{
		MessageID: mid, Tenant: a.tenant, Audience: audience, Capability: envelope.Read, Target: plainTarget,
		TTL: envelopeTTL, Payload: envelope.Payload{Plain: []byte(`{"q":"bench","i":` + strconv.Itoa(i) + `}`)},
	}
	body, err := b.Build(now)
	if err != nil {
		return nil, fmt.Errorf("bench: build: %w", err)
	}
	h := sign(a, body, mid)
	if tampered {
		j := bytes.Index(body, []byte(`"q":"bench"`))
		if j < 0 {
			return nil, fmt.Errorf("bench: plain payload not found in body")
		}
		body[j+5] = 'B'
	}
	return &nats.Msg{Subject: a.subject, Data: body, Header: h}, nil
}

// sealedMsg is a valid tool call whose payload, sealedBytes of JSON, is
// sealed to the gateway.
func sealedMsg(w *world, a *agent, i, sealedBytes int, now time.Time) (*nats.Msg, error) {
	plain := fmt.Appendf(nil, `{"order_id":"o%d","amount_cents":%d,"note":"`, i, 1+i%100000)
	for len(plain) < sealedBytes-2 {
		plain = append(plain, 'x')
	}
	plain = append(plain, `"}`...)
	sealed, err := a.box.Seal(plain, w.gwCurvePub)
	if err != nil {
		return nil, fmt.Errorf("bench: seal: %w", err)
	}
	mid := envelope.NewMessageID()
	b := envelope.Builder{
		MessageID: mid, Tenant: a.tenant, Audience: audience, Capability: envelope.ToolCall, Target: sealedTarget,
		TTL: envelopeTTL, Payload: envelope.Payload{Sealed: base64.RawURLEncoding.EncodeToString(sealed), From: a.xkey, To: w.gwCurvePub},
	}
	body, err := b.Build(now)
	if err != nil {
		return nil, fmt.Errorf("bench: build: %w", err)
	}
	return &nats.Msg{Subject: a.subject, Data: body, Header: sign(a, body, mid)}, nil
}

// replayOf is an attacker's copy of m: the same subject, body, credential
// and signature, without the Nats-Msg-Id (with it, JetStream would drop
// the copy at ingress and the gateway would never see it).
func replayOf(m *nats.Msg) *nats.Msg {
	h := nats.Header{}
	h.Set(header.Credential, m.Header.Get(header.Credential))
	h.Set(header.Signature, m.Header.Get(header.Signature))
	if v := m.Header.Get(header.Notify); v != "" {
		h.Set(header.Notify, v)
	}
	return &nats.Msg{Subject: m.Subject, Data: m.Data, Header: h}
}
