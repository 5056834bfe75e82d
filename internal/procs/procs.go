// Package procs builds and runs the real nats-server and agentgw binaries
// for fault tests: start, stop, kill -9, pause (SIGSTOP) and resume
// (SIGCONT), restart on the same ports and directories. It fakes nothing.
// Every process it starts is tracked by its own *Process, and only those
// are ever signalled: never a process found by name. FreePorts serves
// every test whose servers must know their ports before they start.
package procs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binaries are the paths of the built executables.
type Binaries struct {
	NATSServer string
	Agentgw    string
}

// Build compiles nats-server (the version pinned in go.mod) and agentgw
// into dir. It runs the go command from the module that contains the
// current directory, so tests call it from their package directory.
func Build(ctx context.Context, dir string) (Binaries, error) {
	b := Binaries{NATSServer: filepath.Join(dir, "nats-server"), Agentgw: filepath.Join(dir, "agentgw")}
	for _, t := range []struct{ out, pkg string }{
		{b.NATSServer, "github.com/nats-io/nats-server/v2"},
		{b.Agentgw, "github.com/agentgw/agentgw/cmd/agentgw"},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", t.out, t.pkg)
		if out, err := cmd.CombinedOutput(); err != nil {
			return Binaries{}, fmt.Errorf("procs: go build %s: %w\n%s", t.pkg, err, out)
		}
	}
	return b, nil
}

// Process is one started executable. Its methods are safe for concurrent
// use.
type Process struct {
	Name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // valid after done is closed

	mu     sync.Mutex
	paused bool
}

// Start runs bin with args, stdout and stderr appended to logPath.
func Start(name, bin, logPath string, args ...string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("procs: %s log: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a Ctrl-C to the test does not reach it
	// before the test's cleanup does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, fmt.Errorf("procs: start %s: %w", name, err)
	}
	p := &Process{Name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited, and how.
func (p *Process) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Signal sends sig to the process unless it has exited.
func (p *Process) Signal(sig syscall.Signal) error {
	if done, _ := p.Exited(); done {
		return nil
	}
	err := p.cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Kill sends SIGKILL (kill -9) and waits for the exit.
func (p *Process) Kill() error {
	if err := p.Signal(syscall.SIGKILL); err != nil {
		return err
	}
	<-p.done
	p.setPaused(false)
	return nil
}

// Stop sends SIGTERM and waits up to grace for the exit, then kills.
func (p *Process) Stop(grace time.Duration) error {
	if p.isPaused() {
		_ = p.Resume()
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		return p.Kill()
	}
}

// Pause stops the process (SIGSTOP): it keeps its sockets and its state
// but runs no code until Resume.
func (p *Process) Pause() error {
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	p.setPaused(true)
	return nil
}

// Resume continues a paused process (SIGCONT).
func (p *Process) Resume() error {
	if err := p.Signal(syscall.SIGCONT); err != nil {
		return err
	}
	p.setPaused(false)
	return nil
}

func (p *Process) setPaused(v bool) {
	p.mu.Lock()
	p.paused = v
	p.mu.Unlock()
}

func (p *Process) isPaused() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.paused
}

// waitFor polls ready until it reports true, the process exits or the
// timeout passes.
func waitFor(p *Process, timeout time.Duration, ready func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if ready() {
			return nil
		}
		if done, err := p.Exited(); done {
			return fmt.Errorf("procs: %s exited before it was ready: %v", p.Name, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("procs: %s not ready after %s", p.Name, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Tail returns the last n bytes of a log file, for failure messages.
func Tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	if len(data) > n {
		data = data[len(data)-n:]
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:]
		}
	}
	return strings.TrimSpace(string(data))
}
