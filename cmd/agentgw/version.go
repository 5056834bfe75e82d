package main

import (
	"fmt"
	"runtime/debug"
)

func versionCmd(args []string) int {
	c := newCmd("version", "", `
Print the module version agentgw was built as, the VCS revision and
commit time when the build recorded them (a '(modified)' revision had
uncommitted changes), and the Go version it was built with.`)
	if code, ok := c.parse(args); !ok {
		return code
	}
	if code, ok := c.noArgs(); !ok {
		return code
	}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return c.fail(fmt.Errorf("no build information in this binary"), "")
	}
	fmt.Fprintf(c.out, "agentgw %s\n", bi.Main.Version)
	var rev, at, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			at = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = " (modified)"
			}
		}
	}
	if rev != "" {
		fmt.Fprintf(c.out, "revision %s%s\n", rev, modified)
	}
	if at != "" {
		fmt.Fprintf(c.out, "time     %s\n", at)
	}
	fmt.Fprintf(c.out, "go       %s\n", bi.GoVersion)
	return exitOK
}
