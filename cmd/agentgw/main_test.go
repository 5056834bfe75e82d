package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/internal/natstest"
)

// cliBin is the agentgw binary built once by TestMain. Tests drive it as
// a user would: arguments in, stdout, stderr and an exit code out.
var cliBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agentgw-cli-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cliBin = filepath.Join(dir, "agentgw")
	args := []string{"build", "-o", cliBin}
	if tags := testBuildTags(); tags != "" {
		args = append(args, "-tags", tags)
	}
	build := exec.Command("go", append(args, ".")...)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	if code == 0 {
		if err := goleak.Find(
			// nats-server keeps process-wide background goroutines.
			goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).startGoRoutine"),
			goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*ipQueue[...]).pop"),
			goleak.IgnoreTopFunction("time.Sleep"),
		); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// testBuildTags returns the -tags this test binary was built with, so the
// CLI binary is built the same way.
func testBuildTags() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, s := range bi.Settings {
		if s.Key == "-tags" {
			return s.Value
		}
	}
	return ""
}

// result is what one agentgw invocation produced.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// agentgw runs the binary with args in dir (the test's temp dir when
// empty) and returns its output and exit code.
func agentgw(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return agentgwEnv(t, dir, nil, args...)
}

// cliEnv is the environment of the binary under test: the test's own,
// without the nats CLI's variables, with a configuration directory of
// its own (no NATS context of the user running the tests applies), and
// then env.
func cliEnv(t *testing.T, env ...string) []string {
	t.Helper()
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "NATS_") && !strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			out = append(out, kv)
		}
	}
	return append(append(out, "XDG_CONFIG_HOME="+t.TempDir()), env...)
}

// agentgwEnv is agentgw with env ("NAME=value") added to cliEnv.
func agentgwEnv(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cliBin, args...)
	cmd.Dir = dir
	cmd.Env = cliEnv(t, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("agentgw %v: %v", args, err)
	}
	return r
}

// mustRun runs agentgw and fails the test unless it exits with want.
func mustRun(t *testing.T, dir string, want int, args ...string) result {
	t.Helper()
	r := agentgw(t, dir, args...)
	if r.code != want {
		t.Fatalf("agentgw %s: exit %d; want %d\n%s", strings.Join(args, " "), r.code, want, r)
	}
	return r
}

// streams starts an embedded nats-server with the gateway's streams and
// returns its URL and a JetStream context to publish with.
func streams(t *testing.T) (*server.Server, jetstream.JetStream) {
	t.Helper()
	srv := natstest.Start(t, natstest.Options{})
	nc := natstest.Connect(t, srv)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := gateway.EnsureStreams(ctx, js, gateway.DefaultConfig().Streams, 1); err != nil {
		t.Fatal(err)
	}
	return srv, js
}

// publish stores m and fails the test unless JetStream acknowledges it.
func publish(t *testing.T, js jetstream.JetStream, m *nats.Msg) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatalf("publish %s: %v", m.Subject, err)
	}
	return ack.Sequence
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want int
		out  string // in stdout or stderr
	}{
		{"help", []string{"--help"}, exitOK, "Exit codes:"},
		{"none", nil, exitUsage, "Usage:"},
		{"unknown", []string{"frobnicate"}, exitUsage, `unknown command "frobnicate"`},
		{"group-help", []string{"denied", "--help"}, exitOK, "Subcommands:"},
		{"unknown-sub", []string{"creds", "nope"}, exitUsage, `unknown subcommand "nope"`},
		{"sub-help", []string{"audit", "tail", "--help"}, exitOK, "--follow"},
		{"bad-flag", []string{"audit", "tail", "--nope"}, exitUsage, "flag provided but not defined"},
		{"help-cmd", []string{"help", "policy"}, exitOK, "check"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := agentgw(t, t.TempDir(), tc.args...)
			if r.code != tc.want || !strings.Contains(r.stdout+r.stderr, tc.out) {
				t.Errorf("agentgw %v: %s\nwant exit %d and %q", tc.args, r, tc.want, tc.out)
			}
		})
	}
}
