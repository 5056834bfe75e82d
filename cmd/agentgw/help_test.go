package main

import (
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// singleDash matches a flag written the Go flag package's way, "-name",
// at the start of a help line; the README and every help text write
// "--name" (a one-letter short form is written "-s, --server").
var singleDash = regexp.MustCompile(`(?m)^\s+-[a-z][a-z]`)

// leaves returns every runnable command line: each command, and each
// subcommand of a command whose help lists subcommands.
func leaves(t *testing.T) [][]string {
	t.Helper()
	var out [][]string
	for _, c := range commands {
		r := mustRun(t, "", exitOK, c.name, "--help")
		_, subs, ok := strings.Cut(r.stdout, "Subcommands:\n")
		if !ok {
			out = append(out, []string{c.name})
			continue
		}
		for _, line := range strings.Split(subs, "\n") {
			f := strings.Fields(line)
			if !strings.HasPrefix(line, "  ") || len(f) == 0 {
				break
			}
			out = append(out, []string{c.name, f[0]})
		}
	}
	return out
}

// TestHelpOnce: --help prints the help once, on stdout, exit 0, flags as
// --name; a usage error prints the problem and the help once, on stderr,
// exit 2.
func TestHelpOnce(t *testing.T) {
	ls := leaves(t)
	if len(ls) < 20 {
		t.Fatalf("found %d commands: %v; want every subcommand", len(ls), ls)
	}
	for _, l := range ls {
		name := strings.Join(l, " ")
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			r := mustRun(t, "", exitOK, append(l, "--help")...)
			if n := strings.Count(r.stdout, "Usage: agentgw "+name); n != 1 || r.stderr != "" {
				t.Errorf("agentgw %s --help: usage %d times on stdout, stderr %q; want once on stdout only\n%s", name, n, r.stderr, r)
			}
			if m := singleDash.FindString(r.stdout); m != "" {
				t.Errorf("agentgw %s --help writes a flag as %q; want --name\n%s", name, m, r.stdout)
			}
			r = mustRun(t, "", exitUsage, append(l, "--no-such-flag")...)
			if n := strings.Count(r.stderr, "Usage: agentgw "+name); n != 1 || r.stdout != "" {
				t.Errorf("agentgw %s --no-such-flag: usage %d times on stderr, stdout %q; want once on stderr only\n%s", name, n, r.stdout, r)
			}
			if !strings.Contains(r.stderr, "flag provided but not defined: --no-such-flag") {
				t.Errorf("agentgw %s --no-such-flag: the error does not name --no-such-flag\n%s", name, r)
			}
		})
	}
}

// TestVersion: `agentgw version` prints the module version and the Go
// version it was built with.
func TestVersion(t *testing.T) {
	r := mustRun(t, "", exitOK, "version")
	if !strings.HasPrefix(r.stdout, "agentgw ") || !strings.Contains(r.stdout, runtime.Version()) || r.stderr != "" {
		t.Errorf("agentgw version:\n%s\nwant the module version and %s on stdout", r, runtime.Version())
	}
	mustRun(t, "", exitOK, "version", "--help")
	mustRun(t, "", exitUsage, "version", "extra")
}
