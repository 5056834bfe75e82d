package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// TestDeployInitRefusesUnsafeWorkingDir: a relative --dir is made
// absolute with the working directory, and that absolute path is what
// nats-server.conf names (in a comment line as well as in strings). A
// working directory whose name holds a line break or a quote would add
// server configuration of its own (trace: true logs every message), so
// deploy init refuses it as it refuses such a --dir, and writes nothing;
// a working directory with a plain name, spaces included, is used.
func TestDeployInitRefusesUnsafeWorkingDir(t *testing.T) {
	for _, name := range []string{"w\ntrace: true\n#", "w\"\ntrace: true\n#", "w#x"} {
		cwd := filepath.Join(t.TempDir(), name)
		if err := os.Mkdir(cwd, 0o700); err != nil {
			t.Fatal(err)
		}
		r := agentgw(t, cwd, "deploy", "init", "--dir", "prod", "--tenants", "acme", "--hosts", "localhost")
		if r.code != exitUsage || !strings.Contains(r.stderr, "made absolute") {
			conf := filepath.Join(cwd, "prod", "nats", "localhost", "nats-server.conf")
			trace := "not parsed"
			if opts, err := server.ProcessConfigFile(conf); err == nil {
				trace = "trace " + map[bool]string{true: "on", false: "off"}[opts.Trace]
			}
			t.Errorf("deploy init --dir prod in working directory %q: exit %d, nats-server.conf %s; want exit %d naming the absolute directory\n%s",
				name, r.code, trace, exitUsage, r.stderr)
		}
		if _, err := os.Stat(filepath.Join(cwd, "prod")); err == nil {
			t.Errorf("deploy init in working directory %q wrote files", name)
		}
	}

	cwd := filepath.Join(t.TempDir(), "my deployments")
	if err := os.Mkdir(cwd, 0o700); err != nil {
		t.Fatal(err)
	}
	mustRun(t, cwd, exitOK, "deploy", "init", "--dir", "prod", "--tenants", "acme", "--hosts", "localhost")
	conf := filepath.Join(cwd, "prod", "nats", "localhost", "nats-server.conf")
	opts, err := server.ProcessConfigFile(conf)
	if err != nil {
		t.Fatalf("nats-server.conf written in %q: %v", cwd, err)
	}
	b, _ := os.ReadFile(conf)
	want := `cert_file: "` + filepath.Join(cwd, "prod", "nats", "localhost", "tls", "server.pem") + `"`
	if !strings.Contains(string(b), want) || opts.TLSConfig == nil || opts.Trace {
		t.Errorf("nats-server.conf in %q: trace %v, TLS %v; want trace off and %s\n%s", cwd, opts.Trace, opts.TLSConfig != nil, want, b)
	}
}
