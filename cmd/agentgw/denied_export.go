package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/internal/atomicfile"
	"github.com/agentgw/agentgw/internal/eval"
	"github.com/agentgw/agentgw/subjects"
	"github.com/agentgw/agentgw/subjects/reason"
)

func deniedExport(args []string) int {
	c := newCmd("denied export", "[--seq N]... [--tenant T] [--reason R] [--agent KEY] [--since 1h] [--catalog FILE] [--policy FILE]... [--include-payload] [--out FILE]", `
Turn denied records into evaluation cases (docs/evals.md) that expect the
same denial, so that 'agentgw eval run' fails if a policy or gateway
change would let them through.

No secret is copied. Each case's actor is rebuilt in the sandbox from the
credential's public claims (tenant, service, scopes) in the audit event of
the record's ingress sequence; the credential itself stays sealed in the
record, which the case names ("record: AGENTGW_DENIED#<seq>"). A sealed
payload is never copied (only the gateway can open it): sealed: {} stands
in. A plain payload is copied only with --include-payload (it may be
sensitive); otherwise plain: {} stands in and the case's doc keeps the
payload's sha256 digest. Records whose denial depends on what is not
copied (a payload's content, a body that does not parse, a budget, a held
request) are skipped and listed on stderr with the reason.

--catalog and --policy fill the file's sandbox section; without them,
edit it (or pass them to 'agentgw eval run').`)
	var cf connFlags
	cf.register(c.fs)
	cf.operatorSide = true
	var seqs, policies listFlag
	c.fs.Var(&seqs, "seq", "denied stream `sequence`, repeatable (default: every record the other filters keep)")
	tenant := c.fs.String("tenant", "", "only this tenant")
	why := c.fs.String("reason", "", "only this reason `code`")
	agent := c.fs.String("agent", "", "only this agent public `key` (U…)")
	age := c.fs.Duration("since", 0, "only records stored in the last `duration` (default: all retained)")
	catalog := c.fs.String("catalog", "", "capability catalog `file` for the sandbox section")
	c.fs.Var(&policies, "policy", "Cedar policy `file` for the sandbox section, repeatable")
	include := c.fs.Bool("include-payload", false, "copy plain payloads and unparsable bodies into the cases")
	out := c.fs.String("out", "", "write the case file here (mode 0600) instead of stdout")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	q := eval.DeniedQuery{Tenant: *tenant, Reason: *why, Agent: *agent}
	for _, s := range seqs {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			return c.usageErr("--seq %q is not a stream sequence", s)
		}
		q.Seqs = append(q.Seqs, n)
	}
	if *tenant != "" && !subjects.ValidToken(*tenant) {
		return c.usageErr("--tenant %q is not [a-z0-9_-]{1,64}", *tenant)
	}
	if *why != "" && !reason.Known(reason.Code(*why)) {
		return c.usageErr("--reason %q is not a reason code", *why)
	}
	if *age < 0 {
		return c.usageErr("--since must not be negative")
	}
	if *age > 0 {
		q.Since = time.Now().Add(-*age)
	}
	nc, js, code, ok := c.connect(&cf)
	if !ok {
		return code
	}
	defer nc.Close()
	ctx, cancel := interruptible()
	defer cancel()
	recs, err := eval.ReadDenied(ctx, js, q)
	if err != nil {
		return c.fail(err, streamHint(gateway.StreamDenied, err))
	}
	if len(recs) == 0 {
		fmt.Fprintln(c.err, "agentgw denied export: no denied record matches")
		return exitError
	}
	f, skipped := eval.Export(recs, eval.ExportOptions{
		Sandbox:        eval.SandboxSpec{Catalog: *catalog, Policies: policies},
		IncludePayload: *include,
	})
	for _, s := range skipped {
		fmt.Fprintf(c.err, "skipped denied #%d (%s): %s\n", s.Seq, clean(s.Reason), s.Why)
	}
	if len(f.Cases) == 0 {
		fmt.Fprintln(c.err, "agentgw denied export: no record could be exported")
		return exitError
	}
	data, err := f.Marshal(fmt.Sprintf("Exported by 'agentgw denied export' from %d denied records (%d skipped).\nEach case expects the denial its record shows; 'agentgw eval run' checks it.", len(recs), len(skipped)))
	if err != nil {
		return c.fail(err, "")
	}
	if *out == "" {
		_, err = c.out.Write(data)
	} else {
		// atomicfile, not os.WriteFile: an existing file keeps its mode
		// (and a symlink is followed) with os.WriteFile; the help
		// promises 0600.
		err = atomicfile.Write(*out, data, 0o600)
	}
	if err != nil {
		return c.fail(err, "")
	}
	fmt.Fprintf(c.err, "exported %d cases (%s)\n", len(f.Cases), strings.TrimSpace(plural(len(skipped), "record skipped", "records skipped")))
	return exitOK
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}
