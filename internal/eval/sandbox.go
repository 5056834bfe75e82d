package eval

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
	"github.com/rs/zerolog"

	"github.com/agentgw/agentgw/gateway"
	"github.com/agentgw/agentgw/gateway/identity"
)

// DefaultAudience is a sandbox's audience when the case file names none.
const DefaultAudience = "agentgw-eval"

// SandboxOptions override a case file's sandbox section.
type SandboxOptions struct {
	// Catalog replaces the file's catalog when set.
	Catalog string
	// Policies replace the file's policies when set.
	Policies []string
}

// Target is the gateway cases run against: where to publish, who the
// gateway trusts, and what it emitted besides its streams.
type Target struct {
	// NC is connected to the gateway's server, allowed to publish ingress
	// and read every output stream.
	NC *nats.Conn
	// Audience is the gateway's audience.
	Audience string
	// GatewayXKey is the gateway's curve key, which payloads are sealed to.
	GatewayXKey string
	// Issuers are the trusted issuer key pairs by tenant.
	Issuers map[string]nkeys.KeyPair
	// Revoke puts an agent key on the gateway's revocation list; nil when
	// the gateway's revocations cannot be changed (cases that need it
	// then fail).
	Revoke func(agentKey string) error
	// Logs returns the gateway's log output so far; nil when it cannot be
	// read (an external gateway).
	Logs func() string
	// Secrets are what the target itself holds and must never emit.
	Secrets []string
	// PolicyIDs are the ids of the policies loaded, for coverage; nil when
	// unknown.
	PolicyIDs []string
	// Down is closed when the gateway stops on its own, and DownErr then
	// says why: a run stops at once instead of letting every remaining
	// case wait for an output that cannot come. Nil when the target cannot
	// tell (an external gateway).
	Down    <-chan struct{}
	DownErr func() error
}

// Sandbox is a gateway on an embedded nats-server with a temporary
// ledger, for one run.
type Sandbox struct {
	Target
	srv     *server.Server
	gw      *gateway.Gateway
	cancel  context.CancelFunc
	done    chan error
	dir     string
	revFile string
	revMu   sync.Mutex
	revKeys []string
	logs    *syncBuffer
}

// StartSandbox starts a nats-server in process (JetStream in a temporary
// directory, no listener), the gateway configured from f's sandbox and
// opts, a generated issuer per tenant and generated gateway keys. Close
// stops it and removes the directory.
func StartSandbox(ctx context.Context, f *File, opts SandboxOptions) (*Sandbox, error) {
	sb := f.Sandbox
	catalog, policies := f.resolve(sb.Catalog), make([]string, 0, len(sb.Policies))
	for _, p := range sb.Policies {
		policies = append(policies, f.resolve(p))
	}
	if opts.Catalog != "" {
		catalog = opts.Catalog
	}
	if opts.Policies != nil {
		policies = opts.Policies
	}
	if catalog == "" {
		return nil, errors.New("eval: sandbox: no catalog (the case file's sandbox.catalog or --catalog)")
	}
	tenants := sb.Tenants
	if len(tenants) == 0 {
		seen := map[string]bool{}
		for _, a := range f.Actors {
			if !seen[a.Tenant] {
				seen[a.Tenant] = true
				tenants = append(tenants, a.Tenant)
			}
		}
	}
	dir, err := os.MkdirTemp("", "agentgw-eval-")
	if err != nil {
		return nil, fmt.Errorf("eval: sandbox: %w", err)
	}
	s := &Sandbox{dir: dir, logs: &syncBuffer{}}
	if err := s.start(ctx, sb.Audience, tenants, catalog, policies); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Sandbox) start(ctx context.Context, audience string, tenants []string, catalog string, policies []string) error {
	if audience == "" {
		audience = DefaultAudience
	}
	s.Audience = audience
	s.Issuers = map[string]nkeys.KeyPair{}
	cfg := gateway.DefaultConfig()
	cfg.Audience = audience
	cfg.DataDir = filepath.Join(s.dir, "ledger")
	cfg.Catalog = catalog
	cfg.Policies = policies
	cfg.Tenants = map[string]gateway.TenantConfig{}
	for _, t := range tenants {
		kp, err := identity.NewIssuer()
		if err != nil {
			return fmt.Errorf("eval: sandbox: %w", err)
		}
		pub, _ := kp.PublicKey()
		s.Issuers[t] = kp
		cfg.Tenants[t] = gateway.TenantConfig{Issuers: []string{pub}}
		s.keep(kp)
	}
	signing, err := identity.NewGatewayKey()
	if err != nil {
		return fmt.Errorf("eval: sandbox: %w", err)
	}
	curve, err := identity.NewCurve()
	if err != nil {
		return fmt.Errorf("eval: sandbox: %w", err)
	}
	s.keep(signing)
	s.keep(curve)
	s.GatewayXKey, _ = curve.PublicKey()
	cfg.Keys.Signing = filepath.Join(s.dir, "signing.nk")
	cfg.Keys.Curve = filepath.Join(s.dir, "curve.nk")
	for path, kp := range map[string]nkeys.KeyPair{cfg.Keys.Signing: signing, cfg.Keys.Curve: curve} {
		seed, _ := kp.Seed()
		if err := os.WriteFile(path, seed, 0o600); err != nil {
			return fmt.Errorf("eval: sandbox: %w", err)
		}
	}
	s.revFile = filepath.Join(s.dir, "revocations.yaml")
	if err := os.WriteFile(s.revFile, []byte("principals: []\njtis: []\nkeys: []\n"), 0o600); err != nil {
		return fmt.Errorf("eval: sandbox: %w", err)
	}
	cfg.Revocations.File = s.revFile
	cfg.Consumer.FetchWait = 100 * time.Millisecond
	if s.PolicyIDs, err = loadPolicyIDs(policies); err != nil {
		return err
	}

	s.srv, err = server.NewServer(&server.Options{
		ServerName: "agentgw-eval", DontListen: true, JetStream: true,
		StoreDir: filepath.Join(s.dir, "js"), NoSigs: true, NoLog: true,
	})
	if err != nil {
		return fmt.Errorf("eval: sandbox: nats-server: %w", err)
	}
	go s.srv.Start()
	if !s.srv.ReadyForConnections(10 * time.Second) {
		return errors.New("eval: sandbox: nats-server did not become ready")
	}
	s.NC, err = nats.Connect("", nats.InProcessServer(s.srv), nats.Name("agentgw-eval"))
	if err != nil {
		return fmt.Errorf("eval: sandbox: connect: %w", err)
	}
	gwc, err := nats.Connect("", nats.InProcessServer(s.srv), nats.Name("agentgw-eval-gateway"))
	if err != nil {
		return fmt.Errorf("eval: sandbox: connect: %w", err)
	}
	logger := zerolog.New(s.logs).With().Timestamp().Logger()
	gw, err := gateway.New(cfg, gateway.WithConn(gwc), gateway.WithLogger(logger))
	if err != nil {
		gwc.Close()
		return fmt.Errorf("eval: sandbox: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.gw, s.cancel, s.done = gw, cancel, make(chan error, 1)
	down := make(chan struct{})
	var runErr error
	go func() {
		err := gw.Run(runCtx)
		runErr = err
		close(down)
		s.done <- err
		gwc.Close()
	}()
	s.Down = down
	s.DownErr = func() error {
		<-down
		if runErr == nil {
			return errors.New("it returned without an error")
		}
		return runErr
	}
	select {
	case <-gw.Ready():
	case err := <-s.done:
		s.done <- err
		return fmt.Errorf("eval: sandbox: gateway: %w", err)
	case <-time.After(30 * time.Second):
		return errors.New("eval: sandbox: gateway not ready after 30s")
	case <-ctx.Done():
		return ctx.Err()
	}
	s.Logs = s.logs.String
	s.Revoke = s.revoke
	return nil
}

// keep records a key pair's seed as a secret of the target.
func (s *Sandbox) keep(kp nkeys.KeyPair) {
	seed, _ := kp.Seed()
	s.Secrets = append(s.Secrets, string(seed))
}

// revoke adds key to the revocation file and has the gateway re-read it.
func (s *Sandbox) revoke(key string) error {
	s.revMu.Lock()
	defer s.revMu.Unlock()
	s.revKeys = append(s.revKeys, key)
	data := "principals: []\njtis: []\nkeys:\n"
	for _, k := range s.revKeys {
		data += "  - " + k + "\n"
	}
	if err := os.WriteFile(s.revFile, []byte(data), 0o600); err != nil {
		return fmt.Errorf("eval: revoke: %w", err)
	}
	if err := s.gw.Reload(); err != nil {
		return fmt.Errorf("eval: revoke: reload: %w", err)
	}
	return nil
}

// Close stops the gateway and the server and removes the sandbox's
// directory. It returns the gateway's error, if it stopped with one.
func (s *Sandbox) Close() error {
	var errs []error
	if s.gw != nil {
		s.cancel()
		if err := <-s.done; err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("eval: sandbox gateway: %w", err))
		}
		if err := s.gw.Close(); err != nil {
			errs = append(errs, fmt.Errorf("eval: sandbox gateway close: %w", err))
		}
	}
	if s.NC != nil {
		s.NC.Close()
	}
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
	}
	if err := os.RemoveAll(s.dir); err != nil {
		errs = append(errs, fmt.Errorf("eval: sandbox: %w", err))
	}
	return errors.Join(errs...)
}

// ErrorLines returns the gateway's error-level log lines.
func (s *Sandbox) ErrorLines() []string {
	var out []string
	for _, line := range strings.Split(s.logs.String(), "\n") {
		if strings.Contains(line, `"level":"error"`) {
			out = append(out, line)
		}
	}
	return out
}

// syncBuffer collects the gateway's log lines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// RunSandboxed runs files in sandboxes: one per distinct sandbox section
// (after sbopts), files in the order given within each. The report is
// their union; coverage counts a policy as deciding when it decided a
// case in any of them. Gateway error-level log lines make it fail.
func RunSandboxed(ctx context.Context, files []*File, sbopts SandboxOptions, opts Options) (*Report, error) {
	type group struct {
		key   string
		files []*File
	}
	var groups []*group
	byKey := map[string]*group{}
	for _, f := range files {
		k := f.sandboxKey(sbopts)
		g := byKey[k]
		if g == nil {
			g = &group{key: k}
			byKey[k] = g
			groups = append(groups, g)
		}
		g.files = append(g.files, f)
	}
	total := 0
	for _, f := range files {
		total += len(f.Cases)
	}
	merged := &Report{Coverage: Coverage{Decided: map[string]int{}}}
	never := map[string]bool{}
	done := 0
	for _, g := range groups {
		sb, err := StartSandbox(ctx, g.files[0], sbopts)
		if err != nil {
			return nil, err
		}
		o := opts
		if opts.Progress != nil {
			base := done
			o.Progress = func(n, _ int, r *CaseResult) { opts.Progress(base+n, total, r) }
		}
		rep, err := Run(ctx, &sb.Target, g.files, o)
		errLines := sb.ErrorLines()
		if cerr := sb.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		if len(errLines) > 0 {
			return nil, fmt.Errorf("eval: the sandbox gateway logged %d errors; the first: %s", len(errLines), errLines[0])
		}
		done += len(rep.Cases)
		for _, c := range rep.Cases {
			merged.add(c)
		}
		merged.Redaction = append(merged.Redaction, rep.Redaction...)
		for _, id := range rep.Coverage.Never {
			never[id] = true
		}
	}
	merged.Totals.RedactionFailures = len(merged.Redaction)
	for id := range never {
		if merged.Coverage.Decided[id] == 0 {
			merged.Coverage.Never = append(merged.Coverage.Never, id)
		}
	}
	sort.Strings(merged.Coverage.Never)
	return merged, nil
}

// sandboxKey identifies the sandbox f runs in under opts.
func (f *File) sandboxKey(opts SandboxOptions) string {
	cat := f.resolve(f.Sandbox.Catalog)
	if opts.Catalog != "" {
		cat = opts.Catalog
	}
	var pols []string
	for _, p := range f.Sandbox.Policies {
		pols = append(pols, f.resolve(p))
	}
	if opts.Policies != nil {
		pols = opts.Policies
	}
	return strings.Join([]string{f.Sandbox.Audience, strings.Join(f.Sandbox.Tenants, ","), cat, strings.Join(pols, "\x00")}, "\x01")
}
