package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/policy"
	"github.com/agentgw/agentgw/internal/eval"
	"github.com/agentgw/agentgw/subjects"
)

func evalCmd(args []string) int {
	return group("eval", "Security evaluation cases (docs/evals.md): pinned outcomes checked against a sandbox or a running gateway.", []subcommand{
		{"run", "run case files and report false allows, false denials, leaks and policy coverage", evalRun},
	}, args)
}

func evalRun(args []string) int {
	c := newCmd("eval run", "[--catalog FILE] [--policy FILE]... [--json] [--timeout 20s] CASES.yaml...", `
Run every case of the case files through the real gateway pipeline and
compare what became of each message with what the case expects.

By default each run starts a sandbox of its own: an in-process nats-server
with JetStream in a temporary directory, the gateway with the case file's
sandbox section (catalog, policies, tenants, audience), a generated issuer
per tenant, generated gateway keys and a temporary ledger; it is removed
when the run ends. --catalog and --policy replace the file's, so a
candidate policy can be checked before it ships:

  agentgw eval run --policy candidate.cedar testdata/evals/*.yaml

With --external the cases run against a gateway already serving at
-s/--server (or $NATS_URL, or the NATS context's url) instead: --audience is its audience, --issuer tenant=SEEDFILE the issuers
it trusts (actors' credentials are issued with them), --gateway-xkey its
curve key; the NATS user must be allowed to publish on ingress subjects
and read the output and audit streams (docs/evals.md).

Reported per case and in total: false allows (allowed or held where the
case expects a denial, allowed where it expects a hold), false denials,
wrong reasons, wrong deciding policies, replays detected, trace fields
missing on outputs and audit events, redaction failures (a seed, a
credential or a sealed plaintext of the run found in any output, audit
event or the gateway's log) and which policies decided no case.

Exit 3 on any false allow or redaction failure, or policies or a
catalog that do not load; 1 when another case failed (or on a runtime
error, such as a redaction scan that could not read a stream); 2 when a
case file does not load; 0 when every case passed.`)
	var cf connFlags
	cf.register(c.fs)
	var policies listFlag
	catFile := c.fs.String("catalog", "", "capability catalog `file` (default: the case file's sandbox.catalog)")
	c.fs.Var(&policies, "policy", "Cedar policy `file`, repeatable (default: the case file's sandbox.policies)")
	asJSON := c.fs.Bool("json", false, "print the report as one JSON object")
	quiet := c.fs.Bool("quiet", false, "no per-case progress on stderr (with --json)")
	timeout := c.fs.Duration("timeout", 20*time.Second, "how long a case waits for its output")
	external := c.fs.Bool("external", false, "run against the gateway serving at -s/--server instead of a sandbox")
	audience := c.fs.String("audience", "", "the external gateway's audience (with --external)")
	xkey := c.fs.String("gateway-xkey", "", "the external gateway's curve `key` (X…), which sealed payloads are sealed to (with --external)")
	var issuers listFlag
	c.fs.Var(&issuers, "issuer", "`tenant=SEEDFILE`: an issuer seed the external gateway trusts for tenant, repeatable (with --external)")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if len(c.args) == 0 {
		return c.usageErr("give at least one case file")
	}
	if *timeout <= 0 {
		return c.usageErr("--timeout must be positive")
	}
	var files []*eval.File
	for _, p := range c.args {
		f, err := eval.Load(p)
		if err != nil {
			fmt.Fprintf(c.err, "agentgw eval run: %s\n", identity.SafeText(err.Error()))
			return exitUsage
		}
		files = append(files, f)
	}
	opts := eval.Options{Timeout: *timeout}
	if !*quiet {
		opts.Progress = func(done, total int, r *eval.CaseResult) {
			if *asJSON {
				fmt.Fprintf(c.err, "[%d/%d] %s %s\n", done, total, verdictWord(r), r.Name)
				return
			}
			fmt.Fprintf(c.out, "%-5s %s%s\n", verdictWord(r), r.Name, caseDetail(r))
		}
	}
	ctx, cancel := interruptible()
	defer cancel()
	var rep *eval.Report
	var err error
	if *external {
		if *audience == "" || len(issuers) == 0 {
			return c.usageErr("--external needs --audience and at least one --issuer tenant=SEEDFILE")
		}
		tgt, code, ok := externalTarget(c, &cf, *audience, *xkey, issuers, policies)
		if !ok {
			return code
		}
		defer tgt.NC.Close()
		rep, err = eval.Run(ctx, tgt, files, opts)
	} else {
		rep, err = eval.RunSandboxed(ctx, files, eval.SandboxOptions{Catalog: *catFile, Policies: policies}, opts)
	}
	if errors.Is(err, policy.ErrInvalid) {
		fmt.Fprintf(c.err, "agentgw eval run: policies do not load:\n%v\n", err)
		return exitRejected
	}
	if errors.Is(err, catalog.ErrInvalid) {
		fmt.Fprintf(c.err, "agentgw eval run: the catalog does not load:\n%s\n", identity.SafeText(err.Error()))
		return exitRejected
	}
	if err != nil {
		return c.fail(err, "")
	}
	if *asJSON {
		enc := json.NewEncoder(c.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return c.fail(err, "")
		}
	} else {
		if *quiet {
			for _, r := range rep.Cases {
				if r.Verdict != eval.Pass || len(r.MissingTrace) > 0 {
					fmt.Fprintf(c.out, "%-5s %s%s\n", verdictWord(r), r.Name, caseDetail(r))
				}
			}
		}
		printTotals(c, rep)
	}
	switch {
	case rep.Rejected():
		return exitRejected
	case rep.Failed():
		return exitError
	}
	return exitOK
}

// verdictWord is the short form of a case's verdict.
func verdictWord(r *eval.CaseResult) string {
	if r.Verdict == eval.Pass && len(r.MissingTrace) == 0 {
		return "ok"
	}
	return "FAIL"
}

// caseDetail says, for a failing case, what was expected and what came.
func caseDetail(r *eval.CaseResult) string {
	var b strings.Builder
	if r.Verdict != eval.Pass {
		fmt.Fprintf(&b, ": %s: want %s, got %s", r.Verdict, outcomeWord(r.Expect.Route, r.Expect.Reason, r.Expect.Policy), outcomeWord(r.Got.Route, r.Got.Reason, r.Got.Policy))
		if r.Problem != "" {
			fmt.Fprintf(&b, " (%s)", clean(r.Problem))
		}
	}
	if len(r.MissingTrace) > 0 {
		fmt.Fprintf(&b, "; trace fields missing: %s", strings.Join(r.MissingTrace, ", "))
	}
	return b.String()
}

func outcomeWord(route, why string, policy []string) string {
	if route == "" {
		route = "nothing"
	}
	if why != "" {
		route += "/" + why
	}
	if len(policy) > 0 {
		route += " by " + strings.Join(policy, ",")
	}
	return route
}

func printTotals(c *cmd, rep *eval.Report) {
	t := rep.Totals
	fmt.Fprintf(c.out, "\n%d cases: %d passed, %d false allows, %d false denials, %d wrong reasons, %d wrong policies, %d wrong targets, %d without outcome, %d errors\n",
		t.Cases, t.Passed, t.FalseAllows, t.FalseDenials, t.WrongReasons, t.WrongPolicies, t.WrongTargets, t.NoOutcome, t.Errors)
	fmt.Fprintf(c.out, "replays detected: %d of %d sent; trace fields missing: %d; redaction failures: %d\n", t.ReplaysDetected, t.ReplaysSent, t.MissingTraceFields, t.RedactionFailures)
	for _, l := range rep.Redaction {
		fmt.Fprintf(c.out, "  leak: %s\n", l)
	}
	fmt.Fprintf(c.out, "policies deciding a case: %d", len(rep.Coverage.Decided))
	if len(rep.Coverage.Never) > 0 {
		fmt.Fprintf(c.out, "; never deciding: %s", strings.Join(rep.Coverage.Never, ", "))
	}
	fmt.Fprintln(c.out)
}

// externalTarget connects to the gateway's server at -s/--server and reads the
// issuer seeds the cases' credentials are issued with.
func externalTarget(c *cmd, cf *connFlags, audience, xkey string, issuers, policies []string) (*eval.Target, int, bool) {
	tgt := &eval.Target{Audience: audience, GatewayXKey: xkey, Issuers: map[string]nkeys.KeyPair{}}
	for _, spec := range issuers {
		tenant, path, ok := strings.Cut(spec, "=")
		if !ok || !subjects.ValidToken(tenant) || path == "" {
			return nil, c.usageErr("--issuer %q is not tenant=SEEDFILE", identity.SafeText(spec)), false
		}
		kp, err := c.seedFile(path, "SA")
		if err != nil {
			return nil, c.fail(err, "--issuer names a tenant issuer seed file ('agentgw keys new issuer')"), false
		}
		seed, _ := kp.Seed()
		tgt.Issuers[tenant] = kp
		tgt.Secrets = append(tgt.Secrets, string(seed))
	}
	if len(policies) > 0 {
		set, err := policy.Load(policies...)
		if err != nil {
			fmt.Fprintf(c.err, "agentgw eval run: policies do not load:\n%v\n", err)
			return nil, exitRejected, false
		}
		tgt.PolicyIDs = set.IDs()
	}
	nc, _, code, ok := c.connect(cf)
	if !ok {
		return nil, code, false
	}
	tgt.NC = nc
	return tgt, exitOK, true
}
