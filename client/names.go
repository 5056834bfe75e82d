package client

import (
	"errors"
	"fmt"
	"strings"
)

// ConsumerNameSep separates the tenant from the target in a capability
// consumer name and stands for each dot of the target. It is in neither
// the tenant nor the target token alphabet ([a-z0-9_-]), and nats-server
// accepts it in consumer names and subjects.
const ConsumerNameSep = "~"

// CapabilityConsumerName is the name of the pull consumer an administrator
// pre-creates on StreamCapability for one tenant's target, with the single
// filter agentgw.cap.<tenant>.<target>: "<tenant>~<target with every . as
// ~>", e.g. "tenant_a~refunds~draft_refund". The first "~" ends the
// tenant and every later one is a dot of the target, so two (tenant,
// target) pairs never share a name: neither two targets of one tenant
// (refunds.issue, refunds_issue) nor two tenants (a with b-c, a-b with
// c). Consumers bind to it (ConsumerConfig.Bind); they may not create
// consumers.
func CapabilityConsumerName(tenant, target string) string {
	return tenant + ConsumerNameSep + strings.ReplaceAll(target, ".", ConsumerNameSep)
}

// ApprovalConsumerName is the name of the pull consumer an administrator
// pre-creates on StreamApproval for a tenant's approval queue, with the
// filter agentgw.approval.<tenant>.>: "<tenant>-approvals". It is the only
// consumer of that stream for the tenant, so it shares no name.
func ApprovalConsumerName(tenant string) string { return tenant + "-approvals" }

// MaxConsumerNameLen is the longest consumer name, in bytes, nats-server
// accepts (its JSMaxNameLen).
const MaxConsumerNameLen = 255

// ErrConsumerName: a consumer name nats-server refuses, or one name
// planned for two consumers of a stream (ConsumerNames). Errors wrapping
// it say which name and what it was for.
var ErrConsumerName = errors.New("client: consumer name")

// CheckConsumerName returns an error wrapping ErrConsumerName when
// nats-server would refuse name as a consumer name: empty, longer than
// MaxConsumerNameLen bytes, or holding white space or one of . * > / \.
func CheckConsumerName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty", ErrConsumerName)
	case len(name) > MaxConsumerNameLen:
		return fmt.Errorf("%w: %.64q… is %d bytes; nats-server takes at most %d", ErrConsumerName, name, len(name), MaxConsumerNameLen)
	case strings.ContainsAny(name, " \t\r\n\f.*>/\\"):
		return fmt.Errorf("%w: %q holds white space or one of . * > / \\", ErrConsumerName, name)
	}
	return nil
}

// ConsumerNames is a plan of the consumers of one stream: each name and
// what it is for. The zero value is not usable; make one with make.
type ConsumerNames map[string]string

// Add plans name for what (a description shown in errors, such as
// "tenant_a refunds.issue"). It returns an error wrapping
// ErrConsumerName, and plans nothing, when CheckConsumerName refuses
// name or name is already planned for something else: two consumers on
// one durable name are one consumer, whose filter the last to be created
// sets, so each would read and reject the other's deliveries.
func (p ConsumerNames) Add(name, what string) error {
	if err := CheckConsumerName(name); err != nil {
		return fmt.Errorf("%w (for %s)", err, what)
	}
	if other, ok := p[name]; ok && other != what {
		return fmt.Errorf("%w: %q is planned for both %s and %s", ErrConsumerName, name, other, what)
	}
	p[name] = what
	return nil
}
