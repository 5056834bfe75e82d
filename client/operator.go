package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/operator"
)

// Operator asks the gateway to dry-run or replay denied messages. Its
// credential needs scope operator:replay in the denied message's tenant.
type Operator struct {
	nc     *nats.Conn
	token  identity.Token
	signer *identity.Signer
	tenant string
}

// NewOperator returns an Operator for the identity in a .creds file.
func NewOperator(nc *nats.Conn, credsPath, tenant string) (*Operator, error) {
	tok, kp, err := identity.ReadCreds(credsPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return newOperator(nc, tok, kp, tenant)
}

func newOperator(nc *nats.Conn, tok identity.Token, kp nkeys.KeyPair, tenant string) (*Operator, error) {
	s, err := identity.NewSigner(kp)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	return &Operator{nc: nc, token: tok, signer: s, tenant: tenant}, nil
}

// String returns "client.Operator{<tenant> <public key>}": never the
// credential, which fmt would print from the unexported field otherwise.
func (o Operator) String() string {
	pub := ""
	if o.signer != nil {
		pub = o.signer.PublicKey()
	}
	return "client.Operator{" + o.tenant + " " + pub + "}"
}

// Format prints String for every verb, %#v included.
func (o Operator) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(o.String())) }

// GoString returns String.
func (o Operator) GoString() string { return o.String() }

// Replay asks the gateway about the denied message at deniedSeq. With
// dryRun the gateway re-evaluates it against the current trust, catalog
// and policy and changes nothing (a dry run of an approver's answer or a
// response may answer route "not_predicted": the real replay's approval
// or response gate decides it); otherwise it re-submits the message
// through every gate, at most once per message. A refusal of the request
// itself is an error carrying the gateway's reason.
func (o *Operator) Replay(ctx context.Context, deniedSeq uint64, dryRun bool) (*operator.Result, error) {
	now := time.Now().UTC().Truncate(time.Second)
	req := operator.Request{V: 1, RequestID: envelope.NewMessageID(), Tenant: o.tenant, DeniedSeq: deniedSeq,
		DryRun: dryRun, IssuedAt: now, ExpiresAt: now.Add(time.Minute)}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	m := nats.NewMsg(operator.Subject)
	m.Data = body
	m.Header.Set(header.Credential, o.token.Reveal())
	m.Header.Set(header.Signature, base64.RawURLEncoding.EncodeToString(o.signer.Sign(operator.SigningInput(body))))
	resp, err := o.nc.RequestMsgWithContext(ctx, m)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			return nil, fmt.Errorf("%w: no gateway answers %s", ErrUnavailable, operator.Subject)
		}
		return nil, err
	}
	var res operator.Result
	if err := json.Unmarshal(resp.Data, &res); err != nil {
		return nil, fmt.Errorf("client: operator reply: %w", err)
	}
	if res.Error != "" {
		return &res, fmt.Errorf("client: replay refused (%s): %s", res.Code, res.Error)
	}
	return &res, nil
}
