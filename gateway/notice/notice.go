package notice

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-json-experiment/json"

	"github.com/agentgw/agentgw/gateway/envelope"
)

// Header marks a decision notice on a reply subject; its value is Kind.
const Header = "Agentgw-Notice"

// Kind is the value of Header on a decision notice.
const Kind = "decision"

// NotifyNone is the value of the ingress header Agentgw-Notify
// (header.Notify) by which a sender asks for no decision notice of its
// message: it will not read one.
const NotifyNone = "none"

// Scope is the decision token scope of a notice.
const Scope = "notice"

// MaxSize bounds an encoded notice, in bytes.
const MaxSize = 4096

// Routes a notice reports.
const (
	RouteAllow    = "allow"    // delivered to Target's capability subject
	RouteApproval = "approval" // held: ApprovalID awaits an approver until Deadline
	RouteDeny     = "deny"     // denied: Reason is the code
)

// Answer decisions an approver's notice reports.
const (
	AnswerGrant = "grant"
	AnswerDeny  = "deny"
)

// ErrInvalid: the bytes are not a notice.
var ErrInvalid = errors.New("notice: invalid")

// Notice is what the gateway decided for the envelope MessageID.
//
// For an approver's answer that the gateway took (the hold was pending
// and the approver may answer it), Answers is the held request's message
// id, Answer the approver's decision, and Route, Target and Reason the
// held request's outcome. An answer the gateway refused is an ordinary
// denial of the answer envelope: Answers is empty.
type Notice struct {
	MessageID  string     `json:"message_id"`
	Route      string     `json:"route"`
	Target     string     `json:"target,omitempty"`
	ApprovalID string     `json:"approval_id,omitempty"`
	Deadline   *time.Time `json:"deadline,omitempty"`
	Reason     string     `json:"reason,omitempty"`
	Answers    string     `json:"answers,omitempty"`
	Answer     string     `json:"answer,omitempty"`
}

// Marshal encodes n; the gateway's notices are always valid.
func (n *Notice) Marshal() ([]byte, error) {
	if err := n.check(); err != nil {
		return nil, err
	}
	return json.Marshal(n)
}

// Parse decodes a notice strictly: bounded, no unknown or duplicate
// members, one object, and the fields its route requires.
func Parse(b []byte) (*Notice, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes", ErrInvalid, len(b))
	}
	var n Notice
	// Unknown and duplicate members, invalid UTF-8 and trailing data are
	// errors of this decoder.
	if err := json.Unmarshal(b, &n, json.RejectUnknownMembers(true)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	// deadline, where present, is RFC 3339 in UTC exactly as envelope
	// times are written (upper-case T and Z, no offset), on every route:
	// time.Time alone would also take offsets, which the TypeScript
	// reader refuses.
	var raw struct {
		Deadline *string `json:"deadline"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if raw.Deadline != nil {
		d, ok := envelope.ParseTime(*raw.Deadline)
		if !ok {
			return nil, fmt.Errorf("%w: deadline is not RFC 3339 UTC", ErrInvalid)
		}
		n.Deadline = &d
	}
	if err := n.check(); err != nil {
		return nil, err
	}
	return &n, nil
}

func (n *Notice) check() error {
	var p []string
	if n.MessageID == "" {
		p = append(p, "no message_id")
	}
	switch n.Route {
	case RouteAllow:
		if n.Target == "" {
			p = append(p, "allow without target")
		}
	case RouteApproval:
		if n.ApprovalID == "" || n.Deadline == nil {
			p = append(p, "approval without approval_id and deadline")
		}
	case RouteDeny:
		if n.Reason == "" {
			p = append(p, "deny without reason")
		}
	default:
		p = append(p, fmt.Sprintf("route %q", n.Route))
	}
	if (n.Answers == "") != (n.Answer == "") || (n.Answer != "" && n.Answer != AnswerGrant && n.Answer != AnswerDeny) {
		p = append(p, "answers and answer go together; answer is grant or deny")
	}
	if len(p) > 0 {
		return fmt.Errorf("%w: %v", ErrInvalid, p)
	}
	return nil
}
