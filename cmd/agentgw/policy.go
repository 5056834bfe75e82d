package main

import (
	"fmt"
	"strings"

	"github.com/agentgw/agentgw/gateway/catalog"
	"github.com/agentgw/agentgw/gateway/identity"
	"github.com/agentgw/agentgw/gateway/policy"
)

func policyCmd(args []string) int {
	return group("policy", "Cedar policies as the gateway loads them.", []subcommand{
		{"check", "load policy files (and a catalog) as the gateway would; report every problem", policyCheck},
		{"test", "replay recorded decisions against candidate policies; show which would flip", policyTest},
	}, args)
}

func policyCheck(args []string) int {
	c := newCmd("policy check", "[--catalog FILE] [--json] POLICY_FILE...", `
Load the Cedar policy files exactly as the gateway's policies setting
would (policy.Load: parse, ids, lint) and, with --catalog, the capability
catalog (catalog.Load). On success print OK, the policy version (the
digest the gateway records with each decision) and the policy ids. On
failure print every problem, each naming its file and line, and exit 3.`)
	cat := c.fs.String("catalog", "", "capability catalog `file` to check as well")
	asJSON := c.fs.Bool("json", false, "print the result as JSON")
	if code, ok := c.parse(args); !ok {
		return code
	}
	if len(c.args) == 0 {
		return c.usageErr("give at least one POLICY_FILE (e.g. policies/*.cedar)")
	}
	var problems []string
	set, err := policy.Load(c.args...)
	if err != nil {
		problems = append(problems, lines(err)...)
	}
	var targets []string
	catDigest := ""
	if *cat != "" {
		cg, err := catalog.Load(*cat)
		if err != nil {
			for _, l := range lines(err) {
				problems = append(problems, identity.SafeText(*cat+": "+l))
			}
		} else {
			targets, catDigest = cg.Names(), cg.Digest
		}
	}
	if *asJSON {
		res := map[string]any{"ok": len(problems) == 0}
		if len(problems) > 0 {
			res["problems"] = problems
		}
		if set != nil {
			res["version"], res["policies"] = set.Version(), set.IDs()
		}
		if catDigest != "" {
			res["catalog"] = map[string]any{"digest": catDigest, "targets": targets}
		}
		_ = newJSONLines(c.out).write(res)
	} else {
		for _, p := range problems {
			fmt.Fprintf(c.err, "%s\n", clean(p))
		}
		if len(problems) == 0 {
			fmt.Fprintf(c.out, "OK  policy version %s (%d policies from %d files)\n", set.Version(), set.Len(), len(c.args))
			for _, id := range set.IDs() {
				fmt.Fprintf(c.out, "  %s\n", id)
			}
			if catDigest != "" {
				fmt.Fprintf(c.out, "OK  catalog %s (%d targets: %s)\n", catDigest, len(targets), strings.Join(targets, ", "))
			}
		}
	}
	if len(problems) > 0 {
		fmt.Fprintf(c.err, "agentgw policy check: %d problem(s): the gateway would not load this set\n", len(problems))
		return exitRejected
	}
	return exitOK
}

// lines splits an error (joined errors print one per line) into lines.
func lines(err error) []string {
	var out []string
	for _, l := range strings.Split(err.Error(), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
