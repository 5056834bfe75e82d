package subjects

import (
	"strings"

	"github.com/agentgw/agentgw/subjects/reason"
)

// Capability returns agentgw.cap.<tenant>.<target>, where the gateway
// routes an allowed request. Errors are *reason.Denial with code
// InvalidSubject.
func Capability(tenant, target string) (string, error) {
	return tenantTarget("cap", tenant, target)
}

// ParseCapability is the inverse of Capability.
func ParseCapability(subj string) (tenant, target string, err error) {
	return parseTenantTarget("cap", subj)
}

// Approval returns agentgw.approval.<tenant>.<target>, where held requests
// wait for an approver. Errors are *reason.Denial with code InvalidSubject.
func Approval(tenant, target string) (string, error) {
	return tenantTarget("approval", tenant, target)
}

// ParseApproval is the inverse of Approval.
func ParseApproval(subj string) (tenant, target string, err error) {
	return parseTenantTarget("approval", subj)
}

// Denied returns agentgw.denied.<tenant>.<code>. Use UnroutableTenant when
// the message's tenant cannot be trusted to name a subject. code must be
// in the reason table. Errors are *reason.Denial with code InvalidSubject.
func Denied(tenant string, code reason.Code) (string, error) {
	if err := checkTenant(tenant); err != nil {
		return "", err
	}
	if !reason.Known(code) {
		return "", invalid("code %.72q is not in the reason table", string(code))
	}
	return "agentgw.denied." + tenant + "." + string(code), nil
}

// ParseDenied is the inverse of Denied.
func ParseDenied(subj string) (tenant string, code reason.Code, err error) {
	toks, err := split(subj, "denied", 4, 4)
	if err != nil {
		return "", "", err
	}
	if err := checkTenant(toks[2]); err != nil {
		return "", "", err
	}
	if !reason.Known(reason.Code(toks[3])) {
		return "", "", invalid("code %.72q is not in the reason table", toks[3])
	}
	return toks[2], reason.Code(toks[3]), nil
}

// Audit returns agentgw.audit.<tenant>. Errors are *reason.Denial with
// code InvalidSubject.
func Audit(tenant string) (string, error) {
	if err := checkTenant(tenant); err != nil {
		return "", err
	}
	return "agentgw.audit." + tenant, nil
}

// ParseAudit is the inverse of Audit.
func ParseAudit(subj string) (tenant string, err error) {
	toks, err := split(subj, "audit", 3, 3)
	if err != nil {
		return "", err
	}
	if err := checkTenant(toks[2]); err != nil {
		return "", err
	}
	return toks[2], nil
}

// Reply returns agentgw.reply.<tenant>.<agent>, where responses to an
// agent's requests are delivered. Errors are *reason.Denial with code
// InvalidSubject.
func Reply(tenant, agent string) (string, error) {
	if err := checkTenant(tenant); err != nil {
		return "", err
	}
	if err := checkAgent(agent); err != nil {
		return "", err
	}
	return "agentgw.reply." + tenant + "." + agent, nil
}

// ParseReply is the inverse of Reply.
func ParseReply(subj string) (tenant, agent string, err error) {
	toks, err := split(subj, "reply", 4, 4)
	if err != nil {
		return "", "", err
	}
	if err := checkTenant(toks[2]); err != nil {
		return "", "", err
	}
	if err := checkAgent(toks[3]); err != nil {
		return "", "", err
	}
	return toks[2], toks[3], nil
}

func tenantTarget(kind, tenant, target string) (string, error) {
	if err := checkTenant(tenant); err != nil {
		return "", err
	}
	if err := checkTarget(target); err != nil {
		return "", err
	}
	return Root + "." + kind + "." + tenant + "." + target, nil
}

func parseTenantTarget(kind, subj string) (tenant, target string, err error) {
	if err := form(subj, kind, 4, -1); err != nil {
		return "", "", err
	}
	rest := subj[len(Root)+len(kind)+2:]
	tenant, target, _ = strings.Cut(rest, ".")
	if err := checkTenant(tenant); err != nil {
		return "", "", err
	}
	if err := checkTarget(target); err != nil {
		return "", "", err
	}
	return tenant, target, nil
}
