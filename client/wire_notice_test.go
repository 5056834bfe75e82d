package client

import (
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/agentgw/agentgw/gateway/decision"
	"github.com/agentgw/agentgw/gateway/envelope"
	"github.com/agentgw/agentgw/gateway/header"
	"github.com/agentgw/agentgw/gateway/notice"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

// notice.json: the decision notices of the scenario (docs/wire.md,
// "Decision notices"), each the whole message on its sender's reply
// subject, with rejects a reader must refuse.

type wvNotice struct {
	Name     string    `json:"name"`
	Envelope string    `json:"envelope"`
	To       string    `json:"to"`
	Token    string    `json:"token"`
	Message  wvMessage `json:"message"`
}

type wvNoticeReject struct {
	Name    string    `json:"name"`
	To      string    `json:"to"`
	Message wvMessage `json:"message"`
	Want    string    `json:"want"`
}

type wvNoticesFile struct {
	About           string           `json:"about"`
	TrustedGateways []string         `json:"trusted_gateways"`
	VerifyAtUnix    int64            `json:"verify_at_unix"`
	SkewSeconds     int64            `json:"skew_seconds"`
	Notices         []wvNotice       `json:"notices"`
	Rejects         []wvNoticeReject `json:"rejects"`
}

// wvNoticeSpec is one notice: what the gateway tells the sender to
// (a key label) about env, as an output of ingress sequence seq of the
// carrier envelope (the approval answer, for a released request's
// notice to its requester).
type wvNoticeSpec struct {
	name, to string
	env      *wvEnvelope
	carrier  *wvEnvelope
	seq      uint64
	suffix   string
	n        notice.Notice
}

// noticeData encodes each spec's notice as the gateway does.
func (w *wvWorld) noticeData(specs []wvNoticeSpec) [][]byte {
	out := make([][]byte, len(specs))
	for i, s := range specs {
		b, err := s.n.Marshal()
		if err != nil {
			w.t.Fatal(err)
		}
		out[i] = b
	}
	return out
}

// noticeClaims are the token claims of a notice: addressed to its
// sender, scope and route notice, bound to the envelope it reports on
// and to the notice's bytes, and naming no policy.
func (w *wvWorld) noticeClaims(s wvNoticeSpec, data []byte) wvClaimSpec {
	c := w.claimsFor(s.name, w.pubs[s.to], s.env, w.pubs[s.to], notice.Scope, data, decision.RouteNotice, "")
	c.claim.PolicyIDs, c.claim.PolicyVersion = nil, ""
	return c
}

func (w *wvWorld) noticeFile(specs []wvNoticeSpec, data [][]byte, reply wvMessage) wvNoticesFile {
	f := wvNoticesFile{
		About: "decision notices (docs/wire.md, \"Decision notices\"): what the gateway tells each authenticated sender of the scenario's envelopes " +
			"(envelope.json) on its reply subject, as the notice document (v, decision: its token, notice: the notice) whose token is in decision.json's notices batch. The search envelope is shown denied budget_exceeded " +
			"(the outcome operator.json's replay presumes) so that every route appears. Each notice is taken by the agent `to` with trust " +
			"trusted_gateways at verify_at_unix; each reject is refused by that agent with the reason code in want.",
		TrustedGateways: []string{w.pubs["gateway-signing"]}, VerifyAtUnix: wvNow.Unix(), SkewSeconds: int64(wvSkew / time.Second),
	}
	doc := func(token string, data []byte) string {
		b, err := notice.AppendDoc(nil, token, data)
		if err != nil {
			w.t.Fatal(err)
		}
		return string(b)
	}
	for i, s := range specs {
		subj, err := subjects.Reply(wvTenant, w.pubs[s.to])
		if err != nil {
			w.t.Fatal(err)
		}
		carrier := s.carrier.Message.header(header.MsgID)
		f.Notices = append(f.Notices, wvNotice{Name: s.name, Envelope: s.env.Name, To: s.to, Token: s.name,
			Message: wvMessage{Subject: subj, Body: doc(w.tokens[s.name], data[i]), Headers: []wvHeader{
				{header.MsgID, wvOutputMsgID(s.seq, wvTenant, w.pubs[s.carrier.Signer], carrier) + s.suffix},
				{notice.Header, notice.Kind},
				{header.IngressSeq, strconv.FormatUint(s.seq, 10)},
				{header.MessageID, s.n.MessageID},
			}}})
	}
	first := f.Notices[0]
	withBody := func(body string) wvMessage {
		m := first.Message
		m.Body = body
		return m
	}
	withHex := func(data string) wvMessage {
		m := first.Message
		m.Body, m.DataHex = "", hex.EncodeToString([]byte(data))
		return m
	}
	// A held notice whose deadline is written with an offset (the same
	// instant as +00:00), signed by the trusted key for its bytes: the
	// token binds it, but a notice's times are RFC 3339 UTC with Z.
	var offsetMsg wvMessage
	var offsetDoc, offsetTo string
	for i, s := range specs {
		if s.n.Deadline == nil {
			continue
		}
		z := s.n.Deadline.UTC().Format(time.RFC3339Nano)
		od := strings.Replace(string(data[i]), `"deadline":"`+z+`"`, `"deadline":"`+strings.TrimSuffix(z, "Z")+`+00:00"`, 1)
		if od == string(data[i]) {
			w.t.Fatalf("notice %s: deadline %s not found in %s", s.name, z, data[i])
		}
		oc := w.noticeClaims(s, []byte(od))
		oc.name += "-offset-deadline"
		offsetDoc = doc(w.batch("offset-deadline-notice", "gateway-signing", []wvClaimSpec{oc}).Tokens[0].Token, []byte(od))
		offsetTo, offsetMsg = s.to, f.Notices[i].Message
		offsetMsg.Body = offsetDoc
		break
	}
	if offsetDoc == "" {
		w.t.Fatal("no held notice to write with an offset deadline")
	}
	// The first notice's claims signed by a key no agent trusts.
	uc := w.noticeClaims(specs[0], data[0])
	uc.name += "-untrusted"
	untrusted := w.batch("untrusted-notice", "untrusted-gateway", []wvClaimSpec{uc}).Tokens[0].Token
	// The first notice's claims naming another tenant, signed by the
	// trusted key: the agent's key in another tenant is not this agent.
	oc := w.noticeClaims(specs[0], data[0])
	oc.name += "-other-tenant"
	oc.claim.Tenant = "tenant_b"
	otherTenant := w.batch("other-tenant-notice", "gateway-signing", []wvClaimSpec{oc}).Tokens[0].Token
	edited := strings.Replace(first.Message.Body, `"target":"refunds.draft_refund"`, `"target":"payments.send"`, 1)
	unknown := strings.Replace(first.Message.Body, `{"v":1,`, `{"v":1,"note":"x",`, 1)
	f.Rejects = []wvNoticeReject{
		{"untrusted_gateway", first.To, withBody(doc(untrusted, data[0])), string(reason.DecisionInvalid)},
		{"data_edited", first.To, withBody(edited), string(reason.DecisionBinding)},
		{"token_of_another_notice", first.To, withBody(doc(w.tokens[specs[1].name], data[0])), string(reason.DecisionBinding)},
		// The reply of response.json's token around the first notice: its route is reply.
		{"reply_token", first.To, withBody(doc(reply.header(header.Decision), data[0])), string(reason.DecisionBinding)},
		{"notice_to_another_agent", first.To, f.Notices[3].Message, string(reason.DecisionAudience)},
		{"notice_of_another_tenant", first.To, withBody(doc(otherTenant, data[0])), string(reason.DecisionBinding)},
		// The notice alone, its token in an Agentgw-Decision header: not a document.
		{"notice_without_document", first.To, wvMessage{Subject: first.Message.Subject, Body: string(data[0]),
			Headers: append(slices.Clone(first.Message.Headers), wvHeader{header.Decision, w.tokens[specs[0].name]})}, string(reason.DecisionMissing)},
		{"document_with_unknown_member", first.To, withBody(unknown), string(reason.DecisionMissing)},
		// After the document only JSON's white space may follow; U+00A0
		// is white space to some decoders, not to JSON.
		{"document_with_trailing_no_break_space", first.To, withHex(first.Message.Body + "\u00a0"), string(reason.DecisionMissing)},
		{"deadline_with_offset", offsetTo, offsetMsg, string(reason.Internal)},
	}
	return f
}

// TestWireVectorNotices reads notice.json as the SDK's notice watcher
// does: each notice verifies for its agent and decodes to its body; each
// reject is refused with its reason code.
func TestWireVectorNotices(t *testing.T) {
	f := wvLoad[wvNoticesFile](t, "notice.json")
	envs, tokens, keys := wvEnvelopes(t), wvTokens(t), wvKeysOf(t)
	now := time.Unix(f.VerifyAtUnix, 0)
	agent := func(label string) *Agent {
		return &Agent{pub: keys[label].Public, tenant: wvTenant, now: func() time.Time { return now }}
	}
	opt := WaitOptions{TrustedGateways: f.TrustedGateways, Skew: time.Duration(f.SkewSeconds) * time.Second}
	routes := map[string]bool{}
	for _, n := range f.Notices {
		t.Run(n.Name, func(t *testing.T) {
			m := &nats.Msg{Subject: n.Message.Subject, Header: wvHeaders(n.Message), Data: []byte(n.Message.Body)}
			if tok, _, err := notice.ParseDoc(m.Data); err != nil || tok != tokens[n.Token] || m.Header.Get(notice.Header) != notice.Kind {
				t.Errorf("notice is not a document carrying its token, marked Agentgw-Notice: decision (%v)", err)
			}
			if subj, _ := subjects.Reply(wvTenant, keys[n.To].Public); subj != n.Message.Subject {
				t.Errorf("subject %s; want %s", n.Message.Subject, subj)
			}
			d, err := agent(n.To).verifyNotice(m, opt)
			if err != nil {
				t.Fatalf("verifyNotice = %v", err)
			}
			env, err := envelope.Parse([]byte(envs[n.Envelope].Message.Body), envelope.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if d.MessageID != env.MessageID || m.Header.Get(header.MessageID) != env.MessageID || d.Claims.TraceID != env.TraceID ||
				d.Claims.BodyDigest != envs[n.Envelope].BodySHA256Hex || d.Claims.Scope != notice.Scope || len(d.Claims.PolicyIDs) != 0 {
				t.Errorf("notice %+v (claims %+v) does not report on envelope %s", d, d.Claims, n.Envelope)
			}
			routes[d.Route] = true
		})
	}
	if len(routes) != 3 {
		t.Errorf("notice routes %v; want allow, approval and deny", routes)
	}
	for _, r := range f.Rejects {
		t.Run("reject/"+r.Name, func(t *testing.T) {
			data := []byte(r.Message.Body)
			if r.Message.DataHex != "" {
				data = wvUnhex(t, r.Message.DataHex)
			}
			m := &nats.Msg{Subject: r.Message.Subject, Header: wvHeaders(r.Message), Data: data}
			_, err := agent(r.To).verifyNotice(m, opt)
			if got := reason.Of(err); string(got) != r.Want {
				t.Errorf("verifyNotice = %v; want %s", err, r.Want)
			}
		})
	}
}
