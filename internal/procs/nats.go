package procs

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// NATSOptions describe one nats-server node. Ports are fixed for the
// node's life so clients reconnect to the same address after a restart.
type NATSOptions struct {
	Name        string // server_name; also names files under Dir
	Dir         string // config, log and JetStream store_dir live here
	Port        int    // client port
	MonitorPort int    // HTTP monitoring port (healthz)
	// Cluster, when set, makes the node part of a cluster: its route
	// port and every node's route URL (its own included is fine).
	ClusterName string
	ClusterPort int
	Routes      []string
	// SyncAlways sets jetstream.sync_interval: always (fsync per write).
	SyncAlways bool
}

// NATS is one nats-server node started from the built binary.
type NATS struct {
	Opts NATSOptions
	bin  string
	proc *Process
	// Starts counts the processes started for this node.
	Starts int
}

// NewNATS writes the node's config file; Start runs it.
func NewNATS(bin string, o NATSOptions) (*NATS, error) {
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, err
	}
	n := &NATS{Opts: o, bin: bin}
	if err := os.WriteFile(n.ConfigPath(), []byte(n.config()), 0o600); err != nil {
		return nil, err
	}
	return n, nil
}

func (n *NATS) config() string {
	o := n.Opts
	var b strings.Builder
	fmt.Fprintf(&b, "server_name: %q\nhost: 127.0.0.1\nport: %d\nhttp: \"127.0.0.1:%d\"\n", o.Name, o.Port, o.MonitorPort)
	fmt.Fprintf(&b, "max_payload: 1MB\n")
	fmt.Fprintf(&b, "jetstream {\n  store_dir: %q\n  max_memory_store: 64MB\n  max_file_store: 4GB\n", filepath.Join(o.Dir, "jetstream"))
	if o.SyncAlways {
		b.WriteString("  sync_interval: always\n")
	}
	b.WriteString("}\n")
	if o.ClusterPort != 0 {
		fmt.Fprintf(&b, "cluster {\n  name: %q\n  listen: \"127.0.0.1:%d\"\n  routes: [%s]\n}\n", o.ClusterName, o.ClusterPort, strings.Join(quoteAll(o.Routes), ", "))
	}
	return b.String()
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

// ConfigPath is the node's config file.
func (n *NATS) ConfigPath() string { return filepath.Join(n.Opts.Dir, n.Opts.Name+".conf") }

// LogPath is the node's log (all incarnations, appended).
func (n *NATS) LogPath() string { return filepath.Join(n.Opts.Dir, n.Opts.Name+".log") }

// URL is the client URL.
func (n *NATS) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Opts.Port) }

// RouteURL is the cluster route URL.
func (n *NATS) RouteURL() string { return fmt.Sprintf("nats-route://127.0.0.1:%d", n.Opts.ClusterPort) }

// Start runs the node without waiting for it; see WaitReady.
func (n *NATS) Start() error {
	if n.Running() {
		return fmt.Errorf("procs: %s already running", n.Opts.Name)
	}
	p, err := Start(n.Opts.Name, n.bin, n.LogPath(), "-c", n.ConfigPath())
	if err != nil {
		return err
	}
	n.proc = p
	n.Starts++
	return nil
}

// StartReady starts the node and waits until it is healthy.
func (n *NATS) StartReady(timeout time.Duration) error {
	if err := n.Start(); err != nil {
		return err
	}
	return n.WaitReady(timeout)
}

// WaitReady waits for /healthz to answer 200. With jsOnly, a node whose
// JetStream is enabled is enough (a cluster node cannot be fully healthy
// before a quorum is up); otherwise the node's streams and consumers must
// be current too.
func (n *NATS) WaitReady(timeout time.Duration) error {
	return n.waitHealth(timeout, false)
}

// WaitJetStream waits for JetStream to be enabled on the node.
func (n *NATS) WaitJetStream(timeout time.Duration) error {
	return n.waitHealth(timeout, true)
}

func (n *NATS) waitHealth(timeout time.Duration, jsOnly bool) error {
	if n.proc == nil {
		return fmt.Errorf("procs: %s not started", n.Opts.Name)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", n.Opts.MonitorPort)
	if jsOnly {
		url += "?js-enabled-only=true"
	}
	client := &http.Client{Timeout: time.Second}
	err := waitFor(n.proc, timeout, func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		return fmt.Errorf("%w\n%s", err, Tail(n.LogPath(), 2000))
	}
	return nil
}

// Running reports whether a process of this node is alive.
func (n *NATS) Running() bool {
	if n.proc == nil {
		return false
	}
	done, _ := n.proc.Exited()
	return !done
}

// Process is the current incarnation (nil before Start).
func (n *NATS) Process() *Process { return n.proc }

// Kill kills the node with SIGKILL.
func (n *NATS) Kill() error {
	if n.proc == nil {
		return nil
	}
	return n.proc.Kill()
}

// Stop shuts the node down with SIGTERM (lame duck is not used).
func (n *NATS) Stop() error {
	if n.proc == nil {
		return nil
	}
	return n.proc.Stop(30 * time.Second)
}

// Close kills the node if it runs; for test cleanup.
func (n *NATS) Close() {
	if n.Running() {
		_ = n.proc.Resume()
		_ = n.Kill()
	}
}

// Cluster starts size nodes under dir with routes to each other, JetStream
// and sync_interval: always when syncAlways. It waits until every node has
// JetStream enabled and the first node is healthy.
func Cluster(bin, dir string, size int, syncAlways bool) ([]*NATS, error) {
	ports, err := FreePorts(3 * size)
	if err != nil {
		return nil, err
	}
	var routes []string
	for i := range size {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3*i+2]))
	}
	nodes := make([]*NATS, size)
	for i := range size {
		name := fmt.Sprintf("n%d", i+1)
		nodes[i], err = NewNATS(bin, NATSOptions{
			Name: name, Dir: filepath.Join(dir, name), Port: ports[3*i], MonitorPort: ports[3*i+1],
			ClusterName: "agentgw-faults", ClusterPort: ports[3*i+2], Routes: routes, SyncAlways: syncAlways,
		})
		if err != nil {
			return nil, err
		}
	}
	closeAll := func() {
		for _, n := range nodes {
			n.Close()
		}
	}
	for _, n := range nodes {
		if err := n.Start(); err != nil {
			closeAll()
			return nil, err
		}
	}
	for _, n := range nodes {
		if err := n.WaitReady(60 * time.Second); err != nil {
			closeAll()
			return nil, err
		}
	}
	return nodes, nil
}

// URLs joins the client URLs of nodes with commas, as nats.Connect and
// the gateway's nats.url take them.
func URLs(nodes []*NATS) string {
	urls := make([]string, len(nodes))
	for i, n := range nodes {
		urls[i] = n.URL()
	}
	return strings.Join(urls, ",")
}

// HasClient reports whether a client connection with this name is
// connected to the node (from the monitoring endpoint /connz).
func (n *NATS) HasClient(name string) (bool, error) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/connz?limit=4096", n.Opts.MonitorPort))
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var connz struct {
		Conns []struct {
			Name string `json:"name"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&connz); err != nil {
		return false, err
	}
	for _, c := range connz.Conns {
		if c.Name == name {
			return true, nil
		}
	}
	return false, nil
}
