//go:build unix

package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/agentgw/agentgw/internal/natstest"
)

// TestServeKeepsHUPDuringStart: a SIGHUP that comes while the gateway
// starts (systemctl reload right after a restart) must not end it: Go's
// default for SIGHUP is to exit, and systemd would not restart a
// process that did. The signing key is a FIFO, so serve waits inside
// its start, reading the key, until the test has sent the signal; the
// gateway then starts, serves, and stops on SIGTERM with exit 0.
func TestServeKeepsHUPDuringStart(t *testing.T) {
	srv := natstest.Start(t, natstest.Options{})
	path := writeServeConfig(t, srv.ClientURL(), 1)
	key := filepath.Join(filepath.Dir(path), "signing.nk")
	seed, err := os.ReadFile(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(key); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(key, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cliBin, "serve", "--config", path)
	cmd.Env = cliEnv(t)
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Opening the FIFO for writing succeeds once serve has it open for
	// reading: serve is then inside its start.
	var fifo *os.File
	for fifo == nil {
		f, err := os.OpenFile(key, os.O_WRONLY|syscall.O_NONBLOCK, 0)
		switch {
		case err == nil:
			fifo = f
		case !errors.Is(err, syscall.ENXIO):
			t.Fatal(err)
		}
		select {
		case err := <-exited:
			t.Fatalf("serve ended before reading its key: %v\n%s", err, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, err := fifo.Write(seed); err != nil {
		t.Fatal(err)
	}
	if err := fifo.Close(); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(stderr.String(), "gateway running") {
		select {
		case err := <-exited:
			t.Fatalf("serve ended after a SIGHUP during its start: %v\n%s", err, stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err != nil {
		t.Fatalf("serve after SIGTERM: %v; want exit 0\n%s", err, stderr.String())
	}
}
