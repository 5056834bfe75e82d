package procs

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Gateway is the agentgw binary running `serve --config`. Each start
// logs to its own file under LogDir (gateway-<n>.log).
type Gateway struct {
	Bin    string
	Config string
	LogDir string
	proc   *Process
	starts int
}

// NewGateway prepares (does not start) a gateway.
func NewGateway(bin, config, logDir string) (*Gateway, error) {
	if err := os.MkdirAll(logDir, 0o700); err != nil {
		return nil, err
	}
	return &Gateway{Bin: bin, Config: config, LogDir: logDir}, nil
}

// Starts is the number of processes started so far.
func (g *Gateway) Starts() int { return g.starts }

// LogPath is the log of the current (or last) incarnation.
func (g *Gateway) LogPath() string { return g.logPath(g.starts) }

func (g *Gateway) logPath(n int) string {
	return filepath.Join(g.LogDir, fmt.Sprintf("gateway-%d.log", n))
}

// Logs returns the paths of every incarnation's log.
func (g *Gateway) Logs() []string {
	var out []string
	for i := 1; i <= g.starts; i++ {
		out = append(out, g.logPath(i))
	}
	return out
}

// runningLine is what the gateway logs once its streams and consumers
// exist and it is deciding.
var runningLine = []byte(`"message":"gateway running"`)

// Start runs a new gateway process and waits until it logs that it is
// running. A process that exits first (NATS unreachable, a bad config) is
// an error carrying its log.
func (g *Gateway) Start(timeout time.Duration) error {
	if g.Running() {
		return fmt.Errorf("procs: gateway already running")
	}
	g.starts++
	p, err := Start(fmt.Sprintf("agentgw#%d", g.starts), g.Bin, g.LogPath(), "serve", "--config", g.Config)
	if err != nil {
		return err
	}
	g.proc = p
	log := g.LogPath()
	err = waitFor(p, timeout, func() bool {
		data, err := os.ReadFile(log)
		return err == nil && bytes.Contains(data, runningLine)
	})
	if err != nil {
		_ = p.Kill()
		return fmt.Errorf("%w\n%s", err, Tail(log, 2000))
	}
	return nil
}

// StartRetry starts the gateway, retrying while NATS is not yet reachable
// (a supervisor's restart loop), for at most total.
func (g *Gateway) StartRetry(total time.Duration) error {
	deadline := time.Now().Add(total)
	for {
		err := g.Start(45 * time.Second)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// Running reports whether the current incarnation is alive.
func (g *Gateway) Running() bool {
	if g.proc == nil {
		return false
	}
	done, _ := g.proc.Exited()
	return !done
}

// Process is the current incarnation (nil before Start).
func (g *Gateway) Process() *Process { return g.proc }

// Kill is kill -9.
func (g *Gateway) Kill() error {
	if g.proc == nil {
		return nil
	}
	return g.proc.Kill()
}

// Stop is SIGTERM: the gateway finishes the batch in hand and exits.
func (g *Gateway) Stop() error {
	if g.proc == nil {
		return nil
	}
	return g.proc.Stop(60 * time.Second)
}

// Pause is SIGSTOP; Resume is SIGCONT.
func (g *Gateway) Pause() error  { return g.proc.Pause() }
func (g *Gateway) Resume() error { return g.proc.Resume() }

// Close kills the gateway if it runs; for test cleanup.
func (g *Gateway) Close() {
	if g.Running() {
		_ = g.proc.Resume()
		_ = g.Kill()
	}
}
